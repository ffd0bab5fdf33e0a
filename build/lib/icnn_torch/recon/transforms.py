"""The per-step operations of the gradient-descent engines, as a list of small hooks.

The loop (:func:`icnn_torch.recon.gd.run_momentum_gd`) calls each hook of its list, in
list order, at four points of every iteration t:

1. ``before(t, v, delta)``: before the forward pass (jitter rolls the image and the
   momentum buffer);
2. ``regularise(t, v)``: after the momentum update, an optional (loss, gradient) pair
   added to the printed error and to the momentum buffer (p-norm and TV regularisers);
3. ``after_step(t, v, delta, grad)``: after ``v -= lr * delta`` (pixel clipping, then the
   jitter's roll back);
4. ``finish(t, v)``: after the decay ``v *= 1 - decay`` (Gaussian blur; bounds).

This is the order of the original ``icnn_gd`` and ``icnn_dgn_gd``, whose options map to
these hooks one to one (:func:`pixel_gd_hooks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


__all__ = ["Schedule", "normalise_per_image", "StepHook", "Jitter", "PNormRegulariser",
           "TVRegulariser", "ClipExtreme", "ClipSmallNorm", "ClipSmallContribution",
           "GaussianBlur", "Bounds", "gaussian_blur_torch", "regulariser_scale",
           "pixel_gd_hooks"]


@dataclass(frozen=True)
class Schedule:
    """Linear schedule ``start + t * (end - start) / n`` for t = 0..n-1 (it never reaches
    ``end``, as in the original)."""

    start: float
    end: float
    n: int

    def __call__(self, t: int) -> float:
        return self.start + t * (self.end - self.start) / self.n


def normalise_per_image(g: Tensor) -> Tensor:
    """Divide each image's gradient by its mean absolute value (left as is when 0)."""
    scale = g.abs().flatten(1).mean(1)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return g / safe.view(-1, *([1] * (g.dim() - 1)))


