"""The record every downloadable item fills: where the items land (:class:`Place`), how big a
download is (:class:`Size`, estimates marked), whether an item is there (:class:`Check`),
and the item itself (:class:`Item`: its targets, sizes, description, check and fetch).
The kinds of item: :mod:`~icnn_torch.fetch.weights` (the nets' weights and the generator
bounds), :mod:`~icnn_torch.fetch.datafiles` (the published data); the registry of names:
:mod:`~icnn_torch.fetch.items`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .._util import PathLike, file_md5
from ..store.fmri_files import default_fmri_dir
from ..store.layout import DEFAULT_DATA_DIR, DEFAULT_NET_DIR
from ..store.published import FigshareFile
from .figshare import article_files
from .http import remote_url

__all__ = ["Place", "Size", "human_bytes", "Check", "check_file", "Item", "figshare_url"]


@dataclasses.dataclass(frozen=True)
class Place:
    """Where the items land and which form of the weights is wanted.

    Attributes
    ----------
    data_dir, net_dir : Path
    pytorch : bool
        KamitaniLab's PyTorch conversions of the weights instead of the caffemodels.
    files : dict
        The article's file list (:func:`~icnn_torch.fetch.figshare.article_files`).
    fmri_dir : Path, optional
        Where the published fMRI files go; default ``<data_dir>/fmri``, as the original.
    """

    data_dir: Path
    net_dir: Path
    pytorch: bool = False
    files: Dict[str, FigshareFile] = dataclasses.field(default_factory=dict, repr=False)
    fmri_dir: Optional[Path] = None

    @classmethod
    def at(cls, data_dir: PathLike = DEFAULT_DATA_DIR, net_dir: PathLike = DEFAULT_NET_DIR,
           pytorch: bool = False, fmri_dir: Optional[PathLike] = None) -> "Place":
        """The place of ``data_dir`` / ``net_dir`` (and ``fmri_dir``), with the article's
        file list read."""
        return cls(Path(data_dir), Path(net_dir), pytorch, article_files(data_dir),
                   None if fmri_dir is None else Path(fmri_dir))

    @property
    def fmri_folder(self) -> Path:
        """Where the published fMRI files go (:attr:`fmri_dir`, else ``<data_dir>/fmri``)."""
        return default_fmri_dir(self.data_dir) if self.fmri_dir is None else Path(self.fmri_dir)


@dataclasses.dataclass(frozen=True)
class Size:
    """A download's size in bytes; ``estimated`` when no source publishes it."""

    bytes: Optional[int]
    estimated: bool = False

    def __str__(self) -> str:
        if self.bytes is None:
            return "size unknown"
        if self.estimated:
            return f"~{human_bytes(self.bytes)}, estimated"
        return f"{self.bytes:,} bytes"


def human_bytes(n: float) -> str:
    """``1.5 GB``-style size (powers of 1000)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    raise AssertionError("unreachable")


@dataclasses.dataclass(frozen=True)
class Check:
    """Whether an item is present, and how that was found.

    Attributes
    ----------
    state : {"present", "absent", "damaged", "incomplete"}
    detail : str
        Why it is damaged or incomplete.
    how : str
        What was checked: ``"md5"``, ``"size"``, ``"loading"``, ``"reading every file"``...
    """

    state: str
    detail: str = ""
    how: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "present"

    def __str__(self) -> str:
        return self.state if not self.detail else f"{self.state}: {self.detail}"


def check_file(path: Path, size: Optional[int], md5: Optional[str], verify: bool) -> Check:
    """The size (always, when known) and, with ``verify``, the md5 (when known)."""
    if not path.is_file():
        return Check("absent")
    have = path.stat().st_size
    if size is not None and have != size:
        return Check("damaged", f"{path} has {have:,} bytes, expected {size:,}", "size")
    if verify and md5 is not None:
        got = file_md5(path)
        if got != md5:
            return Check("damaged", f"the md5 of {path} is {got}, not the published {md5}",
                         "md5")
        return Check("present", how="md5")
    return Check("present", how="size" if size is not None else "presence")


class Item:
    """One downloadable item (see the module docstring)."""

    name: str = ""

    def targets(self, place: Place) -> List[Path]:
        """The files that are there once the item is."""
        raise NotImplementedError

    def size(self, place: Place) -> Size:
        """The size of what is transferred."""
        raise NotImplementedError

    def unpacked_size(self, place: Place) -> Size:
        """What the item occupies once in place (a zip's contents)."""
        return self.size(place)

    def transient_size(self, place: Place) -> Size:
        """What lies on disk only while the item is fetched (an archive, deleted once its
        contents are out)."""
        return Size(0)

    def verifiable_by_md5(self, place: Place) -> bool:
        """Whether ``verify`` can compare the item's files with a published md5."""
        return False

    def describe(self, place: Place) -> str:
        """The item's line in a dry run or a prompt."""
        size = self.size(place)
        return self.name if size.bytes is None else f"{self.name} ({size})"

    def check(self, place: Place, verify: bool = False,
              expected: Optional[Sequence[Path]] = None) -> Check:
        raise NotImplementedError

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        raise NotImplementedError


def figshare_url(entry: FigshareFile) -> str:
    """Where figshare serves a file (by its id)."""
    return f"{remote_url('figshare_files').rstrip('/')}/{entry.id}"
