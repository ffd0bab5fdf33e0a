"""Data layer: feature file formats, std correction, layer weights, mean, std and bounds files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from icnn_torch.errors import DamagedFileError, MissingDataError
from icnn_torch.run.advice import Context, fix_for, render
from icnn_torch.store import layout, published
from icnn_torch.store.features import (correct_feature_std, layer_weights, load_feat,
                                       load_feat_std, read_decoded_features)
from icnn_torch.store.layout import decoded_feature_path
from icnn_torch.store.net_data import load_fc7_upper_bound, load_image_mean

from _data_matlab import write_mat_v5, write_mat_v73

SHARED = Path(__file__).resolve().parents[2] / "shared" / "original"
SPEC_MEAN_BGR = (104.00699, 116.66877, 122.67892)


def _rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- paths

def test_decoded_feature_path_follows_the_original_layout():
    path = decoded_feature_path("data", "color_shape", "VGG19", "conv3_4", "S2", "HVC", "Img0011")
    assert path.as_posix() == ("data/decodedfeatures/color_shape/VGG19/conv3_4/S2/HVC/"
                               "color_shape-VGG19-conv3_4-S2-HVC-Img0011.mat")
    assert layout.decoded_feature_zip_name("imagery", "VGG19_leaky", "fc7", "S3") == \
        "decodedfeatures-imagery-VGG19_leaky-fc7-S3.zip"


def test_weight_and_data_paths_match_the_scripts(tmp_path):
    assert layout.vgg19_weights_path("net", pytorch=False).as_posix() == \
        "net/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel"
    assert layout.generator_weights_path("net", pytorch=False).as_posix() == \
        "net/generator_for_inverting_fc7/generator.caffemodel"
    assert layout.fc7_bounds_path("data").as_posix() == "data/act_range/3x/fc7.txt"
    assert layout.feat_std_path("data", "VGG19_leaky").name == \
        "estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat"
    # pytorch=None picks the .pt only when it is the one present
    pt = layout.vgg19_weights_path(tmp_path, pytorch=True)
    assert layout.vgg19_weights_path(tmp_path).suffix == ".caffemodel"
    pt.parent.mkdir(parents=True)
    pt.write_bytes(b"x")
    assert layout.vgg19_weights_path(tmp_path) == pt


# --------------------------------------------------------------------------- feat files

def test_v5_and_v73_conv_features_load_to_the_same_array(tmp_path):
    feat = _rng().standard_normal((4, 5, 6)).astype(np.float32)  # no two axes alike
    write_mat_v5(tmp_path / "v5.mat", {"feat": feat})
    write_mat_v73(tmp_path / "v73.mat", {"feat": feat})
    with h5py.File(tmp_path / "v73.mat", "r") as f:  # the file really is column-major
        assert f["feat"].shape == (6, 5, 4)
    assert h5py.is_hdf5(str(tmp_path / "v73.mat"))
    assert (tmp_path / "v73.mat").read_bytes()[:10] == b"MATLAB 7.3"
    from_v5 = load_feat(tmp_path / "v5.mat")
    from_v73 = load_feat(tmp_path / "v73.mat")
    assert from_v5.shape == from_v73.shape == (4, 5, 6)
    assert from_v5.dtype == from_v73.dtype == np.float32
    np.testing.assert_array_equal(from_v5, feat)
    np.testing.assert_array_equal(from_v73, feat)


@pytest.mark.parametrize("stored_shape", [(1, 7), (7, 1)])
@pytest.mark.parametrize("writer", [write_mat_v5, write_mat_v73])
def test_fc_features_stored_as_matlab_vectors_become_1d(tmp_path, stored_shape, writer):
    values = np.arange(7, dtype=np.float32) - 3.5
    writer(tmp_path / "fc.mat", {"feat": values.reshape(stored_shape)})
    loaded = load_feat(tmp_path / "fc.mat")
    assert loaded.shape == (7,)
    np.testing.assert_array_equal(loaded, values)


def test_v73_without_userblock_and_double_precision(tmp_path):
    feat = _rng(1).standard_normal((3, 2, 2))
    write_mat_v73(tmp_path / "plain.mat", {"feat": feat, "other": np.ones(3)}, userblock=False)
    loaded = load_feat(tmp_path / "plain.mat")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, feat)


def test_file_without_feat_variable_names_the_variables(tmp_path):
    write_mat_v5(tmp_path / "a.mat", {"something": np.ones((2, 2))})
    write_mat_v73(tmp_path / "b.mat", {"something": np.ones((2, 2))})
    for name in ("a.mat", "b.mat"):
        with pytest.raises(KeyError, match="something"):
            load_feat(tmp_path / name)


def _write_layout(root: Path, layers: dict, writer_for_layer) -> None:
    for layer, feat in layers.items():
        path = decoded_feature_path(root, "natural", "VGG19", layer, "S1", "VC", "Img0009")
        path.parent.mkdir(parents=True)
        writer_for_layer(layer)(path, {"feat": feat})


def test_load_decoded_features_mixed_formats(tmp_path):
    rng = _rng(2)
    layers = {"conv1_1": rng.standard_normal((3, 4, 4)).astype(np.float32),
              "fc7": rng.standard_normal((1, 9)).astype(np.float32)}
    _write_layout(tmp_path, layers, lambda layer: write_mat_v73 if layer == "fc7" else write_mat_v5)
    feats = read_decoded_features(tmp_path / "decodedfeatures", "natural", "VGG19",
                                  ["fc7", "conv1_1"], "S1", "VC", "Img0009")
    assert list(feats) == ["fc7", "conv1_1"]
    np.testing.assert_array_equal(feats["conv1_1"], layers["conv1_1"])
    np.testing.assert_array_equal(feats["fc7"], layers["fc7"].reshape(-1))


def test_missing_feature_names_the_file_and_the_download_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_layout(Path("data"), {"conv1_1": np.ones((2, 2, 2), np.float32)}, lambda _: write_mat_v5)
    with pytest.raises(MissingDataError) as info:
        read_decoded_features("data/decodedfeatures", "natural", "VGG19",
                              ["conv1_1", "fc8", "pool1"], "S1", "VC", "Img0009")
    err = info.value
    assert isinstance(err, FileNotFoundError)
    message = str(err)
    assert "data/decodedfeatures/natural/VGG19/fc8/S1/VC/natural-VGG19-fc8-S1-VC-Img0009.mat" \
        in message
    assert err.items == ("decodedfeatures-natural-VGG19-fc8-S1.zip",
                         "decodedfeatures-natural-VGG19-pool1-S1.zip")
    assert "python -m icnn_torch.download" not in message  # the library names no command
    command = fix_for(err, Context())  # the command line's advice
    assert command == ("python -m icnn_torch.download decodedfeatures-natural-VGG19-fc8-S1.zip"
                       " decodedfeatures-natural-VGG19-pool1-S1.zip")
    assert render(err, Context()).endswith(f"Download with: {command}")
    # a single file, another data dir: the command carries --data-dir
    with pytest.raises(MissingDataError) as info:
        read_decoded_features(tmp_path / "elsewhere" / "decodedfeatures", "natural", "VGG19",
                              ["conv1_1"], "S1", "VC", "Img0001")
    assert fix_for(info.value, Context(data_dir=tmp_path / "elsewhere")) == (
        f"python -m icnn_torch.download --data-dir {tmp_path / 'elsewhere'} "
        "decodedfeatures-natural-VGG19-conv1_1-S1.zip")


# --------------------------------------------------------------------------- std correction

def _spec_estimate_std(feat: np.ndarray) -> float:
    """SPEC 4 written out independently: per-channel population std, averaged (conv);
    plain population std (fc)."""
    feat = np.asarray(feat, dtype=np.float64)
    if feat.ndim == 3 and (feat.shape[1] > 1 or feat.shape[2] > 1):
        stds = []
        for channel in feat:
            values = channel.ravel()
            stds.append(np.sqrt(np.mean((values - values.mean()) ** 2)))
        return float(np.mean(stds))
    values = feat.ravel()
    return float(np.sqrt(np.mean((values - values.mean()) ** 2)))


def test_std_correction_matches_the_spec_formula():
    rng = _rng(3)
    features = {"conv1_1": (rng.standard_normal((8, 6, 5)) * 3 + 1).astype(np.float32),
                "pool5": np.abs(rng.standard_normal((4, 2, 2))).astype(np.float32),
                "fc6": (rng.standard_normal(50) * 7).astype(np.float32),
                "fc7": rng.standard_normal((1, 40)).astype(np.float32),
                "fc8": rng.standard_normal((30, 1)).astype(np.float32)}
    std0 = {"conv1_1": 54.19, "pool5": 2.5, "fc6": 3.0, "fc7": 1.5, "fc8": 9.0, "unused": 1.0}
    corrected = correct_feature_std(features, std0)
    assert list(corrected) == list(features)
    for layer, feat in features.items():
        expected = np.asarray(feat, np.float64) / _spec_estimate_std(feat) * std0[layer]
        if layer.startswith("fc"):
            expected = expected.reshape(-1)
        assert corrected[layer].shape == expected.shape, layer
        assert corrected[layer].dtype == np.float32
        np.testing.assert_allclose(corrected[layer], expected, rtol=2e-6, atol=1e-6)
        # after correction, the estimated std is the target std
        assert _spec_estimate_std(corrected[layer]) == pytest.approx(std0[layer], rel=1e-5)


def test_std_correction_rejects_constant_layers_and_unknown_layers():
    with pytest.raises(ValueError, match="conv2_1"):
        correct_feature_std({"conv2_1": np.full((2, 3, 3), 5.0, np.float32)}, {"conv2_1": 1.0})
    with pytest.raises(KeyError, match="conv9_9"):
        correct_feature_std({"conv9_9": np.ones((2, 3, 3))}, {"conv1_1": 1.0})


# --------------------------------------------------------------------------- layer weights

def test_layer_weights_are_inverse_squared_norms_summing_to_one():
    rng = _rng(4)
    features = {"conv1_1": rng.standard_normal((3, 4, 4)).astype(np.float32) * 10,
                "conv5_4": rng.standard_normal((2, 2, 2)).astype(np.float32),
                "fc8": rng.standard_normal(20).astype(np.float32) * 0.1}
    weights = layer_weights(features)
    raw = {k: 1.0 / np.sum(np.asarray(v, np.float64) ** 2) for k, v in features.items()}
    total = sum(raw.values())
    assert list(weights) == list(features)
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-12)
    for layer in features:
        assert weights[layer] == pytest.approx(raw[layer] / total, rel=1e-12)
    assert weights["fc8"] > weights["conv5_4"] > weights["conv1_1"]


def test_all_zero_layer_raises_naming_the_layer_not_nan():
    features = {"conv1_1": np.ones((2, 2, 2), np.float32), "fc7": np.zeros(16, np.float32)}
    with pytest.raises(ValueError, match="'fc7'.*all zero"):
        layer_weights(features)
    with pytest.raises(ValueError, match="conv1_1"):
        layer_weights({"conv1_1": np.array([[[np.nan]]])})
    with pytest.raises(ValueError):
        layer_weights({})


# --------------------------------------------------------------------------- std file

@pytest.mark.parametrize("file_name", ["estimated_vgg19_cnn_feat_std.mat",
                                       "estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat"])
def test_real_std_file_loads(file_name):
    path = SHARED / "data" / file_name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    stds = load_feat_std(path)
    raw = scipy.io.loadmat(str(path))
    layers = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
              for i in range(1, n + 1)] + [f"pool{i}" for i in range(1, 6)] + ["fc6", "fc7", "fc8"]
    for layer in layers:
        assert isinstance(stds[layer], float)
        assert stds[layer] == float(raw[layer][0, 0]) > 0
    assert not any(k.startswith("__") for k in stds)


def test_std_file_v73_equals_v5(tmp_path):
    values = {"conv1_1": np.array([[54.19003]], np.float32), "fc7": np.array([[1.25]], np.float32)}
    write_mat_v5(tmp_path / "v5.mat", values)
    write_mat_v73(tmp_path / "v73.mat", values)
    assert load_feat_std(tmp_path / "v5.mat") == load_feat_std(tmp_path / "v73.mat") == \
        {"conv1_1": float(np.float32(54.19003)), "fc7": 1.25}


def test_missing_std_file_names_the_download_command(tmp_path):
    with pytest.raises(MissingDataError) as info:
        load_feat_std(tmp_path / "estimated_vgg19_cnn_feat_std.mat")
    assert info.value.items == ("estimated_vgg19_cnn_feat_std.mat",)
    assert fix_for(info.value, Context(data_dir=tmp_path)).startswith("python -m icnn_torch.download")
    assert fix_for(info.value, Context(data_dir=tmp_path)).endswith("estimated_vgg19_cnn_feat_std.mat")


# --------------------------------------------------------------------------- mean and bounds

def test_image_mean_from_the_real_file():
    path = SHARED / "data" / "ilsvrc_2012_mean.npy"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    mean, source = load_image_mean(path)
    expected = np.load(path).reshape(3, -1).mean(axis=1)
    assert mean.shape == (3,) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, expected, rtol=1e-7)
    np.testing.assert_allclose(mean, SPEC_MEAN_BGR, atol=1e-4)
    assert str(path) in source and "average" in source


def test_image_mean_falls_back_to_the_spec_constants_and_says_so(tmp_path):
    mean, source = load_image_mean(tmp_path / "ilsvrc_2012_mean.npy")
    np.testing.assert_array_equal(mean, np.float32(SPEC_MEAN_BGR))
    assert "built-in" in source and "not found" in source and "ilsvrc_2012_mean.npy" in source
    assert "BGR (104.007, 116.669, 122.679)" in source  # rounded, not float32 noise


def test_image_mean_from_a_small_file(tmp_path):
    img = np.stack([np.full((4, 4), 10.0), np.full((4, 4), 20.0), np.arange(16.0).reshape(4, 4)])
    np.save(tmp_path / "m.npy", img)
    mean, _ = load_image_mean(tmp_path / "m.npy")
    np.testing.assert_allclose(mean, [10.0, 20.0, 7.5])
    np.save(tmp_path / "bad.npy", np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        load_image_mean(tmp_path / "bad.npy")


def test_fc7_upper_bound_real_file():
    path = SHARED / "act_range" / "3x" / "fc7.txt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    bounds = load_fc7_upper_bound(path)
    assert bounds.shape == (4096,) and bounds.dtype == np.float64  # np.loadtxt's, as the original
    assert set(np.unique(bounds)) <= {2.0, 3.0, 4.0, 5.0, 6.0}
    np.testing.assert_array_equal(bounds, np.array(path.read_text().split(), dtype=np.float32))


def test_fc7_upper_bound_errors(tmp_path):
    (tmp_path / "short.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="4096"):
        load_fc7_upper_bound(tmp_path / "short.txt")
    with pytest.raises(MissingDataError) as info:
        load_fc7_upper_bound(tmp_path / "data" / "act_range" / "3x" / "fc7.txt")
    assert fix_for(info.value, Context(data_dir=tmp_path / "data")) == (
        f"python -m icnn_torch.download --data-dir {tmp_path / 'data'} fc7_bounds")


# --------------------------------------------------------------------------- damaged files

@pytest.mark.parametrize("writer", [write_mat_v5, write_mat_v73])
def test_truncated_feature_file_names_itself_and_the_command(tmp_path, writer):
    """The issue's case: a cut .mat gave ``OSError: could not read bytes`` and no name."""
    data_dir = tmp_path / "data"
    path = decoded_feature_path(data_dir, "natural", "VGG19", "conv3_1", "S2", "VC", "Img0036")
    path.parent.mkdir(parents=True)
    writer(path, {"feat": _rng(5).standard_normal((8, 16, 16)).astype(np.float32)})
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    command = (f"python -m icnn_torch.download --verify --data-dir {data_dir} "
               "decodedfeatures-natural-VGG19-conv3_1-S2.zip")
    for load in (lambda: load_feat(path),
                 lambda: read_decoded_features(data_dir / "decodedfeatures", "natural", "VGG19",
                                               ["conv3_1"], "S2", "VC", "Img0036")):
        with pytest.raises(DamagedFileError) as info:
            load()
        assert isinstance(info.value, ValueError)
        assert info.value.path == str(path)
        assert fix_for(info.value, Context(data_dir=data_dir)) == command
        assert str(path) in str(info.value)
        assert command in render(info.value, Context(data_dir=data_dir))


