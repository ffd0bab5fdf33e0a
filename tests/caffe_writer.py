"""Write Caffe ``.caffemodel`` files and prototxts for tests, without Caffe or protoc.

A test helper (not a test module). It holds a deliberately small, independent protobuf
*encoder* (varints, length-delimited fields, packed floats), so that the reader in
:mod:`icnn_torch.nets.caffemodel` is checked against code that shares nothing with it, and
the prototxt texts of the three nets of the original demo, built from the facts in
``SPEC.md`` section 2 (not copied from the original files).

Layouts written (``caffe.proto`` field numbers):

- ``NetParameter``: ``name`` 1 (string), ``layers`` 2 (V1LayerParameter, "V1"),
  ``input`` 3 (string), ``layer`` 100 (LayerParameter, "V2").
- ``V1LayerParameter``: ``bottom`` 2, ``top`` 3, ``name`` 4, ``type`` 5 (enum),
  ``blobs`` 6, ``blobs_lr`` 7 (float), ``weight_decay`` 8 (float).
- ``LayerParameter``: ``name`` 1, ``type`` 2 (string), ``bottom`` 3, ``top`` 4,
  ``param`` 6 (ParamSpec, ``lr_mult`` 3 float), ``blobs`` 7, ``phase`` 10 (enum).
- ``BlobProto``: ``num`` 1, ``channels`` 2, ``height`` 3, ``width`` 4 (legacy shape),
  ``data`` 5 (packed float), ``shape`` 7 (BlobShape, ``dim`` 1 packed int64),
  ``double_data`` 8 (packed double).

Large arrays are never copied into one ``bytes`` object: messages are lists of chunks
(``bytes`` or contiguous little-endian numpy arrays) whose lengths are summed, and the
chunks are written one after another. Layers may be given as any iterable (a generator
keeps only one layer's weights in memory).
"""

from __future__ import annotations

import os
import struct
from typing import Iterable, Sequence, Union

import numpy as np

Chunk = Union[bytes, np.ndarray]
LayerSpec = tuple  # (name: str, type: str, blobs: list[np.ndarray])

# Wire types.
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

#: V1LayerParameter.LayerType enum numbers (caffe.proto) of the layer types used here.
V1_TYPE_NUMBERS: dict[str, int] = {
    "Convolution": 4, "Dropout": 6, "InnerProduct": 14, "Pooling": 17, "ReLU": 18,
    "Softmax": 20, "Deconvolution": 39, "Data": 5, "Concat": 3, "Eltwise": 25,
}

