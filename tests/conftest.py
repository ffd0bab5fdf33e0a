"""Shared fixtures: the devices to run on (CUDA cases skip when there is no GPU)."""

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each device the test should run on: CPU always, CUDA when present."""
    return torch.device(request.param)
