"""``decode_features.py``'s constants and its command-line overrides.

The script is a record of constants followed by one call, as the figure scripts are:
:class:`DecodeConfig` derives from :class:`icnn_torch.run.script.ScriptConstants`, so its
constants are read the same way (a misspelled constant stops the run and names the
closest setting; helper values of one's own start with ``_``), its paths are resolved
against the same root (the script's folder, or ``ICNN_TORCH_ROOT``), and ``download``,
``overwrite``, ``device``, ``data_dir`` and ``net_dir`` mean what they mean there.
:func:`build_parser` offers the overrides with the script's values as the defaults shown;
:func:`resolve` applies them and checks everything before anything is read.

Nothing here imports torch, bdpy, fastl2lir or h5py: a ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

from .._util import PathLike
from ..errors import ConfigError
from ..nets.tables import VGG19_FEATURE_LAYERS
from ..run.cli import HelpFormatter, split_list
from ..run.script import ScriptConstants, assume_yes_of
from ..store.fmri_files import FMRI_KINDS, published_fmri_files
from .decoders import DECODERS, DEFAULT_ALPHA, DEFAULT_NUM_VOXEL, DTYPES

__all__ = ["DecodeConfig", "DecodeRun", "STAGES", "KNOWN_NETWORKS", "build_parser", "resolve",
           "fmri_files"]

#: The stages of a run, in their order (``--stages``).
STAGES = ("features", "decode", "accuracy")
#: The networks built in (VGG19 with ReLU or leaky ReLU, as the figure scripts' networks);
#: another one needs the ``encoder`` constant.
KNOWN_NETWORKS = {"VGG19": "relu", "VGG19_leaky": "leaky"}


@dataclass(kw_only=True)
class DecodeConfig(ScriptConstants):
    """The constants of ``decode_features.py`` (the lab's names where it has them).

    Attributes
    ----------
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
        L2 regularisation (100, the lab's).
    num_voxel : int
        Voxels selected per unit (500, the lab's).
    decoder : {"fastl2lir", "torch"}
    dtype : {"float32", "float64"}
        Decoder computation (float32 as the lab).
    units_per_chunk : int
        Units per job.
    average_trials : bool
        Average the test trials of each image (the lab's default).
    test_labels : str
        ``"Img"``, ``"stimulus_name"`` or a CSV path (see :mod:`icnn_torch.decoding.run`).
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
    script_file, data_dir, net_dir, download, overwrite, device
        See :class:`~icnn_torch.run.script.ScriptConstants` (``overwrite``: redo chunks
        and tree files that exist; ``data_dir`` / ``net_dir``: VGG19 and the image mean).
    """

    subjects_list: Sequence[str] = ("S1", "S2", "S3")
    rois_list: Sequence[str] = ("VC",)
    image_type: str = "natural"
    network: str = "VGG19"
    layers: Sequence[str] = VGG19_FEATURE_LAYERS
    encoder: Optional[Callable] = None
    alpha: float = DEFAULT_ALPHA
    num_voxel: int = DEFAULT_NUM_VOXEL
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

    REQUIRED: ClassVar[tuple] = ()


def _shown(values: Sequence[Any]) -> str:
    return ",".join(str(v) for v in values)


def build_parser(cfg: DecodeConfig) -> argparse.ArgumentParser:
    """The command-line overrides of ``decode_features.py``, with its constants as the
    defaults shown (``script: <value>``, as the figure scripts show theirs). Lists are
    comma-separated."""
    p = argparse.ArgumentParser(
        prog=Path(cfg.script_file).name, formatter_class=HelpFormatter,
        description="Train the lab's feature decoders on the fMRI and write the "
                    "decoded-feature tree the figure scripts read. Without options it runs "
                    "the settings of the script's constants; the options below override "
                    "them for one run. Lists are comma-separated.",
        epilog=f"Results: {cfg.decoded_features_dir}/{cfg.image_type}/{cfg.network}/<layer>/"
               "<subject>/<roi>/. Finished chunks and files are skipped on a rerun.")
    p.add_argument("--subjects", metavar="LIST",
                   help=f"subjects (script: {_shown(cfg.subjects_list)})")
    p.add_argument("--rois", metavar="LIST",
                   help=f"ROIs, e.g. V1,LOC (script: {_shown(cfg.rois_list)})")
    p.add_argument("--layers", metavar="LIST",
                   help=f"layers of {cfg.network} (script: {_shown(cfg.layers)})")
    p.add_argument("--alpha", type=float, metavar="X",
                   help=f"L2 regularisation (script: {cfg.alpha:g})")
    p.add_argument("--num-voxel", type=int, metavar="N",
                   help=f"voxels selected per unit (script: {cfg.num_voxel})")
    p.add_argument("--decoder", metavar="NAME",
                   help=f"{' or '.join(DECODERS)} (script: {cfg.decoder})")
    p.add_argument("--dtype", metavar="NAME",
                   help=f"decoder arithmetic, {' or '.join(DTYPES)} (script: {cfg.dtype})")
    p.add_argument("--units-per-chunk", type=int, metavar="N",
                   help=f"units per job (script: {cfg.units_per_chunk})")
    p.add_argument("--stages", metavar="LIST",
                   help=f"of {_shown(STAGES)} (default: all, in this order)")
    p.add_argument("--device", metavar="DEV",
                   help=f"cpu, cuda, cuda:1 ... (script: "
                        f"{cfg.device or 'CUDA when present, else CPU'})")
    p.add_argument("--force", action="store_true",
                   help="redo chunks and tree files that exist")
    p.add_argument("--yes", action="store_true",
                   help="download missing fMRI files and weights without asking")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (also ICNN_TORCH_DEBUG=1)")
    return p


@dataclass
class DecodeRun:
    """A run's settings: the constants after the command-line overrides, checked.

    Attributes
    ----------
    cfg : DecodeConfig
    subjects, rois, layers, stages : list of str
    alpha, num_voxel, decoder, dtype, units_per_chunk
        As the constants, overridden.
    overwrite : bool
    assume_yes : bool or None
        The download policy (:func:`~icnn_torch.run.script.assume_yes_of`).
    progress : bool
    device_name : str or None
    rank, world_size, local_rank : int
        This process among the run's processes (:func:`icnn_torch.run.jobs.rank_info`).
    files : dict
        ``(subject, "training" | "test") -> path`` of the fMRI files.
    device : torch.device or None
        Chosen once the run knows it needs one.
    """

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
    assume_yes: Optional[bool]
    progress: bool
    device_name: Optional[str]
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    files: Dict[Tuple[str, str], Path] = field(default_factory=dict)
    device: Any = None

    def out(self, relative: PathLike) -> Path:
        """A path of the constants, resolved against the project root."""
        return self.cfg.path(relative)

    @property
    def network_dir(self) -> Path:
        """``<decoded_features_dir>/<image_type>/<network>``."""
        return self.out(self.cfg.decoded_features_dir) / self.cfg.image_type / self.cfg.network

    def store_path(self, image_set: str) -> Path:
        """The features file of ``"training"`` or ``"test"`` images."""
        return self.out(self.cfg.features_dir) / self.cfg.network / f"{image_set}.h5"

    @property
    def needs_device(self) -> bool:
        """Whether a stage of this run computes with torch (the encoder, or the torch
        decoder)."""
        return "features" in self.stages or ("decode" in self.stages and self.decoder == "torch")


def _chosen(text: Optional[str], default: Sequence[str]) -> List[str]:
    values = split_list(text)
    return list(default) if values is None else values


def resolve(cfg: DecodeConfig, args: argparse.Namespace) -> DecodeRun:
    """The run of ``cfg`` with the command line's overrides, checked before anything is
    read.

    Raises
    ------
    ConfigError
        An empty selection, an unknown stage, decoder, dtype or download policy, a
        network without an encoder, or ``fmri_files`` without a file of a subject.
    """
    run = DecodeRun(cfg=cfg, subjects=_chosen(args.subjects, cfg.subjects_list),
                    rois=_chosen(args.rois, cfg.rois_list),
                    layers=_chosen(args.layers, cfg.layers),
                    alpha=cfg.alpha if args.alpha is None else args.alpha,
                    num_voxel=cfg.num_voxel if args.num_voxel is None else args.num_voxel,
                    decoder=args.decoder or cfg.decoder, dtype=args.dtype or cfg.dtype,
                    units_per_chunk=args.units_per_chunk or cfg.units_per_chunk,
                    stages=_chosen(args.stages, STAGES), overwrite=cfg.overwrite or args.force,
                    assume_yes=assume_yes_of(cfg.download, args.yes), progress=not args.quiet,
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
    if cfg.encoder is None and cfg.network not in KNOWN_NETWORKS:
        raise ConfigError(f"network {cfg.network!r} needs an encoder function (constant "
                          f"`encoder`); built in: {', '.join(KNOWN_NETWORKS)}")
    run.files = fmri_files(cfg, run.subjects)
    return run


def fmri_files(cfg: DecodeConfig, subjects: Sequence[str]) -> Dict[Tuple[str, str], Path]:
    """``(subject, kind) -> path``: the script's own files (``fmri_files``) where it names
    a subject, else the published files in ``fmri_dir``.

    Raises
    ------
    ConfigError
        ``fmri_files`` lacks a kind of a subject, or a subject has no published fMRI.
    """
    own = dict(cfg.fmri_files or {})
    files: Dict[Tuple[str, str], Path] = {}
    for subject in subjects:
        if subject in own:
            for kind in FMRI_KINDS:
                if kind not in own[subject]:
                    raise ConfigError(f"fmri_files[{subject!r}] has no {kind!r} file")
                files[(subject, kind)] = cfg.path(own[subject][kind])
        else:
            files.update(published_fmri_files(cfg.path(cfg.fmri_dir), [subject]))
    return files
