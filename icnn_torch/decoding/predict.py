"""Decoding jobs: one unit chunk of one layer for one subject and ROI, and the tree they make.

A job (:class:`ChunkJob`) fits the decoders of units ``start:stop`` of a layer on the
training trials of a subject's ROI and predicts that subject's test fMRI with them, as the
lab's scripts do:

- voxels are normalised with the mean and SD (ddof 1) of the training trials (a voxel of
  SD 0 becomes 0); the test samples with the same training mean and SD;
- each unit is normalised with the mean and SD (ddof 1) of its features over the
  training images of the subject (each image once), then every training trial gets the
  features of its image;
- the test fMRI is averaged over the trials of each image first (``average_trials``,
  the lab's default) or predicted trial by trial;
- predictions are de-normalised (``pred * SD + mean``; a unit of SD 0 predicts its mean).

The job writes ``<decoders_dir>/<network>/<layer>/<subject>/<roi>/chunk-<start>-<stop>.h5``
(atomically: complete or absent) holding ``prediction`` (n_items, U) float32, the items'
labels, the units' training ``y_mean`` and ``y_sd`` and, with ``save_decoders``, the
decoders (``voxel_index``, ``weight``, ``bias``, normalised space), plus the settings
that made it (JSON attribute ``settings``). A later run skips a job whose file exists with
the same settings and refuses one made with other settings. Jobs are independent: the
list is split over processes with :func:`icnn_torch.run.jobs.split_jobs`.

When all chunks of a (subject, ROI, layer) exist, they are assembled into the original's
decoded-feature tree::

    <decoded_features_dir>/<image_type>/<network>/<layer>/<subject>/<roi>/
        <image_type>-<network>-<layer>-<subject>-<roi>-<label>.mat

one file per test image (or trial), variable ``feat``, float32, shaped as the published
files: (C, H, W) for conv and pool layers, 1 x N for fc layers (read back as (N,) by
:func:`icnn_torch.store.features.load_feat`), each written atomically. A hidden
``.assembled.json`` in the ROI folder records which chunk files it was made from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import h5py
import numpy as np
import scipy.io

from .._util import PathLike, atomic_output
from ..errors import ConfigError, DamagedFileError
from ..store.layout import decode_feature_filename
from .decoders import LinearDecoders
from .fmri import FmriData, average_trials, stimulus_sort_key

__all__ = ["ChunkJob", "unit_chunks", "make_chunk_jobs", "chunk_path", "TrainingSet",
           "prepare_training_set", "decode_chunk", "write_chunk", "read_chunk",
           "chunk_done", "assemble_layer", "assembled", "write_feat"]

ASSEMBLED_NAME = ".assembled.json"


@dataclass(frozen=True)
class ChunkJob:
    """Units ``start:stop`` of ``layer`` for one subject and ROI."""

    subject: str
    roi: str
    layer: str
    start: int
    stop: int


def unit_chunks(n_units: int, units_per_chunk: int) -> List[Tuple[int, int]]:
    """``[(0, c), (c, 2c), ...]`` covering ``n_units``."""
    if units_per_chunk < 1:
        raise ConfigError(f"units_per_chunk must be at least 1, not {units_per_chunk}")
    return [(s, min(s + units_per_chunk, n_units)) for s in range(0, n_units, units_per_chunk)]


def make_chunk_jobs(subjects: Sequence[str], rois: Sequence[str], layers: Sequence[str],
                    layer_units: Mapping[str, int], units_per_chunk: int) -> List[ChunkJob]:
    """Every job, subject-major, then ROI, layer (in the given order) and chunk: every
    process builds the same list, and the round-robin split of
    :func:`icnn_torch.run.jobs.split_jobs` keeps each process on one subject and ROI at a
    time."""
    return [ChunkJob(subject, roi, layer, start, stop)
            for subject in subjects for roi in rois for layer in layers
            for start, stop in unit_chunks(layer_units[layer], units_per_chunk)]


def chunk_path(decoders_dir: PathLike, network: str, job: ChunkJob) -> Path:
    """``<decoders_dir>/<network>/<layer>/<subject>/<roi>/chunk-<start>-<stop>.h5``."""
    return Path(decoders_dir, network, job.layer, job.subject, job.roi,
                f"chunk-{job.start:09d}-{job.stop:09d}.h5")


@dataclass
class TrainingSet:
    """The fMRI of one subject and ROI, ready for its decoders.

    Attributes
    ----------
    x : ndarray, (n_trials, n_voxels) float32
        Normalised training trials.
    image_rows : ndarray, (n_trials,) int
        Row of each trial's image in the training features file.
    subject_rows : ndarray (n_images,) int
        The rows of the subject's training images (each once): the samples of the
        feature means and SDs.
    x_test : ndarray, (n_items, n_voxels) float32
        Normalised test samples (one per image, or per trial).
    items : list of str
        The decoded-feature label of each test row.
    item_stimuli : list of str
        The stimulus name of each test row.
    """

    x: np.ndarray
    image_rows: np.ndarray
    subject_rows: np.ndarray
    x_test: np.ndarray
    items: List[str]
    item_stimuli: List[str]


def _normalise(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    safe = np.where(sd > 0, sd, 1.0)
    return np.where(sd > 0, (x - mean) / safe, 0.0)


def prepare_training_set(train: FmriData, test: FmriData, feature_labels: Sequence[str],
                         label_map: Mapping[str, str], average: bool = True) -> TrainingSet:
    """Normalise a subject's ROI data (see the module docstring).

    Parameters
    ----------
    train, test : FmriData
        Training and test trials of the ROI.
    feature_labels : sequence of str
        Row labels of the training features file.
    label_map : mapping
        Stimulus name -> decoded-feature label of the test images.
    average : bool
        Average the test trials of each image (test rows in the order of the stimulus
        ids); else one row per trial, labelled ``<label>_trial<NN>`` (NN counts that
        image's trials from 01 in file order).

    Raises
    ------
    ConfigError
        Training and test data with different voxel counts, or a test image without a
        label.
    """
    if train.voxels.shape[1] != test.voxels.shape[1]:
        raise ConfigError(f"ROI {train.roi}: {train.path.name} has {train.voxels.shape[1]} "
                          f"voxels but {test.path.name} has {test.voxels.shape[1]}")
    row_of = {label: i for i, label in enumerate(feature_labels)}
    absent = sorted({l for l in train.labels if l not in row_of})
    if absent:  # not possible for files the training labels were read from
        raise ConfigError(f"{len(absent)} training images of {train.path.name} have no "
                          f"features (first {absent[:3]})")
    mean = train.voxels.mean(axis=0)
    sd = train.voxels.std(axis=0, ddof=1)
    x = _normalise(train.voxels, mean, sd).astype(np.float32)
    image_rows = np.array([row_of[l] for l in train.labels], dtype=np.int64)
    subject_rows = np.unique(image_rows)
    unlabelled = sorted({l for l in test.labels if l not in label_map}, key=stimulus_sort_key)
    if unlabelled:
        raise ConfigError(f"{len(unlabelled)} test images of {test.path.name} have no "
                          f"decoded-feature label in test_labels (first {unlabelled[:3]})")
    if average:
        stimuli = sorted(set(test.labels), key=stimulus_sort_key)
        samples = average_trials(test.voxels, test.labels, stimuli)
        items = [label_map[s] for s in stimuli]
    else:
        stimuli, items, seen = list(test.labels), [], {}
        for s in stimuli:
            seen[s] = seen.get(s, 0) + 1
            items.append(f"{label_map[s]}_trial{seen[s]:02d}")
        samples = test.voxels
    x_test = _normalise(samples, mean, sd).astype(np.float32)
    return TrainingSet(x, image_rows, subject_rows, x_test, items, list(stimuli))


@dataclass
class ChunkResult:
    """The outputs of one job (see :func:`decode_chunk`)."""

    prediction: np.ndarray
    y_mean: np.ndarray
    y_sd: np.ndarray
    decoders: Optional[LinearDecoders] = None


def decode_chunk(features: np.ndarray, tset: TrainingSet, decoder,
                 keep: bool = False) -> ChunkResult:
    """Fit and predict one chunk of units.

    Parameters
    ----------
    features : ndarray, (n_feature_rows, U)
        The chunk's training features of every row of the features file.
    tset : TrainingSet
    decoder : Fastl2lirDecoder or TorchDecoder
        Prepared for ``tset.x``.
    keep : bool
        Return the decoders too.

    Returns
    -------
    ChunkResult
        ``prediction`` (n_items, U) float32, de-normalised; ``y_mean``, ``y_sd`` (U,)
        float32.
    """
    feats = np.asarray(features, dtype=np.float64)[tset.subject_rows]
    y_mean = feats.mean(axis=0)
    y_sd = feats.std(axis=0, ddof=1)
    rows_in_subject = np.searchsorted(tset.subject_rows, tset.image_rows)
    y = _normalise(feats, y_mean, y_sd)[rows_in_subject]
    prediction, decoders = decoder.fit_predict(y, tset.x_test, keep=keep)  # cast there
    prediction = np.asarray(prediction, dtype=np.float64) * y_sd + y_mean
    return ChunkResult(prediction.astype(np.float32), y_mean.astype(np.float32),
                       y_sd.astype(np.float32), decoders)


def write_chunk(path: PathLike, result: ChunkResult, items: Sequence[str],
                settings: Mapping) -> Path:
    """Write a job's file atomically (layout in the module docstring)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["settings"] = json.dumps(dict(settings), sort_keys=True)
            f.create_dataset("items", data=np.array([s.encode("utf-8") for s in items]),
                             dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("prediction", data=result.prediction)
            f.create_dataset("y_mean", data=result.y_mean)
            f.create_dataset("y_sd", data=result.y_sd)
            if result.decoders is not None:
                f.create_dataset("voxel_index", data=result.decoders.voxel_index)
                f.create_dataset("weight", data=result.decoders.weight)
                f.create_dataset("bias", data=result.decoders.bias)
    return path


def read_chunk(path: PathLike, names: Sequence[str] = ("prediction",)) -> dict:
    """Datasets of a job's file, plus ``settings`` (dict) and ``items`` (list of str)."""
    try:
        with h5py.File(path, "r") as f:
            out = {name: f[name][()] for name in names}
            out["settings"] = json.loads(f.attrs["settings"])
            out["items"] = [s.decode("utf-8") if isinstance(s, bytes) else str(s)
                            for s in f["items"][()]]
    except (OSError, KeyError, ValueError) as err:
        raise DamagedFileError(path, f"not a decoding chunk file ({err}); once it is deleted "
                                     "the next run redoes that chunk") from err
    return out


def chunk_done(path: PathLike, settings: Mapping) -> bool:
    """Whether the job's file exists with these settings.

    Raises
    ------
    ConfigError
        It exists with other settings (the message names them).
    """
    path = Path(path)
    if not path.is_file():
        return False
    stored = read_chunk(path, names=())["settings"]
    current = json.loads(json.dumps(dict(settings), sort_keys=True))
    if stored != current:
        differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        shown = "; ".join(f"{k}: {stored.get(k)!r} there, {current.get(k)!r} now"
                          for k in differ[:4])
        raise ConfigError(f"{path.parent} holds decoders made with other settings ({shown})")
    return True


def write_feat(path: PathLike, feat: np.ndarray) -> Path:
    """One decoded-feature file: variable ``feat``, float32; a 1-D feature as 1 x N."""
    feat = np.asarray(feat, dtype=np.float32)
    if feat.ndim == 1:
        feat = feat.reshape(1, -1)
    with atomic_output(path) as tmp:
        scipy.io.savemat(tmp, {"feat": feat})
    return Path(path)


def _stamp(paths: Sequence[Path]) -> Dict[str, int]:
    return {p.name: os.stat(p).st_mtime_ns for p in paths}


def assembled(roi_dir: PathLike, chunk_files: Sequence[Path], labels: Sequence[str],
              files: Sequence[Path]) -> bool:
    """Whether the tree files exist and were made from exactly these chunk files."""
    marker = Path(roi_dir, ASSEMBLED_NAME)
    if not marker.is_file() or not all(Path(p).is_file() for p in files):
        return False
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return False
    return record.get("chunks") == _stamp(chunk_files) and record.get("labels") == list(labels)


def assemble_layer(tree_dir: PathLike, image_type: str, network: str, layer: str,
                   subject: str, roi: str, shape: Sequence[int],
                   chunk_files: Sequence[PathLike]) -> List[Path]:
    """Write the decoded-feature files of one (subject, ROI, layer) from its chunk files.

    Parameters
    ----------
    shape : sequence of int
        Feature shape of one image, e.g. (512, 14, 14) or (1000,).
    chunk_files : sequence of paths
        In unit order, covering every unit.

    Returns
    -------
    list of Path
        The files, in item order (skipped when already made from these chunks).
    """
    chunk_files = [Path(p) for p in chunk_files]
    first = read_chunk(chunk_files[0], names=())
    items = first["items"]
    files = [decode_feature_filename(tree_dir, image_type, network, layer, subject, roi, item)
             for item in items]
    roi_dir = files[0].parent
    if assembled(roi_dir, chunk_files, items, files):
        return files
    parts = []
    for path in chunk_files:
        chunk = read_chunk(path)
        if chunk["items"] != items:
            raise DamagedFileError(path, f"its test items differ from those of "
                                   f"{chunk_files[0].name}; once the folder's chunk files are "
                                   "deleted the next run redoes them")
        parts.append(chunk["prediction"])
    prediction = np.concatenate(parts, axis=1)
    units = int(np.prod(shape))
    if prediction.shape[1] != units:
        raise DamagedFileError(roi_dir, f"the chunks of {layer} hold {prediction.shape[1]} "
                               f"units, the layer has {units}")
    for item, path, row in zip(items, files, prediction):
        write_feat(path, row.reshape(tuple(shape)) if len(shape) > 1 else row)
    with atomic_output(roi_dir / ASSEMBLED_NAME) as tmp:
        tmp.write_text(json.dumps({"chunks": _stamp(chunk_files), "labels": items},
                                  indent=1), encoding="utf-8")
    return files