class StepHook:
    """One per-step operation; the default of every phase does nothing."""

    def before(self, t: int, v: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        return v, delta

    def regularise(self, t: int, v: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        """Optional (loss (B,), gradient like v), already weighted and normalised."""
        return None

    def after_step(self, t: int, v: Tensor, delta: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
        return v, delta

    def finish(self, t: int, v: Tensor) -> Tensor:
        return v


def _bcast(values: Tensor, like: Tensor) -> Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def _per_image_quantile(values: Tensor, q: float) -> Tensor:
    return torch.quantile(values.flatten(1), q, dim=1, interpolation="linear")


def _pct(value: float) -> float:
    return min(max(float(value), 0.0), 100.0)


def tv_norm_torch(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Differentiable total variation of (..., H, W) tensors, summed (see :func:`TV_norm`)."""
    dh = torch.zeros_like(x)
    dw = torch.zeros_like(x)
    dh[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    dw[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    sq = dh * dh + dw * dw
    # (sq)^(beta/2) has an infinite slope at 0 for beta < 2; keep it finite there.
    return torch.where(sq > 0, sq.clamp_min(1e-10) ** (beta / 2.0), torch.zeros_like(sq)).sum()


class Jitter(StepHook):
    """Roll the image (and the momentum buffer) by a random shift of up to ``size`` pixels
    before the forward pass, and back after the step.

    The shift ``(ox, oy) = randint(-size, size + 1, 2)`` is drawn once per iteration for the
    whole batch, from numpy's global generator as the original (or from ``rng``); the
    image is rolled by ``ox`` along the width and ``oy`` along the height.

    Rolling back, the original takes the gradient out of the momentum buffer, rolls the
    buffer back and adds the gradient in again unrolled (``rolls_momentum=False``, the
    default): the gradient of the shifted image then stays in the shifted frame. With
    ``rolls_momentum=True`` the whole buffer is rolled back, so that it stays aligned
    with the image.
    """

    def __init__(self, size: int, rng: Optional[np.random.Generator] = None,
                 rolls_momentum: bool = False) -> None:
        self.size = int(size)
        self.rng = rng
        self.rolls_momentum = rolls_momentum
        self.shift = (0, 0)

    def before(self, t, v, delta):
        draw = self.rng.integers if self.rng is not None else np.random.randint
        ox, oy = (int(s) for s in draw(-self.size, self.size + 1, 2))
        self.shift = (ox, oy)
        return torch.roll(v, (oy, ox), (-2, -1)), torch.roll(delta, (oy, ox), (-2, -1))

    def after_step(self, t, v, delta, grad):
        ox, oy = self.shift
        v = torch.roll(v, (-oy, -ox), (-2, -1))
        if self.rolls_momentum:
            return v, torch.roll(delta, (-oy, -ox), (-2, -1))
        return v, torch.roll(delta - grad, (-oy, -ox), (-2, -1)) + grad


def regulariser_scale(shape: tuple[int, int, int], draw_noise: bool = True) -> float:
    """``(||noise|| / 2)^2``, the divisor of both regularisers, for a (C, H, W) image.

    ``draw_noise=True`` (the original): ``noise`` is an image of uniform random integers
    0..255 drawn from numpy's global generator (``randint(0, 256, (H, W, C))``), so a
    seeded run draws the same numbers in the same order as the original. ``False``: the
    expected value, ``C*H*W * E[k^2] / 4`` with ``E[k^2] = 255 * 511 / 6``, drawing nothing.
    """
    c, h, w = shape
    if draw_noise:
        noise = np.random.randint(0, 256, (h, w, c))
        return float(np.linalg.norm(noise) / 2.0) ** 2
    return c * h * w * (255.0 * 511.0 / 6.0) / 4.0


class _Regulariser(StepHook):
    def __init__(self, weight: Schedule, scale: float, grad_normalize: bool) -> None:
        self.weight, self.scale, self.grad_normalize = weight, scale, grad_normalize

    def _weighted(self, t: int, loss: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
        loss, grad = loss / self.scale, grad / self.scale
        if self.grad_normalize:
            grad = normalise_per_image(grad)
        lamda = self.weight(t)
        return lamda * loss, lamda * grad


class PNormRegulariser(_Regulariser):
    """``lamda * sum |x|^p / scale`` (the original's ``use_p_norm_reg``)."""

    def __init__(self, p: float, weight: Schedule, scale: float, grad_normalize: bool) -> None:
        super().__init__(weight, scale, grad_normalize)
        self.p = p

    def regularise(self, t, v):
        av = v.abs()
        loss = (av ** self.p).flatten(1).sum(1)
        grad = self.p * av ** (self.p - 1) * torch.sign(v)
        return self._weighted(t, loss, grad)


class TVRegulariser(_Regulariser):
    """``lamda * TV_beta(x) / scale`` (the original's ``use_TV_norm_reg``; see
    :func:`icnn_torch.utils.TV_norm`)."""

    def __init__(self, beta: float, weight: Schedule, scale: float, grad_normalize: bool) -> None:
        super().__init__(weight, scale, grad_normalize)
        self.beta = float(beta)

    def regularise(self, t, v):
        vr = v.detach().requires_grad_(True)
        with torch.enable_grad():
            per_image = torch.stack([tv_norm_torch(vr[b], self.beta) for b in range(v.shape[0])])
            (grad,) = torch.autograd.grad(per_image.sum(), vr)
        return self._weighted(t, per_image.detach(), grad)


class _EveryN(StepHook):
    def __init__(self, every: int, pct: Schedule) -> None:
        self.every, self.pct = int(every), pct

    def due(self, t: int) -> bool:
        return (t + 1) % self.every == 0


class ClipExtreme(_EveryN):
    """Every N iterations, clip each image to its ``pct/2`` and ``100 - pct/2``
    percentiles (``clip_extreme``)."""

    def after_step(self, t, v, delta, grad):
        if self.due(t):
            pct = _pct(self.pct(t))
            lo = _per_image_quantile(v, pct / 200.0)
            hi = _per_image_quantile(v, 1.0 - pct / 200.0)
            v = torch.minimum(torch.maximum(v, _bcast(lo, v)), _bcast(hi, v))
        return v, delta


def _zero_below_percentile(v: Tensor, norm: Tensor, pct: float) -> Tensor:
    threshold = _per_image_quantile(norm, _pct(pct) / 100.0)
    return v * (norm >= _bcast(threshold, norm)).unsqueeze(1)


class ClipSmallNorm(_EveryN):
    """Every N iterations, zero the pixels whose RGB norm is below its ``pct`` percentile
    (``clip_small_norm``)."""

    def after_step(self, t, v, delta, grad):
        if self.due(t):
            v = _zero_below_percentile(v, v.norm(dim=1), self.pct(t))
        return v, delta


class ClipSmallContribution(_EveryN):
    """Every N iterations, zero the pixels whose RGB norm of ``img * grad`` is below its
    ``pct`` percentile (``clip_small_contribution``)."""

    def after_step(self, t, v, delta, grad):
        if self.due(t):
            v = _zero_below_percentile(v, (v * grad).norm(dim=1), self.pct(t))
        return v, delta


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _symmetric_pad(x: Tensor, r: int, dim: int) -> Tensor:
    """Half-sample symmetric padding (scipy.ndimage's 'reflect': d c b a | a b c d)."""
    n = x.shape[dim]
    if r == 0:
        return x
    if r > n:
        raise ValueError(f"blur radius {r} exceeds the image size {n}")
    left = x.narrow(dim, 0, r).flip(dim)
    right = x.narrow(dim, n - r, r).flip(dim)
    return torch.cat([left, x, right], dim=dim)


def gaussian_blur_torch(img: Tensor, sigma: float) -> Tensor:
    """Blur each channel of (B, C, H, W) images like ``scipy.ndimage.gaussian_filter``.

    Same kernel (truncated at 4 sigma) and boundary ('reflect'); ``sigma <= 0`` is a no-op.
    """
    if sigma <= 0:
        return img
    k = torch.as_tensor(_gaussian_kernel(sigma), dtype=img.dtype, device=img.device)
    r = (k.numel() - 1) // 2
    c = img.shape[1]
    kh = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    out = F.conv2d(_symmetric_pad(img, r, 2), kh, groups=c)
    return F.conv2d(_symmetric_pad(out, r, 3), kw, groups=c)


class GaussianBlur(StepHook):
    """Blur each channel after the decay, sigma following its schedule (``image_blur``)."""

    def __init__(self, sigma: Schedule) -> None:
        self.sigma = sigma

    def finish(self, t, v):
        return gaussian_blur_torch(v, self.sigma(t))


class Bounds(StepHook):
    """Clip the variable to [lower, upper] after the decay (either may be None): the
    generator input's ``feat_lower_bound`` / ``feat_upper_bound``."""

    def __init__(self, lower: Optional[Tensor], upper: Optional[Tensor]) -> None:
        self.lower, self.upper = lower, upper

    def finish(self, t, v):
        if self.lower is not None:
            v = torch.maximum(v, self.lower)
        if self.upper is not None:
            v = torch.minimum(v, self.upper)
        return v


def pixel_gd_hooks(shape: tuple[int, int, int], iter_n: int, *, grad_normalize: bool,
                   image_jitter: bool, jitter_size: int, jitter_rolls_momentum: bool,
                   image_blur: bool, sigma_start: float, sigma_end: float,
                   use_p_norm_reg: bool, p: float, lamda_start: float, lamda_end: float,
                   use_TV_norm_reg: bool, TVbeta: float, TVlamda_start: float,
                   TVlamda_end: float, regulariser_noise: bool,
                   clip_extreme: bool, clip_extreme_every: int, e_pct_start: float,
                   e_pct_end: float, clip_small_norm: bool, clip_small_norm_every: int,
                   n_pct_start: float, n_pct_end: float, clip_small_contribution: bool,
                   clip_small_contribution_every: int, c_pct_start: float, c_pct_end: float,
                   rng: Optional[np.random.Generator] = None) -> list[StepHook]:
    """The hooks of ``icnn_gd``'s options, in the original's order.

    The regulariser scale is computed first (drawing its noise image when
    ``regulariser_noise``), as the original does before it draws a random start image.
    """
    sched: Callable[[float, float], Schedule] = lambda a, b: Schedule(a, b, iter_n)  # noqa: E731
    scale = regulariser_scale(shape, draw_noise=regulariser_noise)
    hooks: list[StepHook] = []
    if use_p_norm_reg:
        hooks.append(PNormRegulariser(p, sched(lamda_start, lamda_end), scale, grad_normalize))
    if use_TV_norm_reg:
        hooks.append(TVRegulariser(TVbeta, sched(TVlamda_start, TVlamda_end), scale,
                                   grad_normalize))
    if clip_extreme:
        hooks.append(ClipExtreme(clip_extreme_every, sched(e_pct_start, e_pct_end)))
    if clip_small_norm:
        hooks.append(ClipSmallNorm(clip_small_norm_every, sched(n_pct_start, n_pct_end)))
    if clip_small_contribution:
        hooks.append(ClipSmallContribution(clip_small_contribution_every,
                                           sched(c_pct_start, c_pct_end)))
    if image_jitter:  # after the clips: they act on the rolled image, then it rolls back
        hooks.append(Jitter(jitter_size, rng, rolls_momentum=jitter_rolls_momentum))
    if image_blur:
        hooks.append(GaussianBlur(sched(sigma_start, sigma_end)))
    return hooks
