"""Score reconstructions against their stimulus images.

Usage::

    python -m icnn_torch.evaluate results --stimuli path/to/stimuli [--mapping map.csv]
        [--layers conv3_4 fc7 | --no-features] [--vgg19 FILE] [--out results/evaluation.csv]
        [--device cuda:0] [--scripts 1_reconstruct_natural_image ...] [--per-image]

Metrics, per reconstruction (``results/<script>/[<layer set>/]<subject>/<roi>/
recon_img-<label>.mat``) whose stimulus image is found:

``ident_pixcorr``
    Pairwise identification accuracy by pixel correlation, as in Shen et al. (2019): the
    candidates are the stimuli of the other reconstructions of the same set (same
    script, layer set, subject and ROI); the score is the fraction of candidates whose
    Pearson correlation with the reconstruction is lower than the true stimulus's
    (ties count one half). Chance is 0.5.
``ident_euclidean``
    The same with negative Euclidean distance as the similarity.
``pixcorr``
    Pearson correlation of the flattened RGB reconstruction and stimulus.
``ssim``
    Mean structural similarity of the greyscale images (see :func:`ssim`).
``ident_<layer>``
    Pairwise identification by correlation of VGG19 features (pre-ReLU, the network
    of the reconstructions) at ``<layer>``; default layers ``conv3_4`` (middle of the 16
    conv layers) and ``fc7``.

Stimulus images are not distributed with the data (they are available from the authors
on request), so the user points ``--stimuli`` at their own folder. The image of label
``L`` (e.g. ``Img0009``) of a script with image type ``T`` (natural, color_shape,
alphabet or imagery; see :data:`SCRIPT_IMAGE_TYPES`) is looked up as

1. the mapping CSV (``--mapping``), rows ``label,filename`` or
   ``image_type,label,filename`` (an optional header row and ``#`` comments are
   skipped; file names relative to the stimuli folder or absolute); a three-column row
   wins over a two-column one;
2. ``<stimuli>/<T>/<L>.<ext>``;
3. ``<stimuli>/<L>.<ext>``;

with ``<ext>`` any of :data:`STIMULUS_EXTENSIONS` (any case). Labels repeat across image
types (``Img0001`` is a photo, a colour shape and a letter), so evaluating several image
types at once needs the per-type folders or a three-column mapping.

Images: a stimulus is read as RGB and resized to the reconstruction's size (bicubic,
PIL) as float 0..255. The reconstruction is the ``recon_img`` array of the ``.mat`` file
(RGB 0..255, not clipped), clipped to 0..255 by default (``--recon-form``).

Output: one CSV row per reconstruction plus one ``label = "mean"`` row per set, written
atomically; the mean rows (or all rows with ``--per-image``) printed as a table.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import scipy.io
from scipy.ndimage import gaussian_filter

from icnn_torch.data import DEFAULT_NET_DIR, VGG19_CAFFEMODEL_RELPATH
from icnn_torch._util import atomic_output

if TYPE_CHECKING:
    import torch

__all__ = [
    "SCRIPT_IMAGE_TYPES", "SCRIPT_LABELS", "ROI_ORDER", "STIMULUS_EXTENSIONS",
    "DEFAULT_FEATURE_LAYERS", "DEFAULT_VGG19_PATH", "BASE_COLUMNS", "Reconstruction",
    "natural_key", "roi_key", "order_labels",
    "find_reconstructions", "read_stimulus_mapping", "find_stimulus",
    "load_reconstruction", "load_stimulus", "pixcorr", "rgb_to_grey", "ssim",
    "similarity_matrix", "pairwise_identification", "feature_identification",
    "evaluate_results", "write_csv", "format_table", "main",
]

#: Image type of each script's stimuli (SPEC section 6).
SCRIPT_IMAGE_TYPES: dict[str, str] = {
    "1_reconstruct_natural_image": "natural",
    "2_reconstruct_natural_image_without_DGN": "natural",
    "3_reconstruct_natural_image_different_combinations_of_CNN_layers": "natural",
    "4_reconstruct_shape_image": "color_shape",
    "5_reconstruct_shape_image_different_ROI": "color_shape",
    "6_reconstruct_alphabet_image": "alphabet",
    "7_reconstruct_imagined_image": "imagery",
}

#: Image labels of each script in the original order (the columns of its figure).
SCRIPT_LABELS: dict[str, tuple[str, ...]] = {
    "1_reconstruct_natural_image": ("Img0009", "Img0002", "Img0001", "Img0005", "Img0036",
                                    "Img0045", "Img0031", "Img0043"),
    "2_reconstruct_natural_image_without_DGN": ("Img0002", "Img0011", "Img0045", "Img0048"),
    "3_reconstruct_natural_image_different_combinations_of_CNN_layers":
        ("Img0016", "Img0036", "Img0042"),
    "4_reconstruct_shape_image": tuple(f"Img{i:04d}" for i in range(1, 16)),
    "5_reconstruct_shape_image_different_ROI": ("Img0004", "Img0008", "Img0011"),
    "6_reconstruct_alphabet_image": ("Img0005", "Img0003", "Img0010", "Img0007", "Img0006"),
    "7_reconstruct_imagined_image": ("Img0001", "Img0005", "Img0009", "Img0008", "Img0003",
                                     "Img0010", "Img0021", "Img0022", "Img0020"),
}

#: ROIs from low to high visual areas; unknown ROIs sort after these, alphabetically.
ROI_ORDER: tuple[str, ...] = ("V1", "V2", "V3", "V4", "HVC", "VC")

#: File extensions tried for a stimulus image, in this order (matched case-insensitively).
STIMULUS_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".JPEG", ".tif", ".tiff",
                                        ".bmp", ".gif", ".webp")

#: VGG19 layers used for feature identification by default: a middle conv layer and fc7.
DEFAULT_FEATURE_LAYERS: tuple[str, ...] = ("conv3_4", "fc7")

#: Where the scripts read the VGG19 weights (relative to the project root).
DEFAULT_VGG19_PATH = Path(DEFAULT_NET_DIR) / VGG19_CAFFEMODEL_RELPATH

RECON_FORMS = ("clip", "raw", "normalized")

# Luma weights of skimage.color.rgb2gray (ITU-R BT.709), used by the SSIM of
# Brain-Diffuser / MindEye.
_GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])

_RECON_MAT = re.compile(r"^recon_img-(?P<label>.+)\.mat$")
_SCRIPT_DIR = re.compile(r"^\d+_")

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- discovery

def natural_key(text: str) -> tuple:
    """Sort key comparing digit runs as numbers (``S2 < S10``, ``layers-1to3 < 1to5``)."""
    return tuple(int(part) if part.isdigit() else part
                 for part in re.split(r"(\d+)", text))


def roi_key(roi: str) -> tuple:
    """Sort key putting ROIs in :data:`ROI_ORDER`, then the rest naturally."""
    if roi in ROI_ORDER:
        return (0, ROI_ORDER.index(roi))
    return (1, natural_key(roi))


def order_labels(script: str, labels: Iterable[str],
                 label_order: Optional[Sequence[str]] = None) -> list[str]:
    """``labels`` in the script's order (:data:`SCRIPT_LABELS` or ``label_order``).

    Labels not in the order list follow in natural order.
    """
    order = list(label_order) if label_order is not None else list(SCRIPT_LABELS.get(script, ()))
    rank = {label: index for index, label in enumerate(order)}
    return sorted(set(labels), key=lambda label: (label not in rank, rank.get(label, 0),
                                                   natural_key(label)))


@dataclass(frozen=True)
class Reconstruction:
    """One ``recon_img-<label>.mat`` file of a results tree.

    ``layer_set`` is the extra folder level of script 3 (e.g. ``"layers-1to5"``), else
    ``None``.
    """

    script: str
    layer_set: Optional[str]
    subject: str
    roi: str
    label: str
    mat_path: Path

    @property
    def jpg_path(self) -> Path:
        """The script's normalised JPEG of the same reconstruction."""
        return self.mat_path.with_name(f"recon_img_normalized-{self.label}.jpg")

    @property
    def image_type(self) -> Optional[str]:
        """Stimulus image type of the script (``None`` for an unknown script)."""
        return SCRIPT_IMAGE_TYPES.get(self.script)

    @property
    def group(self) -> tuple[str, str, str, str]:
        """(script, layer set or "", subject, roi): the set identification compares within."""
        return (self.script, self.layer_set or "", self.subject, self.roi)


