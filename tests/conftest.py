"""Shared fixtures: the devices to run on (CUDA cases skip when there is no GPU), and the
synthetic project tree the figure scripts run on."""

from pathlib import Path

import pytest
import torch

from _project_tree import build_project_tree

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each device the test should run on: CPU always, CUDA when present."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def project_root(tmp_path_factory) -> Path:
    """The synthetic project tree (:mod:`_project_tree`), built once per session."""
    return build_project_tree(tmp_path_factory.mktemp("project"))
