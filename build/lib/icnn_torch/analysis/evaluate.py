"""Score the reconstructions of a results tree against their stimulus images.

The script folders, their image types and their label order come from each folder's run
record (:mod:`icnn_torch.store.record`), so a copy of a script under any name is scored too.
Metrics (:mod:`icnn_torch.analysis.metrics`), per reconstruction
(``results/<script>/[<layer set>/]<subject>/<roi>/recon_img-<label>.mat``) whose
stimulus image is found:

``ident_pixcorr``
    Pairwise identification accuracy by pixel correlation, as in Shen et al. (2019): the
    candidates are the stimuli of the other reconstructions of the same set (same
    script, layer set, subject and ROI); the score is the fraction of candidates whose
    Pearson correlation with the reconstruction is lower than the true stimulus's
    (ties count one half). Chance is 0.5. A set of one image has no candidate: NaN
    (``n/a (1 image)`` in :func:`format_table`).
``ident_euclidean``
    The same with negative Euclidean distance as the similarity.
``pixcorr``
    Pearson correlation of the flattened RGB reconstruction and stimulus.
``ssim``
    Mean structural similarity of the greyscale images
    (:func:`icnn_torch.analysis.metrics.ssim`).
``ident_<layer>``
    Pairwise identification by correlation of VGG19 features (pre-ReLU, the network
    of the reconstructions) at ``<layer>``; default layers ``conv3_4`` (middle of the 16
    conv layers) and ``fc7``.

Stimulus images are not distributed with the data (they are available from the authors
on request), so the user points ``stimuli_dir`` (``--stimuli``) at their own folder. The
image of label ``L`` (e.g. ``Img0009``) of a script folder with image type ``T``
(natural, color_shape, alphabet or imagery: the run record's ``image_type``; for results
without a record, the ``image_type`` argument, else unknown) is looked up
(:func:`icnn_torch.analysis.stimuli.find_stimulus`) as

1. the mapping CSV (``mapping``, ``--mapping``), rows ``label,filename`` or
   ``image_type,label,filename`` (an optional header row and ``#`` comments are
   skipped; file names relative to the stimuli folder or absolute); a three-column row
   wins over a two-column one;
2. ``<stimuli>/<T>/<L>.<ext>`` (when ``T`` is known);
3. ``<stimuli>/<L>.<ext>``;

with ``<ext>`` any of :data:`~icnn_torch.analysis.stimuli.STIMULUS_EXTENSIONS` (any
case). Labels repeat across image types (``Img0001`` is a photo, a colour shape and a
letter), so evaluating several image types at once needs the per-type folders or a
three-column mapping.

Images: a stimulus is read as RGB and resized to the reconstruction's size (bicubic,
PIL) as float 0..255. The reconstruction is the ``recon_img`` array of the ``.mat`` file
(RGB 0..255, not clipped), clipped to 0..255 by default (``recon_form``).

Output (:func:`evaluate_results`): one row per reconstruction plus one ``label = "mean"``
row per set; :func:`format_table` prints the mean rows (or all rows) as a table. The
command line is ``python -m icnn_torch.evaluate`` (:mod:`icnn_torch.analysis.cli`): it
writes the rows as a CSV and prints the table.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

import numpy as np

from .._util import PathLike
from ..errors import ConfigError, DamagedFileError, MissingDataError
from ..store.layout import DEFAULT_NET_DIR, VGG19_CAFFEMODEL_RELPATH, vgg19_weights_path
from ..store.results import Reconstruction, find_reconstructions, load_reconstruction
from .metrics import (DEFAULT_FEATURE_LAYERS, cnn_features, pairwise_identification, pixcorr,
                      ssim)
from .stimuli import (StimulusMapping, find_stimulus, load_stimulus, read_stimulus_mapping,
                      stimulus_patterns)
from .tables import format_value

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_VGG19_PATH", "BASE_COLUMNS", "MIN_IDENTIFICATION_SET", "NOT_IDENTIFIED",
           "NoReconstructionsError", "NetInputSizeError", "evaluate_results", "set_name",
           "single_image_sets", "format_table"]

#: Where the scripts read the VGG19 weights (relative to the project root).
DEFAULT_VGG19_PATH = Path(DEFAULT_NET_DIR) / VGG19_CAFFEMODEL_RELPATH

#: The CSV columns before the ``ident_<layer>`` ones.
BASE_COLUMNS = ("script", "layer_set", "subject", "roi", "label", "n_images",
                "ident_pixcorr", "ident_euclidean", "pixcorr", "ssim")

#: Pairwise identification compares a reconstruction's own stimulus with the others of
#: its set: it needs this many images (a smaller set scores NaN).
MIN_IDENTIFICATION_SET = 2
#: What the table shows instead of the NaN identification of a set of one image.
NOT_IDENTIFIED = "n/a (1 image)"


class NoReconstructionsError(ConfigError):
    """A results folder (``results_dir``) holds no ``recon_img-<label>.mat`` file of the
    scripts asked for."""

    def __init__(self, results_dir: PathLike):
        self.results_dir = str(results_dir)
        super().__init__(f"no recon_img-<label>.mat files under {results_dir}")


class NetInputSizeError(ConfigError):
    """Reconstructions of a set (``where``) whose size, (H, W) pixels ``size``, the feature
    network does not take (it takes ``input_size``)."""

    def __init__(self, where: str, size: tuple, input_size: tuple):
        self.where, self.size, self.input_size = where, tuple(size), tuple(input_size)
        super().__init__(f"the reconstructions of {where} are {size[0]}x{size[1]} pixels, "
                         f"but VGG19 takes {input_size[0]}x{input_size[1]}")


def _load_vgg19_for_features(vgg19_path: Optional[PathLike], device):
    from ..nets.weights import load_vgg19  # torch

    # the caffemodel the scripts read, or KamitaniLab's converted .pt beside it
    path = Path(vgg19_path) if vgg19_path is not None else vgg19_weights_path(DEFAULT_NET_DIR)
    if not path.is_file():
        raise MissingDataError(path, ["vgg19"],
                               detail="VGG19 is needed for feature identification.")
    return load_vgg19(path, device=device)


def _check_layers(net, layers: Sequence[str]) -> None:
    known = getattr(net, "layer_names", None)
    unknown = [] if known is None else [layer for layer in layers if layer not in known]
    if unknown:
        raise ConfigError(f"VGG19 has no layer {', '.join(unknown)}; choose from "
                          f"{', '.join(known)}")


def evaluate_results(results_dir: PathLike, stimuli_dir: PathLike,
                     mapping: Optional[Union[PathLike, StimulusMapping]] = None,
                     layers: Sequence[str] = DEFAULT_FEATURE_LAYERS,
                     net=None, vgg19_path: Optional[PathLike] = None,
                     device: Optional[Union[str, "torch.device"]] = None,
                     scripts: Optional[Sequence[str]] = None,
                     recon_form: str = "clip",
                     image_type: Optional[str] = None) -> list[dict[str, object]]:
    """Score every reconstruction of a results tree that has a stimulus image.

    Parameters
    ----------
    results_dir : path
        ``results`` or one script's folder
        (:func:`icnn_torch.store.results.find_script_results`).
    stimuli_dir : path
        The user's stimulus folder (lookup rules in the module docstring).
    mapping : path or dict, optional
        Mapping CSV (:func:`~icnn_torch.analysis.stimuli.read_stimulus_mapping`, file
        names relative to ``stimuli_dir``) or its parsed form.
    layers : sequence of str
        VGG19 layers for feature identification; empty to skip it (then no net is
        loaded).
    net : VGG19, optional
        Network for feature identification; default: :func:`icnn_torch.models.load_vgg19`
        on ``vgg19_path`` (default :data:`DEFAULT_VGG19_PATH`, or the ``.pt`` beside it)
        on ``device``.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    scripts : sequence of str, optional
        Script folder names to evaluate (default all found).
    recon_form : {"clip", "raw", "normalized"}
        See :func:`icnn_torch.store.results.load_reconstruction`.
    image_type : str, optional
        Image type of the script folders without a run record (stimulus lookup).

    Returns
    -------
    list of dict
        Keys :data:`BASE_COLUMNS` plus ``ident_<layer>`` per layer. One row per scored
        reconstruction, then a row with ``label == "mean"`` and ``n_images`` = set
        size after each set. ``layer_set`` is "" for scripts without layer sets.
        Identification values are NaN in sets with fewer than two scored images.

    Raises
    ------
    ConfigError
        A missing results or stimulus folder, an unknown script folder or layer;
        :class:`NoReconstructionsError` when there is nothing to score,
        :class:`NetInputSizeError` for reconstructions whose size the net does not take.
    MissingDataError
        The VGG19 weights are needed and absent (download item ``vgg19``).
    DamagedFileError
        An unreadable ``.mat``, stimulus image or run record, or a reconstruction whose
        size differs from the others of its set.

    Warns
    -----
    UserWarning
        When some reconstructions have no stimulus image (they are left out, and the
        candidate sets shrink accordingly).
    """
    layers = list(layers)
    stimuli_dir = Path(stimuli_dir)
    if not stimuli_dir.is_dir():
        raise ConfigError(f"stimulus folder {stimuli_dir} does not exist")
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = read_stimulus_mapping(mapping, stimuli_dir)
    recs = find_reconstructions(results_dir, scripts, image_type)
    if not recs:
        raise NoReconstructionsError(results_dir)
    if layers:
        if net is None:
            net = _load_vgg19_for_features(vgg19_path, device)
        _check_layers(net, layers)

    missing: list[Reconstruction] = []
    by_group: dict[tuple, list[tuple[Reconstruction, Path]]] = defaultdict(list)
    for rec in recs:  # in set order: by_group keeps it
        stim_path = find_stimulus(stimuli_dir, rec.label, rec.image_type, mapping)
        if stim_path is None:
            missing.append(rec)
        else:
            by_group[rec.group].append((rec, stim_path))
    if missing:
        example = missing[0]
        looked = " and ".join(stimulus_patterns(stimuli_dir, example.label, example.image_type))
        warnings.warn(f"{len(missing)} of {len(recs)} reconstructions have no stimulus "
                      f"image and are skipped (e.g. {example.label} of {example.script}: "
                      f"looked for {looked})", stacklevel=2)

    rows: list[dict[str, object]] = []
    stimulus_features: dict = {}  # (stimulus path, size) -> layer -> feature vector
    for group, pairs in by_group.items():
        recon_imgs = [load_reconstruction(rec.mat_path, recon_form) for rec, _ in pairs]
        for (rec, _), img in zip(pairs, recon_imgs):
            if img.shape != recon_imgs[0].shape:
                raise DamagedFileError(rec.mat_path, f"recon_img has shape {img.shape}, but "
                                       f"{pairs[0][0].mat_path.name} of the same set has "
                                       f"{recon_imgs[0].shape}")
        stim_imgs = [load_stimulus(path, img.shape[:2])
                     for (_, path), img in zip(pairs, recon_imgs)]
        n = len(pairs)
        nan = np.full(n, np.nan)
        ident_corr, ident_euc = nan, nan
        ident_feat = {layer: nan for layer in layers}
        if n >= MIN_IDENTIFICATION_SET:
            recon_arr, stim_arr = np.stack(recon_imgs), np.stack(stim_imgs)
            ident_corr = pairwise_identification(recon_arr, stim_arr, "corr")
            ident_euc = pairwise_identification(recon_arr, stim_arr, "euclidean")
            if layers:
                keys = [(path, recon_arr.shape[1:3]) for _, path in pairs]
                ident_feat = _identify_by_features(net, recon_arr, stim_arr, layers, keys,
                                                   stimulus_features, set_name(group))
        group_rows = []
        for index, ((rec, _), recon, stim) in enumerate(zip(pairs, recon_imgs, stim_imgs)):
            row: dict[str, object] = {
                "script": rec.script, "layer_set": rec.layer_set or "",
                "subject": rec.subject, "roi": rec.roi, "label": rec.label, "n_images": n,
                "ident_pixcorr": float(ident_corr[index]),
                "ident_euclidean": float(ident_euc[index]),
                "pixcorr": pixcorr(recon, stim), "ssim": ssim(recon, stim),
            }
            for layer in layers:
                row[f"ident_{layer}"] = float(ident_feat[layer][index])
            group_rows.append(row)
        mean_row = dict(group_rows[0], label="mean")
        for key in group_rows[0]:
            if key.startswith("ident_") or key in ("pixcorr", "ssim"):
                mean_row[key] = float(np.mean([row[key] for row in group_rows]))
        rows += group_rows + [mean_row]
    return rows


def _identify_by_features(net, recons: np.ndarray, stimuli: np.ndarray, layers: list[str],
                          stimulus_keys: Sequence[object], cache: dict,
                          where: str) -> dict[str, np.ndarray]:
    """:func:`icnn_torch.analysis.metrics.feature_identification`, reusing the features of a
    stimulus already seen in another set (``cache``: key -> layer -> features)."""
    input_size = tuple(getattr(net, "input_size", recons.shape[1:3]))
    if recons.shape[1:3] != input_size:
        raise NetInputSizeError(where, recons.shape[1:3], input_size)
    feats_r = cnn_features(net, recons, layers)
    todo = [index for index, key in enumerate(stimulus_keys) if key not in cache]
    if todo:
        fresh = cnn_features(net, stimuli[todo], layers)
        for position, index in enumerate(todo):
            cache[stimulus_keys[index]] = {layer: fresh[layer][position] for layer in layers}
    return {layer: pairwise_identification(
                feats_r[layer], np.stack([cache[key][layer] for key in stimulus_keys]), "corr")
            for layer in layers}


def set_name(group: Sequence[str]) -> str:
    """``script/[layer set/]subject/roi`` of a set (script, layer set or "", subject, ROI)."""
    return "/".join(filter(None, group))


def single_image_sets(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """The sets (:func:`set_name`) of :func:`evaluate_results`' rows too small for pairwise
    identification (fewer than :data:`MIN_IDENTIFICATION_SET` images), in row order."""
    return [set_name([str(row[key]) for key in ("script", "layer_set", "subject", "roi")])
            for row in rows
            if row["label"] == "mean" and int(row["n_images"]) < MIN_IDENTIFICATION_SET]


def format_table(rows: Sequence[Mapping[str, object]], per_image: bool = False) -> str:
    """A plain-text table per script: the mean rows, or every row with ``per_image``.

    Identification values of a set too small for it show :data:`NOT_IDENTIFIED`
    instead of ``nan``; other values as :func:`~icnn_torch.analysis.tables.format_value`.
    """
    if not rows:
        return "(no rows)"
    metric_columns = [key for key in rows[0] if key.startswith("ident_")
                      or key in ("pixcorr", "ssim")]
    lines: list[str] = []
    current_script = None
    header = (f"{'layer set':<12} {'subject':<8} {'roi':<5} {'label':<10} {'n':>3} "
              + " ".join(f"{column:>16}" for column in metric_columns))
    for row in rows:
        if not per_image and row["label"] != "mean":
            continue
        if row["script"] != current_script:
            current_script = row["script"]
            if lines:
                lines.append("")
            lines += [str(current_script), header, "-" * len(header)]
        too_small = int(row["n_images"]) < MIN_IDENTIFICATION_SET
        values = [NOT_IDENTIFIED if too_small and column.startswith("ident_")
                  else format_value(row[column]) for column in metric_columns]
        lines.append(f"{str(row['layer_set']) or '-':<12} {str(row['subject']):<8} "
                     f"{str(row['roi']):<5} {str(row['label']):<10} {row['n_images']:>3} "
                     + " ".join(f"{value:>16}" for value in values))
    return "\n".join(lines)
