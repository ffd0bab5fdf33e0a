"""The fMRI data of the original: bdpy BData files, one training and one test file per subject.

The original repository's ``data/fmri/README.md`` lists six preprocessed files (on
figshare, served at ``https://ndownloader.figshare.com/files/<id>``)::

    sub-0N_perceptionNaturalImageTraining_original_VC.h5   (N = 1, 2, 3: S1, S2, S3)
    sub-0N_perceptionNaturalImageTest_original_VC.h5

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
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._util import PathLike, is_terminal
from ..errors import ConfigError, DamagedFileError, MissingDataError

if TYPE_CHECKING:  # bdpy is imported when a file is read
    import bdpy

__all__ = ["SUBJECT_IDS", "FMRI_FIGSHARE_IDS", "ROIS", "DEFAULT_LABEL_KEY", "FmriData",
           "fmri_file_name", "published_fmri_files", "ensure_fmri_files", "open_bdata",
           "roi_selector", "read_labels", "load_fmri", "stimulus_name_from_id",
           "stimulus_sort_key", "average_trials"]

#: The original's subjects and their names in the fMRI files.
SUBJECT_IDS: Dict[str, str] = {"S1": "sub-01", "S2": "sub-02", "S3": "sub-03"}

#: Figshare file id of each published file, by (subject, "training" | "test"), as the
#: original's ``data/fmri/README.md`` lists them.
FMRI_FIGSHARE_IDS: Dict[Tuple[str, str], int] = {
    ("S1", "training"): 14830643, ("S2", "training"): 14830712,
    ("S3", "training"): 14830862, ("S1", "test"): 14830631,
    ("S2", "test"): 14830697, ("S3", "test"): 14830856,
}

#: ROI names of the paper, low to high visual areas, then the unions.
ROIS: Tuple[str, ...] = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")

#: Metadata keys tried for an ROI name (default: ``ROI_<name>``).
ROI_KEYS: Dict[str, Tuple[str, ...]] = {"V4": ("ROI_V4", "ROI_hV4")}

#: The label column the lab's decoders read.
DEFAULT_LABEL_KEY = "stimulus_name"
#: Tried when :data:`DEFAULT_LABEL_KEY` is absent: the numeric stimulus id.
STIMULUS_ID_KEY = "stimulus_id"

KINDS = ("training", "test")

_STIMULUS_NAME = re.compile(r"^n(\d+)_(\d+)$")


def fmri_file_name(subject: str, kind: str) -> str:
    """Name of a published file, e.g. ``sub-01_perceptionNaturalImageTraining_original_VC.h5``.

    Parameters
    ----------
    subject : {"S1", "S2", "S3"}
    kind : {"training", "test"}
    """
    if subject not in SUBJECT_IDS:
        raise ConfigError(f"no published fMRI for subject {subject!r} (published: "
                          f"{', '.join(SUBJECT_IDS)}); give your own files in fmri_files")
    if kind not in KINDS:
        raise ValueError(f"kind must be 'training' or 'test', not {kind!r}")
    session = "Training" if kind == "training" else "Test"
    return f"{SUBJECT_IDS[subject]}_perceptionNaturalImage{session}_original_VC.h5"


def published_fmri_files(fmri_dir: PathLike, subjects: Sequence[str]
                         ) -> Dict[Tuple[str, str], Path]:
    """``(subject, kind) -> <fmri_dir>/<published name>`` for the given subjects."""
    return {(subject, kind): Path(fmri_dir, fmri_file_name(subject, kind))
            for subject in subjects for kind in KINDS}


def _published_key(path: Path) -> Optional[Tuple[str, str]]:
    for key in FMRI_FIGSHARE_IDS:
        if path.name == fmri_file_name(*key):
            return key
    return None


def _download_command(paths: Sequence[Path]) -> str:
    """A shell command that fetches the published files among ``paths``."""
    from ..fetch.http import remote_url
    base = remote_url("figshare_files").rstrip("/")
    lines = []
    for path in paths:
        key = _published_key(path)
        if key is not None:
            lines.append(f"curl -L -o {path} {base}/{FMRI_FIGSHARE_IDS[key]}")
    return " && ".join(lines) or "(none: these are not published files)"


def ensure_fmri_files(files: Mapping[Tuple[str, str], PathLike], download: str = "ask",
                      progress: bool = True,
                      timeout: float = 60.0) -> List[Path]:
    """Make sure the fMRI files are present; fetch the published ones that are not.

    Parameters
    ----------
    files : mapping (subject, kind) -> path
    download : {"ask", "yes", "no"}
        Missing published files: ask on a terminal (never without one), download, or
        stop with the command that downloads them.

    Returns
    -------
    list of Path
        The files downloaded (empty when all were present: no network is used).

    Raises
    ------
    MissingDataError
        A file is missing and is not published, or downloading was declined.
    DownloadError, ChecksumError, DamagedFileError
        A download failed or did not give a BData file.
    """
    missing = [Path(p) for p in files.values() if not Path(p).is_file()]
    if not missing:
        return []
    foreign = [p for p in missing if _published_key(p) is None]
    if foreign:
        raise MissingDataError(foreign, detail="(these are not the published files; check "
                                               "fmri_files)")
    command = _download_command(missing)
    if download == "ask":
        if not (is_terminal(sys.stdin) and is_terminal(sys.stderr)):
            raise MissingDataError(missing, detail="(not asking: standard input is not a "
                                                   f"terminal; --yes downloads them: {command})")
        sys.stderr.write("These fMRI files are needed and missing:\n  "
                         + "\n  ".join(map(str, missing)) + "\nDownload them now? [y/N] ")
        sys.stderr.flush()
        download = "yes" if sys.stdin.readline().strip().lower() in ("y", "yes") else "no"
    if download != "yes":
        raise MissingDataError(missing, detail=f"Download with: {command}")
    from ..fetch.http import fetch, remote_url
    base = remote_url("figshare_files").rstrip("/")
    fetched = []
    for number, path in enumerate(missing, 1):
        key = _published_key(path)
        sys.stderr.write(f"[{number}/{len(missing)}] {path.name}\n")
        fetch(f"{base}/{FMRI_FIGSHARE_IDS[key]}", path, progress=progress, timeout=timeout)
        try:
            _check_bdata_file(path)
        except DamagedFileError:
            path.unlink()
            raise
        fetched.append(path)
    return fetched


def _check_bdata_file(path: Path) -> None:
    """Raise :class:`DamagedFileError` unless ``path`` is an HDF5 file with BData's
    ``dataset`` and ``metadata``."""
    import h5py
    if not h5py.is_hdf5(str(path)):
        raise DamagedFileError(path, "not an HDF5 file (truncated, or not a BData file)")
    with h5py.File(str(path), "r") as f:
        names = set(f.keys())
    # bdpy reads both spellings (BrainDecoderToolbox2 wrote dataSet/metaData)
    absent = [key for key, old in (("dataset", "dataSet"), ("metadata", "metaData"))
              if key not in names and old not in names]
    if absent:
        raise DamagedFileError(path, f"an HDF5 file without BData's {' and '.join(absent)}")


def open_bdata(path: PathLike) -> "bdpy.BData":
    """Read a BData file (all of it; bdpy holds the dataset as float64).

    Raises
    ------
    MissingDataError
        The file does not exist (the message names the download command of a published
        file).
    DamagedFileError
        Not a BData file, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, detail=f"Download with: {_download_command([path])}")
    _check_bdata_file(path)
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
