"""Paper-style figure panels of a results tree: one PNG and one PDF per script folder.

Usage::

    python -m icnn_torch.figure results [--stimuli DIR [--mapping CSV]] [--out-dir DIR]
        [--labels Img0009,Img0002,...] [--scripts NAME,...] [--image-type TYPE]
        [--cell-inches 0.9] [--dpi 300] [--debug]

A panel is laid out like the paper's figures 2-8, at print size (matplotlib):

- the title on top: the paper's figure number and title from the folder's run record
  (``figure_title``, e.g. "Fig 2. ..."), else the folder's name;
- one column per image label, in the script's order (the record's ``labels``; labels it
  does not list, and all labels of results without a record, follow in natural order;
  ``--labels`` gives an explicit list), headed by the label;
- with ``--stimuli``, a ground-truth row headed "Stimulus" on top (stimulus lookup as in
  :mod:`icnn_torch.evaluate`; a missing stimulus image gives a warning and an empty cell
  marked "no image"), set off from the reconstructions by a wider gap;
- one row per (subject, layer set, ROI) found, ordered by subject, then layer set, then
  ROI (each in the record's order), headed by its subject and its ROI, or, in a script
  with layer sets, by its subject and layer set (and the ROI too when the panel has
  several);
- a caption below: the method and its iteration count (e.g. "DGN + gradient descent, 200
  iterations"), the network, and the ROI when the rows do not name it (results without
  a record have no caption).

A cell shows the script's ``recon_img_normalized-<label>.jpg`` (or, without it, the
``.mat`` image clipped to 0..255); a reconstruction that is absent leaves a cell marked
"no image". Geometry (:class:`PanelStyle`, inches and points): square cells of at most
1 inch, shrunk so that the panel fits a page of 7.5 x 8.75 inches (the full width and
height of a PLOS figure) unless the cell size is given; matplotlib's default font
(DejaVu Sans), labels 8 pt (down to 6 pt for many columns), title 9 pt bold, caption
7 pt; texts wrapped, never cut at the panel's edge; fonts embedded as TrueType in the
PDF. Panels are written
(atomically) as ``<out dir>/<script>.png`` (``--dpi``, default 300) and ``.pdf``, by
default into ``RESULTS_DIR/figures/``.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from icnn_torch._util import PathLike, atomic_output
from icnn_torch.analysis.stimuli import (StimulusMapping, find_stimulus, load_stimulus,
                                         read_stimulus_mapping, stimulus_patterns)
from icnn_torch.errors import ConfigError, OutputError
from icnn_torch.recon.engines import ENGINES
from icnn_torch.run.cli import comma_list, run_cli, warnings_to_stderr
from icnn_torch.store.results import (Reconstruction, ScriptResults, find_script_results,
                                      load_reconstruction)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

__all__ = ["PanelStyle", "STIMULUS_ROW", "compose_panel", "script_panel", "script_panels",
           "make_figures", "main"]

#: Header of the ground-truth row.
STIMULUS_ROW = "Stimulus"
#: Text of a cell without an image.
MISSING_TEXT = "no image"
MISSING_COLOUR = "0.6"
#: Longest side, in pixels, of a stimulus image as drawn (the reconstructions are 224).
STIMULUS_MAX_PIXELS = 512
#: Points per inch.
POINT = 1 / 72

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

def _as_uint8(cell: Union["Image.Image", np.ndarray]) -> np.ndarray:
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
                ax.imshow(_as_uint8(cells[row, col]), interpolation="antialiased")
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

        def at(cell: float) -> "_Geometry":
            width = left + n_cols * cell + (n_cols - 1) * s.gap + s.margin
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
            return cls(cell, width, height, left, header_width, stimulus_gap, title_lines,
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


# --------------------------------------------------------------------------- results

def _load_cell(rec: Reconstruction) -> np.ndarray:
    if rec.jpg_path.is_file():  # any RGB image file reads as a stimulus does
        return _as_uint8(load_stimulus(rec.jpg_path))
    return _as_uint8(load_reconstruction(rec.mat_path, "clip"))


def _stimulus_cell(path: Path) -> np.ndarray:
    from PIL import Image

    img = _as_uint8(load_stimulus(path))
    scale = STIMULUS_MAX_PIXELS / max(img.shape[:2])
    if scale < 1:  # about what a 1-inch cell shows at 300 to 500 dpi
        size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
        img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))
    return img


def _caption(folder: ScriptResults, rois_in_rows: bool, rois: Sequence[str]) -> str:
    parts = []
    if folder.engine is not None:
        info = ENGINES.get(folder.engine)
        method = info.method if info is not None else folder.engine
        iterations = folder.iterations
        parts.append(method if iterations is None else
                     f"{method}, {iterations} iteration{'s' if iterations != 1 else ''}")
    if folder.network:
        parts.append(f"network {folder.network}")
    if not rois_in_rows and folder.record is not None:
        parts.append(f"ROI {', '.join(rois)}")
    return "; ".join(parts) + "." if parts else ""


def script_panel(folder: ScriptResults, stimuli_dir: Optional[PathLike] = None,
                 mapping: Optional[StimulusMapping] = None,
                 labels: Optional[Sequence[str]] = None, image_type: Optional[str] = None,
                 style: PanelStyle = PanelStyle()) -> Optional["Figure"]:
    """The panel of one script folder (layout in the module docstring).

    Parameters
    ----------
    folder : ScriptResults
    stimuli_dir : path, optional
        Adds the ground-truth row.
    mapping : dict, optional
        Parsed stimulus mapping (:func:`icnn_torch.analysis.stimuli.read_stimulus_mapping`).
    labels : sequence of str, optional
        Columns to show, in this order (labels without any reconstruction are dropped).
    image_type : str, optional
        Image type when the folder has no run record (stimulus lookup).
    style : PanelStyle

    Returns
    -------
    Figure or None
        None when no reconstruction has one of the labels.

    Warns
    -----
    UserWarning
        For each stimulus image that is not found (its cell stays empty).
    """
    recs = folder.reconstructions(image_type)
    found_labels = {rec.label for rec in recs}
    if labels is not None:
        columns = [label for label in dict.fromkeys(labels) if label in found_labels]
    else:
        columns = sorted(found_labels, key=folder.key("labels"))
    if not columns:
        return None
    subject_key, set_key, roi_key = folder.key("subjects"), folder.key("layer_sets"), \
        folder.key("rois")
    row_keys = sorted({(rec.subject, rec.layer_set or "", rec.roi) for rec in recs},
                      key=lambda k: (subject_key(k[0]), set_key(k[1]), roi_key(k[2])))
    rois = sorted({key[2] for key in row_keys}, key=roi_key)
    has_sets = any(key[1] for key in row_keys)
    rois_in_rows = not has_sets or len(rois) > 1
    row_headers: list[list[str]] = []
    cells: dict[tuple[int, int], np.ndarray] = {}
    if stimuli_dir is not None:
        row_headers.append([STIMULUS_ROW])
        stim_type = folder.image_type or image_type
        for col, label in enumerate(columns):
            path = find_stimulus(stimuli_dir, label, stim_type, mapping)
            if path is None:
                warnings.warn(f"no stimulus image for {label} of {folder.name} (looked for "
                              f"{' and '.join(stimulus_patterns(stimuli_dir, label, stim_type))}"
                              "); its cell in the ground-truth row is left empty",
                              stacklevel=3)
            else:
                cells[0, col] = _stimulus_cell(path)
    first = len(row_headers)
    for subject, layer_set, roi in row_keys:
        row_headers.append([subject] + ([layer_set] if layer_set else [])
                           + ([roi] if rois_in_rows else []))
    row_of = {key: first + index for index, key in enumerate(row_keys)}
    col_of = {label: index for index, label in enumerate(columns)}
    for rec in recs:
        if rec.label in col_of:
            cells[row_of[rec.subject, rec.layer_set or "", rec.roi], col_of[rec.label]] = \
                _load_cell(rec)
    return compose_panel(row_headers, columns, cells, title=folder.figure_title,
                         caption=_caption(folder, rois_in_rows, rois),
                         stimulus_row=stimuli_dir is not None, style=style)


def script_panels(results_dir: PathLike, stimuli_dir: Optional[PathLike] = None,
                  mapping: Optional[Union[PathLike, StimulusMapping]] = None,
                  labels: Optional[Sequence[str]] = None,
                  scripts: Optional[Iterable[str]] = None,
                  image_type: Optional[str] = None,
                  style: PanelStyle = PanelStyle()) -> dict[str, "Figure"]:
    """One panel per script folder of ``results_dir`` (see :func:`script_panel`).

    Parameters
    ----------
    results_dir : path
        ``results`` or one script's folder.
    stimuli_dir, mapping
        Stimulus folder and mapping (CSV path or parsed); with ``stimuli_dir`` every
        panel gets a ground-truth row.
    labels, image_type, style
        As :func:`script_panel`.
    scripts : iterable of str, optional
        Script folder names to draw (default all found).

    Returns
    -------
    dict
        Script folder name -> figure, in the folders' order; folders without a
        reconstruction of the labels are left out.

    Raises
    ------
    ConfigError
        A missing results or stimulus folder, or an unknown script folder name.
    """
    if stimuli_dir is not None and not Path(stimuli_dir).is_dir():
        raise ConfigError(f"stimulus folder {stimuli_dir} does not exist")
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = read_stimulus_mapping(mapping, stimuli_dir)
    panels: dict[str, "Figure"] = {}
    for folder in find_script_results(results_dir, scripts):
        panel = script_panel(folder, stimuli_dir, mapping, labels, image_type, style)
        if panel is not None:
            panels[folder.name] = panel
    return panels


def make_figures(results_dir: PathLike, out_dir: Optional[PathLike] = None,
                 stimuli_dir: Optional[PathLike] = None,
                 mapping: Optional[Union[PathLike, StimulusMapping]] = None,
                 labels: Optional[Sequence[str]] = None,
                 scripts: Optional[Iterable[str]] = None,
                 image_type: Optional[str] = None,
                 style: PanelStyle = PanelStyle(), dpi: float = 300) -> list[Path]:
    """Write ``<out_dir>/<script>.png`` and ``.pdf`` for every script folder drawn.

    ``out_dir`` defaults to ``results_dir/figures``; ``dpi`` is the PNG's resolution;
    other arguments as :func:`script_panels`. Returns the paths written (PNG, PDF per
    script), each written atomically.

    Raises
    ------
    OutputError
        ``out_dir`` cannot be written.
    """
    import matplotlib

    panels = script_panels(results_dir, stimuli_dir, mapping, labels, scripts, image_type,
                           style)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "figures"
    written = []
    # TrueType fonts in the PDF (what journals ask for: text stays text)
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        for script, panel in panels.items():
            for fmt in ("png", "pdf"):
                path = out / f"{script}.{fmt}"
                try:
                    with atomic_output(path) as tmp:
                        panel.savefig(tmp, format=fmt, dpi=dpi, facecolor="white")
                except OSError as err:
                    raise OutputError(f"cannot write {path}: {err.strerror or err}; choose "
                                      "another --out-dir") from err
                written.append(path)
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.figure",
        description="Write one paper-style panel (PNG and PDF) per script of a results tree.")
    parser.add_argument("results_dir", help="results folder (or one script's folder)")
    parser.add_argument("--stimuli", default=None,
                        help="stimulus folder; adds a ground-truth row on top")
    parser.add_argument("--mapping", default=None,
                        help="CSV of label,filename (or image_type,label,filename) rows")
    parser.add_argument("--out-dir", default=None,
                        help="where the panels go (default: RESULTS_DIR/figures)")
    parser.add_argument("--labels", type=comma_list, default=None,
                        help="columns in this order, comma-separated (default: the "
                             "script's label order)")
    parser.add_argument("--scripts", type=comma_list, default=None,
                        help="script folder names to draw, comma-separated (default: all)")
    parser.add_argument("--image-type", default=None,
                        help="image type of script folders without a run record, e.g. "
                             "natural; it selects <stimuli>/<image type>/")
    parser.add_argument("--cell-inches", type=float, default=None,
                        help="side of an image cell in inches (default: up to 1, fitted "
                             "to a 7.5 x 8.75 in page)")
    parser.add_argument("--dpi", type=float, default=300,
                        help="resolution of the PNG (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _run(argv: Optional[Sequence[str]]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cell_inches is not None and args.cell_inches <= 0:
        parser.error("--cell-inches must be positive")
    if args.dpi <= 0:
        parser.error("--dpi must be positive")
    if not Path(args.results_dir).is_dir():
        raise ConfigError(f"results folder {args.results_dir} does not exist; run a figure "
                          "script first (e.g. python 1_reconstruct_natural_image.py)")
    with warnings_to_stderr():
        written = make_figures(args.results_dir, args.out_dir, args.stimuli, args.mapping,
                               args.labels, args.scripts, args.image_type,
                               PanelStyle(cell=args.cell_inches), args.dpi)
    if not written:
        raise ConfigError(f"no recon_img-<label>.mat files under {args.results_dir}"
                          + (" with the labels given" if args.labels else "")
                          + "; run a figure script first (e.g. python "
                            "1_reconstruct_natural_image.py)")
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point (see the module docstring); returns the exit status.

    Errors of the project print one ``error: ...`` line and return 1; ``--debug`` shows
    the traceback.
    """
    return run_cli(lambda: _run(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
