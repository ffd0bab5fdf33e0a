"""What can be downloaded: one record per item, each knowing where it lands, its size, how it
is checked, where it comes from and how it is unpacked.

Items (the names of ``python -m icnn_torch.download``):

- ``vgg19``: ``net/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel`` from the VGG
  group (size and md5 known), or with ``pytorch`` KamitaniLab's ``VGG_ILSVRC_19_layers.pt``
  (from a figshare zip, md5 of the zip known);
- ``generator``: ``net/generator_for_inverting_fc7/generator.caffemodel``, the member
  ``release_deepsim_v0/fc7/generator.caffemodel`` of the DeePSiM release zip (no size or
  md5 published), or KamitaniLab's ``generator.pt`` (its bundle's generator input bounds
  are kept apart, and used as ``fc7.txt`` only when they are the original's file);
- ``fc7_bounds``: ``data/act_range/3x/fc7.txt`` from the original repository (size and md5
  of the original file);
- a file of figshare article 7033577 (``--list``): the std files and the image mean into
  ``data/``, and the decoded-feature zips, unpacked into
  ``data/decodedfeatures/<image_type>/<network>/<layer>/<subject>/`` and deleted;
- a published fMRI file of the original (``fmri``: all six), e.g.
  ``sub-01_perceptionNaturalImageTraining_original_VC.h5``, into the fMRI folder
  (:mod:`icnn_torch.store.fmri_files`; no size or md5 published: present when it exists,
  checked to be a BData file with ``verify`` and after each download).

A file of another size than the known one never counts as present; with ``verify`` the
md5 is checked where one is known, weights without one are loaded, decoded features read.
Sizes that no source publishes (the DeePSiM zip, KamitaniLab's zips, the decoded-feature
zips until ``--refresh-list``) are estimated from the layer shapes and label counts and
marked as estimates.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from .._util import PathLike, file_md5
from ..errors import DamagedFileError, DownloadError, IcnnTorchError
from ..nets.tables import GENERATOR_PARAMETERS, VGG19_FEATURE_SHAPES, VGG19_PARAMETERS
from ..store.features import load_feat
from ..store.layout import (DEFAULT_DATA_DIR, DEFAULT_NET_DIR, FEAT_STD_FILENAMES,
                            FC7_BOUNDS_RELPATH, GENERATOR_CAFFEMODEL_RELPATH,
                            GENERATOR_PT_RELPATH, IMAGE_MEAN_FILENAME, VGG19_CAFFEMODEL_RELPATH,
                            VGG19_PT_RELPATH, decoded_feature_dir, decoded_feature_zip_name,
                            feat_std_path, is_published_tree, parse_decoded_feature_zip_name)
from ..store.fmri_files import (FMRI_FIGSHARE_IDS, check_bdata_file, default_fmri_dir,
                                parse_fmri_file_name, published_fmri_names)
from ..store.published import ARTICLE_ID, PUBLISHED_ROIS, FigshareFile, published_labels
from .figshare import article_files
from .http import fetch, remote_url
from .unpack import take_member, unpack_and_delete

if TYPE_CHECKING:
    from ..run.config import RunPlan

__all__ = ["Place", "Size", "Check", "Item", "item", "items_for_plan", "expand_aliases",
           "WEIGHT_ITEMS", "ALIASES", "VGG19_SIZE", "VGG19_MD5", "FC7_BOUNDS_SIZE",
           "FC7_BOUNDS_MD5", "KAMITANI_VGG19", "KAMITANI_GENERATOR", "DEEPSIM_GENERATOR_MEMBER",
           "BUNDLE_BOUNDS_NAME"]

#: Size of VGG_ILSVRC_19_layers.caffemodel.
VGG19_SIZE = 574_671_192
#: Its md5. The VGG group and the Model Zoo gist publish none; three independent public
#: sources agree on this one (jcjohnson/neural-style issue 49, a neural-style launcher
#: script that also states the size above, KelpNet's VGG19 sample).
VGG19_MD5 = "b5c644beabd7cf06bdd9065cfd674c97"
#: Size and md5 of the original repository's data/act_range/3x/fc7.txt.
FC7_BOUNDS_SIZE = 8192
FC7_BOUNDS_MD5 = "2c8c35ff45e71165460facc12cd4abf6"
#: The member of release_deepsim_v0.zip that is the fc7 generator.
DEEPSIM_GENERATOR_MEMBER = "release_deepsim_v0/fc7/generator.caffemodel"
#: KamitaniLab's PyTorch conversions (not part of article 7033577).
KAMITANI_VGG19 = FigshareFile("VGG_ILSVRC_19_layers.zip", 38225868, None,
                              "49f4d6dbf1024f33149352dfd309dc4d")
KAMITANI_GENERATOR = FigshareFile("bvlc_reference_caffenet_generator_ILSVRC2012_Training.zip",
                                  38361230, None, "bf9d4de43782cb019de733ed7cf84926")
#: Where the generator input bounds of KamitaniLab's bundle are kept, apart from the
#: original's ``fc7.txt`` (in the same folder).
BUNDLE_BOUNDS_NAME = "fc7_kamitanilab_pytorch_bundle.txt"

WEIGHT_ITEMS = ("vgg19", "generator", "fc7_bounds")
ALIASES = WEIGHT_ITEMS + ("mean", "std", "fmri")
#: Bytes a MATLAB v5 file adds to the array it holds (header and tags), for estimates.
_MAT_OVERHEAD = 400
#: Estimated sizes of the article's small files (no size is published): the image mean
#: is a 3x256x256 float64 array in a .npy file, a std file one (1,1) float32 variable per
#: blob of its network (about 40).
_ESTIMATES = {"ilsvrc_2012_mean.npy": 3 * 256 * 256 * 8 + 128,
              **{name: 40 * 72 for name in FEAT_STD_FILENAMES.values()}}


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


def _check_file(path: Path, size: Optional[int], md5: Optional[str], verify: bool) -> Check:
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


class _Weights(Item):
    """VGG19 or the DeePSiM generator: a caffemodel, or KamitaniLab's ``.pt`` file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _rels(self) -> tuple[Path, Path]:
        return (VGG19_CAFFEMODEL_RELPATH, VGG19_PT_RELPATH) if self.name == "vgg19" else \
            (GENERATOR_CAFFEMODEL_RELPATH, GENERATOR_PT_RELPATH)

    def _bundle(self) -> FigshareFile:
        return KAMITANI_VGG19 if self.name == "vgg19" else KAMITANI_GENERATOR

    def _caffemodel_known(self) -> tuple[Optional[int], Optional[str]]:
        return (VGG19_SIZE, VGG19_MD5) if self.name == "vgg19" else (None, None)

    def targets(self, place: Place) -> List[Path]:
        caffe, pt = self._rels()
        return [Path(place.net_dir, pt if place.pytorch else caffe)]

    def size(self, place: Place) -> Size:
        known, _ = self._caffemodel_known()
        if known is not None and not place.pytorch:
            return Size(known)
        parameters = VGG19_PARAMETERS if self.name == "vgg19" else GENERATOR_PARAMETERS
        return Size(parameters * 4, estimated=True)  # float32 weights; a zip holds more

    def transient_size(self, place: Place) -> Size:
        if self.name == "vgg19" and not place.pytorch:
            return Size(0)
        return self.size(place)  # the release or bundle zip: at least the weights

    def verifiable_by_md5(self, place: Place) -> bool:
        return not place.pytorch and self._caffemodel_known()[1] is not None

    def describe(self, place: Place) -> str:
        target = self.targets(place)[0]
        if place.pytorch:
            return f"{self.name} -> {target} (from figshare file {self._bundle().name}; " \
                   f"{self.size(place)})"
        if self.name == "vgg19":
            return f"{self.name} -> {target} ({self.size(place)})"
        return f"{self.name} -> {target} (from release_deepsim_v0.zip; {self.size(place)})"

    def check(self, place: Place, verify: bool = False,
              expected: Optional[Sequence[Path]] = None) -> Check:
        caffe, pt = (Path(place.net_dir, rel) for rel in self._rels())
        size, md5 = self._caffemodel_known()
        if caffe.exists() or not pt.is_file():  # a caffemodel is what the loaders take first
            found = _check_file(caffe, size, md5, verify)
            path = caffe
        else:
            found, path = Check("present", how="presence"), pt
        if found.ok and verify and found.how != "md5":
            return self._load(path, found.how)
        return found

    def _load(self, path: Path, how: str) -> Check:
        """Load the weights (no md5 is known): a damaged file fails here."""
        from ..nets.weights import load_generator, load_vgg19  # torch: only under --verify
        load = load_vgg19 if self.name == "vgg19" else load_generator
        try:
            load(path, device="cpu", cache=False)
        except IcnnTorchError as err:
            reason = getattr(err, "reason", str(err))
            return Check("damaged", f"{path} cannot be loaded: {reason}", "loading")
        return Check("present", how=f"{how} and loading" if how != "presence" else "loading")

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        caffe, pt = (Path(place.net_dir, rel) for rel in self._rels())
        options = dict(progress=progress, timeout=timeout)
        if place.pytorch:
            if check.state != "absent":  # a damaged caffemodel would be loaded first
                caffe.unlink(missing_ok=True)
            bundle = self._bundle()
            bounds_folder = Path(place.data_dir, FC7_BOUNDS_RELPATH).parent
            bounds = (bounds_folder / BUNDLE_BOUNDS_NAME, Path(place.data_dir, FC7_BOUNDS_RELPATH),
                      FC7_BOUNDS_MD5) if self.name == "generator" else None
            fetch(f"{remote_url('figshare_files').rstrip('/')}/{bundle.id}",
                  pt.with_name(bundle.name), md5=bundle.md5, **options,
                  processor=take_member(pt, lambda n: n.endswith((".pt", ".pth")),
                                        "PyTorch state dict (.pt)", bounds))
        elif self.name == "vgg19":
            fetch(remote_url("vgg19"), caffe, md5=VGG19_MD5, size=VGG19_SIZE, **options)
        else:  # the zip's member replaces a damaged caffemodel (written through a temp name)
            fetch(remote_url("deepsim"), caffe.with_name("release_deepsim_v0.zip"), **options,
                  processor=take_member(caffe, lambda n: n.endswith("fc7/generator.caffemodel"),
                                        DEEPSIM_GENERATOR_MEMBER))