def _group_key(group: tuple[str, str, str, str]) -> tuple:
    script, layer_set, subject, roi = group
    return (natural_key(script), natural_key(layer_set), natural_key(subject), roi_key(roi))


def find_reconstructions(results_dir: PathLike,
                         scripts: Optional[Iterable[str]] = None) -> list[Reconstruction]:
    """All reconstructions under a results folder, in set order then script label order.

    Parameters
    ----------
    results_dir : path
        ``results`` (holding ``<script>/...``) or one script's folder
        (``results/<script>``, recognised by its leading ``<digits>_``).
    scripts : iterable of str, optional
        Keep only these script folder names.

    Returns
    -------
    list of Reconstruction
        Files under ``snapshots`` folders and paths that do not fit
        ``<script>/[<layer set>/]<subject>/<roi>/recon_img-<label>.mat`` are ignored.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist; run the scripts "
                                "first (e.g. python 1_reconstruct_natural_image.py)")
    wanted = None if scripts is None else set(scripts)
    prefix: tuple[str, ...] = (root.name,) if _SCRIPT_DIR.match(root.name) else ()
    found = []
    for mat in root.rglob("recon_img-*.mat"):
        match = _RECON_MAT.match(mat.name)
        parts = prefix + mat.relative_to(root).parent.parts
        if match is None or "snapshots" in parts or len(parts) not in (3, 4):
            continue
        if len(parts) == 3:
            script, subject, roi = parts
            layer_set = None
        else:
            script, layer_set, subject, roi = parts
        if wanted is not None and script not in wanted:
            continue
        found.append(Reconstruction(script, layer_set, subject, roi, match["label"], mat))
    by_group: dict[tuple, list[Reconstruction]] = defaultdict(list)
    for rec in found:
        by_group[rec.group].append(rec)
    ordered = []
    for group in sorted(by_group, key=_group_key):
        recs = {rec.label: rec for rec in by_group[group]}
        ordered += [recs[label] for label in order_labels(group[0], recs)]
    return ordered


# --------------------------------------------------------------------------- stimuli

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
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"stimulus mapping {csv_path} does not exist")
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
                raise ValueError(f"{csv_path}:{line_no}: expected 'label,filename' or "
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
    FileNotFoundError
        The mapping names a file that does not exist.
    """
    if mapping:
        keys = ([(image_type, label)] if image_type else []) + [(None, label)]
        for key in keys:
            if key in mapping:
                path = Path(mapping[key])
                if not path.is_file():
                    raise FileNotFoundError(f"stimulus mapping names {path} for {label}, "
                                            "but that file does not exist")
                return path
    folder = Path(stimuli_dir)
    if image_type:
        found = _with_any_extension(folder / image_type, label)
        if found is not None:
            return found
    return _with_any_extension(folder, label)


