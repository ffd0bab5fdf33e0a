"""The three stages of a decoding run (:mod:`icnn_torch.decoding.run`), each resumable.

``features``
    The training images' features (and the test images', for the accuracy), computed by
    the encoder into ``<features_dir>/<network>/{training,test}.h5``
    (:mod:`icnn_torch.decoding.store`). Done by rank 0; other ranks wait for it.
``decode``
    One job per (subject, ROI, layer, unit chunk) (:mod:`icnn_torch.decoding.predict`),
    split over processes by :func:`icnn_torch.run.jobs.split_jobs`; each (subject, ROI,
    layer) whose chunks are all done is written to the decoded-feature tree.
``accuracy``
    Profile and pattern correlation and pairwise identification against the test
    images' true features, per layer (:mod:`icnn_torch.decoding.accuracy`). Rank 0, for
    the layers complete at that time.

Also here: the fMRI files read once per run (:class:`FmriCache`) and the labels of the
test images in the tree (:func:`label_map`). torch is imported by the encoder and the
torch decoder only, bdpy by the fMRI reader (:mod:`icnn_torch.decoding.fmri`).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from .._util import atomic_output, is_terminal
from ..errors import ConfigError
from ..fetch.ensure import Fetching, ensure_files
from ..fetch.items import Place
from ..run.jobs import split_jobs
from ..store.features import load_feat
from ..store.layout import decode_feature_filename, image_mean_path, vgg19_weights_path
from ..store.net_data import load_image_mean
from .accuracy import accuracy_table, decoding_accuracy, rows_in_order, write_accuracy_csv
from .config import KNOWN_NETWORKS, DecodeRun
from .decoders import make_decoder
from .fmri import load_fmri, open_bdata, read_labels, roi_selector, stimulus_sort_key
from .predict import (ChunkJob, assemble_layer, chunk_done, chunk_path, decode_chunk,
                      make_chunk_jobs, prepare_training_set, read_chunk,
                      unit_chunks, write_chunk)
from .store import FeatureStore, compute_features, find_images

__all__ = ["place_of", "fetching_of", "FmriCache", "label_map", "test_stimuli", "check_rois",
           "write_label_list", "stage_features", "stage_decode", "stage_accuracy", "wait_for", "say",
           "ACCURACY_NAME", "LABELS_NAME", "WAIT_POLL"]

ACCURACY_NAME = "decoding_accuracy.csv"
LABELS_NAME = "image_labels.csv"
#: Seconds between checks while a rank waits for another's files.
WAIT_POLL = 2.0


def _chunk_done(path: Path, settings: Mapping) -> bool:
    """:func:`~icnn_torch.decoding.predict.chunk_done`, its refusal with the way out."""
    try:
        return chunk_done(path, settings)
    except ConfigError as err:
        raise ConfigError(f"{err}; use --force to redo them, or another decoders_dir") from err


def say(text: str) -> None:
    """A progress line on standard output, at once."""
    print(text, flush=True)


def wait_for(ready: Callable[[], bool], what: str, rank: int,
             timeout: float = 48 * 3600.0) -> None:
    """Wait until ``ready()`` (another rank is producing ``what``).

    Raises
    ------
    ConfigError
        ``timeout`` seconds passed.
    """
    if ready():
        return
    say(f"rank {rank}: waiting for {what} (rank 0 makes it)")
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ConfigError(f"rank {rank} waited {timeout / 3600:.0f} h for {what}; is "
                              "rank 0 running? Run the features stage alone first "
                              "(--stages features)")
        time.sleep(WAIT_POLL)


def place_of(run: DecodeRun) -> Place:
    """Where the run's downloads go: its data, net and fMRI folders."""
    cfg = run.cfg
    return Place.at(run.out(cfg.data_dir), run.out(cfg.net_dir),
                    fmri_dir=run.out(cfg.fmri_dir))


def fetching_of(run: DecodeRun) -> Fetching:
    """How the run downloads: its download policy, with or without progress bars."""
    return Fetching(assume_yes=run.assume_yes, progress=run.progress)


