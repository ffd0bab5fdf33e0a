"""What the published data holds: the file list of figshare article 7033577 (name, file id,
md5; shipped with the package, read with no network), the image labels, ROIs and layers of
the published decoded features, and the check of a run's selection against them (or
against a decoded-feature tree of one's own, on disk) before anything is read or
downloaded.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

from .._util import PathLike, file_md5
from ..errors import ConfigError, DamagedFileError
from .layout import parse_decoded_feature_zip_name

if TYPE_CHECKING:
    from ..run.config import RunPlan

__all__ = ["ARTICLE_ID", "ARTICLE_FILE_LIST", "ROI_ORDER", "PUBLISHED_ROIS",
           "PUBLISHED_LABEL_COUNTS", "FigshareFile", "published_files", "published_labels",
           "damaged_file_error", "check_plan"]

#: The figshare article of the published data, and the file list shipped with the package.
ARTICLE_ID = 7033577
ARTICLE_FILE_LIST = f"article_{ARTICLE_ID}_files.csv"
#: ROIs from low to high visual areas: the ROIs of the published decoded features, and the
#: order of ROIs wherever no run record gives one.
ROI_ORDER: Tuple[str, ...] = ("V1", "V2", "V3", "V4", "HVC", "VC")
PUBLISHED_ROIS = ROI_ORDER
#: Number of test images per image type in the published decoded features (labels
#: ``Img0001`` ... in the paper's order): 50 natural images, 40 colour shapes, 10 letters,
#: 25 imagined images.
PUBLISHED_LABEL_COUNTS = {"natural": 50, "color_shape": 40, "alphabet": 10, "imagery": 25}


@dataclasses.dataclass(frozen=True)
class FigshareFile:
    """One file of a figshare article: name, file id, size in bytes (None when not
    recorded), md5 (hex, or None)."""

    name: str
    id: int
    size: Optional[int]
    md5: Optional[str]


@functools.lru_cache(maxsize=None)
def _shipped_files() -> Dict[str, FigshareFile]:
    text = resources.files(__package__).joinpath(ARTICLE_FILE_LIST).read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["name"]: FigshareFile(r["name"], int(r["id"]), int(r["size"]) if r["size"] else None,
                                    r["md5"].lower() or None) for r in rows}


def published_files() -> Dict[str, FigshareFile]:
    """The 251 files of figshare article 7033577, from the list shipped with the package
    (no network): file name -> :class:`FigshareFile`. A fresh dict on every call."""
    return dict(_shipped_files())


def published_labels(image_type: str) -> Tuple[str, ...]:
    """The image labels of the published decoded features of ``image_type``
    (``Img0001`` ... ``Img0050`` for natural; empty for an unknown type)."""
    return tuple(f"Img{i:04d}" for i in range(1, PUBLISHED_LABEL_COUNTS.get(image_type, 0) + 1))


def damaged_file_error(path: PathLike, err: BaseException,
                       item: Optional[str] = None) -> DamagedFileError:
    """The error for a file that exists but cannot be read. A file of the published data
    has its md5 compared with the published one, so the message says whether the file
    itself is bad."""
    if isinstance(err, DamagedFileError):
        return err
    path = Path(path)
    reason = f"it cannot be read ({type(err).__name__}: {err})"
    entry = published_files().get(path.name)
    if entry is not None and entry.md5 is not None:
        got = file_md5(path)
        reason += (f"; its md5 {got} differs from the published {entry.md5}"
                   if got != entry.md5 else "; its md5 is the published one")
    return DamagedFileError(path, reason, item)


def _published_keys() -> Dict[Tuple[str, str, str], list]:
    """(image_type, network, layer) -> subjects, from the decoded-feature zips of the list."""
    keys: Dict[Tuple[str, str, str], list] = {}
    for name in published_files():
        key = parse_decoded_feature_zip_name(name)
        if key is not None:
            keys.setdefault(key[:3], []).append(key[3])
    return keys


def _refuse(what: str, wanted: Sequence[str], valid: Sequence[str], where: str) -> None:
    """ConfigError when some of ``wanted`` are not in ``valid`` (listed in the message)."""
    bad = [w for w in wanted if w not in valid]
    if bad:
        shown = ", ".join(valid) if len(valid) <= 25 else \
            f"{valid[0]}, {valid[1]}, ..., {valid[-1]} ({len(valid)} in all)"
        raise ConfigError(f"{what} {', '.join(bad)}: not in {where}; valid: {shown or 'none'}")


def check_plan(plan: "RunPlan", features_dir: Optional[PathLike] = None) -> None:
    """Check a run's selection against what its decoded-feature tree can hold.

    Parameters
    ----------
    plan : icnn_torch.run.config.RunPlan
        Its image type, network, layers (all layer sets), subjects, ROIs and labels.
    features_dir : path-like, optional
        None: the published tree (figshare article 7033577), checked against the shipped
        file list (no disk access, so before anything is downloaded): image types
        natural / color_shape / alphabet (VGG19) and imagery (VGG19_leaky); the 16 conv
        and 3 fc layers for S1 S2 S3, the pool layers for S1 only; ROIs
        :data:`PUBLISHED_ROIS`; labels :func:`published_labels`. Otherwise the root of a
        tree of one's own (e.g. decoded from fMRI), checked on disk: every
        ``<image_type>/<network>/<layer>/<subject>/<roi>/`` folder of the selection must
        exist and hold a file for every label.

    Raises
    ------
    ConfigError
        One line naming the values that are not there and listing those that are.
    """
    if features_dir is None:
        keys = _published_keys()
        where = f"the published decoded features (figshare article {ARTICLE_ID})"
        _refuse("image type", [plan.image_type], sorted({k[0] for k in keys}), where)
        _refuse("network", [plan.network],
                sorted({k[1] for k in keys if k[0] == plan.image_type}),
                f"the published {plan.image_type} features")
        layers = [k[2] for k in keys if k[:2] == (plan.image_type, plan.network)]
        _refuse("layer", plan.all_layers, layers,
                f"the published {plan.image_type} {plan.network} features")
        for layer in plan.all_layers:
            _refuse("subject", plan.subjects, keys[plan.image_type, plan.network, layer],
                    f"the published {plan.image_type} features of layer {layer}")
        _refuse("ROI", plan.rois, PUBLISHED_ROIS, where)
        _refuse("image label", plan.labels, published_labels(plan.image_type),
                f"the published {plan.image_type} images")
        return

    def folders(path: Path) -> list:
        return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []

    root = Path(features_dir)
    _refuse("image type", [plan.image_type], folders(root), str(root))
    _refuse("network", [plan.network], folders(root / plan.image_type),
            str(root / plan.image_type))
    network_dir = root / plan.image_type / plan.network
    _refuse("layer", plan.all_layers, folders(network_dir), str(network_dir))
    for layer in plan.all_layers:
        _refuse("subject", plan.subjects, folders(network_dir / layer), str(network_dir / layer))
        for subject in plan.subjects:
            subject_dir = network_dir / layer / subject
            _refuse("ROI", plan.rois, folders(subject_dir), str(subject_dir))
            for roi in plan.rois:
                prefix = f"{plan.image_type}-{plan.network}-{layer}-{subject}-{roi}-"
                labels = sorted(p.name[len(prefix):-4] for p in (subject_dir / roi).iterdir()
                                if p.name.startswith(prefix) and p.suffix == ".mat")
                _refuse("image label", plan.labels, labels, str(subject_dir / roi))
