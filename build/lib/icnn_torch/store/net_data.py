"""The files the nets need beside their weights: the image mean of VGG19's input convention
(``ilsvrc_2012_mean.npy``) and the DeePSiM generator's input bounds (``act_range/3x/fc7.txt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .._util import PathLike
from ..errors import DamagedFileError, MissingDataError
from ..nets.tables import FC7_UNITS, IMAGENET_MEAN_BGR
from .layout import IMAGE_MEAN_FILENAME, fc7_bounds_path, image_mean_path
from .matlab import READ_ERRORS
from .published import damaged_file_error

__all__ = ["load_image_mean", "load_fc7_upper_bound", "format_bgr"]

#: The download item of the generator input bounds.
FC7_BOUNDS_ITEM = "fc7_bounds"


def format_bgr(mean) -> str:
    """A BGR mean as the messages print it: ``BGR (104.007, 116.669, 122.679)``."""
    return "BGR (" + ", ".join(f"{float(m):.3f}" for m in np.asarray(mean).reshape(-1)) + ")"


def load_image_mean(path: Optional[PathLike] = None) -> Tuple[np.ndarray, str]:
    """Per-channel image mean used by VGG19 (B, G, R on the 0..255 scale).

    Parameters
    ----------
    path : path-like, optional
        ``ilsvrc_2012_mean.npy`` (3x256x256 BGR). Default ``data/ilsvrc_2012_mean.npy``.

    Returns
    -------
    mean : np.ndarray, shape (3,), float32
        The per-channel average of the file, or, when the file is absent,
        :data:`~icnn_torch.nets.tables.IMAGENET_MEAN_BGR`.
    source : str
        A sentence saying which was used (for the caller to print).

    Raises
    ------
    DamagedFileError
        The file exists but cannot be read or is not shaped (3, H, W) or (3,).
    """
    path = Path(path) if path is not None else image_mean_path()
    if not path.is_file():
        mean = IMAGENET_MEAN_BGR.copy()
        return mean, f"image mean: built-in constants {format_bgr(mean)} ({path} not found)"
    try:
        arr = np.load(str(path), allow_pickle=False)
    except READ_ERRORS as err:
        raise damaged_file_error(path, err, IMAGE_MEAN_FILENAME) from err
    if arr.ndim == 3 and arr.shape[0] == 3:
        mean = arr.mean(axis=(1, 2))
    elif arr.shape == (3,):
        mean = arr
    else:
        raise DamagedFileError(path, f"the image mean is shaped {arr.shape}, expected "
                               "(3, H, W) or (3,)", IMAGE_MEAN_FILENAME)
    mean = np.asarray(mean, dtype=np.float32)
    return mean, f"image mean: per-channel average of {path} ({format_bgr(mean)})"


def load_fc7_upper_bound(path: Optional[PathLike] = None) -> np.ndarray:
    """Upper bounds of the generator input (``act_range/3x/fc7.txt``).

    Returns
    -------
    np.ndarray, shape (4096,), float64
        One bound per fc7 unit (integers 2..6 in the published file); the lower bound is 0.
        float64, as the original's ``np.loadtxt``: ``icnn_dgn_gd`` then keeps its z in
        float64 after the first clip, as the original does.

    Raises
    ------
    MissingDataError, DamagedFileError
        The file is absent, or is not 4096 numbers (``item``: ``fc7_bounds``).
    """
    path = Path(path) if path is not None else fc7_bounds_path()
    if not path.is_file():
        raise MissingDataError(path, [FC7_BOUNDS_ITEM])
    try:
        values = np.loadtxt(str(path), dtype=np.float64, ndmin=1).reshape(-1)
    except READ_ERRORS as err:
        raise damaged_file_error(path, err, FC7_BOUNDS_ITEM) from err
    if values.shape != (FC7_UNITS,):
        raise DamagedFileError(path, f"it holds {values.shape[0]} values, expected "
                               f"{FC7_UNITS} (shape ({FC7_UNITS},))", FC7_BOUNDS_ITEM)
    return values
