"""Decoded features, prepared as the original scripts prepare them before reconstructing.

The steps, each usable on its own (the figure scripts run exactly these):

1. :func:`read_decoded_features`: one image's decoded features of several layers from a
   decoded-feature tree (``<dir>/<image_type>/<network>/<layer>/<subject>/<roi>/``), each
   file checked (readable, shaped as the network's layer, finite, not all zero or
   constant);
2. :func:`correct_feature_std`: each layer rescaled to the standard deviation of true
   features, ``feat / estimate_cnn_feat_std(feat) * std0[layer]``, with ``std0`` from the
   published ``estimated_*_cnn_feat_std.mat`` file (:func:`load_feat_std`);
3. :func:`layer_weights`: ``1 / ||feat||^2`` per layer, normalised to sum 1.

Arrays: conv/pool layers (C, H, W), fc layers (N,); float32 as stored (the published
files are float32). Numpy only: no torch here. :func:`~icnn_torch.utils.estimate_cnn_feat_std`
is the original ``icnn.utils`` function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .._util import PathLike
from ..errors import DamagedFileError, MissingDataError
from ..utils import estimate_cnn_feat_std
from .layout import decode_feature_filename, decoded_feature_zip_name, feature_file_zip_name
from .matlab import READ_ERRORS, read_matlab_variables, vector_if_matlab_vector
from .published import damaged_file_error

__all__ = ["load_feat", "read_decoded_features", "load_feat_std", "correct_feature_std",
           "layer_weights"]


def load_feat(path: PathLike, item: Optional[str] = None) -> np.ndarray:
    """The variable ``feat`` of one decoded feature file.

    Parameters
    ----------
    path : path-like
        MATLAB v5 (read with scipy.io) or v7.3 (HDF5, read with h5py) file.
    item : str, optional
        The download item that provides the file, for the errors (default: the published
        zip its name belongs to, :func:`~icnn_torch.store.layout.feature_file_zip_name`).

    Returns
    -------
    np.ndarray
        Conv/pool layers: (C, H, W). fc layers (stored 1xN or Nx1): (N,).
        dtype as stored (float32 in the published files), native byte order.

    Raises
    ------
    MissingDataError
        The file does not exist.
    DamagedFileError
        The file is truncated, corrupt or foreign (a published file's md5 is compared).
    KeyError
        The file has no variable ``feat`` (the message lists its variables).
    """
    path = Path(path)
    item = item or feature_file_zip_name(path)
    if not path.is_file():
        raise MissingDataError(path, [item] if item else ())
    try:
        arr = np.asarray(read_matlab_variables(path, ["feat"])["feat"])
    except READ_ERRORS as err:
        raise damaged_file_error(path, err, item) from err
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(vector_if_matlab_vector(arr))


def read_decoded_features(decoded_features_dir: PathLike, image_type: str, network: str,
                          layers: Sequence[str], subject: str, roi: str, label: str,
                          shapes: Optional[Mapping[str, Sequence[int]]] = None
                          ) -> dict[str, np.ndarray]:
    """One image's decoded features of ``layers``, each file checked.

    Parameters
    ----------
    decoded_features_dir : path-like
        The root of a decoded-feature tree: the published one
        (``data/decodedfeatures``) or one decoded from fMRI.
    image_type, network, layers, subject, roi, label : str
        Which file of the tree (:func:`~icnn_torch.store.layout.decode_feature_filename`).
    shapes : mapping of str to shape, optional
        The network's feature shape of each layer without the batch axis ((C, H, W) conv,
        (N,) fc), e.g. from :func:`icnn_torch.recon.objective.probe_feature_shapes`.

    Returns
    -------
    dict of str to np.ndarray
        Layer -> features ((C, H, W) conv/pool, (N,) fc, as stored), in ``layers`` order.

    Raises
    ------
    MissingDataError
        One error for every missing file, naming each and the published zips that hold
        them (``items``).
    DamagedFileError
        A file that cannot be read, whose shape is not the network's (the message names the
        layer and both shapes), or whose features are NaN, infinite, all zero or constant.
    """
    paths = {layer: decode_feature_filename(decoded_features_dir, image_type, network, layer,
                                            subject, roi, label) for layer in layers}
    items = {layer: decoded_feature_zip_name(image_type, network, layer, subject)
             for layer in layers}
    missing = [layer for layer, path in paths.items() if not path.is_file()]
    if missing:
        raise MissingDataError([paths[layer] for layer in missing],
                               [items[layer] for layer in missing])
    out = {}
    for layer, path in paths.items():
        feat = load_feat(path, items[layer])

        def damaged(reason: str) -> DamagedFileError:
            return DamagedFileError(path, f"layer {layer} {reason}", items[layer])

        if shapes is not None and feat.shape != tuple(shapes[layer]):
            raise damaged(f"has features of shape {feat.shape}, but {network}'s {layer} "
                          f"gives {tuple(shapes[layer])}")
        if not np.all(np.isfinite(feat)):
            raise damaged("has NaN or infinite features")
        if not np.any(feat):
            raise damaged("has all-zero features")
        if not estimate_cnn_feat_std(feat.reshape(-1) if _is_fc_like(feat) else feat) > 0:
            raise damaged("has constant features (their std is 0, so they cannot be "
                          "rescaled)")
        out[layer] = feat
    return out


def load_feat_std(path: PathLike) -> dict[str, float]:
    """Per-layer feature standard deviations from an ``estimated_*_cnn_feat_std.mat`` file.

    Parameters
    ----------
    path : path-like
        v5 or v7.3 MAT file with one (1,1) variable per layer/blob name (conv1_1 ... fc8,
        pool*, relu*, drop*, prob in the published files).

    Returns
    -------
    dict of str to float
        name -> std (the float32 value stored, as a Python float). Variables that are
        not single numbers are skipped.

    Raises
    ------
    MissingDataError, DamagedFileError
        The file is absent, or cannot be read or holds no (1,1) numbers (``item``: the
        file's name, a file of the published data).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(path, [path.name])
    try:
        variables = read_matlab_variables(path)
    except READ_ERRORS as err:
        raise damaged_file_error(path, err, path.name) from err
    out = {}
    for name, value in variables.items():
        value = np.asarray(value)
        if value.size == 1 and value.dtype.kind in "fiu":
            out[name] = float(value.reshape(-1)[0])
    if not out:
        raise DamagedFileError(path, "it holds no (1,1) numeric variables, so it is not a "
                               "feature std file", path.name)
    return out


def _is_fc_like(feat: np.ndarray) -> bool:
    return feat.ndim == 1 or (feat.ndim == 2 and 1 in feat.shape)


def correct_feature_std(features: Mapping[str, np.ndarray],
                        feat_std0: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Rescale each layer's decoded features to the std of true features, as every
    original script does before reconstructing.

    ``feat_l <- feat_l / estimate_cnn_feat_std(feat_l) * std0[l]``, with the population
    std (ddof 0) and no centring, in that order of operations.

    Parameters
    ----------
    features : mapping layer -> array
        (C,H,W) conv/pool or (N,) / (1,N) / (N,1) fc features.
    feat_std0 : mapping layer -> float
        From :func:`load_feat_std`.

    Returns
    -------
    dict of str to np.ndarray
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
        std_est = estimate_cnn_feat_std(feat.reshape(-1) if _is_fc_like(feat) else feat)
        if not np.isfinite(std_est) or std_est == 0:
            raise ValueError(f"layer {layer!r}: estimated feature std is {std_est} "
                             "(constant or non-finite features); cannot rescale")
        corrected = feat / std_est * feat_std0[layer]
        out[layer] = corrected.reshape(-1) if _is_fc_like(feat) else corrected
    return out


def layer_weights(features: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Layer weights as the scripts set them: ``w_l = 1 / ||feat_l||^2``, normalised to
    sum to 1 (norms in float64).

    Returns
    -------
    dict of str to float
        layer -> weight, in the order of ``features``.

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
