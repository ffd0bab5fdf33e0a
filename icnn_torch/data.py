"""Decoded-feature data layer: paths, the published file list, MATLAB feature files, std
correction, image mean, and the check of a run's selection against the data.

Everything here is local file reading; nothing touches the network (downloads live in
:mod:`icnn_torch.download`). Paths follow the original demo's layout, relative to the
project root::

    data/decodedfeatures/<image_type>/<network>/<layer>/<subject>/<roi>/
        <image_type>-<network>-<layer>-<subject>-<roi>-<label>.mat     (variable ``feat``)
    data/estimated_vgg19_cnn_feat_std.mat                 (one (1,1) variable per layer)
    data/estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat (same, network VGG19_leaky)
    data/ilsvrc_2012_mean.npy                             (3x256x256 BGR mean image)
    data/act_range/3x/fc7.txt                             (4096 generator input bounds)
    net/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel
    net/generator_for_inverting_fc7/generator.caffemodel

Functions take ``data_dir`` / ``net_dir`` arguments (defaults ``"data"`` / ``"net"``,
i.e. relative to the current directory, which the scripts set to the project root). A
decoded-feature tree can also be addressed by its root (the scripts' constant
``decoded_features_dir``, the original's ``./data/decodedfeatures``): see
:func:`decode_feature_filename` and the ``features_dir`` argument of
:func:`load_decoded_features`.

What the published data holds (figshare article 7033577) is read from the file list
shipped with the package, ``icnn_torch/article_7033577_files.csv`` (the article's own
``file_list.csv``: name, file id, md5): :func:`published_files`. :func:`check_plan`
checks a run's subjects, ROIs, labels and layers against it (or, for a tree of one's own,
against what is on disk) before anything is read or downloaded.

A file that is absent raises :class:`MissingDataError` (a ``FileNotFoundError``) whose
message names the file and the exact command that downloads it; a file that cannot be
read (truncated, corrupt, foreign) raises :class:`DamagedFileError` (a ``ValueError``)
naming the file and the command that replaces it.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import shlex
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from ._util import PathLike
from .errors import ConfigError, DamagedFileError, MissingDataError
from .nets.tables import FC7_UNITS, IMAGENET_MEAN_BGR

if TYPE_CHECKING:
    from .config import RunPlan

DEFAULT_DATA_DIR = "data"
DEFAULT_NET_DIR = "net"
DATA_DIR = DEFAULT_DATA_DIR  # aliases
NET_DIR = DEFAULT_NET_DIR

#: Names inside ``data_dir`` (the original's).
DECODED_FEATURES_DIRNAME = "decodedfeatures"
IMAGE_MEAN_FILENAME = "ilsvrc_2012_mean.npy"
FEAT_STD_FILENAMES = {
    "VGG19": "estimated_vgg19_cnn_feat_std.mat",
    "VGG19_leaky": "estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat",
}
FC7_BOUNDS_RELPATH = Path("act_range", "3x", "fc7.txt")

#: Names inside ``net_dir``. The ``.pt`` files are KamitaniLab's PyTorch conversions
#: (``python -m icnn_torch.download --pytorch vgg19 generator``).
VGG19_CAFFEMODEL_RELPATH = Path("VGG_ILSVRC_19_layers", "VGG_ILSVRC_19_layers.caffemodel")
VGG19_PT_RELPATH = Path("VGG_ILSVRC_19_layers", "VGG_ILSVRC_19_layers.pt")
GENERATOR_CAFFEMODEL_RELPATH = Path("generator_for_inverting_fc7", "generator.caffemodel")
GENERATOR_PT_RELPATH = Path("generator_for_inverting_fc7", "generator.pt")


#: The figshare article of the published data, and the file list shipped with the package.
ARTICLE_ID = 7033577
ARTICLE_FILE_LIST = f"article_{ARTICLE_ID}_files.csv"
#: ROIs of the published decoded features.
PUBLISHED_ROIS = ("V1", "V2", "V3", "V4", "HVC", "VC")
#: Number of test images per image type in the published decoded features (labels
#: ``Img0001`` ... in the paper's order): 50 natural images, 40 colour shapes, 10 letters,
#: 25 imagined images.
PUBLISHED_LABEL_COUNTS = {"natural": 50, "color_shape": 40, "alphabet": 10, "imagery": 25}


def download_command(names: Iterable[str] = (), data_dir: PathLike = DEFAULT_DATA_DIR,
                     net_dir: PathLike = DEFAULT_NET_DIR, extra_args: str = "",
                     defaults: Tuple[PathLike, PathLike] = (DEFAULT_DATA_DIR,
                                                            DEFAULT_NET_DIR)) -> str:
    """The ``python -m icnn_torch.download`` command line that fetches ``names``.

    ``--data-dir`` / ``--net-dir`` are added only when they are not the folders the
    command uses by itself (``defaults``: ``data`` and ``net`` of the current folder, or a
    script's own folders with ``--script``).
    """
    parts = ["python", "-m", "icnn_torch.download"]
    if extra_args:
        parts.append(extra_args)
    for flag, value, default in (("--data-dir", data_dir, defaults[0]),
                                 ("--net-dir", net_dir, defaults[1])):
        if Path(value).resolve() != Path(default).resolve():
            parts += [flag, shlex.quote(str(value))]
    parts += [shlex.quote(n) for n in names]
    return " ".join(parts)


def file_md5(path: PathLike) -> str:
    """Hex md5 of a file (read in 1 MiB blocks)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- published files

@dataclasses.dataclass(frozen=True)
class FigshareFile:
    """One file of a figshare article: name, file id, size in bytes (None when not
    recorded), md5 (hex, or None)."""

    name: str
    id: int
    size: Optional[int]
    md5: Optional[str]


@functools.lru_cache(maxsize=None)
def _shipped_files() -> Dict[str, FigshareFile]:
    text = resources.files(__package__).joinpath(ARTICLE_FILE_LIST).read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["name"]: FigshareFile(r["name"], int(r["id"]), int(r["size"]) if r["size"] else None,
                                    r["md5"].lower() or None) for r in rows}


