"""The one place that chooses a device: CUDA when present, else the CPU.

Every part of the package that needs a device (the weight loaders, the figure scripts,
the decoding entry point, the self-check) takes it from :func:`choose_device`.
"""

from __future__ import annotations

from typing import Union

import torch

from ..errors import DeviceError

__all__ = ["choose_device", "default_device", "device_for_rank"]


def default_device() -> torch.device:
    """CUDA (the current device) when available, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def device_for_rank(local_rank: int) -> torch.device:
    """The device of a process: ``cuda:<local_rank mod #GPUs>``, else CPU.

    Under ``torchrun --nproc_per_node=N`` each process gets its own GPU when the node
    has N of them (and processes share GPUs round-robin when it has fewer); a SLURM
    array task normally sees only the GPU(s) SLURM gave it (``CUDA_VISIBLE_DEVICES``), so
    its ``local_rank`` 0 picks that GPU.
    """
    if local_rank < 0:
        raise ValueError(f"local_rank must be >= 0, got {local_rank}")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if count > 0:
            return torch.device("cuda", local_rank % count)
    return torch.device("cpu")


def choose_device(name: Union[str, torch.device, None] = None, local_rank: int = 0) -> torch.device:
    """The device to compute on.

    Parameters
    ----------
    name : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: :func:`device_for_rank` of
        ``local_rank`` (CUDA when present, else CPU).
    local_rank : int
        The process's index on its machine (``LOCAL_RANK`` under torchrun).

    Raises
    ------
    DeviceError
        ``name`` is not a device, or names CUDA on a machine without it.
    """
    if name is None or name == "":
        return device_for_rank(local_rank)
    if isinstance(name, torch.device):
        device = name
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError) as err:
            raise DeviceError(f"unknown device {name!r} (cpu, cuda, cuda:1 ...): {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {str(name)!r}: CUDA is not available on this machine")
    return device