# ---------------------------------------------------------------------------------------
# Protobuf encoding


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative int (negative ints as 10-byte two's complement)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(field_number: int, wire_type: int) -> bytes:
    """Field key: ``(field_number << 3) | wire_type`` as a varint."""
    return varint((field_number << 3) | wire_type)


def nbytes(chunks: Sequence[Chunk]) -> int:
    """Total encoded length of a list of chunks."""
    return sum(c.nbytes if isinstance(c, np.ndarray) else len(c) for c in chunks)


def varint_field(field_number: int, value: int) -> list[Chunk]:
    return [key(field_number, VARINT) + varint(value)]


def len_field(field_number: int, payload: Sequence[Chunk]) -> list[Chunk]:
    """A length-delimited field around ``payload`` (a sub-message, string or packed run)."""
    return [key(field_number, LEN) + varint(nbytes(payload)), *payload]


def string_field(field_number: int, text: str) -> list[Chunk]:
    return len_field(field_number, [text.encode("utf-8")])


def fixed32_float_field(field_number: int, value: float) -> list[Chunk]:
    return [key(field_number, FIXED32) + struct.pack("<f", value)]


def to_bytes(chunks: Sequence[Chunk]) -> bytes:
    """Join chunks into one ``bytes`` (for small messages)."""
    return b"".join(c.tobytes() if isinstance(c, np.ndarray) else bytes(c) for c in chunks)


# ---------------------------------------------------------------------------------------
# Caffe messages


def encode_blob(values: np.ndarray, legacy_shape: bool = False, encoding: str = "packed") -> list[Chunk]:
    """A ``BlobProto`` message holding ``values``.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape; written in C order.
    legacy_shape : bool
        Write the shape as ``num/channels/height/width`` (arrays of fewer than 4 axes are
        padded with leading 1s, as old Caffe did: an fc weight (out, in) becomes
        (1, 1, out, in)) instead of a ``BlobShape``.
    encoding : {"packed", "unpacked", "double"}
        ``packed``: float32 ``data`` as one packed run (what Caffe writes); ``unpacked``:
        one fixed32 ``data`` field per value (legal protobuf, never written by Caffe);
        ``double``: packed float64 ``double_data``.
    """
    arr = np.asarray(values)
    chunks: list[Chunk] = []
    if legacy_shape:
        if arr.ndim > 4:
            raise ValueError(f"a legacy blob shape has at most 4 axes, got {arr.shape}")
        dims = (1,) * (4 - arr.ndim) + arr.shape
        for number, dim in zip((1, 2, 3, 4), dims):
            chunks += varint_field(number, dim)
    if encoding == "packed":
        data = np.ascontiguousarray(arr, dtype="<f4").reshape(-1)
        chunks += len_field(5, [data])
    elif encoding == "unpacked":
        for value in np.asarray(arr, dtype="<f4").reshape(-1):
            chunks += [key(5, FIXED32) + value.tobytes()]
    elif encoding == "double":
        data = np.ascontiguousarray(arr, dtype="<f8").reshape(-1)
        chunks += len_field(8, [data])
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    if not legacy_shape:
        # Caffe writes the shape after the data; the order of fields must not matter.
        dims_payload = b"".join(varint(d) for d in arr.shape)
        chunks += len_field(7, len_field(1, [dims_payload]) if arr.shape else [])
    return chunks


def encode_layer(name: str, layer_type: str, blobs: Sequence[np.ndarray], fmt: str = "v1",
                 legacy_shapes: bool = False, encoding: str = "packed",
                 extra_fields: bool = True) -> list[Chunk]:
    """A ``V1LayerParameter`` (``fmt="v1"``) or ``LayerParameter`` (``"v2"``) message.

    ``extra_fields`` adds fields a real file carries and a reader must skip: a ``top``
    string, and per blob a learning-rate float (V1 ``blobs_lr``) or ``param`` message
    with ``lr_mult`` (V2), plus the V2 ``phase``.
    """
    chunks: list[Chunk] = []
    blob_chunks = [len_field(6 if fmt == "v1" else 7,
                             encode_blob(b, legacy_shape=legacy_shapes, encoding=encoding))
                   for b in blobs]
    if fmt == "v1":
        if layer_type not in V1_TYPE_NUMBERS:
            raise ValueError(f"no V1 enum number known for layer type {layer_type!r}")
        if extra_fields:
            chunks += string_field(3, name)  # top
        chunks += string_field(4, name)
        chunks += varint_field(5, V1_TYPE_NUMBERS[layer_type])
        for blob in blob_chunks:
            chunks += blob
        if extra_fields:
            for _ in blobs:
                chunks += fixed32_float_field(7, 1.0)  # blobs_lr
                chunks += fixed32_float_field(8, 1.0)  # weight_decay
    elif fmt == "v2":
        chunks += string_field(1, name)
        chunks += string_field(2, layer_type)
        if extra_fields:
            chunks += string_field(4, name)  # top
            for _ in blobs:
                chunks += len_field(6, fixed32_float_field(3, 1.0))  # param { lr_mult: 1 }
        for blob in blob_chunks:
            chunks += blob
        if extra_fields:
            chunks += varint_field(10, 1)  # phase: TEST
    else:
        raise ValueError(f"fmt must be 'v1' or 'v2', not {fmt!r}")
    return chunks


def encode_caffemodel(layers: Iterable[LayerSpec], fmt: str = "v1", legacy_shapes: bool = False,
                      net_name: str = "test_net", encoding: str = "packed",
                      extra_fields: bool = True) -> bytes:
    """The bytes of a ``NetParameter`` (small nets only; see :func:`write_caffemodel`)."""
    chunks = list(_net_chunks(layers, fmt, legacy_shapes, net_name, encoding, extra_fields))
    return b"".join(to_bytes(c) for c in chunks)


def _net_chunks(layers, fmt, legacy_shapes, net_name, encoding, extra_fields):
    head = string_field(1, net_name)
    if extra_fields:
        head += string_field(3, "data")  # input
    yield head
    field_number = 2 if fmt == "v1" else 100
    for name, layer_type, blobs in layers:
        yield len_field(field_number, encode_layer(name, layer_type, blobs, fmt, legacy_shapes,
                                                   encoding, extra_fields))


def write_caffemodel(path: str | os.PathLike, layers: Iterable[LayerSpec], fmt: str = "v1",
                     legacy_shapes: bool = False, net_name: str = "test_net",
                     encoding: str = "packed", extra_fields: bool = True,
                     pad_to: int | None = None) -> int:
    """Write a caffemodel; return its size in bytes.

    Parameters
    ----------
    path : path-like
        Output file (written through a temporary file, then renamed).
    layers : iterable of (name, type, blobs)
        ``type`` in V2 spelling ("Convolution", "InnerProduct", ...), translated to the
        V1 enum for ``fmt="v1"``; ``blobs`` a list of arrays in Caffe's layouts.
    fmt : {"v1", "v2"}
        NetParameter field 2 (``layers``, enum types) or 100 (``layer``, string types).
    legacy_shapes : bool
        Blob shapes as ``num/channels/height/width`` (the 2014 VGG19 file) instead of
        ``BlobShape``.
    net_name, encoding, extra_fields
        See :func:`encode_blob` and :func:`encode_layer`.
    pad_to : int, optional
        Make the file exactly this many bytes with a trailing NetParameter field of an
        unused number (readers skip it), e.g. the published VGG19's size, which the
        downloader checks.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    size = 0
    with open(tmp, "wb") as f:
        for chunks in _net_chunks(layers, fmt, legacy_shapes, net_name, encoding, extra_fields):
            for chunk in chunks:
                # A contiguous array is written from its own buffer, without a copy.
                f.write(memoryview(chunk).cast("B") if isinstance(chunk, np.ndarray) else chunk)
            size += nbytes(chunks)
        if pad_to is not None:
            # field 1000's key takes 2 bytes, the varint of its length n bytes
            fits = [length for n in (1, 2, 3, 4) if (length := pad_to - size - 2 - n) >= 0
                    and len(varint(length)) == n]
            if not fits:
                raise ValueError(f"cannot pad {size} bytes to exactly {pad_to}")
            length = fits[0]
            f.write(len_field(1000, [bytes(length)])[0] + bytes(length))
            size = pad_to
    os.replace(tmp, path)
    return size


# ---------------------------------------------------------------------------------------
# The three nets: layer tables (from SPEC section 2)

#: VGG19 convolution layers: (name, in_channels, out_channels); 3x3, stride 1, pad 1.
VGG19_CONVS: tuple[tuple[str, int, int], ...] = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512), ("conv5_4", 512, 512),
)
#: VGG19 fully connected layers: (name, in_features, out_features).
VGG19_FCS: tuple[tuple[str, int, int], ...] = (
    ("fc6", 512 * 7 * 7, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000),
)
#: Every tapped VGG19 blob, network order.
VGG19_TAPS: tuple[str, ...] = (
    "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2",
    "conv3_1", "conv3_2", "conv3_3", "conv3_4", "pool3",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4", "pool4",
    "conv5_1", "conv5_2", "conv5_3", "conv5_4", "pool5", "fc6", "fc7", "fc8",
)
#: Generator layers: (name, type, in, out, kernel, stride, pad); a leaky ReLU (0.3)
#: follows every layer but deconv0, whose top is ``generated``.
GENERATOR_LAYERS: tuple[tuple[str, str, int, int, int, int, int], ...] = (
    ("defc7", "InnerProduct", 4096, 4096, 0, 0, 0),
    ("defc6", "InnerProduct", 4096, 4096, 0, 0, 0),
    ("defc5", "InnerProduct", 4096, 4096, 0, 0, 0),
    ("deconv5", "Deconvolution", 256, 256, 4, 2, 1),
    ("conv5_1", "Deconvolution", 256, 512, 3, 1, 1),
    ("deconv4", "Deconvolution", 512, 256, 4, 2, 1),
    ("conv4_1", "Deconvolution", 256, 256, 3, 1, 1),
    ("deconv3", "Deconvolution", 256, 128, 4, 2, 1),
    ("conv3_1", "Deconvolution", 128, 128, 3, 1, 1),
    ("deconv2", "Deconvolution", 128, 64, 4, 2, 1),
    ("deconv1", "Deconvolution", 64, 32, 4, 2, 1),
    ("deconv0", "Deconvolution", 32, 3, 4, 2, 1),
)


def _vgg19_sequence() -> list[tuple[str, str]]:
    """(layer name, V2 type) of every VGG19 layer, in order, including ReLU/Dropout/Softmax."""
    seq: list[tuple[str, str]] = []
    block_of = {}
    for name, _i, _o in VGG19_CONVS:
        block_of.setdefault(name[4], []).append(name)
    for block in "12345":
        for conv in block_of[block]:
            seq += [(conv, "Convolution"), ("relu" + conv[4:], "ReLU")]
        seq.append((f"pool{block}", "Pooling"))
    seq += [("fc6", "InnerProduct"), ("relu6", "ReLU"), ("drop6", "Dropout"),
            ("fc7", "InnerProduct"), ("relu7", "ReLU"), ("drop7", "Dropout"),
            ("fc8", "InnerProduct"), ("prob", "Softmax")]
    return seq


# ---------------------------------------------------------------------------------------
# Random weights


def _he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int,
               slope: float = 0.0) -> np.ndarray:
    std = np.sqrt(2.0 / ((1.0 + slope ** 2) * fan_in))
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std))


def random_vgg19_layers(seed: int, legacy_fc_shapes: bool = True) -> list[LayerSpec]:
    """Every VGG19 layer with random He-normal weights in Caffe's blob layouts.

    Conv weights (out, in, 3, 3); fc weights (1, 1, out, in) when ``legacy_fc_shapes``
    (as the 2014 V1 file stores them) else (out, in); biases (out,) or, legacy,
    (1, 1, 1, out). Biases are small (std 0.1) and random. Parameter-free layers (ReLU,
    Pooling, Dropout, Softmax) are listed without blobs, as a trained net serialises them.
    About 144 M parameters (575 MB as float32).
    """
    rng = np.random.default_rng(seed)
    convs = {name: (n_in, n_out) for name, n_in, n_out in VGG19_CONVS}
    fcs = {name: (n_in, n_out) for name, n_in, n_out in VGG19_FCS}
    layers: list[LayerSpec] = []
    for name, layer_type in _vgg19_sequence():
        if name in convs:
            n_in, n_out = convs[name]
            weight = _he_normal(rng, (n_out, n_in, 3, 3), n_in * 9)
            bias = (rng.standard_normal(n_out, dtype=np.float32) * np.float32(0.1))
            if legacy_fc_shapes:
                bias = bias.reshape(1, 1, 1, n_out)
            blobs = [weight, bias]
        elif name in fcs:
            n_in, n_out = fcs[name]
            weight = _he_normal(rng, (n_out, n_in), n_in)
            bias = (rng.standard_normal(n_out, dtype=np.float32) * np.float32(0.1))
            if legacy_fc_shapes:
                weight = weight.reshape(1, 1, n_out, n_in)
                bias = bias.reshape(1, 1, 1, n_out)
            blobs = [weight, bias]
        else:
            blobs = []
        layers.append((name, layer_type, blobs))
    return layers


def random_generator_layers(seed: int) -> list[LayerSpec]:
    """Every generator layer with random weights in Caffe's blob layouts (V2 file).

    InnerProduct weights (out, in), Deconvolution weights (in, out, k, k), biases (out,).
    Scaled He-normal for the leaky ReLU (slope 0.3); for a transposed convolution the
    fan-in of an output pixel is ``in * (k / stride)**2``. With inputs of order 1 the
    ``generated`` values stay of order 1..10, far from float32 trouble.
    ReLU and Reshape layers are listed without blobs.
    """
    rng = np.random.default_rng(seed)
    layers: list[LayerSpec] = []
    for name, layer_type, n_in, n_out, k, s, _p in GENERATOR_LAYERS:
        if layer_type == "InnerProduct":
            weight = _he_normal(rng, (n_out, n_in), n_in, slope=0.3)
        else:
            weight = _he_normal(rng, (n_in, n_out, k, k), int(n_in * (k / s) ** 2), slope=0.3)
        bias = rng.standard_normal(n_out, dtype=np.float32) * np.float32(0.1)
        layers.append((name, layer_type, [weight, bias]))
        if name != "deconv0":
            layers.append((f"relu_{name}", "ReLU", []))
        if name == "defc5":
            layers.append(("reshape_relu_defc5", "Reshape", []))
    return layers


# ---------------------------------------------------------------------------------------
# Prototxts (text format), written from the SPEC


def vgg19_prototxt(variant: str = "relu", batch: int = 1) -> str:
    """VGG19 deploy prototxt in the V1 text format, with pre-ReLU taps.

    Every ReLU writes its own top (``relu1_1`` ...) so the conv/fc blobs keep their
    pre-activation values, as the original's edited prototxt does.

    Parameters
    ----------
    variant : {"relu", "leaky"}
        ``"leaky"``: every ReLU has ``negative_slope: 0.2`` and the poolings are ``AVE``.
    batch : int
        Input batch size (``input_dim``), input (batch, 3, 224, 224).
    """
    if variant not in ("relu", "leaky"):
        raise ValueError(variant)
    convs = {name: n_out for name, _i, n_out in VGG19_CONVS}
    fcs = {name: n_out for name, _i, n_out in VGG19_FCS}
    enum = {"Convolution": "CONVOLUTION", "ReLU": "RELU", "Pooling": "POOLING",
            "InnerProduct": "INNER_PRODUCT", "Dropout": "DROPOUT", "Softmax": "SOFTMAX"}
    lines = ['name: "VGG_ILSVRC_19_layers"', 'input: "data"',
             f"input_dim: {batch}", "input_dim: 3", "input_dim: 224", "input_dim: 224"]
    bottom = "data"
    for name, layer_type in _vgg19_sequence():
        lines += ["layers {", f'  name: "{name}"', f"  type: {enum[layer_type]}",
                  f'  bottom: "{bottom}"', f'  top: "{name}"']
        if layer_type == "Convolution":
            lines += ["  convolution_param {", f"    num_output: {convs[name]}",
                      "    pad: 1", "    kernel_size: 3", "  }"]
        elif layer_type == "InnerProduct":
            lines += ["  inner_product_param {", f"    num_output: {fcs[name]}", "  }"]
        elif layer_type == "Pooling":
            pool = "AVE" if variant == "leaky" else "MAX"
            lines += ["  pooling_param {", f"    pool: {pool}", "    kernel_size: 2",
                      "    stride: 2", "  }"]
        elif layer_type == "ReLU" and variant == "leaky":
            lines += ["  relu_param {", "    negative_slope: 0.2", "  }"]
        elif layer_type == "Dropout":
            lines += ["  dropout_param {", "    dropout_ratio: 0.5", "  }"]
        lines.append("}")
        bottom = name
    return "\n".join(lines) + "\n"


def generator_prototxt(batch: int = 1) -> str:
    """DeePSiM fc7 generator deploy prototxt in the V2 text format.

    Input blob ``feat`` (batch, 4096); output blob ``generated`` (batch, 3, 256, 256),
    produced by the layer ``deconv0``. Each leaky ReLU (slope 0.3) writes its own top
    ``relu_<layer>``; ``reshape_relu_defc5`` reshapes to (batch, 256, 4, 4).
    """
    lines = ['name: "deepsim_fc7_generator"', 'input: "feat"',
             "input_shape {", f"  dim: {batch}", "  dim: 4096", "}"]
    bottom = "feat"
    for name, layer_type, _n_in, n_out, k, s, p in GENERATOR_LAYERS:
        top = "generated" if name == "deconv0" else name
        lines += ["layer {", f'  name: "{name}"', f'  type: "{layer_type}"',
                  f'  bottom: "{bottom}"', f'  top: "{top}"']
        if layer_type == "InnerProduct":
            lines += ["  inner_product_param {", f"    num_output: {n_out}", "  }"]
        else:
            lines += ["  convolution_param {", f"    num_output: {n_out}", f"    pad: {p}",
                      f"    kernel_size: {k}", f"    stride: {s}", "  }"]
        lines.append("}")
        bottom = top
        if name == "deconv0":
            break
        lines += ["layer {", f'  name: "relu_{name}"', '  type: "ReLU"', f'  bottom: "{name}"',
                  f'  top: "relu_{name}"', "  relu_param {", "    negative_slope: 0.3", "  }", "}"]
        bottom = f"relu_{name}"
        if name == "defc5":
            lines += ["layer {", '  name: "reshape_relu_defc5"', '  type: "Reshape"',
                      f'  bottom: "{bottom}"', '  top: "reshape_relu_defc5"',
                      "  reshape_param {", "    shape {", "      dim: -1", "      dim: 256",
                      "      dim: 4", "      dim: 4", "    }", "  }", "}"]
            bottom = "reshape_relu_defc5"
    return "\n".join(lines) + "\n"
