"""VGG19 (pre-ReLU feature taps) and the DeePSiM fc7 generator as PyTorch modules.

Both follow the original Caffe nets layer for layer and keep the Caffe layer names, so
that ``features["conv3_2"]`` here is the blob ``conv3_2`` of the original prototxt: the
convolution output *before* its ReLU.

Input convention of VGG19 ("Caffe space"): float32 images of shape (N, 3, 224, 224),
channels in **BGR** order, values on the **0..255** scale with the per-channel ImageNet
mean **subtracted**. The generator's output is already in that space.

Weights are loaded from the original ``.caffemodel`` files (read without Caffe, see
:mod:`icnn_torch.caffemodel`) or from KamitaniLab's converted PyTorch state_dicts.
"""

from __future__ import annotations

import os
import pickle
import shlex
import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._util import atomic_output
from .caffemodel import CaffeModelError, read_caffemodel
from .errors import DamagedFileError, MissingDataError
from .data import (DEFAULT_NET_DIR, GENERATOR_CAFFEMODEL_RELPATH, GENERATOR_PT_RELPATH,
                   IMAGENET_MEAN_BGR, VGG19_CAFFEMODEL_RELPATH, VGG19_PT_RELPATH,
                   download_command)

__all__ = [
    "VGG19_LAYERS", "VGG19", "DeePSiMGenerator", "center_crop", "load_vgg19",
    "load_generator", "default_device", "IMAGENET_MEAN_BGR",
]


# VGG19 layer table: (name, kind, in_channels/in_features, out_channels/out_features).
# kind: "conv" (3x3, stride 1, pad 1), "pool" (2x2, stride 2), "fc".
_VGG19_TABLE: tuple[tuple[str, str, int, int], ...] = (
    ("conv1_1", "conv", 3, 64), ("conv1_2", "conv", 64, 64), ("pool1", "pool", 64, 64),
    ("conv2_1", "conv", 64, 128), ("conv2_2", "conv", 128, 128), ("pool2", "pool", 128, 128),
    ("conv3_1", "conv", 128, 256), ("conv3_2", "conv", 256, 256),
    ("conv3_3", "conv", 256, 256), ("conv3_4", "conv", 256, 256), ("pool3", "pool", 256, 256),
    ("conv4_1", "conv", 256, 512), ("conv4_2", "conv", 512, 512),
    ("conv4_3", "conv", 512, 512), ("conv4_4", "conv", 512, 512), ("pool4", "pool", 512, 512),
    ("conv5_1", "conv", 512, 512), ("conv5_2", "conv", 512, 512),
    ("conv5_3", "conv", 512, 512), ("conv5_4", "conv", 512, 512), ("pool5", "pool", 512, 512),
    ("fc6", "fc", 512 * 7 * 7, 4096), ("fc7", "fc", 4096, 4096), ("fc8", "fc", 4096, 1000),
)

#: Caffe blob names of VGG19's features, in network order.
VGG19_LAYERS: tuple[str, ...] = tuple(name for name, *_ in _VGG19_TABLE)

# Index of each learned layer in torchvision's / KamitaniLab's ``features.N`` /
# ``classifier.N`` layout.
_VGG19_TORCHVISION_KEYS: dict[str, str] = {
    **{name: f"features.{i}" for name, i in zip(
        [n for n, kind, *_ in _VGG19_TABLE if kind == "conv"],
        (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34))},
    "fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6",
}

# Generator layer table: (name, kind, in, out, kernel, stride, pad); every layer but the
# last is followed by a leaky ReLU with slope 0.3. "fc" layers are InnerProduct,
# "deconv" layers are Caffe Deconvolution (transposed convolution).
_GENERATOR_TABLE: tuple[tuple[str, str, int, int, int, int, int], ...] = (
    ("defc7", "fc", 4096, 4096, 0, 0, 0),
    ("defc6", "fc", 4096, 4096, 0, 0, 0),
    ("defc5", "fc", 4096, 4096, 0, 0, 0),
    ("deconv5", "deconv", 256, 256, 4, 2, 1),
    ("conv5_1", "deconv", 256, 512, 3, 1, 1),
    ("deconv4", "deconv", 512, 256, 4, 2, 1),
    ("conv4_1", "deconv", 256, 256, 3, 1, 1),
    ("deconv3", "deconv", 256, 128, 4, 2, 1),
    ("conv3_1", "deconv", 128, 128, 3, 1, 1),
    ("deconv2", "deconv", 128, 64, 4, 2, 1),
    ("deconv1", "deconv", 64, 32, 4, 2, 1),
    ("deconv0", "deconv", 32, 3, 4, 2, 1),
)
GENERATOR_LEAKY_SLOPE = 0.3
GENERATOR_INPUT_SIZE = 4096
GENERATOR_OUTPUT_SIZE = (256, 256)


