"""Shared pieces of the reconstruction-engine tests: sample photo, random nets, metrics.

Nothing here calls the engines; the helpers build inputs (a real photograph, a seeded
random VGG19, a random DeePSiM generator scaled to natural-image contrast) and measure
outputs (pixel correlation) independently of the code under test.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from icnn_torch.models import VGG19, VGG19_LAYERS, DeePSiMGenerator, center_crop

SHARED = Path(__file__).resolve().parents[2] / "shared"

#: The 16 conv layers of VGG19 (conv1_1 .. conv5_4).
VGG19_CONV = tuple(n for n in VGG19_LAYERS if n.startswith("conv"))
#: The 19 layers the scripts use: 16 conv + fc6, fc7, fc8.
VGG19_CONV_FC = VGG19_CONV + ("fc6", "fc7", "fc8")

#: Natural images in Caffe space have a pixel std of about 60; the random generator is
#: scaled to this output std.
GENERATOR_OUTPUT_STD = 50.0


def sample_photo(size: int = 224) -> np.ndarray:
    """matplotlib's sample photograph (Grace Hopper), centre-cropped square, resized.

    Returns
    -------
    ndarray, (size, size, 3), float32
        RGB on the 0..255 scale.
    """
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return load_square_photo(path, size)


def load_square_photo(path, size: int = 224) -> np.ndarray:
    """Any photo file, centre-cropped to a square and resized (PIL bicubic); RGB float32."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        return np.asarray(im, dtype=np.float32)


def pixel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of all values of two equally shaped images."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}")
    a = a - a.mean()
    b = b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def random_rgb(seed: int, size: int = 32, batch: int | None = None) -> np.ndarray:
    """Uniform random RGB 0..255 image(s), (size, size, 3) or (batch, size, size, 3), float32."""
    shape = (size, size, 3) if batch is None else (batch, size, size, 3)
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def mean_colour_image(img_mean_bgr, size: int = 224) -> np.ndarray:
    """The flat image of the mean colour, (size, size, 3) RGB float32 (zeros in Caffe space)."""
    rgb = np.asarray(img_mean_bgr, dtype=np.float32).reshape(3)[::-1]
    return np.broadcast_to(rgb, (size, size, 3)).astype(np.float32)


def inverse_square_norm_weights(features: dict) -> dict:
    """The scripts' layer weights: 1 / ||f_l||^2, normalised to sum to 1."""
    raw = {name: 1.0 / float(np.sum(np.square(np.asarray(f, dtype=np.float64))))
           for name, f in features.items()}
    total = sum(raw.values())
    return {name: w / total for name, w in raw.items()}


@functools.lru_cache(maxsize=4)
def random_vgg19(device: str, seed: int = 0) -> VGG19:
    """VGG19 with seeded He-normal weights (its own init), on ``device``; shared per session."""
    torch.manual_seed(seed)
    return VGG19().to(device)


@functools.lru_cache(maxsize=4)
def random_generator(device: str, seed: int = 0, target_std: float = GENERATOR_OUTPUT_STD
                     ) -> DeePSiMGenerator:
    """A DeePSiM generator with PyTorch's default weight init, zero biases, ``deconv0``
    rescaled; shared per session.

    With the default init the signal shrinks layer by layer and the default biases decide
    the image: crop(G(z)) then hardly depends on z (pixel std across z about 0.01 against
    50 within an image), which would make any DGN test pass trivially. With zero biases
    the generator is positively homogeneous and its images differ with z. ``deconv0`` is
    scaled so that the cropped output for z drawn by :func:`draw_latent` has pixel std
    ``target_std`` (natural images in Caffe space: about 60).
    """
    torch.manual_seed(seed)
    gen = DeePSiMGenerator()
    with torch.no_grad():
        for module in gen.children():
            module.bias.zero_()
    gen = gen.to(device)
    z = torch.as_tensor(draw_latent(fc7_upper_bounds(), np.random.default_rng(seed + 1), 4),
                        device=device)
    with torch.no_grad():
        std = float(center_crop(gen(z)).std())
        gen.deconv0.weight.mul_(target_std / std)
    return gen


