"""MATLAB ``.mat`` files: reading numeric variables from v5 (scipy.io) and v7.3 (HDF5, h5py)
files with MATLAB's axis order, and the exceptions a damaged file raises.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Optional, Sequence

import h5py
import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from .._util import PathLike

__all__ = ["read_matlab_variables", "READ_ERRORS", "vector_if_matlab_vector"]

#: What the readers raise on a truncated, corrupt or foreign file (scipy.io gives
#: ``OSError: could not read bytes``, ``IndexError`` or ``MatReadError``; h5py and numpy
#: ``OSError`` / ``ValueError``).
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, IndexError,
                                                 zlib.error, MatReadError)


def _is_hdf5(path: Path) -> bool:
    """True for MATLAB v7.3 files (HDF5, usually behind a 512-byte MATLAB userblock)."""
    return bool(h5py.is_hdf5(str(path)))


def _read_hdf5_matlab_variable(path: Path, name: str) -> np.ndarray:
    """One numeric variable of a v7.3 file, axes restored to MATLAB's order.

    MATLAB writes column-major arrays, so HDF5 (row-major) sees the dimensions
    reversed: a MATLAB (C,H,W) array is a (W,H,C) dataset. Reversing all axes again
    gives the same array ``scipy.io.loadmat`` returns for a v5 file.
    """
    with h5py.File(str(path), "r") as f:
        if name not in f:
            raise KeyError(f"{path}: no variable {name!r} (variables: {sorted(f.keys())})")
        node = f[name]
        if not isinstance(node, h5py.Dataset):
            raise ValueError(f"{path}: variable {name!r} is a MATLAB struct/group, "
                             "expected a numeric array")
        matlab_class = node.attrs.get("MATLAB_class", b"")
        if isinstance(matlab_class, bytes):
            matlab_class = matlab_class.decode("ascii", "replace")
        if matlab_class in ("cell", "struct", "char") or node.dtype.kind not in "fiub":
            raise ValueError(f"{path}: variable {name!r} has MATLAB class "
                             f"{matlab_class or node.dtype}, expected a numeric array")
        data = node[()]
    return np.ascontiguousarray(np.asarray(data).transpose())


def _hdf5_variable_names(path: Path) -> list[str]:
    with h5py.File(str(path), "r") as f:
        return [k for k in f.keys() if not k.startswith("#")]


def read_matlab_variables(path: PathLike, names: Optional[Sequence[str]] = None) -> dict:
    """Numeric variables of a v5 or v7.3 MAT file, as arrays with MATLAB's axis order.

    Parameters
    ----------
    path : path-like
    names : sequence of str, optional
        The variables to read (default: all; for v7.3, those not starting with ``#``).

    Raises
    ------
    KeyError
        A requested variable is absent (the message lists those present).
    READ_ERRORS
        The file is truncated, corrupt or not a MAT file.
    """
    path = Path(path)
    if _is_hdf5(path):
        wanted = list(names) if names is not None else _hdf5_variable_names(path)
        return {n: _read_hdf5_matlab_variable(path, n) for n in wanted}
    contents = scipy.io.loadmat(str(path), variable_names=names)
    out = {k: v for k, v in contents.items() if not k.startswith("__")}
    if names is not None:
        absent = [n for n in names if n not in out]
        if absent:
            present = sorted(scipy.io.whosmat(str(path)), key=str)
            raise KeyError(f"{path}: no variable(s) {absent} "
                           f"(variables: {[v[0] for v in present]})")
    return out


def vector_if_matlab_vector(arr: np.ndarray) -> np.ndarray:
    """MATLAB has no 1-D arrays: a 1xN or Nx1 matrix is a vector; flatten it to (N,)."""
    if arr.ndim == 2 and 1 in arr.shape:
        return arr.reshape(-1)
    return arr
