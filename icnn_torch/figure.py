"""Paper-style figure panels of a results tree: one PNG per script.

Usage::

    python -m icnn_torch.figure results [--stimuli DIR [--mapping CSV]] [--out-dir DIR]
        [--labels Img0009 Img0002 ...] [--scripts NAME ...] [--cell 128]

Layout of a panel (like the paper's figures 2-8): columns are the image labels, in the
script's original order (:data:`icnn_torch.evaluate.SCRIPT_LABELS`; labels not listed
there follow in natural order; ``--labels`` gives an explicit list). Rows are the
(subject, layer set, ROI) combinations found, subject first, then layer set (script 3,
``layers-1to1`` ... ``layers-1to7``), then ROI (script 5, V1 V2 V3 V4 HVC VC). A row's
header shows its subject, its layer set if any, and its ROI when the panel has more than
one. With ``--stimuli`` a ground-truth row headed ``stimulus`` comes first (stimulus
lookup as in :mod:`icnn_torch.evaluate`). A cell shows the script's
``recon_img_normalized-<label>.jpg`` (or, without it, the ``.mat`` image clipped to
0..255); a missing image leaves a grey-outlined empty cell.

Geometry (pixels, :class:`PanelLayout` defaults)::

    width  = 2 * margin + row_header + n_cols * cell + (n_cols - 1) * gap
    height = 2 * margin + title + col_header + n_rows * cell + (n_rows - 1) * gap

    cell 128, gap 4, margin 8, row_header 112, title 20, col_header 16

``n_rows`` counts the ground-truth row. The title (the script's folder name) is at the
top left; the labels are centred above their columns; row headers are left aligned and
vertically centred in the strip left of their row. White background, black text in
PIL's default font; text too long for its strip is cut with "...". Panels are written
(atomically) as ``<out dir>/<script>.png``, by default ``RESULTS_DIR/figures/``. Only
Pillow is needed.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from icnn_torch.evaluate import (PathLike, Reconstruction, StimulusMapping,
                                 find_reconstructions, find_stimulus, load_reconstruction,
                                 natural_key, order_labels, read_stimulus_mapping, roi_key)
from icnn_torch._util import atomic_output

__all__ = ["PanelLayout", "compose_panel", "script_panels", "make_figures", "main"]

BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
MISSING_OUTLINE = (190, 190, 190)
STIMULUS_ROW = "stimulus"


@dataclass(frozen=True)
class PanelLayout:
    """Panel geometry in pixels (see the module docstring for the size rule)."""

    cell: int = 128
    gap: int = 4
    margin: int = 8
    row_header: int = 112
    title: int = 20
    col_header: int = 16

    def size(self, n_rows: int, n_cols: int) -> tuple[int, int]:
        """(width, height) of a panel with ``n_rows`` x ``n_cols`` image cells."""
        if n_rows < 1 or n_cols < 1:
            raise ValueError(f"a panel needs at least one row and column, got "
                             f"{n_rows}x{n_cols}")
        width = 2 * self.margin + self.row_header + n_cols * self.cell + (n_cols - 1) * self.gap
        height = (2 * self.margin + self.title + self.col_header + n_rows * self.cell
                  + (n_rows - 1) * self.gap)
        return width, height

    def cell_origin(self, row: int, col: int) -> tuple[int, int]:
        """(x, y) of the top-left pixel of cell (row, col)."""
        x = self.margin + self.row_header + col * (self.cell + self.gap)
        y = self.margin + self.title + self.col_header + row * (self.cell + self.gap)
        return x, y


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> str:
    """``text`` cut with "..." so that it is at most ``max_width`` pixels wide."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "...", font=font) > max_width:
        text = text[:-1]
    return text + "..." if text else ""


def _as_rgb_image(cell: Union[Image.Image, np.ndarray]) -> Image.Image:
    if isinstance(cell, Image.Image):
        return cell.convert("RGB")
    array = np.clip(np.asarray(cell, dtype=np.float64), 0, 255).astype(np.uint8)
    return Image.fromarray(array, mode="RGB")


