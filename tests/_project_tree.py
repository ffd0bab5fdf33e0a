"""Test helper: the synthetic project tree the figure scripts run on, and running them.

The tree (built once per session, :func:`build_project_tree`) holds everything the scripts
read, in the original layout: random-weight caffemodels (VGG19 in Caffe's V1 format, the
generator in V2), decoded features that are the true features of random smooth images (so
reconstruction has something to find), std files, the fc7 bounds and the image mean.
Scripts run as subprocesses, as a user runs them, with ``ICNN_TORCH_ROOT`` pointing at the
tree, no network and no download consent.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import scipy.io
import scipy.ndimage

from icnn_torch.fetch.weights import VGG19_SIZE
from icnn_torch.models import VGG19_LAYERS, load_vgg19
from icnn_torch.store import layout
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


def smooth_image(rng: np.random.Generator) -> np.ndarray:
    noise = rng.uniform(0, 255, (224, 224, 3))
    return np.clip(scipy.ndimage.gaussian_filter(noise, (6, 6, 0)) * 3 - 255, 0, 255).astype(np.float32)


def true_features(net, img: np.ndarray) -> dict[str, np.ndarray]:
    from icnn_torch.utils import get_cnn_features
    return get_cnn_features(net, img, ALL19)


def build_project_tree(root: Path) -> Path:
    """Write the synthetic project tree into ``root`` (see the module docstring)."""
    net_dir, data_dir = root / "net", root / "data"
    vgg_path = net_dir / layout.VGG19_CAFFEMODEL_RELPATH
    gen_path = net_dir / layout.GENERATOR_CAFFEMODEL_RELPATH
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
            feats = true_features(nets[network], smooth_image(rng))
            for layer, feat in feats.items():
                std_samples.setdefault(network, {}).setdefault(layer, []).append(
                    float(estimate_cnn_feat_std(feat)))
                path = layout.decoded_feature_path(data_dir, image_type, network, layer, "S1", roi, label)
                path.parent.mkdir(parents=True, exist_ok=True)
                value = feat.reshape(1, -1) if layer.startswith("fc") else feat
                if i == 0 and layer == "fc7":  # one MATLAB v7.3 file per image type
                    write_mat_v73(path, {"feat": value})
                else:
                    scipy.io.savemat(path, {"feat": value})
    for network, per_layer in std_samples.items():
        scipy.io.savemat(layout.feat_std_path(data_dir, network),
                         {layer: np.float32([[np.mean(v)]]) for layer, v in per_layer.items()})
    bounds = layout.fc7_bounds_path(data_dir)
    bounds.parent.mkdir(parents=True)
    # one-digit integers 2..6 and a newline: 8,192 bytes, the original file's size, which the
    # downloader checks
    bounds.write_text(" ".join(str(v) for v in rng.integers(2, 7, 4096)) + "\n")
    mean = np.stack([np.full((256, 256), m) for m in (104.0, 116.7, 122.7)]).astype(np.float64)
    np.save(layout.image_mean_path(data_dir), mean)
    return root


def script_env(root: Path, **extra: str) -> dict:
    """The environment of a script run: the tree as the project root, no network, no
    download consent from the caller's environment, the repository importable (copies of
    the scripts live in temporary folders)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ICNN_TORCH_") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")
           and not k.startswith("SLURM_")}
    env.update(ICNN_TORCH_ROOT=str(root), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    for name in ("FIGSHARE_API", "FIGSHARE_FILES", "VGG19_URL", "DEEPSIM_URL", "FC7_BOUNDS_URL"):
        env[f"ICNN_TORCH_{name}"] = "http://127.0.0.1:9/offline"  # discard port: no network
    env.update(extra)
    return env


def run(script: str | Path, root: Path, *args: str, timeout: float = 600,
        **extra_env: str) -> subprocess.CompletedProcess:
    """Run a script (its name in the repository, or a path) as a user runs it."""
    path = script if isinstance(script, Path) else REPO / f"{script}.py"
    return subprocess.run([sys.executable, str(path), *args], env=script_env(root, **extra_env),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def check_outputs(out_dir: Path, label: str, dtype=np.float32) -> np.ndarray:
    """The two outputs of a reconstruction; ``dtype`` None: the recon_img dtype is not checked
    (an L-BFGS engine's, asserted by test_lbfgs_script_saves_float64)."""
    mat = scipy.io.loadmat(out_dir / f"recon_img-{label}.mat")
    img = mat["recon_img"]
    assert img.shape == (224, 224, 3)
    assert dtype is None or img.dtype == dtype
    assert np.all(np.isfinite(img))
    jpg = PIL.Image.open(out_dir / f"recon_img_normalized-{label}.jpg")
    assert jpg.size == (224, 224) and jpg.mode == "RGB"
    assert not list(out_dir.glob(".*tmp*")), "temporary files left behind"
    return img


def script_copy(folder: Path, source: str, name: str, edits: str) -> Path:
    """A copy of a script under another name, its constants edited by assignments placed
    after the originals (as a user editing the constants gets)."""
    head, sep, tail = (REPO / f"{source}.py").read_text().partition("\nif __name__ == '__main__':")
    assert sep, f"{source}.py does not end in the main guard"
    path = folder / f"{name}.py"
    path.write_text(f"{head}\n# Edited in this copy.\n{edits}\n{sep}{tail}")
    return path


def read_record(results_dir: Path) -> dict:
    return json.loads((results_dir / "run.json").read_text())


def read_options(results_dir: Path) -> dict:
    with open(results_dir / "options.pkl", "rb") as f:
        return pickle.load(f)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]
