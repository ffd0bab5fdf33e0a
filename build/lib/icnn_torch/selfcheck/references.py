"""The original icnn's own Caffe results: which files, where they come from, how they read.

The reference files (4 per case plus ``orig_img.jpg``, 7 MB for all cases) are fetched
from ``https://raw.githubusercontent.com/KamitaniLab/icnn/<commit>/<path>`` (the base
address is overridable with ``ICNN_TORCH_ICNN_RAW_URL``) through
:func:`icnn_torch.fetch.http.fetch`, checked against the md5 recorded in
:data:`REFERENCE_MD5` and cached under ``<data-dir>/icnn_test_reference/<commit>/<path>``;
later runs need no network.

Each case's ``options.pkl`` is a Python 2 pickle; :func:`load_options` reads it with a
restricted unpickler that may only construct numpy scalars, dtypes and arrays.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from PIL import Image

from .._util import PathLike
from ..errors import DamagedFileError, MissingDataError
from ..fetch.http import fetch, remote_url
from ..store.layout import DEFAULT_DATA_DIR
from .cases import Case

__all__ = ["PINNED_COMMIT", "ORIG_IMG_PATH", "REFERENCE_DIRNAME", "REFERENCE_MD5",
           "reference_url", "reference_folder", "fetch_references", "load_options",
           "Reference", "read_reference"]

#: The commit of KamitaniLab/icnn whose ``test/`` folder holds the reference results.
PINNED_COMMIT = "793e58a98e89d9e834d5ae49cc9f8c69c9116337"

#: The original image whose true features are the targets (path in that repository).
ORIG_IMG_PATH = "examples/data/orig_img.jpg"

#: Folder under ``--data-dir`` where the reference files are cached, per commit.
REFERENCE_DIRNAME = "icnn_test_reference"

#: md5 of every reference file at :data:`PINNED_COMMIT` (computed from the repository).
REFERENCE_MD5: dict[str, str] = {
    ORIG_IMG_PATH: "3bcb3f0ff7bd9354237c6e89e8247416",
    "test/icnn_gd/options.pkl": "e4915cabaceb304244370009a2bd8ae6",
    "test/icnn_gd/recon_img.mat": "b5c849a51181fb9a56851eb3d63bdf2c",
    "test/icnn_gd/loss_list.mat": "224543df9a079a12d43f3b36a76909c9",
    "test/icnn_gd/initial_img.png": "2377ef2067e1e432aab7e81bf5f134fd",
    "test/icnn_gd_quick/options.pkl": "16bcbe0b2b18648e5b210d79e363dcc0",
    "test/icnn_gd_quick/recon_img.mat": "b2c4976fc6b06be61c7e16b9e19f1453",
    "test/icnn_gd_quick/loss_list.mat": "8e161e718f106cb180fad730177714fc",
    "test/icnn_gd_quick/initial_img.png": "575afa2150ce21a6e6d28b353dd118e5",
    "test/icnn_lbfgs/options.pkl": "37a03b5a6a119a4bd193d3164d64f6d9",
    "test/icnn_lbfgs/recon_img.mat": "9c78f46fc3fac4bf307f30d595ef185a",
    "test/icnn_lbfgs/loss_list.mat": "b4a1a6b18ed27f7ce6dc9e76eb95fcba",
    "test/icnn_lbfgs/initial_img.png": "d77242055a5e56446a23796a21e6bebf",
    "test/icnn_lbfgs_quick/options.pkl": "5e48ce3c66d5c763a73de8b420e45fbd",
    "test/icnn_lbfgs_quick/recon_img.mat": "9afac907a735b05da894d89bf93f17c1",
    "test/icnn_lbfgs_quick/loss_list.mat": "8469ea836b1a6a75f8b7ba53cd65f3a3",
    "test/icnn_lbfgs_quick/initial_img.png": "77090dce02f2145e06f0351c8800d0bb",
    "test/icnn_dgn_gd/options.pkl": "bba7b52437afc0315907ff0cf63ab6d8",
    "test/icnn_dgn_gd/recon_img.mat": "dfdc407c50a45be10e473610d023648f",
    "test/icnn_dgn_gd/loss_list.mat": "4734144d856eda9ab6f57262851463c9",
    "test/icnn_dgn_gd/initial_gen_feat.mat": "f546cad5e3370d9140fd6a88de29530b",
    "test/icnn_dgn_gd_quick/options.pkl": "d5a9e66b59ea359607a70c09f06ba462",
    "test/icnn_dgn_gd_quick/recon_img.mat": "86c004a6f4ce4bf9388625588ea49f88",
    "test/icnn_dgn_gd_quick/loss_list.mat": "cab29fd93232ea1550dae090d929b896",
    "test/icnn_dgn_gd_quick/initial_gen_feat.mat": "b7d70e5a405721eb888d7d1e14b79f38",
    "test/icnn_dgn_lbfgs/options.pkl": "89019c286e57fff213ebcf7b5e6363af",
    "test/icnn_dgn_lbfgs/recon_img.mat": "996d8fbcd15029b48b7f132f5179a94d",
    "test/icnn_dgn_lbfgs/loss_list.mat": "8f437b2ed3e299445db5573936599a0b",
    "test/icnn_dgn_lbfgs/initial_gen_feat.mat": "69be25bc1c3a3f2b27e1be079fea3df7",
    "test/icnn_dgn_lbfgs_quick/options.pkl": "5942784636b24a371f6b1698c27a7d97",
    "test/icnn_dgn_lbfgs_quick/recon_img.mat": "551725ab7a50faa74d1378d460f5938f",
    "test/icnn_dgn_lbfgs_quick/loss_list.mat": "35c68c809459caa176bcd4e447b572f6",
    "test/icnn_dgn_lbfgs_quick/initial_gen_feat.mat": "52976d086157f2be743750d05dc72b82",
}


# --------------------------------------------------------------------------- fetching

def reference_url(path: str, commit: str = PINNED_COMMIT) -> str:
    """Raw address of a file of the original repository at ``commit``.

    The base (default ``https://raw.githubusercontent.com/KamitaniLab/icnn``) comes from
    :func:`icnn_torch.fetch.http.remote_url` (environment variable
    ``ICNN_TORCH_ICNN_RAW_URL``).
    """
    return f"{remote_url('icnn_raw').rstrip('/')}/{commit}/{path}"


def reference_folder(data_dir: PathLike = DEFAULT_DATA_DIR, commit: str = PINNED_COMMIT) -> Path:
    """``<data_dir>/icnn_test_reference/<commit>``: the cache, in the repository's layout."""
    return Path(data_dir, REFERENCE_DIRNAME, commit)


def fetch_references(cases: Iterable[Case], data_dir: PathLike = DEFAULT_DATA_DIR,
                     progress: bool = True, md5: Mapping[str, str] | None = None,
                     commit: str = PINNED_COMMIT) -> Path:
    """Make sure the reference files of ``cases`` (and ``orig_img.jpg``) are cached.

    A cached file whose md5 matches is used as it is (no request); anything else is
    (re)downloaded and verified before it replaces the cached copy.

    Parameters
    ----------
    cases : iterable of Case
    data_dir : path-like
        The cache is :func:`reference_folder` ``(data_dir, commit)``.
    progress : bool
        Progress bars (on a terminal only).
    md5 : mapping of repository path -> hex md5, optional
        The expected digests (default: :data:`REFERENCE_MD5`, those of :data:`PINNED_COMMIT`).
    commit : str

    Returns
    -------
    Path
        The cache folder.

    Raises
    ------
    ChecksumError
        A downloaded file does not match its md5 (it is deleted, the cache is untouched).
    DownloadError
        The server could not be reached or answered with an error.
    """
    md5 = REFERENCE_MD5 if md5 is None else md5
    folder = reference_folder(data_dir, commit)
    paths = [ORIG_IMG_PATH] + [p for case in cases for p in case.files]
    for path in paths:
        fetch(reference_url(path, commit), folder / path, md5=md5[path],
              progress=progress, label=f"icnn {path}")
    return folder


# --------------------------------------------------------------------------- options.pkl

# Globals a reference options.pkl may name: numpy scalars, dtypes and arrays, as Python 2
# numpy pickled them (numpy.core) or numpy 2 does (numpy._core). Nothing else is loaded.
_PICKLE_GLOBALS = {(module, name)
                   for package in ("numpy.core", "numpy._core")
                   for module, name in ((f"{package}.multiarray", "scalar"),
                                        (f"{package}.multiarray", "_reconstruct"))} | \
    {("numpy", "dtype"), ("numpy", "ndarray")}


class _OptionsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in options.pkl")
        return super().find_class(module, name)


def load_options(path: PathLike) -> dict:
    """The keyword options a case ran with, from the original's ``options.pkl``.

    The file is a Python 2 pickle (text protocol, numpy scalars and arrays pickled by
    numpy 1.x); it is read with ``encoding='latin1'``, which restores the arrays' raw
    bytes, and only numpy's scalar/array/dtype constructors may be named in it.

    Returns
    -------
    dict
        Option name -> value as pickled (e.g. ``layer_weight``: layer -> ``np.float32``;
        ``feat_upper_bound``: (4096,) float64; ``gen_feat_bounds``: list of (0, ub) pairs).

    Raises
    ------
    DamagedFileError
        Not such a pickle, or not a dict.
    """
    try:
        with open(path, "rb") as f:
            options = _OptionsUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError) as err:
        raise DamagedFileError(path, f"not a readable options pickle ({err})") from err
    if not isinstance(options, dict):
        raise DamagedFileError(path, f"holds a {type(options).__name__}, not a dict of options")
    return options


