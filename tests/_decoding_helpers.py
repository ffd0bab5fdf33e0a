"""Synthetic fMRI (BData files written with bdpy's own writer), images and a tiny encoder
for the decoding tests (a helper, not a test module).

The fMRI of a subject: every trial's voxels are a noisy linear function of known
features of its image (``voxels = features @ mixing + noise``), so that decoders trained
on the training trials recover the features of the test images.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import PIL.Image
import scipy.ndimage
import torch

ROI_SPLIT = {"V1": slice(0, 12), "V2": slice(12, 24), "V3": slice(24, 36), "hV4": slice(36, 48)}


def stimulus_names(n: int, first_synset: int = 1518878, start: int = 0) -> list:
    """``n`` lab-style stimulus names ``n<synset>_<image>`` (one synset per 3 images)."""
    return [f"n{first_synset + (start + i) // 3:08d}_{1000 + 37 * (start + i)}"
            for i in range(n)]


def stimulus_id(name: str) -> float:
    synset, image = name[1:].split("_")
    return int(synset) + int(image) / 1e6


def write_bdata(path: Path, voxels: np.ndarray, labels: Sequence[str],
                label_form: str = "vmap", rois: Optional[Dict[str, slice]] = None) -> Path:
    """A BData file like the lab's: ``VoxelData`` columns with ``ROI_*`` flags (V4 as
    ``ROI_hV4``, VC all voxels) and a label column.

    Parameters
    ----------
    label_form : {"vmap", "stimulus_id"}
        ``stimulus_name`` ids with a vmap of names, or a bare ``stimulus_id`` column.
    """
    import bdpy
    n_voxels = voxels.shape[1]
    rois = dict(ROI_SPLIT if rois is None else rois)
    bd = bdpy.BData()
    bd.add(np.asarray(voxels, dtype=np.float64), "VoxelData")
    for roi, columns in list(rois.items()) + [("VC", slice(0, n_voxels))]:
        flag = np.zeros(n_voxels)
        flag[columns] = 1
        bd.add_metadata(f"ROI_{roi}", flag, description=f"1 = ROI {roi}", where="VoxelData")
    ids = np.array([stimulus_id(name) for name in labels])
    if label_form == "vmap":
        bd.add(ids, "stimulus_name")
        bd.add_vmap("stimulus_name", {float(i): name for i, name in zip(ids, labels)})
    else:
        bd.add(ids, "stimulus_id")
    bd.save(str(path))
    return path


def trials(labels: Sequence[str], repeats: int, rng: np.random.Generator) -> list:
    """Every label ``repeats`` times, in a random order per repeat (like runs)."""
    out = []
    for _ in range(repeats):
        out += list(rng.permutation(list(labels)))
    return out


def synthetic_fmri(features: Dict[str, np.ndarray], labels: Sequence[str],
                   trial_labels: Sequence[str], n_voxels: int, noise: float,
                   rng: np.random.Generator, mixing: Optional[np.ndarray] = None):
    """Voxels of each trial: the standardised features of its image times a mixing
    matrix, plus Gaussian noise. Returns (voxels (n_trials, n_voxels), mixing)."""
    flat = np.concatenate([np.asarray(features[l]).reshape(1, -1) for l in labels])
    flat = (flat - flat.mean(0)) / (flat.std(0) + 1e-6)
    if mixing is None:
        mixing = rng.standard_normal((flat.shape[1], n_voxels)) / np.sqrt(flat.shape[1])
    signal = flat @ mixing
    row = {l: i for i, l in enumerate(labels)}
    voxels = signal[[row[l] for l in trial_labels]]
    return voxels + noise * rng.standard_normal(voxels.shape), mixing


def smooth_image(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A random smooth RGB image, uint8."""
    noise = rng.uniform(0, 255, (size, size, 3))
    img = scipy.ndimage.gaussian_filter(noise, (size / 30, size / 30, 0)) * 3 - 255
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, labels: Sequence[str], rng: np.random.Generator,
                 size: int = 40, ext: str = ".png") -> Dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for label in labels:
        path = folder / f"{label}{ext}"
        PIL.Image.fromarray(smooth_image(rng, size)).save(path)
        out[label] = path
    return out


class TinyNet(torch.nn.Module):
    """conv 3->4 (3x3) -> ReLU -> 2x2 max pool -> linear to 10: taps ``conv`` (4x16x16 at
    16x16 input) and ``fc`` (10)."""

    def __init__(self, seed: int = 0, size: int = 16) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)
        self.flat = torch.nn.Flatten()
        self.fc = torch.nn.Linear(4 * (size // 2) ** 2, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.conv(x)))))


def tiny_encoder(device="cpu", seed: int = 0, size: int = 16):
    """A :class:`icnn_torch.features.FeatureExtractor` of :class:`TinyNet` (Caffe-space
    input, 16x16): layers ``conv`` (4, 16, 16) and ``fc`` (10,)."""
    from icnn_torch.features import FeatureExtractor
    return FeatureExtractor(TinyNet(seed, size), {"conv": "conv", "fc": "fc"},
                            input_size=(size, size)).to(device)


def encoder_features(encoder, paths: Dict[str, Path], layers: Sequence[str]) -> Dict[str, dict]:
    """True features of image files (loaded as the store loads them): label -> layer -> array."""
    from icnn_torch.analysis.stimuli import load_stimulus
    from icnn_torch.utils import img_preprocess
    out = {}
    with torch.no_grad():
        for label, path in paths.items():
            x = img_preprocess(load_stimulus(path, size=tuple(encoder.input_size)),
                               encoder.img_mean)
            feats = encoder(torch.from_numpy(x)[None], list(layers))
            out[label] = {l: feats[l][0].numpy() for l in layers}
    return out


# --------------------------------------------------------------------------- without the extra

#: The ``decoding`` extra's modules, which nothing the figure scripts run may import.
EXTRA = ("bdpy", "fastl2lir")

_BLOCKING = """
import atexit, runpy, sys

class _Blocked:
    # first in sys.meta_path: these modules (and their submodules) cannot be imported,
    # as when they are not installed; every attempt is recorded
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            self.attempts.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
if {report!r}:
    atexit.register(lambda: print("blocked imports attempted:", sorted(set(_Blocked.attempts)),
                                  file=sys.stderr))
sys.argv = {argv!r}
{action}
"""


def blocking_command(argv: Sequence[str], blocked: Sequence[str] = EXTRA,
                     report: bool = True, code: Optional[str] = None) -> list:
    """A command line running the script ``argv[0]`` (or ``code``) in a Python where the
    modules ``blocked`` cannot be imported; with ``report``, standard error ends with the
    line ``blocked imports attempted: [...]``."""
    action = code if code is not None else "runpy.run_path(sys.argv[0], run_name='__main__')"
    return [sys.executable, "-c", _BLOCKING.format(blocked=tuple(blocked), report=report,
                                                   argv=[str(a) for a in argv], action=action)]