def load_stimulus(path: PathLike, size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """A stimulus image as RGB float64 0..255, shape (H, W, 3).

    Parameters
    ----------
    path : path
    size : (height, width), optional
        Resize (bicubic) to this size when it differs.
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.float64)


def load_reconstruction(path: PathLike, form: str = "clip") -> np.ndarray:
    """The ``recon_img`` of a script's ``.mat`` file as float64 RGB, shape (H, W, 3).

    Parameters
    ----------
    path : path
    form : {"clip", "raw", "normalized"}
        ``"clip"``: clipped to 0..255 (what a display shows); ``"raw"``: as stored;
        ``"normalized"``: the pixels of the script's JPEG before compression
        (2nd/98th percentile clip, min-max to 0..255, truncated to integers).
    """
    if form not in RECON_FORMS:
        raise ValueError(f"form must be one of {RECON_FORMS}, not {form!r}")
    try:
        content = scipy.io.loadmat(os.fspath(path))
    except (ValueError, NotImplementedError, OSError) as error:
        raise ValueError(f"cannot read {path} as a MATLAB file: {error}") from error
    if "recon_img" not in content:
        raise KeyError(f"{path} has no variable 'recon_img' (has "
                       f"{sorted(k for k in content if not k.startswith('__'))})")
    img = np.asarray(content["recon_img"], dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"recon_img in {path} has shape {img.shape}, expected (H, W, 3)")
    if form == "clip":
        return np.clip(img, 0.0, 255.0)
    if form == "normalized":
        from icnn_torch.utils import clip_extreme_value, normalise_img

        return normalise_img(clip_extreme_value(img, pct=4)).astype(np.float64)
    return img


# --------------------------------------------------------------------------- metrics

def _check_same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {a.shape} vs {b.shape}")


def pixcorr(recon: np.ndarray, stimulus: np.ndarray) -> float:
    """Pearson correlation of the flattened images (any equal shapes).

    Returns 0.0 when either image is constant (no defined correlation).
    """
    recon = np.asarray(recon, dtype=np.float64)
    stimulus = np.asarray(stimulus, dtype=np.float64)
    _check_same_shape(recon, stimulus, "pixcorr")
    return float(similarity_matrix(recon[None], stimulus[None], "corr")[0, 0])


def rgb_to_grey(img: np.ndarray) -> np.ndarray:
    """HxWx3 RGB -> HxW grey with skimage's ``rgb2gray`` weights (0.2125, 0.7154, 0.0721).

    HxW input is returned unchanged (as float64).
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        return img
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB or HxW grey image, got shape {img.shape}")
    return img @ _GREY_WEIGHTS


def ssim(recon: np.ndarray, stimulus: np.ndarray, data_range: float = 255.0,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03,
         truncate: float = 3.5) -> float:
    """Mean structural similarity (Wang et al. 2004) of two images, in greyscale.

    The convention of Brain-Diffuser / MindEye (skimage ``structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``): RGB images are
    first turned grey (:func:`rgb_to_grey`); local means, variances and the covariance
    come from a Gaussian window (``scipy.ndimage.gaussian_filter``, ``sigma``, cut at
    ``truncate * sigma`` pixels, i.e. 11x11 for the defaults, ``mode="reflect"``), with
    population (not sample) variances; ``C1 = (k1 * data_range)**2``,
    ``C2 = (k2 * data_range)**2``; the SSIM map is averaged after dropping a border of
    the window radius on every side.

    Parameters
    ----------
    recon, stimulus : ndarray, (H, W, 3) RGB or (H, W) grey, 0..``data_range``
    data_range : float
        255 for 0..255 images.
    sigma, k1, k2, truncate : float
        Window width and stabilising constants (defaults as above).

    Returns
    -------
    float
        1.0 for identical images.
    """
    grey_a = rgb_to_grey(recon)
    grey_b = rgb_to_grey(stimulus)
    _check_same_shape(grey_a, grey_b, "ssim")
    radius = int(truncate * sigma + 0.5)
    if min(grey_a.shape) < 2 * radius + 1:
        raise ValueError(f"images of shape {grey_a.shape} are smaller than the "
                         f"{2 * radius + 1}x{2 * radius + 1} SSIM window")

    def local_mean(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, sigma=sigma, truncate=truncate, mode="reflect")

    mean_a, mean_b = local_mean(grey_a), local_mean(grey_b)
    var_a = local_mean(grey_a * grey_a) - mean_a * mean_a
    var_b = local_mean(grey_b * grey_b) - mean_b * mean_b
    cov_ab = local_mean(grey_a * grey_b) - mean_a * mean_b
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * cov_ab + c2)
                / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2)))
    return float(ssim_map[radius:-radius, radius:-radius].mean())


