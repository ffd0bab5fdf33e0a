"""Reconstruct images from CNN features by momentum GD on the input of a generator (DGN).

The PyTorch counterpart of the original ``icnn.icnn_dgn_gd`` (SPEC section 5.3), used by
script 1: the image is ``center_crop(G(z))`` and z is optimised, clipped to bounds.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from . import _engine
from .optim_gd import Schedule, run_momentum_gd
from .param import BoundsHooks, GeneratorRender, expand_bound
from .reporting import save_snapshots

__all__ = ["reconstruct_image"]


def initial_latent(initial_gen_feat, batch: int, size: int, device) -> torch.Tensor:
    """(B, size) start latents from a (size,) / (B, size) array, or N(0, 1) when None."""
    if initial_gen_feat is None:
        z = np.random.normal(0, 1, (batch, size)).astype(np.float32)
    else:
        z = np.asarray(initial_gen_feat, dtype=np.float32)
        if z.size == size:
            z = np.broadcast_to(z.reshape(1, size), (batch, size))
        elif z.size == batch * size:
            z = z.reshape(batch, size)
        else:
            raise ValueError(f"initial_gen_feat has shape {z.shape}; expected ({size},) or ({batch}, {size})")
    return torch.tensor(np.ascontiguousarray(z), device=device)


def save_initial(dirs, z0: torch.Tensor, image: torch.Tensor, img_mean) -> None:
    """``initial_gen_feat.mat`` and ``initial_img.jpg`` in each snapshot folder."""
    if dirs is None:
        return
    z = z0.detach().cpu().numpy()
    for b, folder in enumerate(dirs):
        _engine.save_mat_atomic(os.path.join(folder, "initial_gen_feat.mat"), {"initial_gen_feat": z[b]})
    save_snapshots(image, dirs, "initial_img.jpg", img_mean, normalise=False)


def reconstruct_image(features, net, net_gen, layer_weight=None, channel=None, mask=None,
                      initial_gen_feat=None, feat_upper_bound=100., feat_lower_bound=0.,
                      input_layer_gen=None, output_layer_gen=None,
                      loss_type: str = "l2", iter_n: int = 200,
                      lr_start: float = 2., lr_end: float = 1e-10,
                      momentum_start: float = 0.9, momentum_end: float = 0.9,
                      decay_start: float = 0.01, decay_end: float = 0.01,
                      disp_every: int | None = None,
                      save_intermediate: bool = False, save_intermediate_every: int = 1,
                      save_intermediate_path=None, return_gen_feat: bool = False, device=None):
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
        (4096,) or (B, 4096) start; default N(0, 1) (the scripts use zeros).
    feat_upper_bound, feat_lower_bound : float or ndarray, optional
        Bounds of z: scalar, (4096,) or (B, 4096); None for no bound.
    input_layer_gen, output_layer_gen : str, optional
        Accepted for compatibility with the Caffe API (blob names); unused.
    iter_n, lr_start, lr_end, momentum_start, momentum_end, decay_start, decay_end
        Linear schedules (defaults: 200 iterations, lr 2 -> 1e-10, momentum 0.9, decay 0.01).
    disp_every : int, optional
        See :func:`icnn_torch.icnn_gd.reconstruct_image`.
    save_intermediate, save_intermediate_every, save_intermediate_path
        Save ``initial_gen_feat.mat``, ``initial_img.jpg`` and ``%05d.jpg`` snapshots
        (numbered from 00001, the image of each iteration's forward pass).
    return_gen_feat : bool
        Also return z of the returned image.
    device : str or torch.device, optional
        Default: the encoder's device.

    Returns
    -------
    img : ndarray, (H, W, 3) or (B, H, W, 3), float32
        RGB image of the last evaluated z (before the final update), mean added back, not
        clipped.
    loss_list : ndarray, (iter_n,) or (B, iter_n), float32
    gen_feat : ndarray, (4096,) or (B, 4096)
        Only with ``return_gen_feat``.
    """
    s = _engine.setup(features, net, device, layer_weight, channel, mask, loss_type)
    size = int(getattr(net_gen, "input_size", 4096))
    z0 = initial_latent(initial_gen_feat, s.batch, size, s.device)
    render = GeneratorRender(net_gen, s.input_size)
    dirs = _engine.snapshot_dirs(save_intermediate, save_intermediate_path, s.batch, "icnn_dgn_gd")
    if dirs is not None:
        with torch.no_grad():
            save_initial(dirs, z0, render(z0), s.img_mean)
    hooks = BoundsHooks(expand_bound(feat_lower_bound, s.batch, size, s.device, "feat_lower_bound"),
                        expand_bound(feat_upper_bound, s.batch, size, s.device, "feat_upper_bound"))
    sched = lambda a, b: Schedule(a, b, iter_n)  # noqa: E731
    write = _engine.snapshot_writer(dirs, save_intermediate_every, s.img_mean, offset=1)
    reporter = s.reporter(iter_n, disp_every, "icnn_dgn_gd")
    try:
        result = run_momentum_gd(
            z0, render, s.objective, net, iter_n, lr=sched(lr_start, lr_end),
            momentum=sched(momentum_start, momentum_end), decay=sched(decay_start, decay_end),
            grad_normalize=True, hooks=hooks, reporter=reporter,
            on_iteration=None if write is None else (lambda t, v, image: write(t, image)))
    finally:
        reporter.close()
    img = s.unbatch(_engine.to_rgb_images(result.last_image, s.img_mean))
    losses = s.unbatch(np.ascontiguousarray(result.losses.T))
    if return_gen_feat:
        return img, losses, s.unbatch(result.last_variable.detach().cpu().numpy())
    return img, losses
