"""Intermediate results of a reconstruction (the engines' ``save_intermediate`` options).

As the original saves them, into ``save_intermediate_path`` (default
``./recon_img_<gd|lbfgs|dgn_gd|dgn_lbfgs>_snapshots<timestamp>``):

- the start: ``initial_img.<ext>`` (``icnn_gd`` and ``icnn_dgn_gd``), ``initial_img.png``
  (``icnn_lbfgs``), ``initial_gen_feat.mat`` (both DGN engines);
- ``%05d.<ext>`` every ``save_intermediate_every`` steps: iterations numbered from 00001
  for the GD engines, function evaluations from 00000 for L-BFGS; each is
  ``save_intermediate_postprocess`` (default :func:`icnn_torch.utils.normalise_img`) of the
  RGB image;
- ``final_gen_feat.mat`` (variable ``final_gen_feat``) at the end of both DGN engines.

A batch gets one folder per image: the given list of folders, or ``image-000``,
``image-001``... inside the one folder given. Every file is written to a temporary name
and renamed.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import PIL.Image
import scipy.io
from torch import Tensor

from .._util import atomic_output
from .param import caffe_to_rgb

__all__ = ["Snapshots", "DEFAULT_FOLDER_PREFIX"]

#: The original's default snapshot folder of each engine (a timestamp is appended).
DEFAULT_FOLDER_PREFIX = {"icnn_gd": "recon_img_gd_snapshots",
                         "icnn_lbfgs": "recon_img_lbfgs_snapshots",
                         "icnn_dgn_gd": "recon_img_dgn_gd_snapshots",
                         "icnn_dgn_lbfgs": "recon_img_dgn_lbfgs_snapshots"}


def _as_uint8(img: np.ndarray) -> np.ndarray:
    """What PIL can write: uint8 as is; other arrays clipped to 0..255 and truncated."""
    img = np.asarray(img)
    return img if img.dtype == np.uint8 else np.uint8(np.clip(img, 0, 255))


def _save_image(img: np.ndarray, path: Path) -> None:
    with atomic_output(path) as tmp:  # the suffix picks PIL's format, as the original's save
        PIL.Image.fromarray(_as_uint8(img)).save(tmp)


class Snapshots:
    """The snapshot folders of one engine call, or an inactive writer.

    Parameters
    ----------
    engine : str
        ``icnn_gd``, ``icnn_lbfgs``, ``icnn_dgn_gd`` or ``icnn_dgn_lbfgs`` (for the default
        folder name).
    save : bool
        ``save_intermediate``.
    path : str, path or sequence of them, optional
        ``save_intermediate_path``: one folder, or one per image of a batch.
    batch : int
    every : int
        ``save_intermediate_every``.
    ext : str
        ``save_intermediate_ext`` (``"jpg"``, ``"png"``...; PIL's format from the suffix).
    postprocess : callable or None
        ``save_intermediate_postprocess``, applied to the RGB image (H, W, 3; mean added,
        not clipped); None saves the image itself (clipped to 0..255).
    """

    def __init__(self, engine: str, save: bool, path: Union[str, os.PathLike, Sequence, None],
                 batch: int, every: int, ext: str,
                 postprocess: Optional[Callable[[np.ndarray], np.ndarray]]) -> None:
        self.every = max(1, int(every))
        self.ext = str(ext).lstrip(".")
        self.postprocess = postprocess
        self.dirs: Optional[list[Path]] = None
        if not save:
            return
        if path is None:
            path = f"./{DEFAULT_FOLDER_PREFIX[engine]}{datetime.now():%Y%m%dT%H%M%S}"
        if isinstance(path, (str, os.PathLike)):
            dirs = [Path(path)] if batch == 1 else \
                [Path(path, f"image-{i:03d}") for i in range(batch)]
        else:
            dirs = [Path(p) for p in path]
            if len(dirs) != batch:
                raise ValueError(f"{len(dirs)} save_intermediate_path entries for a batch of {batch}")
        for folder in dirs:
            folder.mkdir(parents=True, exist_ok=True)
        self.dirs = dirs

    @property
    def active(self) -> bool:
        return self.dirs is not None

    def only(self, index: int) -> "Snapshots":
        """The writer of one image of the batch (the L-BFGS engines run them one by one)."""
        one = Snapshots.__new__(Snapshots)
        one.every, one.ext, one.postprocess = self.every, self.ext, self.postprocess
        one.dirs = None if self.dirs is None else [self.dirs[index]]
        return one

    def initial_image(self, rgb: np.ndarray, name: Optional[str] = None) -> None:
        """Save each (H, W, 3) RGB start image as ``initial_img.<ext>`` (or ``name``),
        without the postprocessing (as the original: ``uint8`` of the image)."""
        if self.dirs is not None:
            for folder, img in zip(self.dirs, np.asarray(rgb)):
                _save_image(img, folder / (name or f"initial_img.{self.ext}"))

    def latent(self, name: str, z: np.ndarray) -> None:
        """Save each row of (B, n) ``z`` as ``<name>.mat`` with variable ``name``."""
        if self.dirs is not None:
            for folder, row in zip(self.dirs, np.asarray(z)):
                with atomic_output(folder / f"{name}.mat") as tmp:
                    scipy.io.savemat(tmp, {name: row})

    def step(self, number: int, images: Tensor, img_mean: np.ndarray) -> None:
        """Save ``%05d.<ext>`` of each Caffe-space (B, 3, H, W) image when ``number`` is a
        multiple of ``save_intermediate_every``."""
        if self.dirs is None or number % self.every:
            return
        rgb = caffe_to_rgb(images, img_mean)
        for folder, img in zip(self.dirs, rgb):
            out = img if self.postprocess is None else self.postprocess(img)
            _save_image(out, folder / f"{number:05d}.{self.ext}")
