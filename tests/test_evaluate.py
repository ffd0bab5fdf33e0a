"""Identification accuracy, PixCorr, SSIM and the results-tree evaluation."""

import csv
import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from _results_tree import PROJECT_ROOT, save_png, save_recon, write_record
from icnn_torch import evaluate
from icnn_torch.analysis.cli import evaluate_parser
from icnn_torch.analysis import evaluate as analysis_evaluate
from icnn_torch.analysis.evaluate import (BASE_COLUMNS, NetInputSizeError, NoReconstructionsError,
                                          evaluate_results)
from icnn_torch.analysis.stimuli import find_stimulus, load_stimulus, read_stimulus_mapping
from icnn_torch.analysis.tables import write_csv
from icnn_torch.errors import ConfigError, DamagedFileError, MissingDataError
from icnn_torch.metrics import (feature_identification, pairwise_identification, pixcorr,
                                rgb_to_grey, ssim)
from icnn_torch.store.results import find_reconstructions, load_reconstruction
SCRIPT2 = "2_reconstruct_natural_image_without_DGN"
SCRIPT3 = "3_reconstruct_natural_image_different_combinations_of_CNN_layers"
SCRIPT4 = "4_reconstruct_shape_image"


# --------------------------------------------------------------------------- identification

@pytest.mark.parametrize("metric", ["corr", "euclidean"])
def test_reconstructions_equal_to_stimuli_identify_perfectly(metric):
    rng = np.random.default_rng(1)
    stimuli = rng.uniform(0, 255, size=(8, 16, 16, 3))
    accuracy = pairwise_identification(stimuli.copy(), stimuli, metric)
    assert accuracy.shape == (8,)
    assert np.all(accuracy == 1.0)


@pytest.mark.parametrize("metric", ["corr", "euclidean"])
def test_noise_reconstructions_are_at_chance(metric):
    # For unrelated images the true stimulus's rank among the N candidates is uniform, so
    # one image's accuracy is ~uniform(0, 1) and the mean over N images has sd
    # 1/sqrt(12 N): 0.017 for N = 300, against a tolerance of 0.05.
    n = 300
    rng = np.random.default_rng(2)
    stimuli = rng.uniform(0, 255, size=(n, 8, 8, 3))
    noise = rng.uniform(0, 255, size=stimuli.shape)
    assert abs(pairwise_identification(noise, stimuli, metric).mean() - 0.5) < 0.05
    # reconstructions of the wrong images: a random shuffle without fixed points
    order = rng.permutation(n)
    shown = np.empty(n, dtype=int)
    shown[order] = np.roll(order, 1)
    assert not np.any(shown == np.arange(n))
    assert abs(pairwise_identification(stimuli[shown], stimuli, metric).mean() - 0.5) < 0.05


def test_identification_matches_hand_computed_three_image_example():
    # Stimuli and reconstructions are 3-pixel "images". Centred, every vector below has
    # norm sqrt(2), so correlations are (centred dot product) / 2.
    stimuli = np.array([[1, 2, 3],    # centred (-1, 0, 1)
                        [3, 2, 1],    # centred ( 1, 0,-1)
                        [1, 3, 2]],   # centred (-1, 1, 0)
                       dtype=float)
    recons = np.array([[1, 3, 2],     # corr with s0, s1, s2: 0.5, -0.5, 1
                       [3, 2, 1],     # corr: -1, 1, -0.5
                       [2, 1, 3]],    # centred (0,-1, 1); corr: 0.5, -0.5, -0.5
                      dtype=float)
    # recon 0 (true s0 at 0.5): beats s1 (-0.5), loses to s2 (1)            -> 1/2
    # recon 1 (true s1 at 1): beats s0 and s2                               -> 1
    # recon 2 (true s2 at -0.5): loses to s0 (0.5), ties with s1 (-0.5)     -> (0 + 0.5)/2
    assert pairwise_identification(recons, stimuli, "corr") == pytest.approx([0.5, 1.0, 0.25])
    # Squared distances: recon 0 to s0, s1, s2 = 2, 6, 0 -> 1/2;
    # recon 1 = 8, 0, 6 -> 1; recon 2 = 2, 6, 6 -> (0 + 0.5)/2.
    assert pairwise_identification(recons, stimuli, "euclidean") == pytest.approx(
        [0.5, 1.0, 0.25])
    # the same numbers for image-shaped input
    assert pairwise_identification(recons.reshape(3, 1, 1, 3), stimuli.reshape(3, 1, 1, 3)
                                   ) == pytest.approx([0.5, 1.0, 0.25])


