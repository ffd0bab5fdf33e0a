"""The original ``icnn.loss``: its loss functions, in numpy, under its names and signatures.

Each ``*_loss(feat, feat0, mask=1.)`` takes one image's features of one layer as the net
gives them (``feat``: (C, H, W) for conv/pool layers, (N,) for fc layers), the target
``feat0`` of the same shape and a mask broadcastable to them (1: the unit is used, 0: it is
left out; the default ``1.`` uses every unit), and returns ``(loss, grad)``: the loss as a
numpy scalar and the gradient the original back-propagated into the layer, an array of
``feat``'s shape. Dtypes follow numpy's promotion of the inputs (the original computed on
Caffe's float32 blobs: float32 features and targets give float32 results); the inputs are
not modified. The engines multiply both by the layer weight and sum the layers.

With ``d = feat - feat0``:

- ``L2_loss``: ``sum(d**2 * mask)``, gradient ``2 * d * mask``;
- ``L1_loss``: ``sum(|d * mask|)``, gradient ``sign(d) * mask``;
- ``inner_loss``: ``-sum(feat * feat0 * mask)``, gradient ``-feat0 * mask``;
- ``gram_loss``: ``||gram(feat, mask) - gram(feat0, mask)||_F**2 / (4 N**2 M**2)`` (N
  channels, M = H*W positions), gradient ``((gram(feat, mask) - gram(feat0, mask)) @ F) *
  mask / (N**2 M**2)`` with ``F`` the *unmasked* features as an N x M matrix.

The L2 and inner gradients are those of their losses for any mask, the L1 one for any
non-negative mask, the Gram one for a 0/1 mask of whole channels (the engines' ``channel``
option) or of whole positions (a 2-D mask); for other masks (single units, graded or
negative values) they are not. The engines (:mod:`icnn_torch.recon.losses`, the same
formulas batched in PyTorch) use these gradients by default; their option
``exact_masked_gradient=True`` takes the gradient of the masked loss instead.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["L2_loss", "L1_loss", "inner_loss", "gram", "gram_loss", "switch_loss_fun"]

#: ``(feat, feat0, mask=1.) -> (loss, grad)``
LossFunction = Callable[..., tuple]


def L2_loss(feat: np.ndarray, feat0: np.ndarray, mask=1.):
    """Masked sum of squared differences and its gradient ``2 d mask`` (see the module)."""
    diff = feat - feat0
    return np.sum(diff * diff * mask), 2 * diff * mask


def L1_loss(feat: np.ndarray, feat0: np.ndarray, mask=1.):
    """Masked sum of absolute differences and the original's gradient ``sign(d) mask``."""
    diff = feat - feat0
    return np.sum(np.abs(diff * mask)), np.sign(diff) * mask


def inner_loss(feat: np.ndarray, feat0: np.ndarray, mask=1.):
    """Negative masked inner product and its gradient ``-feat0 mask``."""
    return -np.sum(feat * feat0 * mask), -feat0 * mask


def gram(feat: np.ndarray, mask=1.) -> np.ndarray:
    """Channel Gram matrix of the masked features, (C, C).

    ``feat`` (C, ...) is flattened to C rows after the mask is applied.
    """
    rows = np.reshape(feat * mask, (np.shape(feat)[0], -1))
    return np.dot(rows, rows.T)


def gram_loss(feat: np.ndarray, feat0: np.ndarray, mask=1.):
    """Normalised squared distance of the masked Gram matrices, and the original's gradient.

    Parameters
    ----------
    feat, feat0 : ndarray, (C, H, W)
        Conv/pool features and their target.
    mask : float or ndarray broadcastable to (C, H, W)

    Returns
    -------
    loss : numpy scalar
        ``||G - G0||_F**2 / (4 C**2 (H W)**2)``, G and G0 the Gram matrices of the masked
        features.
    grad : ndarray, (C, H, W)
        ``((G - G0) @ feat) * mask / (C**2 (H W)**2)``, ``feat`` unmasked as a C x HW matrix.

    Raises
    ------
    ValueError
        ``feat`` is not (C, H, W) (the original failed with an IndexError on fc features).
    """
    shape = np.shape(feat)
    if len(shape) != 3:
        raise ValueError(f"gram_loss needs conv/pool features (C, H, W), got shape {shape}")
    n_ch, n_pos = shape[0], shape[1] * shape[2]
    diff = gram(feat, mask) - gram(feat0, mask)
    norm = n_ch ** 2 * n_pos ** 2
    loss = np.sum(diff * diff) / (4 * norm)
    grad = np.reshape(np.dot(diff, np.reshape(feat, (n_ch, n_pos))), shape) * mask / norm
    return loss, grad


_LOSSES: dict[str, LossFunction] = {
    "l2": L2_loss, "l1": L1_loss, "inner": inner_loss, "gram": gram_loss,
}


def switch_loss_fun(loss_type: str) -> LossFunction:
    """The loss function of ``loss_type``: 'l2', 'l1', 'inner' or 'gram'.

    Raises
    ------
    ValueError
        For any other name (the original's message, with the names accepted).
    """
    try:
        return _LOSSES[loss_type]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss function type! {loss_type!r}; "
                         f"choose from {sorted(_LOSSES)}") from None
