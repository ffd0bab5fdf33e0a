"""The steps of the figure scripts, as public functions: what a script does for a run and for
each image, so that a notebook gets the scripts' results.

For a run (:func:`load_inputs`): the nets on a device, the feature shapes of the network,
the true-feature std of each layer, and the engine options with the scripts' symbolic
values resolved. For each image (:func:`prepare_features`): the decoded features read and
checked, rescaled to the true-feature std, and the layer weights ``1/||f||^2``
normalised to sum 1; then the engine's ``reconstruct_image`` and
:func:`icnn_torch.store.results.save_reconstruction`. The figure scripts run exactly these
functions (:mod:`icnn_torch.run.reconstruct`).
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import scipy
import torch

from .. import __version__, perf
from .._util import PathLike, file_md5
from ..errors import ConfigError, DamagedFileError
from ..nets.device import choose_device
from ..nets.weights import load_generator, load_vgg19
from ..recon.engines import ENGINES
from ..recon.objective import probe_feature_shapes
from ..store.features import (correct_feature_std, layer_weights, load_feat_std,
                              read_decoded_features)
from ..store.layout import (feat_std_path, fc7_bounds_path, generator_weights_path,
                            image_mean_path, vgg19_weights_path)
from ..store.net_data import load_image_mean
from .options import describe_options, resolve_options

__all__ = ["Inputs", "load_inputs", "prepare_features", "device_name", "versions",
           "weight_files"]


@dataclasses.dataclass
class Inputs:
    """What the reconstructions of a run share, loaded once.

    Attributes
    ----------
    module : module
        The engine's module (``reconstruct_image``).
    device : torch.device
    net : VGG19
    net_gen : DeePSiMGenerator or None
        The generator, for a DGN engine.
    shapes : dict of str to tuple
        The network's feature shape of each layer the run reads (no batch axis).
    feat_std0 : dict of str to float
        The true-feature std of each layer (the published std file).
    options : dict
        The engine options, symbolic values resolved.
    mean_source : str
        Which image mean the net uses (the file, or the built-in constants).
    files : list of dict
        The weight and data files the run used: path, size, and md5 for the small ones.
    """

    module: Any
    device: torch.device
    net: Any
    net_gen: Any
    shapes: dict
    feat_std0: dict
    options: dict
    mean_source: str
    files: list


def load_inputs(engine: str, network: str, layers: Sequence[str], options: Mapping[str, Any],
                data_dir: PathLike = "data", net_dir: PathLike = "net",
                device: Optional[str] = None, local_rank: int = 0) -> Inputs:
    """Load what a run shares: the engine, the nets, the std file and the options.

    Parameters
    ----------
    engine : str
        One of :data:`icnn_torch.recon.engines.ENGINES`.
    network : {"VGG19", "VGG19_leaky"}
    layers : sequence of str
        Every layer the run reads.
    options : mapping
        The script's ``opts`` (symbolic values allowed).
    data_dir, net_dir : path
    device : str, optional
        Default: CUDA when present (``local_rank``'s GPU), else CPU. On the CPU, freed
        memory is kept for reuse (:func:`icnn_torch.perf.retain_freed_memory`).

    Raises
    ------
    MissingDataError, DamagedFileError
        A weight or data file is absent or damaged.
    ConfigError
        A layer the network does not have, or a device that is not there.
    """
    info = ENGINES[engine]
    module = info.load()
    data_dir, net_dir = Path(data_dir), Path(net_dir)
    dev = choose_device(device, local_rank)
    if dev.type == "cpu":
        perf.retain_freed_memory()  # no page faults per iteration (see icnn_torch.perf)
    img_mean, mean_source = load_image_mean(image_mean_path(data_dir))
    vgg_path = vgg19_weights_path(net_dir)
    net = load_vgg19(vgg_path, variant="leaky" if network == "VGG19_leaky" else "relu",
                     device=dev, img_mean=img_mean)
    unknown = [layer for layer in layers if layer not in net.layer_names]
    if unknown:
        raise ConfigError(f"{network} has no layer(s) {', '.join(unknown)}; its layers "
                          f"are {', '.join(net.layer_names)}")
    paths = [vgg_path]
    net_gen = None
    if info.uses_generator:
        paths.append(generator_weights_path(net_dir))
        net_gen = load_generator(paths[-1], device=dev)
    std_path = feat_std_path(data_dir, network)
    feat_std0 = load_feat_std(std_path)
    absent = [layer for layer in layers if layer not in feat_std0]
    if absent:
        raise DamagedFileError(std_path, f"no std of layer(s) {', '.join(absent)}",
                               std_path.name)
    resolved = resolve_options(options, net, data_dir)
    small = [std_path, image_mean_path(data_dir)] + \
        [fc7_bounds_path(data_dir)] * ("fc7_3x" in (options.get("feat_upper_bound"),
                                                    options.get("gen_feat_bounds")))
    return Inputs(module, dev, net, net_gen, probe_feature_shapes(net, layers, dev), feat_std0,
                  resolved, mean_source, weight_files(paths, small))


def prepare_features(decoded_features_dir: PathLike, image_type: str, network: str,
                     layers: Sequence[str], subject: str, roi: str, label: str,
                     feat_std0: Mapping[str, float],
                     shapes: Optional[Mapping[str, Sequence[int]]] = None
                     ) -> tuple[dict, dict]:
    """One image's decoded features as the scripts give them to the engine.

    :func:`~icnn_torch.store.features.read_decoded_features` (each file checked),
    :func:`~icnn_torch.store.features.correct_feature_std` with ``feat_std0``, and
    :func:`~icnn_torch.store.features.layer_weights`.

    Returns
    -------
    features : dict of str to np.ndarray
        Layer -> std-corrected features ((C, H, W) conv, (N,) fc), in ``layers`` order.
    layer_weight : dict of str to float
        ``1/||f||^2`` of the corrected features, normalised to sum 1.
    """
    raw = read_decoded_features(decoded_features_dir, image_type, network, layers, subject,
                                roi, label, shapes)
    features = correct_feature_std(raw, feat_std0)
    return features, layer_weights(features)


def device_name(device: torch.device) -> str:
    """The device in words: ``cuda:0 (NVIDIA H200)`` or ``cpu (AMD EPYC 7763 64-Core
    Processor)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{device} ({model or platform.processor() or platform.machine()})"


def versions() -> dict:
    """The versions of what computed: icnn_torch, torch, numpy, scipy, Python."""
    return {"icnn_torch": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "python": platform.python_version()}


def weight_files(weights: Sequence[Path], small: Sequence[Path] = ()) -> list[dict]:
    """``{path, size}`` of each weight file, and ``{path, size, md5}`` of each small data
    file that exists (the md5 of a 500 MB weight file would cost seconds)."""
    out = [{"path": str(Path(p).resolve()), "size": Path(p).stat().st_size} for p in weights]
    out += [{"path": str(Path(p).resolve()), "size": Path(p).stat().st_size,
             "md5": file_md5(p)} for p in small if Path(p).is_file()]
    return out


def engine_options(inputs: Inputs, options: Mapping[str, Any], data_dir: PathLike) -> dict:
    """Every option the engine runs with, for the run record
    (:func:`icnn_torch.run.options.describe_options`)."""
    return describe_options(inputs.module, options, Path(data_dir))
