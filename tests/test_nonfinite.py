"""No silent NaN result: damaged weights are refused at load, and a loss that becomes NaN or
infinite stops a reconstruction with an error naming the likely cause.

The case that was reported: 4 KB of 0xFF bytes written inside fc6 of the VGG19
caffemodel (same file size, so the size check passes), then a script ran to the end,
printed no progress line and saved its start image as the "reconstruction".
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _engine_helpers import draw_latent, fc7_upper_bounds, random_generator, random_rgb, tiny_encoder
from caffe_writer import random_vgg19_layers, write_caffemodel
from icnn_torch import icnn_dgn_gd, icnn_dgn_lbfgs, icnn_gd, icnn_lbfgs
from icnn_torch.errors import DamagedFileError, NonFiniteError
from icnn_torch.run.advice import Context, render
from icnn_torch.run.cli import run_cli
from icnn_torch.models import load_vgg19


def test_caffemodel_with_ff_bytes_inside_fc6_is_refused_at_load(tmp_path, capsys):
    layers = random_vgg19_layers(seed=3)
    for name, _type, blobs in layers:
        if name == "fc6":
            raw = blobs[0].reshape(-1).view(np.uint8)
            raw[1 << 20:(1 << 20) + 4096] = 0xFF  # 4 KB of 0xFF: 1024 float32 NaNs
    path = tmp_path / "VGG_ILSVRC_19_layers.caffemodel"
    write_caffemodel(path, layers, fmt="v1", legacy_shapes=True)
    del layers
    with pytest.raises(DamagedFileError) as info:
        load_vgg19(path, device="cpu", cache=False)
    message = str(info.value)
    assert str(path) in message and "'fc6'" in message and "NaN" in message
    assert info.value.item == "vgg19"  # the library names the item, not a command
    # on the command line: one line, no traceback, the command that replaces the file
    assert run_cli(lambda: load_vgg19(path, device="cpu", cache=False), argv=[]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "fc6" in err[0]
    assert err[0].endswith("replace it with: python -m icnn_torch.download --verify vgg19")


def _nan_encoder(device, size: int):
    """The tiny encoder with one NaN weight in its last layer: every fc feature is NaN."""
    net = tiny_encoder(device, size=size)
    with torch.no_grad():
        net.model[6].weight[0, 0] = float("nan")
    return net


def _targets(device, size: int) -> dict:
    net = tiny_encoder(device, size=size)
    x = torch.zeros(1, 3, size, size, device=device)
    with torch.no_grad():
        return {k: v[0].cpu().numpy() for k, v in net(x, ["c1", "fc"]).items()}


@pytest.mark.parametrize("disp_every", [1, 0], ids=["lines", "silent"])
def test_icnn_gd_stops_on_a_nan_loss(device, disp_every, capsys):
    """With lines the run stops at the first line (iteration 1); silent, at the end of the
    loop, when the losses reach the host; either way the engine returns nothing."""
    net = _nan_encoder(device, 16)
    with pytest.raises(NonFiniteError) as info:
        icnn_gd.reconstruct_image(_targets(device, 16), net, iter_n=5, disp_every=disp_every,
                                  initial_image=random_rgb(1, 16))
    message = str(info.value)
    assert "iteration 1" in message and "nothing is saved" in message
    assert "weights" in message and "features" in message  # the likely causes
    # the command line says how to check the weights, and only with a command that checks:
    # the VGG19 md5 is published, the generator's is not
    line = render(info.value, Context(uses_generator=True))
    assert "python -m icnn_torch.download --verify vgg19" in line
    assert "--verify generator" not in line and "no md5 of the generator" in line
    printed = capsys.readouterr().out.splitlines()
    assert printed == (["iter=1; err=nan;"] if disp_every else [])


@pytest.mark.parametrize("engine", ["icnn_lbfgs", "icnn_dgn_lbfgs"])
def test_lbfgs_engines_stop_at_the_first_nan_evaluation(device, engine):
    size = 16 if engine == "icnn_lbfgs" else 224
    net = _nan_encoder(device, size)
    targets = _targets(device, size)
    with pytest.raises(NonFiniteError, match="function evaluation 0"):
        if engine == "icnn_lbfgs":
            icnn_lbfgs.reconstruct_image(targets, net, maxiter=5, disp=False,
                                         initial_image=random_rgb(2, 16))
        else:
            icnn_dgn_lbfgs.reconstruct_image(targets, net, random_generator(str(device)),
                                             maxiter=5, disp=False,
                                             initial_gen_feat=np.zeros(4096, np.float32))


def test_icnn_dgn_gd_stops_on_a_nan_loss(device):
    net = _nan_encoder(device, 224)
    z0 = draw_latent(fc7_upper_bounds(), np.random.default_rng(3))
    with pytest.raises(NonFiniteError, match="iteration 1"):
        icnn_dgn_gd.reconstruct_image(_targets(device, 224), net, random_generator(str(device)),
                                      initial_gen_feat=z0, iter_n=3, disp_every=1)
