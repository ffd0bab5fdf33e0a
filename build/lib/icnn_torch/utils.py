"""Image and feature helpers with the names and meaning of the original ``icnn.utils``.

Conventions: an *image* is HxWx3, RGB, on the 0..255 scale (float or uint8); a
*preprocessed image* is 3xHxW, BGR, float32, with the per-channel mean subtracted (the
"Caffe space" VGG19 takes). Means are given in BGR order, as Caffe stores them.

Numpy and SciPy only at import: :func:`TV_norm` and :func:`get_cnn_features` import torch
when they are called, so that the command-line tools that use this module stay quick.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import scipy.ndimage

from .nets.tables import IMAGENET_MEAN_BGR

__all__ = [
    "IMAGENET_MEAN_BGR", "img_preprocess", "img_deprocess", "normalise_img",
    "clip_extreme_value", "clip_small_norm_pixel", "clip_small_contribution_pixel", "image_norm",
    "gaussian_blur", "p_norm", "TV_norm", "estimate_cnn_feat_std", "get_cnn_features",
    "sort_layer_list", "create_feature_masks",
]


def img_preprocess(img: np.ndarray, img_mean: Sequence[float] = IMAGENET_MEAN_BGR) -> np.ndarray:
    """RGB HxWx3 (0..255) -> BGR 3xHxW float32 with ``img_mean`` (BGR) subtracted."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    mean = np.asarray(img_mean, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[::-1]) - mean


def img_deprocess(img: np.ndarray, img_mean: Sequence[float] = IMAGENET_MEAN_BGR) -> np.ndarray:
    """BGR 3xHxW (mean subtracted) -> RGB HxWx3 with the mean added back; not clipped."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a 3xHxW BGR image, got shape {img.shape}")
    mean = np.asarray(img_mean, dtype=img.dtype if img.dtype.kind == "f" else np.float32)
    return np.ascontiguousarray((img + mean.reshape(3, 1, 1))[::-1].transpose(1, 2, 0))


def normalise_img(img: np.ndarray) -> np.ndarray:
    """Shift the minimum to 0, scale the maximum to 255, truncate to uint8."""
    img = np.asarray(img, dtype=np.float64)
    img = img - img.min()
    peak = img.max()
    if peak > 0:
        img = img * (255.0 / peak)
    return img.astype(np.uint8)


def _clip_pct(pct: float) -> float:
    return float(min(max(pct, 0.0), 100.0))


def clip_extreme_value(img: np.ndarray, pct: float = 1) -> np.ndarray:
    """Clip all values jointly to their ``pct/2`` and ``100 - pct/2`` percentiles."""
    pct = _clip_pct(pct)
    low, high = np.percentile(img, [pct / 2.0, 100.0 - pct / 2.0])
    return np.clip(img, low, high)


def image_norm(img: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean norm over the channels of a 3xHxW image -> HxW."""
    return np.sqrt(np.sum(np.asarray(img) ** 2, axis=0))


def clip_small_norm_pixel(img: np.ndarray, pct: float = 1) -> np.ndarray:
    """Zero the pixels (3xHxW) whose channel norm is below its ``pct`` percentile."""
    norm = image_norm(img)
    img = np.array(img, copy=True)
    img[:, norm < np.percentile(norm, _clip_pct(pct))] = 0
    return img