def default_device() -> torch.device:
    """CUDA (the current device) when available, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class VGG19(nn.Module):
    """VGG19 returning pre-activation features under their Caffe blob names.

    Parameters
    ----------
    variant : {"relu", "leaky"}
        ``"relu"``: the original net (ReLU, max pooling). ``"leaky"``: every ReLU has
        negative slope 0.2 and the five poolings average (script 7's ``VGG19_leaky``).
    img_mean : array-like of 3 floats, optional
        BGR mean (0..255) of the input convention; default :data:`IMAGENET_MEAN_BGR`.
        Kept as ``self.img_mean`` for the reconstruction engines; not used in forward.

    Notes
    -----
    The weights start He-normal (seed with ``torch.manual_seed`` for reproducibility)
    and are frozen: reconstruction only ever needs gradients with respect to the input.
    """

    layer_names: tuple[str, ...] = VGG19_LAYERS
    input_size: tuple[int, int] = (224, 224)

    def __init__(self, variant: str = "relu", img_mean: Sequence[float] | None = None) -> None:
        super().__init__()
        if variant not in ("relu", "leaky"):
            raise ValueError(f"variant must be 'relu' or 'leaky', not {variant!r}")
        self.variant = variant
        self.negative_slope = 0.0 if variant == "relu" else 0.2
        self.img_mean = np.asarray(IMAGENET_MEAN_BGR if img_mean is None else img_mean,
                                   dtype=np.float32).reshape(3)
        for name, kind, n_in, n_out in _VGG19_TABLE:
            if kind == "conv":
                layer = nn.Conv2d(n_in, n_out, kernel_size=3, stride=1, padding=1)
            elif kind == "fc":
                layer = nn.Linear(n_in, n_out)
            else:
                continue
            if layer.weight.device.type != "meta":  # loaders build on meta, then assign
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
            self.add_module(name, layer)
        _freeze(self)
        self.eval()

    def _activation(self, x: Tensor) -> Tensor:
        if self.negative_slope:
            return F.leaky_relu(x, self.negative_slope)
        return F.relu(x)

    def _pool(self, x: Tensor) -> Tensor:
        # Caffe sizes pooling outputs with ceil; at 224 input every pooling halves exactly.
        if self.variant == "leaky":
            return F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)

    def forward(self, x: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Features of ``x`` at ``layers`` (default: all), stopping at the deepest one.

        Parameters
        ----------
        x : Tensor, shape (N, 3, 224, 224)
            Images in Caffe space (BGR, 0..255, mean subtracted).
        layers : iterable of str, optional
            Caffe blob names (see :data:`VGG19_LAYERS`).

        Returns
        -------
        dict of str to Tensor
            Pre-ReLU features in network order: (N, C, H, W) for conv/pool layers,
            (N, 4096) or (N, 1000) for fc layers.
        """
        wanted = self._check_layers(layers)
        deepest = max(VGG19_LAYERS.index(name) for name in wanted)
        out: dict[str, Tensor] = {}
        for index, (name, kind, *_rest) in enumerate(_VGG19_TABLE[:deepest + 1]):
            if kind == "pool":
                x = self._pool(x)
                y = x
            else:
                if kind == "fc" and x.dim() > 2:
                    x = torch.flatten(x, 1)  # C, H, W order, as Caffe's InnerProduct
                y = getattr(self, name)(x)
                # The activation must not overwrite a tapped blob; off the taps it
                # could be in place, but autograd keeps y anyway, so nothing is saved.
                x = self._activation(y) if index < len(_VGG19_TABLE) - 1 else y
            if name in wanted:
                out[name] = y
        return out

    def _check_layers(self, layers: Iterable[str] | None) -> set[str]:
        if layers is None:
            return set(VGG19_LAYERS)
        wanted = set(layers)
        unknown = sorted(wanted - set(VGG19_LAYERS))
        if unknown:
            raise KeyError(f"VGG19 has no layer(s) {unknown}; its layers are {list(VGG19_LAYERS)}")
        if not wanted:
            raise ValueError("no layers requested")
        return wanted


class DeePSiMGenerator(nn.Module):
    """The DeePSiM generator trained to invert AlexNet fc7 (Dosovitskiy & Brox 2016).

    Maps a (N, 4096) fc7-space vector to the uncropped (N, 3, 256, 256) image, exactly
    Caffe's ``generated`` blob: BGR, 0..255 scale, ImageNet mean subtracted (VGG19's input
    space), neither scaled nor clamped. Crop it with :func:`center_crop`.
    """

    input_size: int = GENERATOR_INPUT_SIZE
    output_size: tuple[int, int] = GENERATOR_OUTPUT_SIZE

    def __init__(self) -> None:
        super().__init__()
        for name, kind, n_in, n_out, k, s, p in _GENERATOR_TABLE:
            if kind == "fc":
                layer = nn.Linear(n_in, n_out)
            else:
                layer = nn.ConvTranspose2d(n_in, n_out, kernel_size=k, stride=s, padding=p)
            self.add_module(name, layer)
        _freeze(self)
        self.eval()

    def forward(self, feat: Tensor) -> Tensor:
        """Generate images.

        Parameters
        ----------
        feat : Tensor, shape (N, 4096)

        Returns
        -------
        Tensor, shape (N, 3, 256, 256)
            Images in VGG19's input space (BGR, 0..255, mean subtracted).
        """
        if feat.dim() != 2 or feat.shape[1] != GENERATOR_INPUT_SIZE:
            raise ValueError(f"generator input must be (N, {GENERATOR_INPUT_SIZE}), "
                             f"got {tuple(feat.shape)}")
        x = feat
        last = len(_GENERATOR_TABLE) - 1
        for index, (name, kind, *_rest) in enumerate(_GENERATOR_TABLE):
            if kind == "deconv" and x.dim() == 2:
                x = x.reshape(x.shape[0], 256, 4, 4)
            x = getattr(self, name)(x)
            if index < last:
                x = F.leaky_relu(x, GENERATOR_LEAKY_SLOPE)
        return x


def center_crop(img: Tensor, size: Sequence[int] = (224, 224)) -> Tensor:
    """Center-crop images of shape (..., H, W) to ``size`` (offset ``(H - h) // 2``).

    For the generator's 256x256 output and VGG19's 224x224 input the offset is (16, 16).
    The crop is a view; gradients outside it are zero.
    """
    h, w = int(size[0]), int(size[1])
    H, W = img.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"cannot crop {(H, W)} images to {(h, w)}")
    top, left = (H - h) // 2, (W - w) // 2
    return img[..., top:top + h, left:left + w]


