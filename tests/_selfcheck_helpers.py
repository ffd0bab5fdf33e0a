"""Test helper for the self-check's plumbing: small nets and reference trees in the
original icnn's formats.

Nothing here is Caffe, and nothing here tests agreement with Caffe. It builds what the
original repository's ``test/`` folder holds, from *our* engines on small random nets,
written the way the original wrote it:

- ``options.pkl``: a Python 2 style pickle (protocol 2, strings as Python 2 ``str``
  opcodes, numpy scalars and arrays under ``numpy.core.multiarray``), which Python 3 reads
  only with ``encoding='latin1'``, as the original files;
- ``recon_img.mat`` / ``loss_list.mat`` / ``initial_gen_feat.mat``: ``scipy.io.savemat``
  (the loss list as a 1 x n row, as the original's ``savemat`` of a 1-D array);
- ``initial_img.png``: a PNG of random uint8 noise; ``examples/data/orig_img.jpg``: a JPEG.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image
from torch import nn

from icnn_torch.features import FeatureExtractor

# --------------------------------------------------------------------------- py2 pickles


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler writing ``str`` and ``bytes`` as Python 2 byte strings and numpy
    globals under their numpy 1.x module names (``numpy.core.multiarray``)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None) or pickle.whichmodule(obj, name)
        name = name or obj.__qualname__
        module = module.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n")
        self.memoize(obj)

    dispatch[type] = save_global


def py2_pickle_dumps(obj) -> bytes:
    """``obj`` pickled as Python 2.7 with numpy 1.x would (protocol 2)."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


# --------------------------------------------------------------------------- small nets

#: Input size of the small encoder.
SIZE = 32
#: Latent size of the small generator; its output is cropped from 36x36 to 32x32.
LATENT = 16


def small_encoder(seed: int = 0, device="cpu") -> FeatureExtractor:
    """A random conv net with VGG-style blob names ``conv1_1, pool1, conv2_1, fc6, fc7``.

    Input (N, 3, 32, 32) Caffe-space images; conv layers (8, 32, 32) and (8, 16, 16),
    fc layers (16,) and (10,). ``pool1`` is a feature but not a target (no conv/fc in its
    name), as VGG19's pools in the original test.
    """
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():  # inputs are on the 0..255 scale; keep features O(1..10)
        model[0].weight.mul_(0.05)
    model = model.to(device)
    return FeatureExtractor(model, {"conv1_1": "0", "pool1": "2", "conv2_1": "3",
                                    "fc6": "7", "fc7": "9"}, input_size=(SIZE, SIZE))


class SmallGenerator(nn.Module):
    """z (N, 16) -> (N, 3, 36, 36) Caffe-space images (the DGN engines crop to 32x32)."""

    input_size = LATENT

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(LATENT, 32)
        self.out = nn.Linear(32, 3 * 36 * 36)
        with torch.no_grad():
            self.out.weight.mul_(20.0)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, z):
        return self.out(torch.nn.functional.leaky_relu(self.fc(z), 0.3)).view(-1, 3, 36, 36)


def independent_targets(net, jpeg_path: Path) -> dict:
    """Features of the JPEG resized to 32x32 (PIL bicubic on uint8), at conv/fc layers,
    computed here by a direct forward pass (not by the self-check's code)."""
    with Image.open(jpeg_path) as im:
        img = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.BICUBIC), np.float32)
    x = img.transpose(2, 0, 1)[::-1] - net.img_mean.reshape(3, 1, 1)
    layers = ["conv1_1", "conv2_1", "fc6", "fc7"]
    with torch.no_grad():
        out = net(torch.tensor(np.ascontiguousarray(x)[None]), layers)
    return {n: out[n][0].numpy() for n in layers}


# --------------------------------------------------------------------------- reference trees

def _layer_weight(features: dict) -> dict:
    """``1/||f||^2`` normalised, as np.float32 values (as the original pickles hold them)."""
    inverse = {n: 1.0 / float(np.sum(np.square(f.astype(np.float64)))) for n, f in features.items()}
    total = sum(inverse.values())
    return {n: np.float32(v / total) for n, v in inverse.items()}


