"""A labelled grid of images drawn as a paper-style panel at print size (matplotlib).

:func:`compose_panel` draws rows of images under column labels, with row headers on the
left, a title on top and a caption below; :mod:`icnn_torch.analysis.figure` fills it with
the results of a script. Geometry (:class:`PanelStyle`, inches and points): square cells
of at most 1 inch, shrunk so that the panel fits a page of 7.5 x 8.75 inches (the full
width and height of a PLOS figure) unless the cell size is given; matplotlib's default
font (DejaVu Sans), labels 8 pt (down to 6 pt for many columns), title 9 pt bold, caption
7 pt; texts wrapped, never cut at the panel's edge, and a panel of one or two columns
widened so that its title reads in lines of some 45 characters. Texts and cells carry the
``gid`` s ``GID_*`` of this module, for programs that inspect a panel.

matplotlib is imported when a panel is drawn, not with this module.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

__all__ = ["PanelStyle", "compose_panel", "as_uint8", "MISSING_TEXT", "GID_TITLE",
           "GID_COLUMN", "GID_ROW", "GID_CAPTION", "GID_IMAGE", "GID_MISSING"]

#: Text of a cell without an image.
MISSING_TEXT = "no image"
MISSING_COLOUR = "0.6"
#: Points per inch.
POINT = 1 / 72
#: Room for a line of text beyond its outline's width: Agg's hinting draws 9 pt text up to
#: 4 % wider at 100 dpi (matplotlib's screen resolution), 1.5 % at 300 dpi.
HINTING_ALLOWANCE = 1.05

#: ``gid`` of the panel's artists, for programs that inspect a panel.
GID_TITLE, GID_COLUMN, GID_ROW, GID_CAPTION = "title", "column-label", "row-label", "caption"
GID_IMAGE, GID_MISSING = "image", "missing"


@dataclass(frozen=True)
class PanelStyle:
    """Panel geometry (inches) and fonts (points).

    Attributes
    ----------
    cell : float or None
        Side of an image cell; None: :attr:`max_cell`, shrunk to fit the page.
    max_cell : float
    page_width, page_height : float
        The largest panel (PLOS: 7.5 x 8.75 in) when ``cell`` is None.
    gap : float
        Between cells.
    stimulus_gap : float
        Extra space below the ground-truth row.
    margin : float
        Around the panel.
    pad : float
        Between a text and the images it labels.
    title_size, label_size, caption_size, min_label_size : float
        Font sizes. When the widest column label does not fit its cell, all column labels
        and row headers are set smaller, down to ``min_label_size``; below that the column
        labels stand vertically at ``label_size`` (cut with an ellipsis beyond 1.5 in).
    min_text_width : float
        The title and the caption wrap at the panel's inner width, or at this width where
        the grid is narrower (a panel of one or two columns) and a text needs it; the panel
        is then widened to it and the grid centred. 3.25 in holds about 45 characters of
        the 9 pt bold title.
    """

    cell: Optional[float] = None
    max_cell: float = 1.0
    page_width: float = 7.5
    page_height: float = 8.75
    gap: float = 0.03
    stimulus_gap: float = 0.08
    margin: float = 0.08
    pad: float = 0.05
    title_size: float = 9.0
    label_size: float = 8.0
    caption_size: float = 7.0
    min_label_size: float = 6.0
    min_text_width: float = 3.25


# --------------------------------------------------------------------------- text

@functools.lru_cache(maxsize=4096)
def _text_width(text: str, size: float, weight: str = "normal") -> float:
    """Width in inches of one line of ``text`` in matplotlib's default font."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    if not text:
        return 0.0
    width, _, _ = text_to_path.get_text_width_height_descent(
        text, FontProperties(size=size, weight=weight), ismath=False)
    return width * POINT


def _ellipsis(text: str, size: float, width: float, weight: str = "normal") -> str:
    """``text`` cut with "…" to at most ``width`` inches."""
    if _text_width(text, size, weight) <= width:
        return text
    while text and _text_width(text + "…", size, weight) > width:
        text = text[:-1]
    return text + "…"


