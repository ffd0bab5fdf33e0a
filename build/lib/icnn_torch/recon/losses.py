"""Per-layer losses of the feature-matching objective (as the original ``icnn.loss``).

For features ``f`` of a batch (B, ...), targets ``t`` and an optional mask, each loss
type gives one value per image (B,):

- ``l2``:    ``sum(mask * d**2)`` with ``d = f - target`` (a plain sum, no averaging),
- ``l1``:    ``sum(|mask * d|)``,
- ``inner``: ``-sum(f * target * mask)``,
- ``gram``:  ``||G(f*mask) - G(target*mask)||_F^2 / (4 N^2 M^2)`` with ``G`` the channel
  Gram matrix, N channels and M = H*W positions (conv/pool layers only).

The gradient is the original's (:mod:`icnn_torch.loss` gives the same formulas in numpy,
one image at a time). For ``l2`` and ``inner`` it is the loss's own gradient, left to
autograd (``l2``'s backward is fused, :func:`weighted_l2`). Under a mask, the original's
``l1`` gradient is ``sign(d) * mask`` and its ``gram`` gradient ``((G - G0) @ f) * mask /
(N^2 M^2)`` with ``f`` unmasked; they are the losses' gradients for 0/1 masks of whole
channels or whole positions (the ``l1`` one for any non-negative mask), not for others
(single units, graded or negative values). :func:`loss_function` with
``exact_masked_gradient=True`` gives the gradient of the masked loss instead (autograd on
the masked features). Without a mask both are autograd's, the same computation.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["LOSS_TYPES", "loss_function", "weighted_l2"]


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


def _gram_difference(f: Tensor, t: Tensor, m: Tensor | None) -> Tensor:
    """``G(f*mask) - G(target*mask)``, (B, N, N)."""
    if f.dim() != 4:
        raise ValueError(f"the gram loss needs (N, C, H, W) features, got {tuple(f.shape)}")
    fm = _masked(f, m).flatten(2)
    tm = _masked(t, m).flatten(2)
    return fm @ fm.transpose(1, 2) - tm @ tm.transpose(1, 2)


def _gram_norm(f: Tensor) -> float:
    """``N^2 M^2`` of (B, N, H, W) features."""
    return float(f.shape[1] ** 2 * (f.shape[2] * f.shape[3]) ** 2)


def _gram_of_difference(diff: Tensor, norm: float) -> Tensor:
    return (diff * diff).flatten(1).sum(1) / (4.0 * norm)


def _gram(f: Tensor, t: Tensor, m: Tensor | None) -> Tensor:
    return _gram_of_difference(_gram_difference(f, t, m), _gram_norm(f))


def _per_image(grad: Tensor, like: Tensor) -> Tensor:
    """The (B,) incoming gradient shaped to broadcast over ``like`` (B, ...)."""
    return grad.view(-1, *([1] * (like.dim() - 1)))


class _MaskedL1(torch.autograd.Function):
    """``sum(|mask * d|)`` per image, with the original's gradient ``sign(d) * mask``."""

    @staticmethod
    def forward(ctx, feat: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        d = feat - target
        ctx.save_for_backward(d, mask)
        return (d * mask).abs().flatten(1).sum(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        d, mask = ctx.saved_tensors
        return d.sign_().mul_(mask).mul_(_per_image(grad, d)), None, None


class _MaskedGram(torch.autograd.Function):
    """The Gram loss per image, with the original's gradient ``((G - G0) @ f) * mask /
    (N^2 M^2)``: the product with the unmasked features, then the mask."""

    @staticmethod
    def forward(ctx, feat: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        diff = _gram_difference(feat, target, mask)
        ctx.save_for_backward(diff, feat, mask)
        return _gram_of_difference(diff, _gram_norm(feat))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        diff, feat, mask = ctx.saved_tensors
        g = (diff @ feat.flatten(2)).view(feat.shape) * mask / _gram_norm(feat)
        return g.mul_(_per_image(grad, g)), None, None


def _l1_original(f: Tensor, t: Tensor, m: Tensor | None) -> Tensor:
    return _l1(f, t, None) if m is None else _MaskedL1.apply(f, t, m)


def _gram_original(f: Tensor, t: Tensor, m: Tensor | None) -> Tensor:
    return _gram(f, t, None) if m is None else _MaskedGram.apply(f, t, m)


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


LossType = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]

#: Loss type -> per-image loss ``fn(f, target, mask) -> (B,)``, with the original's gradients.
LOSS_TYPES: dict[str, LossType] = {
    "l2": _l2, "l1": _l1_original, "inner": _inner, "gram": _gram_original,
}
#: The same losses with the gradient of the masked loss (autograd on the masked features).
_EXACT_MASKED_GRADIENT: dict[str, LossType] = {"l2": _l2, "l1": _l1, "inner": _inner, "gram": _gram}


def loss_function(loss_type: str, exact_masked_gradient: bool = False) -> LossType:
    """The per-image loss of ``loss_type`` (one of :data:`LOSS_TYPES`).

    ``exact_masked_gradient``: False (the original), the ``l1`` and ``gram`` gradients
    under a mask are the original's formulas; True, autograd's gradient of the masked loss.
    The two differ only under masks that are not 0/1 per whole channel or position (for
    ``l1``: only under negative mask values).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose from {sorted(LOSS_TYPES)}")
    return (_EXACT_MASKED_GRADIENT if exact_masked_gradient else LOSS_TYPES)[loss_type]
