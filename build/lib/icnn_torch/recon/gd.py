"""The scheduled momentum gradient descent of ``icnn_gd`` and ``icnn_dgn_gd``: one loop.

One iteration t = 0..iter_n-1, for a batch of variables v (pixels or generator inputs),
each image independent of the others, in the original's order:

1. hooks' ``before`` (jitter rolls v and the momentum buffer);
2. render the image(s) from v, forward to the deepest target layer, the loss per image,
   one autograd backward of the summed loss -> g;
3. ``g = g / mean|g|`` per image (when ``grad_normalize`` and the mean is > 0);
4. ``delta = momentum * delta + g``; hooks' ``regularise`` terms are added to delta and to
   the printed error (not to the loss list: it holds the feature loss, as the original's);
5. ``v = v - lr * delta``; hooks' ``after_step`` (pixel clipping, jitter's roll back);
6. ``v = (1 - decay) * v``; hooks' ``finish`` (blur, or clipping to bounds).

Schedules are linear (:class:`~icnn_torch.recon.transforms.Schedule`). On CUDA the loop
computes in full float32, without TF32 (:func:`icnn_torch.perf.full_float32`), and never
waits for the device: losses stay on it until a line is printed late
(:class:`~icnn_torch.recon.progress.Reporter`) or the loop ends. A loss that turns NaN or
infinite stops the run with :class:`~icnn_torch.errors.NonFiniteError` when the reporter
sees it (at its next line, or at the end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..perf import full_float32
from .objective import FeatureLoss
from .progress import Reporter
from .transforms import Schedule, StepHook, normalise_per_image

__all__ = ["GDResult", "run_momentum_gd"]


@dataclass
class GDResult:
    """What the loop ends with.

    Attributes
    ----------
    variable : Tensor (B, ...)
        After the last update.
    last_variable : Tensor (B, ...)
        Of the last forward pass (the DGN engines return it, and its image).
    last_image : Tensor (B, 3, H, W)
        Rendered from ``last_variable``.
    losses : ndarray (iter_n, B) float32
        The feature loss of every iteration.
    """

    variable: Tensor
    last_variable: Tensor
    last_image: Tensor
    losses: np.ndarray


def run_momentum_gd(v0: Tensor, render: Callable[[Tensor], Tensor], objective: FeatureLoss, net,
                    iter_n: int, lr: Schedule, momentum: Schedule, decay: Schedule,
                    grad_normalize: bool = True, hooks: Sequence[StepHook] = (),
                    reporter: Optional[Reporter] = None,
                    on_iteration: Optional[Callable[[int, Tensor, Tensor], None]] = None) -> GDResult:
    """Run the loop described in the module docstring.

    Parameters
    ----------
    v0 : Tensor, (B, ...)
        Initial variables (not modified).
    render : callable
        Variables -> Caffe-space images (B, 3, H, W), differentiable.
    objective : FeatureLoss
    net : encoder
    iter_n : int
    lr, momentum, decay : Schedule
    grad_normalize : bool
    hooks : sequence of StepHook
        Called in order at each phase (see :mod:`icnn_torch.recon.transforms`).
    reporter : Reporter, optional
        Receives each iteration's feature loss (the loss list) and its error (feature
        loss + regularisers, the printed value).
    on_iteration : callable(t, v_after_update, rendered_image), optional
        E.g. snapshot writing.
    """
    layers = objective.layers
    v = v0.detach().clone()
    delta = torch.zeros_like(v)
    last_v = v
    image = None
    with full_float32(v0.device):
        for t in range(iter_n):
            for hook in hooks:
                v, delta = hook.before(t, v, delta)
            v_req = v.detach().requires_grad_(True)
            with torch.enable_grad():
                image = render(v_req)
                loss = objective(net(image, layers))
                (grad,) = torch.autograd.grad(loss.sum(), v_req)
            last_v = v
            image = image.detach()
            loss = loss.detach()
            if grad_normalize:
                grad = normalise_per_image(grad)
            delta = delta * momentum(t) + grad
            err = loss
            for hook in hooks:
                term = hook.regularise(t, v)
                if term is not None:
                    err = err + term[0]
                    delta = delta + term[1]
            v = v - lr(t) * delta
            for hook in hooks:
                v, delta = hook.after_step(t, v, delta, grad)
            v = v * (1.0 - decay(t))
            for hook in hooks:
                v = hook.finish(t, v)
            if reporter is not None:
                reporter.record(loss)
                reporter.show(t + 1, err)
            if on_iteration is not None:
                on_iteration(t, v, image)
    losses = reporter.losses() if reporter is not None else np.zeros((0, v.shape[0]), np.float32)
    return GDResult(variable=v, last_variable=last_v, last_image=image, losses=losses)