def similarity_matrix(recons: np.ndarray, stimuli: np.ndarray,
                      metric: str = "corr") -> np.ndarray:
    """Similarity of every reconstruction with every stimulus.

    Parameters
    ----------
    recons, stimuli : ndarray, shape (N, ...) and (M, ...) with equal trailing shapes
        Flattened per item.
    metric : {"corr", "euclidean"}
        Pearson correlation (0 when an item is constant), or minus the Euclidean
        distance.

    Returns
    -------
    ndarray, shape (N, M)
        ``[i, j]``: similarity of reconstruction i and stimulus j (higher = closer).
    """
    recons = np.asarray(recons, dtype=np.float64)
    stimuli = np.asarray(stimuli, dtype=np.float64)
    if recons.shape[1:] != stimuli.shape[1:]:
        raise ValueError(f"reconstructions {recons.shape[1:]} and stimuli "
                         f"{stimuli.shape[1:]} have different shapes")
    a = recons.reshape(len(recons), -1)
    b = stimuli.reshape(len(stimuli), -1)
    if metric == "corr":
        def standardise(x: np.ndarray) -> np.ndarray:
            x = x - x.mean(axis=1, keepdims=True)
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)

        return standardise(a) @ standardise(b).T
    if metric == "euclidean":
        return -np.stack([np.sqrt(((b - row) ** 2).sum(axis=1)) for row in a])
    raise ValueError(f"metric must be 'corr' or 'euclidean', not {metric!r}")