def test_damaged_std_mean_and_bounds_files_name_themselves(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "act_range" / "3x").mkdir(parents=True)
    std = data_dir / "estimated_vgg19_cnn_feat_std.mat"
    write_mat_v5(std, {"conv1_1": np.float32([[54.2]]), "fc7": np.float32([[1.5]])})
    std.write_bytes(std.read_bytes()[:-40])
    with pytest.raises(DamagedFileError) as info:
        load_feat_std(std)
    published_md5 = published.published_files()[std.name].md5
    assert f"differs from the published {published_md5}" in str(info.value)
    assert fix_for(info.value, Context(data_dir=data_dir)) == \
        f"python -m icnn_torch.download --verify --data-dir {data_dir} " \
        "estimated_vgg19_cnn_feat_std.mat"
    mean = data_dir / "ilsvrc_2012_mean.npy"
    np.save(mean, np.zeros((3, 8, 8)))
    mean.write_bytes(mean.read_bytes()[:200])
    with pytest.raises(DamagedFileError, match="ilsvrc_2012_mean.npy is damaged") as info:
        load_image_mean(mean)
    assert "--verify" in render(info.value, Context(data_dir=data_dir))
    bounds = data_dir / "act_range" / "3x" / "fc7.txt"
    bounds.write_text("2 3 x 4")
    with pytest.raises(DamagedFileError) as info:
        load_fc7_upper_bound(bounds)
    assert info.value.path == str(bounds)
    assert fix_for(info.value, Context(data_dir=data_dir)) == \
        f"python -m icnn_torch.download --verify --data-dir {data_dir} fc7_bounds"


