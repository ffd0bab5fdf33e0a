"""The objective of a reconstruction: target features, layer weights and masks, and the
weighted feature loss of a batch (:class:`FeatureLoss`).

``loss_b = sum_l w_{b,l} * loss_type(f_l(x_b), target_{b,l}, mask_l)`` for every image b
of a batch (loss types in :mod:`icnn_torch.recon.losses`). :func:`build_feature_loss` turns
the user's targets, weights and masks into one.

Accepted forms of ``features`` (the original's dict, plus batches):

- a dict layer -> array of one image: (C, H, W) for conv/pool layers, (N,), (1, N) or
  (N, 1) for fc layers;
- a dict layer -> array with a leading batch axis: (B, C, H, W) / (B, N);
- a list of dicts of one image each.

Every target is checked against the shape the net actually produces for that layer; a
mismatch names the layer and both shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..utils import create_feature_masks, sort_layer_list
from .losses import LOSS_TYPES, loss_function, weighted_l2

__all__ = ["FeatureLoss", "build_feature_loss", "probe_feature_shapes"]


@dataclass
class FeatureLoss:
    """Weighted feature-matching loss of a batch of images.

    Attributes
    ----------
    layers : list of str
        Layer names in network order.
    targets : dict of str to Tensor
        Per layer, (B, *feature_shape) target features.
    masks : dict of str to (Tensor or None)
        Per layer, a float mask broadcastable to (B, *feature_shape); None uses every unit.
    weights : Tensor, shape (B, L)
        Layer weights per image, columns in ``layers`` order.
    loss_type : str
        One of :data:`LOSS_TYPES`.
    exact_masked_gradient : bool
        False (the original): the ``l1`` and ``gram`` gradients under a mask are the
        original's formulas; True: the gradient of the masked loss (see
        :mod:`icnn_torch.recon.losses`).
    """

    layers: list[str]
    targets: dict[str, Tensor]
    masks: dict[str, Tensor | None]
    weights: Tensor
    loss_type: str = "l2"
    exact_masked_gradient: bool = False

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {self.loss_type!r}; choose from {sorted(LOSS_TYPES)}")

    def __call__(self, feats: Mapping[str, Tensor]) -> Tensor:
        """Per-image total loss, shape (B,), float64.

        Each layer's weighted loss is computed in float32 and the layers are summed in
        float64, as the original adds its float32 layer losses to a Python float.
        """
        fn = loss_function(self.loss_type, self.exact_masked_gradient)
        total = None
        for j, name in enumerate(self.layers):
            feat, weight = feats[name], self.weights[:, j]
            target, mask = self._in_layout_of(name, feat)
            if self.loss_type == "l2" and feat.requires_grad:
                term = weighted_l2(feat, target, mask, weight)
            else:
                term = weight * fn(feat, target, mask)
            term = term.double()
            total = term if total is None else total + term
        return total

    def _in_layout_of(self, name: str, feat: Tensor) -> tuple[Tensor, Tensor | None]:
        """Target and mask of ``name`` in the memory layout of ``feat``.

        A channels-last encoder (``net.to(memory_format=torch.channels_last)``) gives
        channels-last features; element-wise work on operands of two layouts is several
        times slower, so the targets (and full-size masks) follow the features, once.
        """
        target, mask = self.targets[name], self.masks[name]
        cl = torch.channels_last
        if feat.dim() == 4 and not feat.is_contiguous() and feat.is_contiguous(memory_format=cl) \
                and not target.is_contiguous(memory_format=cl):
            target = self.targets[name] = target.contiguous(memory_format=cl)
            if mask is not None and mask.dim() == 4:
                mask = self.masks[name] = mask.contiguous(memory_format=cl)
        return target, mask

    def select(self, index: int | Sequence[int]) -> "FeatureLoss":
        """The objective of a subset of the batch (e.g. one image for L-BFGS)."""
        idx = [index] if isinstance(index, int) else list(index)
        take = torch.as_tensor(idx, device=self.weights.device)

        def pick(t: Tensor | None) -> Tensor | None:
            return t.index_select(0, take) if t is not None and t.shape[0] > 1 else t

        return FeatureLoss(self.layers, {k: v.index_select(0, take) for k, v in self.targets.items()},
                           {k: pick(v) for k, v in self.masks.items()},
                           self.weights.index_select(0, take), self.loss_type,
                           self.exact_masked_gradient)

    @property
    def batch_size(self) -> int:
        return int(self.weights.shape[0])


def probe_feature_shapes(net, layers: Sequence[str], device: torch.device) -> dict[str, tuple[int, ...]]:
    """Per-image feature shapes of ``layers`` (one forward of a blank image, no grad)."""
    h, w = net.input_size
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, h, w, device=device), layers)
    return {name: tuple(feats[name].shape[1:]) for name in layers}


def _as_array(value, layer: str) -> np.ndarray:
    arr = np.asarray(value.detach().cpu().numpy() if isinstance(value, Tensor) else value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"features of layer {layer!r} are not numeric (dtype {arr.dtype})")
    return arr.astype(np.float32, copy=False)


def _split_batch(layer: str, arr: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """Return (B, *shape) targets and whether the input carried a batch axis."""
    size = int(np.prod(shape))
    if arr.shape == shape:
        return arr[None], False
    if len(shape) == 1 and arr.ndim == 2 and size in arr.shape and 1 in arr.shape and arr.size == size:
        return arr.reshape(1, size), False  # fc stored 1xN or Nx1 (MATLAB), one image
    if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
        return arr, True
    raise ValueError(f"features of layer {layer!r} have shape {arr.shape}, but the net gives "
                     f"{shape} per image (or (B, {', '.join(map(str, shape))}) for a batch)")


def build_feature_loss(features, net, device: torch.device, layer_weight=None, channel=None,
                       mask=None, loss_type: str = "l2",
                       exact_masked_gradient: bool = False) -> tuple[FeatureLoss, bool]:
    """Validate and batch the targets of a reconstruction.

    Parameters
    ----------
    features : dict or list of dict
        See the module docstring.
    net : encoder
        Gives ``layer_names``, ``input_size`` and ``net(x, layers)``.
    device : torch.device
    layer_weight : dict or list of dict, optional
        Layer -> weight (a float shared by the batch, or a (B,) array), or one dict per
        image. Default: equal weights summing to 1. Must be finite.
    channel, mask : dict, optional
        As in :func:`icnn_torch.utils.create_feature_masks`; a mask may also carry the
        batch axis (B, *shape).
    loss_type : {"l2", "l1", "inner", "gram"}
    exact_masked_gradient : bool
        See :class:`FeatureLoss` (default False, the original's gradients).

    Returns
    -------
    (FeatureLoss, batched)
        ``batched`` says whether the caller gave a batch (so results keep the batch axis).
    """
    if isinstance(features, Mapping):
        per_image = None
        names = list(features)
    else:
        per_image = list(features)
        if not per_image:
            raise ValueError("an empty list of feature dicts")
        names = list(per_image[0])
        for i, fd in enumerate(per_image):
            if set(fd) != set(names):
                raise ValueError(f"feature dict {i} has layers {sorted(fd)}, dict 0 has {sorted(names)}")
    if not names:
        raise ValueError("no target features given")
    layers = sort_layer_list(net, names)
    shapes = probe_feature_shapes(net, layers, device)

    targets: dict[str, np.ndarray] = {}
    batched = per_image is not None
    for name in layers:
        if per_image is None:
            arr, has_batch = _split_batch(name, _as_array(features[name], name), shapes[name])
            batched = batched or has_batch
        else:
            parts = [_split_batch(name, _as_array(fd[name], name), shapes[name]) for fd in per_image]
            if any(b for _, b in parts):
                raise ValueError(f"layer {name!r}: a list of feature dicts takes one image per dict")
            arr = np.concatenate([a for a, _ in parts])
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"features of layer {name!r} contain NaN or inf")
        targets[name] = arr
    sizes = {name: a.shape[0] for name, a in targets.items()}
    batch = max(sizes.values())
    for name, a in targets.items():
        if a.shape[0] != batch:
            if a.shape[0] == 1 and not batched:
                continue
            raise ValueError(f"layers disagree on the batch size: {sizes}")
    targets = {n: np.broadcast_to(a, (batch,) + a.shape[1:]) for n, a in targets.items()}

    weights = _layer_weights(layer_weight, layers, batch)
    masks = _masks(mask, channel, targets, shapes, batch)
    to = dict(device=device, dtype=torch.float32)
    loss = FeatureLoss(
        layers=layers,
        targets={n: torch.tensor(np.ascontiguousarray(a)).to(**to) for n, a in targets.items()},
        masks={n: None if np.all(m == 1) else torch.as_tensor(m).to(**to) for n, m in masks.items()},
        weights=torch.as_tensor(weights).to(**to),
        loss_type=loss_type,
        exact_masked_gradient=bool(exact_masked_gradient),
    )
    return loss, batched


def _layer_weights(layer_weight, layers: list[str], batch: int) -> np.ndarray:
    if layer_weight is None:
        return np.full((batch, len(layers)), 1.0 / len(layers), dtype=np.float32)
    dicts = [layer_weight] if isinstance(layer_weight, Mapping) else list(layer_weight)
    if len(dicts) not in (1, batch):
        raise ValueError(f"{len(dicts)} layer_weight dicts for a batch of {batch}")
    w = np.zeros((batch, len(layers)), dtype=np.float64)
    for i in range(batch):
        d = dicts[i if len(dicts) > 1 else 0]
        missing = [n for n in layers if n not in d]
        if missing:
            raise KeyError(f"layer_weight has no weight for layer(s) {missing}")
        for j, name in enumerate(layers):
            value = np.asarray(d[name], dtype=np.float64).reshape(-1)
            if value.size not in (1, batch):
                raise ValueError(f"layer_weight[{name!r}] has {value.size} values for a batch of {batch}")
            w[i, j] = value[0] if value.size == 1 else value[i]
    bad = [layers[j] for j in range(len(layers)) if not np.all(np.isfinite(w[:, j]))]
    if bad:
        raise ValueError(f"layer_weight of layer(s) {bad} is NaN or inf (all-zero target "
                         "features give 1/||f||^2 = inf; drop such layers or set their weight)")
    return w.astype(np.float32)


def _masks(mask, channel, targets, shapes, batch) -> dict[str, np.ndarray]:
    mask = dict(mask or {})
    batched_masks = {n: np.asarray(m, dtype=np.float32) for n, m in mask.items()
                     if n in shapes and np.ndim(m) == len(shapes[n]) + 1
                     and np.shape(m)[1:] == shapes[n]}
    for n, m in batched_masks.items():
        if m.shape[0] not in (1, batch):
            raise ValueError(f"mask of layer {n!r} has batch size {m.shape[0]}, features {batch}")
        mask.pop(n)
    single = create_feature_masks({n: np.empty(shapes[n], np.float32) for n in targets},
                                  masks=mask, channels=channel)
    out = {n: m[None] for n, m in single.items()}
    out.update(batched_masks)
    return out