def compose_panel(row_headers: Sequence[Sequence[str]], col_headers: Sequence[str],
                  cells: Mapping[tuple[int, int], Union[Image.Image, np.ndarray]],
                  title: str = "", layout: PanelLayout = PanelLayout()) -> Image.Image:
    """Draw a labelled grid of images.

    Parameters
    ----------
    row_headers : sequence of sequence of str
        Text lines of each row's header (e.g. ``["S1", "V1"]``).
    col_headers : sequence of str
        Text above each column (e.g. image labels).
    cells : mapping (row, col) -> PIL image or HxWx3 array (RGB 0..255)
        Images, resized to ``layout.cell`` squares; absent cells stay empty with a grey
        outline.
    title : str
        Text in the title strip.
    layout : PanelLayout

    Returns
    -------
    PIL.Image.Image
        RGB, of size ``layout.size(len(row_headers), len(col_headers))``.
    """
    width, height = layout.size(len(row_headers), len(col_headers))
    panel = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    line_height = max(1, int(draw.textbbox((0, 0), "Ag", font=font)[3]) + 2)

    if title:
        draw.text((layout.margin, layout.margin),
                  _fit_text(draw, title, font, width - 2 * layout.margin),
                  fill=TEXT_COLOUR, font=font)
    for col, text in enumerate(col_headers):
        x, _ = layout.cell_origin(0, col)
        text = _fit_text(draw, text, font, layout.cell)
        text_x = x + (layout.cell - draw.textlength(text, font=font)) / 2
        draw.text((text_x, layout.margin + layout.title), text, fill=TEXT_COLOUR, font=font)
    for row, lines in enumerate(row_headers):
        _, y = layout.cell_origin(row, 0)
        lines = list(lines)
        top = y + (layout.cell - line_height * len(lines)) / 2
        for index, text in enumerate(lines):
            text = _fit_text(draw, text, font, layout.row_header - 4)
            draw.text((layout.margin, top + index * line_height), text, fill=TEXT_COLOUR,
                      font=font)
    for row in range(len(row_headers)):
        for col in range(len(col_headers)):
            x, y = layout.cell_origin(row, col)
            if (row, col) in cells:
                image = _as_rgb_image(cells[row, col])
                if image.size != (layout.cell, layout.cell):
                    image = image.resize((layout.cell, layout.cell), Image.Resampling.LANCZOS)
                panel.paste(image, (x, y))
            else:
                draw.rectangle([x, y, x + layout.cell - 1, y + layout.cell - 1],
                               outline=MISSING_OUTLINE)
    return panel


def _load_cell(rec: Reconstruction) -> Image.Image:
    if rec.jpg_path.is_file():
        with Image.open(rec.jpg_path) as image:
            return image.convert("RGB")
    return _as_rgb_image(load_reconstruction(rec.mat_path, "clip"))


