"""Reconstruct images from CNN features by L-BFGS-B on the pixels.

The PyTorch counterpart of the original ``icnn.icnn_lbfgs``, used by scripts 2-7: scipy's
L-BFGS-B on the flattened Caffe-space image, boxed to [-mean_c, 255 - mean_c] per channel
(0..255 in RGB terms).
"""

from __future__ import annotations

import numpy as np

from .recon.lbfgs import run_lbfgs
from .recon.param import caffe_to_rgb, initial_pixels, pixel_bounds
from .recon.problem import problem
from .recon.snapshots import Snapshots
from .utils import normalise_img

__all__ = ["reconstruct_image"]


def reconstruct_image(features, net, layer_weight=None, channel=None, mask=None,
                      initial_image=None, loss_type: str = "l2", maxiter: int = 500,
                      disp=True, save_intermediate: bool = False, save_intermediate_every: int = 1,
                      save_intermediate_path=None, save_intermediate_ext: str = "jpg",
                      save_intermediate_postprocess=normalise_img, device=None,
                      exact_masked_gradient: bool = False):
    """Reconstruct image(s) whose features match ``features``, by pixel L-BFGS-B.

    Parameters
    ----------
    features : dict or list of dict
        Target features per layer (see :func:`icnn_torch.icnn_gd.reconstruct_image`);
        a batch is reconstructed one image after another.
    net : encoder
    layer_weight, channel, mask, loss_type
        As in :func:`icnn_torch.icnn_gd.reconstruct_image`.
    initial_image : ndarray, optional
        HxWx3 (or BxHxWx3) RGB 0..255; default uniform random integers 0..255 (numpy's
        global generator). The scripts start from the flat mean-colour image.
    maxiter : int
        Maximum number of L-BFGS iterations (default 500; the scripts use 200).
    disp : bool, int or None
        True (default): print ``iter=N; err=V;`` every L-BFGS iteration (the original
        passed ``disp`` to scipy, whose own report SciPy >= 1.15 no longer prints); an int
        N: every N iterations; None: a bar on an interactive terminal, else lines; False:
        silent.
    save_intermediate, save_intermediate_every, save_intermediate_path, save_intermediate_ext,
    save_intermediate_postprocess
        Save ``initial_img.png`` and ``%05d.<ext>`` snapshots, one per function evaluation
        numbered from 00000 (default folder ``./recon_img_lbfgs_snapshots<timestamp>``).
    device : str or torch.device, optional
        Default: the net's device.
    exact_masked_gradient : bool
        As in :func:`icnn_torch.icnn_gd.reconstruct_image`.

    Returns
    -------
    img : ndarray, (H, W, 3) or (B, H, W, 3), float64
        RGB, 0..255 scale with the mean added back: scipy's float64 ``res.x``, as the
        original returns it.
    loss_list : ndarray (n_evaluations,) float64, or a list of them for a batch
        The loss of every function evaluation (longer than ``maxiter``).
    """
    s = problem(features, net, device, layer_weight, channel, mask, loss_type,
                exact_masked_gradient)
    x0, rgb0 = initial_pixels(initial_image, s.batch, s.input_size, s.img_mean, s.device)
    shape = (1, 3) + s.input_size
    lower, upper = pixel_bounds(s.img_mean, shape[1:])
    snaps = Snapshots("icnn_lbfgs", save_intermediate, save_intermediate_path, s.batch,
                      save_intermediate_every, save_intermediate_ext, save_intermediate_postprocess)
    images, losses = [], []
    for b in range(s.batch):
        one = snaps.only(b)
        one.initial_image(rgb0[b:b + 1], "initial_img.png")
        reporter = s.reporter(maxiter, disp, "icnn_lbfgs", batch=1)  # True: every iteration
        try:
            res = run_lbfgs(x0[b].cpu().numpy(), shape, lambda v: v, s.objective.select(b), net,
                            lower, upper, maxiter, s.device, reporter=reporter,
                            on_evaluation=lambda k, image: one.step(k, image, s.img_mean))
        finally:
            reporter.close()
        images.append(res.variable.reshape(shape))
        losses.append(res.losses)
    img = caffe_to_rgb(np.concatenate(images), s.img_mean)
    return (img, losses) if s.batched else (img[0], losses[0])

