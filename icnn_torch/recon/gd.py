"""Scheduled momentum gradient descent, shared by ``icnn_gd`` and ``icnn_dgn_gd``.

One iteration t = 0..iter_n-1 (SPEC section 5), for a batch of variables v (pixels or
generator inputs), each image independent of the others:

1. ``hooks.before``: e.g. jitter (roll v and the momentum buffer);
2. render the image(s) from v, forward to the deepest target layer, loss per image, one
   autograd backward of the summed loss -> g;
3. ``g = g / mean|g|`` per image (when ``grad_normalize`` and the mean is > 0);
4. ``delta = momentum * delta + g`` (+ regulariser gradients from ``hooks.regularise``);
5. ``v = v - lr * delta``; ``hooks.after_step`` (pixel clipping, un-jitter);
6. ``v = (1 - decay) * v``; ``hooks.finish`` (blur, or clipping to bounds).

Schedules are linear: ``value(t) = start + t * (end - start) / iter_n`` (never reaching
``end``). On CUDA the loop computes in full float32, without TF32
(:func:`icnn_torch.perf.full_float32`), and never waits for the device: losses stay on
it until a line is printed late (:class:`icnn_torch.reporting.Reporter`) or the loop ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .losses import FeatureLoss
from .perf import full_float32
from .reporting import Reporter

__all__ = ["Schedule", "GDHooks", "run_momentum_gd", "normalise_per_image"]


@dataclass(frozen=True)
class Schedule:
    """Linear schedule from ``start`` to ``end`` over ``n`` steps."""

    start: float
    end: float
    n: int

    def __call__(self, t: int) -> float:
        return self.start + t * (self.end - self.start) / self.n


def normalise_per_image(g: Tensor) -> Tensor:
    """Divide each image's gradient by its mean absolute value (left as is when 0)."""
    scale = g.abs().flatten(1).mean(1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return g / scale.view(-1, *([1] * (g.dim() - 1)))


class GDHooks:
    """Per-parametrisation steps around the shared update; the defaults do nothing."""

    def before(self, t: int, v: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        return v, delta

    def regularise(self, t: int, v: Tensor) -> tuple[Tensor, Tensor] | None:
        """Optional (loss (B,), gradient) added to the error and to the momentum buffer."""
        return None

    def after_step(self, t: int, v: Tensor, delta: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
        return v, delta

    def finish(self, t: int, v: Tensor) -> Tensor:
        return v


@dataclass
class GDResult:
    variable: Tensor  # final variable after the last update, (B, ...)
    last_variable: Tensor  # variable of the last forward pass
    last_image: Tensor  # image of the last forward pass, (B, 3, H, W)
    losses: "object"  # numpy (iter_n, B)


def run_momentum_gd(v0: Tensor, render: Callable[[Tensor], Tensor], objective: FeatureLoss, net,
                    iter_n: int, lr: Schedule, momentum: Schedule, decay: Schedule,
                    grad_normalize: bool = True, hooks: GDHooks | None = None,
                    reporter: Reporter | None = None,
                    on_iteration: Callable[[int, Tensor, Tensor], None] | None = None) -> GDResult:
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
    hooks : GDHooks, optional
    reporter : Reporter, optional
        Receives each iteration's per-image error (feature loss + regularisers).
    on_iteration : callable(t, v_after_update, rendered_image), optional
        E.g. snapshot writing.
    """
    hooks = hooks or GDHooks()
    layers = objective.layers
    v = v0.detach().clone()
    delta = torch.zeros_like(v)
    last_v = v
    image = None
    with full_float32(v0.device):
        for t in range(iter_n):
            v, delta = hooks.before(t, v, delta)
            v_req = v.detach().requires_grad_(True)
            with torch.enable_grad():
                image = render(v_req)
                loss = objective(net(image, layers))
                (grad,) = torch.autograd.grad(loss.sum(), v_req)
            last_v = v
            image = image.detach()
            err = loss.detach()
            if grad_normalize:
                grad = normalise_per_image(grad)
            delta = delta * momentum(t) + grad
            reg = hooks.regularise(t, v)
            if reg is not None:
                reg_loss, reg_grad = reg
                err = err + reg_loss
                delta = delta + reg_grad
            v = v - lr(t) * delta
            v, delta = hooks.after_step(t, v, delta, grad)
            v = v * (1.0 - decay(t))
            v = hooks.finish(t, v)
            if reporter is not None:
                reporter.record(err)
                reporter.show(t + 1, err)
            if on_iteration is not None:
                on_iteration(t, v, image)
    losses = reporter.losses() if reporter is not None else None
    return GDResult(variable=v, last_variable=last_v, last_image=image, losses=losses)