# --------------------------------------------------------------------------- one case

@dataclass
class Reference:
    """Caffe's result of one case and what it started from.

    Attributes
    ----------
    options : dict
        From ``options.pkl`` (see :func:`load_options`).
    recon_img : ndarray, (H, W, 3)
        Caffe's final image: RGB, 0..255 scale, mean added back, not clipped (float32 for
        GD and DGN, float64 for icnn_lbfgs).
    loss_list : ndarray, (n,)
        Its loss per iteration (GD) or function evaluation (L-BFGS).
    initial : ndarray
        ``initial_img.png`` as (H, W, 3) RGB uint8, or ``initial_gen_feat.mat`` ``[0]``,
        (4096,) float32.
    """

    options: dict
    recon_img: np.ndarray
    loss_list: np.ndarray
    initial: np.ndarray


def _mat_variable(path: Path, name: str) -> np.ndarray:
    import scipy.io  # heavy: not for --help

    try:
        contents = scipy.io.loadmat(str(path), variable_names=[name])
    except (ValueError, TypeError, OSError, NotImplementedError) as err:
        raise DamagedFileError(path, f"not a readable MATLAB file ({err})") from err
    if name not in contents:
        raise DamagedFileError(path, f"has no variable {name!r}")
    return np.asarray(contents[name])


