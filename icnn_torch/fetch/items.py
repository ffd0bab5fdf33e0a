"""What can be downloaded: one record per item, each knowing where it lands, its size, how it
is checked, where it comes from and how it is unpacked.

Items (the names of ``python -m icnn_torch.download``):

- ``vgg19``: ``net/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel`` from the VGG
  group (size and md5 known), or with ``pytorch`` KamitaniLab's ``VGG_ILSVRC_19_layers.pt``
  (from a figshare zip, md5 of the zip known);
- ``generator``: ``net/generator_for_inverting_fc7/generator.caffemodel``, the member
  ``release_deepsim_v0/fc7/generator.caffemodel`` of the DeePSiM release zip (no size or
  md5 published), or KamitaniLab's ``generator.pt`` (its bundle's generator input bounds
  are kept apart, and used as ``fc7.txt`` only when they are the original's file);
- ``fc7_bounds``: ``data/act_range/3x/fc7.txt`` from the original repository (size and md5
  of the original file);
- a file of figshare article 7033577 (``--list``): the std files and the image mean into
  ``data/``, and the decoded-feature zips, unpacked into
  ``data/decodedfeatures/<image_type>/<network>/<layer>/<subject>/`` and deleted;
- a published fMRI file of the original (``fmri``: all six), e.g.
  ``sub-01_perceptionNaturalImageTraining_original_VC.h5``, into the fMRI folder
  (:mod:`icnn_torch.store.fmri_files`; no size or md5 published: present when it exists,
  checked to be a BData file with ``verify`` and after each download).

A file of another size than the known one never counts as present; with ``verify`` the
md5 is checked where one is known, weights without one are loaded, decoded features read.
Sizes that no source publishes (the DeePSiM zip, KamitaniLab's zips, the decoded-feature
zips until ``--refresh-list``) are estimated from the layer shapes and label counts and
marked as estimates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence

from .._util import PathLike
from ..errors import DownloadError
from ..store.fmri_files import parse_fmri_file_name, published_fmri_names
from ..store.layout import (DEFAULT_DATA_DIR, FEAT_STD_FILENAMES, IMAGE_MEAN_FILENAME,
                            decoded_feature_zip_name, feat_std_path, is_published_tree,
                            parse_decoded_feature_zip_name)
from ..store.published import ARTICLE_ID
from .base import Check, Item, Place, Size, human_bytes
from .datafiles import ArticleFile, DecodedFeatures, FmriFile
from .weights import Fc7Bounds, Weights

if TYPE_CHECKING:
    from ..run.config import RunPlan

__all__ = ["Place", "Size", "Check", "Item", "human_bytes", "item", "items_for_plan",
           "expand_aliases", "WEIGHT_ITEMS", "ALIASES"]

WEIGHT_ITEMS = ("vgg19", "generator", "fc7_bounds")
ALIASES = WEIGHT_ITEMS + ("mean", "std", "fmri")


def item(name: str, place: Place) -> Item:
    """The item of a download name.

    Raises
    ------
    DownloadError
        ``name`` is neither a weight item, a file of the article nor a published fMRI file
        (before any request).
    """
    if name in ("vgg19", "generator"):
        return Weights(name)
    if name == "fc7_bounds":
        return Fc7Bounds()
    fmri_key = parse_fmri_file_name(name)
    if fmri_key is not None:
        return FmriFile(name, fmri_key)
    if name not in place.files:
        raise DownloadError(f"{name!r} is not a file of figshare article {ARTICLE_ID} "
                            "(the article's files: --list)")
    key = parse_decoded_feature_zip_name(name)
    return ArticleFile(name) if key is None else DecodedFeatures(name, key)


def expand_aliases(names: Sequence[str]) -> List[str]:
    """``mean`` -> the mean file, ``std`` -> both std files, ``fmri`` -> the six published
    fMRI files; duplicates dropped."""
    aliases = {"mean": [IMAGE_MEAN_FILENAME], "std": list(FEAT_STD_FILENAMES.values()),
               "fmri": list(published_fmri_names())}
    return list(dict.fromkeys(i for name in names for i in aliases.get(name, [name])))


def items_for_plan(plan: "RunPlan", data_dir: PathLike = DEFAULT_DATA_DIR,
                   features_dir: Optional[PathLike] = None) -> List[str]:
    """The download items a run needs, from its plan (:class:`icnn_torch.run.config.RunPlan`):
    ``vgg19``; ``generator`` and ``fc7_bounds`` exactly when the engine optimises the
    generator input; the mean file; the std file of the plan's network; and, for the
    published tree (``features_dir`` None or ``data_dir/decodedfeatures``), one
    decoded-feature zip per subject and layer (subject-major, layers in first-use order).
    """
    items = ["vgg19"] + (["generator", "fc7_bounds"] if plan.uses_generator else [])
    items += [IMAGE_MEAN_FILENAME, feat_std_path(data_dir, plan.network).name]
    if is_published_tree(features_dir, data_dir):
        items += [decoded_feature_zip_name(plan.image_type, plan.network, layer, subject)
                  for subject in plan.subjects for layer in plan.all_layers]
    return items