def clip_small_contribution_pixel(img: np.ndarray, grad: np.ndarray, pct: float = 1) -> np.ndarray:
    """Zero the pixels whose channel norm of ``img * grad`` is below its ``pct`` percentile."""
    contribution = image_norm(np.asarray(img) * np.asarray(grad))
    img = np.array(img, copy=True)
    img[:, contribution < np.percentile(contribution, _clip_pct(pct))] = 0
    return img


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each channel of a 3xHxW image with a Gaussian of ``sigma`` pixels (0: no-op)."""
    img = np.array(img, copy=True)
    if sigma > 0:
        for c in range(img.shape[0]):
            img[c] = scipy.ndimage.gaussian_filter(img[c], sigma, order=0)
    return img


def p_norm(x: np.ndarray, p: float = 2) -> tuple[float, np.ndarray]:
    """``sum |x|^p`` and its gradient."""
    ax = np.abs(x)
    return float(np.sum(ax ** p)), p * ax ** (p - 1) * np.sign(x)


def TV_norm(x: np.ndarray, TVbeta: float = 1) -> tuple[float, np.ndarray]:
    """Total variation ``sum (dx^2 + dy^2)^(beta/2)`` of a 3xHxW image and its gradient.

    Differences are forward differences with the last row/column differences zero.
    """
    import torch

    from .recon.transforms import tv_norm_torch
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64)).requires_grad_(True)
    loss = tv_norm_torch(xt, float(TVbeta))
    (grad,) = torch.autograd.grad(loss, xt)
    return float(loss), grad.numpy()


def estimate_cnn_feat_std(cnn_feat: np.ndarray) -> np.floating:
    """Scale of one layer's features, as the original scripts estimate it.

    Conv/pool features (C, H, W) with H or W > 1: the mean over channels of each channel's
    standard deviation. fc features ((N,), (1, N), or (C, 1, 1)): the plain standard
    deviation. Population std (ddof 0). As the original, in the features' own precision:
    float32 features give a float32 value (the per-channel stds are kept as float32 and
    averaged). A leading batch axis of size 1 ((1, C, H, W)) is accepted.
    """
    feat = np.asarray(cnn_feat)
    if feat.dtype.kind != "f":
        feat = feat.astype(np.float64)
    if feat.ndim == 4 and feat.shape[0] == 1:
        feat = feat[0]
    if feat.ndim == 1 or (feat.ndim == 2 and feat.shape[0] == 1) or \
            (feat.ndim == 3 and feat.shape[1] == 1 and feat.shape[2] == 1):
        return np.std(feat)
    if feat.ndim == 3:
        per_channel = np.array([np.std(channel) for channel in feat], dtype=feat.dtype)
        return np.mean(per_channel)
    raise ValueError(f"cannot estimate the std of features shaped {feat.shape}; expected "
                     "(C, H, W) for conv/pool layers or (N,) / (1, N) for fc layers")


def sort_layer_list(net, layer_list: Iterable[str]) -> list[str]:
    """Order layer names as they come in ``net.layer_names``; unknown names raise KeyError."""
    order = list(net.layer_names)
    layer_list = list(layer_list)
    unknown = [name for name in layer_list if name not in order]
    if unknown:
        raise KeyError(f"the net has no layer(s) {unknown}; its layers are {order}")
    return sorted(layer_list, key=order.index)


def create_feature_masks(features: Mapping[str, np.ndarray], masks: Mapping | None = None,
                         channels: Mapping | None = None) -> dict[str, np.ndarray]:
    """One float32 mask per layer, shaped like its features (1: unit used in the loss).

    Parameters
    ----------
    features : dict of str to ndarray
        Target features per layer: (C, H, W) for conv/pool, (N,) for fc.
    masks : dict, optional
        Per layer: a mask of the feature's shape, a 2-D spatial mask applied to every
        channel (if its size differs it is centred on the feature map, cropping or
        padding with ones), or a 1-D mask for fc layers.
    channels : dict, optional
        Per layer: indices of the channels to use (others masked out). Ignored for a
        layer that has an explicit mask.

    Returns
    -------
    dict of str to ndarray (float32)

    Raises
    ------
    ValueError
        A mask that fits none of the forms above (the original silently dropped the layer).
    """
    masks = masks or {}
    channels = channels or {}
    out: dict[str, np.ndarray] = {}
    for layer, feat in features.items():
        shape = np.shape(feat)
        if layer in masks and masks[layer] is not None:
            mask = np.asarray(masks[layer], dtype=np.float32)
            if mask.shape == shape:
                out[layer] = mask
            elif mask.ndim == 2 and len(shape) == 3:
                out[layer] = np.broadcast_to(_centre_2d(mask, shape[1:]), shape).copy()
            else:
                raise ValueError(f"mask for layer {layer!r} has shape {mask.shape}, which fits "
                                 f"neither its features {shape} nor a 2-D spatial mask")
        elif layer in channels and channels[layer] is not None and np.size(channels[layer]) > 0:
            mask = np.zeros(shape, dtype=np.float32)
            mask[np.asarray(channels[layer], dtype=np.int64)] = 1.0
            out[layer] = mask
        else:
            out[layer] = np.ones(shape, dtype=np.float32)
    return out


def _centre_2d(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Place ``mask`` centred on a ones array of ``size`` (cropping when larger)."""
    result = np.ones(tuple(size), dtype=np.float32)
    src, dst = [], []
    for m, s in zip(mask.shape, size):
        n = min(m, s)
        a, b = (m - n) // 2, (s - n) // 2
        src.append(slice(a, a + n))
        dst.append(slice(b, b + n))
    result[tuple(dst)] = mask[tuple(src)]
    return result


def get_cnn_features(net, img: np.ndarray, layer_list: Iterable[str],
                     img_mean: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """Features of one image at ``layer_list``.

    Parameters
    ----------
    net : callable ``net(x, layers) -> dict``
        E.g. :class:`icnn_torch.models.VGG19`; its ``img_mean`` (BGR) is used unless
        ``img_mean`` is given.
    img : ndarray, HxWx3
        RGB, 0..255, at the net's input size (``net.input_size``, 224x224 for VGG19); resize
        it first, e.g. ``PIL.Image.fromarray(img).resize((224, 224), PIL.Image.BICUBIC)``
        (how the original's stimuli were prepared).
    layer_list : iterable of str

    Returns
    -------
    dict of str to ndarray (float32)
        Features without the batch axis: (C, H, W) for conv/pool, (N,) for fc.

    Raises
    ------
    ValueError
        ``img`` is not HxWx3, or not of the net's input size (the message names both sizes).
    """
    import torch

    from .nets.extractor import net_device
    layer_list = list(layer_list)
    size = getattr(net, "input_size", None)
    if size is not None and tuple(np.shape(img)[:2]) != tuple(size):
        h, w = size
        raise ValueError(f"the image is {np.shape(img)[0]}x{np.shape(img)[1]}, but the net takes "
                         f"{h}x{w} images (its fc layers fix the size); resize it first, e.g. "
                         f"PIL.Image.fromarray(img).resize(({w}, {h}), PIL.Image.BICUBIC)")
    mean = getattr(net, "img_mean", IMAGENET_MEAN_BGR) if img_mean is None else img_mean
    x = torch.from_numpy(img_preprocess(img, mean))[None]
    device = net_device(net)
    with torch.no_grad():
        feats = net(x.to(device), layer_list)
    return {name: feats[name][0].detach().cpu().numpy() for name in layer_list}
