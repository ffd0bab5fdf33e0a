"""Reconstruct images from CNN features by momentum GD on the input of a generator (DGN).

The PyTorch counterpart of the original ``icnn.icnn_dgn_gd``, used by script 1: the image
is ``center_crop(G(z))`` and z is optimised, clipped to bounds.
"""

from __future__ import annotations

import numpy as np
import torch

from .recon.gd import run_momentum_gd
from .recon.param import GeneratorRender, caffe_to_rgb, expand_bound, initial_latent
from .recon.problem import problem
from .recon.snapshots import Snapshots
from .recon.transforms import Bounds, Schedule
from .utils import normalise_img

__all__ = ["reconstruct_image"]


def reconstruct_image(features, net, net_gen, layer_weight=None, channel=None, mask=None,
                      initial_gen_feat=None, feat_upper_bound=100., feat_lower_bound=0.,
                      input_layer_gen=None, output_layer_gen=None,
                      loss_type: str = "l2", iter_n: int = 200,
                      lr_start: float = 2., lr_end: float = 1e-10,
                      momentum_start: float = 0.9, momentum_end: float = 0.9,
                      decay_start: float = 0.01, decay_end: float = 0.01,
                      disp_every: int | None = 1,
                      save_intermediate: bool = False, save_intermediate_every: int = 1,
                      save_intermediate_path=None, save_intermediate_ext: str = "jpg",
                      save_intermediate_postprocess=normalise_img,
                      return_gen_feat: bool = False, device=None,
                      exact_masked_gradient: bool = False):
    """Reconstruct image(s) by optimising the generator input z with momentum GD.

    Each iteration: image = crop(G(z)); loss through the encoder; gradient back through
    G to z; ``g / mean|g|``; momentum; step; ``z *= 1 - decay``; clip z to the bounds.

    Parameters
    ----------
    features : dict or list of dict
        Target features per layer (see :func:`icnn_torch.icnn_gd.reconstruct_image`).
    net : encoder
        E.g. :class:`icnn_torch.models.VGG19`; its input size sets the crop.
    net_gen : nn.Module
        Generator mapping (B, 4096) -> (B, 3, 256, 256) Caffe-space images, e.g.
        :class:`icnn_torch.models.DeePSiMGenerator`.
    layer_weight, channel, mask, loss_type
        As in :func:`icnn_torch.icnn_gd.reconstruct_image`.
    initial_gen_feat : ndarray, optional
        (4096,) or (B, 4096) start; default N(0, 1) from numpy's global generator (the
        scripts use zeros).
    feat_upper_bound, feat_lower_bound : float or ndarray, optional
        Bounds of z: scalar, (4096,) or (B, 4096); None for no bound.
    input_layer_gen, output_layer_gen : str, optional
        The Caffe blob names of the original's API; accepted and unused (the generator
        module's input and output are these blobs).
    iter_n, lr_start, lr_end, momentum_start, momentum_end, decay_start, decay_end
        Linear schedules (defaults: 200 iterations, lr 2 -> 1e-10, momentum 0.9, decay 0.01).
    disp_every : int, optional
        See :func:`icnn_torch.icnn_gd.reconstruct_image`.
    save_intermediate, save_intermediate_every, save_intermediate_path, save_intermediate_ext,
    save_intermediate_postprocess
        Save ``initial_gen_feat.mat``, ``initial_img.<ext>`` (the start, not
        postprocessed), ``%05d.<ext>`` snapshots (numbered from 00001, the image of each
        iteration's forward pass) and, at the end, ``final_gen_feat.mat`` (the returned z);
        default folder ``./recon_img_dgn_gd_snapshots<timestamp>``.
    return_gen_feat : bool
        Also return z of the returned image.
    device : str or torch.device, optional
        Default: the encoder's device.
    exact_masked_gradient : bool
        As in :func:`icnn_torch.icnn_gd.reconstruct_image`.

    Returns
    -------
    img : ndarray, (H, W, 3) or (B, H, W, 3), float32
        RGB image of the last evaluated z (before the final update), mean added back, not
        clipped.
    loss_list : ndarray, (iter_n,) or (B, iter_n), float32
    gen_feat : ndarray, (4096,) or (B, 4096)
        Only with ``return_gen_feat``: the last evaluated z; float32, or float64 once a
        float64 bound array has clipped it (the scripts' fc7 bounds), as in the original.
    """
    s = problem(features, net, device, layer_weight, channel, mask, loss_type,
                exact_masked_gradient)
    size = int(getattr(net_gen, "input_size", 4096))
    z0 = initial_latent(initial_gen_feat, s.batch, size, s.device)
    render = GeneratorRender(net_gen, s.input_size)
    snaps = Snapshots("icnn_dgn_gd", save_intermediate, save_intermediate_path, s.batch,
                      save_intermediate_every, save_intermediate_ext, save_intermediate_postprocess)
    snaps.latent("initial_gen_feat", z0.cpu().numpy())
    if snaps.active:
        with torch.no_grad():
            snaps.initial_image(caffe_to_rgb(render(z0), s.img_mean))
    hooks = [Bounds(expand_bound(feat_lower_bound, s.batch, size, s.device, "feat_lower_bound"),
                    expand_bound(feat_upper_bound, s.batch, size, s.device, "feat_upper_bound"))]
    sched = lambda a, b: Schedule(a, b, iter_n)  # noqa: E731
    reporter = s.reporter(iter_n, disp_every, "icnn_dgn_gd")
    try:
        result = run_momentum_gd(
            z0, render, s.objective, net, iter_n, lr=sched(lr_start, lr_end),
            momentum=sched(momentum_start, momentum_end), decay=sched(decay_start, decay_end),
            grad_normalize=True, hooks=hooks, reporter=reporter,
            on_iteration=lambda t, v, image: snaps.step(t + 1, image, s.img_mean))
    finally:
        reporter.close()
    final_gen_feat = result.last_variable.detach().cpu().numpy()
    snaps.latent("final_gen_feat", final_gen_feat)
    img = s.unbatch(caffe_to_rgb(result.last_image, s.img_mean))
    losses = s.unbatch(np.ascontiguousarray(result.losses.T))
    if return_gen_feat:
        return img, losses, s.unbatch(final_gen_feat)
    return img, losses
