"""Progress of the reconstruction loops: the loss record, lines, a bar.

Display (``disp_every`` / ``disp``):

- an int N: print the original's ``iter=N; err=V;`` line every N iterations (for a batch,
  ``err=`` lists one value per image, comma separated); ``True`` is 1;
- ``None``: a progress bar on an interactive terminal (one that has a window size); it
  stays on screen at the end, showing the final loss. Elsewhere (logs, pipes, a terminal
  without a size) the ``iter=`` lines every iteration, as the original printed them;
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

A loss that has become NaN or infinite raises :class:`~icnn_torch.errors.NonFiniteError`
as soon as it reaches the host: at its line or bar postfix, or at the end of the run.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._util import is_terminal
from ..errors import NonFiniteError

__all__ = ["Reporter", "non_finite_message"]


def non_finite_message(what: str, value, where: str) -> str:
    """The message of a reconstruction stopped by a non-finite loss or gradient."""
    return (f"the {what} became {value} at {where}; nothing is saved for this "
            "reconstruction. Likely causes: damaged network weights, or target features "
            "with NaN, infinite or huge values")


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
    start_copy : callable, optional
        Internal: how a due loss is sent to the host (:func:`_start_host_copy`, the
        default); tests substitute one whose events they complete by hand.
    """

    def __init__(self, total: int, batch: int, disp_every: int | bool | None, desc: str,
                 *, start_copy: _StartCopy | None = None) -> None:
        self.total = int(total)
        self.batch = batch
        self._losses: list[Tensor] = []
        self._pending: deque[_Pending] = deque()
        self._start_copy: _StartCopy = _start_host_copy if start_copy is None else start_copy
        self._bar = None
        if disp_every is None:
            if _interactive_terminal():
                self._bar = tqdm(total=self.total, desc=desc, leave=True, dynamic_ncols=True)
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

        Raises
        ------
        NonFiniteError
            A recorded loss is NaN or infinite.
        """
        self._flush(wait=True)
        if not self._losses:
            return np.zeros((0, self.batch), dtype=np.float32)
        losses = torch.stack(self._losses).float().cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(losses).all(axis=1))
        if bad.size:
            raise NonFiniteError(non_finite_message("loss", losses[bad[0]].tolist(),
                                                    f"iteration {bad[0] + 1}"))
        return losses

    def close(self) -> None:
        """Print the lines still pending (waiting for their copies) and close the bar,
        leaving it on screen with the last loss."""
        try:
            self._flush(wait=True)
        finally:
            if self._bar is not None:
                if self._losses:
                    self._bar.set_postfix(err=_bar_text(self._losses[-1].tolist()), refresh=False)
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
            self._bar.set_postfix(err=_bar_text(values), refresh=False)
        if not all(np.isfinite(values)):
            raise NonFiniteError(non_finite_message("loss", values, f"iteration {entry.iteration}"))


def _bar_text(values) -> str:
    """The bar's loss: that of the first image of the batch."""
    return f"{values[0]:.4g}"


def _interactive_terminal() -> bool:
    """Whether standard error is a terminal that can show a bar (it has a window size)."""
    if not is_terminal(sys.stderr):
        return False
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False