def published_files() -> Dict[str, FigshareFile]:
    """The 251 files of figshare article 7033577, from the list shipped with the package
    (no network): file name -> :class:`FigshareFile`. A fresh dict on every call."""
    return dict(_shipped_files())


def parse_decoded_feature_zip_name(name: str) -> Optional[Tuple[str, str, str, str]]:
    """``(image_type, network, layer, subject)`` of a name like
    ``decodedfeatures-natural-VGG19-conv1_1-S1.zip``, else None."""
    parts = Path(name).name.split("-")
    if len(parts) != 5 or parts[0] != DECODED_FEATURES_DIRNAME or not parts[4].endswith(".zip"):
        return None
    return parts[1], parts[2], parts[3], parts[4][:-4]


def published_labels(image_type: str) -> Tuple[str, ...]:
    """The image labels of the published decoded features of ``image_type``
    (``Img0001`` ... ``Img0050`` for natural; empty for an unknown type)."""
    return tuple(f"Img{i:04d}" for i in range(1, PUBLISHED_LABEL_COUNTS.get(image_type, 0) + 1))


# --------------------------------------------------------------------------- paths

def decoded_feature_zip_name(image_type: str, network: str, layer: str, subject: str) -> str:
    """Figshare name of the zip holding one layer of one subject, e.g.
    ``decodedfeatures-natural-VGG19-conv1_1-S1.zip``."""
    return f"decodedfeatures-{image_type}-{network}-{layer}-{subject}.zip"