class FmriCache:
    """The two BData files last read, a subject's training and test files (reading one
    is the slow part)."""

    SIZE = 2

    def __init__(self, label_key: str) -> None:
        self.label_key = label_key
        self._files: Dict[Path, Any] = {}

    def bdata(self, path: Path):
        """The BData of ``path`` (:func:`icnn_torch.decoding.fmri.open_bdata`)."""
        if path not in self._files:
            while len(self._files) >= self.SIZE:  # free the oldest first
                del self._files[next(iter(self._files))]
            self._files[path] = open_bdata(path)
        return self._files[path]

    def labels(self, path: Path) -> List[str]:
        """The stimulus labels of the file's samples that have one."""
        return [l for l in read_labels(self.bdata(path), self.label_key, path) if l != "n/a"]

    def roi(self, path: Path, roi: str):
        """The samples of ``roi`` (:func:`icnn_torch.decoding.fmri.load_fmri`)."""
        return load_fmri((path, self.bdata(path)), roi, self.label_key)


# --------------------------------------------------------------------------- labels

def _stimuli(run: DecodeRun, cache: FmriCache, kind: str) -> List[str]:
    labels = set()
    for subject in run.subjects:
        labels.update(cache.labels(run.files[(subject, kind)]))
    return sorted(labels, key=stimulus_sort_key)


def test_stimuli(run: DecodeRun, cache: FmriCache) -> List[str]:
    """The test images of the run's subjects, in stimulus-id order."""
    return _stimuli(run, cache, "test")


def label_map(run: DecodeRun, stimuli: Sequence[str]) -> Dict[str, str]:
    """Stimulus name -> decoded-feature label of the test images (``test_labels``: ``Img``
    numbers them ``Img0001``... in stimulus-id order, ``stimulus_name`` keeps the names, a
    CSV file maps them with rows ``stimulus_name,label``).

    Raises
    ------
    ConfigError
        ``test_labels`` is no CSV file, or the file is malformed or lacks a test image.
    """
    mode = run.cfg.test_labels
    ordered = sorted(set(stimuli), key=stimulus_sort_key)
    if mode == "Img":
        return {s: f"Img{i:04d}" for i, s in enumerate(ordered, 1)}
    if mode == "stimulus_name":
        return {s: s for s in ordered}
    path = run.out(mode)
    if not path.is_file():
        raise ConfigError(f"test_labels must be 'Img', 'stimulus_name' or a CSV file; "
                          f"{path} does not exist")
    mapping: Dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#") or \
                    (number == 1 and cells[0].lower() == "stimulus_name"):
                continue
            if len(cells) != 2:
                raise ConfigError(f"{path}:{number}: expected 'stimulus_name,label', got {row!r}")
            mapping[cells[0]] = cells[1]
    missing = [s for s in ordered if s not in mapping]
    if missing:
        raise ConfigError(f"{path} has no label for {len(missing)} test images "
                          f"(first {missing[:3]})")
    return {s: mapping[s] for s in ordered}


def check_rois(run: DecodeRun, cache: FmriCache) -> None:
    """Every ROI in every subject's test file (read already), before any long step."""
    for subject in run.subjects:
        path = run.files[(subject, "test")]
        for roi in run.rois:
            roi_selector(cache.bdata(path), roi, path)


def write_label_list(run: DecodeRun, labels: Mapping[str, str]) -> None:
    """``image_labels.csv`` beside the accuracy CSV: the label of each test image."""
    path = run.network_dir / LABELS_NAME
    text = "label,stimulus_name\n" + "".join(f"{label},{s}\n" for s, label in labels.items())
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- features

def _build_encoder(run: DecodeRun):
    """The encoder: the ``encoder`` constant's, or VGG19 from ``net_dir`` (downloaded
    when missing, as the run's policy says) with the image mean of ``data_dir``."""
    cfg = run.cfg
    if cfg.encoder is not None:
        encoder = cfg.encoder(run.device)
    else:
        from ..nets.weights import load_vgg19  # torch
        ensure_files(["vgg19"], place_of(run), fetching_of(run))
        mean, source = load_image_mean(image_mean_path(run.out(cfg.data_dir)))
        say(source)
        encoder = load_vgg19(vgg19_weights_path(run.out(cfg.net_dir)),
                             KNOWN_NETWORKS[cfg.network], device=run.device, img_mean=mean)
    names = getattr(encoder, "layer_names", None)
    if names is not None:
        unknown = [l for l in run.layers if l not in names]
        if unknown:
            raise ConfigError(f"{cfg.network} has no layer(s) {', '.join(unknown)}; its "
                              f"layers: {', '.join(names)}")
    return encoder


