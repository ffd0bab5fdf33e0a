"""Paper-style figure panels of a results tree: one panel per script folder, written as
PNG and PDF.

A panel (:func:`icnn_torch.analysis.panel.compose_panel`) is laid out like the paper's
figures 2-8, at print size:

- the title on top: the paper's figure number and title from the folder's run record
  (``figure_title``, e.g. "Fig 2. ..."), else the folder's name;
- one column per image label, in the script's order (the record's ``labels``; labels it
  does not list, and all labels of results without a record, follow in natural order;
  ``labels`` gives an explicit list), headed by the label;
- with a stimulus folder, a ground-truth row headed "Stimulus" on top (stimulus lookup as
  in :mod:`icnn_torch.analysis.evaluate`; a missing stimulus image gives a warning and an
  empty cell marked "no image"), set off from the reconstructions by a wider gap;
- one row per (subject, layer set, ROI) found, ordered by subject, then layer set, then
  ROI (each in the record's order), headed by its subject and its ROI, or, in a script
  with layer sets, by its subject and layer set (and the ROI too when the panel has
  several);
- a caption below: the method and its iteration count (e.g. "DGN + gradient descent, 200
  iterations"), the network, and the ROI when the rows do not name it (results without
  a record have no caption).

A cell shows the script's ``recon_img_normalized-<label>.jpg`` (or, without it, the
``.mat`` image clipped to 0..255); a reconstruction that is absent leaves a cell marked
"no image". Panels are written (atomically) as ``<out dir>/<script>.png`` (300 dpi by
default) and ``.pdf`` (fonts embedded as TrueType), by default into
``RESULTS_DIR/figures/``. The command line is ``python -m icnn_torch.figure``
(:mod:`icnn_torch.analysis.cli`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image

from .._util import PathLike, atomic_output
from ..errors import ConfigError, OutputError
from ..recon.engines import ENGINES
from ..store.results import (Reconstruction, ScriptResults, find_script_results,
                             load_reconstruction)
from .panel import PanelStyle, as_uint8, compose_panel
from .stimuli import (StimulusMapping, find_stimulus, load_stimulus, read_stimulus_mapping,
                      stimulus_patterns)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["STIMULUS_ROW", "STIMULUS_MAX_PIXELS", "script_panel", "script_panels",
           "make_figures"]

#: Header of the ground-truth row.
STIMULUS_ROW = "Stimulus"
#: Longest side, in pixels, of a stimulus image as drawn (the reconstructions are 224).
STIMULUS_MAX_PIXELS = 512


def _load_cell(rec: Reconstruction) -> np.ndarray:
    if rec.jpg_path.is_file():  # any RGB image file reads as a stimulus does
        return as_uint8(load_stimulus(rec.jpg_path))
    return as_uint8(load_reconstruction(rec.mat_path, "clip"))


def _stimulus_cell(path: Path) -> np.ndarray:
    img = as_uint8(load_stimulus(path))
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
                    raise OutputError(f"cannot write {path}: {err.strerror or err}",
                                      path) from err
                written.append(path)
    return written
