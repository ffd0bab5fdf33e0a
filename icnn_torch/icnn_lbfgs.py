"""Reconstruct images from CNN features by L-BFGS-B on the pixels.

The PyTorch counterpart of the original ``icnn.icnn_lbfgs`` (SPEC section 5.1), used by
scripts 2-7: scipy's L-BFGS-B on the flattened Caffe-space image, boxed to
[-mean_c, 255 - mean_c] per channel (0..255 in RGB terms).
"""

from __future__ import annotations

import os

import numpy as np

from . import _engine
from .optim_lbfgs import run_lbfgs
from .param import pixel_bounds
from .reporting import save_image_atomic

__all__ = ["reconstruct_image"]


def reconstruct_image(features, net, layer_weight=None, channel=None, mask=None,
                      initial_image=None, loss_type: str = "l2", maxiter: int = 500,
                      disp=None, save_intermediate: bool = False, save_intermediate_every: int = 1,
                      save_intermediate_path=None, device=None):
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
        HxWx3 (or BxHxWx3) RGB 0..255; default uniform random integers 0..255. The
        scripts start from the flat mean-colour image.
    maxiter : int
        Maximum number of L-BFGS iterations (default 500; the scripts use 200).
    disp : bool, int or None
        True: print ``iter=N; err=V;`` every iteration; an int N: every N iterations;
        False: silent; None (default): a progress bar on a terminal, else lines.
    save_intermediate, save_intermediate_every, save_intermediate_path
        Save ``initial_img.png`` and ``%05d.jpg`` snapshots, one per function evaluation
        numbered from 00000.
    device : str or torch.device, optional
        Default: the net's device.

    Returns
    -------
    img : ndarray, (H, W, 3) or (B, H, W, 3), float32
        RGB, 0..255 scale with the mean added back.
    loss_list : ndarray (n_evaluations,), or a list of them for a batch
        The loss of every function evaluation (longer than ``maxiter``).
    """
    s = _engine.setup(features, net, device, layer_weight, channel, mask, loss_type)
    x0, rgb0 = _engine.initial_pixels(initial_image, s)
    shape = (1,) + tuple(x0.shape[1:])
    lower, upper = pixel_bounds(s.img_mean, shape[1:])
    dirs = _engine.snapshot_dirs(save_intermediate, save_intermediate_path, s.batch, "icnn_lbfgs")
    images, losses = [], []
    for b in range(s.batch):
        if dirs is not None:
            save_image_atomic(np.uint8(np.clip(rgb0[b], 0, 255)), os.path.join(dirs[b], "initial_img.png"))
        write = _engine.snapshot_writer(None if dirs is None else [dirs[b]],
                                        save_intermediate_every, s.img_mean, offset=0)
        reporter = s.reporter(maxiter, _disp_every(disp), "icnn_lbfgs")
        reporter.batch = 1
        try:
            res = run_lbfgs(x0[b].cpu().numpy(), shape, lambda v: v, s.objective.select(b), net,
                            lower, upper, maxiter, s.device, reporter=reporter, on_evaluation=write)
        finally:
            reporter.close()
        images.append(res.variable.reshape(shape).astype(np.float32))
        losses.append(res.losses)
    img = _engine.to_rgb_images(np.concatenate(images), s.img_mean)
    return (img, losses) if s.batched else (img[0], losses[0])


def _disp_every(disp):
    """Map the original's boolean ``disp`` onto the reporter's ``disp_every``."""
    if disp is None:
        return None
    if disp is True:
        return 1
    if disp is False:
        return 0
    return int(disp)
