"""Parity of our VGG19 / generator modules with an independent Caffe executor (OpenCV).

Random-weight caffemodels of the full-size nets are written by our own encoder
(``tests/caffe_writer.py``): VGG19 in the 2014 file's V1 format with legacy 4-d blob
shapes, the DeePSiM generator in V2 format with ``BlobShape``. Prototxts are written from
the SPEC by the same helper. OpenCV's Caffe importer (``cv2.dnn.readNetFromCaffe``) runs
them with layer fusion and Winograd convolutions disabled (so every tapped blob is the
plain, pre-activation layer output) and every tapped blob must match ours within 1e-4
relative L2 error.

Also tested here: loading KamitaniLab's two converted state_dict layouts (``.pt``) and
the converted-weight cache written beside a caffemodel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caffe_writer as cw  # noqa: E402

import icnn_torch.nets.caffemodel as caffemodel_module  # noqa: E402
from icnn_torch import models  # noqa: E402
from icnn_torch.nets import weights as weight_loading  # noqa: E402

cv2 = pytest.importorskip("cv2")

pytestmark = pytest.mark.slow

RTOL_L2 = 1e-4
BATCH = 2
# torchvision / KamitaniLab index of each VGG19 conv layer in ``features``.
FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
CLASSIFIER_INDICES = {"fc6": 0, "fc7": 3, "fc8": 6}


def relative_l2(ours: np.ndarray, reference: np.ndarray) -> float:
    """``||ours - reference|| / ||reference||`` in float64."""
    diff = np.linalg.norm((ours.astype(np.float64) - reference.astype(np.float64)).ravel())
    return float(diff / np.linalg.norm(reference.astype(np.float64).ravel()))


def opencv_forward(prototxt: Path, caffemodel: Path, x: np.ndarray, layer_names) -> dict[str, np.ndarray]:
    """Run a Caffe net in OpenCV and return the outputs of ``layer_names`` (by layer name)."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.enableFusion(False)  # keep ReLUs (and anything else) out of the convolutions
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)  # plain float32 convolutions
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.setInput(x)
    outputs = net.forward(list(layer_names))
    return {name: np.array(out, dtype=np.float32) for name, out in zip(layer_names, outputs)}


# ---------------------------------------------------------------------------------------
# Fixtures: full-size random caffemodels (+ KamitaniLab-layout state_dicts of the same
# weights), written once per module and deleted afterwards.


@pytest.fixture(scope="module")
def vgg19_files(tmp_path_factory):
    """(caffemodel V1 legacy shapes, KamitaniLab-layout .pt) of one random VGG19."""
    folder = tmp_path_factory.mktemp("vgg19")
    caffemodel = folder / "VGG_ILSVRC_19_layers.caffemodel"
    layers = cw.random_vgg19_layers(seed=0, legacy_fc_shapes=True)
    cw.write_caffemodel(caffemodel, layers, fmt="v1", legacy_shapes=True,
                        net_name="VGG_ILSVRC_19_layers")
    blobs = {name: b for name, _t, b in layers if b}
    del layers
    state = {}
    for (name, _i, n_out), index in zip(cw.VGG19_CONVS, FEATURE_INDICES):
        state[f"features.{index}.weight"] = torch.from_numpy(blobs[name][0])
        state[f"features.{index}.bias"] = torch.from_numpy(blobs[name][1].reshape(n_out))
    for name, n_in, n_out in cw.VGG19_FCS:
        index = CLASSIFIER_INDICES[name]
        state[f"classifier.{index}.weight"] = torch.from_numpy(blobs[name][0].reshape(n_out, n_in))
        state[f"classifier.{index}.bias"] = torch.from_numpy(blobs[name][1].reshape(n_out))
    kamitani = folder / "VGG_ILSVRC_19_layers.pt"
    torch.save(state, kamitani)
    del state, blobs
    yield caffemodel, kamitani
    for path in folder.iterdir():
        path.unlink()


