"""The results tree: where a run's outputs go, what they are called, and its run record.

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

The run record (:data:`RUN_RECORD_NAME`) is a JSON file that says what the script
folder holds: image type, network, engine, subjects, ROIs, image labels in the script's
order, layers or layer sets, and the options. ``evaluate`` and ``figure`` read it, so a
copy of a script under any name is found and drawn with no table of ours naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ._util import PathLike, atomic_output
from .errors import DamagedFileError, OutputError

__all__ = ["RUN_RECORD_NAME", "OPTIONS_NAME", "job_dir", "recon_mat_path", "recon_jpg_path",
           "snapshot_dir", "display_image", "save_reconstruction", "is_done",
           "write_run_record", "read_run_record"]

RUN_RECORD_NAME = "run.json"
OPTIONS_NAME = "options.pkl"
#: Marks a JSON file as our run record, with the version of its layout.
RUN_RECORD_FORMAT = "icnn-torch run record"
RUN_RECORD_VERSION = 1


def job_dir(script_results: PathLike, subject: str, roi: str,
            layer_set: Optional[str] = None) -> Path:
    """``<script results>/[<layer set>/]<subject>/<roi>``."""
    root = Path(script_results)
    if layer_set is not None:
        root = root / layer_set
    return root / subject / roi


def recon_mat_path(out_dir: PathLike, label: str) -> Path:
    """``<out_dir>/recon_img-<label>.mat``."""
    return Path(out_dir) / f"recon_img-{label}.mat"


def recon_jpg_path(out_dir: PathLike, label: str) -> Path:
    """``<out_dir>/recon_img_normalized-<label>.jpg``."""
    return Path(out_dir) / f"recon_img_normalized-{label}.jpg"


def snapshot_dir(out_dir: PathLike, label: str) -> Path:
    """``<out_dir>/snapshots/image-<label>``."""
    return Path(out_dir) / "snapshots" / f"image-{label}"


def display_image(img: np.ndarray) -> np.ndarray:
    """The scripts' JPEG pixels: clip to the 2nd/98th percentiles of all values, then
    min-max to 0..255, truncated to uint8 (``normalise_img(clip_extreme_value(img, pct=4))``).

    Parameters
    ----------
    img : ndarray, (H, W, 3)
        RGB on the 0..255 scale, not clipped.
    """
    from .utils import clip_extreme_value, normalise_img
    return normalise_img(clip_extreme_value(img, pct=4))


def save_reconstruction(out_dir: PathLike, label: str, img: np.ndarray) -> None:
    """Write ``recon_img_normalized-<label>.jpg``, then ``recon_img-<label>.mat``.

    The ``.mat`` holds ``img`` as given (its dtype kept: float64 from the L-BFGS engines,
    float32 from the GD engines). Each file goes through a temporary name; the job
    counts as done (:func:`is_done`) only once both exist.

    Raises
    ------
    OutputError
        The folder cannot be written (read-only, disk full...); nothing is left half-written.
    """
    import PIL.Image
    import scipy.io

    out_dir = Path(out_dir)
    try:
        with atomic_output(recon_jpg_path(out_dir, label)) as tmp:
            PIL.Image.fromarray(display_image(img)).save(tmp, format="JPEG")
        with atomic_output(recon_mat_path(out_dir, label)) as tmp:
            scipy.io.savemat(tmp, {"recon_img": img})
    except OSError as err:
        raise OutputError(f"cannot write the reconstruction of {label} into {out_dir}: "
                          f"{err.strerror or err}; choose a writable --results-dir") from err


def is_done(out_dir: PathLike, label: str) -> bool:
    """Whether both outputs of ``label`` exist in ``out_dir``."""
    return recon_mat_path(out_dir, label).is_file() and recon_jpg_path(out_dir, label).is_file()


def write_run_record(script_results: PathLike, record: Mapping[str, Any]) -> Path:
    """Write the run record of a script folder (atomically), adding its format marker.

    Parameters
    ----------
    script_results : path
        ``<results_dir>/<script name>``.
    record : mapping
        JSON-serialisable fields (see the module docstring); arrays must already be lists.
    """
    from . import __version__
    body = {"format": RUN_RECORD_FORMAT, "version": RUN_RECORD_VERSION,
            "icnn_torch": __version__, **record}
    path = Path(script_results) / RUN_RECORD_NAME
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}; choose a writable "
                          "--results-dir") from err
    return path


def read_run_record(script_results: PathLike) -> Optional[dict]:
    """The run record of a script folder, or None when it has none (e.g. results of the
    original code).

    Raises
    ------
    DamagedFileError
        The file exists but is not a run record of ours.
    """
    path = Path(script_results) / RUN_RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DamagedFileError(path, f"not readable as JSON ({err})",
                               "rerun the script (it rewrites the record)") from err
    if not isinstance(record, dict) or record.get("format") != RUN_RECORD_FORMAT:
        raise DamagedFileError(path, "not an icnn-torch run record")
    return record
