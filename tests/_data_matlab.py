"""Test helper: write MAT files the way MATLAB does (v5 via scipy, v7.3 via h5py)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.io

_MATLAB_CLASS = {"float32": "single", "float64": "double", "int32": "int32",
                 "uint8": "uint8"}


def write_mat_v5(path: Path, variables: dict) -> None:
    """MATLAB v5 file (scipy keeps 1-D arrays as 1xN rows unless told otherwise)."""
    scipy.io.savemat(str(path), variables, format="5", oned_as="row")


def write_mat_v73(path: Path, variables: dict, userblock: bool = True) -> None:
    """MATLAB v7.3 file: HDF5 behind a 512-byte MATLAB header, arrays stored column-major.

    MATLAB writes an m x n x p array column-major, so HDF5 (row-major) holds a dataset of
    shape (p, n, m): the transpose of the array. 1-D arrays become 1xN rows first (MATLAB
    has no 1-D arrays). Each dataset carries the attribute MATLAB_class.
    """
    kwargs = {"userblock_size": 512} if userblock else {}
    with h5py.File(str(path), "w", **kwargs) as f:
        for name, value in variables.items():
            arr = np.asarray(value)
            if arr.ndim < 2:
                arr = arr.reshape(1, -1)
            dataset = f.create_dataset(name, data=np.ascontiguousarray(arr.T))
            dataset.attrs["MATLAB_class"] = np.bytes_(_MATLAB_CLASS[arr.dtype.name])
    if userblock:
        text = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jun  4 10:00:00 "
                b"2018 HDF5 schema 1.00 .")
        header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
        with open(path, "r+b") as f:
            f.write(header.ljust(512, b"\x00"))
