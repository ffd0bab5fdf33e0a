"""The original's published fMRI files: their names, subjects and figshare ids, where they
lie, and the check that a file is a BData file (bdpy's HDF5 format; no bdpy needed).

The original repository's ``data/fmri/README.md`` and ``download_fmri.sh`` list six
preprocessed files, served at ``https://ndownloader.figshare.com/files/<id>``::

    sub-0N_perceptionNaturalImageTraining_original_VC.h5   (N = 1, 2, 3: S1, S2, S3)
    sub-0N_perceptionNaturalImageTest_original_VC.h5

They lie in the fMRI folder (``data/fmri`` in the original; ``decode_features.py``'s
``fmri_dir``). No md5 and no size of them is published (not in the original repository,
its README or the lab's other repositories), and they are not among the files of the
decoded features' article 7033577: a file is present when it exists, and intact when it
is an HDF5 file with BData's ``dataset`` and ``metadata``.

Nothing here reads a file but :func:`check_bdata_file` (h5py, imported when it runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from .._util import PathLike
from ..errors import ConfigError, DamagedFileError
from .layout import DEFAULT_DATA_DIR

__all__ = ["SUBJECT_IDS", "FMRI_KINDS", "FMRI_FIGSHARE_IDS", "FMRI_DIRNAME", "fmri_file_name",
           "published_fmri_names", "parse_fmri_file_name", "published_fmri_files",
           "default_fmri_dir", "check_bdata_file"]

#: The original's subjects and their names in the fMRI files.
SUBJECT_IDS: Dict[str, str] = {"S1": "sub-01", "S2": "sub-02", "S3": "sub-03"}
#: The two files of a subject: the training sessions and the test sessions.
FMRI_KINDS: Tuple[str, str] = ("training", "test")
#: Figshare file id of each published file, by (subject, kind), as the original's
#: ``data/fmri/README.md`` lists them.
FMRI_FIGSHARE_IDS: Dict[Tuple[str, str], int] = {
    ("S1", "training"): 14830643, ("S2", "training"): 14830712,
    ("S3", "training"): 14830862, ("S1", "test"): 14830631,
    ("S2", "test"): 14830697, ("S3", "test"): 14830856,
}
#: The fMRI folder inside the data folder, as in the original.
FMRI_DIRNAME = "fmri"


def fmri_file_name(subject: str, kind: str) -> str:
    """Name of a published file, e.g. ``sub-01_perceptionNaturalImageTraining_original_VC.h5``.

    Parameters
    ----------
    subject : {"S1", "S2", "S3"}
    kind : {"training", "test"}

    Raises
    ------
    ConfigError
        ``subject`` has no published fMRI.
    """
    if subject not in SUBJECT_IDS:
        raise ConfigError(f"no published fMRI for subject {subject!r} (published: "
                          f"{', '.join(SUBJECT_IDS)}); give your own files in fmri_files")
    if kind not in FMRI_KINDS:
        raise ValueError(f"kind must be 'training' or 'test', not {kind!r}")
    session = "Training" if kind == "training" else "Test"
    return f"{SUBJECT_IDS[subject]}_perceptionNaturalImage{session}_original_VC.h5"


def published_fmri_names() -> Dict[str, Tuple[str, str]]:
    """The six published file names, each with its (subject, kind), training files first."""
    return {fmri_file_name(s, k): (s, k) for k in FMRI_KINDS for s in SUBJECT_IDS}


def parse_fmri_file_name(name: str) -> Optional[Tuple[str, str]]:
    """(subject, kind) of a published file name; None for any other name."""
    return published_fmri_names().get(name)


def published_fmri_files(fmri_dir: PathLike, subjects: Sequence[str]
                         ) -> Dict[Tuple[str, str], Path]:
    """``(subject, kind) -> <fmri_dir>/<published name>`` for the given subjects."""
    return {(subject, kind): Path(fmri_dir, fmri_file_name(subject, kind))
            for subject in subjects for kind in FMRI_KINDS}


def default_fmri_dir(data_dir: PathLike = DEFAULT_DATA_DIR) -> Path:
    """``<data_dir>/fmri``: where the original keeps the fMRI files."""
    return Path(data_dir, FMRI_DIRNAME)


def check_bdata_file(path: PathLike, item: Optional[str] = None) -> None:
    """Raise :class:`DamagedFileError` unless ``path`` is an HDF5 file with BData's
    ``dataset`` and ``metadata`` (either spelling bdpy reads: BrainDecoderToolbox2 wrote
    ``dataSet`` / ``metaData``).

    Parameters
    ----------
    item : str, optional
        The download item that provides the file (carried by the error).
    """
    import h5py  # only here: the download command's --help stays light
    path = Path(path)
    if not h5py.is_hdf5(str(path)):
        raise DamagedFileError(path, "not an HDF5 file (truncated, or not a BData file)", item)
    try:
        with h5py.File(str(path), "r") as handle:
            names = set(handle.keys())
    except OSError as err:  # an HDF5 signature, but cut short or corrupt
        raise DamagedFileError(path, f"HDF5 cannot open it ({err})", item) from err
    absent = [key for key, old in (("dataset", "dataSet"), ("metadata", "metaData"))
              if key not in names and old not in names]
    if absent:
        raise DamagedFileError(path, f"an HDF5 file without BData's {' and '.join(absent)}",
                               item)