def decoded_feature_dir(data_dir: PathLike, image_type: str, network: str, layer: str,
                        subject: str) -> Path:
    """Folder a decoded-feature zip unpacks to:
    ``<data_dir>/decodedfeatures/<image_type>/<network>/<layer>/<subject>``."""
    return Path(data_dir, DECODED_FEATURES_DIRNAME, image_type, network, layer, subject)


def decode_feature_filename(decoded_features_dir: PathLike, image_type: str, network: str,
                            layer: str, subject: str, roi: str, label: str) -> Path:
    """Path of one decoded feature file in a decoded-feature tree (the original scripts'
    ``decode_feature_filename``):

    ``<decoded_features_dir>/<image_type>/<network>/<layer>/<subject>/<roi>/``
    ``<image_type>-<network>-<layer>-<subject>-<roi>-<label>.mat``
    """
    name = f"{image_type}-{network}-{layer}-{subject}-{roi}-{label}.mat"
    return Path(decoded_features_dir, image_type, network, layer, subject, roi, name)


def decoded_feature_path(data_dir: PathLike, image_type: str, network: str, layer: str,
                         subject: str, roi: str, label: str) -> Path:
    """Path of one decoded feature file of the published tree,
    ``<data_dir>/decodedfeatures/...`` (see :func:`decode_feature_filename`)."""
    return decode_feature_filename(Path(data_dir, DECODED_FEATURES_DIRNAME), image_type,
                                   network, layer, subject, roi, label)


def feat_std_path(data_dir: PathLike = DEFAULT_DATA_DIR, network: str = "VGG19") -> Path:
    """Std file for ``network`` ("VGG19" or "VGG19_leaky")."""
    try:
        return Path(data_dir, FEAT_STD_FILENAMES[network])
    except KeyError:
        raise ValueError(f"no feature std file for network {network!r}; "
                         f"known: {sorted(FEAT_STD_FILENAMES)}") from None


def image_mean_path(data_dir: PathLike = DEFAULT_DATA_DIR) -> Path:
    """``<data_dir>/ilsvrc_2012_mean.npy``."""
    return Path(data_dir, IMAGE_MEAN_FILENAME)


def fc7_bounds_path(data_dir: PathLike = DEFAULT_DATA_DIR) -> Path:
    """``<data_dir>/act_range/3x/fc7.txt``."""
    return Path(data_dir, FC7_BOUNDS_RELPATH)


def _pick_weights(net_dir: PathLike, caffe_rel: Path, pt_rel: Path,
                  pytorch: Optional[bool]) -> Path:
    caffe_path, pt_path = Path(net_dir, caffe_rel), Path(net_dir, pt_rel)
    if pytorch is True:
        return pt_path
    if pytorch is False:
        return caffe_path
    if not caffe_path.exists() and pt_path.exists():
        return pt_path
    return caffe_path


def vgg19_weights_path(net_dir: PathLike = DEFAULT_NET_DIR,
                       pytorch: Optional[bool] = None) -> Path:
    """VGG19 weights: the caffemodel (``pytorch=False``), KamitaniLab's ``.pt``
    (``pytorch=True``), or whichever exists, caffemodel first (``None``; the caffemodel
    path when neither exists)."""
    return _pick_weights(net_dir, VGG19_CAFFEMODEL_RELPATH, VGG19_PT_RELPATH, pytorch)


def generator_weights_path(net_dir: PathLike = DEFAULT_NET_DIR,
                           pytorch: Optional[bool] = None) -> Path:
    """DeePSiM fc7 generator weights; ``pytorch`` as in :func:`vgg19_weights_path`."""
    return _pick_weights(net_dir, GENERATOR_CAFFEMODEL_RELPATH, GENERATOR_PT_RELPATH, pytorch)


# --------------------------------------------------------------------------- MATLAB files

def _is_hdf5(path: Path) -> bool:
    """True for MATLAB v7.3 files (HDF5, usually behind a 512-byte MATLAB userblock)."""
    import h5py
    return bool(h5py.is_hdf5(str(path)))