def stage_features(run: DecodeRun, cache: FmriCache, labels: Mapping[str, str]) -> None:
    """The ``features`` stage (see the module docstring)."""
    cfg = run.cfg
    train_path, test_path = run.store_path("training"), run.store_path("test")
    if run.rank != 0:
        def ready() -> bool:
            try:
                return FeatureStore(train_path).complete(run.layers)
            except Exception:  # noqa: BLE001 - absent or being created
                return False
        wait_for(ready, f"the training features {train_path}", run.rank)
        return
    train_labels = _stimuli(run, cache, "training")
    train_images = find_images(run.out(cfg.training_images_dir), train_labels)
    test_dir = run.out(cfg.test_images_dir)
    stimuli = list(labels)
    test_images = None
    if test_dir.is_dir():
        test_images = find_images(test_dir, stimuli, alternatives=[labels[s] for s in stimuli])
    encoder = _build_encoder(run)
    say(f"features: {len(train_labels)} training images -> {train_path}")
    compute_features(encoder, cfg.network, train_images, train_labels, train_path, run.layers,
                     device=run.device, rows_per_block=cfg.batch_size, progress=run.progress,
                     description="training features")
    if test_images is not None:
        say(f"features: {len(stimuli)} test images -> {test_path}")
        compute_features(encoder, cfg.network, test_images, stimuli, test_path, run.layers,
                         device=run.device, rows_per_block=cfg.batch_size,
                         progress=run.progress, description="test features")
    else:
        say(f"features: no test images ({test_dir} does not exist): no decoding accuracy")


# --------------------------------------------------------------------------- decode

def _settings(run: DecodeRun, store: FeatureStore, subject: str, items: Sequence[str]) -> dict:
    """What a chunk's results depend on (a chunk made otherwise is not reused)."""
    files = {kind: [run.files[(subject, kind)].name, run.files[(subject, kind)].stat().st_size]
             for kind in ("training", "test")}
    return {"alpha": float(run.alpha), "num_voxel": int(run.num_voxel),
            "decoder": run.decoder, "dtype": run.dtype,
            "average_trials": bool(run.cfg.average_trials), "label_key": run.cfg.label_key,
            "features": {"weights_sha1": store.record.get("weights_sha1"),
                         "network": store.record.get("network"),
                         "n_images": len(store.labels)},
            "fmri": files, "items": list(items)}


def _chunk_files(run: DecodeRun, subject: str, roi: str, layer: str,
                 n_units: int) -> List[Path]:
    return [chunk_path(run.out(run.cfg.decoders_dir), run.cfg.network,
                       ChunkJob(subject, roi, layer, a, b))
            for a, b in unit_chunks(n_units, run.units_per_chunk)]


def _assemble_if_complete(run: DecodeRun, store: FeatureStore, subject: str, roi: str,
                          layer: str) -> bool:
    files = _chunk_files(run, subject, roi, layer, store.n_units(layer))
    if not all(p.is_file() for p in files):
        return False
    assemble_layer(run.out(run.cfg.decoded_features_dir), run.cfg.image_type,
                   run.cfg.network, layer, subject, roi, store.shape(layer), files)
    return True


