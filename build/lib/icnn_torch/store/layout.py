"""Every path and file name of the project's files, in the original demo's layout.

Relative to the project root (the scripts' folder, or ``ICNN_TORCH_ROOT``)::

    data/decodedfeatures/<image_type>/<network>/<layer>/<subject>/<roi>/
        <image_type>-<network>-<layer>-<subject>-<roi>-<label>.mat     (variable ``feat``)
    data/estimated_vgg19_cnn_feat_std.mat                 (one (1,1) variable per layer)
    data/estimated_vgg19LeakyReluAvePool_cnn_feat_std.mat (same, network VGG19_leaky)
    data/ilsvrc_2012_mean.npy                             (3x256x256 BGR mean image)
    data/act_range/3x/fc7.txt                             (4096 generator input bounds)
    net/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel
    net/generator_for_inverting_fc7/generator.caffemodel
    results/<script name>/
        options.pkl, run.json
        [<layer set>/]<subject>/<roi>/
            recon_img-<label>.mat, recon_img_normalized-<label>.jpg
            snapshots/image-<label>/

Functions take ``data_dir`` / ``net_dir`` arguments (defaults ``"data"`` / ``"net"``). A
decoded-feature tree is addressed by its root (the scripts' constant
``decoded_features_dir``, the original's ``./data/decodedfeatures``): see
:func:`decode_feature_filename`. Nothing here reads a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from .._util import PathLike

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_NET_DIR", "DECODED_FEATURES_DIRNAME",
           "IMAGE_MEAN_FILENAME", "FEAT_STD_FILENAMES", "FC7_BOUNDS_RELPATH",
           "VGG19_CAFFEMODEL_RELPATH", "VGG19_PT_RELPATH", "GENERATOR_CAFFEMODEL_RELPATH",
           "GENERATOR_PT_RELPATH", "RUN_RECORD_NAME", "OPTIONS_NAME",
           "decoded_feature_zip_name", "parse_decoded_feature_zip_name", "feature_file_zip_name",
           "decoded_feature_dir",
           "decode_feature_filename", "decoded_feature_path", "is_published_tree",
           "feat_std_path", "image_mean_path", "fc7_bounds_path", "vgg19_weights_path",
           "generator_weights_path", "job_dir", "recon_mat_path", "recon_jpg_path",
           "snapshot_dir", "is_done"]

DEFAULT_DATA_DIR = "data"
DEFAULT_NET_DIR = "net"

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

#: Names inside a script's results folder.
RUN_RECORD_NAME = "run.json"
OPTIONS_NAME = "options.pkl"


# --------------------------------------------------------------------------- decoded features

def decoded_feature_zip_name(image_type: str, network: str, layer: str, subject: str) -> str:
    """Figshare name of the zip holding one layer of one subject, e.g.
    ``decodedfeatures-natural-VGG19-conv1_1-S1.zip``."""
    return f"{DECODED_FEATURES_DIRNAME}-{image_type}-{network}-{layer}-{subject}.zip"


def parse_decoded_feature_zip_name(name: str) -> Optional[Tuple[str, str, str, str]]:
    """``(image_type, network, layer, subject)`` of a name like
    ``decodedfeatures-natural-VGG19-conv1_1-S1.zip``, else None."""
    parts = Path(name).name.split("-")
    if len(parts) != 5 or parts[0] != DECODED_FEATURES_DIRNAME or not parts[4].endswith(".zip"):
        return None
    return parts[1], parts[2], parts[3], parts[4][:-4]


def feature_file_zip_name(path: PathLike) -> Optional[str]:
    """The published zip a decoded-feature file belongs to, from the file's name
    (``<image_type>-<network>-<layer>-<subject>-<roi>-<label>.mat``), else None."""
    parts = Path(path).name.split("-")
    if len(parts) < 6 or not parts[-1].endswith(".mat"):
        return None
    return decoded_feature_zip_name(*parts[:4])


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


def is_published_tree(features_dir: Optional[PathLike], data_dir: PathLike) -> bool:
    """Whether the decoded-feature tree ``features_dir`` is the published one of
    ``data_dir`` (``<data_dir>/decodedfeatures``, whose files the downloader fetches);
    None counts as the published tree."""
    return features_dir is None or \
        Path(features_dir).resolve() == Path(data_dir, DECODED_FEATURES_DIRNAME).resolve()


# --------------------------------------------------------------------------- other data

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


# --------------------------------------------------------------------------- weights

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


# --------------------------------------------------------------------------- results

def job_dir(script_results: PathLike, subject: str, roi: str,
            layer_set: Optional[str] = None) -> Path:
    """``<script results>/[<layer set>/]<subject>/<roi>``."""
    root = Path(script_results)
    if layer_set is not None:
        root = root / layer_set
    return root / subject / roi


def recon_mat_path(out_dir: PathLike, label: str) -> Path:
    """``<out_dir>/recon_img-<label>.mat``."""
    return Path(out_dir) / f"recon_img-{label}.mat"


def recon_jpg_path(out_dir: PathLike, label: str) -> Path:
    """``<out_dir>/recon_img_normalized-<label>.jpg``."""
    return Path(out_dir) / f"recon_img_normalized-{label}.jpg"


def snapshot_dir(out_dir: PathLike, label: str) -> Path:
    """``<out_dir>/snapshots/image-<label>``."""
    return Path(out_dir) / "snapshots" / f"image-{label}"


def is_done(out_dir: PathLike, label: str) -> bool:
    """Whether a reconstruction is finished: both its outputs exist in ``out_dir`` (the
    ``.mat`` is written last)."""
    return recon_mat_path(out_dir, label).is_file() and recon_jpg_path(out_dir, label).is_file()
