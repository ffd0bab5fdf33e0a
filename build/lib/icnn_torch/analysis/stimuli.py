"""Stimulus images: finding the image of a label (by folder layout or a CSV mapping) and
reading it, for the evaluation, the figures and the decoding of features from fMRI.

Lookup order of :func:`find_stimulus`: the mapping (``image_type,label`` first, then
``label``), then ``<stimuli>/<image_type>/<label>.<ext>``, then ``<stimuli>/<label>.<ext>``,
extensions in the order of :data:`STIMULUS_EXTENSIONS` (case-insensitively).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from .._util import PathLike
from ..errors import ConfigError, DamagedFileError

__all__ = ["STIMULUS_EXTENSIONS", "StimulusMapping", "read_stimulus_mapping", "find_stimulus",
           "stimulus_patterns", "load_stimulus"]

#: File extensions tried for a stimulus image, in this order (matched case-insensitively).
STIMULUS_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".JPEG", ".tif", ".tiff",
                                        ".bmp", ".gif", ".webp")

#: ``(image_type or None, label) -> stimulus file`` (see :func:`read_stimulus_mapping`).
StimulusMapping = Mapping[tuple[Optional[str], str], Path]


def read_stimulus_mapping(csv_path: PathLike, stimuli_dir: Optional[PathLike] = None
                          ) -> dict[tuple[Optional[str], str], Path]:
    """Read a label -> stimulus file mapping.

    Parameters
    ----------
    csv_path : path
        Rows ``label,filename`` or ``image_type,label,filename``. Blank rows, rows
        starting with ``#`` and a header row (first cell ``label`` or ``image_type``)
        are skipped.
    stimuli_dir : path, optional
        Folder relative file names are resolved against (default: the CSV's folder).

    Returns
    -------
    dict
        ``(image_type or None, label) -> Path``.

    Raises
    ------
    ConfigError
        The file does not exist, or a row has another number of cells.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ConfigError(f"stimulus mapping {csv_path} does not exist")
    base = Path(stimuli_dir) if stimuli_dir is not None else csv_path.parent
    mapping: dict[tuple[Optional[str], str], Path] = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if line_no == 1 and cells[0].lower() in ("label", "image_type"):
                continue
            if len(cells) == 2:
                key: tuple[Optional[str], str] = (None, cells[0])
            elif len(cells) == 3:
                key = (cells[0], cells[1])
            else:
                raise ConfigError(f"{csv_path}:{line_no}: expected 'label,filename' or "
                                  f"'image_type,label,filename', got {row!r}")
            mapping[key] = base / cells[-1]
    return mapping


def _with_any_extension(folder: Path, stem: str) -> Optional[Path]:
    if not folder.is_dir():
        return None
    by_suffix: dict[str, Path] = {}
    for candidate in folder.glob(f"{_glob_escape(stem)}.*"):
        if candidate.stem == stem and candidate.is_file():
            by_suffix.setdefault(candidate.suffix.lower(), candidate)
    for ext in STIMULUS_EXTENSIONS:
        if ext.lower() in by_suffix:
            return by_suffix[ext.lower()]
    return None


def _glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def find_stimulus(stimuli_dir: PathLike, label: str, image_type: Optional[str] = None,
                  mapping: Optional[StimulusMapping] = None) -> Optional[Path]:
    """The stimulus file of ``label`` (lookup order in the module docstring), or None.

    Raises
    ------
    ConfigError
        The mapping names a file that does not exist.
    """
    if mapping:
        keys = ([(image_type, label)] if image_type else []) + [(None, label)]
        for key in keys:
            if key in mapping:
                path = Path(mapping[key])
                if not path.is_file():
                    raise ConfigError(f"the stimulus mapping names {path} for {label}, "
                                      "but that file does not exist")
                return path
    folder = Path(stimuli_dir)
    if image_type:
        found = _with_any_extension(folder / image_type, label)
        if found is not None:
            return found
    return _with_any_extension(folder, label)


def stimulus_patterns(stimuli_dir: PathLike, label: str,
                      image_type: Optional[str] = None) -> list[str]:
    """Where :func:`find_stimulus` looks in the folder (for messages), e.g.
    ``["stimuli/natural/Img0009.*", "stimuli/Img0009.*"]``."""
    folder = Path(stimuli_dir)
    return ([str(folder / image_type / f"{label}.*")] if image_type else []) + \
        [str(folder / f"{label}.*")]


def load_stimulus(path: PathLike, size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """A stimulus image as RGB float64 0..255, shape (H, W, 3).

    Parameters
    ----------
    path : path
    size : (height, width), optional
        Resize (bicubic) to this size when it differs.

    Raises
    ------
    DamagedFileError
        The file is not an image PIL can read.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.float64)
    except (UnidentifiedImageError, OSError) as err:
        raise DamagedFileError(path, f"not readable as an image ({err})") from err