# ---------------------------------------------------------------------------------------
# Loading weights


def _caffe_weights(path: str, names: Iterable[str]) -> dict[str, list[np.ndarray]]:
    layers = read_caffemodel(path, layers=names)
    missing = [n for n in names if n not in layers or not layers[n].blobs]
    if missing:
        raise CaffeModelError(
            f"{path}: layer(s) {missing} missing or without weights; this caffemodel "
            f"belongs to another net (it has: {list(layers)[:12]}...)")
    return {n: layers[n].blobs for n in names}


def _assign(module: nn.Module, name: str, weight: np.ndarray | Tensor, bias: np.ndarray | Tensor,
            source: str) -> None:
    layer = getattr(module, name)
    weight = torch.as_tensor(weight)
    bias = torch.as_tensor(bias)
    expected_w, expected_b = tuple(layer.weight.shape), tuple(layer.bias.shape)
    if weight.numel() != layer.weight.numel():
        raise CaffeModelError(f"{source}: layer {name!r} weight has shape {tuple(weight.shape)}, "
                              f"expected {expected_w}")
    if bias.numel() != layer.bias.numel():
        raise CaffeModelError(f"{source}: layer {name!r} bias has shape {tuple(bias.shape)}, "
                              f"expected {expected_b}")
    # Legacy Caffe blobs carry singleton axes, e.g. (1, 1, out, in) for fc weights or
    # (1, 1, 1, out) for biases; drop them. Anything else must match exactly.
    squeezed = tuple(d for d in weight.shape if d != 1)
    if squeezed != tuple(d for d in expected_w if d != 1):
        raise CaffeModelError(f"{source}: layer {name!r} weight has shape {tuple(weight.shape)}, "
                              f"expected {expected_w}")
    # Replace (not copy into) the parameters: the module was built on the meta device,
    # so the arrays read from the file become the weights without a second copy.
    layer.weight = nn.Parameter(weight.to(torch.float32).reshape(expected_w), requires_grad=False)
    layer.bias = nn.Parameter(bias.to(torch.float32).reshape(expected_b), requires_grad=False)