def test_constant_reconstruction_scores_chance():
    rng = np.random.default_rng(3)
    stimuli = rng.uniform(0, 255, size=(5, 8, 8, 3))
    recons = stimuli.copy()
    recons[2] = 128.0
    accuracy = pairwise_identification(recons, stimuli, "corr")
    assert accuracy[2] == 0.5
    assert np.all(np.delete(accuracy, 2) == 1.0)


def test_identification_input_errors():
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_identification(np.zeros((1, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\)"):
        pairwise_identification(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="metric"):
        pairwise_identification(np.ones((3, 4)), np.ones((3, 4)), "cosine")


# --------------------------------------------------------------------------- PixCorr, SSIM

def test_pixcorr_is_pearson_of_flattened_images():
    rng = np.random.default_rng(4)
    a = rng.uniform(0, 255, size=(10, 9, 3))
    b = 0.5 * a + rng.normal(0, 30, size=a.shape)
    x, y = a.ravel() - a.mean(), b.ravel() - b.mean()
    assert pixcorr(a, b) == pytest.approx(x @ y / math.sqrt((x @ x) * (y @ y)), rel=1e-12)
    assert pixcorr(a, 3 * a + 7) == pytest.approx(1.0)
    assert pixcorr(a, -a) == pytest.approx(-1.0)
    assert pixcorr(a, np.full_like(a, 9.0)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        pixcorr(a, a[:5])


def _ssim_by_explicit_windows(a, b, sigma=1.5, radius=5, data_range=255.0):
    """SSIM written out per window: Gaussian weights, population moments, border cropped."""
    offsets = np.arange(-radius, radius + 1)
    g1 = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    weights = np.outer(g1, g1) / np.outer(g1, g1).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(radius, a.shape[0] - radius):
        for j in range(radius, a.shape[1] - radius):
            wa = a[i - radius:i + radius + 1, j - radius:j + radius + 1]
            wb = b[i - radius:i + radius + 1, j - radius:j + radius + 1]
            ma, mb = (weights * wa).sum(), (weights * wb).sum()
            va = (weights * (wa - ma) ** 2).sum()
            vb = (weights * (wb - mb) ** 2).sum()
            cov = (weights * (wa - ma) * (wb - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cov + c2)
                          / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_explicit_window_computation():
    rng = np.random.default_rng(5)
    a = rng.uniform(0, 255, size=(21, 18))
    b = np.clip(a + rng.normal(0, 40, size=a.shape), 0, 255)
    expected = _ssim_by_explicit_windows(a, b)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)
    assert 0.2 < expected < 0.95  # a non-trivial case


def test_ssim_of_flat_images_matches_formula():
    # constant images: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 100.0, 140.0
    c1 = (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((16, 16), a), np.full((16, 16), b)) == pytest.approx(expected)


def test_ssim_properties_and_greyscale_conversion():
    rng = np.random.default_rng(6)
    rgb_a = rng.uniform(0, 255, size=(24, 20, 3))
    rgb_b = rng.uniform(0, 255, size=(24, 20, 3))
    assert ssim(rgb_a, rgb_a) == pytest.approx(1.0)
    assert ssim(rgb_a, rgb_b) == pytest.approx(ssim(rgb_b, rgb_a))
    assert ssim(rgb_a, rgb_b) < 0.2
    grey_a = 0.2125 * rgb_a[..., 0] + 0.7154 * rgb_a[..., 1] + 0.0721 * rgb_a[..., 2]
    grey_b = 0.2125 * rgb_b[..., 0] + 0.7154 * rgb_b[..., 1] + 0.0721 * rgb_b[..., 2]
    assert np.allclose(rgb_to_grey(rgb_a), grey_a)
    assert ssim(rgb_a, rgb_b) == pytest.approx(ssim(grey_a, grey_b))
    # the same images on a 0..1 scale with data_range 1 (MindEye's convention) agree
    assert ssim(rgb_a / 255, rgb_b / 255, data_range=1.0) == pytest.approx(ssim(rgb_a, rgb_b))
    with pytest.raises(ValueError, match="window"):
        ssim(np.zeros((8, 30)), np.zeros((8, 30)))


# --------------------------------------------------------------------------- VGG19 features

@pytest.fixture(scope="module")
def random_vgg19():
    from icnn_torch.models import VGG19

    torch.manual_seed(0)
    return VGG19()


def _smooth_images(rng, n, size=224):
    """Blocky random colour images (upsampled 7x7 noise), RGB 0..255."""
    small = rng.uniform(0, 255, size=(n, 7, 7, 3))
    return np.stack([np.asarray(Image.fromarray(img.astype(np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR), dtype=np.float64) for img in small])


def test_feature_identification_with_random_vgg19(random_vgg19, device):
    net = random_vgg19.to(device)
    rng = np.random.default_rng(7)
    stimuli = _smooth_images(rng, 3)
    same = feature_identification(stimuli.copy(), stimuli, net)  # default layers
    assert list(same) == ["conv3_4", "fc7"]
    for accuracy in same.values():
        assert np.all(accuracy == 1.0)
    # reconstruction i shows stimulus i+1: that candidate is always more similar than
    # the true image, so at most one of the two candidates is beaten
    wrong = feature_identification(np.roll(stimuli, 1, axis=0), stimuli, net, ["conv1_2"],
                                   device=device, batch_size=2)
    assert wrong["conv1_2"].shape == (3,)
    assert np.all(wrong["conv1_2"] <= 0.5)


def test_feature_identification_input_errors(random_vgg19):
    with pytest.raises(ValueError, match=r"\(32, 32\).*\(224, 224\)"):
        feature_identification(np.zeros((2, 32, 32, 3)), np.zeros((2, 32, 32, 3)),
                               random_vgg19, ["conv1_1"])
    with pytest.raises(ValueError, match="no layer"):
        feature_identification(np.zeros((2, 224, 224, 3)), np.zeros((2, 224, 224, 3)),
                               random_vgg19, ["conv9_9"])


# --------------------------------------------------------------------------- results tree

def _save_recon(results, rel_dir, label, img):
    save_recon(results / rel_dir, label, img)


def _build_tree(tmp_path, size=32, seed=8):
    """A results tree of scripts 2 and 3 (with their run records) whose reconstructions
    equal their stimuli."""
    rng = np.random.default_rng(seed)
    results, stimuli = tmp_path / "results", tmp_path / "stimuli"
    write_record(results, SCRIPT2)
    write_record(results, SCRIPT3)
    labels2 = ["Img0048", "Img0002", "Img0045", "Img0011"]  # not in the script's order
    labels3 = ["Img0016", "Img0036", "Img0042"]
    images = {}
    for label in sorted(set(labels2 + labels3)):
        images[label] = np.round(rng.uniform(0, 255, size=(size, size, 3)))
        save_png(stimuli / "natural" / f"{label}.png", images[label])
    for label in labels2:
        _save_recon(results, f"{SCRIPT2}/S1/VC", label, images[label])
    for layer_set in ["layers-1to3", "layers-1to1"]:
        for label in labels3:
            _save_recon(results, f"{SCRIPT3}/{layer_set}/S1/VC", label, images[label])
    # files that are not reconstructions must be ignored
    (results / SCRIPT2 / "S1" / "VC" / "snapshots" / "image-Img0002").mkdir(parents=True)
    scipy.io.savemat(results / SCRIPT2 / "S1" / "VC" / "snapshots" / "image-Img0002" /
                     "recon_img-Img0002.mat", {"recon_img": images["Img0002"]})
    return results, stimuli, images


def test_find_reconstructions_orders_sets_and_labels(tmp_path):
    results, _, _ = _build_tree(tmp_path)
    recs = find_reconstructions(results)
    assert [(r.script, r.layer_set, r.label) for r in recs] == (
        [(SCRIPT2, None, label) for label in ["Img0002", "Img0011", "Img0045", "Img0048"]]
        + [(SCRIPT3, "layers-1to1", label) for label in ["Img0016", "Img0036", "Img0042"]]
        + [(SCRIPT3, "layers-1to3", label) for label in ["Img0016", "Img0036", "Img0042"]])
    assert recs[0].image_type == "natural"
    assert recs[0].jpg_path.name == "recon_img_normalized-Img0002.jpg"
    # a script folder itself can be given
    assert [r.label for r in find_reconstructions(results / SCRIPT2)] == [
        r.label for r in recs[:4]]


def test_evaluate_results_perfect_reconstructions(tmp_path):
    results, stimuli, _ = _build_tree(tmp_path)
    rows = evaluate_results(results, stimuli, layers=())
    per_image = [row for row in rows if row["label"] != "mean"]
    means = [row for row in rows if row["label"] == "mean"]
    assert len(per_image) == 10 and len(means) == 3
    assert [row["n_images"] for row in means] == [4, 3, 3]
    assert [(row["layer_set"], row["subject"], row["roi"]) for row in means] == [
        ("", "S1", "VC"), ("layers-1to1", "S1", "VC"), ("layers-1to3", "S1", "VC")]
    for row in rows:
        assert row["ident_pixcorr"] == 1.0 and row["ident_euclidean"] == 1.0
        assert row["pixcorr"] == pytest.approx(1.0)
        assert row["ssim"] == pytest.approx(1.0)
    assert list(rows[0]) == list(BASE_COLUMNS)


def test_evaluate_results_with_features_and_shuffled_set(tmp_path, random_vgg19):
    results, stimuli, images = _build_tree(tmp_path, size=224)
    # set layers-1to3 holds the wrong images: label i shows the image of label i+1
    labels3 = ["Img0016", "Img0036", "Img0042"]
    for label, shown in zip(labels3, labels3[1:] + labels3[:1]):
        _save_recon(results, f"{SCRIPT3}/layers-1to3/S1/VC", label, images[shown])
    rows = evaluate_results(results, stimuli, layers=["conv1_2"], net=random_vgg19,
                            scripts=[SCRIPT3])
    by_set = {row["layer_set"]: row for row in rows if row["label"] == "mean"}
    assert set(by_set) == {"layers-1to1", "layers-1to3"}
    assert by_set["layers-1to1"]["ident_conv1_2"] == 1.0
    assert by_set["layers-1to1"]["ident_pixcorr"] == 1.0
    for key in ("ident_conv1_2", "ident_pixcorr", "ident_euclidean"):
        assert by_set["layers-1to3"][key] <= 0.5
    assert by_set["layers-1to3"]["pixcorr"] < 0.2
    # the stimulus features reused from set layers-1to1 give what a direct call gives
    shown = labels3[1:] + labels3[:1]
    direct = feature_identification(np.stack([images[label] for label in shown]),
                                    np.stack([images[label] for label in labels3]),
                                    random_vgg19, ["conv1_2"])["conv1_2"]
    per_image = [row["ident_conv1_2"] for row in rows
                 if row["layer_set"] == "layers-1to3" and row["label"] != "mean"]
    assert per_image == pytest.approx(direct.tolist())


def test_missing_stimuli_are_skipped_with_a_warning(tmp_path):
    results, stimuli, _ = _build_tree(tmp_path)
    (stimuli / "natural" / "Img0011.png").unlink()
    with pytest.warns(UserWarning, match="1 of 4 reconstructions have no stimulus"):
        rows = evaluate_results(results, stimuli, layers=(), scripts=[SCRIPT2])
    assert [row["label"] for row in rows] == ["Img0002", "Img0045", "Img0048", "mean"]
    assert rows[-1]["n_images"] == 3


def test_single_image_set_has_no_identification(tmp_path):
    results, stimuli, _ = _build_tree(tmp_path)
    for label in ["Img0011", "Img0045", "Img0048"]:
        (stimuli / "natural" / f"{label}.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = evaluate_results(results, stimuli, layers=(), scripts=[SCRIPT2])
    assert math.isnan(rows[0]["ident_pixcorr"]) and rows[0]["pixcorr"] == pytest.approx(1.0)


def test_stimulus_lookup_rules(tmp_path):
    stimuli = tmp_path / "stimuli"
    save_png(stimuli / "Img0001.JPG", np.zeros((4, 4, 3)))
    save_png(stimuli / "color_shape" / "Img0001.png", np.zeros((4, 4, 3)))
    save_png(stimuli / "Img0002.tif", np.zeros((4, 4, 3)))
    save_png(stimuli / "Img0002.jpeg", np.zeros((4, 4, 3)))
    save_png(stimuli / "mine" / "letter_a.png", np.zeros((4, 4, 3)))
    assert find_stimulus(stimuli, "Img0001", "natural") == stimuli / "Img0001.JPG"
    assert (find_stimulus(stimuli, "Img0001", "color_shape")
            == stimuli / "color_shape" / "Img0001.png")
    assert find_stimulus(stimuli, "Img0002") == stimuli / "Img0002.jpeg"  # jpeg before tif
    assert find_stimulus(stimuli, "Img0003") is None
    mapping_csv = tmp_path / "map.csv"
    mapping_csv.write_text("label,filename\n# comment\nImg0003,mine/letter_a.png\n"
                           "alphabet,Img0001,mine/letter_a.png\n")
    mapping = read_stimulus_mapping(mapping_csv, stimuli)
    letter = stimuli / "mine" / "letter_a.png"
    assert find_stimulus(stimuli, "Img0003", "natural", mapping) == letter
    assert find_stimulus(stimuli, "Img0001", "alphabet", mapping) == letter
    assert find_stimulus(stimuli, "Img0001", "natural", mapping) == stimuli / "Img0001.JPG"
    bad = tmp_path / "bad.csv"
    bad.write_text("Img0004,does_not_exist.png\n")
    with pytest.raises(ConfigError, match="does_not_exist.png"):  # was FileNotFoundError
        find_stimulus(stimuli, "Img0004", None, read_stimulus_mapping(bad, stimuli))


def test_stimulus_resized_and_reconstruction_clipped(tmp_path):
    gradient = np.linspace(0, 255, 64)
    img = np.stack(np.broadcast_arrays(gradient[None, :], gradient[:, None],
                                       np.full((64, 64), 80.0)), axis=-1)
    save_png(tmp_path / "s.png", img)
    small = load_stimulus(tmp_path / "s.png", (32, 48))
    assert small.shape == (32, 48, 3) and small.dtype == np.float64
    assert small[..., 2] == pytest.approx(np.full((32, 48), 80.0))
    assert small[0, :, 0].max() > 250 and small[0, :, 0].min() < 5
    raw = np.full((8, 8, 3), 100.0)
    raw[0, 0, 0], raw[1, 1, 1] = -40.0, 300.0
    scipy.io.savemat(tmp_path / "recon_img-Img0001.mat", {"recon_img": raw})
    clipped = load_reconstruction(tmp_path / "recon_img-Img0001.mat")
    assert clipped[0, 0, 0] == 0.0 and clipped[1, 1, 1] == 255.0
    assert load_reconstruction(tmp_path / "recon_img-Img0001.mat", "raw")[0, 0, 0] == -40.0
    # "normalized": the script's JPEG pixels (2nd/98th percentile clip, min-max, uint8)
    ramp = np.arange(8 * 8 * 3, dtype=float).reshape(8, 8, 3) * 10 - 300
    scipy.io.savemat(tmp_path / "recon_img-Img0002.mat", {"recon_img": ramp})
    shown = load_reconstruction(tmp_path / "recon_img-Img0002.mat", "normalized")
    assert shown.min() == 0 and shown.max() == 255 and np.all(shown == np.round(shown))
    assert np.all(np.diff(shown.ravel()) >= 0)  # order kept
    assert shown.ravel()[0] == shown.ravel()[1]  # the bottom 2 % are clipped together
    scipy.io.savemat(tmp_path / "other.mat", {"img": raw})
    with pytest.raises(DamagedFileError, match="recon_img"):  # was KeyError
        load_reconstruction(tmp_path / "other.mat")


def test_cli_writes_csv_and_prints_table(tmp_path, capsys):
    results, stimuli, _ = _build_tree(tmp_path)
    out = tmp_path / "eval" / "scores.csv"
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features",
                          "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert SCRIPT2 in printed and SCRIPT3 in printed and "ident_pixcorr" in printed
    assert "layers-1to3" in printed and "1.000000" in printed
    with open(out, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 13
    assert table[0]["label"] == "Img0002" and float(table[0]["ident_pixcorr"]) == 1.0
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores.csv"]  # no temp left


def test_cli_runs_as_a_module(tmp_path):
    results, stimuli, _ = _build_tree(tmp_path)
    done = subprocess.run([sys.executable, "-m", "icnn_torch.evaluate", str(results),
                           "--stimuli", str(stimuli), "--no-features", "--per-image",
                           "--scripts", SCRIPT2], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Img0048" in done.stdout and "mean" in done.stdout
    assert (results / "evaluation.csv").is_file()


def test_cli_errors_are_actionable(tmp_path, capsys, monkeypatch):
    results, stimuli, _ = _build_tree(tmp_path)
    monkeypatch.chdir(tmp_path)  # no net/ folder here
    assert evaluate.main([str(results), "--stimuli", str(stimuli)]) == 1
    err = capsys.readouterr().err
    assert "VGG_ILSVRC_19_layers.caffemodel" in err
    assert "python -m icnn_torch.download vgg19" in err
    assert "--no-features" in err
    assert evaluate.main([str(results), "--stimuli", str(tmp_path / "nope"),
                          "--no-features"]) == 1
    assert "nope" in capsys.readouterr().err


def test_write_csv_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("old")
    write_csv([{"a": 1, "b": float("nan"), "c": 0.25}], path)
    assert path.read_text() == "a,b,c\n1,nan,0.250000\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


# --------------------------------------------------------------------------- command line, errors

def test_cli_lists_are_comma_separated():
    parser = evaluate_parser()
    args = parser.parse_args(["results", "--stimuli", "s", "--layers", "conv3_4,fc7",
                              "--scripts", f"{SCRIPT2},{SCRIPT3}"])
    assert args.layers == ["conv3_4", "fc7"]
    assert args.scripts == [SCRIPT2, SCRIPT3]
    assert parser.parse_args(["results", "--stimuli", "s"]).layers == ["conv3_4", "fc7"]
    # the old space-separated form is refused, not misread
    with pytest.raises(SystemExit):
        parser.parse_args(["results", "--stimuli", "s", "--layers", "conv3_4", "fc7"])
    with pytest.raises(SystemExit):
        parser.parse_args(["results", "--stimuli", "s", "--layers", ","])


def test_cli_scores_the_scripts_listed(tmp_path, capsys):
    results, stimuli, _ = _build_tree(tmp_path)
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features",
                          "--scripts", f"{SCRIPT3},{SCRIPT2}"]) == 0
    printed = capsys.readouterr().out
    assert SCRIPT2 in printed and SCRIPT3 in printed
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features",
                          "--scripts", "9_no_such_script"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no script folder 9_no_such_script") and SCRIPT2 in err


def _error_lines(capsys):
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if line.strip()]


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    results, stimuli, _ = _build_tree(tmp_path)
    monkeypatch.chdir(tmp_path)  # no net/ folder here
    monkeypatch.delenv("ICNN_TORCH_DEBUG", raising=False)
    cases = [
        ([str(results), "--stimuli", str(stimuli)], "python -m icnn_torch.download vgg19"),
        ([str(results), "--stimuli", str(tmp_path / "nope"), "--no-features"], "nope"),
        ([str(tmp_path / "no_results"), "--stimuli", str(stimuli), "--no-features"],
         "no_results"),
        ([str(results), "--stimuli", str(stimuli), "--no-features", "--mapping",
          str(tmp_path / "no_map.csv")], "no_map.csv"),
    ]
    for argv, named in cases:
        assert evaluate.main(argv) == 1
        lines = _error_lines(capsys)
        assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
        assert evaluate.main(argv + ["--debug"]) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_damaged_files_are_named(tmp_path, capsys):
    results, stimuli, _ = _build_tree(tmp_path)
    bad_mat = results / SCRIPT2 / "S1" / "VC" / "recon_img-Img0011.mat"
    bad_mat.write_bytes(b"MATLAB 5.0 truncated")
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features"]) == 1
    lines = _error_lines(capsys)
    assert len(lines) == 1 and str(bad_mat) in lines[0] and "damaged" in lines[0]
    bad_mat.unlink()
    (stimuli / "natural" / "Img0045.png").write_bytes(b"not a png")
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features"]) == 1
    assert "Img0045.png" in _error_lines(capsys)[0]
    (results / SCRIPT3 / "run.json").write_text('{"something": "else"}')
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features"]) == 1
    line, = _error_lines(capsys)
    assert "run.json" in line and "not an icnn-torch run record" in line


def test_cli_prints_a_warning_line_for_missing_stimuli(tmp_path, capsys):
    results, stimuli, _ = _build_tree(tmp_path)
    (stimuli / "natural" / "Img0011.png").unlink()
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features",
                          "--scripts", SCRIPT2]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: 1 of 4 reconstructions have no stimulus image")
    assert str(stimuli / "natural" / "Img0011.*") in err


def test_feature_errors_name_the_layer_or_size(tmp_path, random_vgg19, capsys, monkeypatch):
    results, stimuli, _ = _build_tree(tmp_path)  # 32x32 reconstructions
    with pytest.raises(ConfigError, match="no layer conv9_9; choose from conv1_1"):
        evaluate_results(results, stimuli, layers=["conv9_9"], net=random_vgg19)
    # the library names the sizes; the command line adds the option that helps
    with pytest.raises(ConfigError, match=r"32x32 pixels, but VGG19 takes 224x224") as info:
        evaluate_results(results, stimuli, layers=["conv1_1"], net=random_vgg19,
                         scripts=[SCRIPT2])
    assert isinstance(info.value, NetInputSizeError) and "--" not in str(info.value)
    monkeypatch.setattr(analysis_evaluate, "_load_vgg19_for_features",
                        lambda path, device: random_vgg19)
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--layers", "conv1_1",
                          "--scripts", SCRIPT2]) == 1
    line, = _error_lines(capsys)
    assert re.search(r"32x32 pixels, but VGG19 takes 224x224.*--no-features", line), line


def test_library_errors_carry_no_command_line_advice(tmp_path, capsys, monkeypatch):
    results, stimuli, _ = _build_tree(tmp_path)
    monkeypatch.chdir(tmp_path)  # no net/ folder here
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoReconstructionsError) as info:
        evaluate_results(tmp_path / "empty", stimuli, layers=())
    assert str(info.value) == f"no recon_img-<label>.mat files under {tmp_path / 'empty'}"
    with pytest.raises(MissingDataError) as info:
        evaluate_results(results, stimuli)
    assert info.value.items == ("vgg19",) and "--" not in info.value.detail
    # the command line says what to do: make results, pass --vgg19 or --no-features
    assert evaluate.main([str(tmp_path / "empty"), "--stimuli", str(stimuli),
                          "--no-features"]) == 1
    line, = _error_lines(capsys)
    assert line.endswith("run a figure script first (e.g. python "
                         "1_reconstruct_natural_image.py)")
    assert evaluate.main([str(results), "--stimuli", str(stimuli)]) == 1
    line, = _error_lines(capsys)
    assert "pass --vgg19 FILE, or skip it with --no-features." in line
    # a CSV that cannot be written: the option that chooses another
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features",
                          "--out", str(blocker / "scores.csv")]) == 1
    line, = _error_lines(capsys)
    assert line.startswith("error: cannot write") and line.endswith("choose a writable --out")


