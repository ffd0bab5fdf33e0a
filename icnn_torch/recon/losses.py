"""Per-layer losses of the feature-matching objective (as the original ``icnn.loss``).

For features ``f`` of a batch (B, ...), targets ``t`` and an optional mask, each loss
type gives one value per image (B,):

- ``l2``:    ``sum(mask * d**2)`` with ``d = f - target`` (a plain sum, no averaging),
- ``l1``:    ``sum(|mask * d|)``,
- ``inner``: ``-sum(f * target * mask)``,
- ``gram``:  ``||G(f*mask) - G(target*mask)||_F^2 / (4 N^2 M^2)`` with ``G`` the channel
  Gram matrix, N channels and M = H*W positions (conv/pool layers only).

The gradient is left to autograd (one backward of the summed loss gives, for each image,
what the original's layer-by-layer backward computed), except for ``l2``, whose backward
is fused (:func:`weighted_l2`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["LOSS_TYPES", "weighted_l2"]


# ``m`` is a float mask broadcastable to the features, or None for "every unit": skipping
# the multiplication by an all-ones mask saves a full pass over each feature map.

def _masked(x: Tensor, m: Tensor | None) -> Tensor:
    return x if m is None else x * m


def _l2(f: Tensor, t: Tensor, m: Tensor | None) -> Tensor:
    d = f - t
    return _masked(d * d, m).flatten(1).sum(1)


def _l1(f: Tensor, t: Tensor, m: Tensor | None) -> Tensor:
    return _masked(f - t, m).abs().flatten(1).sum(1)


def _inner(f: Tensor, t: Tensor, m: Tensor | None) -> Tensor:
    return -_masked(f * t, m).flatten(1).sum(1)


def _gram(f: Tensor, t: Tensor, m: Tensor | None) -> Tensor:
    if f.dim() != 4:
        raise ValueError(f"the gram loss needs (N, C, H, W) features, got {tuple(f.shape)}")
    n_ch, n_pos = f.shape[1], f.shape[2] * f.shape[3]
    fm = _masked(f, m).flatten(2)
    tm = _masked(t, m).flatten(2)
    diff = fm @ fm.transpose(1, 2) - tm @ tm.transpose(1, 2)
    return (diff * diff).flatten(1).sum(1) / (4.0 * n_ch ** 2 * n_pos ** 2)


class _WeightedL2(torch.autograd.Function):
    """``w_b * sum(mask * (f - t)**2)`` per image b, with a hand-written backward.

    Autograd's version of the same expression keeps ``d`` twice, multiplies the incoming
    gradient into it twice and adds the halves; here the gradient ``2 * w_b * g_b * mask * d``
    is one in-place multiplication of the saved difference (so the graph can be
    differentiated once only: a second backward raises autograd's "modified by an inplace
    operation" error instead of returning a wrong gradient).
    """

    @staticmethod
    def forward(ctx, feat: Tensor, target: Tensor, mask: Tensor | None, weight: Tensor) -> Tensor:
        d = feat - target
        dm = d if mask is None else d * mask
        # Pairwise float32 summation (as numpy's), not a dot product: the loss value steers
        # L-BFGS-B's line search, whose relative tolerance is ~2e-9.
        per_image = (dm * d).flatten(1).sum(1)
        ctx.save_for_backward(dm, weight)
        return weight * per_image

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        dm, weight = ctx.saved_tensors
        scale = (2.0 * grad * weight).view(-1, *([1] * (dm.dim() - 1)))
        return dm.mul_(scale), None, None, None


def weighted_l2(feat: Tensor, target: Tensor, mask: Tensor | None, weight: Tensor) -> Tensor:
    """``weight * l2(feat, target, mask)`` per image, shape (B,), with a fused backward.

    ``feat``/``target`` (B, ...), ``mask`` broadcastable to them or None (every unit),
    ``weight`` (B,). Equal to ``weight * LOSS_TYPES["l2"](feat, target, mask)``.
    """
    return _WeightedL2.apply(feat, target, mask, weight)


LOSS_TYPES: dict[str, Callable[[Tensor, Tensor, Tensor | None], Tensor]] = {
    "l2": _l2, "l1": _l1, "inner": _inner, "gram": _gram,
}