def _learned_layers(module: nn.Module) -> list[str]:
    return [name for name, child in module.named_children() if hasattr(child, "weight")]


def _load_state(module: nn.Module, state: Mapping[str, Tensor], source: str,
                aliases: Mapping[str, str] | None = None) -> None:
    """Fill ``module`` from a state_dict keyed ``<layer>.weight``/``.bias`` or by aliases."""
    for name in _learned_layers(module):
        prefix = name
        if f"{name}.weight" not in state and aliases and f"{aliases[name]}.weight" in state:
            prefix = aliases[name]
        try:
            weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
        except KeyError:
            keys = list(state)[:8]
            raise CaffeModelError(f"{source}: no weights for layer {name!r} (looked for "
                                  f"'{name}.weight'" + (f" or '{aliases[name]}.weight'" if aliases else "")
                                  + f"); the file's keys start {keys}") from None
        _assign(module, name, weight, bias, source)


def _cache_path(path: str, tag: str) -> str:
    return f"{path}.{tag}.pt"


#: Where the download command puts each weight file (caffemodel and .pt) in a net folder.
_WEIGHT_RELPATHS = {"vgg19": (VGG19_CAFFEMODEL_RELPATH, VGG19_PT_RELPATH),
                    "generator": (GENERATOR_CAFFEMODEL_RELPATH, GENERATOR_PT_RELPATH)}


class WeightFileError(CaffeModelError, DamagedFileError):
    """A weight file that cannot be loaded into its net: a :class:`DamagedFileError` (path,
    reason, the command that replaces it) that is also the reader's ``CaffeModelError``."""


def _download_command(path: str, tag: str, damaged: bool = False) -> str:
    """The command that fetches ``tag`` (``vgg19`` or ``generator``) to ``path``, with
    ``--net-dir`` when ``path`` is the file of another net folder, ``--pytorch`` for a
    ``.pt`` file. For a damaged file:
    ``--verify`` for the VGG19 caffemodel (the download command knows its md5 and replaces
    it), else delete it first (no md5 of the other weight files is published)."""
    net_dir = DEFAULT_NET_DIR
    for rel in _WEIGHT_RELPATHS[tag]:
        if Path(path).parts[-len(rel.parts):] == rel.parts:
            net_dir = Path(path).parents[len(rel.parts) - 1]
    pytorch = "" if path.endswith(".caffemodel") else "--pytorch"  # KamitaniLab's .pt
    if not damaged:
        return download_command([tag], net_dir=net_dir, extra_args=pytorch)
    if tag == "vgg19" and not pytorch:
        return download_command([tag], net_dir=net_dir, extra_args="--verify")
    return f"rm {shlex.quote(path)} && " \
        f"{download_command([tag], net_dir=net_dir, extra_args=pytorch)}"


def _load_or_convert(module: nn.Module, path: str, tag: str, cache: bool,
                     aliases: Mapping[str, str] | None) -> None:
    """Load ``module``'s weights from a caffemodel (with a state_dict cache) or a .pt file."""
    if not os.path.exists(path):
        raise MissingDataError(path, _download_command(path, tag))
    try:
        _read_weights(module, path, tag, cache, aliases)
    except (CaffeModelError, pickle.UnpicklingError, EOFError, RuntimeError) as err:
        # torch.load of a cut or foreign .pt raises UnpicklingError, EOFError or RuntimeError
        reason = " ".join(str(err).split()).removeprefix(f"{path}: ")
        raise WeightFileError(path, reason, _download_command(path, tag, damaged=True)) from err
    _check_finite(module, path, tag)