def _wrap(text: str, size: float, width: float, weight: str = "normal") -> list[str]:
    """``text`` broken into lines of at most ``width`` inches: at spaces, and a word wider
    than a line after its ``_``, ``-`` or ``/`` (a piece still too wide is cut with an
    ellipsis)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(f"{lines[-1]} {word}", size, weight) <= width:
            lines[-1] = f"{lines[-1]} {word}"
            continue
        lines.append("")
        for piece in re.split(r"(?<=[_\-/])", word):
            if lines[-1] and _text_width(lines[-1] + piece, size, weight) > width:
                lines.append("")
            lines[-1] = _ellipsis(lines[-1] + piece, size, width, weight)
    return lines


def _line_height(size: float) -> float:
    return 1.25 * size * POINT


# --------------------------------------------------------------------------- panel

def as_uint8(cell: Union["Image.Image", np.ndarray]) -> np.ndarray:
    """A cell's image as an (H, W, 3) uint8 RGB array: an array (RGB 0..255) clipped to
    0..255, a PIL image converted to RGB."""
    if isinstance(cell, np.ndarray):
        return np.clip(np.asarray(cell, dtype=np.float64), 0, 255).astype(np.uint8)
    return np.asarray(cell.convert("RGB"))


def compose_panel(row_headers: Sequence[Sequence[str]], col_headers: Sequence[str],
                  cells: Mapping[tuple[int, int], Union["Image.Image", np.ndarray]],
                  title: str = "", caption: str = "", stimulus_row: bool = False,
                  style: PanelStyle = PanelStyle()) -> "Figure":
    """Draw a labelled grid of images as a matplotlib figure at print size.

    Parameters
    ----------
    row_headers : sequence of sequence of str
        Text lines of each row's header (e.g. ``["S1", "V1"]``), right-aligned left of
        the row.
    col_headers : sequence of str
        Text above each column (e.g. image labels).
    cells : mapping (row, col) -> PIL image or (H, W, 3) array (RGB 0..255)
        Images, drawn undistorted in square cells; absent cells are marked "no image".
    title : str
        Bold, top left, wrapped to the panel's width.
    caption : str
        Below the grid, wrapped to the panel's width.
    stimulus_row : bool
        Row 0 is the ground truth: a wider gap separates it from the others.
    style : PanelStyle

    Returns
    -------
    matplotlib.figure.Figure
        With an Agg canvas; ``figure.get_size_inches()`` is the print size. Texts and
        axes carry the ``gid`` s ``GID_*`` of this module.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = len(row_headers), len(col_headers)
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"a panel needs at least one row and column, got {n_rows}x{n_cols}")
    s = style
    geo = _Geometry.fit(s, [list(lines) for lines in row_headers], list(col_headers), title,
                        caption, stimulus_row and n_rows > 1)
    cell = geo.cell
    fig = Figure(figsize=(geo.width, geo.height))
    FigureCanvasAgg(fig)
    inches = fig.dpi_scale_trans

    def text(x: float, y: float, content: str, gid: str, **kwargs) -> None:
        fig.text(x, y, content, transform=inches, gid=gid, parse_math=False, **kwargs)

    top = geo.height - s.margin  # a cursor going down the panel, in inches from the bottom
    for line in geo.title_lines:
        text(s.margin, top, line, GID_TITLE, size=s.title_size, weight="bold",
             ha="left", va="top")
        top -= _line_height(s.title_size)
    if geo.title_lines:
        top -= s.pad
    top -= geo.label_strip  # the column labels stand on this line
    for col, label in enumerate(col_headers):
        x = geo.left + col * (cell + s.gap) + cell / 2
        if geo.labels_vertical:
            text(x, top, _ellipsis(label, geo.label_size, geo.label_strip), GID_COLUMN,
                 size=geo.label_size, rotation=90, ha="center", va="bottom")
        else:
            text(x, top + geo.label_strip / 2, label, GID_COLUMN, size=geo.label_size,
                 ha="center", va="center")
    top -= s.pad
    missing_text = MISSING_TEXT if _text_width(MISSING_TEXT, s.min_label_size) <= 0.8 * cell \
        else MISSING_TEXT.replace(" ", "\n")
    for row, lines in enumerate(row_headers):
        cell_top = top - row * (cell + s.gap) - (geo.stimulus_gap if row > 0 else 0.0)
        shown = "\n".join(_ellipsis(line, s.label_size, geo.header_width) for line in lines)
        text(geo.left - s.pad, cell_top - cell / 2, shown, GID_ROW, size=geo.label_size,
             ha="right", va="center", multialignment="right", linespacing=1.25)
        for col in range(n_cols):
            x = geo.left + col * (cell + s.gap)
            ax = fig.add_axes((x / geo.width, (cell_top - cell) / geo.height,
                               cell / geo.width, cell / geo.height))
            ax.set_xticks([])
            ax.set_yticks([])
            if (row, col) in cells:
                ax.set_gid(GID_IMAGE)
                ax.imshow(as_uint8(cells[row, col]), interpolation="antialiased")
                ax.set_axis_off()
            else:
                ax.set_gid(GID_MISSING)
                for spine in ax.spines.values():
                    spine.set_edgecolor(MISSING_COLOUR)
                    spine.set_linewidth(0.5)
                ax.text(0.5, 0.5, missing_text, transform=ax.transAxes, ha="center",
                        va="center", size=s.min_label_size, color=MISSING_COLOUR,
                        gid=GID_MISSING, linespacing=1.25)
    bottom = top - n_rows * cell - (n_rows - 1) * s.gap - geo.stimulus_gap - s.pad
    for line in geo.caption_lines:
        text(s.margin, bottom, line, GID_CAPTION, size=s.caption_size, ha="left", va="top")
        bottom -= _line_height(s.caption_size)
    return fig