def _read_hdf5_matlab_variable(path: Path, name: str) -> np.ndarray:
    """One numeric variable of a v7.3 file, axes restored to MATLAB's order.

    MATLAB writes column-major arrays, so HDF5 (row-major) sees the dimensions
    reversed: a MATLAB (C,H,W) array is a (W,H,C) dataset. Reversing all axes again
    gives the same array ``scipy.io.loadmat`` returns for a v5 file.
    """
    import h5py
    with h5py.File(str(path), "r") as f:
        if name not in f:
            raise KeyError(f"{path}: no variable {name!r} (variables: {sorted(f.keys())})")
        node = f[name]
        if not isinstance(node, h5py.Dataset):
            raise ValueError(f"{path}: variable {name!r} is a MATLAB struct/group, "
                             "expected a numeric array")
        matlab_class = node.attrs.get("MATLAB_class", b"")
        if isinstance(matlab_class, bytes):
            matlab_class = matlab_class.decode("ascii", "replace")
        if matlab_class in ("cell", "struct", "char") or node.dtype.kind not in "fiub":
            raise ValueError(f"{path}: variable {name!r} has MATLAB class "
                             f"{matlab_class or node.dtype}, expected a numeric array")
        data = node[()]
    return np.ascontiguousarray(np.asarray(data).transpose())


def _hdf5_variable_names(path: Path):
    import h5py
    with h5py.File(str(path), "r") as f:
        return [k for k in f.keys() if not k.startswith("#")]


def _read_matlab_variables(path: Path, names: Optional[Sequence[str]] = None) -> dict:
    """Numeric variables of a v5 or v7.3 MAT file, as arrays with MATLAB's axis order."""
    if _is_hdf5(path):
        wanted = list(names) if names is not None else _hdf5_variable_names(path)
        return {n: _read_hdf5_matlab_variable(path, n) for n in wanted}
    import scipy.io
    contents = scipy.io.loadmat(str(path), variable_names=names)
    out = {k: v for k, v in contents.items() if not k.startswith("__")}
    if names is not None:
        absent = [n for n in names if n not in out]
        if absent:
            present = sorted(scipy.io.whosmat(str(path)), key=str)
            raise KeyError(f"{path}: no variable(s) {absent} "
                           f"(variables: {[v[0] for v in present]})")
    return out


def _read_errors() -> tuple:
    """What the readers raise on a truncated, corrupt or foreign file (scipy.io gives
    ``OSError: could not read bytes``, ``IndexError`` or ``MatReadError``; h5py and numpy
    ``OSError`` / ``ValueError``)."""
    from scipy.io.matlab import MatReadError
    return OSError, ValueError, EOFError, IndexError, zlib.error, MatReadError


def _damaged(path: Path, err: BaseException, command: str) -> DamagedFileError:
    """The error for a file that exists but cannot be read; a published file's md5 is
    compared with the published one (the figures say whether the file itself is bad)."""
    if isinstance(err, DamagedFileError):
        return err
    reason = f"it cannot be read ({type(err).__name__}: {err})"
    entry = published_files().get(path.name)
    if entry is not None and entry.md5 is not None:
        got = file_md5(path)
        reason += (f"; its md5 {got} differs from the published {entry.md5}"
                   if got != entry.md5 else "; its md5 is the published one")
    return DamagedFileError(path, reason, command)


def _vector_if_matlab_vector(arr: np.ndarray) -> np.ndarray:
    """MATLAB has no 1-D arrays: a 1xN or Nx1 matrix is a vector; flatten it to (N,)."""
    if arr.ndim == 2 and 1 in arr.shape:
        return arr.reshape(-1)
    return arr


