"""The original ``icnn``'s public face: signatures, defaults, return types, files written.

A script written against the original ports by changing its imports, so the keyword
options of each ``reconstruct_image`` are the original's, in its order and with its
defaults (the table below is read off KamitaniLab/icnn at commit 793e58a, the facts this
port follows); ours come after them. Return dtypes follow the original's arithmetic:
float32 images from the GD engines and from the generator, scipy's float64 ``res.x`` from
``icnn_lbfgs`` (and as z from ``icnn_dgn_lbfgs``); float32 loss lists from the GD engines,
float64 from L-BFGS (the original sums float32 layer losses into a Python float).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from PIL import Image

from _engine_helpers import (draw_latent, encoder_features, fc7_upper_bounds, random_generator,
                             random_rgb, tiny_encoder)
from icnn_torch import icnn_dgn_gd, icnn_dgn_lbfgs, icnn_gd, icnn_lbfgs, utils
from icnn_torch.recon import problem as problem_module
from icnn_torch.recon.objective import build_feature_loss
from icnn_torch.utils import normalise_img

NORMALISE = "normalise_img"

#: The original's ``reconstruct_image`` parameters, in order, with their defaults.
ORIGINAL = {
    "icnn_gd": ("features", "net", dict(
        layer_weight=None, channel=None, mask=None, initial_image=None, loss_type="l2",
        iter_n=200, lr_start=2.0, lr_end=1e-10, momentum_start=0.9, momentum_end=0.9,
        decay_start=0.2, decay_end=1e-10, grad_normalize=True, image_jitter=False,
        jitter_size=32, image_blur=True, sigma_start=2.0, sigma_end=0.5, use_p_norm_reg=False,
        p=3, lamda_start=0.5, lamda_end=0.5, use_TV_norm_reg=False, TVbeta=2,
        TVlamda_start=0.5, TVlamda_end=0.5, clip_extreme=False, clip_extreme_every=4,
        e_pct_start=1, e_pct_end=1, clip_small_norm=False, clip_small_norm_every=4,
        n_pct_start=5.0, n_pct_end=5.0, clip_small_contribution=False,
        clip_small_contribution_every=4, c_pct_start=5.0, c_pct_end=5.0, disp_every=1,
        save_intermediate=False, save_intermediate_every=1, save_intermediate_path=None,
        save_intermediate_ext="jpg", save_intermediate_postprocess=NORMALISE)),
    "icnn_lbfgs": ("features", "net", dict(
        layer_weight=None, channel=None, mask=None, initial_image=None, loss_type="l2",
        maxiter=500, disp=True, save_intermediate=False, save_intermediate_every=1,
        save_intermediate_path=None, save_intermediate_ext="jpg",
        save_intermediate_postprocess=NORMALISE)),
    "icnn_dgn_gd": ("features", "net", "net_gen", dict(
        layer_weight=None, channel=None, mask=None, initial_gen_feat=None,
        feat_upper_bound=100.0, feat_lower_bound=0.0, input_layer_gen=None,
        output_layer_gen=None, loss_type="l2", iter_n=200, lr_start=2.0, lr_end=1e-10,
        momentum_start=0.9, momentum_end=0.9, decay_start=0.01, decay_end=0.01, disp_every=1,
        save_intermediate=False, save_intermediate_every=1, save_intermediate_path=None,
        save_intermediate_ext="jpg", save_intermediate_postprocess=NORMALISE,
        return_gen_feat=False)),
    "icnn_dgn_lbfgs": ("features", "net", "net_gen", dict(
        layer_weight=None, channel=None, mask=None, initial_gen_feat=None,
        gen_feat_bounds=None, input_layer_gen=None, output_layer_gen=None, loss_type="l2",
        maxiter=500, disp=True, save_intermediate=False, save_intermediate_every=1,
        save_intermediate_path=None, save_intermediate_ext="jpg",
        save_intermediate_postprocess=NORMALISE, return_gen_feat=False)),
}
#: Our keywords, after the original's, in order, with their defaults (each the original's
#: behaviour: the net's device, numpy's global generator, the original's jitter roll-back,
#: regulariser noise and masked gradients).
OURS = {
    "icnn_gd": dict(device=None, seed=None, jitter_rolls_momentum=False, regulariser_noise=True,
                    exact_masked_gradient=False),
    "icnn_lbfgs": dict(device=None, exact_masked_gradient=False),
    "icnn_dgn_gd": dict(device=None, exact_masked_gradient=False),
    "icnn_dgn_lbfgs": dict(device=None, exact_masked_gradient=False),
}
ENGINES = {"icnn_gd": icnn_gd, "icnn_lbfgs": icnn_lbfgs, "icnn_dgn_gd": icnn_dgn_gd,
           "icnn_dgn_lbfgs": icnn_dgn_lbfgs}


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_signature_starts_with_the_originals_parameters_and_defaults(name):
    *positional, keywords = ORIGINAL[name]
    params = list(inspect.signature(ENGINES[name].reconstruct_image).parameters.values())
    original = list(positional) + list(keywords)
    assert [p.name for p in params[:len(original)]] == original
    for p in params[:len(positional)]:
        assert p.default is inspect.Parameter.empty
    for p in params[len(positional):len(original)]:
        expected = keywords[p.name]
        if expected == NORMALISE:
            assert p.default is normalise_img, p.name
        else:
            assert p.default == expected and type(p.default) is type(expected), p.name
    # ours come after the original's, all keywords with a default
    ours = params[len(original):]
    assert [p.name for p in ours] == list(OURS[name])
    for p in ours:
        assert p.default is OURS[name][p.name] or (
            p.default == OURS[name][p.name] and type(p.default) is type(OURS[name][p.name])), p.name


def test_utils_keeps_the_original_names():
    for name in ("img_preprocess", "img_deprocess", "normalise_img", "get_cnn_features",
                 "p_norm", "TV_norm", "image_norm", "gaussian_blur", "clip_extreme_value",
                 "clip_small_norm_pixel", "clip_small_contribution_pixel", "sort_layer_list",
                 "create_feature_masks", "estimate_cnn_feat_std"):
        assert callable(getattr(utils, name)), name
    img = np.random.default_rng(0).normal(0, 50, (3, 8, 8))
    out = utils.clip_small_norm_pixel(img, 25)
    norm = np.sqrt((img ** 2).sum(axis=0))
    np.testing.assert_array_equal(out[:, norm < np.percentile(norm, 25)], 0)
    grad = np.ones_like(img)
    out = utils.clip_small_contribution_pixel(img, grad, 25)
    np.testing.assert_array_equal(out[:, norm < np.percentile(norm, 25)], 0)


def _run(name: str, device, tmp_path, **kw):
    """One short run of an engine on a tiny problem; snapshots into ``tmp_path``."""
    if name in ("icnn_gd", "icnn_lbfgs"):
        net = tiny_encoder(device, size=16)
        targets = encoder_features(net, random_rgb(1, 16), ("c1", "fc"))
        steps = {"iter_n": 2} if name == "icnn_gd" else {"maxiter": 2}
        display = {"disp_every": 0} if name == "icnn_gd" else {"disp": False}
        return ENGINES[name].reconstruct_image(targets, net, initial_image=random_rgb(2, 16),
                                               **steps, **display, **kw)
    net = tiny_encoder(device, size=224)
    targets = encoder_features(net, random_rgb(3, 224), ("c1", "fc"))
    z0 = draw_latent(fc7_upper_bounds(), np.random.default_rng(4))
    steps = {"iter_n": 2, "disp_every": 0} if name == "icnn_dgn_gd" else {"maxiter": 2, "disp": False}
    return ENGINES[name].reconstruct_image(targets, net, random_generator(str(device)),
                                           initial_gen_feat=z0, return_gen_feat=True,
                                           **steps, **kw)


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_exact_masked_gradient_reaches_the_objective(name, exact, monkeypatch, tmp_path):
    """Each engine hands ``exact_masked_gradient`` (default False) to the objective it builds."""
    built = []

    def spy(*args, **kwargs):
        objective, batched = build_feature_loss(*args, **kwargs)
        built.append(objective)
        return objective, batched

    monkeypatch.setattr(problem_module, "build_feature_loss", spy)
    kw = {"exact_masked_gradient": True} if exact else {}
    _run(name, "cpu", tmp_path, loss_type="l1", mask={"c1": np.eye(4, dtype=np.float32)}, **kw)
    assert [o.exact_masked_gradient for o in built] == [exact]


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_return_types_are_the_originals(name, device, tmp_path):
    out = _run(name, device, tmp_path)
    img, losses = out[0], out[1]
    assert img.dtype == (np.float64 if name == "icnn_lbfgs" else np.float32)
    assert losses.dtype == (np.float64 if name.endswith("lbfgs") else np.float32)
    if name.startswith("icnn_dgn"):
        z = out[2]
        assert z.shape == (4096,)
        assert z.dtype == (np.float64 if name == "icnn_dgn_lbfgs" else np.float32)


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_snapshot_extension_and_postprocess_are_applied(name, device, tmp_path):
    """``save_intermediate_ext`` picks the file type of the snapshots, and
    ``save_intermediate_postprocess`` is applied to each snapshot (here: a constant image);
    None saves the image itself, clipped to 0..255."""
    grey = lambda img: np.full(img.shape, 77, np.uint8)  # noqa: E731
    _run(name, device, tmp_path, save_intermediate=True, save_intermediate_path=str(tmp_path / "a"),
         save_intermediate_ext="png", save_intermediate_postprocess=grey)
    numbered = sorted(p for p in (tmp_path / "a").glob("0*"))
    assert numbered and all(p.suffix == ".png" for p in numbered)
    for path in numbered:
        with Image.open(path) as im:
            assert np.all(np.asarray(im) == 77)
    _run(name, device, tmp_path, save_intermediate=True, save_intermediate_path=str(tmp_path / "b"),
         save_intermediate_ext="png", save_intermediate_postprocess=None)
    numbered = sorted(p for p in (tmp_path / "b").glob("0*"))
    with Image.open(numbered[0]) as im:
        raw = np.asarray(im)
    assert raw.dtype == np.uint8 and len(np.unique(raw)) > 10  # the image, not normalised away


def test_dgn_gd_latent_follows_numpy_promotion_by_its_bounds(device):
    """The original clips its float32 z with ``np.minimum(z, upper)``: a float64 bound array
    (``np.loadtxt`` of fc7.txt, as the scripts pass it) makes z float64 from the first
    update on; a float32 array or a scalar keeps it float32."""
    net = tiny_encoder(device, size=224)
    targets = encoder_features(net, random_rgb(5, 224), ("c1", "fc"))
    upper = fc7_upper_bounds()
    z0 = draw_latent(upper, np.random.default_rng(6))
    gen = random_generator(str(device))
    for bound, dtype in ((upper.astype(np.float64), np.float64), (upper, np.float32), (4.0, np.float32)):
        _, _, z = icnn_dgn_gd.reconstruct_image(targets, net, gen, initial_gen_feat=z0, iter_n=2,
                                                feat_upper_bound=bound, disp_every=0,
                                                return_gen_feat=True)
        assert z.dtype == dtype
        assert np.all(z <= np.asarray(bound, np.float64) + 1e-6)
