"""Decoded-feature data layer: paths, MATLAB feature files, std correction, image mean.

Everything here is local file reading; nothing touches the network (downloads live in
:mod:`icnn_torch.download`). Paths follow the original demo's layout, relative to the
project root (SPEC sections 3 and 6)::

    data/decodedfeatures/<image_type>/<network>/<layer>/<subject>/<roi>/
        <image_type>-<network>-<layer>-<subject>-<roi>-<label>.mat     (variable ``feat``)
    data/estimated_vgg19_cnn_feat_std.mat                 (one (1,1) variable per layer)
    data/estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat (same, network VGG19_leaky)
    data/ilsvrc_2012_mean.npy                             (3x256x256 BGR mean image)
    data/act_range/3x/fc7.txt                             (4096 generator input bounds)
    net/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel
    net/generator_for_inverting_fc7/generator.caffemodel

Functions take ``data_dir`` / ``net_dir`` arguments (defaults ``"data"`` / ``"net"``,
i.e. relative to the current directory, which the scripts set to the project root).

A file that is absent raises :class:`MissingDataError` (a ``FileNotFoundError``) whose
message names the file and the exact command that downloads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from ._util import PathLike
from .errors import MissingDataError


DEFAULT_DATA_DIR = "data"
DEFAULT_NET_DIR = "net"
DATA_DIR = DEFAULT_DATA_DIR  # aliases
NET_DIR = DEFAULT_NET_DIR

#: Names inside ``data_dir`` (SPEC section 6).
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

#: Per-channel mean of ``ilsvrc_2012_mean.npy`` (B, G, R, 0..255 scale): the default input
#: convention of the nets, and what the scripts use when the file is absent.
IMAGENET_MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434], dtype=np.float32)

FC7_UNITS = 4096


def download_command(names: Iterable[str], data_dir: PathLike = DEFAULT_DATA_DIR,
                     net_dir: PathLike = DEFAULT_NET_DIR, extra_args: str = "") -> str:
    """The ``python -m icnn_torch.download`` command line that fetches ``names``.

    ``--data-dir`` / ``--net-dir`` are added only when they differ from the defaults.
    """
    parts = ["python", "-m", "icnn_torch.download"]
    if extra_args:
        parts.append(extra_args)
    if Path(data_dir) != Path(DEFAULT_DATA_DIR):
        parts += ["--data-dir", _shell_quote(str(data_dir))]
    if Path(net_dir) != Path(DEFAULT_NET_DIR):
        parts += ["--net-dir", _shell_quote(str(net_dir))]
    parts += [_shell_quote(n) for n in names]
    return " ".join(parts)


def _shell_quote(text: str) -> str:
    import shlex
    return shlex.quote(text)


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
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, _download_command_for_feature_path(path))
    arr = _read_matlab_variables(path, ["feat"])["feat"]
    arr = np.asarray(arr)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(_vector_if_matlab_vector(arr))


def _download_command_for_feature_path(path: Path) -> str:
    """``python -m icnn_torch.download <zip>`` for a path in the decoded-feature layout."""
    parts = path.parts
    # .../decodedfeatures/<image_type>/<network>/<layer>/<subject>/<roi>/<file>
    if len(parts) >= 7 and parts[-7] == DECODED_FEATURES_DIRNAME:
        image_type, network, layer, subject = parts[-6:-2]
        data_dir = Path(*parts[:-7]) if len(parts) > 7 else Path(".")
        return download_command(
            [decoded_feature_zip_name(image_type, network, layer, subject)], data_dir=data_dir)
    return "python -m icnn_torch.download --help   (see the list of files)"


def load_decoded_features(data_dir: PathLike, image_type: str, network: str,
                          layers: Sequence[str], subject: str, roi: str,
                          label: str) -> dict:
    """Decoded features of one image for several layers.

    Returns
    -------
    dict[str, np.ndarray]
        layer -> ``load_feat`` array ((C,H,W) conv/pool, (N,) fc), in ``layers`` order.

    Raises
    ------
    MissingDataError
        One exception for all missing layers, naming every file and one download
        command with all the zips needed.
    """
    paths = {layer: decoded_feature_path(data_dir, image_type, network, layer, subject,
                                         roi, label) for layer in layers}
    missing = [layer for layer, p in paths.items() if not p.is_file()]
    if missing:
        zips = [decoded_feature_zip_name(image_type, network, layer, subject)
                for layer in missing]
        raise MissingDataError([paths[layer] for layer in missing],
                               download_command(zips, data_dir=data_dir))
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
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, download_command([path.name], data_dir=path.parent))
    out = {}
    for name, value in _read_matlab_variables(path).items():
        value = np.asarray(value)
        if value.size == 1 and value.dtype.kind in "fiu":
            out[name] = float(value.reshape(-1)[0])
    if not out:
        raise ValueError(f"{path}: no (1,1) numeric variables found; is this a feature "
                         "std file?")
    return out


# --------------------------------------------------------------------------- std and weights

def _estimate_feat_std(feat: np.ndarray) -> float:
    """SPEC section 4 via ``icnn_torch.utils.estimate_cnn_feat_std`` (imported lazily so
    that this module and the downloader stay free of torch until std correction is used).
    fc-like arrays are flattened to (N,) first so that Nx1 is accepted too."""
    from .utils import estimate_cnn_feat_std
    return estimate_cnn_feat_std(feat.reshape(-1) if _is_fc_like(feat) else feat)


def _is_fc_like(feat: np.ndarray) -> bool:
    return feat.ndim == 1 or (feat.ndim == 2 and 1 in feat.shape)


def correct_feature_std(features: Mapping[str, np.ndarray],
                        feat_std0: Mapping[str, float]) -> dict:
    """Rescale each layer's decoded features to the std of true features (SPEC 4, 7).

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
    """Layer weights ``w_l = 1 / ||feat_l||^2``, normalised to sum to 1 (SPEC 4).

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
    """
    path = Path(path) if path is not None else image_mean_path()
    if not path.is_file():
        mean = IMAGENET_MEAN_BGR.copy()
        source = (f"image mean: built-in constants BGR {tuple(float(m) for m in mean)} "
                  f"({path} not found; to use the file: "
                  f"{download_command([IMAGE_MEAN_FILENAME], data_dir=path.parent)})")
        return mean, source
    arr = np.load(str(path), allow_pickle=False)
    if arr.ndim == 3 and arr.shape[0] == 3:
        mean = arr.mean(axis=(1, 2))
    elif arr.shape == (3,):
        mean = arr
    else:
        raise ValueError(f"{path}: image mean shaped {arr.shape}, expected (3, H, W) or (3,)")
    mean = np.asarray(mean, dtype=np.float32)
    return mean, f"image mean: per-channel average of {path} (BGR {tuple(float(m) for m in mean)})"


def load_fc7_upper_bound(path: Optional[PathLike] = None) -> np.ndarray:
    """Upper bounds of the generator input (``act_range/3x/fc7.txt``).

    Returns
    -------
    np.ndarray, shape (4096,), float32
        One bound per fc7 unit (integers 2..6 in the published file); the lower bound is 0.
    """
    path = Path(path) if path is not None else fc7_bounds_path()
    if not path.is_file():
        data_dir = path.parent.parent.parent if path.parts[-3:] == FC7_BOUNDS_RELPATH.parts \
            else Path(DEFAULT_DATA_DIR)
        raise MissingDataError(path, download_command(["fc7_bounds"], data_dir=data_dir))
    values = np.loadtxt(str(path), dtype=np.float64, ndmin=1).reshape(-1)
    if values.shape != (FC7_UNITS,):
        raise ValueError(f"{path}: {values.shape[0]} values, expected shape ({FC7_UNITS},)")
    return values.astype(np.float32)
