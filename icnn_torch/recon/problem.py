"""Plumbing shared by the four ``reconstruct_image`` front ends (not public API)."""

from __future__ import annotations

import numpy as np
import scipy.io
import torch
from torch import Tensor

from .features import net_device
from ._util import atomic_output
from .reporting import Reporter, save_snapshots, snapshot_dirs
from .targets import build_feature_loss

__all__ = ["Setup", "setup", "initial_pixels", "to_rgb_images", "save_mat_atomic",
           "snapshot_writer", "snapshot_dirs"]


class Setup:
    """What every engine derives from its inputs before the loop."""

    def __init__(self, objective, batched, device, img_mean, input_size):
        self.objective = objective
        self.batched = batched
        self.device = device
        self.img_mean = img_mean
        self.input_size = input_size

    @property
    def batch(self) -> int:
        return self.objective.batch_size

    def reporter(self, total: int, disp_every, desc: str) -> Reporter:
        return Reporter(total, self.batch, disp_every, desc, self.device)

    def unbatch(self, arr: np.ndarray) -> np.ndarray:
        return arr if self.batched else arr[0]


def setup(features, net, device, layer_weight, channel, mask, loss_type) -> Setup:
    device = net_device(net) if device is None else torch.device(device)
    objective, batched = build_feature_loss(features, net, device, layer_weight=layer_weight,
                                            channel=channel, mask=mask, loss_type=loss_type)
    img_mean = np.asarray(net.img_mean, dtype=np.float32).reshape(3)
    return Setup(objective, batched, device, img_mean, tuple(net.input_size))


def initial_pixels(initial_image, s: Setup) -> tuple[Tensor, np.ndarray]:
    """Caffe-space (B, 3, H, W) start images, and the RGB images they came from.

    ``initial_image``: HxWx3 RGB 0..255 (shared by the batch), (B, H, W, 3), or None for
    uniform random integers 0..255 per image (numpy's global generator, as the original).
    """
    h, w = s.input_size
    if initial_image is None:
        rgb = np.random.randint(0, 256, (s.batch, h, w, 3)).astype(np.float32)
    else:
        rgb = np.asarray(initial_image, dtype=np.float32)
        if rgb.shape == (h, w, 3):
            rgb = np.broadcast_to(rgb, (s.batch, h, w, 3))
        elif rgb.shape != (s.batch, h, w, 3):
            raise ValueError(f"initial_image has shape {rgb.shape}; expected ({h}, {w}, 3) or "
                             f"({s.batch}, {h}, {w}, 3), RGB 0..255")
    bgr = rgb[..., ::-1].transpose(0, 3, 1, 2) - s.img_mean.reshape(1, 3, 1, 1)
    return torch.as_tensor(np.ascontiguousarray(bgr), device=s.device), rgb


def to_rgb_images(images: Tensor | np.ndarray, img_mean: np.ndarray) -> np.ndarray:
    """Caffe-space (B, 3, H, W) -> RGB (B, H, W, 3) float32 with the mean added, not clipped."""
    arr = images.detach().float().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    arr = arr + img_mean.reshape(1, 3, 1, 1)
    return np.ascontiguousarray(arr[:, ::-1].transpose(0, 2, 3, 1)).astype(np.float32)


def save_mat_atomic(path: str, variables: dict) -> None:
    """scipy.io.savemat through a temp file and rename."""
    with atomic_output(path) as tmp:
        scipy.io.savemat(tmp, variables)


def snapshot_writer(dirs, every: int, img_mean: np.ndarray, offset: int):
    """A callback writing ``%05d.jpg`` snapshots every ``every`` steps (numbered k + offset)."""
    if dirs is None:
        return None

    def write(k: int, images: Tensor) -> None:
        n = k + offset
        if n % every == 0:
            save_snapshots(images, dirs, f"{n:05d}.jpg", img_mean)

    return write

