"""Reconstruct images from CNN features by L-BFGS-B on the input of a generator (DGN).

The PyTorch counterpart of the original ``icnn.icnn_dgn_lbfgs`` (SPEC section 5.4).
"""

from __future__ import annotations

import numpy as np
import torch

from . import _engine
from .icnn_dgn_gd import initial_latent, save_initial
from .icnn_lbfgs import _disp_every
from .optim_lbfgs import run_lbfgs
from .param import GeneratorRender

__all__ = ["reconstruct_image"]


def _bounds(gen_feat_bounds, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) arrays from (min, max) pairs, a (size, 2) array, or None for (0, 100)."""
    if gen_feat_bounds is None:
        return np.zeros(size), np.full(size, 100.0)
    pairs = np.array([[(-np.inf if lo is None else lo), (np.inf if hi is None else hi)]
                      for lo, hi in gen_feat_bounds], dtype=np.float64) \
        if not isinstance(gen_feat_bounds, np.ndarray) else np.asarray(gen_feat_bounds, np.float64)
    if pairs.shape == (2,):
        pairs = np.broadcast_to(pairs, (size, 2))
    if pairs.shape != (size, 2):
        raise ValueError(f"gen_feat_bounds has shape {pairs.shape}; expected {size} (min, max) pairs")
    return np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])


def reconstruct_image(features, net, net_gen, layer_weight=None, channel=None, mask=None,
                      initial_gen_feat=None, gen_feat_bounds=None,
                      input_layer_gen=None, output_layer_gen=None,
                      loss_type: str = "l2", maxiter: int = 500, disp=None,
                      save_intermediate: bool = False, save_intermediate_every: int = 1,
                      save_intermediate_path=None, return_gen_feat: bool = False, device=None):
    """Reconstruct image(s) by optimising the generator input z with L-BFGS-B.

    Parameters
    ----------
    features, net, net_gen, layer_weight, channel, mask, loss_type
        As in :func:`icnn_torch.icnn_dgn_gd.reconstruct_image`.
    initial_gen_feat : ndarray, optional
        (4096,) or (B, 4096); default N(0, 1). Clipped into the bounds before the start.
    gen_feat_bounds : sequence of (min, max) or ndarray (4096, 2), optional
        Per-unit bounds of z (None or +-inf for an open side); default (0, 100) each.
    input_layer_gen, output_layer_gen : str, optional
        Accepted for compatibility; unused.
    maxiter, disp, save_intermediate, save_intermediate_every, save_intermediate_path
        As in :func:`icnn_torch.icnn_lbfgs.reconstruct_image`.
    return_gen_feat : bool
        Also return the final z.
    device : str or torch.device, optional

    Returns
    -------
    img : ndarray, (H, W, 3) or (B, H, W, 3), float32
        RGB image of the final z, mean added back, not clipped.
    loss_list : ndarray (n_evaluations,), or a list of them for a batch
    gen_feat : ndarray, (4096,) or (B, 4096)
        Only with ``return_gen_feat``.
    """
    s = _engine.setup(features, net, device, layer_weight, channel, mask, loss_type)
    size = int(getattr(net_gen, "input_size", 4096))
    lower, upper = _bounds(gen_feat_bounds, size)
    z0 = initial_latent(initial_gen_feat, s.batch, size, s.device)
    z0 = torch.minimum(torch.maximum(z0, torch.as_tensor(lower, dtype=z0.dtype, device=z0.device)),
                       torch.as_tensor(upper, dtype=z0.dtype, device=z0.device))
    render = GeneratorRender(net_gen, s.input_size)
    dirs = _engine.snapshot_dirs(save_intermediate, save_intermediate_path, s.batch, "icnn_dgn_lbfgs")
    if dirs is not None:
        with torch.no_grad():
            save_initial(dirs, z0, render(z0), s.img_mean)
    images, losses, feats = [], [], []
    for b in range(s.batch):
        write = _engine.snapshot_writer(None if dirs is None else [dirs[b]],
                                        save_intermediate_every, s.img_mean, offset=0)
        reporter = s.reporter(maxiter, _disp_every(disp), "icnn_dgn_lbfgs")
        reporter.batch = 1
        try:
            res = run_lbfgs(z0[b].cpu().numpy(), (1, size), render, s.objective.select(b), net,
                            lower, upper, maxiter, s.device, reporter=reporter, on_evaluation=write)
        finally:
            reporter.close()
        z = torch.as_tensor(res.variable.astype(np.float32), device=s.device).view(1, size)
        with torch.no_grad():
            images.append(render(z))
        feats.append(res.variable.astype(np.float32))
        losses.append(res.losses)
    img = _engine.to_rgb_images(torch.cat(images), s.img_mean)
    out = (img, losses) if s.batched else (img[0], losses[0])
    if return_gen_feat:
        out = out + ((np.stack(feats) if s.batched else feats[0]),)
    return out