def test_a_feature_tree_is_addressed_by_its_root(tmp_path):
    feat = _rng(6).standard_normal((2, 3, 3)).astype(np.float32)
    path = layout.decode_feature_filename(tmp_path / "mine", "alphabet", "VGG19", "fc6", "S1", "V4",
                                  "Img0003")
    assert path.relative_to(tmp_path).as_posix() == \
        "mine/alphabet/VGG19/fc6/S1/V4/alphabet-VGG19-fc6-S1-V4-Img0003.mat"
    assert decoded_feature_path(tmp_path, "alphabet", "VGG19", "fc6", "S1", "V4", "Img0003") == \
        layout.decode_feature_filename(tmp_path / "decodedfeatures", "alphabet", "VGG19", "fc6", "S1",
                               "V4", "Img0003")
    path.parent.mkdir(parents=True)
    write_mat_v5(path, {"feat": feat})
    loaded = read_decoded_features(tmp_path / "mine", "alphabet", "VGG19", ["fc6"], "S1", "V4",
                                   "Img0003")
    np.testing.assert_array_equal(loaded["fc6"], feat)
    with pytest.raises(MissingDataError) as info:
        read_decoded_features(tmp_path / "mine", "alphabet", "VGG19", ["fc7"], "S1", "V4",
                              "Img0003")
    assert "not the published one" in render(info.value, Context(features_published=False))
    assert fix_for(info.value, Context(features_published=False)) is None


def test_published_labels_and_rois():
    assert published.published_labels("alphabet") == tuple(f"Img{i:04d}" for i in range(1, 11))
    assert [len(published.published_labels(t)) for t in ("natural", "color_shape", "imagery")] == \
        [50, 40, 25]
    assert published.PUBLISHED_ROIS == ("V1", "V2", "V3", "V4", "HVC", "VC")
    assert layout.parse_decoded_feature_zip_name("decodedfeatures-imagery-VGG19_leaky-fc7-S3.zip") \
        == ("imagery", "VGG19_leaky", "fc7", "S3")
    assert layout.parse_decoded_feature_zip_name("ilsvrc_2012_mean.npy") is None