def pairwise_identification(recons: np.ndarray, stimuli: np.ndarray,
                            metric: str = "corr") -> np.ndarray:
    """Pairwise identification accuracy of each reconstruction (Shen et al. 2019).

    For reconstruction i with true stimulus i, each other stimulus j is a candidate; the
    reconstruction is identified correctly against j when it is more similar to stimulus
    i than to stimulus j. A tie counts one half, so a constant reconstruction scores
    the chance level 0.5.

    Parameters
    ----------
    recons, stimuli : ndarray, shape (N, ...), N >= 2
        Reconstruction i belongs to stimulus i; any equal per-item shape (images
        HxWx3 0..255, or feature vectors).
    metric : {"corr", "euclidean"}
        See :func:`similarity_matrix`.

    Returns
    -------
    ndarray, shape (N,)
        Fraction of the N-1 candidates beaten by the true stimulus, 0..1 (chance 0.5).
    """
    recons = np.asarray(recons)
    stimuli = np.asarray(stimuli)
    if recons.shape != stimuli.shape:
        raise ValueError(f"need one stimulus per reconstruction: reconstructions "
                         f"{recons.shape} vs stimuli {stimuli.shape}")
    n = len(recons)
    if n < 2:
        raise ValueError(f"pairwise identification needs at least 2 images, got {n}")
    sim = similarity_matrix(recons, stimuli, metric)
    true_sim = np.diag(sim)[:, None]
    wins = (true_sim > sim).astype(np.float64) + 0.5 * (true_sim == sim)
    np.fill_diagonal(wins, 0.0)
    return wins.sum(axis=1) / (n - 1)


def _vgg_features(net, images: np.ndarray, layers: Sequence[str], device,
                  batch_size: int) -> dict[str, np.ndarray]:
    import torch

    from icnn_torch.utils import img_preprocess

    img_mean = getattr(net, "img_mean", None)
    chunks: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = np.stack([img_preprocess(img) if img_mean is None
                              else img_preprocess(img, img_mean=img_mean)
                              for img in images[start:start + batch_size]])
            out = net(torch.from_numpy(batch).to(device), list(layers))
            for layer in layers:
                chunks[layer].append(out[layer].reshape(len(batch), -1)
                                     .to("cpu", torch.float32).numpy())
    return {layer: np.concatenate(parts) for layer, parts in chunks.items()}


def feature_identification(recons: np.ndarray, stimuli: np.ndarray, net,
                           layers: Sequence[str] = DEFAULT_FEATURE_LAYERS,
                           device: Optional[Union[str, "torch.device"]] = None,
                           batch_size: int = 4) -> dict[str, np.ndarray]:
    """Pairwise identification by correlation of CNN features, per layer.

    Parameters
    ----------
    recons, stimuli : ndarray, shape (N, H, W, 3), N >= 2
        RGB 0..255 images, reconstruction i belonging to stimulus i; (H, W) must be
        ``net.input_size`` (224x224 for VGG19).
    net : icnn_torch.models.VGG19 (or any module with ``net(x, layers) -> dict``)
        Inputs are prepared with :func:`icnn_torch.utils.img_preprocess` and the net's
        ``img_mean`` (Caffe space: BGR, mean subtracted).
    layers : sequence of str
        Layer names, e.g. ``("conv3_4", "fc7")``.
    device : str or torch.device, optional
        Where the images go; default: the device of the net's parameters.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    dict of str to ndarray, shape (N,)
        Identification accuracy per layer (see :func:`pairwise_identification`).
    """
    recons = np.asarray(recons, dtype=np.float64)
    stimuli = np.asarray(stimuli, dtype=np.float64)
    if recons.shape != stimuli.shape:
        raise ValueError(f"need one stimulus per reconstruction: reconstructions "
                         f"{recons.shape} vs stimuli {stimuli.shape}")
    if recons.ndim != 4 or recons.shape[3] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB images, got shape {recons.shape}")
    return _identify_by_features(net, recons, stimuli, list(layers), device, batch_size)


