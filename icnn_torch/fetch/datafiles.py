"""The items of the published data: the files of figshare article 7033577 (the std files
and the image mean, landing as they are; the decoded-feature zips, unpacked into the tree)
and the published fMRI files (BData, for ``decode_features.py``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import DamagedFileError
from ..nets.tables import VGG19_FEATURE_SHAPES
from ..store.features import load_feat
from ..store.fmri_files import FMRI_FIGSHARE_IDS, check_bdata_file
from ..store.layout import FEAT_STD_FILENAMES, decoded_feature_dir
from ..store.published import PUBLISHED_ROIS, FigshareFile, published_labels
from .base import Check, Item, Place, Size, check_file, figshare_url
from .http import fetch, remote_url
from .unpack import unpack_and_delete

__all__ = ["ArticleFile", "DecodedFeatures", "FmriFile"]

#: Bytes a MATLAB v5 file adds to the array it holds (header and tags), for estimates.
_MAT_OVERHEAD = 400
#: Estimated sizes of the article's small files (no size is published): the image mean
#: is a 3x256x256 float64 array in a .npy file, a std file one (1,1) float32 variable per
#: blob of its network (about 40).
_ESTIMATES = {"ilsvrc_2012_mean.npy": 3 * 256 * 256 * 8 + 128,
              **{name: 40 * 72 for name in FEAT_STD_FILENAMES.values()}}


class ArticleFile(Item):
    """A file of figshare article 7033577 that lands in the data folder as it is."""

    def __init__(self, name: str) -> None:
        self.name = name

    def entry(self, place: Place) -> FigshareFile:
        return place.files[self.name]

    def targets(self, place: Place) -> List[Path]:
        return [Path(place.data_dir, self.name)]

    def size(self, place: Place) -> Size:
        known = self.entry(place).size
        if known is None and self.name in _ESTIMATES:
            return Size(_ESTIMATES[self.name], estimated=True)
        return Size(known)

    def verifiable_by_md5(self, place: Place) -> bool:
        return self.entry(place).md5 is not None

    def check(self, place: Place, verify: bool = False,
              expected: Optional[Sequence[Path]] = None) -> Check:
        entry = self.entry(place)
        return check_file(self.targets(place)[0], entry.size, entry.md5, verify)

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        entry = self.entry(place)
        fetch(figshare_url(entry), Path(place.data_dir, self.name), md5=entry.md5,
              size=entry.size, progress=progress, timeout=timeout)


class DecodedFeatures(ArticleFile):
    """A decoded-feature zip: one layer of one subject, every ROI and image label."""

    def __init__(self, name: str, key: tuple) -> None:
        super().__init__(name)
        self.key = key

    def targets(self, place: Place) -> List[Path]:
        return sorted(decoded_feature_dir(place.data_dir, *self.key).glob("*/*.mat"))

    def unpacked_size(self, place: Place) -> Size:
        image_type, network, layer, _subject = self.key
        units = math.prod(VGG19_FEATURE_SHAPES.get(layer, (0,)))
        files = len(PUBLISHED_ROIS) * len(published_labels(image_type))
        return Size(files * (units * 4 + _MAT_OVERHEAD), estimated=True)

    def size(self, place: Place) -> Size:
        known = self.entry(place).size
        return Size(known) if known is not None else self.unpacked_size(place)

    def transient_size(self, place: Place) -> Size:
        return self.size(place)

    def verifiable_by_md5(self, place: Place) -> bool:
        return False  # the zip is deleted once unpacked: its files are read instead

    def check(self, place: Place, verify: bool = False,
              expected: Optional[Sequence[Path]] = None) -> Check:
        paths = list(expected or self.targets(place))
        absent = [p for p in paths if not p.is_file()]
        if absent or not paths:
            return Check("absent") if len(absent) == len(paths) else \
                Check("incomplete", f"{len(absent)} of {len(paths)} files absent, e.g. "
                                    f"{absent[0]}", "presence")
        if not verify:
            return Check("present", how="presence")
        for path in paths:
            try:
                load_feat(path, self.name)
            except DamagedFileError as err:
                return Check("damaged", f"{err.path} cannot be read", "reading every file")
        return Check("present", how="reading every file")

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        entry = self.entry(place)
        fetch(figshare_url(entry), Path(place.data_dir, self.name), md5=entry.md5,
              size=entry.size, progress=progress, timeout=timeout,
              processor=unpack_and_delete(place.data_dir, self.key))


class FmriFile(Item):
    """A published fMRI file of the original (a BData file; no size or md5 published)."""

    def __init__(self, name: str, key: tuple) -> None:
        self.name, self.key = name, key

    def targets(self, place: Place) -> List[Path]:
        return [place.fmri_folder / self.name]

    def size(self, place: Place) -> Size:
        return Size(None)  # not published; no voxel count to estimate it from either

    def describe(self, place: Place) -> str:
        return f"{self.name} -> {self.targets(place)[0]} (figshare file " \
               f"{FMRI_FIGSHARE_IDS[self.key]}; {self.size(place)})"

    def check(self, place: Place, verify: bool = False,
              expected: Optional[Sequence[Path]] = None) -> Check:
        path = self.targets(place)[0]
        if not path.is_file():
            return Check("absent")
        if not verify:
            return Check("present", how="presence")
        try:
            check_bdata_file(path, self.name)
        except DamagedFileError as err:
            return Check("damaged", f"{path}: {err.reason}", "reading as BData")
        return Check("present", how="reading as BData")

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        path = self.targets(place)[0]
        if check.state != "absent":  # no md5: the downloader would keep what is there
            path.unlink(missing_ok=True)
        fetch(f"{remote_url('figshare_files').rstrip('/')}/{FMRI_FIGSHARE_IDS[self.key]}",
              path, progress=progress, timeout=timeout)
        try:
            check_bdata_file(path, self.name)
        except DamagedFileError:
            path.unlink()  # an error page or a cut file is no BData file: not kept
            raise