def original_options(engine: str, iterations: int, layer_weight: dict,
                     upper: np.ndarray) -> dict:
    """The option dict of one case with the keys and kinds of values of the original
    pickles (iteration counts and bounds scaled to the small nets)."""
    common = {"loss_type": "l2", "save_intermediate": True, "save_intermediate_every": 10,
              "mask": None, "channel": None, "layer_weight": layer_weight,
              "save_intermediate_path": "./result/recon_img_from_true_feature_" + engine}
    gd = {"disp_every": 1, "lr_start": 2.0, "lr_end": 1e-10, "momentum_start": 0.9,
          "momentum_end": 0.9, "iter_n": iterations}
    lbfgs = {"disp": True, "maxiter": iterations}
    if engine == "icnn_gd":
        return {**common, **gd, "decay_start": 0.2, "decay_end": 1e-10, "image_blur": True,
                "sigma_start": 2.0, "sigma_end": 0.5, "initial_image": None}
    if engine == "icnn_lbfgs":
        return {**common, **lbfgs, "initial_image": None}
    dgn = {"input_layer_gen": "feat", "output_layer_gen": "deconv0", "initial_gen_feat": None}
    if engine == "icnn_dgn_gd":
        return {**common, **gd, **dgn, "decay_start": 0.01, "decay_end": 0.01,
                "feat_upper_bound": upper.astype(np.float64), "feat_lower_bound": 0.0}
    return {**common, **lbfgs, **dgn,
            "gen_feat_bounds": [(0, np.float64(u)) for u in upper]}


def write_reference_tree(root: Path, cases, net, gen, seed: int = 0,
                         full_iterations: int = 12) -> dict:
    """Write the original's ``test/<case>/`` files and ``examples/data/orig_img.jpg`` under
    ``root``, computed by our engines on ``net`` / ``gen``; return ``{path: md5}``.

    Every case runs its engine directly with explicit keyword arguments (3 iterations for
    ``_quick`` cases, ``full_iterations`` otherwise), from a seeded random start.
    """
    import importlib

    rng = np.random.default_rng(seed)
    jpeg = root / "examples" / "data" / "orig_img.jpg"
    jpeg.parent.mkdir(parents=True, exist_ok=True)
    photo = rng.uniform(0, 255, (5, 6, 3))  # a smooth colour field, 50x40 after upsampling
    photo = np.asarray(Image.fromarray(photo.astype(np.uint8)).resize((50, 40), Image.BILINEAR))
    Image.fromarray(photo).save(jpeg, quality=95)
    targets = independent_targets(net, jpeg)
    weights = _layer_weight(targets)
    upper = rng.integers(2, 7, LATENT).astype(np.float64)
    for case in cases:
        folder = root / "test" / case.name
        folder.mkdir(parents=True, exist_ok=True)
        iterations = 3 if case.quick else full_iterations
        options = original_options(case.engine, iterations, weights, upper)
        (folder / "options.pkl").write_bytes(py2_pickle_dumps(options))
        kwargs = {k: v for k, v in options.items()
                  if k not in ("save_intermediate", "save_intermediate_path", "disp", "disp_every",
                               "initial_image", "initial_gen_feat")}
        kwargs["disp_every" if "iter_n" in kwargs else "disp"] = 0
        module = importlib.import_module(f"icnn_torch.{case.engine}")
        if case.uses_generator:
            z0 = rng.normal(0, 1, LATENT).astype(np.float32)
            scipy.io.savemat(folder / "initial_gen_feat.mat", {"initial_gen_feat": z0})
            img, losses = module.reconstruct_image(targets, net, gen, initial_gen_feat=z0, **kwargs)
        else:
            start = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(start).save(folder / "initial_img.png")
            img, losses = module.reconstruct_image(targets, net, initial_image=start, **kwargs)
        scipy.io.savemat(folder / "recon_img.mat", {"recon_img": np.asarray(img)})
        scipy.io.savemat(folder / "loss_list.mat",
                         {"loss_list": np.asarray(losses, dtype=np.float64).reshape(1, -1)})
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