class _Fc7Bounds(Item):
    name = "fc7_bounds"

    def targets(self, place: Place) -> List[Path]:
        return [Path(place.data_dir, FC7_BOUNDS_RELPATH)]

    def size(self, place: Place) -> Size:
        return Size(FC7_BOUNDS_SIZE)

    def verifiable_by_md5(self, place: Place) -> bool:
        return True

    def describe(self, place: Place) -> str:
        return f"fc7_bounds -> {self.targets(place)[0]} ({self.size(place)})"

    def check(self, place: Place, verify: bool = False,
              expected: Optional[Sequence[Path]] = None) -> Check:
        return _check_file(self.targets(place)[0], FC7_BOUNDS_SIZE, FC7_BOUNDS_MD5, verify)

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        fetch(remote_url("fc7_bounds"), self.targets(place)[0], md5=FC7_BOUNDS_MD5,
              size=FC7_BOUNDS_SIZE, label="fc7.txt", progress=progress, timeout=timeout)


class _ArticleFile(Item):
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
        return _check_file(self.targets(place)[0], entry.size, entry.md5, verify)

    def fetch(self, place: Place, check: Check, progress: bool, timeout: float) -> None:
        entry = self.entry(place)
        fetch(_figshare_url(entry), Path(place.data_dir, self.name), md5=entry.md5,
              size=entry.size, progress=progress, timeout=timeout)