@pytest.fixture(scope="module")
def generator_files(tmp_path_factory):
    """(caffemodel V2, KamitaniLab-layout .pt) of one random DeePSiM generator."""
    folder = tmp_path_factory.mktemp("generator")
    caffemodel = folder / "generator.caffemodel"
    layers = cw.random_generator_layers(seed=1)
    cw.write_caffemodel(caffemodel, layers, fmt="v2", net_name="deepsim_fc7_generator")
    # KamitaniLab's keys are the Caffe layer names; Linear (out, in) and ConvTranspose2d
    # (in, out, k, k) are exactly Caffe's InnerProduct and Deconvolution layouts.
    state = {}
    for name, _t, blobs in layers:
        if blobs:
            state[f"{name}.weight"] = torch.from_numpy(blobs[0])
            state[f"{name}.bias"] = torch.from_numpy(blobs[1])
    del layers
    kamitani = folder / "generator.pt"
    torch.save(state, kamitani)
    del state
    yield caffemodel, kamitani
    for path in folder.iterdir():
        path.unlink()


@pytest.fixture
def scratch(tmp_path):
    """``tmp_path``, emptied afterwards (pytest keeps old temp folders; these are large)."""
    yield tmp_path
    for path in tmp_path.iterdir():
        path.unlink()


@pytest.fixture(scope="module")
def vgg19_input() -> np.ndarray:
    """(2, 3, 224, 224) float32 in Caffe space: roughly mean-subtracted 0..255 pixels."""
    rng = np.random.default_rng(10)
    return rng.uniform(-123.0, 151.0, (BATCH, 3, 224, 224)).astype(np.float32)