def load_feat(path: PathLike) -> np.ndarray:
    """Load the variable ``feat`` of one decoded feature file.

    Parameters
    ----------
    path : path-like
        MATLAB v5 (read with scipy.io) or v7.3 (HDF5, read with h5py) file.

    Returns
    -------
    np.ndarray
        Conv/pool layers: (C, H, W). fc layers (stored 1xN or Nx1): (N,).
        dtype as stored (float32 in the published files), native byte order.

    Raises
    ------
    MissingDataError
        The file does not exist (the message names the zip that holds it when the path
        follows the decoded-feature layout).
    DamagedFileError
        The file is truncated or corrupt (the message names it and the command that
        downloads its zip again).
    KeyError
        The file has no variable ``feat`` (the message lists its variables).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, _download_command_for_feature_path(path))
    try:
        arr = np.asarray(_read_matlab_variables(path, ["feat"])["feat"])
    except _read_errors() as err:
        raise _damaged(path, err, _download_command_for_feature_path(path, "--verify")) \
            from err
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(_vector_if_matlab_vector(arr))


def _download_command_for_feature_path(path: Path, extra_args: str = "") -> str:
    """``python -m icnn_torch.download [extra_args] <zip>`` for a path in the published
    layout ``.../decodedfeatures/<image_type>/<network>/<layer>/<subject>/<roi>/<file>``."""
    parts = path.parts
    if len(parts) >= 7 and parts[-7] == DECODED_FEATURES_DIRNAME:
        image_type, network, layer, subject = parts[-6:-2]
        data_dir = Path(*parts[:-7]) if len(parts) > 7 else Path(".")
        return download_command([decoded_feature_zip_name(image_type, network, layer, subject)],
                                data_dir=data_dir, extra_args=extra_args)
    return ("(none: this decoded-feature tree is not the published one; decode the "
            "features into it again)")


def load_decoded_features(data_dir: Optional[PathLike], image_type: str, network: str,
                          layers: Sequence[str], subject: str, roi: str, label: str,
                          features_dir: Optional[PathLike] = None) -> dict:
    """Decoded features of one image for several layers.

    Parameters
    ----------
    data_dir : path-like or None
        The features are read from ``<data_dir>/decodedfeatures`` ...
    features_dir : path-like, optional
        ... or, when given, from the tree rooted here (the scripts'
        ``decoded_features_dir``; ``data_dir`` is then not used).

    Returns
    -------
    dict[str, np.ndarray]
        layer -> ``load_feat`` array ((C,H,W) conv/pool, (N,) fc), in ``layers`` order.

    Raises
    ------
    MissingDataError
        One exception for all missing layers, naming every file and one download
        command with all the zips needed.
    DamagedFileError
        A file cannot be read (see :func:`load_feat`).
    """
    root = Path(features_dir) if features_dir is not None else \
        Path(data_dir, DECODED_FEATURES_DIRNAME)
    paths = {layer: decode_feature_filename(root, image_type, network, layer, subject, roi, label)
             for layer in layers}
    missing = [layer for layer, p in paths.items() if not p.is_file()]
    if missing:
        zips = [decoded_feature_zip_name(image_type, network, layer, subject)
                for layer in missing]
        command = download_command(zips, data_dir=root.parent) \
            if root.name == DECODED_FEATURES_DIRNAME else \
            _download_command_for_feature_path(paths[missing[0]])
        raise MissingDataError([paths[layer] for layer in missing], command)
    return {layer: load_feat(p) for layer, p in paths.items()}


def load_feat_std(path: PathLike) -> dict:
    """Per-layer feature standard deviations from an ``estimated_*_cnn_feat_std.mat`` file.

    Parameters
    ----------
    path : path-like
        v5 or v7.3 MAT file with one (1,1) variable per layer/blob name (conv1_1 ... fc8,
        pool*, relu*, drop*, prob in the published files).

    Returns
    -------
    dict[str, float]
        name -> std (the float32 value stored, as a Python float). Variables that are
        not single numbers are skipped.

    Raises
    ------
    MissingDataError, DamagedFileError
        The file is absent, or cannot be read or holds no (1,1) numbers (both name the
        file and the command that downloads it).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, download_command([path.name], data_dir=path.parent))
    try:
        variables = _read_matlab_variables(path)
    except _read_errors() as err:
        raise _damaged(path, err, download_command([path.name], data_dir=path.parent,
                                                   extra_args="--verify")) from err
    out = {}
    for name, value in variables.items():
        value = np.asarray(value)
        if value.size == 1 and value.dtype.kind in "fiu":
            out[name] = float(value.reshape(-1)[0])
    if not out:
        raise DamagedFileError(path, "it holds no (1,1) numeric variables, so it is not a "
                               "feature std file", download_command(
                                   [path.name], data_dir=path.parent, extra_args="--verify"))
    return out


