"""Paper-style figure panels of a results tree: one PNG and one PDF per script folder (a
face of :mod:`icnn_torch.analysis.figure` and :mod:`icnn_torch.analysis.panel`; the command
line is :mod:`icnn_torch.analysis.cli`).

Usage::

    python -m icnn_torch.figure results [--stimuli DIR [--mapping CSV]] [--out-dir DIR]
        [--labels Img0009,Img0002,...] [--scripts NAME,...] [--image-type TYPE]
        [--cell-inches 0.9] [--dpi 300] [--debug]

The layout of a script's panel (title, columns, ground-truth row, rows, caption) is
described in :mod:`icnn_torch.analysis.figure`, the geometry and fonts in
:mod:`icnn_torch.analysis.panel`.
"""

import sys

from .analysis.cli import figure_main as main
from .analysis.figure import (STIMULUS_MAX_PIXELS, STIMULUS_ROW, make_figures, script_panel,
                              script_panels)
from .analysis.panel import (GID_CAPTION, GID_COLUMN, GID_IMAGE, GID_MISSING, GID_ROW, GID_TITLE,
                             MISSING_TEXT, PanelStyle, compose_panel)

__all__ = ["PanelStyle", "STIMULUS_ROW", "compose_panel", "script_panel", "script_panels",
           "make_figures", "main", "MISSING_TEXT", "STIMULUS_MAX_PIXELS", "GID_TITLE",
           "GID_COLUMN", "GID_ROW", "GID_CAPTION", "GID_IMAGE", "GID_MISSING"]

if __name__ == "__main__":
    sys.exit(main())
