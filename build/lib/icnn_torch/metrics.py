"""Image metrics of reconstructions: the public face of :mod:`icnn_torch.analysis.metrics`
(pixel correlation, SSIM, pairwise identification by pixels or by CNN features)."""

from .analysis.metrics import (DEFAULT_FEATURE_LAYERS, GREY_WEIGHTS, cnn_features,
                               feature_identification, pairwise_identification, pixcorr,
                               rgb_to_grey, similarity_matrix, ssim)

__all__ = ["DEFAULT_FEATURE_LAYERS", "GREY_WEIGHTS", "pixcorr", "rgb_to_grey", "ssim",
           "similarity_matrix", "pairwise_identification", "cnn_features",
           "feature_identification"]