class _DecodedFeatures(_ArticleFile):
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
        fetch(_figshare_url(entry), Path(place.data_dir, self.name), md5=entry.md5,
              size=entry.size, progress=progress, timeout=timeout,
              processor=unpack_and_delete(place.data_dir, self.key))


class _FmriFile(Item):
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


def _figshare_url(entry: FigshareFile) -> str:
    return f"{remote_url('figshare_files').rstrip('/')}/{entry.id}"


def item(name: str, place: Place) -> Item:
    """The item of a download name.

    Raises
    ------
    DownloadError
        ``name`` is neither a weight item, a file of the article nor a published fMRI file
        (before any request).
    """
    if name in ("vgg19", "generator"):
        return _Weights(name)
    if name == "fc7_bounds":
        return _Fc7Bounds()
    fmri_key = parse_fmri_file_name(name)
    if fmri_key is not None:
        return _FmriFile(name, fmri_key)
    if name not in place.files:
        raise DownloadError(f"{name!r} is not a file of figshare article {ARTICLE_ID} "
                            "(the article's files: --list)")
    key = parse_decoded_feature_zip_name(name)
    return _ArticleFile(name) if key is None else _DecodedFeatures(name, key)


def expand_aliases(names: Sequence[str]) -> List[str]:
    """``mean`` -> the mean file, ``std`` -> both std files, ``fmri`` -> the six published
    fMRI files; duplicates dropped."""
    aliases = {"mean": [IMAGE_MEAN_FILENAME], "std": list(FEAT_STD_FILENAMES.values()),
               "fmri": list(published_fmri_names())}
    return list(dict.fromkeys(i for name in names for i in aliases.get(name, [name])))


def items_for_plan(plan: "RunPlan", data_dir: PathLike = DEFAULT_DATA_DIR,
                   features_dir: Optional[PathLike] = None) -> List[str]:
    """The download items a run needs, from its plan (:class:`icnn_torch.run.config.RunPlan`):
    ``vgg19``; ``generator`` and ``fc7_bounds`` exactly when the engine optimises the
    generator input; the mean file; the std file of the plan's network; and, for the
    published tree (``features_dir`` None or ``data_dir/decodedfeatures``), one
    decoded-feature zip per subject and layer (subject-major, layers in first-use order).
    """
    items = ["vgg19"] + (["generator", "fc7_bounds"] if plan.uses_generator else [])
    items += [IMAGE_MEAN_FILENAME, feat_std_path(data_dir, plan.network).name]
    if is_published_tree(features_dir, data_dir):
        items += [decoded_feature_zip_name(plan.image_type, plan.network, layer, subject)
                  for subject in plan.subjects for layer in plan.all_layers]
    return items

