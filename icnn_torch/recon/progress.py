"""Progress display and intermediate snapshots of the reconstruction loops.

Display (``disp_every`` / ``disp``):

- an int N: print the original's ``iter=N; err=V;`` line every N iterations (for a batch,
  ``err=`` lists one value per image, comma separated);
- ``None`` (default): a progress bar when standard error is a terminal, else the
  ``iter=`` lines every iteration, as the original printed them to logs;
- ``0`` / ``False``: silent.

Losses are kept on the device; one is copied to the host only when a line (or a bar
postfix) is due, and all of them when the run ends. Showing progress never blocks a
CUDA loop: a due (B,) loss is copied to pinned host memory without waiting and a CUDA
event is recorded after the copy; its line is printed by a later :meth:`Reporter.show`
call once the event has completed, and the lines still outstanding when the loop ends
are printed by :meth:`Reporter.losses` or :meth:`Reporter.close`. Lines therefore may
appear a few iterations late on a GPU, but always in iteration order and with the same
text as an immediate print. On the CPU (or for a loss already on the host) they are
printed at once. The bar advances every iteration and its postfix shows the latest
loss that has reached the host.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import PIL.Image
import torch
from torch import Tensor

from ._util import atomic_output
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


class _CopyEvent(Protocol):
    """What :class:`Reporter` needs from a marker of a pending device-to-host copy
    (:class:`torch.cuda.Event` has both methods)."""

    def query(self) -> bool:
        """Whether the copy has completed (must not block)."""

    def synchronize(self) -> None:
        """Wait until the copy has completed."""


#: ``start_copy(values) -> (host_values, event)``: begin copying a detached 1-D loss to
#: the host; ``event`` is None when ``host_values`` can be read at once.
_StartCopy = Callable[[Tensor], tuple[Tensor, _CopyEvent | None]]


def _start_host_copy(values: Tensor) -> tuple[Tensor, _CopyEvent | None]:
    """Begin copying a 1-D tensor to the host without blocking the calling thread.

    Parameters
    ----------
    values : Tensor
        Detached, 1-D.

    Returns
    -------
    host : Tensor
        On the CPU. For a CUDA tensor: a pinned buffer that the copy fills
        asynchronously (readable once ``event`` has completed); otherwise a copy that is
        complete on return.
    event : torch.cuda.Event or None
        Recorded on the tensor's current stream after the copy; None when ``host`` is
        ready now.
    """
    if values.device.type != "cuda":
        # The CPU: a private copy (the caller may reuse its tensor). Other devices: a
        # blocking transfer, as before.
        return values.detach().to("cpu", copy=True), None
    with torch.cuda.device(values.device):
        host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        host.copy_(values, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(values.device))
    return host, event


@dataclass
class _Pending:
    """A loss on its way to the host, and what to show with it."""

    iteration: int
    host: Tensor  # (B,), on the CPU, filled once ``event`` has completed
    event: _CopyEvent | None  # None: ready
    line: bool  # print an ``iter=`` line
    postfix: bool  # show it on the bar

    def ready(self) -> bool:
        return self.event is None or bool(self.event.query())

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()


class Reporter:
    """Collects per-iteration losses of a batch and shows progress.

    :meth:`show` never waits for the device: a due line is printed once the loss has
    reached the host (see the module docstring), so on a GPU it may appear a few
    iterations late, but always in order, and by :meth:`losses` / :meth:`close` at the
    latest.

    Parameters
    ----------
    total : int
        Expected number of iterations (for the bar); losses may exceed it (L-BFGS records
        one per function evaluation).
    batch : int
        Number of images B; every recorded loss has B values.
    disp_every : int, bool or None
        See the module docstring.
    desc : str
        Bar label.
    device : torch.device
        Device of the losses.
    start_copy : callable, optional
        Internal: how a due loss is sent to the host (:func:`_start_host_copy`, the
        default); tests substitute one whose events they complete by hand.
    """

    def __init__(self, total: int, batch: int, disp_every: int | bool | None, desc: str,
                 device: torch.device, *, start_copy: _StartCopy | None = None) -> None:
        self.total = int(total)
        self.batch = batch
        self._losses: list[Tensor] = []
        self._pending: deque[_Pending] = deque()
        self._start_copy: _StartCopy = _start_host_copy if start_copy is None else start_copy
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
        """Show the (B,) error of a 1-based ``iteration``: an ``iter=N; err=V;`` line every
        ``disp_every`` iterations and the bar, without waiting for the device.

        A due line (or bar postfix) starts the copy of ``err`` to the host; every call
        then prints, in order, the pending lines whose copies have completed, stopping at
        the first that has not.
        """
        line = bool(self.disp_every) and iteration % self.disp_every == 0
        postfix = self._bar is not None and iteration % self._bar_every == 0
        if line or postfix:
            host, event = self._start_copy(err.detach().reshape(-1))
            self._pending.append(_Pending(iteration, host, event, line, postfix))
        self._flush(wait=False)
        if self._bar is not None:
            self._bar.update(1)

    def losses(self) -> np.ndarray:
        """All recorded losses, shape (n_records, B), float32.

        Prints the lines still pending first (waiting for their copies).
        """
        self._flush(wait=True)
        if not self._losses:
            return np.zeros((0, self.batch), dtype=np.float32)
        return torch.stack(self._losses).float().cpu().numpy()

    def close(self) -> None:
        """Print the lines still pending (waiting for their copies) and close the bar."""
        try:
            self._flush(wait=True)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _flush(self, wait: bool) -> None:
        """Show pending entries in order: all of them (``wait``), or up to the first whose
        copy has not completed."""
        while self._pending:
            entry = self._pending[0]
            if wait:
                entry.wait()
            elif not entry.ready():
                break
            self._pending.popleft()
            self._emit(entry)

    def _emit(self, entry: _Pending) -> None:
        values = entry.host.tolist()
        if entry.line:
            text = ",".join(f"{v:g}" for v in values)
            print(f"iter={entry.iteration}; err={text};", flush=True)
        if entry.postfix and self._bar is not None:
            self._bar.set_postfix(err=f"{values[0]:.4g}", refresh=False)


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
