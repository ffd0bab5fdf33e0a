"""Download the data and weights a script (any copy of the seven included) needs.

Command line (``--help`` for the options)::

    python -m icnn_torch.download [NAME ...] [--script PATH_OR_NUMBER [--subjects ...]
        [--rois ...] [--labels ...] [--layers-sets ...]] [--dry-run] [--verify] [--yes]

``NAME``: a file of figshare article 7033577 (``--list``) or ``vgg19``, ``generator``,
``fc7_bounds``, ``mean``, ``std``. ``--script`` reads what a script needs from the script
file itself (constants, with the scripts' overrides; its data and net folders).
``--dry-run`` prints what would be fetched and needs no network; ``--verify`` checks md5s
(decoded features: reads them) and replaces damaged files. Known sizes (the VGG19
weights; the figshare files once ``--refresh-list`` has cached theirs) are always checked:
a file of another size does not count as present. A run calls :func:`ensure_plan_files`.

Sources (module constants; an environment variable, read at call time, wins: that is how
the tests use a local server): ``ICNN_TORCH_FIGSHARE_API`` (https://api.figshare.com/v2),
``ICNN_TORCH_FIGSHARE_FILES`` (https://ndownloader.figshare.com/files/<id>),
``ICNN_TORCH_VGG19_URL`` (the VGG group's page), ``ICNN_TORCH_DEEPSIM_URL`` (the Freiburg
LMB page), ``ICNN_TORCH_FC7_BOUNDS_URL`` (the original repository's fc7.txt),
``ICNN_TORCH_ICNN_RAW_URL`` (the original icnn repository's files, for the self-check).

Fetching (:func:`fetch`) goes through ``pooch.retrieve`` (md5, skip when intact,
processors for the zips) with our downloader: ``<dest>.part`` resumed with ``Range``
(a 200 answer restarts it), cut or stalled transfers retried, resuming; nothing lands
under the final name before its size and md5 are checked; a mismatch deletes the file.

Where things go (the original layout): figshare files into ``data_dir``, a decoded-feature
zip unpacked to ``data_dir/decodedfeatures/<image_type>/<network>/<layer>/<subject>/`` and
deleted; VGG19 to ``net_dir/VGG_ILSVRC_19_layers/``; the DeePSiM zip's
``release_deepsim_v0/fc7/generator.caffemodel`` to ``net_dir/generator_for_inverting_fc7/``;
``data_dir/act_range/3x/fc7.txt``. ``--pytorch``: KamitaniLab's ``.pt`` conversions from
figshare instead (either form counts as present).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TextIO

from . import __version__, data
from ._util import PathLike, atomic_output, is_terminal
from .data import (DEFAULT_DATA_DIR, DEFAULT_NET_DIR, FEAT_STD_FILENAMES,
                   GENERATOR_CAFFEMODEL_RELPATH, GENERATOR_PT_RELPATH, IMAGE_MEAN_FILENAME,
                   VGG19_CAFFEMODEL_RELPATH, VGG19_PT_RELPATH, FigshareFile, decoded_feature_dir,
                   decoded_feature_path, decoded_feature_zip_name, download_command,
                   fc7_bounds_path, file_md5, parse_decoded_feature_zip_name)
from .errors import (ChecksumError, DamagedFileError, DownloadError, IcnnTorchError,
                     MissingDataError, run_cli)

__all__ = ["fetch", "remote_url", "ensure_files", "ensure_plan_files", "items_for_plan",
           "article_files", "refresh_file_list", "unpack_decoded_features_zip", "main"]

FIGSHARE_ARTICLE_ID = data.ARTICLE_ID
_URL_ENV = {
    "figshare_api": ("ICNN_TORCH_FIGSHARE_API", "https://api.figshare.com/v2"),
    "figshare_files": ("ICNN_TORCH_FIGSHARE_FILES", "https://ndownloader.figshare.com/files"),
    "vgg19": ("ICNN_TORCH_VGG19_URL", "http://www.robots.ox.ac.uk/~vgg/software/very_deep/"
                                      "caffe/VGG_ILSVRC_19_layers.caffemodel"),
    "deepsim": ("ICNN_TORCH_DEEPSIM_URL", "https://lmb.informatik.uni-freiburg.de/resources/"
                "binaries/arxiv2016_alexnet_inversion_with_gans/release_deepsim_v0.zip"),
    "fc7_bounds": ("ICNN_TORCH_FC7_BOUNDS_URL", "https://raw.githubusercontent.com/KamitaniLab/"
                   "DeepImageReconstruction/master/data/act_range/3x/fc7.txt"),
    "icnn_raw": ("ICNN_TORCH_ICNN_RAW_URL", "https://raw.githubusercontent.com/KamitaniLab/icnn"),
}

#: Size of VGG_ILSVRC_19_layers.caffemodel.
VGG19_SIZE = 574_671_192
#: Its md5. The VGG group and the Model Zoo gist publish none; three independent public
#: sources agree on this one (jcjohnson/neural-style issue 49, a neural-style launcher
#: script that also states the size above, KelpNet's VGG19 sample).
VGG19_MD5 = "b5c644beabd7cf06bdd9065cfd674c97"
#: md5 of the original repository's data/act_range/3x/fc7.txt.
FC7_BOUNDS_MD5 = "2c8c35ff45e71165460facc12cd4abf6"
#: The member of release_deepsim_v0.zip that is the fc7 generator.
DEEPSIM_GENERATOR_MEMBER = "release_deepsim_v0/fc7/generator.caffemodel"
#: KamitaniLab's PyTorch conversions (not part of article 7033577).
KAMITANI_VGG19 = FigshareFile("VGG_ILSVRC_19_layers.zip", 38225868, None,
                              "49f4d6dbf1024f33149352dfd309dc4d")
KAMITANI_GENERATOR = FigshareFile("bvlc_reference_caffenet_generator_ILSVRC2012_Training.zip",
                                  38361230, None, "bf9d4de43782cb019de733ed7cf84926")

MANIFEST_FILENAME = f"figshare_article_{FIGSHARE_ARTICLE_ID}_files.json"
USER_AGENT = f"icnn-torch/{__version__}"
CHUNK_SIZE = 1 << 16
#: Seconds to wait before retry ``k`` (1-based) is ``RETRY_WAIT * k``.
RETRY_WAIT = 0.5
WEIGHT_ITEMS = ("vgg19", "generator", "fc7_bounds")
ALIASES = WEIGHT_ITEMS + ("mean", "std")


def remote_url(key: str) -> str:
    """Address of a remote source: ``figshare_api``, ``figshare_files``, ``vgg19``,
    ``deepsim``, ``fc7_bounds`` or ``icnn_raw``; the environment variable wins over the
    default."""
    env, default = _URL_ENV[key]
    return os.environ.get(env, "").strip() or default


def _figshare_url(entry: FigshareFile) -> str:
    return f"{remote_url('figshare_files').rstrip('/')}/{entry.id}"


# --------------------------------------------------------------------------- fetch

class _Cut(Exception):
    """The body ended before its Content-Length (or a resume got the wrong range)."""


def _retryable(err: BaseException) -> bool:
    import requests
    import urllib3
    if isinstance(err, requests.HTTPError):
        return err.response.status_code >= 500 or err.response.status_code in (408, 429)
    return isinstance(err, (_Cut, requests.ConnectionError, requests.Timeout,
                            requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError,
                            ConnectionError, TimeoutError))


@dataclasses.dataclass
class _ResumingDownloader:
    """A pooch downloader: transfers into ``part``, resuming it, then hands it to pooch
    (which checks the md5 and moves it onto the destination)."""

    part: Path
    size: Optional[int]
    timeout: float
    retries: int
    progress: bool
    label: str
    received: int = 0

    def __call__(self, url: str, output_file: str, pooch, check_only: bool = False) -> None:
        import requests
        for attempt in range(self.retries + 1):
            try:
                self._transfer(url)
                break
            except Exception as err:  # noqa: BLE001 - classified here
                if isinstance(err, requests.HTTPError) and not _retryable(err):
                    raise DownloadError(f"{self.label}: HTTP {err.response.status_code} "
                                        f"{err.response.reason} from {url}") from err
                if not _retryable(err) or attempt == self.retries:
                    kept = self.part.stat().st_size if self.part.exists() else 0
                    raise DownloadError(
                        f"{self.label}: download from {url} failed after {attempt + 1} "
                        f"attempt(s): {err}." + (f" {kept} bytes are kept in {self.part}; "
                                                 "running the download again resumes from "
                                                 "there." if kept else "")) from err
                time.sleep(RETRY_WAIT * (attempt + 1))
        self.received = self.part.stat().st_size
        if self.size is not None and self.received != self.size:
            self.part.unlink()
            raise ChecksumError(f"{self.label}: downloaded file has {self.received} bytes, "
                                f"expected {self.size}. The bad file was deleted; run the "
                                f"download again. Source: {url}")
        os.replace(self.part, output_file)

    def _transfer(self, url: str) -> None:
        import requests
        from tqdm import tqdm
        have = self.part.stat().st_size if self.part.exists() else 0
        if self.size is not None and have >= self.size:
            if have == self.size:
                return
            self.part.unlink()
            have = 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                   **({"Range": f"bytes={have}-"} if have else {})}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416 and have:
                return  # nothing beyond what we have: the checksum decides
            response.raise_for_status()
            length = response.headers.get("Content-Length", "")
            length = int(length) if length.isdigit() else None
            mode = "wb"  # a fresh download, or a server that ignored Range: start over
            if have and response.status_code == 206:
                match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != have:
                    self.part.unlink()  # the next attempt starts from zero
                    raise _Cut(f"bytes={have}- was answered with "
                               f"{response.headers.get('Content-Range')!r}")
                mode = "ab"
            have, received = (have if mode == "ab" else 0), 0
            with open(self.part, mode) as out, \
                    tqdm(total=have + length if length is not None else self.size, initial=have,
                         unit="B", unit_scale=True, unit_divisor=1024, desc=self.label,
                         disable=not self.progress, leave=False) as bar:
                # read1 returns what has arrived, so a read that times out loses nothing
                # already received and the resume offset is exact
                while chunk := response.raw.read1(CHUNK_SIZE):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if length is not None and received < length:
            raise _Cut(f"connection closed after {received} of {length} bytes")


def fetch(url: str, dest: PathLike, md5: Optional[str] = None, size: Optional[int] = None,
          progress: bool = True, timeout: float = 60.0, retries: int = 3,
          label: Optional[str] = None, processor: Optional[Callable] = None) -> Path:
    """Download ``url`` to ``dest`` with resume and verification (``pooch.retrieve``).

    Parameters
    ----------
    dest : path-like
        Final path. Nothing is fetched when it exists and matches ``md5`` and ``size``
        (each when given); a file of another size is deleted first.
    md5, size : optional
        Expected hex md5 (checked by pooch) and size in bytes.
    progress : bool
        tqdm bar on stderr, shown when stderr is a terminal.
    timeout : float
        Seconds for connecting and for each read.
    retries : int
        Further attempts after a cut transfer, a timeout, a connection error or an HTTP
        5xx, each resuming ``dest + '.part'`` with ``Range``.
    label : str, optional
        Name in messages and on the bar (default ``dest``'s name).
    processor : callable, optional
        A pooch processor ``(path, action, pooch)`` run on the file (e.g. unpacking).

    Returns
    -------
    Path
        ``dest``, or what ``processor`` returns.

    Raises
    ------
    ChecksumError
        md5 or size mismatch; the file is deleted, the message names both values.
    DownloadError
        HTTP error or too many failed attempts (the ``.part`` is kept for resuming).
    """
    import pooch
    dest = Path(dest)
    label, md5 = label or dest.name, md5.lower() if md5 else None
    if dest.is_file() and size is not None and dest.stat().st_size != size:
        dest.unlink()  # damaged: it does not count as present
    downloader = _ResumingDownloader(dest.with_name(dest.name + ".part"), size, timeout,
                                     retries, progress and is_terminal(), label)
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # pooch logs each download and suggests hashes
    try:
        result = pooch.retrieve(url, known_hash=f"md5:{md5}" if md5 else None,
                                fname=dest.name, path=dest.parent, downloader=downloader,
                                processor=processor)
    except ValueError as err:  # pooch's hash mismatch (it deleted the file)
        got = re.search(r"but got (\w+)", str(err))
        if got is None:
            raise
        raise ChecksumError(
            f"{label}: downloaded file is corrupt: md5 {got.group(1)} ({downloader.received} "
            f"bytes) but expected {md5}{f' ({size} bytes)' if size is not None else ''}. "
            f"The bad file was deleted; run the download again. Source: {url}") from err
    finally:
        logger.setLevel(level)
    return result if processor is not None else dest


# --------------------------------------------------------------------------- the file list

def manifest_path(data_dir: PathLike = DEFAULT_DATA_DIR) -> Path:
    """Where ``--refresh-list`` caches the sizes of the article's files."""
    return Path(data_dir, MANIFEST_FILENAME)


def article_files(data_dir: PathLike = DEFAULT_DATA_DIR) -> Dict[str, FigshareFile]:
    """The shipped file list (:func:`icnn_torch.data.published_files`) with the sizes cached
    by :func:`refresh_file_list` where id and md5 agree; no network."""
    files = data.published_files()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        for entry in json.loads(manifest_path(data_dir).read_text(encoding="utf-8")):
            known = files.get(entry["name"])
            if known and (known.id, known.md5) == (entry["id"], entry["md5"]):
                files[known.name] = dataclasses.replace(known, size=int(entry["size"]))
    return files


def refresh_file_list(data_dir: PathLike = DEFAULT_DATA_DIR,
                      timeout: float = 60.0) -> Dict[str, FigshareFile]:
    """Read the file list from the figshare API, check it against the shipped one (names,
    ids, md5) and cache its sizes (:func:`manifest_path`, normal file permissions).

    Raises
    ------
    DownloadError
        The API cannot be read, or its list differs from the shipped one (the differences
        are named; nothing is cached).
    """
    import requests
    url = f"{remote_url('figshare_api').rstrip('/')}/articles/{FIGSHARE_ARTICLE_ID}/files"
    entries: list = []
    for page in range(1, 21):  # the article has 251 files
        try:
            response = requests.get(url, params={"page_size": 1000, "page": page},
                                    timeout=timeout, headers={"User-Agent": USER_AGENT})
            response.raise_for_status()
            batch = [{"name": str(e["name"]), "id": int(e["id"]), "size": int(e["size"]),
                      "md5": str(e.get("computed_md5") or e.get("supplied_md5")).lower()}
                     for e in response.json()]
        except (requests.RequestException, ValueError, KeyError, TypeError) as err:
            raise DownloadError(f"could not read the figshare file list from {url}: {err}") \
                from err
        entries += batch
        if len(batch) < 1000:
            break
    shipped, remote = data.published_files(), {e["name"]: e for e in entries}
    differences = [f"{n} is not in the shipped list" for n in remote if n not in shipped] + [
        f"{n}: id {remote[n]['id']}, md5 {remote[n]['md5']}; shipped {f.id}, {f.md5}"
        if n in remote else f"{n} is not in the article" for n, f in shipped.items()
        if n not in remote or (remote[n]["id"], remote[n]["md5"]) != (f.id, f.md5)]
    if differences:
        raise DownloadError(f"the figshare file list ({url}) differs from the one shipped with "
                            f"icnn-torch in {len(differences)} place(s): "
                            f"{'; '.join(differences[:5])}; nothing was cached")
    with atomic_output(manifest_path(data_dir)) as tmp:
        tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return article_files(data_dir)


# --------------------------------------------------------------------------- zips

def _member_parts(name: str) -> Optional[List[str]]:
    """Path components of a zip member; None for folders and macOS metadata; an error for
    absolute or parent-escaping names."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.endswith("/") or not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
        return None
    if name.startswith("/") or ".." in parts or ":" in parts[0]:
        raise DownloadError(f"refusing to unpack member {name!r} (absolute or '..' path)")
    return parts


def _plan_decoded_zip(members: Sequence[str], key: tuple) -> Dict[str, List[str]]:
    """Member -> path in the subject folder (``<roi>/<it>-<net>-<layer>-<subject>-<roi>-
    <label>.mat``). The members must be such files, all below one common folder that ends
    the path ``decodedfeatures/<it>/<net>/<layer>/<subject>`` (any part of it, or none),
    possibly inside one extra top folder."""
    prefix, stem = ["decodedfeatures", *key], "-".join(key) + "-"
    files = {m: p for m in members if (p := _member_parts(m)) is not None}
    leads = {tuple(p[:-2]) for p in files.values()}
    lead = list(leads.pop()) if len(leads) == 1 else None
    if not files or lead is None or not any(not t or prefix[-len(t):] == t
                                            for t in (lead, lead[1:])) or \
            not all(len(p) >= 2 and p[-1].endswith(".mat") and p[-1].startswith(
                f"{stem}{p[-2]}-") for p in files.values()):
        raise DownloadError(
            f"{decoded_feature_zip_name(*key)} does not have the expected layout "
            f"decodedfeatures/{'/'.join(key)}/<roi>/{stem}<roi>-<label>.mat; it holds "
            f"{len(members)} entries such as: {', '.join(list(members)[:5])}")
    return {m: p[-2:] for m, p in files.items()}


@contextlib.contextmanager
def _open_zip(zip_path: Path):
    """The zip, opened; a file that is not a zip is deleted and reported."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        zip_path.unlink()
        raise DownloadError(f"{zip_path} is not a valid zip file ({err}); it was deleted, "
                            "run the download again") from err
    with archive:
        yield archive


def unpack_decoded_features_zip(zip_path: PathLike, data_dir: PathLike = DEFAULT_DATA_DIR,
                                key: Optional[tuple] = None) -> Path:
    """Unpack a decoded-feature zip into ``data_dir/decodedfeatures/<image_type>/<network>/
    <layer>/<subject>`` (returned), after checking its layout (:func:`_plan_decoded_zip`):
    through a temporary folder under ``data_dir``, then one rename of the subject folder
    (or, when it exists, of each file). ``key`` defaults to the one in the zip's name."""
    zip_path = Path(zip_path)
    key = key or parse_decoded_feature_zip_name(zip_path.name)
    if key is None:
        raise ValueError(f"{zip_path.name} is not named decodedfeatures-<image_type>-"
                         "<network>-<layer>-<subject>.zip")
    target = decoded_feature_dir(data_dir, *key)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with _open_zip(zip_path) as archive:
        plan = _plan_decoded_zip(archive.namelist(), key)
        tmp_root = Path(tempfile.mkdtemp(prefix=".unpack-", dir=str(data_dir)))
        staged = tmp_root / key[3]  # made below, with the usual permissions
        try:
            for member, rel in plan.items():
                staged.joinpath(rel[0]).mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(staged.joinpath(*rel), "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK_SIZE)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.replace(staged, target)
            for rel in plan.values() if staged.exists() else ():
                target.joinpath(rel[0]).mkdir(exist_ok=True)
                os.replace(staged.joinpath(*rel), target.joinpath(*rel))
        except (zipfile.BadZipFile, OSError) as err:
            raise DownloadError(f"{zip_path}: cannot extract: {err}") from err
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
    return target


def _take_member(dest: Path, pick: Callable[[str], bool], what: str,
                 bounds_dest: Optional[Path] = None) -> Callable:
    """A pooch processor: the zip's member ``pick`` selects becomes ``dest`` (the one
    named like ``dest`` when several are picked); with ``bounds_dest``, a member
    ``act_range_3x.txt`` becomes it when absent (checked to be 4096 numbers); then the
    zip is deleted. Written atomically; zipfile checks the CRCs."""
    def process(fname: str, action: str, pooch) -> Path:
        with _open_zip(Path(fname)) as archive:
            names = [n for n in archive.namelist() if _member_parts(n) is not None]
            found = [n for n in names if pick(n)]
            found = [n for n in found if Path(n).name == dest.name] or found
            if len(found) != 1:
                raise DownloadError(f"{Path(fname).name}: expected exactly one {what}, found "
                                    f"{len(found)}; the zip holds: {', '.join(names[:20])}")
            bounds = [n for n in names if Path(n).name == "act_range_3x.txt"]
            todo = [(found[0], dest)] + ([(bounds[0], bounds_dest)] if bounds and bounds_dest
                                         and not bounds_dest.exists() else [])
            for member, target in todo:
                with atomic_output(target) as tmp:
                    with archive.open(member) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK_SIZE)
                    if target == bounds_dest:
                        data.load_fc7_upper_bound(tmp)
        Path(fname).unlink()
        return dest
    return process


def _unpack_and_delete(data_dir: PathLike, key: tuple) -> Callable:
    """The pooch processor of a decoded-feature zip."""
    def process(fname: str, action: str, pooch) -> Path:
        target = unpack_decoded_features_zip(fname, data_dir, key)
        Path(fname).unlink()
        return target
    return process


# --------------------------------------------------------------------------- items

def expand_aliases(names: Sequence[str]) -> List[str]:
    """``mean`` -> the mean file, ``std`` -> both std files; duplicates dropped."""
    aliases = {"mean": [IMAGE_MEAN_FILENAME], "std": list(FEAT_STD_FILENAMES.values())}
    return list(dict.fromkeys(i for name in names for i in aliases.get(name, [name])))


def _describe(item: str, data_dir, net_dir, pytorch: bool, files) -> str:
    """One --dry-run line: what is fetched (and where it goes)."""
    if item in ("vgg19", "generator"):
        kamitani, pt, caffe, origin = (
            (KAMITANI_VGG19, VGG19_PT_RELPATH, VGG19_CAFFEMODEL_RELPATH, f"{VGG19_SIZE:,} bytes")
            if item == "vgg19" else (KAMITANI_GENERATOR, GENERATOR_PT_RELPATH,
                                     GENERATOR_CAFFEMODEL_RELPATH, "from release_deepsim_v0.zip"))
        return f"{item} -> {Path(net_dir, pt)} (from figshare file {kamitani.name})" \
            if pytorch else f"{item} -> {Path(net_dir, caffe)} ({origin})"
    if item == "fc7_bounds":
        return f"fc7_bounds -> {fc7_bounds_path(data_dir)}"
    size = files[item].size
    return item if size is None else f"{item} ({size:,} bytes)"


def _problem(item: str, data_dir, net_dir, files, expected: Optional[Sequence[Path]],
             verify: bool) -> str:
    """Why ``item`` does not count as present: "" when it does, else "absent" or
    "damaged: ..." (sizes always; with ``verify`` md5s and reading decoded features)."""
    def check(path: Path, size: Optional[int], md5: Optional[str]) -> str:
        if not path.is_file():
            return "absent"
        if size is not None and path.stat().st_size != size:
            return f"damaged: {path} has {path.stat().st_size:,} bytes, expected {size:,}"
        if verify and md5 is not None and file_md5(path) != md5:
            return f"damaged: the md5 of {path} is not the published {md5}"
        return ""

    if item == "vgg19":
        caffemodel = Path(net_dir, VGG19_CAFFEMODEL_RELPATH)
        pt_only = not caffemodel.exists() and Path(net_dir, VGG19_PT_RELPATH).is_file()
        return "" if pt_only else check(caffemodel, VGG19_SIZE, VGG19_MD5)
    if item == "generator":
        return "" if any(Path(net_dir, rel).is_file() for rel in
                         (GENERATOR_CAFFEMODEL_RELPATH, GENERATOR_PT_RELPATH)) else "absent"
    if item == "fc7_bounds":
        problem = check(fc7_bounds_path(data_dir), None, FC7_BOUNDS_MD5)
        if problem.startswith("damaged"):  # KamitaniLab's bundled copy is another file
            with contextlib.suppress(IcnnTorchError):
                return "" if data.load_fc7_upper_bound(fc7_bounds_path(data_dir)) is not None \
                    else problem
        return problem
    key = parse_decoded_feature_zip_name(item)
    if key is None:
        return check(Path(data_dir, item), files[item].size, files[item].md5)
    paths = list(expected or sorted(decoded_feature_dir(data_dir, *key).glob("*/*.mat")))
    absent = [p for p in paths if not p.is_file()]
    if absent or not paths:
        return "absent" if len(absent) == len(paths) else \
            f"incomplete: {len(absent)} of {len(paths)} files absent, e.g. {absent[0]}"
    for path in paths if verify else ():
        try:
            data.load_feat(path)
        except DamagedFileError as err:
            return f"damaged: {err.path} cannot be read"
    return ""


def _fetch_item(item: str, problem: str, data_dir, net_dir, pytorch: bool, files,
                progress: bool, timeout: float) -> None:
    """Fetch ``item``, which :func:`_problem` found ``problem`` with ("absent", "damaged: ...")."""
    options = dict(progress=progress, timeout=timeout)
    if item in ("vgg19", "generator") and pytorch:
        entry, rel = (KAMITANI_VGG19, VGG19_PT_RELPATH) if item == "vgg19" else \
            (KAMITANI_GENERATOR, GENERATOR_PT_RELPATH)
        if item == "vgg19" and problem != "absent":  # a damaged caffemodel would be loaded first
            Path(net_dir, VGG19_CAFFEMODEL_RELPATH).unlink(missing_ok=True)
        dest = Path(net_dir, rel)
        fetch(_figshare_url(entry), dest.with_name(entry.name), md5=entry.md5, **options,
              processor=_take_member(dest, lambda n: n.endswith((".pt", ".pth")),
                                     "PyTorch state dict (.pt)",
                                     fc7_bounds_path(data_dir) if item == "generator" else None))
    elif item == "vgg19":
        fetch(remote_url("vgg19"), Path(net_dir, VGG19_CAFFEMODEL_RELPATH), md5=VGG19_MD5,
              size=VGG19_SIZE, **options)
    elif item == "generator":
        dest = Path(net_dir, GENERATOR_CAFFEMODEL_RELPATH)
        fetch(remote_url("deepsim"), dest.with_name("release_deepsim_v0.zip"), **options,
              processor=_take_member(dest, lambda n: n.endswith("fc7/generator.caffemodel"),
                                     DEEPSIM_GENERATOR_MEMBER))
    elif item == "fc7_bounds":
        fetch(remote_url("fc7_bounds"), fc7_bounds_path(data_dir), md5=FC7_BOUNDS_MD5,
              label="fc7.txt", **options)
    else:
        key = parse_decoded_feature_zip_name(item)
        fetch(_figshare_url(files[item]), Path(data_dir, item), md5=files[item].md5,
              size=files[item].size, **options,
              processor=None if key is None else _unpack_and_delete(data_dir, key))


# --------------------------------------------------------------------------- ensure

def ensure_files(names: Sequence[str], *, data_dir: PathLike = DEFAULT_DATA_DIR,
                 net_dir: PathLike = DEFAULT_NET_DIR, pytorch: bool = False,
                 assume_yes: Optional[bool] = None, progress: bool = True,
                 timeout: float = 60.0, stdin: Optional[TextIO] = None,
                 stderr: Optional[TextIO] = None, verify: bool = False, dry_run: bool = False,
                 expected: Optional[Dict[str, List[Path]]] = None,
                 command: Optional[Callable[[List[str]], str]] = None) -> List[str]:
    """Make sure the named items are present and intact; fetch what is not.

    Parameters
    ----------
    names : sequence of str
        Figshare file names, ``vgg19``, ``generator``, ``fc7_bounds``, ``mean``, ``std``.
    assume_yes : bool or None
        True: download without asking. False: never download, raise. None: use
        ``ICNN_TORCH_ASSUME_YES`` (1/yes/true, 0/no/false) when set, else ask ``[y/N]``
        once when ``stdin`` is a terminal and raise when it is not.
    verify : bool
        Check md5s (decoded features: read them), not only sizes.
    dry_run : bool
        Print what would be fetched (one line per item, on stdout) and fetch nothing.
    expected, command
        For :func:`ensure_plan_files`: the files a decoded-feature zip must provide, and
        the command line of the error (given the missing items).

    Returns
    -------
    list of str
        The items downloaded (with ``dry_run``: that would be); empty when all are present
        (then no network is used).

    Raises
    ------
    MissingDataError
        Something is missing and downloading was declined or not allowed (the message
        lists it and the ``python -m icnn_torch.download`` command).
    DownloadError, ChecksumError
        A download failed, or a name is not a file of the article (before any request).
    """
    files, items, expected = article_files(data_dir), expand_aliases(names), expected or {}
    for item in items:
        if item not in WEIGHT_ITEMS and item not in files:
            raise DownloadError(f"{item!r} is not a file of figshare article "
                                f"{FIGSHARE_ARTICLE_ID} (see python -m icnn_torch.download --list)")
    problems = {i: _problem(i, data_dir, net_dir, files, expected.get(i), verify) for i in items}
    missing = [i for i in items if problems[i]]
    shown = [_describe(i, data_dir, net_dir, pytorch, files) +
             ("" if problems[i] == "absent" else f" [{problems[i]}]") for i in missing]
    if dry_run or not missing:
        for line in shown:
            print(line)
        return missing
    extra = " ".join(["--pytorch"] * pytorch + ["--verify"] * verify)
    command = command or (lambda m: download_command(m, data_dir, net_dir, extra))
    title = f"{len(missing)} item(s) are missing or damaged (data {data_dir}, net {net_dir}):"
    stdin, stderr = stdin or sys.stdin, stderr or sys.stderr
    if assume_yes is None:
        value = os.environ.get("ICNN_TORCH_ASSUME_YES", "").strip().lower()
        assume_yes = True if value in ("1", "y", "yes", "true") else \
            False if value in ("0", "n", "no", "false") else None
    if assume_yes is None:
        if not is_terminal(stdin):
            raise MissingDataError(shown, command(missing), title=title,
                                   detail="(not asking: standard input is not a terminal)")
        stderr.write("These files are needed:\n  " + "\n  ".join(shown) +
                     "\nDownload them now? [y/N] ")
        stderr.flush()
        assume_yes = stdin.readline().strip().lower() in ("y", "yes")
    if not assume_yes:
        raise MissingDataError(shown, command(missing), title=title)
    fetched = []
    for number, item in enumerate(missing, 1):
        # KamitaniLab's generator bundle may have brought the fc7 bounds along
        if item == "fc7_bounds" and "generator" in fetched and \
                not _problem(item, data_dir, net_dir, files, None, verify):
            continue
        stderr.write(f"[{number}/{len(missing)}] {item}\n")
        stderr.flush()
        _fetch_item(item, problems[item], data_dir, net_dir, pytorch, files, progress, timeout)
        fetched.append(item)
    return fetched


def _is_published_tree(data_dir, features_dir) -> bool:
    return features_dir is None or \
        Path(features_dir).resolve() == Path(data_dir, "decodedfeatures").resolve()


def items_for_plan(plan, data_dir: PathLike = DEFAULT_DATA_DIR,
                   features_dir: Optional[PathLike] = None) -> List[str]:
    """The download items a run needs, from its plan (:class:`icnn_torch.config.RunPlan`):
    ``vgg19``; ``generator`` and ``fc7_bounds`` exactly when the engine optimises the
    generator input; the mean file; the std file of the plan's network; and, for the
    published tree (``features_dir`` None or ``data_dir/decodedfeatures``), one
    decoded-feature zip per subject and layer (subject-major, layers in first-use order).
    """
    items = ["vgg19"] + (["generator", "fc7_bounds"] if plan.uses_generator else [])
    items += [IMAGE_MEAN_FILENAME, data.feat_std_path(data_dir, plan.network).name]
    if _is_published_tree(data_dir, features_dir):
        items += [decoded_feature_zip_name(plan.image_type, plan.network, layer, subject)
                  for subject in plan.subjects for layer in plan.all_layers]
    return items


def _plan_command(plan, script_arg: str, data_dir, net_dir, extra: List[str],
                  missing: List[str]) -> str:
    """``python -m icnn_torch.download --script <script> [selection] --yes [folders]``: the
    selection where it differs from the script's constants, the folders where they are not
    the script's own."""
    if not script_arg:
        return download_command(missing, data_dir, net_dir, " ".join(extra))
    from .config import ScriptConfig
    try:
        config = ScriptConfig.from_file(script_arg)
        base, defaults = config.plan(), (config.path(config.data_dir), config.path(config.net_dir))
    except Exception:  # noqa: BLE001 - the command is advice: the full selection then
        base, defaults = None, (DEFAULT_DATA_DIR, DEFAULT_NET_DIR)
    args = [f"--script {shlex.quote(script_arg)}"]
    for flag, attribute in (("--subjects", "subjects"), ("--rois", "rois"),
                            ("--labels", "labels"), ("--layers-sets", "layer_sets")):
        mine = tuple(getattr(plan, attribute) or ())
        if mine and (base is None or mine != tuple(getattr(base, attribute) or ())):
            args.append(f"{flag} {','.join(mine)}")
    return download_command((), data_dir, net_dir, " ".join(args + extra + ["--yes"]), defaults)


def ensure_plan_files(plan, *, data_dir: PathLike = DEFAULT_DATA_DIR,
                      net_dir: PathLike = DEFAULT_NET_DIR,
                      features_dir: Optional[PathLike] = None, script_arg: str = "",
                      pytorch: bool = False, assume_yes: Optional[bool] = None,
                      progress: bool = True, timeout: float = 60.0,
                      stdin: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
                      verify: bool = False, dry_run: bool = False) -> List[str]:
    """Check a run's selection against the data (:func:`icnn_torch.data.check_plan`), then
    :func:`ensure_files` for every file of its plan (:func:`items_for_plan`).

    Parameters
    ----------
    plan : icnn_torch.config.RunPlan
    features_dir : path, optional
        The decoded-feature tree the run reads (default ``data_dir/decodedfeatures``, the
        published one, whose zips are downloaded); another tree is checked on disk.
    script_arg : str
        The script as the user named it: the error's command is then
        ``python -m icnn_torch.download --script <script_arg> [...] --yes``.

    Raises
    ------
    ConfigError
        Subjects, ROIs, labels or layers the data cannot hold (before any request).
    MissingDataError, DownloadError, ChecksumError
        As :func:`ensure_files`.
    """
    published = _is_published_tree(data_dir, features_dir)
    data.check_plan(plan, None if published else features_dir)
    extra = ["--pytorch"] * pytorch + ["--verify"] * verify
    expected = {decoded_feature_zip_name(plan.image_type, plan.network, layer, subject):
                [decoded_feature_path(data_dir, plan.image_type, plan.network, layer, subject,
                                      roi, label) for roi in plan.rois for label in plan.labels]
                for subject in plan.subjects for layer in plan.all_layers} if published else {}
    return ensure_files(
        items_for_plan(plan, data_dir, features_dir), data_dir=data_dir, net_dir=net_dir,
        pytorch=pytorch, assume_yes=assume_yes, progress=progress, timeout=timeout,
        stdin=stdin, stderr=stderr, verify=verify, dry_run=dry_run, expected=expected,
        command=lambda missing: _plan_command(plan, script_arg, data_dir, net_dir, extra,
                                              missing))


# --------------------------------------------------------------------------- CLI

def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.download",
        description="Download the decoded features, std files, image mean, fc7 bounds and "
                    "network weights of the Deep Image Reconstruction demo. Files present "
                    "and intact are skipped.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="figshare file name of article 7033577, or vgg19, generator, "
                             "fc7_bounds, mean, std")
    parser.add_argument("--script", help="everything this script needs (its path, or its "
                                         "name or number in the current folder)")
    for flag, example in (("--subjects", "S1,S2"), ("--rois", "VC,V1"),
                          ("--labels", "Img0001,Img0002"), ("--layers-sets", "layers-1to1")):
        parser.add_argument(flag, help=f"with --script: comma-separated, e.g. {example} "
                                       "(default: the script's)")
    for flag, text in (("--pytorch", "KamitaniLab's PyTorch conversions of VGG19 and the "
                                     "generator instead of the caffemodels"),
                       ("--yes", "do not ask for confirmation on a terminal"),
                       ("--dry-run", "print what would be fetched, one line per file; "
                                     "fetch nothing"),
                       ("--verify", "check the md5 of present files (decoded features: read "
                                    "them) and replace damaged ones"),
                       ("--no-progress", "no progress bar"),
                       ("--list", "print the files of the figshare article (name, id, size, "
                                  "md5)"),
                       ("--refresh-list", "read the file list from figshare, check it, cache "
                                          "its sizes"),
                       ("--debug", "show the traceback of an error")):
        parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument("--data-dir", help="default: data (with --script: the script's)")
    parser.add_argument("--net-dir", help="default: net (with --script: the script's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per read")
    return parser


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    selection = {key: [t.strip() for t in value.split(",") if t.strip()] if value else None
                 for key, value in (("subjects", args.subjects), ("rois", args.rois),
                                    ("labels", args.labels), ("layer_sets", args.layers_sets))}
    if not args.script and any(selection.values()):
        parser.error("--subjects/--rois/--labels/--layers-sets select within --script")
    for name in args.names:
        if name not in ALIASES and "/" in name:
            parser.error(f"{name!r}: give a file name, not a path")
    config = plan = None
    if args.script:
        from .config import ScriptConfig
        config = ScriptConfig.from_file(args.script)
        plan = config.plan(**selection)
    data_dir = args.data_dir or (config.path(config.data_dir) if config else DEFAULT_DATA_DIR)
    net_dir = args.net_dir or (config.path(config.net_dir) if config else DEFAULT_NET_DIR)
    if args.refresh_list:
        refresh_file_list(data_dir, timeout=args.timeout)
    for entry in sorted(article_files(data_dir).values(), key=lambda e: e.name) \
            if args.list else ():
        print(f"{entry.name}\t{entry.id}\t{'' if entry.size is None else entry.size}\t{entry.md5}")
    if not args.names and plan is None:
        if args.list or args.refresh_list:
            return 0
        parser.print_usage(sys.stderr)
        print("nothing to download: give NAMEs or --script (see --help)", file=sys.stderr)
        return 2
    common = dict(data_dir=data_dir, net_dir=net_dir, pytorch=args.pytorch,
                  progress=not args.no_progress, timeout=args.timeout, verify=args.verify,
                  dry_run=args.dry_run,
                  assume_yes=True if (args.yes or not is_terminal(sys.stdin)) else None)
    done = ensure_files(args.names, **common) if args.names else []
    if plan is not None:
        # the script's decoded_features_dir; its own data folder's follows --data-dir
        features_dir = config.path(config.decoded_features_dir)
        if features_dir == config.path(config.data_dir) / "decodedfeatures":
            features_dir = None
        done += ensure_plan_files(plan, features_dir=features_dir, script_arg=args.script,
                                  **common)
    print(f"{len(done)} item(s) would be fetched" if args.dry_run and done else
          f"done: {len(done)} item(s) downloaded" if done else
          "all requested files are present", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point (under :func:`icnn_torch.errors.run_cli`); returns the exit
    status."""
    return run_cli(lambda: _main(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