def _load_stimulus_cell(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def script_panels(results_dir: PathLike, stimuli_dir: Optional[PathLike] = None,
                  mapping: Optional[Union[PathLike, StimulusMapping]] = None,
                  labels: Optional[Sequence[str]] = None,
                  scripts: Optional[Iterable[str]] = None,
                  layout: PanelLayout = PanelLayout()) -> dict[str, Image.Image]:
    """One composed panel per script folder found under ``results_dir``.

    Parameters
    ----------
    results_dir : path
        ``results`` or one script's folder.
    stimuli_dir : path, optional
        Adds the ground-truth row (missing stimuli leave empty cells).
    mapping : path or dict, optional
        Stimulus mapping (see :mod:`icnn_torch.evaluate`).
    labels : sequence of str, optional
        Columns to show, in this order (labels without any reconstruction are dropped);
        default: all labels found, in the script's order.
    scripts : iterable of str, optional
        Script folder names to draw (default all found).
    layout : PanelLayout

    Returns
    -------
    dict
        Script folder name -> RGB panel, in script order.
    """
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = read_stimulus_mapping(mapping, stimuli_dir)
    by_script: dict[str, list[Reconstruction]] = defaultdict(list)
    for rec in find_reconstructions(results_dir, scripts):
        by_script[rec.script].append(rec)
    panels: dict[str, Image.Image] = {}
    for script in sorted(by_script, key=natural_key):
        recs = by_script[script]
        found_labels = {rec.label for rec in recs}
        if labels is not None:
            columns = [label for label in dict.fromkeys(labels) if label in found_labels]
        else:
            columns = order_labels(script, found_labels)
        if not columns:
            continue
        row_keys = sorted({(rec.subject, rec.layer_set or "", rec.roi) for rec in recs},
                          key=lambda k: (natural_key(k[0]), natural_key(k[1]), roi_key(k[2])))
        several_rois = len({key[2] for key in row_keys}) > 1
        row_headers: list[list[str]] = []
        cells: dict[tuple[int, int], Image.Image] = {}
        if stimuli_dir is not None:
            row_headers.append([STIMULUS_ROW])
            image_type = recs[0].image_type
            for col, label in enumerate(columns):
                path = find_stimulus(stimuli_dir, label, image_type, mapping)
                if path is not None:
                    cells[0, col] = _load_stimulus_cell(path)
        first_recon_row = len(row_headers)
        for subject, layer_set, roi in row_keys:
            row_headers.append([subject] + ([layer_set] if layer_set else [])
                               + ([roi] if several_rois else []))
        row_of = {key: first_recon_row + index for index, key in enumerate(row_keys)}
        col_of = {label: index for index, label in enumerate(columns)}
        for rec in recs:
            if rec.label in col_of:
                cells[row_of[rec.subject, rec.layer_set or "", rec.roi],
                      col_of[rec.label]] = _load_cell(rec)
        panels[script] = compose_panel(row_headers, columns, cells, title=script,
                                       layout=layout)
    return panels


def make_figures(results_dir: PathLike, out_dir: Optional[PathLike] = None,
                 stimuli_dir: Optional[PathLike] = None,
                 mapping: Optional[Union[PathLike, StimulusMapping]] = None,
                 labels: Optional[Sequence[str]] = None,
                 scripts: Optional[Iterable[str]] = None,
                 layout: PanelLayout = PanelLayout()) -> list[Path]:
    """Write ``<out_dir>/<script>.png`` for every script found; return the paths.

    ``out_dir`` defaults to ``results_dir/figures``; other arguments as
    :func:`script_panels`.
    """
    panels = script_panels(results_dir, stimuli_dir, mapping, labels, scripts, layout)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "figures"
    written = []
    for script, panel in panels.items():
        path = out / f"{script}.png"
        with atomic_output(path) as tmp:
            panel.save(tmp, format="PNG")
        written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.figure",
        description="Write one paper-style PNG panel per script of a results tree.")
    parser.add_argument("results_dir", help="results folder (or one script's folder)")
    parser.add_argument("--stimuli", default=None,
                        help="stimulus folder; adds a ground-truth row on top")
    parser.add_argument("--mapping", default=None,
                        help="CSV of label,filename (or image_type,label,filename) rows")
    parser.add_argument("--out-dir", default=None,
                        help="where the PNGs go (default: RESULTS_DIR/figures)")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="columns in this order (default: the script's label order)")
    parser.add_argument("--scripts", nargs="+", default=None,
                        help="script folder names to draw (default: all found)")
    parser.add_argument("--cell", type=int, default=PanelLayout.cell,
                        help="image cell side in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.cell < 1:
        parser.error("--cell must be a positive number of pixels")
    if args.stimuli is not None and not Path(args.stimuli).is_dir():
        print(f"error: stimulus folder {args.stimuli} does not exist", file=sys.stderr)
        return 1
    try:
        written = make_figures(args.results_dir, args.out_dir, args.stimuli, args.mapping,
                               args.labels, args.scripts, PanelLayout(cell=args.cell))
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not written:
        print(f"error: no recon_img-<label>.mat files under {args.results_dir}",
              file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
