"""Read Caffe ``.caffemodel`` weight files without Caffe or generated protobuf code.

A ``.caffemodel`` is a protobuf-encoded ``NetParameter``. Its layers are either the
legacy ``layers`` field (number 2, "V1" files such as the 2014 VGG19 release, with an
enum layer type) or the current ``layer`` field (number 100, "V2" files such as the
DeePSiM generator, with a string type). Each layer holds its learned parameters as
``BlobProto`` messages: packed float32 values plus a shape given either as a
``BlobShape`` message or by the legacy ``num/channels/height/width`` fields.

Only the few fields needed to recover ``(name, type, blobs)`` are decoded. The file is
scanned through a memory map, touching only message headers; the packed weights are then
read straight from disk into their final, aligned float32 arrays, so reading a 548 MB
file costs one copy of the weights and no more.
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from ..errors import IcnnTorchError

__all__ = ["CaffeModelError", "CaffeLayer", "read_caffemodel", "V1_LAYER_TYPES"]


class CaffeModelError(IcnnTorchError, ValueError):
    """A file that is not a readable Caffe ``.caffemodel`` (or does not fit a net)."""


# Enum values of V1LayerParameter.LayerType (caffe.proto) mapped to the V2 type strings.
V1_LAYER_TYPES: dict[int, str] = {
    0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data",
    6: "Dropout", 7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output",
    11: "Im2col", 12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN",
    16: "MultinomialLogisticLoss", 17: "Pooling", 18: "ReLU", 19: "Sigmoid",
    20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH", 24: "WindowData",
    25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice",
    34: "MVN", 35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp",
    39: "Deconvolution",
}

# Protobuf wire types.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

# Field numbers (caffe.proto).
_NET_NAME, _NET_LAYERS_V1, _NET_LAYER_V2 = 1, 2, 100
_V1_NAME, _V1_TYPE, _V1_BLOBS = 4, 5, 6
_V2_NAME, _V2_TYPE, _V2_BLOBS = 1, 2, 7
_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH = 1, 2, 3, 4
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8
_SHAPE_DIM = 1


@dataclass
class CaffeLayer:
    """One layer of a caffemodel.

    Attributes
    ----------
    name : str
        Layer name as in the prototxt (``conv1_1``, ``defc7``, ...).
    type : str
        Layer type in V2 spelling (``Convolution``, ``InnerProduct``, ``Deconvolution``...);
        V1 enum values are translated.
    blobs : list of numpy.ndarray
        The learned parameters in file order (weights, then bias), float32, with the
        shape stored in the file (legacy 4-d shapes are kept as stored).
    """

    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)


@dataclass
class _BlobRef:
    shape: tuple[int, ...]
    offset: int  # byte offset of the packed values in the file
    count: int  # number of values
    dtype: str  # '<f4' or '<f8'
    values: np.ndarray | None = None  # set for the rare unpacked encoding


class _Truncated(Exception):
    pass


class _Malformed(Exception):
    pass


def _read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Truncated("a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("a varint is longer than 10 bytes")


def _fields(buf, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field_number, wire_type, value_or_start, length)`` for one message.

    For varints the third item is the value; for length-delimited fields it is the start
    offset of the payload; for fixed32/64 it is the start offset.
    """
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos, end)
            yield number, wire, value, 0
        elif wire == _LEN:
            length, pos = _read_varint(buf, pos, end)
            if length > end - pos:
                raise _Truncated(f"field {number} claims {length} bytes, {end - pos} remain")
            yield number, wire, pos, length
            pos += length
        elif wire == _FIXED32:
            if pos + 4 > end:
                raise _Truncated("a fixed32 value runs past the end")
            yield number, wire, pos, 4
            pos += 4
        elif wire == _FIXED64:
            if pos + 8 > end:
                raise _Truncated("a fixed64 value runs past the end")
            yield number, wire, pos, 8
            pos += 8
        else:
            raise _Malformed(f"wire type {wire} (groups or garbage) in field {number}")


