"""The decoding entry point: a script's constants in, the decoded-feature tree out.

``decode_features.py`` (at the project root) holds the constants (:class:`DecodeConfig`)
and makes one call, :func:`main`. A run has three stages, each resumable (a killed or
repeated run continues where it stopped) and each selectable with ``--stages``:

``features``
    The training images' features (and the test images', for the accuracy), computed by
    the encoder into ``<features_dir>/<network>/{training,test}.h5``
    (:mod:`icnn_torch.decoding.store`). Done by rank 0; other ranks wait for it.
``decode``
    One job per (subject, ROI, layer, unit chunk) (:mod:`icnn_torch.decoding.predict`),
    split over processes by :func:`icnn_torch.run.jobs.rank_info` and
    :func:`icnn_torch.run.jobs.split_jobs` (``torchrun``, SLURM arrays); each (subject,
    ROI, layer) whose chunks are all done is written to the decoded-feature tree.
``accuracy``
    Profile and pattern correlation and pairwise identification against the test
    images' true features, per layer (:mod:`icnn_torch.decoding.accuracy`): CSV
    ``<decoded_features_dir>/<image_type>/<network>/decoding_accuracy.csv`` and a table.
    Rank 0, for the layers complete at that time.

Test images and labels: the test fMRI labels its trials by stimulus name; the tree names
the images ``Img0001`` ... in the order of the stimulus ids (``test_labels = 'Img'``, the
order of the lab's own list of the 50 test images, ``imageID_test.csv`` of
KamitaniLab/GenericObjectDecoding), or by the stimulus names themselves
(``'stimulus_name'``), or as a CSV file maps them (rows ``stimulus_name,label``). That
the published decoded features number the images in the same order is likely but not
verified (no public statement found); ``image_labels.csv`` beside the accuracy CSV lists
the mapping a run used.

Paths in the constants are relative to the project root: ``ICNN_TORCH_ROOT`` when set,
else the script's folder.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .._util import PathLike, atomic_output, is_terminal
from ..errors import ConfigError
from ..run.cli import run_cli

__all__ = ["DecodeConfig", "STAGES", "run_decoding", "main"]

STAGES = ("features", "decode", "accuracy")
ALL_19_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                 "conv3_4", "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1", "conv5_2",
                 "conv5_3", "conv5_4", "fc6", "fc7", "fc8")
KNOWN_NETWORKS = {"VGG19": "relu", "VGG19_leaky": "leaky"}
ACCURACY_NAME = "decoding_accuracy.csv"
LABELS_NAME = "image_labels.csv"
#: Seconds between checks while a rank waits for another's files.
WAIT_POLL = 2.0


@dataclass
class DecodeConfig:
    """The constants of ``decode_features.py`` (the lab's names where it has them).

    Attributes
    ----------
    script_file : str
    subjects_list, rois_list : list of str
        Subjects (S1 S2 S3) and ROIs (V1 V2 V3 V4 LOC FFA PPA LVC HVC VC, or
        ``BData.select`` expressions).
    image_type, network : str
        The first two levels of the decoded-feature tree (``natural``, ``VGG19``).
    layers : list of str
    encoder : callable, optional
        ``encoder(device) -> encoder`` for a network other than VGG19 / VGG19_leaky (any
        ``nn.Module`` through :class:`icnn_torch.features.FeatureExtractor`).
    alpha : float
        L2 regularisation (100).
    num_voxel : int
        Voxels selected per unit (500).
    decoder : {"fastl2lir", "torch"}
    dtype : {"float32", "float64"}
        Decoder computation (float32 as the lab).
    units_per_chunk : int
        Units per job.
    average_trials : bool
        Average the test trials of each image (the lab's default).
    test_labels : str
        ``"Img"``, ``"stimulus_name"`` or a CSV path (see the module docstring).
    label_key : str
        The BData label column (``stimulus_name``).
    fmri_dir : str
        Where the published fMRI files are (downloaded when missing).
    fmri_files : dict, optional
        Own files: ``{subject: {"training": path, "test": path}}``.
    training_images_dir, test_images_dir : str
        Stimulus images named ``<stimulus name>.<ext>`` (test images may instead be
        named by their tree label, ``Img0001.<ext>``).
    features_dir, decoders_dir, decoded_features_dir : str
        Outputs: image features, decoding chunks, the decoded-feature tree.
    save_decoders : bool
        Keep the decoders (selected voxels, weights, bias) in the chunk files.
    batch_size : int
        Images per forward pass (for a new features file).
    download : {"ask", "yes", "no"}
    overwrite : bool
        Redo chunks and tree files that exist.
    device : str, optional
        Default: CUDA when present (the rank's GPU), else CPU.
    data_dir, net_dir : str
        The project's data and weights (VGG19, image mean).
    """

    script_file: str
    subjects_list: Sequence[str] = ("S1", "S2", "S3")
    rois_list: Sequence[str] = ("VC",)
    image_type: str = "natural"
    network: str = "VGG19"
    layers: Sequence[str] = ALL_19_LAYERS
    encoder: Optional[Callable] = None
    alpha: float = 100.0
    num_voxel: int = 500
    decoder: str = "fastl2lir"
    dtype: str = "float32"
    units_per_chunk: int = 8192
    average_trials: bool = True
    test_labels: str = "Img"
    label_key: str = "stimulus_name"
    fmri_dir: str = "./data/fmri"
    fmri_files: Optional[Mapping[str, Mapping[str, str]]] = None
    training_images_dir: str = "./data/images/training"
    test_images_dir: str = "./data/images/test"
    features_dir: str = "./data/features"
    decoders_dir: str = "./data/feature_decoders"
    decoded_features_dir: str = "./data/decodedfeatures_from_fmri"
    save_decoders: bool = False
    batch_size: int = 8
    download: str = "ask"
    overwrite: bool = False
    device: Optional[str] = None
    data_dir: str = "data"
    net_dir: str = "net"

    @classmethod
    def from_constants(cls, constants: Mapping[str, Any]) -> "DecodeConfig":
        """From a script's module-level constants (``globals()``); others are ignored."""
        names = {f.name for f in fields(cls)} - {"script_file"}
        return cls(script_file=str(constants.get("__file__", "decode_features.py")),
                   **{n: constants[n] for n in names if n in constants})

    @property
    def root(self) -> Path:
        """``ICNN_TORCH_ROOT`` when set, else the script's folder."""
        env = os.environ.get("ICNN_TORCH_ROOT")
        return Path(env).resolve() if env else Path(self.script_file).resolve().parent

    def path(self, relative: PathLike) -> Path:
        """A path constant resolved against :attr:`root`."""
        return (self.root / relative).resolve()


# --------------------------------------------------------------------------- arguments

def _split(text: Optional[str], default: Sequence[str]) -> List[str]:
    return list(default) if not text else [t.strip() for t in text.split(",") if t.strip()]


def _parse(cfg: DecodeConfig, argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=Path(cfg.script_file).name,
        description="Train the lab's feature decoders on the fMRI and write the "
                    "decoded-feature tree the figure scripts read; without options, the "
                    "settings of the script's constants.")
    p.add_argument("--subjects", help="comma-separated, e.g. S1,S2 (default: subjects_list)")
    p.add_argument("--rois", help="comma-separated, e.g. V1,LOC (default: rois_list)")
    p.add_argument("--layers", help="comma-separated, e.g. conv1_1,fc7 (default: layers)")
    p.add_argument("--alpha", type=float, help="L2 regularisation (default: alpha)")
    p.add_argument("--num-voxel", type=int, help="voxels selected per unit")
    p.add_argument("--decoder", help="fastl2lir or torch")
    p.add_argument("--dtype", help="float32 or float64")
    p.add_argument("--units-per-chunk", type=int, help="units per job")
    p.add_argument("--stages", help=f"comma-separated, of {','.join(STAGES)} (default: all)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    p.add_argument("--force", action="store_true", help="redo chunks and files that exist")
    p.add_argument("--yes", action="store_true", help="download missing files without asking")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p.parse_args(list(argv))


@dataclass
class _Run:
    """A run's settings after the command-line overrides."""

    cfg: DecodeConfig
    subjects: List[str]
    rois: List[str]
    layers: List[str]
    alpha: float
    num_voxel: int
    decoder: str
    dtype: str
    units_per_chunk: int
    stages: List[str]
    overwrite: bool
    download: str
    progress: bool
    device_name: Optional[str]
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    files: Dict[Tuple[str, str], Path] = field(default_factory=dict)

    def out(self, relative: PathLike) -> Path:
        return self.cfg.path(relative)

    @property
    def network_dir(self) -> Path:
        return self.out(self.cfg.decoded_features_dir) / self.cfg.image_type / self.cfg.network

    def store_path(self, image_set: str) -> Path:
        return self.out(self.cfg.features_dir) / self.cfg.network / f"{image_set}.h5"


def _resolve(cfg: DecodeConfig, args: argparse.Namespace) -> _Run:
    from .decoders import DECODERS, DTYPES
    run = _Run(cfg=cfg, subjects=_split(args.subjects, cfg.subjects_list),
               rois=_split(args.rois, cfg.rois_list), layers=_split(args.layers, cfg.layers),
               alpha=cfg.alpha if args.alpha is None else args.alpha,
               num_voxel=cfg.num_voxel if args.num_voxel is None else args.num_voxel,
               decoder=args.decoder or cfg.decoder, dtype=args.dtype or cfg.dtype,
               units_per_chunk=args.units_per_chunk or cfg.units_per_chunk,
               stages=_split(args.stages, STAGES), overwrite=cfg.overwrite or args.force,
               download="yes" if args.yes else cfg.download, progress=not args.quiet,
               device_name=args.device or cfg.device)
    for name, values in (("subjects", run.subjects), ("ROIs", run.rois), ("layers", run.layers)):
        if not values:
            raise ConfigError(f"no {name} selected")
    unknown = [s for s in run.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    if run.decoder not in DECODERS:
        raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}, not {run.decoder!r}")
    if run.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, not {run.dtype!r}")
    if run.download not in ("ask", "yes", "no"):
        raise ConfigError(f"download must be 'ask', 'yes' or 'no', not {run.download!r}")
    if cfg.encoder is None and cfg.network not in KNOWN_NETWORKS:
        raise ConfigError(f"network {cfg.network!r} needs an encoder function (constant "
                          f"`encoder`); built in: {', '.join(KNOWN_NETWORKS)}")
    run.files = _fmri_files(cfg, run.subjects)
    return run


def _fmri_files(cfg: DecodeConfig, subjects: Sequence[str]) -> Dict[Tuple[str, str], Path]:
    from .fmri import KINDS, published_fmri_files
    own = dict(cfg.fmri_files or {})
    files: Dict[Tuple[str, str], Path] = {}
    for subject in subjects:
        if subject in own:
            for kind in KINDS:
                if kind not in own[subject]:
                    raise ConfigError(f"fmri_files[{subject!r}] has no {kind!r} file")
                files[(subject, kind)] = cfg.path(own[subject][kind])
        else:
            files.update(published_fmri_files(cfg.path(cfg.fmri_dir), [subject]))
    return files


# --------------------------------------------------------------------------- helpers

def _say(text: str) -> None:
    print(text, flush=True)


def _wait_for(ready: Callable[[], bool], what: str, rank: int,
              timeout: float = 48 * 3600.0) -> None:
    """Wait until ``ready()`` (another rank is producing ``what``)."""
    if ready():
        return
    _say(f"rank {rank}: waiting for {what} (rank 0 makes it)")
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ConfigError(f"rank {rank} waited {timeout / 3600:.0f} h for {what}; is "
                              "rank 0 running? Run the features stage alone first "
                              "(--stages features)")
        time.sleep(WAIT_POLL)


class _FmriCache:
    """The two BData files last read, a subject's training and test files (reading one
    is the slow part)."""

    SIZE = 2

    def __init__(self, label_key: str) -> None:
        self.label_key = label_key
        self._files: Dict[Path, Any] = {}

    def bdata(self, path: Path):
        from .fmri import open_bdata
        if path not in self._files:
            while len(self._files) >= self.SIZE:  # free the oldest first
                del self._files[next(iter(self._files))]
            self._files[path] = open_bdata(path)
        return self._files[path]

    def labels(self, path: Path) -> List[str]:
        from .fmri import read_labels
        return [l for l in read_labels(self.bdata(path), self.label_key, path) if l != "n/a"]

    def roi(self, path: Path, roi: str):
        from .fmri import load_fmri
        return load_fmri((path, self.bdata(path)), roi, self.label_key)


def _label_map(run: _Run, test_stimuli: Sequence[str]) -> Dict[str, str]:
    """Stimulus name -> decoded-feature label of the test images."""
    from .fmri import stimulus_sort_key
    mode = run.cfg.test_labels
    ordered = sorted(set(test_stimuli), key=stimulus_sort_key)
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


def _device(run: _Run):
    from ..nets.device import choose_device
    return choose_device(run.device_name, run.local_rank)


def _build_encoder(run: _Run, device):
    cfg = run.cfg
    if cfg.encoder is not None:
        encoder = cfg.encoder(device)
    else:
        from ..fetch.ensure import Fetching, ensure_files
        from ..fetch.items import Place
        from ..nets.weights import load_vgg19
        from ..store.layout import image_mean_path, vgg19_weights_path
        from ..store.net_data import load_image_mean
        data_dir, net_dir = run.out(cfg.data_dir), run.out(cfg.net_dir)
        assume = {"yes": True, "no": False}.get(run.download)
        ensure_files(["vgg19"], Place.at(data_dir, net_dir), Fetching(assume_yes=assume))
        mean, source = load_image_mean(image_mean_path(data_dir))
        _say(source)
        encoder = load_vgg19(vgg19_weights_path(net_dir), KNOWN_NETWORKS[cfg.network],
                             device=device, img_mean=mean)
    names = getattr(encoder, "layer_names", None)
    if names is not None:
        unknown = [l for l in run.layers if l not in names]
        if unknown:
            raise ConfigError(f"{cfg.network} has no layer(s) {', '.join(unknown)}; its "
                              f"layers: {', '.join(names)}")
    return encoder


# --------------------------------------------------------------------------- stages

def _training_labels(run: _Run, cache: _FmriCache) -> List[str]:
    from .fmri import stimulus_sort_key
    labels = set()
    for subject in run.subjects:
        labels.update(cache.labels(run.files[(subject, "training")]))
    return sorted(labels, key=stimulus_sort_key)


def _test_stimuli(run: _Run, cache: _FmriCache) -> List[str]:
    from .fmri import stimulus_sort_key
    labels = set()
    for subject in run.subjects:
        labels.update(cache.labels(run.files[(subject, "test")]))
    return sorted(labels, key=stimulus_sort_key)


def _check_rois(run: _Run, cache: _FmriCache) -> None:
    """Every ROI in every subject's test file (read already), before any long step."""
    from .fmri import roi_selector
    for subject in run.subjects:
        path = run.files[(subject, "test")]
        for roi in run.rois:
            roi_selector(cache.bdata(path), roi, path)


def _stage_features(run: _Run, cache: _FmriCache, label_map: Mapping[str, str]) -> None:
    from .store import FeatureStore, compute_features, find_images
    cfg = run.cfg
    train_path, test_path = run.store_path("training"), run.store_path("test")
    if run.rank != 0:
        def ready() -> bool:
            try:
                return FeatureStore(train_path).complete(run.layers)
            except Exception:  # noqa: BLE001 - absent or being created
                return False
        _wait_for(ready, f"the training features {train_path}", run.rank)
        return
    train_labels = _training_labels(run, cache)
    train_images = find_images(run.out(cfg.training_images_dir), train_labels)
    test_dir = run.out(cfg.test_images_dir)
    stimuli = list(label_map)
    test_images = None
    if test_dir.is_dir():
        test_images = find_images(test_dir, stimuli, alternatives=[label_map[s] for s in stimuli])
    device = _device(run)
    encoder = _build_encoder(run, device)
    _say(f"features: {len(train_labels)} training images -> {train_path}")
    compute_features(encoder, cfg.network, train_images, train_labels, train_path, run.layers,
                     device=device, rows_per_block=cfg.batch_size, progress=run.progress,
                     description="training features")
    if test_images is not None:
        _say(f"features: {len(stimuli)} test images -> {test_path}")
        compute_features(encoder, cfg.network, test_images, stimuli, test_path, run.layers,
                         device=device, rows_per_block=cfg.batch_size, progress=run.progress,
                         description="test features")
    else:
        _say(f"features: no test images ({test_dir} does not exist): no decoding accuracy")


def _settings(run: _Run, store, subject: str, items: Sequence[str]) -> dict:
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


def _chunk_files(run: _Run, subject: str, roi: str, layer: str, n_units: int) -> List[Path]:
    from .predict import ChunkJob, chunk_path, unit_chunks
    return [chunk_path(run.out(run.cfg.decoders_dir), run.cfg.network,
                       ChunkJob(subject, roi, layer, a, b))
            for a, b in unit_chunks(n_units, run.units_per_chunk)]


def _assemble_if_complete(run: _Run, store, subject: str, roi: str, layer: str) -> bool:
    from .predict import assemble_layer
    files = _chunk_files(run, subject, roi, layer, store.n_units(layer))
    if not all(p.is_file() for p in files):
        return False
    assemble_layer(run.out(run.cfg.decoded_features_dir), run.cfg.image_type,
                   run.cfg.network, layer, subject, roi, store.shape(layer), files)
    return True


def _stage_decode(run: _Run, cache: _FmriCache, label_map: Mapping[str, str]) -> None:
    from tqdm import tqdm

    from ..run.jobs import split_jobs
    from .decoders import make_decoder
    from .predict import (chunk_done, chunk_path, decode_chunk, make_chunk_jobs,
                          prepare_training_set, write_chunk)
    from .store import FeatureStore
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
    device = _device(run) if run.decoder == "torch" else None
    _say(f"decode: {len(jobs)} chunk jobs ({run.decoder}, alpha {run.alpha:g}, "
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
                tset = prepare_training_set(train, test, store.labels, label_map,
                                            cfg.average_trials)
                del train, test
                settings = _settings(run, store, job.subject, tset.items)
                prepared[key] = (tset, settings, None)
            tset, settings, decoder = prepared[key]
            out = chunk_path(run.out(cfg.decoders_dir), cfg.network, job)
            if not run.overwrite and chunk_done(out, settings):
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
    total = len(run.subjects) * len(run.rois) * len(run.layers)
    _say(f"decode: {skipped} chunk(s) already done; {written} of {total} (subject, ROI, "
         f"layer) complete in {run.out(cfg.decoded_features_dir)}"
         + ("" if written == total else " (the rest: other ranks still running, or run "
                                        "again)"))


def _stage_accuracy(run: _Run, label_map: Mapping[str, str]) -> None:
    import numpy as np

    from ..store.features import load_feat
    from .accuracy import (accuracy_table, decoding_accuracy, rows_in_order,
                           write_accuracy_csv)
    from .predict import read_chunk, tree_path
    from .store import FeatureStore
    if run.rank != 0:
        return
    cfg = run.cfg
    test_path = run.store_path("test")
    if not test_path.is_file():
        _say(f"accuracy: skipped (no test features {test_path}; needs the test images in "
             f"{run.out(cfg.test_images_dir)})")
        return
    from tqdm import tqdm
    true_store = FeatureStore(test_path)
    train_store = FeatureStore(run.store_path("training"))
    inverse = {label: stimulus for stimulus, label in label_map.items()}
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
        files = [tree_path(run.out(cfg.decoded_features_dir), cfg.image_type, cfg.network,
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
        _say("accuracy: no complete layer to evaluate yet")
        return
    rows = rows_in_order(rows, run.subjects, run.rois, run.layers)
    path = write_accuracy_csv(rows, run.network_dir / ACCURACY_NAME)
    _say(f"decoding accuracy ({path}):\n{accuracy_table(rows)}")


def _write_label_list(run: _Run, label_map: Mapping[str, str]) -> None:
    path = run.network_dir / LABELS_NAME
    text = "label,stimulus_name\n" + "".join(f"{label},{s}\n" for s, label in label_map.items())
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def run_decoding(cfg: DecodeConfig, argv: Optional[Sequence[str]] = None) -> None:
    """Run the stages of ``decode_features.py`` (see the module docstring).

    Parameters
    ----------
    cfg : DecodeConfig
    argv : sequence of str, optional
        Command-line overrides (default ``sys.argv[1:]``).
    """
    args = _parse(cfg, sys.argv[1:] if argv is None else argv)
    run = _resolve(cfg, args)
    from ..run.jobs import rank_info
    from .fmri import ensure_fmri_files
    try:
        run.rank, run.world_size, run.local_rank = rank_info()
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if run.rank == 0:
        ensure_fmri_files(run.files, download=run.download, progress=run.progress)
    else:
        _wait_for(lambda: all(p.is_file() for p in run.files.values()), "the fMRI files",
                  run.rank)
    _say(f"decode_features: subjects {', '.join(run.subjects)}; ROIs {', '.join(run.rois)}; "
         f"{len(run.layers)} layer(s); network {cfg.network}; stages {', '.join(run.stages)}")
    cache = _FmriCache(cfg.label_key)
    label_map = _label_map(run, _test_stimuli(run, cache))
    _check_rois(run, cache)
    if run.rank == 0:
        _write_label_list(run, label_map)
    if "features" in run.stages:
        _stage_features(run, cache, label_map)
    if "decode" in run.stages:
        _stage_decode(run, cache, label_map)
    if "accuracy" in run.stages:
        _stage_accuracy(run, label_map)


def main(cfg: DecodeConfig, argv: Optional[Sequence[str]] = None) -> int:
    """Run :func:`run_decoding` under :func:`icnn_torch.errors.run_cli`; the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_cli(lambda: run_decoding(cfg, argv), argv)
