"""The fMRI data of the original: bdpy BData files, one training and one test file per subject.

The six published files (their names, subjects and figshare ids:
:mod:`icnn_torch.store.fmri_files`) are download items of the fetch layer
(:mod:`icnn_torch.fetch.items`): :func:`ensure_fmri_files` makes them present through
:func:`icnn_torch.fetch.ensure.ensure_files`, which asks once on a terminal (showing what
is missing and the free space; no size of these files is published) and never without
one.

Each is a BData file of KamitaniLab's ``bdpy`` (HDF5: ``/dataset`` samples x columns,
``/metadata`` key/description/value per column, ``/vmap`` value -> label maps). One sample
is one trial (one stimulus presentation); the voxel columns of visual cortex carry
per-ROI metadata flags ``ROI_V1``, ``ROI_V2`` ... ``ROI_VC`` (1 marks a voxel of the ROI).
They are read with ``bdpy.BData`` and ``BData.select('ROI_<name> = 1')`` as the lab's own
decoding code does.

Stimulus labels. The lab's decoders read the label of every sample with
``BData.get_labels('stimulus_name')`` (a numeric column plus its vmap, value ->
``"n01518878_10042"``); older code of the lab reads the numeric ``stimulus_id``
(``1518878.010042``: the integer part is the WordNet synset, the six decimals the image
number) and turns it into the file name ``n01518878_10042``. :func:`read_labels` accepts
both. The published files could not be opened while this was written (no network to
figshare here): which of the two forms they hold is not verified; the error of a file
with neither lists the keys it has.

ROIs. The names are those of the paper (V1 V2 V3 V4 LOC FFA PPA LVC HVC VC); each selects
the columns flagged ``ROI_<name> = 1``. V4 is ``ROI_hV4`` in the lab's later files
(``ROI_V4`` in its earlier ones); both are tried.

No md5 of the six files is published in the original repository, in its README or in the
lab's other repositories (searched), and they are not among the files of the decoded
features' article 7033577 (whose list ships with this package): a downloaded file is
checked to be a readable BData file.

bdpy (the ``decoding`` extra) is imported when a file is read.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._util import PathLike
from ..errors import ConfigError, DamagedFileError, MissingDataError
from ..fetch.ensure import Fetching, ensure_files
from ..fetch.items import Place
from ..store.layout import DEFAULT_DATA_DIR, DEFAULT_NET_DIR
from ..store.fmri_files import (FMRI_FIGSHARE_IDS, FMRI_KINDS, SUBJECT_IDS, check_bdata_file,
                                fmri_file_name, parse_fmri_file_name, published_fmri_files)

if TYPE_CHECKING:  # bdpy is imported when a file is read
    import bdpy

__all__ = ["SUBJECT_IDS", "FMRI_FIGSHARE_IDS", "ROIS", "DEFAULT_LABEL_KEY", "FmriData",
           "fmri_file_name", "published_fmri_files", "ensure_fmri_files", "open_bdata",
           "roi_selector", "read_labels", "load_fmri", "stimulus_name_from_id",
           "stimulus_sort_key", "average_trials"]

#: ROI names of the paper, low to high visual areas, then the unions.
ROIS: Tuple[str, ...] = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")

#: Metadata keys tried for an ROI name (default: ``ROI_<name>``).
ROI_KEYS: Dict[str, Tuple[str, ...]] = {"V4": ("ROI_V4", "ROI_hV4")}

#: The label column the lab's decoders read.
DEFAULT_LABEL_KEY = "stimulus_name"
#: Tried when :data:`DEFAULT_LABEL_KEY` is absent: the numeric stimulus id.
STIMULUS_ID_KEY = "stimulus_id"

#: The two files of a subject (:data:`icnn_torch.store.fmri_files.FMRI_KINDS`).
KINDS = FMRI_KINDS

_STIMULUS_NAME = re.compile(r"^n(\d+)_(\d+)$")


def ensure_fmri_files(files: Mapping[Tuple[str, str], PathLike], how: Fetching = Fetching(),
                      place: Optional[Place] = None) -> List[Path]:
    """Make sure the fMRI files are present; fetch the published ones that are not.

    Parameters
    ----------
    files : mapping (subject, kind) -> path
        A published file's name makes it a download item into its folder; other files
        (one's own) are only checked to exist.
    how : Fetching
        Asking (on a terminal only), ``assume_yes``, progress, ``verify`` (read each file
        as BData).
    place : Place, optional
        The data and net folders named in messages (default ``data`` and ``net``).

    Returns
    -------
    list of Path
        The files downloaded (empty when all were present: no network is used).

    Raises
    ------
    MissingDataError
        A file is missing and is not published (no ``items``), or downloading was declined
        or not allowed (``items``: the published files).
    DownloadError, ChecksumError, DamagedFileError
        A download failed or did not give a BData file (which is deleted).
    """
    paths = [Path(p) for p in files.values()]
    foreign = [p for p in paths if parse_fmri_file_name(p.name) is None and not p.is_file()]
    if foreign:
        raise MissingDataError(foreign, detail="(these are not the published files; check "
                                               "fmri_files)")
    place = place or Place(Path(DEFAULT_DATA_DIR), Path(DEFAULT_NET_DIR))
    folders: Dict[Path, List[str]] = {}
    for path in paths:
        if parse_fmri_file_name(path.name) is not None:
            folders.setdefault(path.parent, []).append(path.name)
    fetched: List[Path] = []
    for folder, names in folders.items():
        fetched += [folder / name for name in
                    ensure_files(names, dataclasses.replace(place, fmri_dir=folder), how)]
    return fetched


def open_bdata(path: PathLike) -> "bdpy.BData":
    """Read a BData file (all of it; bdpy holds the dataset as float64).

    Raises
    ------
    MissingDataError
        The file does not exist (``items``: the file's name when it is a published one).
    DamagedFileError
        Not a BData file, or truncated.
    """
    path = Path(path)
    item = path.name if parse_fmri_file_name(path.name) is not None else None
    if not path.is_file():
        raise MissingDataError(path, () if item is None else (item,))
    check_bdata_file(path, item)
    import bdpy
    try:
        return bdpy.BData(str(path))
    except (OSError, KeyError, ValueError) as err:
        raise DamagedFileError(path, f"bdpy could not read it ({err})") from err


def roi_selector(bdata: "bdpy.BData", roi: str, path: PathLike = "the fMRI file") -> str:
    """The ``BData.select`` expression of an ROI name, e.g. ``"ROI_VC = 1"``.

    ``roi`` may also be a full expression (it contains ``=``), used as it is.

    Raises
    ------
    ConfigError
        The file has no metadata key for the ROI (the message lists the ROI keys it has).
    """
    if "=" in roi:
        return roi
    keys = list(bdata.metadata.key)
    for key in ROI_KEYS.get(roi, (f"ROI_{roi}",)):
        if key in keys:
            return f"{key} = 1"
    have = sorted(k for k in keys if k.startswith("ROI_"))
    raise ConfigError(f"{path} has no ROI {roi!r} (no metadata key "
                      f"{' or '.join(ROI_KEYS.get(roi, (f'ROI_{roi}',)))}); its ROIs: "
                      f"{', '.join(k[4:] for k in have) or 'none'}")


def stimulus_name_from_id(stimulus_id: float) -> str:
    """``1518878.010042`` -> ``"n01518878_10042"`` (synset, then the six-decimal image
    number), the lab's rule for its ``stimulus_id`` column."""
    synset = int(math.floor(stimulus_id))
    image = int(round((stimulus_id - synset) * 1e6))
    return f"n{synset:08d}_{image}"


def stimulus_sort_key(label: str) -> tuple:
    """Order of stimulus names: by (synset, image number) for ``n<synset>_<image>`` names,
    that is by the numeric stimulus id; other names after those, alphabetically."""
    match = _STIMULUS_NAME.match(label)
    if match:
        return (0, int(match.group(1)), int(match.group(2)), "")
    return (1, 0, 0, label)


def read_labels(bdata: "bdpy.BData", label_key: str = DEFAULT_LABEL_KEY,
                path: PathLike = "the fMRI file") -> List[str]:
    """The stimulus label of every sample (``"n/a"`` for samples without one).

    ``label_key`` with a vmap gives the vmap's labels; a numeric column without one is
    read as stimulus ids (:func:`stimulus_name_from_id`). When the default key is absent,
    ``stimulus_id`` is tried.

    Raises
    ------
    ConfigError
        No such key (the message lists the file's metadata and vmap keys).
    """
    candidates = [label_key] + ([STIMULUS_ID_KEY] if label_key == DEFAULT_LABEL_KEY else [])
    keys = list(bdata.metadata.key)
    vmap_keys = list(bdata.get_vmap_keys())
    for key in candidates:
        if key in vmap_keys:
            return [str(label) for label in bdata.get_labels(key)]
        if key in keys:
            values = np.asarray(bdata.select(key, verbose=False), dtype=np.float64)
            if values.ndim != 2 or values.shape[1] != 1:
                raise ConfigError(f"{path}: label key {key!r} selects {values.shape[1]} "
                                  "columns, expected one")
            return ["n/a" if np.isnan(v) else stimulus_name_from_id(float(v))
                    for v in values[:, 0]]
    raise ConfigError(f"{path} has no label column {' or '.join(map(repr, candidates))}; "
                      f"metadata keys: {', '.join(k for k in keys if not k.startswith('ROI_'))}; "
                      f"vmap keys: {', '.join(vmap_keys) or 'none'} (set label_key)")


@dataclass
class FmriData:
    """The samples of one ROI.

    Attributes
    ----------
    voxels : ndarray, shape (n_samples, n_voxels), float64
        One row per trial (samples without a label are dropped).
    labels : list of str
        Stimulus name of each row.
    path : Path
    roi : str
    """

    voxels: np.ndarray
    labels: List[str]
    path: Path
    roi: str


def load_fmri(source, roi: str, label_key: str = DEFAULT_LABEL_KEY) -> FmriData:
    """The samples of ``roi`` with their labels.

    Parameters
    ----------
    source : path or (path, bdpy.BData)
        A BData file, or one already read with :func:`open_bdata` (reading is the slow
        part: pass it when several ROIs come from one file).
    roi : str
        An ROI name (:data:`ROIS`) or a ``BData.select`` expression.
    label_key : str
    """
    if isinstance(source, tuple):
        path, bdata = Path(source[0]), source[1]
    else:
        path = Path(source)
        bdata = open_bdata(path)
    voxels = np.asarray(bdata.select(roi_selector(bdata, roi, path), verbose=False),
                        dtype=np.float64)
    labels = read_labels(bdata, label_key, path)
    keep = np.array([label != "n/a" for label in labels], dtype=bool)
    if not keep.any():
        raise ConfigError(f"{path}: no sample has a {label_key!r} label")
    return FmriData(voxels[keep], [l for l, k in zip(labels, keep) if k], path, roi)


def average_trials(voxels: np.ndarray, labels: Sequence[str],
                   order: Sequence[str]) -> np.ndarray:
    """The mean of the trials of each label, as the lab's prediction script averages test
    trials.

    Parameters
    ----------
    voxels : ndarray, shape (n_trials, n_voxels)
    labels : sequence of str, length n_trials
    order : sequence of str
        The labels of the output rows.

    Returns
    -------
    ndarray, shape (len(order), n_voxels), dtype of ``voxels``
    """
    labels = np.asarray(labels)
    rows = []
    for label in order:
        mask = labels == label
        if not mask.any():
            raise ValueError(f"no trial has the label {label!r}")
        rows.append(voxels[mask].mean(axis=0))
    return np.stack(rows)
