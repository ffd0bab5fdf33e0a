"""Performance and precision settings around the reconstruction loops.

- :func:`retain_freed_memory`: process-wide malloc settings for CPU runs (opt-in);
- :func:`full_float32`: what the engines wrap their CUDA loops in, so that a GPU computes
  in float32 as the CPU does (PyTorch lets cuDNN use TF32 by default).

Allocator
---------

A reconstruction allocates the same large tensors every iteration (features, their
gradients, the loss differences: 12.8 MB per conv1 map and image, about 1 GB per iteration
for a batch of 8). glibc's default malloc serves allocations above a threshold (at most
32 MiB) with fresh ``mmap`` pages and returns freed heap tops to the kernel, so every
iteration page-faults its memory in again, zero-filled by the kernel. :func:`retain_freed_memory`
turns both off for the process: freed memory stays in the heap and is reused, with no page
faults after the first iteration. Numbers are unchanged (only where memory comes from).

The figure scripts call it for CPU runs; library users opt in by calling it once. It is
process-wide and cannot be undone (glibc gives no way back to its adaptive thresholds), so
a library function never calls it on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from typing import Iterator

import torch

__all__ = ["retain_freed_memory", "GLIBC_MALLOC_SETTINGS", "full_float32"]

# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: What :func:`retain_freed_memory` sets: no mmap-backed allocations, no trimming of the
#: heap top (INT_MAX bytes). The environment equivalent, set before Python starts, is
#: ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``.
GLIBC_MALLOC_SETTINGS = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2 ** 31 - 1}

_applied = False


def _glibc():
    """The C library when it is glibc (has ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # glibc only; musl and others lack it
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory() -> bool:
    """Keep freed memory in this process for reuse (glibc malloc), once per process.

    Sets glibc's ``M_MMAP_MAX`` to 0 and ``M_TRIM_THRESHOLD`` to ``INT_MAX`` with
    ``mallopt``, so large tensors come from the heap and freed memory is not returned to
    the kernel. The resident set then stays at its peak between iterations (the peak
    itself does not grow) and the per-iteration page faults disappear.

    Returns
    -------
    bool
        True when the settings are in effect (now or from an earlier call); False on a
        platform without glibc (macOS, Windows, musl), where nothing is changed.
    """
    global _applied
    if _applied:
        return True
    libc = _glibc()
    if libc is None:
        return False
    ok = all(libc.mallopt(param, value) == 1 for param, value in GLIBC_MALLOC_SETTINGS.items())
    _applied = ok
    return ok


def _tf32_switches() -> list[tuple[object, str, object]]:
    """(object, attribute, full-float32 value) of the cuDNN and cuBLAS float32 settings."""
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):  # torch >= 2.9
        return [(cudnn_conv, "fp32_precision", "ieee"),
                (torch.backends.cuda.matmul, "fp32_precision", "ieee")]
    return [(torch.backends.cudnn, "allow_tf32", False),
            (torch.backends.cuda.matmul, "allow_tf32", False)]


@contextlib.contextmanager
def full_float32(device: torch.device | str | None = "cuda") -> Iterator[None]:
    """Inside the block, CUDA convolutions and matmuls of float32 tensors run in full
    float32 (IEEE), not TF32; the previous settings are restored on exit.

    PyTorch lets cuDNN convolutions use TF32 on Ampere and newer GPUs by default (10-bit
    mantissa, relative errors around 1e-3), which would make GPU reconstructions differ
    from CPU ones well beyond float32 rounding. The engines wrap their loops in this block
    when they run on CUDA; on other devices it changes nothing.

    Parameters
    ----------
    device : torch.device or str, optional
        The device of the computation; the settings are only touched for CUDA.
    """
    if device is None or torch.device(device).type != "cuda":
        yield
        return
    saved = []
    try:
        for obj, name, value in _tf32_switches():
            saved.append((obj, name, getattr(obj, name)))
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)
