"""Feature extraction from any ``nn.Module``: the public face of
:mod:`icnn_torch.nets.extractor` (:class:`FeatureExtractor`, :func:`caffe_to_imagenet_rgb`,
:func:`net_device`)."""

from .nets.extractor import (IMAGENET_RGB_MEAN, IMAGENET_RGB_STD, FeatureExtractor,
                             caffe_to_imagenet_rgb, net_device)

__all__ = ["FeatureExtractor", "caffe_to_imagenet_rgb", "net_device", "IMAGENET_RGB_MEAN",
           "IMAGENET_RGB_STD"]
