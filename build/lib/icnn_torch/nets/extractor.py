"""Feature extraction: the interface the reconstruction engines need from an encoder.

An *encoder* is any callable ``net(x, layers) -> dict[str, Tensor]`` taking a batch of
images in Caffe space (N, 3, H, W; BGR, 0..255, mean subtracted) and returning the
features of the requested layers, with attributes

- ``layer_names``: all layer names in network order,
- ``img_mean``: the BGR mean (3,) that defines its input space,
- ``input_size``: (H, W).

:class:`icnn_torch.nets.vgg19.VGG19` is one. :class:`FeatureExtractor` turns any
``nn.Module`` into one, by forward hooks on named submodules and an early exit after the
deepest requested layer.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .tables import IMAGENET_MEAN_BGR

__all__ = ["FeatureExtractor", "caffe_to_imagenet_rgb", "net_device"]

#: ImageNet RGB mean and std of torchvision-style models (on the 0..1 scale).
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)


class _StopForward(Exception):
    """Raised by a hook once every requested layer has been seen."""


def net_device(net) -> torch.device:
    """The device of ``net``'s first parameter or buffer (CPU for parameterless nets)."""
    if isinstance(net, nn.Module):
        for tensor in list(net.parameters()) + list(net.buffers()):
            return tensor.device
    return torch.device("cpu")


def caffe_to_imagenet_rgb(img_mean_bgr: Sequence[float] = IMAGENET_MEAN_BGR,
                          rgb_mean: Sequence[float] = IMAGENET_RGB_MEAN,
                          rgb_std: Sequence[float] = IMAGENET_RGB_STD) -> Callable[[Tensor], Tensor]:
    """A differentiable map from Caffe space to torchvision's ImageNet normalisation.

    Caffe space: BGR, 0..255, ``img_mean_bgr`` subtracted. Result: RGB, ``(x/255 - mean)/std``.
    """
    mean_bgr = torch.tensor(np.asarray(img_mean_bgr, dtype=np.float32)).view(1, 3, 1, 1)
    mean_rgb = torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_rgb = torch.tensor(rgb_std, dtype=torch.float32).view(1, 3, 1, 1)

    def transform(x: Tensor) -> Tensor:
        rgb = (x + mean_bgr.to(x.device)).flip(1) / 255.0
        return (rgb - mean_rgb.to(x.device)) / std_rgb.to(x.device)

    return transform


class FeatureExtractor(nn.Module):
    """Make any ``nn.Module`` an encoder with named feature layers.

    Parameters
    ----------
    model : nn.Module
        The network. Its parameters are frozen (``requires_grad=False``) and it is put
        in eval mode: reconstruction needs gradients with respect to the input only.
    layers : mapping of str to (str or nn.Module)
        Feature name -> submodule (or its dotted path in ``model.named_modules()``), in
        network order. The feature is the submodule's output.
    img_mean : array-like (3,), optional
        BGR mean of the Caffe-space input the engines optimise (default ImageNet's).
    input_size : (int, int)
        Input height and width.
    input_transform : callable, optional
        Maps the Caffe-space batch to the model's own input convention, e.g.
        :func:`caffe_to_imagenet_rgb` for torchvision models. Default: identity.

    Examples
    --------
    >>> enc = FeatureExtractor(model, {"b2": "_blocks.2", "b5": "_blocks.5"},
    ...                        input_transform=caffe_to_imagenet_rgb())  # doctest: +SKIP
    >>> enc(x, ["b2"])["b2"].shape  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, layers: Mapping[str, str | nn.Module],
                 img_mean: Sequence[float] | None = None, input_size: Sequence[int] = (224, 224),
                 input_transform: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        if not layers:
            raise ValueError("FeatureExtractor needs at least one named layer")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        modules = dict(model.named_modules())
        self._modules_by_name: dict[str, nn.Module] = {}
        for name, target in layers.items():
            if isinstance(target, str):
                if target not in modules:
                    raise KeyError(f"layer {name!r}: the model has no submodule {target!r}")
                target = modules[target]
            self._modules_by_name[name] = target
        self.layer_names: tuple[str, ...] = tuple(layers)
        self.img_mean = np.asarray(IMAGENET_MEAN_BGR if img_mean is None else img_mean,
                                   dtype=np.float32).reshape(3)
        self.input_size = tuple(int(s) for s in input_size)
        self.input_transform = input_transform

    def forward(self, x: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Outputs of the requested submodules for a Caffe-space batch ``x``."""
        wanted = list(self.layer_names if layers is None else layers)
        unknown = [n for n in wanted if n not in self._modules_by_name]
        if unknown:
            raise KeyError(f"no layer(s) {unknown}; this extractor has {list(self.layer_names)}")
        out: dict[str, Tensor] = {}
        remaining = set(wanted)

        def make_hook(name: str):
            def hook(_module, _inputs, output):
                out[name] = output
                remaining.discard(name)
                if not remaining:
                    raise _StopForward
            return hook

        handles = [self._modules_by_name[n].register_forward_hook(make_hook(n)) for n in set(wanted)]
        try:
            self.model(self.input_transform(x) if self.input_transform else x)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        if remaining:
            raise RuntimeError(f"layer(s) {sorted(remaining)} were not reached by the forward pass")
        return {n: out[n] for n in self.layer_names if n in out}
