"""Parametrisations of the reconstructed image: what is optimised, its start and its image.

- **pixels** (``icnn_gd``, ``icnn_lbfgs``): the variable is the Caffe-space image itself,
  (B, 3, H, W), BGR, 0..255 scale, mean subtracted; L-BFGS-B boxes it to
  [-mean_c, 255 - mean_c] (:func:`pixel_bounds`);
- **generator latent** (``icnn_dgn_gd``, ``icnn_dgn_lbfgs``): the variable is the generator
  input z, (B, 4096); the image is ``center_crop(G(z))`` (:class:`GeneratorRender`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..nets.generator import center_crop

__all__ = ["GeneratorRender", "initial_pixels", "initial_latent", "pixel_bounds",
           "expand_bound", "latent_bounds", "caffe_to_rgb"]


class GeneratorRender:
    """z (B, 4096) -> center_crop(G(z)) (B, 3, h, w), the image the encoder sees."""

    def __init__(self, generator: nn.Module, size: Sequence[int]) -> None:
        self.generator = generator
        self.size = tuple(size)

    def __call__(self, z: Tensor) -> Tensor:
        # z may be float64 (kept so by float64 bounds, as the original's numpy z); the
        # generator computes in float32, as Caffe's blobs do
        return center_crop(self.generator(z.to(torch.float32)), self.size)


def initial_pixels(initial_image, batch: int, size: Sequence[int], img_mean: np.ndarray,
                   device: torch.device) -> tuple[Tensor, np.ndarray]:
    """Caffe-space (B, 3, H, W) float32 start images, and the RGB images they came from.

    Parameters
    ----------
    initial_image : array-like or None
        HxWx3 RGB 0..255 (shared by the batch; a PIL image works too), (B, H, W, 3), or
        None for uniform random integers 0..255 per image, drawn from numpy's global
        generator (``randint(0, 256, (H, W, 3))`` per image, as the original).
    """
    h, w = size
    if initial_image is None:
        rgb = np.random.randint(0, 256, (batch, h, w, 3))
    else:
        rgb = np.asarray(initial_image)
        if rgb.shape == (h, w, 3):
            rgb = np.broadcast_to(rgb, (batch, h, w, 3))
        elif rgb.shape != (batch, h, w, 3):
            raise ValueError(f"initial_image has shape {rgb.shape}; expected ({h}, {w}, 3) or "
                             f"({batch}, {h}, {w}, 3), RGB 0..255")
    bgr = rgb[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) \
        - np.asarray(img_mean, np.float32).reshape(1, 3, 1, 1)
    return torch.as_tensor(np.ascontiguousarray(bgr), device=device), rgb


def initial_latent(initial_gen_feat, batch: int, size: int, device: torch.device) -> Tensor:
    """(B, size) float32 start latents from a (size,) / (B, size) array, or N(0, 1) from
    numpy's global generator when None (as the original)."""
    if initial_gen_feat is None:
        z = np.random.normal(0, 1, (batch, size)).astype(np.float32)
    else:
        z = np.asarray(initial_gen_feat, dtype=np.float32)
        if z.size == size:
            z = np.broadcast_to(z.reshape(1, size), (batch, size))
        elif z.size == batch * size:
            z = z.reshape(batch, size)
        else:
            raise ValueError(f"initial_gen_feat has shape {z.shape}; expected ({size},) or "
                             f"({batch}, {size})")
    return torch.tensor(np.ascontiguousarray(z), device=device)


def pixel_bounds(img_mean: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel box [-mean_c, 255 - mean_c] of a 3xHxW Caffe-space image, flat float64."""
    c, h, w = shape
    lower = np.repeat(-np.asarray(img_mean, dtype=np.float64).reshape(3), h * w)
    return lower, lower + 255.0


def expand_bound(bound, batch: int, size: int, device: torch.device, name: str) -> Optional[Tensor]:
    """A scalar, (size,) or (batch, size) bound as a (batch or 1, size) tensor; None stays None.

    A scalar becomes float32; an array keeps its float precision (float64 from
    ``np.loadtxt``), so that clipping the float32 z promotes it as numpy does in the
    original (a float64 bound array makes z float64).
    """
    if bound is None:
        return None
    if np.ndim(bound) == 0:
        return torch.full((1, size), float(bound), dtype=torch.float32, device=device)
    arr = np.asarray(bound)
    arr = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32, copy=False)
    if arr.size == 1:
        arr = np.full((1, size), arr.reshape(-1)[0], dtype=arr.dtype)
    elif arr.size == size:
        arr = arr.reshape(1, size)
    elif arr.size == batch * size:
        arr = arr.reshape(batch, size)
    else:
        raise ValueError(f"{name} has shape {arr.shape}; expected a scalar, ({size},) or "
                         f"({batch}, {size})")
    return torch.as_tensor(arr, device=device)


def latent_bounds(gen_feat_bounds, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) float64 arrays of ``icnn_dgn_lbfgs``'s ``gen_feat_bounds``: (min, max)
    pairs (None for an open side), a (size, 2) array, one pair for all, or None for
    (0, 100) each (the original's default)."""
    if gen_feat_bounds is None:
        return np.zeros(size), np.full(size, 100.0)
    if isinstance(gen_feat_bounds, np.ndarray):
        pairs = np.asarray(gen_feat_bounds, np.float64)
    else:
        pairs = np.array([[(-np.inf if lo is None else lo), (np.inf if hi is None else hi)]
                          for lo, hi in gen_feat_bounds], dtype=np.float64)
    if pairs.shape == (2,):
        pairs = np.broadcast_to(pairs, (size, 2))
    if pairs.shape != (size, 2):
        raise ValueError(f"gen_feat_bounds has shape {pairs.shape}; expected {size} (min, max) pairs")
    return np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])


def caffe_to_rgb(images, img_mean: np.ndarray) -> np.ndarray:
    """Caffe-space (B, 3, H, W) -> RGB (B, H, W, 3) with the mean added, not clipped.

    The dtype is that of the input's float arithmetic with the float32 mean: float32 for a
    float32 tensor, float64 for scipy's float64 ``res.x`` (as the original's
    ``img_deprocess``).
    """
    arr = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    arr = arr + np.asarray(img_mean, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray(arr[:, ::-1].transpose(0, 2, 3, 1))