def read_reference(case: Case, folder: PathLike) -> Reference:
    """Read the reference files of ``case`` from the cache ``folder`` (repository layout).

    Raises
    ------
    MissingDataError
        A file is absent (:func:`fetch_references` puts them there); its ``detail`` names
        the case.
    DamagedFileError
        A file cannot be read as what it should be.
    """
    folder = Path(folder)
    missing = [folder / p for p in case.files if not (folder / p).is_file()]
    if missing:
        raise MissingDataError(missing, detail=f"(reference files of case {case.name})")
    options = load_options(folder / case.path("options.pkl"))
    recon_img = _mat_variable(folder / case.path("recon_img.mat"), "recon_img")
    loss_list = _mat_variable(folder / case.path("loss_list.mat"), "loss_list").reshape(-1)
    if recon_img.ndim != 3 or recon_img.shape[2] != 3:
        raise DamagedFileError(folder / case.path("recon_img.mat"),
                               f"recon_img has shape {recon_img.shape}, expected (H, W, 3)")
    start = folder / case.path(case.start_file)
    if case.uses_generator:
        initial = _mat_variable(start, "initial_gen_feat")[0].astype(np.float32)
    else:
        try:
            with Image.open(start) as im:
                initial = np.asarray(im.convert("RGB"))
        except OSError as err:
            raise DamagedFileError(start, f"not a readable image ({err})") from err
    return Reference(options, recon_img, loss_list, initial)
