"""icnn_lbfgs through a random VGG19: true-feature inversion of a real photograph.

Full size, as script 2 runs it: the 16 conv layers conv1_1..conv5_4 of a seeded He-normal
VGG19, the features of matplotlib's sample photograph (centre-cropped, 224x224) as
targets, layer weights 1/||f||^2 (normalised), start at the flat mean-colour image,
``maxiter=200``. A random VGG19 keeps enough information in its conv features that
the photograph is recovered almost exactly (pixel correlation about 1.000); anything
below 0.95 means a bug in the objective, the gradient, the bounds or the optimiser glue.
About 170 function evaluations, ~90 s on 2 idle cores.
"""

from __future__ import annotations

import numpy as np
import pytest

from _engine_helpers import (VGG19_CONV, encoder_features, inverse_square_norm_weights,
                             mean_colour_image, pixel_correlation, random_vgg19, sample_photo)
from icnn_torch import icnn_lbfgs


@pytest.mark.slow
def test_icnn_lbfgs_recovers_photo_from_true_conv_features(device):
    net = random_vgg19(str(device))
    photo = sample_photo()
    feats = encoder_features(net, photo, VGG19_CONV)
    weights = inverse_square_norm_weights(feats)
    img, losses = icnn_lbfgs.reconstruct_image(feats, net, layer_weight=weights,
                                               initial_image=mean_colour_image(net.img_mean),
                                               maxiter=200, disp=0)
    corr = pixel_correlation(img, photo)
    print(f"\nicnn_lbfgs, VGG19 conv1_1..conv5_4, maxiter 200: {len(losses)} evaluations, "
          f"loss {losses[0]:.4g} -> {losses[-1]:.4g}, pixel correlation {corr:.4f}")
    assert img.shape == (224, 224, 3) and img.dtype == np.float64  # scipy's res.x, as the original
    assert corr >= 0.95
    assert losses[-1] < 1e-4 * losses[0]
    # the pixel box [0, 255] holds (in Caffe space [-mean_c, 255 - mean_c])
    assert img.min() >= -1e-3 and img.max() <= 255 + 1e-3
