"""Reconstruct images from CNN features by L-BFGS-B on the input of a generator (DGN).

The PyTorch counterpart of the original ``icnn.icnn_dgn_lbfgs``: scipy's L-BFGS-B on z,
the image being ``center_crop(G(z))``.
"""

from __future__ import annotations

import numpy as np
import torch

from .recon.lbfgs import run_lbfgs
from .recon.param import GeneratorRender, caffe_to_rgb, initial_latent, latent_bounds
from .recon.problem import problem
from .recon.snapshots import Snapshots
from .utils import normalise_img

__all__ = ["reconstruct_image"]


def reconstruct_image(features, net, net_gen, layer_weight=None, channel=None, mask=None,
                      initial_gen_feat=None, gen_feat_bounds=None,
                      input_layer_gen=None, output_layer_gen=None,
                      loss_type: str = "l2", maxiter: int = 500, disp=True,
                      save_intermediate: bool = False, save_intermediate_every: int = 1,
                      save_intermediate_path=None, save_intermediate_ext: str = "jpg",
                      save_intermediate_postprocess=normalise_img,
                      return_gen_feat: bool = False, device=None,
                      exact_masked_gradient: bool = False):
    """Reconstruct image(s) by optimising the generator input z with L-BFGS-B.

    Parameters
    ----------
    features, net, net_gen, layer_weight, channel, mask, loss_type
        As in :func:`icnn_torch.icnn_dgn_gd.reconstruct_image`.
    initial_gen_feat : ndarray, optional
        (4096,) or (B, 4096); default N(0, 1) from numpy's global generator. L-BFGS-B
        starts from it clipped into the bounds.
    gen_feat_bounds : sequence of (min, max) or ndarray (4096, 2), optional
        Per-unit bounds of z (None or +-inf for an open side); default (0, 100) each.
    input_layer_gen, output_layer_gen : str, optional
        The Caffe blob names of the original's API; accepted and unused.
    maxiter, disp
        As in :func:`icnn_torch.icnn_lbfgs.reconstruct_image`.
    save_intermediate, save_intermediate_every, save_intermediate_path, save_intermediate_ext,
    save_intermediate_postprocess
        Save ``initial_gen_feat.mat`` (the start as given), ``%05d.<ext>`` snapshots, one
        per function evaluation numbered from 00000, and ``final_gen_feat.mat`` (the final
        z); default folder ``./recon_img_dgn_lbfgs_snapshots<timestamp>``.
    return_gen_feat : bool
        Also return the final z.
    device : str or torch.device, optional
    exact_masked_gradient : bool
        As in :func:`icnn_torch.icnn_gd.reconstruct_image`.

    Returns
    -------
    img : ndarray, (H, W, 3) or (B, H, W, 3), float32
        RGB image of the final z, mean added back, not clipped.
    loss_list : ndarray (n_evaluations,) float64, or a list of them for a batch
    gen_feat : ndarray, (4096,) or (B, 4096), float64
        Only with ``return_gen_feat``: scipy's ``res.x``, as the original returns it.
    """
    s = problem(features, net, device, layer_weight, channel, mask, loss_type,
                exact_masked_gradient)
    size = int(getattr(net_gen, "input_size", 4096))
    lower, upper = latent_bounds(gen_feat_bounds, size)
    z0 = initial_latent(initial_gen_feat, s.batch, size, s.device)
    render = GeneratorRender(net_gen, s.input_size)
    snaps = Snapshots("icnn_dgn_lbfgs", save_intermediate, save_intermediate_path, s.batch,
                      save_intermediate_every, save_intermediate_ext, save_intermediate_postprocess)
    snaps.latent("initial_gen_feat", z0.cpu().numpy())
    start = np.clip(z0.cpu().numpy().astype(np.float64), lower, upper)
    images, feats, losses = [], [], []
    for b in range(s.batch):
        one = snaps.only(b)
        reporter = s.reporter(maxiter, disp, "icnn_dgn_lbfgs", batch=1)  # True: every iteration
        try:
            res = run_lbfgs(start[b], (1, size), render, s.objective.select(b), net,
                            lower, upper, maxiter, s.device, reporter=reporter,
                            on_evaluation=lambda k, image: one.step(k, image, s.img_mean))
        finally:
            reporter.close()
        z = torch.as_tensor(res.variable, dtype=torch.float32, device=s.device).view(1, size)
        with torch.no_grad():
            images.append(render(z))
        feats.append(res.variable)
        losses.append(res.losses)
    final_gen_feat = np.stack(feats)
    snaps.latent("final_gen_feat", final_gen_feat)
    img = caffe_to_rgb(torch.cat(images), s.img_mean)
    out = (img, losses) if s.batched else (img[0], losses[0])
    if return_gen_feat:
        out = out + (s.unbatch(final_gen_feat),)
    return out
