"""Parametrisations of the reconstructed image, and their per-step operations.

- pixels: the variable is the Caffe-space image itself, (B, 3, H, W), BGR, 0..255 scale,
  mean subtracted; ``icnn_gd`` blurs, jitters, clips and regularises it
  (:class:`PixelGDHooks`), ``icnn_lbfgs`` boxes it to [-mean_c, 255 - mean_c];
- generator latent: the variable is the generator input z, (B, 4096); the image is
  ``center_crop(G(z))`` (:class:`GeneratorRender`), z is clipped to its bounds
  (:class:`BoundsHooks`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import center_crop
from .optim_gd import GDHooks, Schedule, normalise_per_image
from .utils import tv_norm_torch

__all__ = ["GeneratorRender", "PixelGDHooks", "BoundsHooks", "gaussian_blur_torch",
           "expand_bound", "pixel_bounds", "UNIFORM_PIXEL_MEAN_SQUARE"]

#: E[k^2] for k uniform on the integers 0..255: (255 * 511) / 6.
UNIFORM_PIXEL_MEAN_SQUARE = 255.0 * 511.0 / 6.0


class GeneratorRender:
    """z (B, 4096) -> center_crop(G(z)) (B, 3, h, w), the image the encoder sees."""

    def __init__(self, generator: nn.Module, size: Sequence[int]) -> None:
        self.generator = generator
        self.size = tuple(size)

    def __call__(self, z: Tensor) -> Tensor:
        return center_crop(self.generator(z), self.size)


def pixel_bounds(img_mean: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel box [-mean_c, 255 - mean_c] of a 3xHxW Caffe-space image, flat float64."""
    c, h, w = shape
    lower = np.repeat(-np.asarray(img_mean, dtype=np.float64).reshape(3), h * w)
    return lower, lower + 255.0


def expand_bound(bound, batch: int, size: int, device: torch.device, name: str) -> Tensor | None:
    """A scalar, (size,) or (batch, size) bound as a (batch or 1, size) tensor; None stays None."""
    if bound is None:
        return None
    arr = np.asarray(bound, dtype=np.float32)
    if arr.size == 1:
        arr = np.full((1, size), float(arr.reshape(-1)[0]), dtype=np.float32)
    elif arr.size == size:
        arr = arr.reshape(1, size)
    elif arr.size == batch * size:
        arr = arr.reshape(batch, size)
    else:
        raise ValueError(f"{name} has shape {arr.shape}; expected a scalar, ({size},) or ({batch}, {size})")
    return torch.as_tensor(arr, device=device)


class BoundsHooks(GDHooks):
    """Clip the variable to [lower, upper] after each step (either may be None)."""

    def __init__(self, lower: Tensor | None, upper: Tensor | None) -> None:
        self.lower, self.upper = lower, upper

    def finish(self, t: int, v: Tensor) -> Tensor:
        if self.lower is not None:
            v = torch.maximum(v, self.lower)
        if self.upper is not None:
            v = torch.minimum(v, self.upper)
        return v


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


def _per_image_quantile(values: Tensor, q: float) -> Tensor:
    return torch.quantile(values.flatten(1), q, dim=1, interpolation="linear")


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


class PixelGDHooks(GDHooks):
    """The optional image operations of ``icnn_gd`` (SPEC section 5.2), batched.

    Fixed relative to the original: the momentum buffer is un-jittered by the same roll
    as the image; TV regularisation works; the regulariser scale uses the expected norm of
    a uniform random image instead of drawing one.
    """

    def __init__(self, shape: tuple[int, int, int], iter_n: int, *, grad_normalize: bool,
                 image_jitter: bool, jitter_size: int, image_blur: bool, sigma: Schedule,
                 use_p_norm_reg: bool, p: float, lamda: Schedule,
                 use_TV_norm_reg: bool, TVbeta: float, TVlamda: Schedule,
                 clip_extreme: bool, clip_extreme_every: int, e_pct: Schedule,
                 clip_small_norm: bool, clip_small_norm_every: int, n_pct: Schedule,
                 clip_small_contribution: bool, clip_small_contribution_every: int, c_pct: Schedule,
                 rng: np.random.Generator | None = None) -> None:
        self.__dict__.update({k: v for k, v in locals().items() if k != "self"})
        c, h, w = shape
        # ||uniform random 0..255 image|| / 2, in expectation.
        self.img_norm0 = math.sqrt(c * h * w * UNIFORM_PIXEL_MEAN_SQUARE) / 2.0
        self._shift = (0, 0)

    def before(self, t, v, delta):
        if not self.image_jitter:
            return v, delta
        draw = self.rng.integers if self.rng is not None else np.random.randint
        ox, oy = (int(s) for s in draw(-self.jitter_size, self.jitter_size + 1, 2))
        self._shift = (ox, oy)
        return torch.roll(v, (oy, ox), (-2, -1)), torch.roll(delta, (oy, ox), (-2, -1))

    def regularise(self, t, v):
        terms = []
        scale = self.img_norm0 ** 2
        if self.use_p_norm_reg:
            av = v.abs()
            loss = (av ** self.p).flatten(1).sum(1) / scale
            grad = self.p * av ** (self.p - 1) * torch.sign(v) / scale
            terms.append((self.lamda(t), loss, grad))
        if self.use_TV_norm_reg:
            vr = v.detach().requires_grad_(True)
            with torch.enable_grad():
                per_image = torch.stack([tv_norm_torch(vr[b], float(self.TVbeta)) for b in range(v.shape[0])])
                (grad,) = torch.autograd.grad(per_image.sum(), vr)
            terms.append((self.TVlamda(t), per_image.detach() / scale, grad / scale))
        if not terms:
            return None
        loss_sum, grad_sum = 0.0, 0.0
        for weight, loss, grad in terms:
            if self.grad_normalize:
                grad = normalise_per_image(grad)
            loss_sum = loss_sum + weight * loss
            grad_sum = grad_sum + weight * grad
        return loss_sum, grad_sum

    def after_step(self, t, v, delta, grad):
        if self.clip_extreme and (t + 1) % self.clip_extreme_every == 0:
            pct = min(max(self.e_pct(t), 0.0), 100.0)
            lo = _per_image_quantile(v, pct / 200.0)
            hi = _per_image_quantile(v, 1.0 - pct / 200.0)
            v = torch.minimum(torch.maximum(v, _bcast(lo, v)), _bcast(hi, v))
        if self.clip_small_norm and (t + 1) % self.clip_small_norm_every == 0:
            v = self._zero_small(v, v.norm(dim=1), self.n_pct(t))
        if self.clip_small_contribution and (t + 1) % self.clip_small_contribution_every == 0:
            v = self._zero_small(v, (v * grad).norm(dim=1), self.c_pct(t))
        if self.image_jitter:
            ox, oy = self._shift
            v = torch.roll(v, (-oy, -ox), (-2, -1))
            delta = torch.roll(delta, (-oy, -ox), (-2, -1))
        return v, delta

    @staticmethod
    def _zero_small(v: Tensor, norm: Tensor, pct: float) -> Tensor:
        pct = min(max(pct, 0.0), 100.0)
        threshold = _per_image_quantile(norm, pct / 100.0)
        keep = (norm >= _bcast(threshold, norm)).unsqueeze(1)
        return v * keep

    def finish(self, t, v):
        if self.image_blur:
            v = gaussian_blur_torch(v, self.sigma(t))
        return v