def fc7_upper_bounds() -> np.ndarray:
    """Upper bounds of the generator input, (4096,) float32.

    The original's ``act_range/3x/fc7.txt`` when ../shared holds it; otherwise seeded
    random integers 2..6, the range of that file's values.
    """
    path = SHARED / "original" / "act_range" / "3x" / "fc7.txt"
    if path.exists():
        values = np.loadtxt(path, dtype=np.float32).reshape(-1)
        if values.size == 4096:
            return values
    return np.random.default_rng(12345).integers(2, 7, 4096).astype(np.float32)


def draw_latent(upper: np.ndarray, rng: np.random.Generator, n: int | None = None,
                density: float = 1.0) -> np.ndarray:
    """z inside [0, upper], (4096,) or (n, 4096) float32: a ``density`` fraction of the
    units (default all) uniform in [0, upper], the rest 0."""
    shape = upper.shape if n is None else (n,) + upper.shape
    active = rng.uniform(0.0, 1.0, shape) < density
    return (rng.uniform(0.0, 1.0, shape) * upper * active).astype(np.float32)


class CountingEncoder:
    """Wrap an encoder and count its forward passes that build a graph (evaluations).

    ``on_graph_call``, when given, is called (no arguments) before each such pass, e.g. to
    record some global state as the engine's loop sees it.
    """

    def __init__(self, net, on_graph_call: Callable[[], None] | None = None) -> None:
        self.net = net
        self.layer_names = net.layer_names
        self.img_mean = net.img_mean
        self.input_size = net.input_size
        self.graph_calls = 0
        self.on_graph_call = on_graph_call

    def parameters(self):
        return self.net.parameters()

    def __call__(self, x, layers=None):
        if torch.is_grad_enabled():
            self.graph_calls += 1
            if self.on_graph_call is not None:
                self.on_graph_call()
        return self.net(x, layers)


def tiny_encoder(device, size: int = 32, seed: int = 0, activation=torch.nn.ReLU,
                 dtype: torch.dtype = torch.float32):
    """A small random conv net as an encoder: layers ``c1`` (8, size, size), ``c2``
    (8, size/2, size/2) and ``fc`` (16,), input ``size`` x ``size`` Caffe-space images.

    For the mechanics of the engines (options, files, printing) at a fraction of VGG19's cost.
    """
    from torch import nn

    from icnn_torch.features import FeatureExtractor

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), activation(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), activation(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(8 * 4 * 4, 16))
    with torch.no_grad():  # inputs are on the 0..255 scale; keep features O(1..10)
        model[0].weight.mul_(0.05)
    model = model.to(device=device, dtype=dtype)
    return FeatureExtractor(model, {"c1": "0", "c2": "2", "fc": "6"}, input_size=(size, size))


class RecordingGenerator(torch.nn.Module):
    """Wrap a generator; keep every z it is evaluated at with gradients enabled."""

    input_size = 4096

    def __init__(self, gen) -> None:
        super().__init__()
        self.gen = gen
        self.seen: list[np.ndarray] = []

    def forward(self, z):
        if torch.is_grad_enabled():
            self.seen.append(z.detach().cpu().numpy().copy())
        return self.gen(z)


def encoder_features(net, rgb: np.ndarray, layers) -> dict:
    """Features (no batch axis, float32) of one RGB 0..255 image, by a direct forward."""
    mean = np.asarray(net.img_mean, dtype=np.float32).reshape(3, 1, 1)
    x = np.ascontiguousarray(np.asarray(rgb, np.float32).transpose(2, 0, 1)[::-1]) - mean
    device = next(iter(net.parameters())).device
    with torch.no_grad():
        feats = net(torch.tensor(x[None], device=device), list(layers))
    return {n: feats[n][0].cpu().numpy() for n in layers}


def generator_image(gen, z: np.ndarray, img_mean) -> np.ndarray:
    """crop(G(z)) of one z as an RGB image with the mean added, (224, 224, 3) float32."""
    device = next(iter(gen.parameters())).device
    with torch.no_grad():
        x = center_crop(gen(torch.tensor(z, dtype=torch.float32, device=device).view(1, -1)))[0].cpu().numpy()
    rgb = x[::-1].transpose(1, 2, 0) + np.asarray(img_mean, np.float32)[::-1]
    return np.ascontiguousarray(rgb, dtype=np.float32)