def stage_decode(run: DecodeRun, cache: FmriCache, labels: Mapping[str, str]) -> None:
    """The ``decode`` stage (see the module docstring)."""
    cfg = run.cfg
    store = FeatureStore(run.store_path("training"))
    if store.record.get("network") != cfg.network:
        raise ConfigError(f"{store.path} holds features of {store.record.get('network')}, "
                          f"not {cfg.network}")
    incomplete = [l for l in run.layers if l not in store.layers or store.missing_blocks(l)]
    if incomplete:
        raise ConfigError(f"{store.path} lacks features of {', '.join(incomplete)}; run the "
                          "features stage first")
    jobs = make_chunk_jobs(run.subjects, run.rois, run.layers,
                           {l: store.n_units(l) for l in run.layers}, run.units_per_chunk)
    mine = split_jobs(jobs, run.rank, run.world_size)
    device = run.device if run.decoder == "torch" else None
    say(f"decode: {len(jobs)} chunk jobs ({run.decoder}, alpha {run.alpha:g}, "
        f"{run.num_voxel} voxels per unit), {len(mine)} for rank {run.rank}/{run.world_size}")
    prepared: Dict[Tuple[str, str], tuple] = {}
    skipped = 0
    shown = run.progress and is_terminal()
    with tqdm(mine, unit="chunk", desc="decode", disable=not shown) as bar:
        for job in bar:
            key = (job.subject, job.roi)
            if key not in prepared:
                prepared.clear()  # one subject and ROI at a time
                train = cache.roi(run.files[(job.subject, "training")], job.roi)
                test = cache.roi(run.files[(job.subject, "test")], job.roi)
                tset = prepare_training_set(train, test, store.labels, labels,
                                            cfg.average_trials)
                del train, test
                settings = _settings(run, store, job.subject, tset.items)
                prepared[key] = (tset, settings, None)
            tset, settings, decoder = prepared[key]
            out = chunk_path(run.out(cfg.decoders_dir), cfg.network, job)
            if not run.overwrite and _chunk_done(out, settings):
                skipped += 1
            else:
                if decoder is None:
                    decoder = make_decoder(run.decoder, tset.x, run.alpha, run.num_voxel,
                                           run.dtype, device)
                    prepared[key] = (tset, settings, decoder)
                result = decode_chunk(store.read_units(job.layer, job.start, job.stop), tset,
                                      decoder, keep=cfg.save_decoders)
                write_chunk(out, result, tset.items, settings)
            if job.stop == store.n_units(job.layer):  # this rank's last chunk of the layer
                _assemble_if_complete(run, store, job.subject, job.roi, job.layer)
    written = 0
    triples = [(s, r, l) for s in run.subjects for r in run.rois for l in run.layers]
    for subject, roi, layer in tqdm(triples, unit="layer", desc="tree", disable=not shown):
        written += _assemble_if_complete(run, store, subject, roi, layer)
    total = len(triples)
    say(f"decode: {skipped} chunk(s) already done; {written} of {total} (subject, ROI, "
        f"layer) complete in {run.out(cfg.decoded_features_dir)}"
        + ("" if written == total else " (the rest: other ranks still running, or run "
                                       "again)"))


# --------------------------------------------------------------------------- accuracy

def stage_accuracy(run: DecodeRun, labels: Mapping[str, str]) -> None:
    """The ``accuracy`` stage (see the module docstring): CSV
    ``<decoded_features_dir>/<image_type>/<network>/decoding_accuracy.csv`` and a table."""
    if run.rank != 0:
        return
    cfg = run.cfg
    test_path = run.store_path("test")
    if not test_path.is_file():
        say(f"accuracy: skipped (no test features {test_path}; needs the test images in "
            f"{run.out(cfg.test_images_dir)})")
        return
    true_store = FeatureStore(test_path)
    train_store = FeatureStore(run.store_path("training"))
    inverse = {label: stimulus for stimulus, label in labels.items()}
    triples = [(s, r, l) for s in run.subjects for r in run.rois for l in run.layers]
    rows = []
    for subject, roi, layer in tqdm(triples, unit="layer", desc="accuracy",
                                    disable=not (run.progress and is_terminal())):
        if layer not in true_store.layers or true_store.missing_blocks(layer):
            continue
        chunks = _chunk_files(run, subject, roi, layer, train_store.n_units(layer))
        if not all(p.is_file() for p in chunks):
            continue
        parts = [read_chunk(p, names=("y_mean", "y_sd")) for p in chunks]
        items = parts[0]["items"]
        files = [decode_feature_filename(run.out(cfg.decoded_features_dir), cfg.image_type, cfg.network,
                           layer, subject, roi, item) for item in items]
        if not all(f.is_file() for f in files):
            continue
        pred = np.stack([load_feat(f).reshape(-1) for f in files])
        true = true_store.read_layer(layer).reshape(len(true_store.labels), -1)
        y_mean = np.concatenate([p["y_mean"] for p in parts])
        y_sd = np.concatenate([p["y_sd"] for p in parts])
        if cfg.average_trials:
            order = [true_store.labels.index(inverse[item]) for item in items]
            scores = decoding_accuracy(pred, true[order], y_mean, y_sd)
        else:
            image_of = [inverse[item.rsplit("_trial", 1)[0]] for item in items]
            scores = decoding_accuracy(pred, true, y_mean, y_sd, pred_labels=image_of,
                                       true_labels=true_store.labels)
        rows.append({"subject": subject, "roi": roi, "layer": layer, "n_items": len(items),
                     "n_units": pred.shape[1], **scores})
    if not rows:
        say("accuracy: no complete layer to evaluate yet")
        return
    rows = rows_in_order(rows, run.subjects, run.rois, run.layers)
    path = write_accuracy_csv(rows, run.network_dir / ACCURACY_NAME)
    say(f"decoding accuracy ({path}):\n{accuracy_table(rows)}")
