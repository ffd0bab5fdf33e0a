"""Download the data and weights the seven scripts need (standard library HTTP only).

Command line::

    python -m icnn_torch.download [--script NAME] [--subjects S1,S2] [--layers conv1_1,...]
        [--rois VC,...] [--pytorch] [--yes] [--data-dir DIR] [--net-dir DIR]
        [--no-progress] [--list] [--refresh-list] [NAME ...]

``NAME`` is a file name of figshare article 7033577 (e.g.
``decodedfeatures-natural-VGG19-conv1_1-S1.zip``, ``estimated_vgg19_cnn_feat_std.mat``)
or one of the aliases ``vgg19``, ``generator``, ``fc7_bounds``, ``mean``, ``std`` (both
std files). ``--script`` adds everything that script needs (restricted by
``--subjects`` / ``--layers`` / ``--rois``). Files already present are skipped. On a
terminal the command lists what it will fetch and asks ``[y/N]`` unless ``--yes``; when
stdin is not a terminal it downloads without asking (the command itself is the consent).

Scripts call :func:`ensure_files` on their first run. It does nothing (and needs no
network) when every file is present. Otherwise it asks once on a terminal; when stdin is
not a terminal it downloads only with ``assume_yes=True`` and else raises
:class:`~icnn_torch.data.MissingDataError` naming the command above. ``assume_yes=None``
takes its value from the environment variable ``ICNN_TORCH_ASSUME_YES`` (1/yes/true or
0/no/false) when that is set.

Sources (each address is a module constant, overridable by an environment variable read
at call time, which is how the tests point everything at a local server):

========================  =============================  ====================================
what                      env variable                   default
========================  =============================  ====================================
figshare API              ``ICNN_TORCH_FIGSHARE_API``    https://api.figshare.com/v2
figshare files by id      ``ICNN_TORCH_FIGSHARE_FILES``  https://ndownloader.figshare.com/files
VGG19 caffemodel          ``ICNN_TORCH_VGG19_URL``       the VGG group's page (SPEC 2)
DeePSiM release zip       ``ICNN_TORCH_DEEPSIM_URL``     the Freiburg LMB page (SPEC 2)
fc7 bounds (fc7.txt)      ``ICNN_TORCH_FC7_BOUNDS_URL``  the original repository, raw file
icnn files (self-check)   ``ICNN_TORCH_ICNN_RAW_URL``    https://raw.githubusercontent.com/KamitaniLab/icnn
========================  =============================  ====================================

How files are fetched (:func:`fetch`): into ``<dest>.part``; an existing ``.part`` is
resumed with ``Range: bytes=N-`` (a server that answers 200 instead of 206 restarts it);
a transfer that ends before its Content-Length is retried (resuming) a bounded number of
times; the result is checked against its md5 (or its size when no md5 is known: VGG19,
574,671,192 bytes) and only then renamed onto ``dest``. A mismatch deletes the ``.part``
and raises :class:`ChecksumError` naming the file and both digests.

Where things go (the original layout, SPEC 6): figshare files into ``data_dir``; a
decoded-feature zip is unpacked to ``data_dir/decodedfeatures/<image_type>/<network>/
<layer>/<subject>/<roi>/...`` (through a temporary folder under ``data_dir``, after
checking that its members fit that layout) and then deleted; VGG19 to
``net_dir/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel``; the DeePSiM zip's
``release_deepsim_v0/fc7/generator.caffemodel`` to
``net_dir/generator_for_inverting_fc7/generator.caffemodel``; fc7 bounds to
``data_dir/act_range/3x/fc7.txt``. With ``--pytorch`` (``pytorch=True``), KamitaniLab's
PyTorch conversions are fetched from figshare instead: ``VGG_ILSVRC_19_layers.pt`` next to
the caffemodel's place and the generator state dict as
``net_dir/generator_for_inverting_fc7/generator.pt`` (its bundled ``act_range_3x.txt``
becomes ``data_dir/act_range/3x/fc7.txt`` when that file is absent). Either form of
weights counts as present.

The figshare file list (names, ids, sizes, md5) is read from
``{api}/articles/7033577/files?page_size=1000`` and cached as
``data_dir/figshare_article_7033577_files.json``; later runs use the cache and need no
network for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, TextIO

from . import __version__
from .data import (DEFAULT_DATA_DIR, DEFAULT_NET_DIR, FEAT_STD_FILENAMES, FC7_UNITS,
                   GENERATOR_CAFFEMODEL_RELPATH, GENERATOR_PT_RELPATH, IMAGE_MEAN_FILENAME,
                   VGG19_CAFFEMODEL_RELPATH, VGG19_PT_RELPATH, MissingDataError,
                   decoded_feature_dir, decoded_feature_path, decoded_feature_zip_name,
                   download_command, fc7_bounds_path)

PathLike = "str | os.PathLike[str]"

# --------------------------------------------------------------------------- configuration

FIGSHARE_ARTICLE_ID = 7033577

DEFAULT_FIGSHARE_API = "https://api.figshare.com/v2"
DEFAULT_FIGSHARE_FILES = "https://ndownloader.figshare.com/files"
DEFAULT_VGG19_URL = ("http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
                     "VGG_ILSVRC_19_layers.caffemodel")
DEFAULT_DEEPSIM_URL = ("https://lmb.informatik.uni-freiburg.de/resources/binaries/"
                       "arxiv2016_alexnet_inversion_with_gans/release_deepsim_v0.zip")
DEFAULT_FC7_BOUNDS_URL = ("https://raw.githubusercontent.com/KamitaniLab/"
                          "DeepImageReconstruction/master/data/act_range/3x/fc7.txt")
#: Raw files of the original icnn repository (``<base>/<commit>/<path>``; the self-check).
DEFAULT_ICNN_RAW_URL = "https://raw.githubusercontent.com/KamitaniLab/icnn"

_URL_ENV = {
    "figshare_api": ("ICNN_TORCH_FIGSHARE_API", DEFAULT_FIGSHARE_API),
    "figshare_files": ("ICNN_TORCH_FIGSHARE_FILES", DEFAULT_FIGSHARE_FILES),
    "vgg19": ("ICNN_TORCH_VGG19_URL", DEFAULT_VGG19_URL),
    "deepsim": ("ICNN_TORCH_DEEPSIM_URL", DEFAULT_DEEPSIM_URL),
    "fc7_bounds": ("ICNN_TORCH_FC7_BOUNDS_URL", DEFAULT_FC7_BOUNDS_URL),
    "icnn_raw": ("ICNN_TORCH_ICNN_RAW_URL", DEFAULT_ICNN_RAW_URL),
}

#: Size of VGG_ILSVRC_19_layers.caffemodel (no md5 is published for it).
VGG19_SIZE = 574_671_192
#: md5 of the original repository's data/act_range/3x/fc7.txt.
FC7_BOUNDS_MD5 = "2c8c35ff45e71165460facc12cd4abf6"
#: The member of release_deepsim_v0.zip that is the fc7 generator.
DEEPSIM_GENERATOR_MEMBER = "release_deepsim_v0/fc7/generator.caffemodel"

MANIFEST_FILENAME = f"figshare_article_{FIGSHARE_ARTICLE_ID}_files.json"
USER_AGENT = f"icnn-torch/{__version__} (Python urllib)"
CHUNK_SIZE = 1 << 16
#: Seconds to wait before retry ``k`` (1-based) is ``RETRY_WAIT * k``.
RETRY_WAIT = 0.5


@dataclasses.dataclass(frozen=True)
class FigshareFile:
    """One file of a figshare article: name, file id, size in bytes, md5 (hex or None)."""

    name: str
    id: int
    size: Optional[int]
    md5: Optional[str]


#: KamitaniLab's PyTorch conversions (SPEC section 2), not part of article 7033577.
KAMITANI_VGG19 = FigshareFile("VGG_ILSVRC_19_layers.zip", 38225868, None,
                              "49f4d6dbf1024f33149352dfd309dc4d")
KAMITANI_GENERATOR = FigshareFile("bvlc_reference_caffenet_generator_ILSVRC2012_Training.zip",
                                  38361230, None, "bf9d4de43782cb019de733ed7cf84926")

ALIASES = ("vgg19", "generator", "fc7_bounds", "mean", "std")


def remote_url(key: str) -> str:
    """Address of a remote source: ``figshare_api``, ``figshare_files``, ``vgg19``,
    ``deepsim``, ``fc7_bounds`` or ``icnn_raw``; the environment variable wins over the
    default."""
    env, default = _URL_ENV[key]
    return os.environ.get(env, "").strip() or default


class DownloadError(RuntimeError):
    """A download failed (network, HTTP status, unexpected content)."""


class ChecksumError(DownloadError):
    """A downloaded file does not match its published md5 (or size)."""


# --------------------------------------------------------------------------- the seven scripts

CONV_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
               "conv3_4", "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2",
               "conv5_3", "conv5_4")
POOL_LAYERS = ("pool1", "pool2", "pool3", "pool4", "pool5")
FC_LAYERS = ("fc6", "fc7", "fc8")
ALL_19_LAYERS = CONV_LAYERS + FC_LAYERS
SUBJECTS = ("S1", "S2", "S3")
ROIS = ("V1", "V2", "V3", "V4", "HVC", "VC")
#: Pool layers were decoded for S1 only (SPEC 3).
POOL_SUBJECTS = ("S1",)


@dataclasses.dataclass(frozen=True)
class ScriptData:
    """What one of the seven scripts reads (SPEC section 6)."""

    image_type: str
    network: str
    layers: tuple
    rois: tuple
    labels: tuple
    uses_generator: bool = False


SCRIPTS: Dict[str, ScriptData] = {
    "1_reconstruct_natural_image": ScriptData(
        "natural", "VGG19", ALL_19_LAYERS, ("VC",),
        ("Img0009", "Img0002", "Img0001", "Img0005", "Img0036", "Img0045", "Img0031",
         "Img0043"), uses_generator=True),
    "2_reconstruct_natural_image_without_DGN": ScriptData(
        "natural", "VGG19", ALL_19_LAYERS, ("VC",),
        ("Img0002", "Img0011", "Img0045", "Img0048")),
    "3_reconstruct_natural_image_different_combinations_of_CNN_layers": ScriptData(
        "natural", "VGG19", CONV_LAYERS + ("fc6", "fc7"), ("VC",),
        ("Img0016", "Img0036", "Img0042")),
    "4_reconstruct_shape_image": ScriptData(
        "color_shape", "VGG19", ALL_19_LAYERS, ("VC",),
        tuple(f"Img{i:04d}" for i in range(1, 16))),
    "5_reconstruct_shape_image_different_ROI": ScriptData(
        "color_shape", "VGG19", ALL_19_LAYERS, ROIS, ("Img0004", "Img0008", "Img0011")),
    "6_reconstruct_alphabet_image": ScriptData(
        "alphabet", "VGG19", ALL_19_LAYERS, ("VC",),
        ("Img0005", "Img0003", "Img0010", "Img0007", "Img0006")),
    "7_reconstruct_imagined_image": ScriptData(
        "imagery", "VGG19_leaky", ALL_19_LAYERS, ("VC",),
        ("Img0001", "Img0005", "Img0009", "Img0008", "Img0003", "Img0010", "Img0021",
         "Img0022", "Img0020")),
}


def resolve_script(script_name: str) -> str:
    """Canonical script name from a name, a file name/path (``.py``) or its number."""
    stem = Path(str(script_name)).name
    if stem.endswith(".py"):
        stem = stem[:-3]
    if stem in SCRIPTS:
        return stem
    number = stem.split("_", 1)[0]
    matches = [name for name in SCRIPTS if name.split("_", 1)[0] == number]
    if number.isdigit() and len(matches) == 1 and (stem == number or
                                                   matches[0].startswith(stem)):
        return matches[0]
    raise ValueError(f"unknown script {script_name!r}; known: {', '.join(SCRIPTS)}")


def _as_list(value) -> Optional[List[str]]:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v and v.strip()]


def _script_selection(script_name, subjects, layers, rois):
    name = resolve_script(script_name)
    spec = SCRIPTS[name]
    subjects = _as_list(subjects) or list(SUBJECTS)
    layers = _as_list(layers) or list(spec.layers)
    rois = _as_list(rois) or list(spec.rois)
    known_layers = CONV_LAYERS + POOL_LAYERS + FC_LAYERS
    for subject in subjects:
        if subject not in SUBJECTS:
            raise ValueError(f"unknown subject {subject!r}; known: {', '.join(SUBJECTS)}")
    for layer in layers:
        if layer not in known_layers:
            raise ValueError(f"no decoded features for layer {layer!r}; known: "
                             f"{', '.join(known_layers)}")
        if layer in POOL_LAYERS and any(s not in POOL_SUBJECTS for s in subjects):
            raise ValueError(f"{layer}: pool layers were decoded for "
                             f"{', '.join(POOL_SUBJECTS)} only (asked for {subjects})")
    for roi in rois:
        if roi not in ROIS:
            raise ValueError(f"unknown ROI {roi!r}; known: {', '.join(ROIS)}")
    return name, spec, subjects, layers, rois


def files_for_script(script_name: str, subjects=None, layers=None, rois=None) -> List[str]:
    """Everything a script needs, as download item names.

    Parameters
    ----------
    script_name : str
        ``1_reconstruct_natural_image`` ... ``7_reconstruct_imagined_image`` (also with
        ``.py``, a path, or just the number).
    subjects, layers, rois : list of str or comma-separated str, optional
        Restrict to these (default: the script's own lists, subjects S1 S2 S3). ROIs do
        not change the zips (a zip holds all ROIs) but are checked.

    Returns
    -------
    list of str
        ``vgg19``, then ``generator`` and ``fc7_bounds`` for script 1, the mean file, the
        std file of the script's network, then one decoded-feature zip per subject and
        layer (subject-major, layers in the script's order).
    """
    _, spec, subjects, layers, _ = _script_selection(script_name, subjects, layers, rois)
    items = ["vgg19"]
    if spec.uses_generator:
        items += ["generator", "fc7_bounds"]
    items += [IMAGE_MEAN_FILENAME, FEAT_STD_FILENAMES[spec.network]]
    items += [decoded_feature_zip_name(spec.image_type, spec.network, layer, subject)
              for subject in subjects for layer in layers]
    return items


def expand_aliases(names: Iterable[str]) -> List[str]:
    """``mean`` -> the mean file, ``std`` -> both std files; others unchanged; duplicates
    dropped (first occurrence kept)."""
    out: List[str] = []
    for name in names:
        if name == "mean":
            expanded = [IMAGE_MEAN_FILENAME]
        elif name == "std":
            expanded = list(FEAT_STD_FILENAMES.values())
        else:
            expanded = [name]
        for item in expanded:
            if item not in out:
                out.append(item)
    return out


# --------------------------------------------------------------------------- small helpers

def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(Path(tmp))
        raise


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def file_md5(path: "PathLike") -> str:
    """Hex md5 of a file (read in 1 MiB blocks)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, timeout: float, headers: Optional[dict] = None):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_size(size: Optional[int]) -> str:
    if size is None:
        return "size unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000.0
    return ""


# --------------------------------------------------------------------------- manifest

def manifest_path(data_dir: "PathLike" = DEFAULT_DATA_DIR) -> Path:
    """Where the figshare file list is cached."""
    return Path(data_dir, MANIFEST_FILENAME)


def _parse_manifest(entries, source: str) -> Dict[str, FigshareFile]:
    if not isinstance(entries, list):
        raise ValueError(f"{source}: expected a JSON list of files")
    out = {}
    for entry in entries:
        md5 = entry.get("computed_md5") or entry.get("supplied_md5") or None
        size = entry.get("size")
        out[str(entry["name"])] = FigshareFile(str(entry["name"]), int(entry["id"]),
                                               int(size) if size is not None else None,
                                               str(md5).lower() if md5 else None)
    if not out:
        raise ValueError(f"{source}: the file list is empty")
    return out


def _fetch_manifest_entries(timeout: float) -> list:
    api = remote_url("figshare_api").rstrip("/")
    page_size = 1000
    entries: list = []
    for page in range(1, 21):  # 20,000 files at most; the article has 251
        url = (f"{api}/articles/{FIGSHARE_ARTICLE_ID}/files"
               f"?page_size={page_size}&page={page}")
        try:
            with _open(url, timeout) as response:
                batch = json.loads(response.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
            raise DownloadError(f"could not read the figshare file list from {url}: {err}") \
                from err
        if not isinstance(batch, list):
            raise DownloadError(f"{url}: expected a JSON list, got {type(batch).__name__}")
        entries += batch
        if len(batch) < page_size:
            break
    return entries


def load_manifest(data_dir: "PathLike" = DEFAULT_DATA_DIR, refresh: bool = False,
                  timeout: float = 60.0) -> Dict[str, FigshareFile]:
    """Names, ids, sizes and md5 of the files of figshare article 7033577.

    Read from the cache ``data_dir/figshare_article_7033577_files.json`` when it exists
    (no network), else from the figshare API, then cached (atomic write) in the same
    JSON form the API returns (keys ``id``, ``name``, ``size``, ``computed_md5``,
    ``download_url``).

    Returns
    -------
    dict[str, FigshareFile]
        file name -> entry.
    """
    cache = manifest_path(data_dir)
    if cache.is_file() and not refresh:
        try:
            return _parse_manifest(json.loads(cache.read_text(encoding="utf-8")), str(cache))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is replaced below
    entries = _fetch_manifest_entries(timeout)
    try:
        manifest = _parse_manifest(entries, remote_url("figshare_api"))
    except (ValueError, KeyError, TypeError) as err:
        raise DownloadError(f"unexpected figshare file list: {err}") from err
    files_base = remote_url("figshare_files").rstrip("/")
    cached = [{"id": f.id, "name": f.name, "size": f.size, "computed_md5": f.md5 or "",
               "download_url": f"{files_base}/{f.id}"} for f in manifest.values()]
    _atomic_write_bytes(cache, json.dumps(cached, indent=1).encode("utf-8"))
    return manifest


# --------------------------------------------------------------------------- fetch

class _TransferCut(Exception):
    """The body ended before its Content-Length."""


def _retryable(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    return isinstance(err, (_TransferCut, urllib.error.URLError, http.client.HTTPException,
                            ConnectionError, socket.timeout, TimeoutError))


def _content_range_start(value: Optional[str]) -> Optional[int]:
    match = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(match.group(1)) if match else None


def _transfer_once(url: str, part: Path, size: Optional[int], timeout: float,
                   show_progress: bool, label: str) -> None:
    """One HTTP request appending to (or restarting) ``part``; raises on a cut body."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        _unlink(part)
        have = 0
    if size is not None and have == size:
        return  # already complete; verification decides
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _open(url, timeout, headers)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            return  # nothing beyond what we have: let the checksum decide
        raise
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if have and status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                _unlink(part)  # the next attempt starts from zero
                raise _TransferCut(f"server answered Range bytes={have}- with "
                                   f"Content-Range {response.headers.get('Content-Range')!r}")
            mode = "ab"
        else:  # fresh download, or a server that ignored Range (200): start over
            mode = "wb"
            have = 0
        total = have + length if length is not None else size
        from tqdm import tqdm
        received = 0
        with open(part, mode) as out, tqdm(total=total, initial=have, unit="B",
                                           unit_scale=True, unit_divisor=1024, desc=label,
                                           disable=not show_progress, leave=False) as bar:
            # read1 returns what has arrived (up to CHUNK_SIZE): a read that times out
            # then loses nothing already received, so the resume offset is exact
            while True:
                chunk = response.read1(CHUNK_SIZE)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if length is not None and received < length:
        raise _TransferCut(f"connection closed after {received} of {length} bytes")


def fetch(url: str, dest: "PathLike", md5: Optional[str] = None, size: Optional[int] = None,
          progress: bool = True, timeout: float = 60.0, retries: int = 3,
          label: Optional[str] = None) -> Path:
    """Download ``url`` to ``dest`` with resume and verification.

    Parameters
    ----------
    url : str
    dest : path-like
        Final path; the transfer goes to ``dest + '.part'`` and is renamed only after
        verification. When ``dest`` already exists and matches ``md5`` (or ``size``; or
        always when neither is known) nothing is fetched.
    md5 : str, optional
        Expected hex md5. Without it, ``size`` (bytes) is checked when given.
    progress : bool
        tqdm bar on stderr; shown only when stderr is a terminal.
    timeout : float
        Seconds for connecting and for each read.
    retries : int
        Further attempts after a cut transfer, a timeout, a connection error or an HTTP
        5xx; each resumes from the ``.part`` with ``Range``.
    label : str, optional
        Name used in messages and on the bar (default: ``dest``'s name).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    ChecksumError
        md5/size mismatch; the ``.part`` is deleted, the message names both values.
    DownloadError
        HTTP error or too many failed attempts (the ``.part`` is kept for resuming).
    """
    dest = Path(dest)
    label = label or dest.name
    md5 = md5.lower() if md5 else None
    if dest.is_file():
        if md5 is None and size is None:
            return dest
        if (md5 is not None and file_md5(dest) == md5) or \
                (md5 is None and dest.stat().st_size == size):
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    show_progress = progress and _stderr_is_tty()
    for attempt in range(retries + 1):
        try:
            _transfer_once(url, part, size, timeout, show_progress, label)
            break
        except Exception as err:  # noqa: BLE001 - classified below
            if not _retryable(err):
                if isinstance(err, urllib.error.HTTPError):
                    raise DownloadError(f"{label}: HTTP {err.code} {err.reason} from {url}") \
                        from err
                raise
            if attempt == retries:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{label}: download from {url} failed after {retries + 1} attempt(s): "
                    f"{err}. {kept} bytes are kept in {part}; running the download again "
                    "resumes from there.") from err
            time.sleep(RETRY_WAIT * (attempt + 1))
    if not part.exists():
        raise DownloadError(f"{label}: {url} returned nothing")
    if md5 is not None:
        got = file_md5(part)
        if got != md5:
            got_size = part.stat().st_size
            _unlink(part)
            raise ChecksumError(
                f"{label}: downloaded file is corrupt: md5 {got} ({got_size} bytes) but "
                f"expected {md5}{f' ({size} bytes)' if size is not None else ''}. "
                f"The bad file was deleted; run the download again. Source: {url}")
    elif size is not None:
        got_size = part.stat().st_size
        if got_size != size:
            _unlink(part)
            raise ChecksumError(
                f"{label}: downloaded file has {got_size} bytes, expected {size}. "
                f"The bad file was deleted; run the download again. Source: {url}")
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- unzip

_ZIP_NAME = re.compile(r"^decodedfeatures-(?P<image_type>[^-]+)-(?P<network>[^-]+)-"
                       r"(?P<layer>[^-]+)-(?P<subject>[^-]+)\.zip$")


def parse_decoded_feature_zip_name(name: str) -> Optional[tuple]:
    """``(image_type, network, layer, subject)`` of a decoded-feature zip name, else None."""
    match = _ZIP_NAME.match(Path(name).name)
    return match.group("image_type", "network", "layer", "subject") if match else None


def _member_parts(name: str) -> Optional[List[str]]:
    """Path components of a zip member; None for folders and macOS metadata; error for
    absolute or parent-escaping names."""
    if name.endswith("/"):
        return None
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
        return None
    if name.startswith("/") or ".." in parts or ":" in parts[0]:
        raise DownloadError(f"refusing to unpack member {name!r} (absolute or '..' path)")
    return parts


def _plan_decoded_zip(members: Sequence[str], key: tuple) -> Dict[str, List[str]]:
    """Map each member to its path relative to the subject folder.

    The zip is expected to hold ``decodedfeatures/<it>/<net>/<layer>/<subject>/<roi>/<it>-
    <net>-<layer>-<subject>-<roi>-<label>.mat``, possibly with some of the leading folders
    missing, or everything inside one extra top folder. The smallest number of missing
    leading folders that fits every member is used, and every ``.mat`` must end up as
    ``<roi>/<it>-<net>-<layer>-<subject>-<roi>-*.mat``.
    """
    image_type, network, layer, subject = key
    prefix = ["decodedfeatures", image_type, network, layer, subject]
    file_parts = {m: p for m in members if (p := _member_parts(m)) is not None}

    def attempt(strip: int):
        candidates = {m: p[strip:] for m, p in file_parts.items()}
        if any(not p for p in candidates.values()):
            return None
        for missing in range(len(prefix) + 1):
            tail = prefix[missing:]
            if all(p[:len(tail)] == tail and len(p) > len(tail) for p in candidates.values()):
                plan = {m: p[len(tail):] for m, p in candidates.items()}
                if _layout_ok(plan.values()):
                    return plan
        return None

    def _layout_ok(rel_paths) -> bool:
        mats = [p for p in rel_paths if p[-1].lower().endswith(".mat")]
        stem = f"{image_type}-{network}-{layer}-{subject}-"
        return bool(mats) and all(len(p) == 2 and p[1].startswith(f"{stem}{p[0]}-")
                                  for p in mats)

    plan = attempt(0)
    if plan is None:
        tops = {p[0] for p in file_parts.values()}
        if len(tops) == 1:
            plan = attempt(1)
    if plan is None:
        shown = ", ".join(list(members)[:5])
        raise DownloadError(
            f"decodedfeatures-{image_type}-{network}-{layer}-{subject}.zip does not have the "
            f"expected layout decodedfeatures/{image_type}/{network}/{layer}/{subject}/<roi>/"
            f"{image_type}-{network}-{layer}-{subject}-<roi>-<label>.mat; it holds "
            f"{len(members)} entries such as: {shown}")
    return plan


def unpack_decoded_features_zip(zip_path: "PathLike", data_dir: "PathLike" = DEFAULT_DATA_DIR,
                                key: Optional[tuple] = None) -> Path:
    """Unpack a decoded-feature zip into the original layout.

    The members are checked first (see :func:`_plan_decoded_zip`), extracted into a
    temporary folder under ``data_dir`` and then moved into
    ``data_dir/decodedfeatures/<image_type>/<network>/<layer>/<subject>`` (one rename of
    the whole folder when it does not exist yet, else file by file).

    Parameters
    ----------
    key : (image_type, network, layer, subject), optional
        Default: parsed from the zip's file name.

    Returns
    -------
    Path
        The subject folder.
    """
    zip_path = Path(zip_path)
    key = key or parse_decoded_feature_zip_name(zip_path.name)
    if key is None:
        raise ValueError(f"{zip_path.name} is not named decodedfeatures-<image_type>-"
                         "<network>-<layer>-<subject>.zip")
    target = decoded_feature_dir(data_dir, *key)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{zip_path} is not a valid zip file: {err}") from err
    with archive:
        plan = _plan_decoded_zip(archive.namelist(), key)
        tmp_root = Path(tempfile.mkdtemp(prefix=".unpack-", dir=str(data_dir)))
        try:
            staged = tmp_root / key[3]
            for member, rel in plan.items():
                out_path = staged.joinpath(*rel)
                out_path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(member) as src, open(out_path, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK_SIZE)
                except (zipfile.BadZipFile, OSError) as err:
                    raise DownloadError(f"{zip_path}: cannot extract {member}: {err}") from err
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.replace(staged, target)
            else:
                for rel in plan.values():
                    final = target.joinpath(*rel)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged.joinpath(*rel), final)
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
    return target


def _extract_single(zip_path: Path, member: str, dest: Path) -> Path:
    """Extract one zip member to ``dest`` via a temporary file (CRC checked on read)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(dest.parent), prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with zipfile.ZipFile(zip_path) as archive, archive.open(member) as src, \
                os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_SIZE)
        os.replace(tmp, dest)
    except zipfile.BadZipFile as err:
        _unlink(Path(tmp))
        raise DownloadError(f"{zip_path}: cannot extract {member}: {err}") from err
    except BaseException:
        _unlink(Path(tmp))
        raise
    return dest


def _zip_names(zip_path: Path) -> List[str]:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return [n for n in archive.namelist() if _member_parts(n) is not None]
    except zipfile.BadZipFile as err:
        _unlink(zip_path)
        raise DownloadError(f"{zip_path} is not a valid zip file ({err}); it was deleted, "
                            "run the download again") from err


def _one_member(names: Sequence[str], predicate: Callable[[str], bool], what: str,
                zip_path: Path, prefer: Optional[str] = None) -> str:
    found = [n for n in names if predicate(n)]
    if prefer is not None:
        preferred = [n for n in found if Path(n).name == prefer]
        if len(preferred) == 1:
            return preferred[0]
    if len(found) != 1:
        raise DownloadError(f"{zip_path.name}: expected exactly one {what}, found "
                            f"{len(found)}; the zip holds: {', '.join(names[:20])}")
    return found[0]


# --------------------------------------------------------------------------- items

def _fc7_text_ok(path: Path) -> bool:
    try:
        import numpy as np
        return np.loadtxt(str(path), ndmin=1).size == FC7_UNITS
    except (ValueError, OSError):
        return False


def download_fc7_bounds(data_dir: "PathLike" = DEFAULT_DATA_DIR, progress: bool = True,
                        timeout: float = 60.0) -> Path:
    """fc7.txt from the original repository to ``data_dir/act_range/3x/fc7.txt``
    (md5 :data:`FC7_BOUNDS_MD5`)."""
    return fetch(remote_url("fc7_bounds"), fc7_bounds_path(data_dir), md5=FC7_BOUNDS_MD5,
                 progress=progress, timeout=timeout, label="fc7.txt")


def download_vgg19(net_dir: "PathLike" = DEFAULT_NET_DIR, pytorch: bool = False,
                   progress: bool = True, timeout: float = 60.0) -> Path:
    """VGG19 weights: the VGG group's caffemodel (size-checked, :data:`VGG19_SIZE`) or,
    with ``pytorch``, KamitaniLab's ``VGG_ILSVRC_19_layers.pt`` (zip md5-checked)."""
    if not pytorch:
        return fetch(remote_url("vgg19"), Path(net_dir, VGG19_CAFFEMODEL_RELPATH),
                     size=VGG19_SIZE, progress=progress, timeout=timeout)
    dest = Path(net_dir, VGG19_PT_RELPATH)
    zip_path = dest.with_name(KAMITANI_VGG19.name)
    fetch(f"{remote_url('figshare_files').rstrip('/')}/{KAMITANI_VGG19.id}", zip_path,
          md5=KAMITANI_VGG19.md5, progress=progress, timeout=timeout)
    names = _zip_names(zip_path)
    member = _one_member(names, lambda n: n.endswith(".pt") or n.endswith(".pth"),
                         "PyTorch state dict (.pt)", zip_path, prefer=VGG19_PT_RELPATH.name)
    _extract_single(zip_path, member, dest)
    _unlink(zip_path)
    return dest


def download_generator(net_dir: "PathLike" = DEFAULT_NET_DIR,
                       data_dir: "PathLike" = DEFAULT_DATA_DIR, pytorch: bool = False,
                       progress: bool = True, timeout: float = 60.0) -> Path:
    """The fc7 generator: ``generator.caffemodel`` out of the DeePSiM release zip or, with
    ``pytorch``, KamitaniLab's state dict as ``generator.pt`` (plus its
    ``act_range_3x.txt`` as ``data_dir/act_range/3x/fc7.txt`` when that is absent)."""
    if not pytorch:
        dest = Path(net_dir, GENERATOR_CAFFEMODEL_RELPATH)
        zip_path = dest.with_name("release_deepsim_v0.zip")
        fetch(remote_url("deepsim"), zip_path, progress=progress, timeout=timeout,
              label="release_deepsim_v0.zip")
        names = _zip_names(zip_path)
        member = DEEPSIM_GENERATOR_MEMBER if DEEPSIM_GENERATOR_MEMBER in names else \
            _one_member(names, lambda n: n.endswith("fc7/generator.caffemodel"),
                        "fc7/generator.caffemodel", zip_path)
        _extract_single(zip_path, member, dest)
        _unlink(zip_path)
        return dest
    dest = Path(net_dir, GENERATOR_PT_RELPATH)
    zip_path = dest.with_name(KAMITANI_GENERATOR.name)
    fetch(f"{remote_url('figshare_files').rstrip('/')}/{KAMITANI_GENERATOR.id}", zip_path,
          md5=KAMITANI_GENERATOR.md5, progress=progress, timeout=timeout)
    names = _zip_names(zip_path)
    member = _one_member(names, lambda n: n.endswith(".pt") or n.endswith(".pth"),
                         "PyTorch state dict (.pt)", zip_path)
    bounds = [n for n in names if Path(n).name == "act_range_3x.txt"]
    _extract_single(zip_path, member, dest)
    bounds_dest = fc7_bounds_path(data_dir)
    if bounds and not bounds_dest.exists():
        staged = _extract_single(zip_path, bounds[0],
                                 bounds_dest.with_name(bounds_dest.name + ".bundle"))
        if not _fc7_text_ok(staged):
            _unlink(staged)
            raise DownloadError(f"{zip_path.name}: {bounds[0]} does not hold {FC7_UNITS} "
                                "numbers")
        os.replace(staged, bounds_dest)
    _unlink(zip_path)
    return dest


def download_figshare_file(name: str, data_dir: "PathLike" = DEFAULT_DATA_DIR,
                           manifest: Optional[Dict[str, FigshareFile]] = None,
                           progress: bool = True, timeout: float = 60.0,
                           keep_zip: bool = False) -> Path:
    """One file of article 7033577, fetched by id, md5-checked; a decoded-feature zip is
    unpacked (and deleted unless ``keep_zip``).

    Returns
    -------
    Path
        The file, or the subject folder for a decoded-feature zip.
    """
    manifest = manifest if manifest is not None else load_manifest(data_dir, timeout=timeout)
    entry = manifest.get(name)
    if entry is None:
        raise DownloadError(f"{name!r} is not a file of figshare article "
                            f"{FIGSHARE_ARTICLE_ID} (see python -m icnn_torch.download --list)")
    dest = Path(data_dir, name)
    url = f"{remote_url('figshare_files').rstrip('/')}/{entry.id}"
    fetch(url, dest, md5=entry.md5, size=entry.size, progress=progress, timeout=timeout)
    key = parse_decoded_feature_zip_name(name)
    if key is None:
        return dest
    target = unpack_decoded_features_zip(dest, data_dir, key)
    if not keep_zip:
        _unlink(dest)
    return target


# --------------------------------------------------------------------------- presence

def _item_present(item: str, data_dir, net_dir, expected: Optional[Sequence[Path]]) -> bool:
    if item == "vgg19":
        return Path(net_dir, VGG19_CAFFEMODEL_RELPATH).is_file() or \
            Path(net_dir, VGG19_PT_RELPATH).is_file()
    if item == "generator":
        return Path(net_dir, GENERATOR_CAFFEMODEL_RELPATH).is_file() or \
            Path(net_dir, GENERATOR_PT_RELPATH).is_file()
    if item == "fc7_bounds":
        return fc7_bounds_path(data_dir).is_file()
    key = parse_decoded_feature_zip_name(item)
    if key is None:
        return Path(data_dir, item).is_file()
    if expected:
        return all(p.is_file() for p in expected)
    folder = decoded_feature_dir(data_dir, *key)
    return folder.is_dir() and any(folder.glob("*/*.mat"))


def missing_items(items: Sequence[str], data_dir: "PathLike" = DEFAULT_DATA_DIR,
                  net_dir: "PathLike" = DEFAULT_NET_DIR,
                  expected: Optional[Dict[str, List[Path]]] = None) -> List[str]:
    """The items (names as in :func:`files_for_script`) whose files are absent.

    A decoded-feature zip counts as present when all its ``expected`` files exist, or,
    without a list, when its subject folder holds at least one ``<roi>/*.mat``. Weights
    count as present in either form (caffemodel or KamitaniLab ``.pt``).
    """
    expected = expected or {}
    return [item for item in expand_aliases(items)
            if not _item_present(item, data_dir, net_dir, expected.get(item))]


def _expected_feature_files(script_name, subjects, layers, rois, data_dir, labels=None):
    _, spec, subjects, layers, rois = _script_selection(script_name, subjects, layers, rois)
    labels = _as_list(labels) or list(spec.labels)
    out: Dict[str, List[Path]] = {}
    for subject in subjects:
        for layer in layers:
            zip_name = decoded_feature_zip_name(spec.image_type, spec.network, layer, subject)
            out[zip_name] = [decoded_feature_path(data_dir, spec.image_type, spec.network,
                                                  layer, subject, roi, label)
                             for roi in rois for label in labels]
    return out


def download_item(item: str, data_dir: "PathLike" = DEFAULT_DATA_DIR,
                  net_dir: "PathLike" = DEFAULT_NET_DIR, pytorch: bool = False,
                  progress: bool = True, timeout: float = 60.0,
                  manifest: Optional[Dict[str, FigshareFile]] = None) -> Path:
    """Fetch one item: ``vgg19``, ``generator``, ``fc7_bounds`` or a figshare file name
    (aliases ``mean``/``std`` must be expanded first, see :func:`expand_aliases`)."""
    if item == "vgg19":
        return download_vgg19(net_dir, pytorch=pytorch, progress=progress, timeout=timeout)
    if item == "generator":
        return download_generator(net_dir, data_dir, pytorch=pytorch, progress=progress,
                                  timeout=timeout)
    if item == "fc7_bounds":
        return download_fc7_bounds(data_dir, progress=progress, timeout=timeout)
    return download_figshare_file(item, data_dir, manifest=manifest, progress=progress,
                                  timeout=timeout)


def _env_assume_yes() -> Optional[bool]:
    value = os.environ.get("ICNN_TORCH_ASSUME_YES", "").strip().lower()
    if value in ("1", "y", "yes", "true"):
        return True
    if value in ("0", "n", "no", "false"):
        return False
    return None


def _cached_manifest(data_dir) -> Dict[str, FigshareFile]:
    """The cached file list, or {} (never the network)."""
    cache = manifest_path(data_dir)
    try:
        return _parse_manifest(json.loads(cache.read_text(encoding="utf-8")), str(cache))
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _known_size(item: str, cached: Dict[str, FigshareFile]) -> Optional[int]:
    if item == "vgg19":
        return VGG19_SIZE
    entry = cached.get(item)
    return entry.size if entry else None


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def ensure_files(script_name: Optional[str] = None, names: Sequence[str] = (),
                 subjects=None, layers=None, rois=None, labels=None,
                 data_dir: "PathLike" = DEFAULT_DATA_DIR, net_dir: "PathLike" = DEFAULT_NET_DIR,
                 pytorch: bool = False, assume_yes: Optional[bool] = None,
                 progress: bool = True, timeout: float = 60.0,
                 stdin: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
                 expected: Optional[Dict[str, List[Path]]] = None,
                 command_args: str = "") -> List[str]:
    """Make sure a script's files (and/or the named items) are present; fetch what is not.

    Parameters
    ----------
    script_name : str, optional
        One of the seven scripts (see :func:`files_for_script`).
    names : sequence of str
        Further items: figshare file names or ``vgg19``/``generator``/``fc7_bounds``/
        ``mean``/``std``.
    subjects, layers, rois : optional
        Restrict the script's selection.
    labels : optional
        The image labels whose feature files must exist (default: the script's); a zip
        holds every label, so this only changes what counts as present.
    assume_yes : bool or None
        True: download without asking. False: never download, raise. None: use
        ``ICNN_TORCH_ASSUME_YES`` when set, else ask ``[y/N]`` once when ``stdin`` is a
        terminal and raise when it is not.
    stdin, stderr : streams, optional
        Where the question is read from / written to (default ``sys.stdin``/``sys.stderr``).

    Returns
    -------
    list of str
        The items downloaded (empty when all were present; then no network is used).

    Raises
    ------
    MissingDataError
        Something is missing and downloading was declined or not allowed; the message
        lists the files and the ``python -m icnn_torch.download`` command.
    DownloadError, ChecksumError
        A download failed.
    """
    stdin = stdin if stdin is not None else sys.stdin
    stderr = stderr if stderr is not None else sys.stderr
    items: List[str] = []
    expected = dict(expected or {})
    if script_name is not None:
        items += files_for_script(script_name, subjects, layers, rois)
        expected = _expected_feature_files(script_name, subjects, layers, rois, data_dir, labels)
    items = expand_aliases(items + list(names))
    missing = missing_items(items, data_dir, net_dir, expected)
    if not missing:
        return []

    extra = []
    if script_name is not None:
        extra.append(f"--script {resolve_script(script_name)}")
        for flag, value in (("--subjects", subjects), ("--layers", layers), ("--rois", rois)):
            if value:
                extra.append(f"{flag} {','.join(_as_list(value))}")
    if command_args:
        extra.append(command_args)
    if pytorch:
        extra.append("--pytorch")
    script_items = set(files_for_script(script_name, subjects, layers, rois)) \
        if script_name is not None else set()
    command = download_command([m for m in missing if m not in script_items],
                               data_dir=data_dir, net_dir=net_dir, extra_args=" ".join(extra))
    cached = _cached_manifest(data_dir)
    missing_shown = [m if _known_size(m, cached) is None
                     else f"{m} ({_fmt_size(_known_size(m, cached))})" for m in missing]
    title = (f"{len(missing)} item(s) needed"
             f"{f' by {resolve_script(script_name)}' if script_name else ''} are missing "
             f"(data dir {data_dir}, net dir {net_dir}):")

    if assume_yes is None:
        assume_yes = _env_assume_yes()
    if assume_yes is None:
        if not _is_tty(stdin):
            raise MissingDataError(missing_shown, command, title=title,
                                   detail="(not asking: standard input is not a terminal)")
        stderr.write("These files are needed and missing:\n  " + "\n  ".join(missing_shown)
                     + "\nDownload them now? [y/N] ")
        stderr.flush()
        answer = stdin.readline().strip().lower()
        assume_yes = answer in ("y", "yes")
    if not assume_yes:
        raise MissingDataError(missing_shown, command, title=title)

    manifest = None
    if any(m not in ("vgg19", "generator", "fc7_bounds") for m in missing):
        manifest = load_manifest(data_dir, timeout=timeout)
    fetched = []
    for number, item in enumerate(missing, 1):
        # the generator bundle may have brought the fc7 bounds along
        if fetched and _item_present(item, data_dir, net_dir, expected.get(item)):
            continue
        stderr.write(f"[{number}/{len(missing)}] {item}\n")
        stderr.flush()
        download_item(item, data_dir, net_dir, pytorch=pytorch, progress=progress,
                      timeout=timeout, manifest=manifest)
        fetched.append(item)
    return fetched


def items_for_plan(plan, data_dir: "PathLike" = DEFAULT_DATA_DIR,
                   features_dir: Optional["PathLike"] = None) -> List[str]:
    """The download items a run needs, from its plan (:class:`icnn_torch.config.RunPlan`).

    ``vgg19``; ``generator`` and ``fc7_bounds`` exactly when the engine optimises the
    generator input; the mean file; the std file of the plan's network; and, when the
    features are read from the published tree (``features_dir`` None or
    ``data_dir/decodedfeatures``), one decoded-feature zip per subject and layer.
    """
    items = ["vgg19"] + (["generator", "fc7_bounds"] if plan.uses_generator else [])
    items += [IMAGE_MEAN_FILENAME, FEAT_STD_FILENAMES[plan.network]]
    if _is_published_tree(data_dir, features_dir):
        items += [decoded_feature_zip_name(plan.image_type, plan.network, layer, subject)
                  for subject in plan.subjects for layer in plan.all_layers]
    return items


def _is_published_tree(data_dir, features_dir) -> bool:
    return features_dir is None or \
        Path(features_dir).resolve() == Path(data_dir, "decodedfeatures").resolve()


def ensure_plan_files(plan, *, data_dir: "PathLike" = DEFAULT_DATA_DIR,
                      net_dir: "PathLike" = DEFAULT_NET_DIR,
                      features_dir: Optional["PathLike"] = None, script_arg: str = "",
                      pytorch: bool = False, assume_yes: Optional[bool] = None,
                      progress: bool = True, timeout: float = 60.0,
                      stdin: Optional[TextIO] = None,
                      stderr: Optional[TextIO] = None) -> List[str]:
    """Make sure every file of a run plan is present; fetch what is not (see
    :func:`ensure_files` for ``assume_yes`` and the streams).

    Parameters
    ----------
    plan : icnn_torch.config.RunPlan
    features_dir : path, optional
        The decoded-feature tree the run reads (default ``data_dir/decodedfeatures``, the
        published one, whose zips are downloaded); another tree is only checked.
    script_arg : str
        How the user named the script, for the download command in error messages.
    """
    items = items_for_plan(plan, data_dir, features_dir)
    published = _is_published_tree(data_dir, features_dir)
    root = Path(data_dir, "decodedfeatures") if published else Path(features_dir)
    expected: Dict[str, List[Path]] = {}
    for subject in plan.subjects:
        for layer in plan.all_layers:
            files = [decoded_feature_path(root.parent, plan.image_type, plan.network, layer,
                                          subject, roi, label)
                     if published else
                     Path(root, plan.image_type, plan.network, layer, subject, roi,
                          f"{plan.image_type}-{plan.network}-{layer}-{subject}-{roi}-{label}.mat")
                     for roi in plan.rois for label in plan.labels]
            if published:
                expected[decoded_feature_zip_name(plan.image_type, plan.network, layer,
                                                  subject)] = files
            else:
                absent = [f for f in files if not f.is_file()]
                if absent:
                    raise MissingDataError(absent, "(none: this decoded-feature tree is not "
                                           "the published one; decode the features into it)")
    args = f"--script {script_arg}" if script_arg else ""
    return ensure_files(None, items, data_dir=data_dir, net_dir=net_dir, pytorch=pytorch,
                        assume_yes=assume_yes, progress=progress, timeout=timeout,
                        stdin=stdin, stderr=stderr, expected=expected, command_args=args)


# --------------------------------------------------------------------------- CLI

def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.download",
        description="Download the decoded features, std files, image mean, fc7 bounds and "
                    "network weights of the Deep Image Reconstruction demo. Files already "
                    "present are skipped.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="figshare file name of article 7033577, or vgg19, generator, "
                             "fc7_bounds, mean, std")
    parser.add_argument("--script", help="everything this script needs (name or number)")
    parser.add_argument("--subjects", help="comma-separated, e.g. S1,S2 (with --script)")
    parser.add_argument("--layers", help="comma-separated, e.g. conv1_1,fc7 (with --script)")
    parser.add_argument("--rois", help="comma-separated, e.g. VC,V1 (with --script)")
    parser.add_argument("--pytorch", action="store_true",
                        help="KamitaniLab's PyTorch conversions of VGG19 and the generator "
                             "instead of the caffemodels")
    parser.add_argument("-y", "--yes", action="store_true",
                        help="do not ask for confirmation on a terminal")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--net-dir", default=DEFAULT_NET_DIR)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true",
                        help="print the files of the figshare article and exit")
    parser.add_argument("--refresh-list", action="store_true",
                        help="re-read the file list from figshare instead of the cache")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per read")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.list or args.refresh_list:
            manifest = load_manifest(args.data_dir, refresh=args.refresh_list,
                                     timeout=args.timeout)
            if args.list:
                for entry in sorted(manifest.values(), key=lambda e: e.name):
                    print(f"{entry.name}\t{entry.id}\t{entry.size}\t{entry.md5}")
            if not args.names and not args.script:
                return 0
        if not args.names and not args.script:
            parser.print_usage(sys.stderr)
            print("nothing to download: give NAMEs or --script (see --help)", file=sys.stderr)
            return 2
        if not args.script and (args.subjects or args.layers or args.rois):
            parser.error("--subjects/--layers/--rois select within --script")
        for name in args.names:
            if name not in ALIASES and "/" in name:
                parser.error(f"{name!r}: give a file name, not a path")
        assume_yes = True if (args.yes or not _is_tty(sys.stdin)) else None
        fetched = ensure_files(args.script, args.names, subjects=args.subjects,
                               layers=args.layers, rois=args.rois, data_dir=args.data_dir,
                               net_dir=args.net_dir, pytorch=args.pytorch,
                               assume_yes=assume_yes, progress=not args.no_progress,
                               timeout=args.timeout)
    except (DownloadError, MissingDataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; partial downloads are kept as *.part and resume next time",
              file=sys.stderr)
        return 130
    print(f"done: {len(fetched)} item(s) downloaded" if fetched
          else "all requested files are present", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