# --------------------------------------------------------------------------- std and weights

def _estimate_feat_std(feat: np.ndarray) -> float:
    """The original's std estimate (mean of per-channel stds for conv/pool, plain std for
    fc) via ``icnn_torch.utils.estimate_cnn_feat_std`` (imported lazily so that this
    module and the downloader stay free of torch until std correction is used).
    fc-like arrays are flattened to (N,) first so that Nx1 is accepted too."""
    from .utils import estimate_cnn_feat_std
    return estimate_cnn_feat_std(feat.reshape(-1) if _is_fc_like(feat) else feat)


def _is_fc_like(feat: np.ndarray) -> bool:
    return feat.ndim == 1 or (feat.ndim == 2 and 1 in feat.shape)


def correct_feature_std(features: Mapping[str, np.ndarray],
                        feat_std0: Mapping[str, float]) -> dict:
    """Rescale each layer's decoded features to the std of true features, as every
    original script does before reconstructing.

    ``feat_l <- feat_l / estimate_std(feat_l) * std0[l]``, with the population std
    (ddof 0) and no centring, in that order of operations.

    Parameters
    ----------
    features : mapping layer -> array
        (C,H,W) conv/pool or (N,) / (1,N) / (N,1) fc features.
    feat_std0 : mapping layer -> float
        From :func:`load_feat_std`.

    Returns
    -------
    dict[str, np.ndarray]
        Same keys and order; conv/pool keep (C,H,W); fc become (N,). dtype of the input
        (float32 stays float32).

    Raises
    ------
    KeyError
        A layer has no entry in ``feat_std0``.
    ValueError
        A layer's estimated std is zero or not finite (constant or broken features).
    """
    out = {}
    for layer, feat in features.items():
        feat = np.asarray(feat)
        if layer not in feat_std0:
            raise KeyError(f"layer {layer!r} has no entry in the feature std file "
                           f"(it has {len(feat_std0)} entries)")
        std_est = _estimate_feat_std(feat)
        if not np.isfinite(std_est) or std_est == 0:
            raise ValueError(f"layer {layer!r}: estimated feature std is {std_est} "
                             "(constant or non-finite features); cannot rescale")
        corrected = feat / std_est * feat_std0[layer]
        out[layer] = corrected.reshape(-1) if _is_fc_like(feat) else corrected
    return out


def layer_weights_inverse_sq_norm(features: Mapping[str, np.ndarray]) -> dict:
    """Layer weights ``w_l = 1 / ||feat_l||^2``, normalised to sum to 1 (the scripts').

    Norms are computed in float64.

    Returns
    -------
    dict[str, float]
        layer -> weight, same order as ``features``.

    Raises
    ------
    ValueError
        No layers, or a layer whose features are all zero / not finite (named).
    """
    if not features:
        raise ValueError("no layers given: cannot compute layer weights")
    inverse = {}
    for layer, feat in features.items():
        sq_norm = float(np.sum(np.square(np.asarray(feat, dtype=np.float64))))
        if not np.isfinite(sq_norm):
            raise ValueError(f"layer {layer!r}: features contain non-finite values")
        if sq_norm == 0.0:
            raise ValueError(f"layer {layer!r}: features are all zero, so 1/||f||^2 is "
                             "undefined; drop the layer or check the feature file")
        inverse[layer] = 1.0 / sq_norm
    total = sum(inverse.values())
    return {layer: value / total for layer, value in inverse.items()}


