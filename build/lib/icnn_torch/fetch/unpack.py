"""Unpacking what the downloads bring: the decoded-feature zips of the published data (into
the original tree, checked first) and single members of the weight archives.

Each is a pooch processor ``(path, action, pooch) -> path`` that deletes the zip once
unpacked; every file lands through a temporary name (never half-written), and zipfile
checks each member's CRC.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from .._util import PathLike, atomic_output, file_md5
from ..errors import DownloadError
from ..store.layout import (DEFAULT_DATA_DIR, decoded_feature_dir, decoded_feature_zip_name,
                            parse_decoded_feature_zip_name)
from ..store.net_data import load_fc7_upper_bound

__all__ = ["unpack_decoded_features_zip", "unpack_and_delete", "take_member",
           "BUNDLE_BOUNDS_MEMBER"]

CHUNK_SIZE = 1 << 16
#: The generator input bounds inside KamitaniLab's PyTorch generator bundle.
BUNDLE_BOUNDS_MEMBER = "act_range_3x.txt"


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
def _open_zip(zip_path: Path) -> Iterator[zipfile.ZipFile]:
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


def unpack_and_delete(data_dir: PathLike, key: tuple) -> Callable:
    """The pooch processor of a decoded-feature zip: unpack it, then delete it."""
    def process(fname: str, action: str, pooch) -> Path:
        target = unpack_decoded_features_zip(fname, data_dir, key)
        Path(fname).unlink()
        return target
    return process


def take_member(dest: Path, pick: Callable[[str], bool], what: str,
                bounds: Optional[tuple[Path, Path, str]] = None) -> Callable:
    """A pooch processor: the zip's member ``pick`` selects becomes ``dest`` (the one named
    like ``dest`` when several are picked); then the zip is deleted.

    Parameters
    ----------
    bounds : (kept, fc7_txt, md5), optional
        For KamitaniLab's generator bundle: its member ``act_range_3x.txt`` (the generator
        input bounds, checked to be 4096 numbers) is kept apart as ``kept``; only when
        its md5 is ``md5`` (the original ``fc7.txt``'s) does it also become ``fc7_txt``
        (when absent). Bounds of other values never replace the original's silently.
    """
    def process(fname: str, action: str, pooch) -> Path:
        with _open_zip(Path(fname)) as archive:
            names = [n for n in archive.namelist() if _member_parts(n) is not None]
            found = [n for n in names if pick(n)]
            found = [n for n in found if Path(n).name == dest.name] or found
            if len(found) != 1:
                raise DownloadError(f"{Path(fname).name}: expected exactly one {what}, found "
                                    f"{len(found)}; the zip holds: {', '.join(names[:20])}")
            _extract(archive, found[0], dest)
            members = [n for n in names if Path(n).name == BUNDLE_BOUNDS_MEMBER]
            if bounds is not None and members:
                kept, fc7_txt, md5 = bounds
                _extract(archive, members[0], kept)
                load_fc7_upper_bound(kept)  # 4096 numbers, or DamagedFileError
                if file_md5(kept) == md5 and not fc7_txt.exists():
                    with atomic_output(fc7_txt) as tmp:
                        shutil.copyfile(kept, tmp)
        Path(fname).unlink()
        return dest
    return process


def _extract(archive: zipfile.ZipFile, member: str, target: Path) -> None:
    with atomic_output(target) as tmp:
        with archive.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_SIZE)
