"""The generator engines through a random VGG19 and a random DeePSiM generator.

Setup (:mod:`_engine_helpers`): a seeded He-normal VGG19; a DeePSiM generator with
PyTorch's default weight init, zero biases and ``deconv0`` scaled to an output pixel std of
50 (natural images in Caffe space: ~60). Zero biases matter: with the default biases the
random generator's image barely depends on z, and recovering crop(G(z*)) from z = 0 would
be trivial. z* is drawn uniformly inside [0, fc7 3x bounds] (the original's
``act_range/3x/fc7.txt`` when ../shared has it, else integers 2..6 like it).

- icnn_dgn_gd, full size as script 1 runs it: all 19 layers (16 conv + fc6, fc7, fc8),
  weights 1/||f||^2, z0 = 0, bounds [0, upper], 200 iterations, lr 2 -> 1e-10, momentum
  0.9, decay 0.01. It must recover crop(G(z*)) to pixel correlation >= 0.95 (an unrelated
  z gives ~0.85 with this generator, so this is no freebie) and cut the loss >= 50x.
  About 100 s on 2 idle cores.
- icnn_dgn_lbfgs, reduced (conv1_1, conv2_1, conv3_1; 10 iterations): it starts inside its
  bounds (a N(0, 1) start is clipped onto them), never leaves them, and makes progress.
"""

from __future__ import annotations

import numpy as np
import pytest

from _engine_helpers import (VGG19_CONV_FC, RecordingGenerator, draw_latent, encoder_features,
                             fc7_upper_bounds, generator_image, inverse_square_norm_weights,
                             pixel_correlation, random_generator, random_vgg19)
from icnn_torch import icnn_dgn_gd, icnn_dgn_lbfgs


@pytest.mark.slow
def test_icnn_dgn_gd_recovers_generator_image_with_script1_options(device):
    net = random_vgg19(str(device))
    gen = random_generator(str(device))
    upper = fc7_upper_bounds()
    rng = np.random.default_rng(7)
    z_true = draw_latent(upper, rng)
    truth = generator_image(gen, z_true, net.img_mean)
    baseline = pixel_correlation(generator_image(gen, draw_latent(upper, rng), net.img_mean), truth)
    feats = encoder_features(net, truth, VGG19_CONV_FC)
    img, losses, z = icnn_dgn_gd.reconstruct_image(
        feats, net, gen, layer_weight=inverse_square_norm_weights(feats),
        initial_gen_feat=np.zeros(4096, np.float32), feat_upper_bound=upper, feat_lower_bound=0.,
        iter_n=200, lr_start=2., lr_end=1e-10, momentum_start=0.9, momentum_end=0.9,
        decay_start=0.01, decay_end=0.01, disp_every=0, return_gen_feat=True)
    corr = pixel_correlation(img, truth)
    reduction = losses[0] / losses[-1]
    print(f"\nicnn_dgn_gd, VGG19 19 layers, script-1 options, 200 iterations: loss "
          f"{losses[0]:.4g} -> {losses[-1]:.4g} ({reduction:.0f}x), pixel correlation {corr:.4f} "
          f"(an unrelated z: {baseline:.3f})")
    assert losses.shape == (200,)
    assert baseline < 0.9
    assert corr >= 0.95
    assert reduction >= 50
    assert np.all(z >= 0) and np.all(z <= upper)


def test_icnn_dgn_lbfgs_starts_inside_bounds_and_makes_progress(device):
    net = random_vgg19(str(device))
    gen = RecordingGenerator(random_generator(str(device)))
    upper = fc7_upper_bounds()
    truth = generator_image(gen.gen, draw_latent(upper, np.random.default_rng(8)), net.img_mean)
    layers = ("conv1_1", "conv2_1", "conv3_1")
    feats = encoder_features(net, truth, layers)
    np.random.seed(0)  # the default start N(0, 1): about half of it below the bound 0
    img, losses, z = icnn_dgn_lbfgs.reconstruct_image(
        feats, net, gen, layer_weight=inverse_square_norm_weights(feats),
        gen_feat_bounds=np.stack([np.zeros(4096), upper], axis=1), maxiter=10, disp=0,
        return_gen_feat=True)
    first = gen.seen[0].reshape(-1)
    assert np.all(first >= 0) and np.all(first <= upper)
    assert np.mean(first == 0) > 0.3
    assert all(np.all(s >= 0) and np.all(s <= upper + 1e-5) for s in gen.seen)
    corr0 = pixel_correlation(generator_image(gen.gen, first, net.img_mean), truth)
    corr = pixel_correlation(img, truth)
    print(f"\nicnn_dgn_lbfgs, conv1_1/conv2_1/conv3_1, maxiter 10: {len(losses)} evaluations, "
          f"loss {losses[0]:.4g} -> {losses[-1]:.4g}, pixel correlation {corr0:.3f} -> {corr:.3f}")
    assert losses[-1] < 0.5 * losses[0]
    assert corr > corr0
    np.testing.assert_allclose(img, generator_image(gen.gen, z, net.img_mean), atol=1e-2)
