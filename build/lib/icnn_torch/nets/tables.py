"""The nets as tables: the layers of VGG19 and of the DeePSiM fc7 generator, and their input
convention. No torch here, so that the storage and command-line layers can use these facts
without loading a deep-learning framework.

Input convention of VGG19 ("Caffe space"): float32 images of shape (N, 3, 224, 224),
channels in **BGR** order, values on the **0..255** scale with the per-channel ImageNet
mean **subtracted**. The generator's output is already in that space.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VGG19_TABLE", "VGG19_TORCHVISION_KEYS", "GENERATOR_TABLE", "VGG19_LAYERS", "VGG19_FEATURE_LAYERS", "VGG19_INPUT_SIZE", "IMAGENET_MEAN_BGR",
           "GENERATOR_INPUT_SIZE", "GENERATOR_OUTPUT_SIZE", "GENERATOR_LEAKY_SLOPE",
           "FC7_UNITS", "VGG19_FEATURE_SHAPES", "GENERATOR_PARAMETERS",
           "VGG19_PARAMETERS"]

#: Per-channel mean of the original ``ilsvrc_2012_mean.npy`` (B, G, R, 0..255 scale): the
#: default input convention of the nets, and what the scripts use when the file is absent.
IMAGENET_MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434], dtype=np.float32)

#: VGG19's input height and width.
VGG19_INPUT_SIZE: tuple[int, int] = (224, 224)

#: VGG19 layer table: (name, kind, in_channels/in_features, out_channels/out_features);
#: kind: "conv" (3x3, stride 1, pad 1), "pool" (2x2, stride 2), "fc".
VGG19_TABLE: tuple[tuple[str, str, int, int], ...] = (
    ("conv1_1", "conv", 3, 64), ("conv1_2", "conv", 64, 64), ("pool1", "pool", 64, 64),
    ("conv2_1", "conv", 64, 128), ("conv2_2", "conv", 128, 128), ("pool2", "pool", 128, 128),
    ("conv3_1", "conv", 128, 256), ("conv3_2", "conv", 256, 256),
    ("conv3_3", "conv", 256, 256), ("conv3_4", "conv", 256, 256), ("pool3", "pool", 256, 256),
    ("conv4_1", "conv", 256, 512), ("conv4_2", "conv", 512, 512),
    ("conv4_3", "conv", 512, 512), ("conv4_4", "conv", 512, 512), ("pool4", "pool", 512, 512),
    ("conv5_1", "conv", 512, 512), ("conv5_2", "conv", 512, 512),
    ("conv5_3", "conv", 512, 512), ("conv5_4", "conv", 512, 512), ("pool5", "pool", 512, 512),
    ("fc6", "fc", 512 * 7 * 7, 4096), ("fc7", "fc", 4096, 4096), ("fc8", "fc", 4096, 1000),
)

#: Caffe blob names of VGG19's features, in network order.
VGG19_LAYERS: tuple[str, ...] = tuple(name for name, *_ in VGG19_TABLE)

#: Index of each learned layer in torchvision's / KamitaniLab's ``features.N`` /
#: ``classifier.N`` layout.
VGG19_TORCHVISION_KEYS: dict[str, str] = {
    **{name: f"features.{i}" for name, i in zip(
        [n for n, kind, *_ in VGG19_TABLE if kind == "conv"],
        (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34))},
    "fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6",
}

#: Generator layer table: (name, kind, in, out, kernel, stride, pad); every layer but the
#: last is followed by a leaky ReLU with slope 0.3. "fc" layers are InnerProduct,
#: "deconv" layers are Caffe Deconvolution (transposed convolution).
GENERATOR_TABLE: tuple[tuple[str, str, int, int, int, int, int], ...] = (
    ("defc7", "fc", 4096, 4096, 0, 0, 0),
    ("defc6", "fc", 4096, 4096, 0, 0, 0),
    ("defc5", "fc", 4096, 4096, 0, 0, 0),
    ("deconv5", "deconv", 256, 256, 4, 2, 1),
    ("conv5_1", "deconv", 256, 512, 3, 1, 1),
    ("deconv4", "deconv", 512, 256, 4, 2, 1),
    ("conv4_1", "deconv", 256, 256, 3, 1, 1),
    ("deconv3", "deconv", 256, 128, 4, 2, 1),
    ("conv3_1", "deconv", 128, 128, 3, 1, 1),
    ("deconv2", "deconv", 128, 64, 4, 2, 1),
    ("deconv1", "deconv", 64, 32, 4, 2, 1),
    ("deconv0", "deconv", 32, 3, 4, 2, 1),
)
GENERATOR_LEAKY_SLOPE = 0.3
GENERATOR_INPUT_SIZE = 4096
GENERATOR_OUTPUT_SIZE = (256, 256)

#: The layers the scripts reconstruct from: the 16 convolutions and fc6, fc7, fc8 (all
#: conv and fc layers, in network order).
VGG19_FEATURE_LAYERS: tuple[str, ...] = tuple(name for name, kind, *_ in VGG19_TABLE
                                              if kind != "pool")

#: Units of fc7, the generator's input.
FC7_UNITS = GENERATOR_INPUT_SIZE


def _feature_shapes() -> dict[str, tuple[int, ...]]:
    side, shapes = VGG19_INPUT_SIZE[0], {}
    for name, kind, _n_in, n_out in VGG19_TABLE:
        if kind == "pool":
            side //= 2
        shapes[name] = (n_out,) if kind == "fc" else (n_out, side, side)
    return shapes


#: The shape of each VGG19 feature at a 224x224 input, without the batch axis: (C, H, W)
#: for conv/pool layers, (N,) for fc layers.
VGG19_FEATURE_SHAPES: dict[str, tuple[int, ...]] = _feature_shapes()

#: Learned parameters of the DeePSiM fc7 generator (weights and biases).
GENERATOR_PARAMETERS: int = sum(
    n_in * n_out + n_out if kind == "fc" else n_in * n_out * k * k + n_out
    for _name, kind, n_in, n_out, k, _s, _p in GENERATOR_TABLE)

#: Learned parameters of VGG19 (weights and biases).
VGG19_PARAMETERS: int = sum(
    n_in * n_out + n_out if kind == "fc" else n_in * n_out * 9 + n_out
    for _name, kind, n_in, n_out in VGG19_TABLE if kind != "pool")
