"""The L-BFGS-B driver of ``icnn_lbfgs`` and ``icnn_dgn_lbfgs`` (scipy's L-BFGS-B).

scipy works on one flat float64 vector; each function evaluation copies it to the device
as float32, renders, runs the net forward to the deepest target layer and one backward,
and hands back the loss (the float64 sum of the float32 layer terms, as the original) and
the float64 gradient. A NaN or infinite loss or gradient stops the run with
:class:`~icnn_torch.errors.NonFiniteError` at once. ``maxiter`` counts L-BFGS iterations;
everything else is scipy's default (m=10, ftol 2.2e-9, gtol 1e-5, maxls 20), as in the
original. The bounds are built once as arrays (:class:`scipy.optimize.Bounds`).

While scipy runs, its BLAS (OpenBLAS) is limited to one thread: L-BFGS-B's vector
operations are small, and a second pool of spinning BLAS threads next to torch's OpenMP
threads oversubscribes the cores (measured: 1.6x slower evaluations with conv1 targets
on 2 cores). On CUDA the evaluations compute in full float32, without TF32
(:func:`icnn_torch.perf.full_float32`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.optimize
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor

from ..errors import NonFiniteError
from ..perf import full_float32
from .objective import FeatureLoss
from .progress import Reporter, non_finite_message

__all__ = ["run_lbfgs"]


@dataclass
class LBFGSResult:
    variable: np.ndarray  # final flat variable (float64: scipy's res.x)
    losses: np.ndarray  # one float64 entry per function evaluation
    result: scipy.optimize.OptimizeResult


def run_lbfgs(v0: np.ndarray, shape: tuple[int, ...], render: Callable[[Tensor], Tensor],
              objective: FeatureLoss, net, lower: np.ndarray, upper: np.ndarray, maxiter: int,
              device: torch.device, reporter: Reporter | None = None,
              on_evaluation: Callable[[int, Tensor], None] | None = None) -> LBFGSResult:
    """Minimise the objective of ONE image over a bounded variable with L-BFGS-B.

    Parameters
    ----------
    v0 : ndarray
        Initial variable, any shape with ``prod(shape)`` values.
    shape : tuple
        Shape of the variable as ``render`` takes it, batch axis included (1, ...).
    render : callable
        (1, ...) variable -> (1, 3, H, W) Caffe-space image, differentiable.
    objective : FeatureLoss
        Of batch size 1.
    lower, upper : ndarray
        Bounds, flat, ``prod(shape)`` values each (``-inf``/``inf`` for none).
    maxiter : int
    device : torch.device
    reporter : Reporter, optional
        Records the loss of every evaluation and shows progress per iteration.
    on_evaluation : callable(k, image), optional
        Called before evaluation k (0-based) with its rendered image, e.g. snapshots.
    """
    layers = objective.layers
    losses: list[float] = []
    iteration = [0]

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        v = torch.from_numpy(flat).to(device=device, dtype=torch.float32).view(shape)
        v.requires_grad_(True)
        with torch.enable_grad():
            image = render(v)
            if on_evaluation is not None:
                on_evaluation(len(losses), image.detach())
            loss = objective(net(image, layers)).sum()
            (grad,) = torch.autograd.grad(loss, v)
        value = float(loss.detach())
        flat_grad = grad.detach().reshape(-1).to(dtype=torch.float64).cpu().numpy()
        if not (np.isfinite(value) and np.isfinite(flat_grad).all()):
            what = "loss" if not np.isfinite(value) else "gradient"
            raise NonFiniteError(non_finite_message(what, value if what == "loss" else "nan/inf",
                                                    f"function evaluation {len(losses)}"))
        losses.append(value)
        if reporter is not None:
            reporter.record(loss.detach())
        return value, flat_grad

    def callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        iteration[0] += 1
        if reporter is not None:
            reporter.show(iteration[0], torch.tensor([losses[-1]]))

    x0 = np.ascontiguousarray(np.asarray(v0, dtype=np.float64).reshape(-1))
    bounds = scipy.optimize.Bounds(np.asarray(lower, dtype=np.float64).reshape(-1),
                                   np.asarray(upper, dtype=np.float64).reshape(-1))
    with threadpool_limits(limits=1, user_api="blas"), full_float32(device):
        res = scipy.optimize.minimize(fun, x0, method="L-BFGS-B", jac=True, bounds=bounds,
                                      options={"maxiter": int(maxiter)}, callback=callback)
    return LBFGSResult(variable=res.x, losses=np.asarray(losses, dtype=np.float64), result=res)