@pytest.fixture(scope="module")
def generator_input() -> np.ndarray:
    """(2, 4096) float32 non-negative, like fc7 activations within the scripts' bounds."""
    rng = np.random.default_rng(11)
    return rng.uniform(0.0, 4.0, (BATCH, 4096)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Parity with OpenCV


@pytest.mark.parametrize("variant", ["relu", "leaky"])
def test_vgg19_matches_opencv_on_every_tapped_blob(vgg19_files, vgg19_input, tmp_path, variant, device):
    caffemodel, _pt = vgg19_files
    prototxt = tmp_path / f"vgg19_{variant}.prototxt"
    prototxt.write_text(cw.vgg19_prototxt(variant, batch=BATCH))
    reference = opencv_forward(prototxt, caffemodel, vgg19_input, cw.VGG19_TAPS)

    net = models.load_vgg19(caffemodel, variant=variant, device=device, cache=False)
    with torch.no_grad():
        ours = net(torch.from_numpy(vgg19_input).to(device))
    assert list(ours) == list(cw.VGG19_TAPS)
    errors = {}
    for name in cw.VGG19_TAPS:
        mine = ours[name].cpu().numpy()
        assert mine.shape == reference[name].shape, (name, mine.shape, reference[name].shape)
        errors[name] = relative_l2(mine, reference[name])
    worst = max(errors, key=errors.get)
    assert errors[worst] <= RTOL_L2, f"{variant}: {worst} relative L2 {errors[worst]:.2e}; all {errors}"
    # The taps really are before the activation (the test would be blind otherwise).
    for name in ("conv1_1", "conv5_4", "fc6", "fc7"):
        assert (reference[name] < 0).any(), name
    if variant == "leaky":  # average pooling of leaky-ReLU outputs can be negative
        assert (reference["pool1"] < 0).any()
    else:  # max pooling of ReLU outputs is non-negative
        assert (reference["pool1"] >= 0).all()


def test_generator_matches_opencv(generator_files, generator_input, tmp_path, device):
    caffemodel, _pt = generator_files
    prototxt = tmp_path / "generator.prototxt"
    prototxt.write_text(cw.generator_prototxt(batch=BATCH))
    # OpenCV names outputs by layer: the blob ``generated`` is the output of ``deconv0``.
    reference = opencv_forward(prototxt, caffemodel, generator_input, ["deconv0"])["deconv0"]
    gen = models.load_generator(caffemodel, device=device, cache=False)
    with torch.no_grad():
        ours = gen(torch.from_numpy(generator_input).to(device)).cpu().numpy()
    assert ours.shape == reference.shape == (BATCH, 3, 256, 256)
    assert 0.1 < float(np.abs(reference).mean()) < 1e3  # the random weights give sane values
    error = relative_l2(ours, reference)
    assert error <= RTOL_L2, f"generated: relative L2 {error:.2e}"


# ---------------------------------------------------------------------------------------
# KamitaniLab's converted state_dicts and the conversion cache


def _all_features(net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = net(x)
    return out if isinstance(out, dict) else {"generated": out}


def test_vgg19_loads_kamitanilab_state_dict(vgg19_files, vgg19_input, device):
    caffemodel, kamitani = vgg19_files
    state_keys = set(torch.load(kamitani, map_location="cpu", weights_only=True))
    assert "features.34.weight" in state_keys and "classifier.6.bias" in state_keys
    x = torch.from_numpy(vgg19_input[:1]).to(device)
    from_caffe = _all_features(models.load_vgg19(caffemodel, device=device, cache=False), x)
    from_pt = _all_features(models.load_vgg19(kamitani, device=device), x)
    assert list(from_pt) == list(from_caffe)
    for name in from_caffe:
        assert torch.equal(from_pt[name], from_caffe[name]), name


def test_generator_loads_kamitanilab_state_dict(generator_files, generator_input, device):
    caffemodel, kamitani = generator_files
    x = torch.from_numpy(generator_input).to(device)
    from_caffe = _all_features(models.load_generator(caffemodel, device=device, cache=False), x)
    from_pt = _all_features(models.load_generator(kamitani, device=device), x)
    assert torch.equal(from_pt["generated"], from_caffe["generated"])


@pytest.mark.parametrize("net_kind", ["generator", "vgg19"])
def test_converted_caffemodel_is_cached_and_reused(net_kind, vgg19_files, generator_files,
                                                   vgg19_input, generator_input, scratch,
                                                   monkeypatch, device):
    tmp_path = scratch
    source = (generator_files if net_kind == "generator" else vgg19_files)[0]
    load = models.load_generator if net_kind == "generator" else models.load_vgg19
    x = torch.from_numpy(generator_input if net_kind == "generator" else vgg19_input[:1]).to(device)
    caffemodel = tmp_path / source.name
    os.link(source, caffemodel)  # same file, own folder: the cache lands beside it

    first = _all_features(load(caffemodel, device=device), x)
    cache_files = sorted(set(tmp_path.iterdir()) - {caffemodel})
    assert len(cache_files) == 1, cache_files
    assert not any(".tmp" in p.name for p in cache_files)

    def no_caffe_read(*args, **kwargs):
        raise AssertionError("the caffemodel was read again instead of the cache")

    with monkeypatch.context() as patch:
        patch.setattr(weight_loading, "read_caffemodel", no_caffe_read)
        patch.setattr(caffemodel_module, "read_caffemodel", no_caffe_read)
        second = _all_features(load(caffemodel, device=device), x)
    assert list(second) == list(first)
    for name in first:
        assert torch.equal(second[name], first[name]), name

    if net_kind == "vgg19":
        return  # the stale-cache rule is the same code; checked on the smaller net only
    # A caffemodel newer than its cache is converted again.
    stamp = os.path.getmtime(cache_files[0]) + 10
    os.utime(caffemodel, (stamp, stamp))
    calls = []
    real_read = weight_loading.read_caffemodel

    def counting_read(*args, **kwargs):
        calls.append(args)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(weight_loading, "read_caffemodel", counting_read)
    third = _all_features(load(caffemodel, device=device), x)
    assert calls, "a stale cache was used"
    for name in first:
        assert torch.equal(third[name], first[name]), name
