"""The seven figure scripts, end to end, on a synthetic project tree.

The tree (built once per session) holds everything the scripts read, in the original
layout: random-weight caffemodels (VGG19 in Caffe's V1 format, the generator in V2),
decoded features that are the true features of random smooth images (so
reconstruction has something to find), std files, the fc7 bounds and the image mean.
Each script runs as a subprocess, as a user runs it, with the documented command-line
overrides (one subject, one or two labels, one iteration) and ``ICNN_TORCH_ROOT``
pointing at the tree.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import scipy.io
import scipy.ndimage

from icnn_torch import data
from icnn_torch.download import VGG19_SIZE
from icnn_torch.models import VGG19_LAYERS, load_vgg19
from icnn_torch.utils import estimate_cnn_feat_std

from _data_matlab import write_mat_v73
from caffe_writer import random_generator_layers, random_vgg19_layers, write_caffemodel

REPO = Path(__file__).resolve().parents[1]
ALL19 = [l for l in VGG19_LAYERS if not l.startswith("pool")]

# script -> (image_type, network, [(roi, label)] the test runs, extra argv)
SCRIPTS = {
    "1_reconstruct_natural_image": ("natural", "VGG19", [("VC", "Img0009")], []),
    "2_reconstruct_natural_image_without_DGN": ("natural", "VGG19", [("VC", "Img0002")], []),
    "3_reconstruct_natural_image_different_combinations_of_CNN_layers":
        ("natural", "VGG19", [("VC", "Img0016")], []),
    "4_reconstruct_shape_image": ("color_shape", "VGG19", [("VC", "Img0001")], []),
    "5_reconstruct_shape_image_different_ROI":
        ("color_shape", "VGG19", [("V1", "Img0004"), ("VC", "Img0004")], ["--rois", "V1,VC"]),
    "6_reconstruct_alphabet_image": ("alphabet", "VGG19", [("VC", "Img0005")], []),
    "7_reconstruct_imagined_image": ("imagery", "VGG19_leaky", [("VC", "Img0001")], []),
}
LAYER_SETS = ["layers-1to1", "layers-1to3", "layers-1to5", "layers-1to7"]
KILL_LABELS = ["Img0011", "Img0045"]  # script 2, for the kill-and-resume test


def _smooth_image(rng: np.random.Generator) -> np.ndarray:
    noise = rng.uniform(0, 255, (224, 224, 3))
    return np.clip(scipy.ndimage.gaussian_filter(noise, (6, 6, 0)) * 3 - 255, 0, 255).astype(np.float32)


def _features(net, img: np.ndarray) -> dict[str, np.ndarray]:
    from icnn_torch.utils import get_cnn_features
    return get_cnn_features(net, img, ALL19)


@pytest.fixture(scope="session")
def project_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    net_dir, data_dir = root / "net", root / "data"
    vgg_path = net_dir / data.VGG19_CAFFEMODEL_RELPATH
    gen_path = net_dir / data.GENERATOR_CAFFEMODEL_RELPATH
    vgg_path.parent.mkdir(parents=True)
    gen_path.parent.mkdir(parents=True)
    write_caffemodel(vgg_path, random_vgg19_layers(seed=0), fmt="v1", legacy_shapes=True,
                     pad_to=VGG19_SIZE)  # the published size, which the downloader checks
    write_caffemodel(gen_path, random_generator_layers(seed=1), fmt="v2")
    nets = {"VGG19": load_vgg19(vgg_path, "relu", device="cpu"),  # also writes the cache
            "VGG19_leaky": load_vgg19(vgg_path, "leaky", device="cpu")}

    rng = np.random.default_rng(0)
    wanted: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for image_type, network, pairs, _ in SCRIPTS.values():
        wanted.setdefault((image_type, network), set()).update(pairs)
    wanted[("natural", "VGG19")].update(("VC", label) for label in KILL_LABELS)
    std_samples: dict[str, dict[str, list[float]]] = {}
    for (image_type, network), pairs in sorted(wanted.items()):
        for i, (roi, label) in enumerate(sorted(pairs)):
            feats = _features(nets[network], _smooth_image(rng))
            for layer, feat in feats.items():
                std_samples.setdefault(network, {}).setdefault(layer, []).append(
                    float(estimate_cnn_feat_std(feat)))
                path = data.decoded_feature_path(data_dir, image_type, network, layer, "S1", roi, label)
                path.parent.mkdir(parents=True, exist_ok=True)
                value = feat.reshape(1, -1) if layer.startswith("fc") else feat
                if i == 0 and layer == "fc7":  # one MATLAB v7.3 file per image type
                    write_mat_v73(path, {"feat": value})
                else:
                    scipy.io.savemat(path, {"feat": value})
    for network, per_layer in std_samples.items():
        scipy.io.savemat(data.feat_std_path(data_dir, network),
                         {layer: np.float32([[np.mean(v)]]) for layer, v in per_layer.items()})
    bounds = data.fc7_bounds_path(data_dir)
    bounds.parent.mkdir(parents=True)
    bounds.write_text(" ".join(str(v) for v in rng.integers(2, 7, 4096)))
    mean = np.stack([np.full((256, 256), m) for m in (104.0, 116.7, 122.7)]).astype(np.float64)
    np.save(data.image_mean_path(data_dir), mean)
    return root


def _run(script: str, root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, ICNN_TORCH_ROOT=str(root), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, str(REPO / f"{script}.py"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _check_outputs(out_dir: Path, label: str) -> np.ndarray:
    mat = scipy.io.loadmat(out_dir / f"recon_img-{label}.mat")
    img = mat["recon_img"]
    assert img.shape == (224, 224, 3) and img.dtype == np.float32
    assert np.all(np.isfinite(img))
    jpg = PIL.Image.open(out_dir / f"recon_img_normalized-{label}.jpg")
    assert jpg.size == (224, 224) and jpg.mode == "RGB"
    assert not list(out_dir.glob(".*tmp*")), "temporary files left behind"
    return img


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_runs_and_writes_the_original_tree(project_root, script):
    image_type, network, pairs, extra = SCRIPTS[script]
    labels = sorted({label for _, label in pairs})
    proc = _run(script, project_root, "--subjects", "S1", "--labels", ",".join(labels),
                "--iterations", "1", "--snapshot-every", "1", *extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = project_root / "results" / script
    with open(results / "options.pkl", "rb") as f:
        options = pickle.load(f)
    assert options["loss_type"] == "l2"
    assert options["iter_n" if script.startswith("1_") else "maxiter"] == 1
    sets = LAYER_SETS if script.startswith("3_") else [None]
    for layer_set in sets:
        base = results / layer_set if layer_set else results
        for roi, label in pairs:
            out_dir = base / "S1" / roi
            img = _check_outputs(out_dir, label)
            snaps = sorted((out_dir / "snapshots" / f"image-{label}").glob("0*.jpg"))
            first = "00001.jpg" if script.startswith("1_") else "00000.jpg"
            assert snaps and snaps[0].name == first
            if not script.startswith("1_"):
                assert img.min() >= -1e-3 and img.max() <= 255 + 1e-3  # the L-BFGS pixel box
    assert "iter=" in proc.stdout  # not a terminal: the original's progress lines
    assert "image mean: per-channel average" in proc.stdout


def test_rerun_skips_finished_and_force_redoes(project_root):
    script = "6_reconstruct_alphabet_image"
    args = ("--subjects", "S1", "--labels", "Img0005", "--iterations", "1", "--snapshot-every", "0")
    first = _run(script, project_root, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    mat = project_root / "results" / script / "S1" / "VC" / "recon_img-Img0005.mat"
    stamp = mat.stat().st_mtime_ns
    again = _run(script, project_root, *args)
    assert again.returncode == 0 and "1 already done" in again.stdout
    assert mat.stat().st_mtime_ns == stamp
    forced = _run(script, project_root, *args, "--force")
    assert forced.returncode == 0 and "0 already done" in forced.stdout
    assert mat.stat().st_mtime_ns != stamp


def test_killed_run_resumes_without_redoing_or_corrupting(project_root, tmp_path):
    """SIGKILL script 2 after its first image; the rerun does only the second one."""
    script = "2_reconstruct_natural_image_without_DGN"
    args = ["--subjects", "S1", "--labels", ",".join(KILL_LABELS), "--iterations", "8",
            "--snapshot-every", "0", "--results-dir", str(tmp_path / "results")]
    env = dict(os.environ, ICNN_TORCH_ROOT=str(project_root), PYTHONUNBUFFERED="1")
    out_dir = tmp_path / "results" / script / "S1" / "VC"
    first_mat = out_dir / f"recon_img-{KILL_LABELS[0]}.mat"
    proc = subprocess.Popen([sys.executable, str(REPO / f"{script}.py"), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not first_mat.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first_mat.exists(), "the first reconstruction never finished"
        time.sleep(0.5)  # well inside the second reconstruction
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    second_mat = out_dir / f"recon_img-{KILL_LABELS[1]}.mat"
    assert not second_mat.exists(), "the run finished before it was killed; test is void"
    stamp = first_mat.stat().st_mtime_ns
    _check_outputs(out_dir, KILL_LABELS[0])

    rerun = _run(script, project_root, *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "1 already done" in rerun.stdout
    assert first_mat.stat().st_mtime_ns == stamp
    for label in KILL_LABELS:
        _check_outputs(out_dir, label)


def test_missing_data_names_the_download_command(project_root, tmp_path):
    """With no terminal and a feature file absent, stop with the command, touch no network."""
    import shutil
    root = tmp_path / "incomplete"
    shutil.copytree(project_root / "data", root / "data",
                    ignore=shutil.ignore_patterns("conv5_4"))
    os.symlink(project_root / "net", root / "net")
    proc = _run("4_reconstruct_shape_image", root, "--subjects", "S1", "--labels", "Img0001",
                "--iterations", "1", timeout=120)
    assert proc.returncode != 0
    assert "python -m icnn_torch.download" in proc.stderr
    assert "decodedfeatures-color_shape-VGG19-conv5_4-S1.zip" in proc.stderr
