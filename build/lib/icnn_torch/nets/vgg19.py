"""VGG19 returning pre-ReLU features under the original Caffe blob names.

The net follows the original Caffe VGG19 layer for layer (:data:`~icnn_torch.nets.tables.VGG19_TABLE`),
so that ``features["conv3_2"]`` here is the blob ``conv3_2`` of the original prototxt: the
convolution output *before* its ReLU. Input: Caffe space, (N, 3, 224, 224) float32, BGR,
0..255, ImageNet mean subtracted.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tables import IMAGENET_MEAN_BGR, VGG19_INPUT_SIZE, VGG19_LAYERS, VGG19_TABLE

__all__ = ["VGG19", "freeze"]


def freeze(module: nn.Module) -> None:
    """Turn off the gradients of ``module``'s parameters (reconstruction needs input gradients only)."""
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
    input_size: tuple[int, int] = VGG19_INPUT_SIZE

    def __init__(self, variant: str = "relu", img_mean: Sequence[float] | None = None) -> None:
        super().__init__()
        if variant not in ("relu", "leaky"):
            raise ValueError(f"variant must be 'relu' or 'leaky', not {variant!r}")
        self.variant = variant
        self.negative_slope = 0.0 if variant == "relu" else 0.2
        self.img_mean = np.asarray(IMAGENET_MEAN_BGR if img_mean is None else img_mean,
                                   dtype=np.float32).reshape(3)
        for name, kind, n_in, n_out in VGG19_TABLE:
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
        freeze(self)
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
        for index, (name, kind, *_rest) in enumerate(VGG19_TABLE[:deepest + 1]):
            if kind == "pool":
                x = self._pool(x)
                y = x
            else:
                if kind == "fc" and x.dim() > 2:
                    x = torch.flatten(x, 1)  # C, H, W order, as Caffe's InnerProduct
                y = getattr(self, name)(x)
                # The activation must not overwrite a tapped blob; off the taps it
                # could be in place, but autograd keeps y anyway, so nothing is saved.
                x = self._activation(y) if index < len(VGG19_TABLE) - 1 else y
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
