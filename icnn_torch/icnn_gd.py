"""Reconstruct images from CNN features by gradient descent with momentum on the pixels.

The PyTorch counterpart of the original ``icnn.icnn_gd``: same function name, keywords
and defaults (SPEC section 5.2); features may carry a batch axis.
"""

from __future__ import annotations

import os

import numpy as np

from . import _engine
from .optim_gd import Schedule, run_momentum_gd
from .param import PixelGDHooks
from .reporting import save_image_atomic

__all__ = ["reconstruct_image"]


def reconstruct_image(features, net, layer_weight=None, channel=None, mask=None,
                      initial_image=None, loss_type: str = "l2", iter_n: int = 200,
                      lr_start: float = 2., lr_end: float = 1e-10,
                      momentum_start: float = 0.9, momentum_end: float = 0.9,
                      decay_start: float = 0.2, decay_end: float = 1e-10,
                      grad_normalize: bool = True,
                      image_jitter: bool = False, jitter_size: int = 32,
                      image_blur: bool = True, sigma_start: float = 2., sigma_end: float = 0.5,
                      use_p_norm_reg: bool = False, p: float = 3,
                      lamda_start: float = 0.5, lamda_end: float = 0.5,
                      use_TV_norm_reg: bool = False, TVbeta: float = 2,
                      TVlamda_start: float = 0.5, TVlamda_end: float = 0.5,
                      clip_extreme: bool = False, clip_extreme_every: int = 4,
                      e_pct_start: float = 1, e_pct_end: float = 1,
                      clip_small_norm: bool = False, clip_small_norm_every: int = 4,
                      n_pct_start: float = 5., n_pct_end: float = 5.,
                      clip_small_contribution: bool = False, clip_small_contribution_every: int = 4,
                      c_pct_start: float = 5., c_pct_end: float = 5.,
                      disp_every: int | None = None,
                      save_intermediate: bool = False, save_intermediate_every: int = 1,
                      save_intermediate_path=None, device=None, seed: int | None = None):
    """Reconstruct image(s) whose features match ``features``, by momentum GD on pixels.

    Parameters
    ----------
    features : dict or list of dict
        Layer name -> target features: (C, H, W) for conv/pool layers, (N,) for fc
        layers; with a leading batch axis, or a list of dicts, for a batch.
    net : encoder
        E.g. :class:`icnn_torch.models.VGG19`, or a :class:`icnn_torch.features.FeatureExtractor`.
    layer_weight : dict, optional
        Layer -> weight (float or (B,) array), or one dict per image. Default equal
        weights summing to 1.
    channel, mask : dict, optional
        Channel indices / unit masks per layer (see :func:`icnn_torch.utils.create_feature_masks`).
    initial_image : ndarray, optional
        HxWx3 (or BxHxWx3) RGB 0..255; default uniform random integers 0..255.
    loss_type : {"l2", "l1", "inner", "gram"}
    iter_n : int
    lr_start, lr_end, momentum_start, momentum_end, decay_start, decay_end : float
        Linear schedules over the iterations.
    grad_normalize : bool
        Divide each image's gradient by its mean absolute value.
    image_jitter, jitter_size
        Randomly roll the image by up to ``jitter_size`` pixels before each step (one shift
        per step for the whole batch), undone after it.
    image_blur, sigma_start, sigma_end
        Gaussian blur of each channel after each step (scipy's filter, sigma in pixels).
    use_p_norm_reg, p, lamda_start, lamda_end
        p-norm regulariser, scaled by ``(||random image|| / 2)^2``.
    use_TV_norm_reg, TVbeta, TVlamda_start, TVlamda_end
        Total-variation regulariser, same scaling.
    clip_extreme, clip_extreme_every, e_pct_start, e_pct_end
        Clip each image to its ``pct/2`` and ``100 - pct/2`` percentiles every N steps.
    clip_small_norm, clip_small_norm_every, n_pct_start, n_pct_end
        Zero the pixels of smallest RGB norm every N steps.
    clip_small_contribution, clip_small_contribution_every, c_pct_start, c_pct_end
        Zero the pixels of smallest ``|img * grad|`` every N steps.
    disp_every : int, optional
        Print ``iter=N; err=V;`` every N iterations; default: a progress bar on a terminal,
        else every iteration; 0 for silence.
    save_intermediate, save_intermediate_every, save_intermediate_path
        Save ``initial_img.png`` and min-max normalised ``%05d.jpg`` snapshots (from 00001).
    device : str or torch.device, optional
        Default: the net's device.
    seed : int, optional
        Seed of the jitter shifts (default: numpy's global generator, as the original).

    Returns
    -------
    img : ndarray, (H, W, 3) or (B, H, W, 3), float32
        RGB on the 0..255 scale with the mean added back, not clipped.
    loss_list : ndarray, (iter_n,) or (B, iter_n), float32
        Error (feature loss + regularisers) per iteration.
    """
    s = _engine.setup(features, net, device, layer_weight, channel, mask, loss_type)
    x0, rgb0 = _engine.initial_pixels(initial_image, s)
    dirs = _engine.snapshot_dirs(save_intermediate, save_intermediate_path, s.batch, "icnn_gd")
    if dirs is not None:
        for b, folder in enumerate(dirs):
            save_image_atomic(np.uint8(np.clip(rgb0[b], 0, 255)), os.path.join(folder, "initial_img.png"))
    sched = lambda a, b: Schedule(a, b, iter_n)  # noqa: E731
    hooks = PixelGDHooks(
        tuple(x0.shape[1:]), iter_n, grad_normalize=grad_normalize,
        image_jitter=image_jitter, jitter_size=jitter_size, image_blur=image_blur,
        sigma=sched(sigma_start, sigma_end), use_p_norm_reg=use_p_norm_reg, p=p,
        lamda=sched(lamda_start, lamda_end), use_TV_norm_reg=use_TV_norm_reg, TVbeta=TVbeta,
        TVlamda=sched(TVlamda_start, TVlamda_end), clip_extreme=clip_extreme,
        clip_extreme_every=clip_extreme_every, e_pct=sched(e_pct_start, e_pct_end),
        clip_small_norm=clip_small_norm, clip_small_norm_every=clip_small_norm_every,
        n_pct=sched(n_pct_start, n_pct_end), clip_small_contribution=clip_small_contribution,
        clip_small_contribution_every=clip_small_contribution_every,
        c_pct=sched(c_pct_start, c_pct_end),
        rng=None if seed is None else np.random.default_rng(seed))
    write = _engine.snapshot_writer(dirs, save_intermediate_every, s.img_mean, offset=1)
    reporter = s.reporter(iter_n, disp_every, "icnn_gd")
    try:
        result = run_momentum_gd(
            x0, lambda v: v, s.objective, net, iter_n, lr=sched(lr_start, lr_end),
            momentum=sched(momentum_start, momentum_end), decay=sched(decay_start, decay_end),
            grad_normalize=grad_normalize, hooks=hooks, reporter=reporter,
            on_iteration=None if write is None else (lambda t, v, image: write(t, v)))
    finally:
        reporter.close()
    img = _engine.to_rgb_images(result.variable, s.img_mean)
    return s.unbatch(img), s.unbatch(np.ascontiguousarray(result.losses.T))
