"""Image similarity and identification metrics for reconstructions (a library, no I/O).

Images are ``(H, W, 3)`` RGB arrays on the 0..255 scale (or ``(H, W)`` grey where
stated); stacks of images are ``(N, H, W, 3)``; item ``i`` of a reconstruction stack
belongs to item ``i`` of the stimulus stack.

:func:`pixcorr`
    Pearson correlation of two images' pixels.
:func:`ssim`
    Mean structural similarity of the greyscale images (:func:`rgb_to_grey`), the
    convention of Brain-Diffuser and MindEye.
:func:`similarity_matrix`
    Correlation (or minus the Euclidean distance) of every reconstruction with every
    stimulus.
:func:`pairwise_identification`
    Pairwise identification accuracy, as in Shen et al. (2019): the fraction of the other
    stimuli that are less similar to a reconstruction than its own stimulus (chance 0.5).
:func:`cnn_features`, :func:`feature_identification`
    The same identification on CNN features (e.g. VGG19 ``conv3_4`` and ``fc7``).

The scoring of a whole results tree is :mod:`icnn_torch.analysis.evaluate`; its command
line ``python -m icnn_torch.evaluate`` is in :mod:`icnn_torch.analysis.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_FEATURE_LAYERS", "GREY_WEIGHTS", "pixcorr", "rgb_to_grey", "ssim",
           "similarity_matrix", "pairwise_identification", "cnn_features",
           "feature_identification"]

#: VGG19 layers used for feature identification by default: a middle conv layer (the
#: 8th of 16) and fc7.
DEFAULT_FEATURE_LAYERS: tuple[str, ...] = ("conv3_4", "fc7")

#: Luma weights (R, G, B) of skimage.color.rgb2gray (ITU-R BT.709), used by the SSIM of
#: Brain-Diffuser / MindEye.
GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])


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
    """(H, W, 3) RGB -> (H, W) grey with :data:`GREY_WEIGHTS` (skimage's ``rgb2gray``).

    The scale is kept (0..255 in, 0..255 out). (H, W) input is returned unchanged (as
    float64).
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        return img
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB or HxW grey image, got shape {img.shape}")
    return img @ GREY_WEIGHTS


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
        Window width (pixels) and stabilising constants (defaults as above).

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

    from scipy.ndimage import gaussian_filter  # here: --help of evaluate/figure stays fast

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


def cnn_features(net, images: np.ndarray, layers: Sequence[str],
                 device: Optional[Union[str, "torch.device"]] = None,
                 batch_size: int = 4) -> dict[str, np.ndarray]:
    """Flattened CNN features of RGB images, per layer.

    Parameters
    ----------
    net : icnn_torch.models.VGG19 (or any module with ``net(x, layers) -> dict``)
        Inputs are prepared with :func:`icnn_torch.utils.img_preprocess` and the net's
        ``img_mean`` when it has one (Caffe space: BGR, mean subtracted, CHW).
    images : ndarray, shape (N, H, W, 3)
        RGB 0..255; (H, W) must be ``net.input_size`` when the net declares one
        (224x224 for VGG19).
    layers : sequence of str
        Layer names, e.g. ``("conv3_4", "fc7")``; checked against ``net.layer_names``
        when the net has them.
    device : str or torch.device, optional
        Where the images go; default: the device of the net's parameters.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    dict of str to ndarray, float32, shape (N, units of the layer)
    """
    import torch

    from ..utils import img_preprocess  # imports scipy: deferred with torch

    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB images, got shape {images.shape}")
    input_size = tuple(getattr(net, "input_size", images.shape[1:3]))
    if images.shape[1:3] != input_size:
        raise ValueError(f"images are {images.shape[1:3]} but the net takes {input_size}")
    layers = list(layers)
    known = getattr(net, "layer_names", None)
    if known is not None:
        unknown = [layer for layer in layers if layer not in known]
        if unknown:
            raise ValueError(f"the net has no layer(s) {unknown}; it has {list(known)}")
    if device is None:
        first = next(iter(net.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    img_mean = getattr(net, "img_mean", None)
    chunks: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = np.stack([img_preprocess(img) if img_mean is None
                              else img_preprocess(img, img_mean=img_mean)
                              for img in images[start:start + batch_size]])
            out = net(torch.from_numpy(batch).to(device), layers)
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
    net, layers, device, batch_size
        As :func:`cnn_features` (default layers :data:`DEFAULT_FEATURE_LAYERS`).

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
    feats_r = cnn_features(net, recons, layers, device, batch_size)
    feats_s = cnn_features(net, stimuli, layers, device, batch_size)
    return {layer: pairwise_identification(feats_r[layer], feats_s[layer], "corr")
            for layer in layers}