# --------------------------------------------------------------------------- mean, bounds

def load_image_mean(path: Optional[PathLike] = None) -> Tuple[np.ndarray, str]:
    """Per-channel image mean used by VGG19 (B, G, R on the 0..255 scale).

    Parameters
    ----------
    path : path-like, optional
        ``ilsvrc_2012_mean.npy`` (3x256x256 BGR). Default ``data/ilsvrc_2012_mean.npy``.

    Returns
    -------
    mean : np.ndarray, shape (3,), float32
        The per-channel average of the file, or, when the file is absent,
        :data:`IMAGENET_MEAN_BGR`.
    source : str
        A sentence saying which was used (for the caller to print).

    Raises
    ------
    DamagedFileError
        The file exists but cannot be read or is not shaped (3, H, W) or (3,).
    """
    path = Path(path) if path is not None else image_mean_path()
    command = download_command([IMAGE_MEAN_FILENAME], data_dir=path.parent)
    # a present file counts as intact without --verify (the file list records no size)
    replace = download_command([IMAGE_MEAN_FILENAME], data_dir=path.parent, extra_args="--verify")
    if not path.is_file():
        mean = IMAGENET_MEAN_BGR.copy()
        source = (f"image mean: built-in constants BGR {tuple(float(m) for m in mean)} "
                  f"({path} not found; to use the file: {command})")
        return mean, source
    try:
        arr = np.load(str(path), allow_pickle=False)
    except _read_errors() as err:
        raise _damaged(path, err, replace) from err
    if arr.ndim == 3 and arr.shape[0] == 3:
        mean = arr.mean(axis=(1, 2))
    elif arr.shape == (3,):
        mean = arr
    else:
        raise DamagedFileError(path, f"the image mean is shaped {arr.shape}, expected "
                               "(3, H, W) or (3,)", replace)
    mean = np.asarray(mean, dtype=np.float32)
    return mean, f"image mean: per-channel average of {path} (BGR {tuple(float(m) for m in mean)})"


def load_fc7_upper_bound(path: Optional[PathLike] = None) -> np.ndarray:
    """Upper bounds of the generator input (``act_range/3x/fc7.txt``).

    Returns
    -------
    np.ndarray, shape (4096,), float64
        One bound per fc7 unit (integers 2..6 in the published file); the lower bound is 0.
        float64, as the original's ``np.loadtxt``: ``icnn_dgn_gd`` then keeps its z in
        float64 after the first clip, as the original does.

    Raises
    ------
    MissingDataError, DamagedFileError
        The file is absent, or is not 4096 numbers (both name the file and the command
        that downloads it).
    """
    path = Path(path) if path is not None else fc7_bounds_path()
    data_dir = path.parent.parent.parent if path.parts[-3:] == FC7_BOUNDS_RELPATH.parts \
        else Path(DEFAULT_DATA_DIR)
    if not path.is_file():
        raise MissingDataError(path, download_command(["fc7_bounds"], data_dir=data_dir))
    command = download_command(["fc7_bounds"], data_dir=data_dir, extra_args="--verify")
    try:
        values = np.loadtxt(str(path), dtype=np.float64, ndmin=1).reshape(-1)
    except _read_errors() as err:
        raise _damaged(path, err, command) from err
    if values.shape != (FC7_UNITS,):
        raise DamagedFileError(path, f"it holds {values.shape[0]} values, expected "
                               f"{FC7_UNITS} (shape ({FC7_UNITS},))", command)
    return values


# --------------------------------------------------------------------------- the run's selection