def test_results_without_records_use_the_image_type_option(tmp_path, capsys):
    results, stimuli, _ = _build_tree(tmp_path)
    for script in (SCRIPT2, SCRIPT3):  # as the original code leaves them: no run record
        (results / script / "run.json").unlink()
    assert {rec.image_type for rec in find_reconstructions(results)} == {None}
    # stimuli are in stimuli/natural/: without an image type they are not found
    with pytest.warns(UserWarning, match="10 of 10"):
        assert evaluate_results(results, stimuli, layers=()) == []
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features"]) == 1
    assert "has a stimulus image" in capsys.readouterr().err
    rows = evaluate_results(results, stimuli, layers=(), image_type="natural")
    assert len(rows) == 13 and all(row["ident_pixcorr"] == 1.0 for row in rows)
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features",
                          "--image-type", "natural"]) == 0


def test_single_image_sets_say_why_identification_is_missing(tmp_path, capsys):
    results, stimuli, _ = _build_tree(tmp_path)
    for label in ["Img0011", "Img0045", "Img0048"]:
        (stimuli / "natural" / f"{label}.png").unlink()
    out = tmp_path / "scores.csv"
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features",
                          "--per-image", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1, captured.err
    assert "at least two images" in notes[0] and f"{SCRIPT2}/S1/VC" in notes[0]
    assert SCRIPT3 not in notes[0]  # its sets have three images each
    # the table says n/a where identification cannot be computed, numbers elsewhere
    single = [line for line in captured.out.splitlines() if line.startswith("-  ")]
    assert [line.split()[3] for line in single] == ["Img0002", "mean"]
    for line in single:
        assert line.count("n/a (1 image)") == 2 and "nan" not in line
        assert line.split()[-2:] == ["1.000000", "1.000000"]  # pixcorr, ssim
    assert "n/a" not in "".join(line for line in captured.out.splitlines()
                                 if line.startswith("layers-"))
    # the CSV keeps NaN (machine-readable)
    with open(out, newline="") as handle:
        table = [row for row in csv.DictReader(handle) if row["script"] == SCRIPT2]
    assert [row["label"] for row in table] == ["Img0002", "mean"]
    assert all(row["ident_pixcorr"] == row["ident_euclidean"] == "nan" for row in table)
    # every set of two images or more: no note
    for label in ["Img0011", "Img0045"]:
        save_png(stimuli / "natural" / f"{label}.png", np.zeros((32, 32, 3)))
    assert evaluate.main([str(results), "--stimuli", str(stimuli), "--no-features",
                          "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "note:" not in captured.err and "n/a" not in captured.out
