"""Progress display and intermediate snapshots of the reconstruction loops.

Display (``disp_every`` / ``disp``):

- an int N: print the original's ``iter=N; err=V;`` line every N iterations (for a batch,
  ``err=`` lists one value per image, comma separated);
- ``None`` (default): a progress bar when standard error is a terminal, else the
  ``iter=`` lines every iteration, as the original printed them to logs;
- ``0`` / ``False``: silent.

Losses are kept on the device and only copied to the host when a line is printed, a
snapshot is written, or the run ends, so a GPU loop is not synchronised every step.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np
import PIL.Image
import torch
from torch import Tensor

from .jobs import atomic_output
from .utils import img_deprocess, normalise_img

__all__ = ["Reporter", "save_image_atomic", "snapshot_dirs"]


def save_image_atomic(img_uint8: np.ndarray, path: str) -> None:
    """Write an HxWx3 uint8 image (format from the suffix) via a temp file and rename."""
    with atomic_output(path) as tmp:
        PIL.Image.fromarray(img_uint8).save(tmp, format=_format(path))


def _format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(ext, "PNG")


def snapshot_dirs(save_intermediate: bool, path: str | Sequence[str] | None, batch: int,
                  engine: str) -> list[str] | None:
    """One snapshot folder per image (created), or None when not saving.

    ``path`` may be one folder (a batch gets ``image-000``, ``image-001``... inside it) or
    one folder per image. The default, as in the original, is
    ``./recon_img_by_<engine>_<timestamp>``.
    """
    if not save_intermediate:
        return None
    if path is None:
        from datetime import datetime
        path = os.path.join(".", f"recon_img_by_{engine}_{datetime.now():%Y%m%dT%H%M%S}")
    if isinstance(path, (str, os.PathLike)):
        dirs = [os.fspath(path)] if batch == 1 else \
            [os.path.join(os.fspath(path), f"image-{i:03d}") for i in range(batch)]
    else:
        dirs = [os.fspath(p) for p in path]
        if len(dirs) != batch:
            raise ValueError(f"{len(dirs)} save_intermediate_path entries for a batch of {batch}")
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    return dirs


class Reporter:
    """Collects per-iteration losses of a batch and shows progress.

    Parameters
    ----------
    total : int
        Expected number of iterations (for the bar); losses may exceed it (L-BFGS records
        one per function evaluation).
    batch : int
    disp_every : int, bool or None
        See the module docstring.
    desc : str
        Bar label.
    device : torch.device
    """

    def __init__(self, total: int, batch: int, disp_every, desc: str, device: torch.device) -> None:
        self.total = int(total)
        self.batch = batch
        self._losses: list[Tensor] = []
        self._bar = None
        if disp_every is None:
            if _stderr_is_terminal():
                from tqdm.auto import tqdm
                self._bar = tqdm(total=self.total, desc=desc, leave=False, dynamic_ncols=True)
                self.disp_every = 0
            else:
                self.disp_every = 1
        else:
            self.disp_every = int(disp_every)
        self._bar_every = max(1, self.total // 50)

    def record(self, loss: Tensor) -> None:
        """Store one (B,) loss (kept on its device)."""
        self._losses.append(loss.detach().reshape(self.batch))

    def show(self, iteration: int, err: Tensor) -> None:
        """Print ``iter=N; err=V;`` when due, advance the bar (1-based ``iteration``)."""
        if self.disp_every and iteration % self.disp_every == 0:
            values = err.detach().reshape(-1).tolist()
            text = ",".join(f"{v:g}" for v in values)
            print(f"iter={iteration}; err={text};", flush=True)
        if self._bar is not None:
            self._bar.update(1)
            if iteration % self._bar_every == 0:
                self._bar.set_postfix(err=f"{float(err.reshape(-1)[0]):.4g}", refresh=False)

    def losses(self) -> np.ndarray:
        """All recorded losses, shape (n_records, B), float32."""
        if not self._losses:
            return np.zeros((0, self.batch), dtype=np.float32)
        return torch.stack(self._losses).float().cpu().numpy()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def save_snapshots(images: Tensor, dirs: Sequence[str], name: str, img_mean: np.ndarray,
                   normalise: bool = True) -> None:
    """Write each Caffe-space image of a (B, 3, H, W) batch as ``dirs[b]/name``."""
    arr = images.detach().float().cpu().numpy()
    for b, folder in enumerate(dirs):
        rgb = img_deprocess(arr[b], img_mean)
        out = normalise_img(rgb) if normalise else np.uint8(np.clip(rgb, 0, 255))
        save_image_atomic(out, os.path.join(folder, name))