def _identify_by_features(net, recons: np.ndarray, stimuli: np.ndarray, layers: list[str],
                          device, batch_size: int,
                          stimulus_keys: Optional[Sequence[object]] = None,
                          cache: Optional[dict] = None) -> dict[str, np.ndarray]:
    """:func:`feature_identification` after the shape checks.

    With ``cache`` (a dict kept by the caller) and one hashable key per stimulus, the
    features of a stimulus already seen (the same image in another set) are reused.
    """
    import torch

    input_size = tuple(getattr(net, "input_size", recons.shape[1:3]))
    if recons.shape[1:3] != input_size:
        raise ValueError(f"images are {recons.shape[1:3]} but the net takes {input_size}")
    known = getattr(net, "layer_names", None)
    if known is not None:
        unknown = [layer for layer in layers if layer not in known]
        if unknown:
            raise ValueError(f"the net has no layer(s) {unknown}; it has {list(known)}")
    if device is None:
        first = next(iter(net.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    feats_r = _vgg_features(net, recons, layers, device, batch_size)
    if cache is None or stimulus_keys is None:
        feats_s = _vgg_features(net, stimuli, layers, device, batch_size)
    else:
        todo = [index for index, key in enumerate(stimulus_keys) if key not in cache]
        if todo:
            fresh = _vgg_features(net, stimuli[todo], layers, device, batch_size)
            for position, index in enumerate(todo):
                cache[stimulus_keys[index]] = {layer: fresh[layer][position]
                                               for layer in layers}
        feats_s = {layer: np.stack([cache[key][layer] for key in stimulus_keys])
                   for layer in layers}
    return {layer: pairwise_identification(feats_r[layer], feats_s[layer], "corr")
            for layer in layers}


# --------------------------------------------------------------------------- tree

BASE_COLUMNS = ("script", "layer_set", "subject", "roi", "label", "n_images",
                "ident_pixcorr", "ident_euclidean", "pixcorr", "ssim")


def _load_vgg19_for_features(vgg19_path: Optional[PathLike], device):
    from icnn_torch.models import load_vgg19

    if vgg19_path is not None:
        candidates = [Path(vgg19_path)]
    else:  # the caffemodel the scripts read, or KamitaniLab's converted .pt beside it
        candidates = [DEFAULT_VGG19_PATH, DEFAULT_VGG19_PATH.with_suffix(".pt")]
    for path in candidates:
        if path.is_file():
            return load_vgg19(path, device=device)
    raise FileNotFoundError(
        f"VGG19 weights {candidates[0]} not found (needed for feature identification); "
        "download them with `python -m icnn_torch.download vgg19`, pass --vgg19 FILE, "
        "or skip feature identification with --no-features")


def evaluate_results(results_dir: PathLike, stimuli_dir: PathLike,
                     mapping: Optional[Union[PathLike, StimulusMapping]] = None,
                     layers: Sequence[str] = DEFAULT_FEATURE_LAYERS,
                     net=None, vgg19_path: Optional[PathLike] = None,
                     device: Optional[Union[str, "torch.device"]] = None,
                     scripts: Optional[Iterable[str]] = None,
                     recon_form: str = "clip") -> list[dict[str, object]]:
    """Score every reconstruction of a results tree that has a stimulus image.

    Parameters
    ----------
    results_dir : path
        ``results`` or one script's folder (see :func:`find_reconstructions`).
    stimuli_dir : path
        The user's stimulus folder (lookup rules in the module docstring).
    mapping : path or dict, optional
        Mapping CSV (:func:`read_stimulus_mapping`, file names relative to
        ``stimuli_dir``) or its parsed form.
    layers : sequence of str
        VGG19 layers for feature identification; empty to skip it (then no net is
        loaded).
    net : VGG19, optional
        Network for feature identification; default: :func:`icnn_torch.models.load_vgg19`
        on ``vgg19_path`` (default :data:`DEFAULT_VGG19_PATH`) on ``device``.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    scripts : iterable of str, optional
        Script folder names to evaluate (default all found).
    recon_form : {"clip", "raw", "normalized"}
        See :func:`load_reconstruction`.

    Returns
    -------
    list of dict
        Keys :data:`BASE_COLUMNS` plus ``ident_<layer>`` per layer. One row per scored
        reconstruction, then a row with ``label == "mean"`` and ``n_images`` = set
        size after each set. ``layer_set`` is "" outside script 3. Identification
        values are NaN in sets with fewer than two scored images.

    Warns
    -----
    UserWarning
        When some reconstructions have no stimulus image (they are left out, and the
        candidate sets shrink accordingly).
    """
    layers = list(layers)
    stimuli_dir = Path(stimuli_dir)
    if not stimuli_dir.is_dir():
        raise FileNotFoundError(f"stimulus folder {stimuli_dir} does not exist")
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = read_stimulus_mapping(mapping, stimuli_dir)
    recs = find_reconstructions(results_dir, scripts)
    if not recs:
        raise FileNotFoundError(f"no recon_img-<label>.mat files under {results_dir}")
    if layers and net is None:
        net = _load_vgg19_for_features(vgg19_path, device)

    missing: list[Reconstruction] = []
    by_group: dict[tuple, list[tuple[Reconstruction, Path]]] = defaultdict(list)
    for rec in recs:
        stim_path = find_stimulus(stimuli_dir, rec.label, rec.image_type, mapping)
        if stim_path is None:
            missing.append(rec)
        else:
            by_group[rec.group].append((rec, stim_path))
    if missing:
        example = missing[0]
        where = f"{stimuli_dir}/{example.image_type}/" if example.image_type else ""
        warnings.warn(f"{len(missing)} of {len(recs)} reconstructions have no stimulus "
                      f"image and are skipped (e.g. {example.label} of {example.script}: "
                      f"looked for {where}{example.label}.* and "
                      f"{stimuli_dir}/{example.label}.*)", stacklevel=2)

    rows: list[dict[str, object]] = []
    stimulus_features: dict = {}  # (stimulus path, size) -> layer -> feature vector
    for group in sorted(by_group, key=_group_key):
        pairs = by_group[group]
        recon_imgs = [load_reconstruction(rec.mat_path, recon_form) for rec, _ in pairs]
        stim_imgs = [load_stimulus(path, img.shape[:2])
                     for (_, path), img in zip(pairs, recon_imgs)]
        shapes = {img.shape for img in recon_imgs}
        if len(shapes) > 1:
            raise ValueError(f"reconstructions of {'/'.join(filter(None, group))} have "
                             f"different shapes {sorted(shapes)}")
        n = len(pairs)
        nan = np.full(n, np.nan)
        ident_corr, ident_euc = nan, nan
        ident_feat = {layer: nan for layer in layers}
        if n >= 2:
            recon_arr, stim_arr = np.stack(recon_imgs), np.stack(stim_imgs)
            ident_corr = pairwise_identification(recon_arr, stim_arr, "corr")
            ident_euc = pairwise_identification(recon_arr, stim_arr, "euclidean")
            if layers:
                keys = [(path, recon_arr.shape[1:3]) for _, path in pairs]
                ident_feat = _identify_by_features(net, recon_arr, stim_arr, layers,
                                                   None, batch_size=4,
                                                   stimulus_keys=keys,
                                                   cache=stimulus_features)
        group_rows = []
        for index, ((rec, _), recon, stim) in enumerate(zip(pairs, recon_imgs, stim_imgs)):
            row: dict[str, object] = {
                "script": rec.script, "layer_set": rec.layer_set or "",
                "subject": rec.subject, "roi": rec.roi, "label": rec.label, "n_images": n,
                "ident_pixcorr": float(ident_corr[index]),
                "ident_euclidean": float(ident_euc[index]),
                "pixcorr": pixcorr(recon, stim), "ssim": ssim(recon, stim),
            }
            for layer in layers:
                row[f"ident_{layer}"] = float(ident_feat[layer][index])
            group_rows.append(row)
        mean_row = dict(group_rows[0], label="mean")
        for key in group_rows[0]:
            if key.startswith("ident_") or key in ("pixcorr", "ssim"):
                mean_row[key] = float(np.mean([row[key] for row in group_rows]))
        rows += group_rows + [mean_row]
    return rows


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def write_csv(rows: Sequence[Mapping[str, object]], path: PathLike) -> Path:
    """Write rows (from :func:`evaluate_results`) to ``path`` atomically; floats to 6 places."""
    if not rows:
        raise ValueError("no rows to write")
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format_value(row.get(column, "")) for column in columns])
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def format_table(rows: Sequence[Mapping[str, object]], per_image: bool = False) -> str:
    """A plain-text table per script: the mean rows, or every row with ``per_image``."""
    if not rows:
        return "(no rows)"
    metric_columns = [key for key in rows[0] if key.startswith("ident_")
                      or key in ("pixcorr", "ssim")]
    lines: list[str] = []
    current_script = None
    header = (f"{'layer set':<12} {'subject':<8} {'roi':<5} {'label':<10} {'n':>3} "
              + " ".join(f"{column:>16}" for column in metric_columns))
    for row in rows:
        if not per_image and row["label"] != "mean":
            continue
        if row["script"] != current_script:
            current_script = row["script"]
            if lines:
                lines.append("")
            lines += [str(current_script), header, "-" * len(header)]
        lines.append(f"{str(row['layer_set']) or '-':<12} {str(row['subject']):<8} "
                     f"{str(row['roi']):<5} {str(row['label']):<10} {row['n_images']:>3} "
                     + " ".join(f"{_format_value(row[column]):>16}"
                                for column in metric_columns))
    return "\n".join(lines)


