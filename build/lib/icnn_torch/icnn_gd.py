"""Reconstruct images from CNN features by gradient descent with momentum on the pixels.

The PyTorch counterpart of the original ``icnn.icnn_gd``: the same function, keywords,
defaults, outputs and random-number use; features may carry a batch axis.
"""

from __future__ import annotations

import numpy as np

from .recon.gd import run_momentum_gd
from .recon.param import caffe_to_rgb, initial_pixels
from .recon.problem import problem
from .recon.snapshots import Snapshots
from .recon.transforms import Schedule, pixel_gd_hooks
from .utils import normalise_img

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
                      disp_every: int | None = 1,
                      save_intermediate: bool = False, save_intermediate_every: int = 1,
                      save_intermediate_path=None, save_intermediate_ext: str = "jpg",
                      save_intermediate_postprocess=normalise_img,
                      device=None, seed: int | None = None,
                      jitter_rolls_momentum: bool = False, regulariser_noise: bool = True,
                      exact_masked_gradient: bool = False):
    """Reconstruct image(s) whose features match ``features``, by momentum GD on pixels.

    Each iteration (the original's order): jitter; forward and backward; ``g / mean|g|``;
    ``delta = momentum * delta + g`` (+ regularisers); ``x -= lr * delta``; pixel clipping;
    jitter back; ``x *= 1 - decay``; Gaussian blur.

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
        HxWx3 (or BxHxWx3) RGB 0..255 (a PIL image works too); default uniform random
        integers 0..255 from numpy's global generator.
    loss_type : {"l2", "l1", "inner", "gram"}
    iter_n : int
    lr_start, lr_end, momentum_start, momentum_end, decay_start, decay_end : float
        Linear schedules over the iterations (``start + t * (end - start) / iter_n``).
    grad_normalize : bool
        Divide each image's gradient by its mean absolute value.
    image_jitter, jitter_size
        Roll the image by a random shift of up to ``jitter_size`` pixels before each step
        (one shift per step for the whole batch) and back after it.
    image_blur, sigma_start, sigma_end
        Gaussian blur of each channel after each step (scipy's filter, sigma in pixels).
    use_p_norm_reg, p, lamda_start, lamda_end
        p-norm regulariser ``lamda * sum|x|^p / (||noise|| / 2)^2``.
    use_TV_norm_reg, TVbeta, TVlamda_start, TVlamda_end
        Total-variation regulariser, same scale (it works here; the original's raises a
        NameError).
    clip_extreme, clip_extreme_every, e_pct_start, e_pct_end
        Clip each image to its ``pct/2`` and ``100 - pct/2`` percentiles every N steps.
    clip_small_norm, clip_small_norm_every, n_pct_start, n_pct_end
        Zero the pixels of smallest RGB norm every N steps.
    clip_small_contribution, clip_small_contribution_every, c_pct_start, c_pct_end
        Zero the pixels of smallest ``|img * grad|`` every N steps.
    disp_every : int, optional
        Print ``iter=N; err=V;`` every N iterations (V: the feature loss plus the
        regularisers); None: a bar on an interactive terminal, else every iteration; 0:
        silent.
    save_intermediate, save_intermediate_every, save_intermediate_path
        Save ``initial_img.<ext>`` and ``%05d.<ext>`` snapshots from 00001 (default folder
        ``./recon_img_gd_snapshots<timestamp>``; see :mod:`icnn_torch.recon.snapshots`).
    save_intermediate_ext : str
        Snapshot file type ("jpg").
    save_intermediate_postprocess : callable or None
        Applied to each snapshot (RGB, mean added); default :func:`icnn_torch.utils.normalise_img`.
    device : str or torch.device, optional
        Default: the net's device.
    seed : int, optional
        Seed of the jitter shifts (default: numpy's global generator, as the original).
    jitter_rolls_momentum : bool
        False (the original): rolling back, the original takes the gradient out of the
        momentum buffer, rolls the buffer back and adds the gradient in again unrolled.
        True: roll the whole buffer back, keeping it aligned with the image.
    regulariser_noise : bool
        True (the original): the regulariser scale is the norm of a random noise image,
        drawn from numpy's global generator before the start image, whether or not a
        regulariser is used (so seeded runs draw the original's numbers in its order).
        False: its expected value, drawing nothing.
    exact_masked_gradient : bool
        False (the original): under a mask, the ``l1`` gradient is ``sign(d) * mask`` and
        the ``gram`` one ``((G - G0) @ f) * mask / (N^2 M^2)`` with ``f`` unmasked, the
        original's formulas; True: the gradient of the masked loss (the two differ only
        for masks that are not 0/1 per whole channel or position; see
        :mod:`icnn_torch.recon.losses`).

    Returns
    -------
    img : ndarray, (H, W, 3) or (B, H, W, 3), float32
        RGB on the 0..255 scale with the mean added back, not clipped.
    loss_list : ndarray, (iter_n,) or (B, iter_n), float32
        The feature loss of each iteration (without the regularisers, as the original).
    """
    s = problem(features, net, device, layer_weight, channel, mask, loss_type,
                exact_masked_gradient)
    hooks = pixel_gd_hooks(
        (3,) + s.input_size, iter_n, grad_normalize=grad_normalize, image_jitter=image_jitter,
        jitter_size=jitter_size, jitter_rolls_momentum=jitter_rolls_momentum,
        image_blur=image_blur, sigma_start=sigma_start, sigma_end=sigma_end,
        use_p_norm_reg=use_p_norm_reg, p=p, lamda_start=lamda_start, lamda_end=lamda_end,
        use_TV_norm_reg=use_TV_norm_reg, TVbeta=TVbeta, TVlamda_start=TVlamda_start,
        TVlamda_end=TVlamda_end, regulariser_noise=regulariser_noise,
        clip_extreme=clip_extreme, clip_extreme_every=clip_extreme_every,
        e_pct_start=e_pct_start, e_pct_end=e_pct_end, clip_small_norm=clip_small_norm,
        clip_small_norm_every=clip_small_norm_every, n_pct_start=n_pct_start,
        n_pct_end=n_pct_end, clip_small_contribution=clip_small_contribution,
        clip_small_contribution_every=clip_small_contribution_every,
        c_pct_start=c_pct_start, c_pct_end=c_pct_end,
        rng=None if seed is None else np.random.default_rng(seed))
    x0, rgb0 = initial_pixels(initial_image, s.batch, s.input_size, s.img_mean, s.device)
    snaps = Snapshots("icnn_gd", save_intermediate, save_intermediate_path, s.batch,
                      save_intermediate_every, save_intermediate_ext, save_intermediate_postprocess)
    snaps.initial_image(rgb0)
    reporter = s.reporter(iter_n, disp_every, "icnn_gd")
    sched = lambda a, b: Schedule(a, b, iter_n)  # noqa: E731
    try:
        result = run_momentum_gd(
            x0, lambda v: v, s.objective, net, iter_n, lr=sched(lr_start, lr_end),
            momentum=sched(momentum_start, momentum_end), decay=sched(decay_start, decay_end),
            grad_normalize=grad_normalize, hooks=hooks, reporter=reporter,
            on_iteration=lambda t, v, image: snaps.step(t + 1, v, s.img_mean))
    finally:
        reporter.close()
    img = caffe_to_rgb(result.variable, s.img_mean)
    return s.unbatch(img), s.unbatch(np.ascontiguousarray(result.losses.T))
