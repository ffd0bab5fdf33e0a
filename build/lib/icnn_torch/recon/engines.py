"""The registry of the four reconstruction engines: what a caller needs to know about each.

One table instead of per-engine lists in the pipeline, the downloader and the docs. It
imports nothing heavy; :meth:`EngineInfo.load` imports the engine's module (and torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ..errors import ConfigError

__all__ = ["EngineInfo", "ENGINES", "engine_info"]


@dataclass(frozen=True)
class EngineInfo:
    """Facts about one engine.

    Attributes
    ----------
    name : str
        Module name in ``icnn_torch`` (the original ``icnn`` module name).
    iteration_option : str
        The keyword that counts its iterations (``iter_n`` or ``maxiter``).
    display_option : str
        The keyword of its progress output (``disp_every`` or ``disp``).
    uses_generator : bool
        Optimises the input of the DeePSiM generator (needs its weights and the fc7 bounds).
    batched : bool
        Optimises a batch of images together (the GD engines); the L-BFGS engines run
        the images of a batch one after another.
    snapshot_unit : str
        What one snapshot step is: ``"iteration"`` or ``"function evaluation"``.
    first_snapshot : int
        Number of the first ``%05d`` snapshot (1 for the GD engines, 0 for L-BFGS, whose
        evaluation 0 is the start).
    method : str
        The method in words, as a figure caption names it (e.g. ``"DGN + gradient descent"``).
    """

    name: str
    iteration_option: str
    display_option: str
    uses_generator: bool
    batched: bool
    snapshot_unit: str
    first_snapshot: int
    method: str

    def load(self) -> ModuleType:
        """The engine's module (with its ``reconstruct_image``)."""
        return importlib.import_module(f"icnn_torch.{self.name}")


ENGINES: dict[str, EngineInfo] = {e.name: e for e in (
    EngineInfo("icnn_lbfgs", "maxiter", "disp", False, False, "function evaluation", 0,
               "L-BFGS-B"),
    EngineInfo("icnn_gd", "iter_n", "disp_every", False, True, "iteration", 1,
               "gradient descent"),
    EngineInfo("icnn_dgn_gd", "iter_n", "disp_every", True, True, "iteration", 1,
               "DGN + gradient descent"),
    EngineInfo("icnn_dgn_lbfgs", "maxiter", "disp", True, False, "function evaluation", 0,
               "DGN + L-BFGS-B"),
)}


def engine_info(name: str) -> EngineInfo:
    """The registry entry of ``name``; a :class:`~icnn_torch.errors.ConfigError` listing the
    engines for an unknown name."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}") from None
