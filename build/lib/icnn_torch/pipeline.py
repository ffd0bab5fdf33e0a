"""The figure scripts' entry point (``from icnn_torch.pipeline import main``), kept for
copies of the scripts written before the package was laid out by layer; the code is
:mod:`icnn_torch.run.reconstruct`."""

from .run.reconstruct import build_parser, main, run_script

__all__ = ["main", "run_script", "build_parser"]