def _string(buf, start: int, length: int) -> str:
    try:
        return bytes(buf[start:start + length]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed("a layer name or type is not UTF-8") from exc


def _packed_varints(buf, start: int, length: int) -> list[int]:
    values, pos, end = [], start, start + length
    while pos < end:
        value, pos = _read_varint(buf, pos, end)
        values.append(value)
    return values


def _parse_blob(buf, start: int, end: int) -> _BlobRef:
    legacy = {}
    dims: list[int] | None = None
    data_parts: list[tuple[int, int, str]] = []  # packed runs (offset, count, dtype)
    loose: list[float] = []  # unpacked fixed32 values
    for number, wire, a, n in _fields(buf, start, end):
        if number in (_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH) and wire == _VARINT:
            legacy[number] = a
        elif number == _BLOB_SHAPE and wire == _LEN:
            dims = []
            for f_number, f_wire, f_a, f_n in _fields(buf, a, a + n):
                if f_number != _SHAPE_DIM:
                    continue
                if f_wire == _LEN:
                    dims.extend(_packed_varints(buf, f_a, f_n))
                elif f_wire == _VARINT:
                    dims.append(f_a)
        elif number == _BLOB_DATA and wire == _LEN:
            if n % 4:
                raise _Malformed("packed float data whose length is not a multiple of 4")
            data_parts.append((a, n // 4, "<f4"))
        elif number == _BLOB_DATA and wire == _FIXED32:
            loose.append(float(np.frombuffer(buf, "<f4", 1, a)[0]))
        elif number == _BLOB_DOUBLE_DATA and wire == _LEN:
            if n % 8:
                raise _Malformed("packed double data whose length is not a multiple of 8")
            data_parts.append((a, n // 8, "<f8"))
    if dims is None:
        # Legacy blobs default num/channels/height/width to 1 when absent... but only
        # when the blob carries any of them; caffe treats a blob without both as empty.
        dims = [legacy.get(k, 1) for k in (_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH)]
        if not legacy and not data_parts and not loose:
            dims = [0]
    # Python ints: an int64 product could overflow (even to 0) and pass the count check.
    if any(d < 0 or d > 2**40 for d in dims) or math.prod(d for d in dims if d) > 2**40:
        raise _Malformed(f"implausible blob shape {tuple(dims)}")
    shape = tuple(int(d) for d in dims)
    expected = math.prod(shape)
    if loose:
        if data_parts:
            raise _Malformed("a blob mixes packed and unpacked values")
        values = np.asarray(loose, dtype=np.float32)
        if values.size != expected:
            raise _Malformed(f"blob of shape {shape} holds {values.size} values")
        return _BlobRef(shape, -1, values.size, "<f4", values)
    if len(data_parts) > 1:
        raise _Malformed("a blob holds its values in several runs")
    offset, count, dtype = data_parts[0] if data_parts else (-1, 0, "<f4")
    if count != expected:
        raise _Malformed(f"blob of shape {shape} holds {count} values, expected {expected}")
    return _BlobRef(shape, offset, count, dtype)


def _parse_layer(buf, start: int, end: int, v1: bool) -> tuple[str, str, list[_BlobRef]]:
    f_name, f_type, f_blobs = (_V1_NAME, _V1_TYPE, _V1_BLOBS) if v1 else (_V2_NAME, _V2_TYPE, _V2_BLOBS)
    name, layer_type, blobs = None, "", []
    for number, wire, a, n in _fields(buf, start, end):
        if number == f_name and wire == _LEN:
            name = _string(buf, a, n)
        elif number == f_type and v1 and wire == _VARINT:
            layer_type = V1_LAYER_TYPES.get(a, f"V1Type{a}")
        elif number == f_type and not v1 and wire == _LEN:
            layer_type = _string(buf, a, n)
        elif number == f_blobs and wire == _LEN:
            blobs.append(_parse_blob(buf, a, a + n))
    if name is None:
        raise _Malformed("a layer has no name")
    return name, layer_type, blobs


def _scan(buf, size: int) -> list[tuple[str, str, list[_BlobRef]]]:
    layers = []
    for number, wire, a, n in _fields(buf, 0, size):
        if number == _NET_LAYERS_V1 and wire == _LEN:
            layers.append(_parse_layer(buf, a, a + n, v1=True))
        elif number == _NET_LAYER_V2 and wire == _LEN:
            layers.append(_parse_layer(buf, a, a + n, v1=False))
    return layers


def _load_values(f, blob: _BlobRef) -> np.ndarray:
    if blob.values is not None:
        return blob.values.reshape(blob.shape)
    out = np.empty(blob.shape, dtype=np.float32)
    if blob.count == 0:
        return out
    if blob.dtype == "<f4" and out.dtype.byteorder in "=<|" and np.little_endian:
        f.seek(blob.offset)
        got = f.readinto(memoryview(out).cast("B"))
        if got != out.nbytes:
            raise _Truncated("the file ended while reading packed values")
        return out
    f.seek(blob.offset)
    raw = f.read(blob.count * np.dtype(blob.dtype).itemsize)
    values = np.frombuffer(raw, dtype=blob.dtype, count=blob.count)
    out[...] = values.reshape(blob.shape)
    return out


def read_caffemodel(path: str | os.PathLike, layers: Iterable[str] | None = None) -> dict[str, CaffeLayer]:
    """Read the layers and learned blobs of a ``.caffemodel`` file.

    Parameters
    ----------
    path : str or path-like
        The ``.caffemodel`` file (V1 ``layers`` or V2 ``layer`` format).
    layers : iterable of str, optional
        Read the blobs of only these layers (others are listed with empty ``blobs``).
        Default: all layers.

    Returns
    -------
    dict of str to CaffeLayer
        Layers in file order, keyed by name. Blobs are float32 arrays with the shape
        stored in the file (``double_data`` blobs are converted to float32).

    Raises
    ------
    CaffeModelError
        The file is empty, truncated, not a protobuf ``NetParameter``, or holds no
        layers; the message names the file.
    FileNotFoundError
        The file does not exist.
    """
    path = os.fspath(path)
    wanted = None if layers is None else set(layers)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CaffeModelError(f"{path}: the file is empty, not a caffemodel")
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                scanned = _scan(mm, size)
        except _Truncated as exc:
            raise CaffeModelError(f"{path}: truncated or corrupt caffemodel ({exc}); "
                                  "download it again") from None
        except _Malformed as exc:
            raise CaffeModelError(f"{path}: not a readable caffemodel ({exc})") from None
        if not scanned:
            raise CaffeModelError(f"{path}: no Caffe layers found; this is not a caffemodel "
                                  "(or it is a prototxt / another format)")
        result: dict[str, CaffeLayer] = {}
        for name, layer_type, refs in scanned:
            if name in result:
                if refs and result[name].blobs:
                    raise CaffeModelError(f"{path}: layer {name!r} appears twice with weights")
                continue
            load = wanted is None or name in wanted
            try:
                blobs = [_load_values(f, r) for r in refs] if load else []
            except _Truncated as exc:
                raise CaffeModelError(f"{path}: truncated caffemodel ({exc})") from None
            result[name] = CaffeLayer(name, layer_type, blobs)
    return result
