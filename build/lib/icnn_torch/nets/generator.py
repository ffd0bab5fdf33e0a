"""The DeePSiM generator trained to invert AlexNet fc7 (Dosovitskiy & Brox 2016), and the
centre crop that takes its 256x256 output to VGG19's 224x224 input.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .tables import (GENERATOR_INPUT_SIZE, GENERATOR_LEAKY_SLOPE, GENERATOR_OUTPUT_SIZE,
                     GENERATOR_TABLE)
from .vgg19 import freeze

__all__ = ["DeePSiMGenerator", "center_crop"]


class DeePSiMGenerator(nn.Module):
    """The DeePSiM generator trained to invert AlexNet fc7 (Dosovitskiy & Brox 2016).

    Maps a (N, 4096) fc7-space vector to the uncropped (N, 3, 256, 256) image, exactly
    Caffe's ``generated`` blob: BGR, 0..255 scale, ImageNet mean subtracted (VGG19's input
    space), neither scaled nor clamped. Crop it with :func:`center_crop`.
    """

    input_size: int = GENERATOR_INPUT_SIZE
    output_size: tuple[int, int] = GENERATOR_OUTPUT_SIZE

    def __init__(self) -> None:
        super().__init__()
        for name, kind, n_in, n_out, k, s, p in GENERATOR_TABLE:
            if kind == "fc":
                layer = nn.Linear(n_in, n_out)
            else:
                layer = nn.ConvTranspose2d(n_in, n_out, kernel_size=k, stride=s, padding=p)
            self.add_module(name, layer)
        freeze(self)
        self.eval()

    def forward(self, feat: Tensor) -> Tensor:
        """Generate images.

        Parameters
        ----------
        feat : Tensor, shape (N, 4096)

        Returns
        -------
        Tensor, shape (N, 3, 256, 256)
            Images in VGG19's input space (BGR, 0..255, mean subtracted).
        """
        if feat.dim() != 2 or feat.shape[1] != GENERATOR_INPUT_SIZE:
            raise ValueError(f"generator input must be (N, {GENERATOR_INPUT_SIZE}), "
                             f"got {tuple(feat.shape)}")
        x = feat
        last = len(GENERATOR_TABLE) - 1
        for index, (name, kind, *_rest) in enumerate(GENERATOR_TABLE):
            if kind == "deconv" and x.dim() == 2:
                x = x.reshape(x.shape[0], 256, 4, 4)
            x = getattr(self, name)(x)
            if index < last:
                x = F.leaky_relu(x, GENERATOR_LEAKY_SLOPE)
        return x


def center_crop(img: Tensor, size: Sequence[int] = (224, 224)) -> Tensor:
    """Center-crop images of shape (..., H, W) to ``size`` (offset ``(H - h) // 2``).

    For the generator's 256x256 output and VGG19's 224x224 input the offset is (16, 16).
    The crop is a view; gradients outside it are zero.
    """
    h, w = int(size[0]), int(size[1])
    H, W = img.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"cannot crop {(H, W)} images to {(h, w)}")
    top, left = (H - h) // 2, (W - w) // 2
    return img[..., top:top + h, left:left + w]