def _parse_layers(values: Sequence[str]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.evaluate",
        description="Pairwise identification (pixel correlation, Euclidean distance, VGG19 "
                    "features), PixCorr and SSIM of reconstructions against stimulus images.")
    parser.add_argument("results_dir", help="results folder (or one script's folder)")
    parser.add_argument("--stimuli", required=True,
                        help="folder of stimulus images: <label>.<ext> or "
                             "<image_type>/<label>.<ext>")
    parser.add_argument("--mapping", help="CSV of label,filename (or image_type,label,"
                                          "filename) rows; names relative to --stimuli")
    parser.add_argument("--layers", nargs="+", default=list(DEFAULT_FEATURE_LAYERS),
                        help="VGG19 layers for feature identification (default: %(default)s)")
    parser.add_argument("--no-features", action="store_true",
                        help="skip feature identification (no VGG19 needed)")
    parser.add_argument("--vgg19", default=None,
                        help=f"VGG19 weights (default: {DEFAULT_VGG19_PATH})")
    parser.add_argument("--out", default=None,
                        help="CSV file to write (default: RESULTS_DIR/evaluation.csv)")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 "
                                                       "(default: CUDA when available)")
    parser.add_argument("--scripts", nargs="+", default=None,
                        help="script folder names to evaluate (default: all found)")
    parser.add_argument("--recon-form", choices=RECON_FORMS, default="clip",
                        help="how to read recon_img (default: %(default)s)")
    parser.add_argument("--per-image", action="store_true",
                        help="print every image's row, not only the set means")
    args = parser.parse_args(argv)

    layers = [] if args.no_features else _parse_layers(args.layers)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = evaluate_results(args.results_dir, args.stimuli, mapping=args.mapping,
                                    layers=layers, vgg19_path=args.vgg19,
                                    device=args.device, scripts=args.scripts,
                                    recon_form=args.recon_form)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not rows:
        print(f"error: no reconstruction under {args.results_dir} has a stimulus image in "
              f"{args.stimuli} (expected e.g. {args.stimuli}/Img0009.png or "
              f"{args.stimuli}/natural/Img0009.png, or a --mapping CSV)", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path(args.results_dir) / "evaluation.csv"
    write_csv(rows, out)
    print(format_table(rows, per_image=args.per_image))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
