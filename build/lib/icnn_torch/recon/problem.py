"""What every engine derives from its arguments before its loop: the objective, the device,
the input convention of the encoder, and whether the caller gave a batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..nets.extractor import net_device
from .objective import FeatureLoss, build_feature_loss
from .progress import Reporter

__all__ = ["Problem", "problem"]


@dataclass
class Problem:
    """A reconstruction problem.

    Attributes
    ----------
    objective : FeatureLoss
        Targets, layer weights and masks of the batch.
    batched : bool
        Whether the caller gave a batch (results keep the batch axis).
    device : torch.device
    img_mean : ndarray, (3,) float32
        The encoder's BGR mean (its Caffe-space input convention).
    input_size : (int, int)
        The encoder's input height and width.
    """

    objective: FeatureLoss
    batched: bool
    device: torch.device
    img_mean: np.ndarray
    input_size: tuple

    @property
    def batch(self) -> int:
        return self.objective.batch_size

    def reporter(self, total: int, disp_every, desc: str, batch: int | None = None) -> Reporter:
        return Reporter(total, self.batch if batch is None else batch, disp_every, desc)

    def unbatch(self, arr):
        """``arr`` as the caller expects it: with the batch axis for a batch, else its item 0."""
        return arr if self.batched else arr[0]


def problem(features, net, device, layer_weight, channel, mask, loss_type,
            exact_masked_gradient: bool = False) -> Problem:
    """Validate and batch the targets (see :func:`icnn_torch.recon.objective.build_feature_loss`)."""
    device = net_device(net) if device is None else torch.device(device)
    objective, batched = build_feature_loss(features, net, device, layer_weight=layer_weight,
                                            channel=channel, mask=mask, loss_type=loss_type,
                                            exact_masked_gradient=exact_masked_gradient)
    img_mean = np.asarray(net.img_mean, dtype=np.float32).reshape(3)
    return Problem(objective, batched, device, img_mean, tuple(net.input_size))