@dataclass(frozen=True)
class _Geometry:
    """Where everything of a panel goes (inches)."""

    cell: float
    width: float
    height: float
    left: float  # x of the first column
    header_width: float  # of the row headers
    stimulus_gap: float
    title_lines: list
    caption_lines: list
    label_size: float  # one font size for all column labels and row headers
    labels_vertical: bool
    label_strip: float  # height of the column labels

    @classmethod
    def fit(cls, s: PanelStyle, row_headers: list, col_headers: list, title: str,
            caption: str, stimulus_row: bool) -> "_Geometry":
        """The geometry for ``s.cell``, or for the largest cell up to ``s.max_cell`` that
        fits the page (``s.page_width`` x ``s.page_height``)."""
        n_rows, n_cols = len(row_headers), len(col_headers)
        header_width = min(max((_text_width(text, s.label_size)
                                for lines in row_headers for text in lines), default=0.0),
                           0.3 * s.page_width)
        left = s.margin + header_width + s.pad
        stimulus_gap = s.stimulus_gap if stimulus_row else 0.0
        widest = max(_text_width(label, s.label_size) for label in col_headers)

        # a narrow grid is widened for the texts, to s.min_text_width at most
        text_width = min(s.min_text_width,
                         HINTING_ALLOWANCE * max(_text_width(title, s.title_size, "bold"),
                                                 _text_width(caption, s.caption_size)))

        def at(cell: float) -> "_Geometry":
            grid_width = left + n_cols * cell + (n_cols - 1) * s.gap + s.margin
            width = max(grid_width, text_width + 2 * s.margin)
            grid_left = left + (width - grid_width) / 2  # the grid centred
            title_lines = _wrap(title, s.title_size, width - 2 * s.margin, "bold")
            caption_lines = _wrap(caption, s.caption_size, width - 2 * s.margin)
            # the largest size (0.1 pt steps) at which the widest label fits its cell, with
            # a gap to its neighbours; vertical labels when even the minimum is too wide
            room = cell - s.gap
            size = s.label_size if widest <= room else \
                np.floor(10 * s.label_size * room / widest) / 10
            vertical = size < s.min_label_size
            if vertical:
                size, strip = s.label_size, min(widest, 1.5)
            else:
                strip = _line_height(size)
            height = (s.margin + len(title_lines) * _line_height(s.title_size)
                      + (s.pad if title_lines else 0.0) + strip + s.pad
                      + n_rows * cell + (n_rows - 1) * s.gap + stimulus_gap
                      + (s.pad + len(caption_lines) * _line_height(s.caption_size)
                         if caption_lines else 0.0) + s.margin)
            return cls(cell, width, height, grid_left, header_width, stimulus_gap, title_lines,
                       caption_lines, float(size), vertical, strip)

        if s.cell is not None:
            return at(s.cell)
        by_width = min(s.max_cell, (s.page_width - left - s.margin - (n_cols - 1) * s.gap)
                       / n_cols)
        geo = at(by_width)
        for _ in range(3):  # the text around the cells depends a little on their size
            room = s.page_height - (geo.height - n_rows * geo.cell)
            cell = max(min(by_width, room / n_rows), 0.1)
            if cell == geo.cell:
                break
            geo = at(cell)
        return geo
