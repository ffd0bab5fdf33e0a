"""Loading the nets' weights: the original ``.caffemodel`` files (read without Caffe, see
:mod:`icnn_torch.nets.caffemodel`) or PyTorch state_dicts (ours, or KamitaniLab's
conversions), converted once and cached beside a caffemodel.

A missing file raises :class:`~icnn_torch.errors.MissingDataError`, a file that cannot be
loaded :class:`WeightFileError`, weights with NaN or infinite values
:class:`~icnn_torch.errors.DamagedFileError`; each names the file.
"""

from __future__ import annotations

import os
import pickle
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._util import atomic_output
from ..errors import DamagedFileError, MissingDataError
from .caffemodel import CaffeModelError, read_caffemodel
from .device import choose_device
from .generator import DeePSiMGenerator
from .tables import VGG19_TORCHVISION_KEYS
from .vgg19 import VGG19

__all__ = ["load_vgg19", "load_generator", "WeightFileError"]


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


class WeightFileError(CaffeModelError, DamagedFileError):
    """A weight file that cannot be loaded into its net: a :class:`DamagedFileError` (path,
    reason, download item ``vgg19`` or ``generator``) that is also the reader's
    ``CaffeModelError``."""


def _load_or_convert(module: nn.Module, path: str, tag: str, cache: bool,
                     aliases: Mapping[str, str] | None) -> None:
    """Load ``module``'s weights from a caffemodel (with a state_dict cache) or a .pt file."""
    if not os.path.exists(path):
        raise MissingDataError(path, [tag])
    try:
        _read_weights(module, path, tag, cache, aliases)
    except (CaffeModelError, pickle.UnpicklingError, EOFError, RuntimeError) as err:
        # torch.load of a cut or foreign .pt raises UnpicklingError, EOFError or RuntimeError
        reason = " ".join(str(err).split()).removeprefix(f"{path}: ")
        raise WeightFileError(path, reason, tag) from err
    _check_finite(module, path, tag)


def _check_finite(module: nn.Module, path: str, tag: str) -> None:
    """Refuse weights with NaN or infinite values (a damaged file of the right size)."""
    for name in _learned_layers(module):
        layer = getattr(module, name)
        for kind in ("weight", "bias"):
            if not bool(torch.isfinite(getattr(layer, kind)).all()):
                raise DamagedFileError(path, f"layer {name!r} has non-finite {kind} values "
                                       "(NaN or inf)", tag)


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
    _load_or_convert(net, os.fspath(path), "vgg19", cache, VGG19_TORCHVISION_KEYS)
    return net.to(choose_device(device))


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
    return gen.to(choose_device(device))