def _published_keys() -> Dict[Tuple[str, str, str], list]:
    """(image_type, network, layer) -> subjects, from the decoded-feature zips of the list."""
    keys: Dict[Tuple[str, str, str], list] = {}
    for name in published_files():
        key = parse_decoded_feature_zip_name(name)
        if key is not None:
            keys.setdefault(key[:3], []).append(key[3])
    return keys


def _refuse(what: str, wanted: Sequence[str], valid: Sequence[str], where: str) -> None:
    """ConfigError when some of ``wanted`` are not in ``valid`` (listed in the message)."""
    bad = [w for w in wanted if w not in valid]
    if bad:
        shown = ", ".join(valid) if len(valid) <= 25 else \
            f"{valid[0]}, {valid[1]}, ..., {valid[-1]} ({len(valid)} in all)"
        raise ConfigError(f"{what} {', '.join(bad)}: not in {where}; valid: {shown or 'none'}")


def check_plan(plan: "RunPlan", features_dir: Optional[PathLike] = None) -> None:
    """Check a run's selection against what its decoded-feature tree can hold.

    Parameters
    ----------
    plan : icnn_torch.config.RunPlan
        Its image type, network, layers (all layer sets), subjects, ROIs and labels.
    features_dir : path-like, optional
        None: the published tree (figshare article 7033577), checked against the shipped
        file list (no disk access, so before anything is downloaded): image types
        natural / color_shape / alphabet (VGG19) and imagery (VGG19_leaky); the 16 conv
        and 3 fc layers for S1 S2 S3, the pool layers for S1 only; ROIs
        :data:`PUBLISHED_ROIS`; labels :func:`published_labels`. Otherwise the root of a
        tree of one's own (e.g. decoded from fMRI), checked on disk: every
        ``<image_type>/<network>/<layer>/<subject>/<roi>/`` folder of the selection must
        exist and hold a file for every label.

    Raises
    ------
    ConfigError
        One line naming the values that are not there and listing those that are.
    """
    if features_dir is None:
        keys = _published_keys()
        where = f"the published decoded features (figshare article {ARTICLE_ID})"
        _refuse("image type", [plan.image_type], sorted({k[0] for k in keys}), where)
        _refuse("network", [plan.network],
                sorted({k[1] for k in keys if k[0] == plan.image_type}),
                f"the published {plan.image_type} features")
        layers = [k[2] for k in keys if k[:2] == (plan.image_type, plan.network)]
        _refuse("layer", plan.all_layers, layers,
                f"the published {plan.image_type} {plan.network} features")
        for layer in plan.all_layers:
            _refuse("subject", plan.subjects, keys[plan.image_type, plan.network, layer],
                    f"the published {plan.image_type} features of layer {layer}")
        _refuse("ROI", plan.rois, PUBLISHED_ROIS, where)
        _refuse("image label", plan.labels, published_labels(plan.image_type),
                f"the published {plan.image_type} images")
        return

    def folders(path: Path) -> list:
        return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []

    root = Path(features_dir)
    _refuse("image type", [plan.image_type], folders(root), str(root))
    _refuse("network", [plan.network], folders(root / plan.image_type),
            str(root / plan.image_type))
    network_dir = root / plan.image_type / plan.network
    _refuse("layer", plan.all_layers, folders(network_dir), str(network_dir))
    for layer in plan.all_layers:
        _refuse("subject", plan.subjects, folders(network_dir / layer), str(network_dir / layer))
        for subject in plan.subjects:
            subject_dir = network_dir / layer / subject
            _refuse("ROI", plan.rois, folders(subject_dir), str(subject_dir))
            for roi in plan.rois:
                prefix = f"{plan.image_type}-{plan.network}-{layer}-{subject}-{roi}-"
                labels = sorted(p.name[len(prefix):-4] for p in (subject_dir / roi).iterdir()
                                if p.name.startswith(prefix) and p.suffix == ".mat")
                _refuse("image label", plan.labels, labels, str(subject_dir / roi))