def _check_finite(module: nn.Module, path: str, tag: str) -> None:
    """Refuse weights with NaN or infinite values (a damaged file of the right size)."""
    for name in _learned_layers(module):
        layer = getattr(module, name)
        for kind in ("weight", "bias"):
            if not bool(torch.isfinite(getattr(layer, kind)).all()):
                raise DamagedFileError(path, f"layer {name!r} has non-finite {kind} values "
                                       "(NaN or inf)", _download_command(path, tag, damaged=True))


def _read_weights(module: nn.Module, path: str, tag: str, cache: bool,
                  aliases: Mapping[str, str] | None) -> None:
    if not path.endswith(".caffemodel"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, nn.Module):  # a pickled module instead of a state_dict
            state = state.state_dict()
        if not isinstance(state, Mapping):
            raise CaffeModelError(f"{path}: expected a state_dict, got {type(state).__name__}")
        _load_state(module, state, path, aliases)
        return
    cached = _cache_path(path, tag)
    if cache and os.path.exists(cached) and os.path.getmtime(cached) >= os.path.getmtime(path):
        try:
            state = torch.load(cached, map_location="cpu", weights_only=True, mmap=True)
            _load_state(module, state, cached)
            return
        except Exception as exc:  # a stale or damaged cache is rebuilt, not fatal
            warnings.warn(f"ignoring unreadable weight cache {cached}: {exc}")
    names = _learned_layers(module)
    blobs = _caffe_weights(path, names)
    for name in names:
        if len(blobs[name]) < 2:
            raise CaffeModelError(f"{path}: layer {name!r} has {len(blobs[name])} blob(s), "
                                  "expected weight and bias")
        _assign(module, name, blobs[name][0], blobs[name][1], path)
    del blobs
    if cache:
        _save_cache(module, cached)


def _save_cache(module: nn.Module, cached: str) -> None:
    try:
        with atomic_output(cached) as tmp:
            torch.save(dict(module.state_dict()), tmp)
    except OSError as exc:  # read-only folder: fine, just slower next time
        warnings.warn(f"could not cache converted weights at {cached}: {exc}")


def load_vgg19(path: str | os.PathLike, variant: str = "relu",
               device: str | torch.device | None = None,
               img_mean: Sequence[float] | None = None, cache: bool = True) -> VGG19:
    """Load VGG19 from the original caffemodel or a converted state_dict.

    Parameters
    ----------
    path : str or path-like
        ``VGG_ILSVRC_19_layers.caffemodel`` (Caffe V1 format), or a PyTorch file: our own
        state_dict (keys ``conv1_1.weight`` ...) or KamitaniLab's ``VGG_ILSVRC_19_layers.pt``
        (torchvision's ``features.N`` / ``classifier.N`` keys, Caffe input convention).
    variant : {"relu", "leaky"}
        See :class:`VGG19`; both variants use the same weights.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    img_mean : array-like of 3 floats, optional
        BGR mean of the input convention (default :data:`IMAGENET_MEAN_BGR`).
    cache : bool
        Save the converted weights beside a caffemodel (``<file>.vgg19.pt``) and use them
        on the next load.

    Returns
    -------
    VGG19
        In eval mode, weights frozen, on ``device``.
    """
    with torch.device("meta"):  # no memory until the file's arrays are assigned
        net = VGG19(variant=variant, img_mean=img_mean)
    _load_or_convert(net, os.fspath(path), "vgg19", cache, _VGG19_TORCHVISION_KEYS)
    return net.to(default_device() if device is None else torch.device(device))


def load_generator(path: str | os.PathLike, device: str | torch.device | None = None,
                   cache: bool = True) -> DeePSiMGenerator:
    """Load the DeePSiM fc7 generator from ``generator.caffemodel`` or a state_dict.

    Parameters
    ----------
    path : str or path-like
        ``generator.caffemodel`` (Caffe V2 format) or a PyTorch state_dict with keys
        ``defc7.weight`` ... ``deconv0.bias`` (KamitaniLab's conversion).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    cache : bool
        Save the converted weights beside a caffemodel (``<file>.generator.pt``).

    Returns
    -------
    DeePSiMGenerator
        In eval mode, weights frozen, on ``device``.
    """
    with torch.device("meta"):
        gen = DeePSiMGenerator()
    _load_or_convert(gen, os.fspath(path), "generator", cache, None)
    return gen.to(default_device() if device is None else torch.device(device))
