"""The results tree: writing a reconstruction as the scripts do, and reading a tree back.

The original's layout, kept exactly so that existing MATLAB and Python analyses find
their files::

    <results_dir>/<script name>/
        options.pkl                                  the engine options (as the original)
        run.json                                     the run record (ours, see below)
        [<layer set>/]<subject>/<roi>/
            recon_img-<label>.mat                    variable recon_img: the raw image
            recon_img_normalized-<label>.jpg         normalise_img(clip_extreme_value(img, pct=4))
            snapshots/image-<label>/                 the engine's snapshots

The layer-set level is script 3's (``layers-1to1`` ... ``layers-1to7``).

Paths and names are those of :mod:`icnn_torch.store.layout`. The run record ``run.json``
(:mod:`icnn_torch.store.record`) says what a script folder holds; ``evaluate`` and
``figure`` read it, so a copy of a script under any name is found and drawn with no
table of ours naming it.

Reading a tree back (:func:`find_script_results`, :func:`find_reconstructions`): a
script folder is one with a run record (any name), or, for results of the original
code, which wrote none, one whose name starts with ``<digits>_``. Its subjects, ROIs,
layer sets and labels are put in the record's order (labels: the columns of the
script's figure); values the record does not list, and every value of a folder without
a record, follow in natural order (``S2 < S10``; ROIs from low to high visual areas,
:data:`~icnn_torch.store.published.ROI_ORDER`). Without a record the image type is unknown (``None``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import PIL.Image
import scipy.io

from .._util import PathLike, atomic_output
from ..errors import ConfigError, DamagedFileError, OutputError
from ..utils import clip_extreme_value, normalise_img
from .layout import RUN_RECORD_NAME, recon_jpg_path, recon_mat_path
from .published import ROI_ORDER
from .record import read_run_record

__all__ = ["display_image", "save_reconstruction", "RECON_FORMS", "natural_key",
           "roi_key", "order_labels", "Reconstruction", "ScriptResults",
           "find_script_results", "find_reconstructions", "load_reconstruction"]


def display_image(img: np.ndarray) -> np.ndarray:
    """The scripts' JPEG pixels: clip to the 2nd/98th percentiles of all values, then
    min-max to 0..255, truncated to uint8 (``normalise_img(clip_extreme_value(img, pct=4))``).

    Parameters
    ----------
    img : ndarray, (H, W, 3)
        RGB on the 0..255 scale, not clipped.
    """
    return normalise_img(clip_extreme_value(img, pct=4))


def save_reconstruction(out_dir: PathLike, label: str, img: np.ndarray) -> None:
    """Write ``recon_img_normalized-<label>.jpg``, then ``recon_img-<label>.mat``.

    The ``.mat`` holds ``img`` as given (its dtype kept: float64 from ``icnn_lbfgs``,
    scipy's ``res.x``; float32 from the GD engines and from ``icnn_dgn_lbfgs``, whose image is
    the generator's output). Each file goes through a temporary name; the job
    counts as done (:func:`~icnn_torch.store.layout.is_done`) only once both exist.

    Raises
    ------
    OutputError
        The folder cannot be written (read-only, disk full...); nothing is left half-written.
    """
    out_dir = Path(out_dir)
    try:
        with atomic_output(recon_jpg_path(out_dir, label)) as tmp:
            PIL.Image.fromarray(display_image(img)).save(tmp, format="JPEG")
        with atomic_output(recon_mat_path(out_dir, label)) as tmp:
            scipy.io.savemat(tmp, {"recon_img": img})
    except OSError as err:
        raise OutputError(f"cannot write the reconstruction of {label} into {out_dir}: "
                          f"{err.strerror or err}", out_dir) from err


# --------------------------------------------------------------------------- reading a tree

#: How :func:`load_reconstruction` can return ``recon_img``.
RECON_FORMS: tuple[str, ...] = ("clip", "raw", "normalized")

_RECON_MAT = re.compile(r"^recon_img-(?P<label>.+)\.mat$")
#: Folder names of the original's scripts (``1_reconstruct_natural_image`` ...): how a
#: script folder without a run record is recognised.
_SCRIPT_DIR = re.compile(r"^\d+_")


def natural_key(text: str) -> tuple:
    """Sort key comparing digit runs as numbers (``S2 < S10``, ``layers-1to3 < 1to5``)."""
    return tuple(int(part) if part.isdigit() else part
                 for part in re.split(r"(\d+)", text))


def roi_key(roi: str) -> tuple:
    """Sort key putting ROIs in :data:`ROI_ORDER`, then the rest naturally."""
    if roi in ROI_ORDER:
        return (0, ROI_ORDER.index(roi))
    return (1, natural_key(roi))


def _rank_key(order: Sequence[str], then: Callable[[str], tuple]) -> Callable[[str], tuple]:
    """Sort key: the values of ``order`` in that order, then the others by ``then``."""
    rank = {value: index for index, value in enumerate(order)}
    return lambda value: (value not in rank, rank.get(value, 0), then(value))


def order_labels(labels: Iterable[str], label_order: Sequence[str] = ()) -> list[str]:
    """The distinct ``labels`` in ``label_order``; labels not in it follow in natural order."""
    return sorted(set(labels), key=_rank_key(label_order, natural_key))


@dataclass(frozen=True)
class Reconstruction:
    """One ``recon_img-<label>.mat`` file of a results tree.

    Attributes
    ----------
    script : str
        The script folder's name.
    layer_set : str or None
        The extra folder level of a script with layer sets (e.g. ``"layers-1to5"``).
    subject, roi, label : str
    mat_path : Path
    image_type : str or None
        Stimulus image type (``natural``, ``color_shape``, ``alphabet``, ``imagery``) from
        the run record, or given by the caller; None when unknown.
    """

    script: str
    layer_set: Optional[str]
    subject: str
    roi: str
    label: str
    mat_path: Path
    image_type: Optional[str] = None

    @property
    def jpg_path(self) -> Path:
        """The script's normalised JPEG of the same reconstruction."""
        return recon_jpg_path(self.mat_path.parent, self.label)

    @property
    def group(self) -> tuple[str, str, str, str]:
        """(script, layer set or "", subject, roi): the set identification compares within."""
        return (self.script, self.layer_set or "", self.subject, self.roi)


@dataclass(frozen=True, eq=False)
class ScriptResults:
    """One script's folder of a results tree, and what its run record says about it.

    Attributes
    ----------
    name : str
        The folder's name (the script's name without ``.py``).
    path : Path
    record : dict or None
        The run record (:func:`read_run_record`); None for results of the original code.
    """

    name: str
    path: Path
    record: Optional[Mapping[str, Any]] = None

    def _field(self, key: str) -> Any:
        return None if self.record is None else self.record.get(key)

    @property
    def image_type(self) -> Optional[str]:
        """Stimulus image type of the run, or None (no record)."""
        return self._field("image_type")

    @property
    def labels(self) -> tuple[str, ...]:
        """Image labels in the script's order (its figure's columns); () without a record."""
        return tuple(self._field("labels") or ())

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(self._field("subjects") or ())

    @property
    def rois(self) -> tuple[str, ...]:
        return tuple(self._field("rois") or ())

    @property
    def layer_sets(self) -> tuple[str, ...]:
        """Names of the layer sets (the extra folder level), in the script's order."""
        return tuple(self._field("layer_sets") or ())

    @property
    def figure_title(self) -> str:
        """The paper's figure the run reproduces (e.g. ``"Fig 2. ..."``), else the name."""
        return self._field("figure_title") or self.name

    @property
    def engine(self) -> Optional[str]:
        """Engine module name (``icnn_dgn_gd``...), or None."""
        return self._field("engine")

    @property
    def network(self) -> Optional[str]:
        return self._field("network")

    @property
    def iterations(self) -> Optional[int]:
        """The engine's iteration count (``iter_n`` / ``maxiter``), or None."""
        return self._field("iterations")

    def key(self, kind: str) -> Callable[[str], tuple]:
        """Sort key of ``"subjects"``, ``"rois"``, ``"layer_sets"`` or ``"labels"`` values:
        the record's order first, then natural order (ROIs: :data:`ROI_ORDER`)."""
        if kind not in ("subjects", "rois", "layer_sets", "labels"):
            raise ValueError(f"no order of {kind!r}")
        return _rank_key(getattr(self, kind), roi_key if kind == "rois" else natural_key)

    def reconstructions(self, image_type: Optional[str] = None) -> list[Reconstruction]:
        """The folder's reconstructions, by layer set, subject, ROI, then label.

        Parameters
        ----------
        image_type : str, optional
            Image type to assume when the record does not give one.

        Returns
        -------
        list of Reconstruction
            Files under ``snapshots`` folders and paths that do not fit
            ``[<layer set>/]<subject>/<roi>/recon_img-<label>.mat`` are ignored.
        """
        image_type = self.image_type or image_type
        found = []
        for mat in self.path.rglob("recon_img-*.mat"):
            match = _RECON_MAT.match(mat.name)
            parts = mat.relative_to(self.path).parent.parts
            if match is None or "snapshots" in parts or len(parts) not in (2, 3):
                continue
            layer_set, subject, roi = (None, *parts) if len(parts) == 2 else parts
            found.append(Reconstruction(self.name, layer_set, subject, roi, match["label"],
                                        mat, image_type))
        set_key, subject_key = self.key("layer_sets"), self.key("subjects")
        roi_order, label_key = self.key("rois"), self.key("labels")
        return sorted(found, key=lambda r: (set_key(r.layer_set or ""), subject_key(r.subject),
                                            roi_order(r.roi), label_key(r.label)))


def _is_script_folder(path: Path) -> bool:
    return (path / RUN_RECORD_NAME).is_file() or bool(_SCRIPT_DIR.match(path.name))


def find_script_results(results_dir: PathLike,
                        scripts: Optional[Iterable[str]] = None) -> list[ScriptResults]:
    """The script folders of a results tree, in natural order of their names.

    Parameters
    ----------
    results_dir : path
        ``results`` (holding ``<script>/...``) or one script's folder.
    scripts : iterable of str, optional
        Keep only these folder names.

    Raises
    ------
    ConfigError
        ``results_dir`` does not exist, or a name of ``scripts`` is not there.
    DamagedFileError
        A ``run.json`` that is not a run record.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(f"results folder {root} does not exist")
    if _is_script_folder(root):
        folders = [root]
    else:
        folders = sorted((p for p in root.iterdir()
                          if p.is_dir() and not p.name.startswith(".") and _is_script_folder(p)),
                         key=lambda p: natural_key(p.name))
    found = [ScriptResults(p.name, p, read_run_record(p)) for p in folders]
    if scripts is not None:
        wanted = set(scripts)
        unknown = sorted(wanted - {folder.name for folder in found})
        if unknown:
            raise ConfigError(f"no script folder {', '.join(unknown)} in {root}; it has "
                              f"{', '.join(f.name for f in found) or 'none'}")
        found = [folder for folder in found if folder.name in wanted]
    return found


def find_reconstructions(results_dir: PathLike, scripts: Optional[Iterable[str]] = None,
                         image_type: Optional[str] = None) -> list[Reconstruction]:
    """All reconstructions of a results tree: by script folder, then as
    :meth:`ScriptResults.reconstructions` orders them.

    Parameters
    ----------
    results_dir, scripts
        See :func:`find_script_results`.
    image_type : str, optional
        Image type of the folders without a run record.
    """
    return [rec for folder in find_script_results(results_dir, scripts)
            for rec in folder.reconstructions(image_type)]


def load_reconstruction(path: PathLike, form: str = "clip") -> np.ndarray:
    """The ``recon_img`` of a script's ``.mat`` file as float64 RGB, shape (H, W, 3).

    Parameters
    ----------
    path : path
    form : {"clip", "raw", "normalized"}
        ``"clip"``: clipped to 0..255 (what a display shows); ``"raw"``: as stored (RGB
        on the 0..255 scale, not clipped); ``"normalized"``: the pixels of the script's
        JPEG before compression (:func:`display_image`).

    Raises
    ------
    DamagedFileError
        Not a MATLAB file, no variable ``recon_img``, or not an (H, W, 3) array.
    """
    if form not in RECON_FORMS:
        raise ValueError(f"form must be one of {RECON_FORMS}, not {form!r}")
    try:
        content = scipy.io.loadmat(os.fspath(path))
    except Exception as err:  # truncated or foreign bytes fail in many ways inside scipy
        if isinstance(err, FileNotFoundError):
            raise
        raise DamagedFileError(path, f"not readable as a MATLAB file ({err})") from err
    if "recon_img" not in content:
        names = sorted(k for k in content if not k.startswith("__"))
        raise DamagedFileError(path, f"no variable 'recon_img' (it has {names}); not a "
                                     "reconstruction of the figure scripts")
    img = np.asarray(content["recon_img"], dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise DamagedFileError(path, f"recon_img has shape {img.shape}, expected (H, W, 3)")
    if form == "clip":
        return np.clip(img, 0.0, 255.0)
    if form == "normalized":
        return display_image(img).astype(np.float64)
    return img
