"""VGG19 (pre-ReLU feature taps) and the DeePSiM fc7 generator as PyTorch modules, and their
loaders: the public face of :mod:`icnn_torch.nets`.

Both nets follow the original Caffe nets layer for layer and keep the Caffe layer names,
so that ``features["conv3_2"]`` here is the blob ``conv3_2`` of the original prototxt:
the convolution output *before* its ReLU. Input convention of VGG19 ("Caffe space"):
float32 images of shape (N, 3, 224, 224), **BGR**, on the **0..255** scale with the
per-channel ImageNet mean **subtracted**; the generator's output is already in that space.
Weights come from the original ``.caffemodel`` files or from KamitaniLab's PyTorch
conversions (:func:`load_vgg19`, :func:`load_generator`).
"""

from .nets.device import default_device
from .nets.generator import DeePSiMGenerator, center_crop
from .nets.tables import (GENERATOR_INPUT_SIZE, GENERATOR_OUTPUT_SIZE, IMAGENET_MEAN_BGR,
                          VGG19_FEATURE_LAYERS, VGG19_LAYERS)
from .nets.tables import VGG19_TORCHVISION_KEYS as _VGG19_TORCHVISION_KEYS  # noqa: F401
from .nets.vgg19 import VGG19
from .nets.weights import WeightFileError, load_generator, load_vgg19

__all__ = ["VGG19_LAYERS", "VGG19_FEATURE_LAYERS", "VGG19", "DeePSiMGenerator", "center_crop",
           "load_vgg19", "load_generator", "default_device", "IMAGENET_MEAN_BGR",
           "GENERATOR_INPUT_SIZE", "GENERATOR_OUTPUT_SIZE", "WeightFileError"]
