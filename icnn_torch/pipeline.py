"""What a figure script does, given its constants: the loop of the original demo scripts.

A script's constants (:class:`~icnn_torch.config.ScriptConfig`) and its command-line
overrides give a :class:`~icnn_torch.config.RunPlan`; the engine registry
(:func:`~icnn_torch.engines.engine_info`) says what the engine needs. For every
(subject, ROI, image label[, layer set]) job, as the original loops: load the decoded
features (from ``decoded_features_dir``), rescale each layer to the true-feature std,
weight layers by ``1/||f||^2`` (normalised to sum 1), reconstruct, and save what the
engine returned as the original did (:mod:`icnn_torch.results`: ``recon_img-<label>.mat``
with its dtype, ``recon_img_normalized-<label>.jpg``, snapshots in
``snapshots/image-<label>/``), with ``options.pkl`` at ``<results>/<script>/``.

Beyond the original:

- missing files are checked, and downloaded after a prompt (or with ``--yes``), before
  anything heavy is loaded; the generator is loaded and its files checked exactly when
  the engine is a DGN engine;
- reconstructions whose outputs exist are skipped (``--force`` redoes them); every output
  goes through a temporary name;
- ``options.pkl`` and the run record ``run.json`` describe the results beside them: they
  are written only by a run that writes results, a run whose options differ from those of
  results it would not redo stops (:class:`~icnn_torch.errors.ConfigError`), and runs with
  equal options merge their selections (subjects, ROIs, labels, layer sets) into the record;
- decoded features are checked when loaded (shape against the network, NaN, all zero), the
  error naming the file;
- jobs are split across ``torchrun`` ranks or a SLURM array (:mod:`icnn_torch.jobs`); GD
  engines can optimise several images as one batch; CPU runs keep freed memory for reuse
  (:func:`icnn_torch.perf.retain_freed_memory`);
- expected failures end the script with one ``error: ...`` line and exit status 1
  (:func:`icnn_torch.errors.run_cli`; ``--debug`` shows the traceback).

``--help`` parses no data and imports no torch: it answers at once and lists only the
options the script's constants make meaningful.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NoReturn, Optional, Sequence

from . import results
from ._util import atomic_output
from .config import RunPlan, ScriptConfig, plain_values
from .engines import EngineInfo, engine_info
from .errors import (ConfigError, DamagedFileError, IcnnTorchError, OutputError,
                     run_cli)

__all__ = ["main", "run_script", "build_parser", "RunSettings"]

#: The symbolic option values the scripts use, resolved at run time (see ScriptConfig).
SYMBOLIC_OPTIONS = {"initial_image": ("mean",), "initial_gen_feat": ("zeros",),
                    "feat_upper_bound": ("fc7_3x",)}


# --------------------------------------------------------------------------- command line

def _comma(values: Iterable[str]) -> str:
    return ",".join(values)


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help at spaces only, so that a comma-separated default stays copyable."""

    def _split_lines(self, text, width):
        import textwrap
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False,
                             break_on_hyphens=False)


def build_parser(cfg: ScriptConfig) -> argparse.ArgumentParser:
    """The command-line overrides of a script, with its constants as the defaults shown.

    Only what the constants make meaningful is offered: ``--layers-sets`` for a script
    with ``layers_sets``, ``--batch-size`` for a batched (GD) engine. Lists are
    comma-separated everywhere.

    Raises
    ------
    ConfigError
        The script's engine is unknown.
    """
    info = engine_info(cfg.engine)
    p = argparse.ArgumentParser(
        prog=Path(cfg.script_file).name, formatter_class=_HelpFormatter,
        description=f"{cfg.figure_title or cfg.script_name}. Reconstruct {cfg.image_type} "
                    f"images from decoded {cfg.network} features with {cfg.engine}. Without "
                    "options it runs the settings of the script's constants (the paper's); "
                    "the options below override them for one run. Lists are comma-separated.",
        epilog=f"Results: {cfg.results_dir}/{cfg.script_name}/"
               f"{'<layer set>/' if cfg.layers_sets is not None else ''}<subject>/<roi>/. "
               "Finished reconstructions are skipped on a rerun.")
    p.add_argument("--subjects", metavar="LIST",
                   help=f"subjects (script: {_comma(cfg.subjects_list)})")
    p.add_argument("--rois", metavar="LIST", help=f"ROIs (script: {_comma(cfg.rois_list)})")
    p.add_argument("--labels", metavar="LIST",
                   help=f"image labels (script: {_comma(cfg.image_label_list)})")
    if cfg.layers_sets is not None:
        p.add_argument("--layers-sets", metavar="LIST",
                       help=f"layer sets, of {_comma(cfg.layers_sets)} (script: all)")
    unit = "L-BFGS iterations" if info.iteration_option == "maxiter" else "iterations"
    p.add_argument("--iterations", type=int, metavar="N",
                   help=f"{info.iteration_option}: {unit} per image "
                        f"(script: {cfg.opts.get(info.iteration_option, 'engine default')})")
    if info.batched:
        p.add_argument("--batch-size", type=int, metavar="N",
                       help=f"images optimised together (script: {cfg.batch_size}); "
                            "results equal one at a time")
    p.add_argument("--snapshot-every", type=int, metavar="N",
                   help=f"save a snapshot every N {info.snapshot_unit}s, 0 for none "
                        f"(script: {cfg.snapshot_every})")
    p.add_argument("--device", metavar="DEV",
                   help=f"cpu, cuda, cuda:1 ... (script: {cfg.device or 'CUDA when present, else CPU'})")
    p.add_argument("--results-dir", metavar="DIR",
                   help=f"results go to DIR/{cfg.script_name}/ (script: {cfg.results_dir})")
    p.add_argument("--force", action="store_true",
                   help="redo reconstructions whose outputs exist (results made with other "
                        "options are deleted when the run starts writing)")
    p.add_argument("--yes", action="store_true",
                   help="download missing data and weights without asking")
    p.add_argument("--quiet", action="store_true",
                   help="no per-iteration progress (bar or iter= lines)")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (also ICNN_TORCH_DEBUG=1)")
    return p


def _split(text: Optional[str]) -> Optional[list[str]]:
    """A comma-separated list (duplicates dropped, order kept); None when not given."""
    if text is None:
        return None
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


@dataclass(frozen=True)
class RunSettings:
    """How one run behaves (everything but what it computes, which is the plan)."""

    script_results: Path
    snapshot_every: int
    batch_size: int
    device: Optional[str]
    overwrite: bool
    assume_yes: Optional[bool]
    quiet: bool


def _settings(cfg: ScriptConfig, args: argparse.Namespace, info: EngineInfo) -> RunSettings:
    snapshot_every = cfg.snapshot_every if args.snapshot_every is None else args.snapshot_every
    if not isinstance(snapshot_every, int) or snapshot_every < 0:
        raise ConfigError(f"snapshot_every must be an integer >= 0 (0: no snapshots), "
                          f"not {snapshot_every!r}")
    batch_size = getattr(args, "batch_size", None)
    batch_size = cfg.batch_size if batch_size is None else batch_size
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, not {batch_size!r}")
    if batch_size > 1 and not info.batched:
        raise ConfigError(f"batch_size = {batch_size}, but {info.name} reconstructs one image "
                          "at a time; batches are for icnn_gd and icnn_dgn_gd (set batch_size = 1)")
    if cfg.download not in ("ask", "yes", "no"):
        raise ConfigError(f"download must be 'ask', 'yes' or 'no', not {cfg.download!r}")
    assume_yes = True if (args.yes or cfg.download == "yes") else \
        (False if cfg.download == "no" else None)
    return RunSettings(
        script_results=cfg.path(args.results_dir or cfg.results_dir) / cfg.script_name,
        snapshot_every=snapshot_every, batch_size=batch_size,
        device=args.device or cfg.device, overwrite=bool(cfg.overwrite or args.force),
        assume_yes=assume_yes, quiet=args.quiet)


# --------------------------------------------------------------------------- what is there

_MISSING = object()


class _PlainUnpickler(pickle.Unpickler):
    """Reads only plain values (dicts, lists, numbers, strings): ours, never code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"not a plain-value pickle (it refers to {module}.{name})")


def _json_plain(value: Any) -> Any:
    """The value as the run record stores it (tuples become lists, arrays lists)."""
    return json.loads(json.dumps(plain_values(value)))


def _method_of(record: Mapping[str, Any], display_option: str) -> dict:
    """What decides a result, from a run record: image type, network, engine, layers or
    layer sets, and the engine options without the display option."""
    options = {k: v for k, v in (record.get("options") or {}).items() if k != display_option}
    method = {k: record[k] for k in ("image_type", "network", "engine") if k in record}
    if record.get("layer_sets") is not None:
        method["layer_sets"] = record["layer_sets"]
    elif "layers" in record:
        method["layers"] = record["layers"]
    method["options"] = options
    return method


def _previous_method(script_results: Path, display_option: str) -> tuple[Optional[dict], Optional[dict], str]:
    """(run record, method, where it was read) of the results already in the folder.

    The run record when it exists and is ours; else ``options.pkl`` when it holds plain
    values (an earlier version of this port); else (None, None, why).
    """
    try:
        record = results.read_run_record(script_results)
    except DamagedFileError as err:
        print(f"note: ignoring {err.path} ({err.reason})", flush=True)
        record = None
    if record is not None:
        return record, _method_of(record, display_option), results.RUN_RECORD_NAME
    options_path = script_results / results.OPTIONS_NAME
    if not options_path.is_file():
        return None, None, "no record"
    try:
        with open(options_path, "rb") as f:
            options = _PlainUnpickler(f).load()
    except Exception as err:  # foreign (the original's holds numpy arrays) or damaged
        return None, None, f"{options_path} not readable as plain options ({err})"
    if not isinstance(options, dict):
        return None, None, f"{options_path} holds no options dict"
    return None, _method_of({"options": _json_plain(options)}, display_option), results.OPTIONS_NAME


def _short(value: Any, limit: int = 40) -> str:
    text = "(unset)" if value is _MISSING else json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"name: <old> there, <new> here"`` for every setting of ``old`` that ``new`` changes."""
    diffs = []
    for key in ("image_type", "network", "engine", "layers"):
        if key in old and key in new and old[key] != new[key]:
            diffs.append(f"{key}: {_short(old[key])} there, {_short(new[key])} here")
    if ("layer_sets" in old) != ("layer_sets" in new):
        def names(method):
            return _short(list(method["layer_sets"])) if "layer_sets" in method else "none"
        diffs.append(f"layer sets: {names(old)} there, {names(new)} here")
    for name in set(old.get("layer_sets") or {}) & set(new.get("layer_sets") or {}):
        if old["layer_sets"][name] != new["layer_sets"][name]:
            diffs.append(f"layer set {name}: {_short(old['layer_sets'][name])} there, "
                         f"{_short(new['layer_sets'][name])} here")
    old_opts, new_opts = old.get("options", {}), new.get("options", {})
    for key in list(old_opts) + [k for k in new_opts if k not in old_opts]:
        before, after = old_opts.get(key, _MISSING), new_opts.get(key, _MISSING)
        if before != after:
            diffs.append(f"{key}: {_short(before)} there, {_short(after)} here")
    return diffs


def _existing_results(script_results: Path) -> set[Path]:
    """The ``recon_img-*.mat`` files under a script's results folder (not in snapshots)."""
    if not script_results.is_dir():
        return set()
    return {p for p in script_results.rglob("recon_img-*.mat")
            if "snapshots" not in p.relative_to(script_results).parts}


def _in_order(order: Sequence[str], *lists: Iterable[str]) -> list[str]:
    """The union of ``lists``, in ``order`` first, then in order of appearance."""
    union = list(dict.fromkeys(x for values in lists for x in values))
    rank = {x: i for i, x in enumerate(order)}
    return sorted(union, key=lambda x: (rank.get(x, len(rank)), union.index(x)))


def _merged_record(cfg: ScriptConfig, new: dict, old: Optional[Mapping[str, Any]]) -> dict:
    """``new`` with the selection of ``old`` (a record of the same settings, or None)
    added: subjects, ROIs, labels and layer sets in the script's order."""
    old = old or {}
    merged = dict(new)
    merged["subjects"] = _in_order(cfg.subjects_list, old.get("subjects", []), new["subjects"])
    merged["rois"] = _in_order(cfg.rois_list, old.get("rois", []), new["rois"])
    merged["labels"] = _in_order(cfg.image_label_list, old.get("labels", []), new["labels"])
    if new.get("layer_sets") is not None:
        sets = {**(old.get("layer_sets") or {}), **new["layer_sets"]}
        names = _in_order(list(cfg.layers_sets or ()), sets)
        merged["layer_sets"] = {name: sets[name] for name in names}
        merged["layers"] = list(dict.fromkeys(l for name in names for l in sets[name]))
    return merged


@dataclass
class _Folder:
    """The state of a script's results folder this run must respect."""

    record: Optional[dict]   # the run record to merge into (equal method), else None
    stale: set[Path]         # results made with other settings, all redone by this run


def _check_folder(cfg: ScriptConfig, plan: RunPlan, settings: RunSettings, info: EngineInfo,
                  redo: Sequence[Path]) -> _Folder:
    """Compare the folder's results with this run; stop when they cannot share a record.

    Parameters
    ----------
    redo : paths
        The ``.mat`` files this run (all ranks) writes.

    Raises
    ------
    ConfigError
        The folder holds results made with other settings that this run would not redo.
    """
    root = settings.script_results
    old_record, old_method, source = _previous_method(root, info.display_option)
    existing = _existing_results(root)
    if old_method is None:
        if existing:
            print(f"note: {len(existing)} reconstruction(s) in {root} have no record of their "
                  f"options ({source}); they are kept and count as done", flush=True)
        return _Folder(record=None, stale=set())
    new_method = _method_of(_json_plain(plan.to_record()), info.display_option)
    diffs = _differences(old_method, new_method)
    if not diffs:
        return _Folder(record=old_record, stale=set())
    kept = sorted(existing - set(redo))
    if kept:
        shown = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
        if settings.overwrite:
            way_out = ("they are outside this run's selection: include them to redo them, "
                       "delete them, or choose another --results-dir")
        else:
            way_out = "add --force to redo them, or choose another --results-dir"
        raise ConfigError(f"{root} holds {len(kept)} reconstruction(s) made with other "
                          f"settings ({shown}; from its {source}) that this run would not "
                          f"redo; {way_out}")
    return _Folder(record=None, stale=existing)


def _probe_writable(folder: Path) -> None:
    """Raise :class:`OutputError` unless files can be created in ``folder`` (or, when it does
    not exist yet, in its nearest existing parent, where it would be created). Creates
    nothing that stays."""
    import tempfile
    base = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    try:
        if not base.is_dir():
            raise NotADirectoryError(20, f"{base} is not a folder")
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise OutputError(f"cannot write into {folder}: {err.strerror or err}; choose a "
                          "writable --results-dir (or results_dir in the script)") from err


def _delete_results(paths: Iterable[Path]) -> None:
    """Remove results (``.mat``, ``.jpg`` and snapshots) made with other settings."""
    for mat in sorted(paths):
        label = mat.stem[len("recon_img-"):]
        for path in (mat, results.recon_jpg_path(mat.parent, label)):
            path.unlink(missing_ok=True)
        shutil.rmtree(results.snapshot_dir(mat.parent, label), ignore_errors=True)


def _write_options(script_results: Path, options: Mapping[str, Any]) -> None:
    """``options.pkl``: the engine options dict, pickled, as the original wrote it (ours with
    symbolic values instead of arrays, plain Python values only)."""
    path = script_results / results.OPTIONS_NAME
    try:
        with atomic_output(path) as tmp:
            tmp.write_bytes(pickle.dumps(plain_values(dict(options)), protocol=4))
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}; choose a writable "
                          "--results-dir") from err


# --------------------------------------------------------------------------- inputs

def _as_given(path: Path) -> Path:
    """``path`` relative to the current folder when it lies inside it (for messages)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _replace_command(path: Path, item: str, **dirs: Path) -> str:
    """The command that replaces a damaged file: delete it, download ``item`` again."""
    import shlex

    from . import data
    return f"rm {shlex.quote(str(_as_given(path)))} && {data.download_command([item], **dirs)}"


def _check_options(plan: RunPlan, module) -> None:
    """Every option is a keyword of the engine, and symbolic values are known ones."""
    import inspect
    accepted = set(inspect.signature(module.reconstruct_image).parameters)
    managed = {"layer_weight", "save_intermediate", "save_intermediate_every",
               "save_intermediate_path"}
    unknown = sorted(set(plan.options) - accepted)
    if unknown:
        offered = sorted(accepted - managed - {"features", "net", "net_gen"})
        raise ConfigError(f"opts has {', '.join(map(repr, unknown))}, which {plan.engine} does "
                          f"not take; it takes {', '.join(offered)}")
    taken = sorted(set(plan.options) & managed)
    if taken:
        raise ConfigError(f"opts sets {', '.join(taken)}, which the script sets itself "
                          "(layer weights from the features; snapshots from snapshot_every)")
    for key, value in plan.options.items():
        if isinstance(value, str) and key in SYMBOLIC_OPTIONS and value not in SYMBOLIC_OPTIONS[key]:
            raise ConfigError(f"opts[{key!r}] = {value!r}: the known symbolic values are "
                              f"{', '.join(map(repr, SYMBOLIC_OPTIONS[key]))} (or give an array)")


def _resolve_options(options: Mapping[str, Any], net, data_dir: Path) -> dict:
    """Replace the symbolic option values by what they stand for."""
    import numpy as np

    from . import data
    out = dict(options)

    def symbolic(key: str) -> bool:
        return isinstance(out.get(key), str)  # arrays given in opts are used as they are

    if symbolic("initial_image"):  # "mean": the flat RGB image of the mean colour
        h, w = net.input_size
        out["initial_image"] = np.broadcast_to(
            np.asarray(net.img_mean, np.float32)[::-1], (h, w, 3)).copy()
    if symbolic("initial_gen_feat"):  # "zeros"
        from .nets.tables import GENERATOR_INPUT_SIZE
        out["initial_gen_feat"] = np.zeros(GENERATOR_INPUT_SIZE, dtype=np.float32)
    if symbolic("feat_upper_bound"):  # "fc7_3x": data/act_range/3x/fc7.txt
        out["feat_upper_bound"] = data.load_fc7_upper_bound(data.fc7_bounds_path(data_dir))
    return out


class _FeatureReader:
    """Reads, checks and preprocesses the decoded features of one job."""

    def __init__(self, plan: RunPlan, features_dir: Path, published: bool, script_arg: str,
                 shapes: Mapping[str, tuple], feat_std0: Mapping[str, float]):
        self.plan, self.features_dir, self.published = plan, features_dir, published
        self.script_arg, self.shapes, self.feat_std0 = script_arg, shapes, feat_std0

    def _damaged(self, path: Path, layer: str, subject: str, reason: str) -> DamagedFileError:
        import shlex

        from . import data
        if self.published:
            zip_name = data.decoded_feature_zip_name(self.plan.image_type, self.plan.network,
                                                     layer, subject)
            return DamagedFileError(
                path, f"{reason}; once it is deleted the script downloads {zip_name} again",
                f"rm {shlex.quote(str(_as_given(path)))} && python {shlex.quote(self.script_arg)}")
        return DamagedFileError(path, f"{reason} (in the decoded-feature tree "
                                      f"{self.features_dir}: write this file again)")

    def load(self, subject: str, roi: str, label: str, layers: Sequence[str]):
        """(std-corrected features, layer weights) of one image; layers in ``layers`` order.

        Features as the original scripts prepare them: conv (C, H, W), fc flattened to
        (N,), each layer rescaled to ``feat / estimate_std(feat) * std0[layer]``; weights
        ``1/||f||^2`` normalised to sum 1.

        Raises
        ------
        DamagedFileError
            A file that cannot be read, whose shape differs from the network's layer
            (the message names the file, the layer and both shapes), or that holds NaN,
            infinite, all-zero or constant features.
        """
        import numpy as np

        from . import data
        corrected = {}
        for layer in layers:
            path = data.decode_feature_filename(self.features_dir, self.plan.image_type,
                                                self.plan.network, layer, subject, roi, label)
            try:
                feat = data.load_feat(path)
            except IcnnTorchError:
                raise
            except Exception as err:  # scipy/h5py raise many kinds for a broken file
                raise self._damaged(path, layer, subject, "not readable as a MATLAB file with a "
                                                 f"numeric variable 'feat' ({err})") from err
            expected = tuple(self.shapes[layer])
            if feat.shape != expected:
                raise self._damaged(path, layer, subject, f"layer {layer} has features of shape "
                                                 f"{feat.shape}, but {self.plan.network}'s "
                                                 f"{layer} gives {expected}")
            if not np.all(np.isfinite(feat)):
                raise self._damaged(path, layer, subject, f"layer {layer} has NaN or infinite features")
            if not np.any(feat):
                raise self._damaged(path, layer, subject, f"layer {layer} has all-zero features")
            try:
                corrected.update(data.correct_feature_std({layer: feat}, self.feat_std0))
            except ValueError as err:
                raise self._damaged(path, layer, subject, str(err)) from err
        return corrected, data.layer_weights_inverse_sq_norm(corrected)


def _load_std(data, data_dir: Path, plan: RunPlan) -> dict:
    path = data.feat_std_path(data_dir, plan.network)
    feat_std0 = data.load_feat_std(path)  # MissingDataError / DamagedFileError name the fix
    absent = [l for l in plan.all_layers if l not in feat_std0]
    if absent:
        raise DamagedFileError(path, f"no std of layer(s) {', '.join(absent)}",
                               _replace_command(path, path.name, data_dir=data_dir))
    return feat_std0


def _batches(jobs: Sequence, size: int) -> list[list]:
    """Consecutive groups of at most ``size`` jobs sharing a layer set (order kept within
    each layer set; with ``size`` 1 the job order is unchanged)."""
    if size == 1:
        return [[job] for job in jobs]
    by_set: dict = {}
    for job in jobs:
        by_set.setdefault(job.layer_set, []).append(job)
    return [group[i:i + size] for group in by_set.values() for i in range(0, len(group), size)]


@dataclass
class _Inputs:
    """What the reconstructions of a run share, loaded once."""

    module: Any                  # the engine's module
    device: Any                  # torch.device
    net: Any                     # the encoder (VGG19)
    net_gen: Any                 # the generator, or None for a pixel engine
    reader: "_FeatureReader"
    options: dict                # the engine options, symbolic values resolved


def _load_inputs(cfg: ScriptConfig, plan: RunPlan, info: EngineInfo, settings: RunSettings,
                 script_arg: str, local_rank: int) -> _Inputs:
    """Check the options against the engine, make sure every file is there (downloading
    what is missing), then load the nets, the std file and the option values."""
    from . import data, download
    module = info.load()  # imports torch
    _check_options(plan, module)
    published = cfg.path(cfg.decoded_features_dir) == \
        cfg.path(cfg.data_dir) / data.DECODED_FEATURES_DIRNAME
    data_dir, net_dir = _as_given(cfg.path(cfg.data_dir)), _as_given(cfg.path(cfg.net_dir))
    features_dir = _as_given(cfg.path(cfg.decoded_features_dir))
    download.ensure_plan_files(plan, data_dir=data_dir, net_dir=net_dir,
                               features_dir=features_dir, script_arg=script_arg,
                               assume_yes=settings.assume_yes, progress=not settings.quiet)

    from . import perf
    from .nets.weights import load_generator, load_vgg19
    from .recon.objective import probe_feature_shapes
    from .nets.device import choose_device
    device = choose_device(settings.device, local_rank)
    print(f"device: {device}", flush=True)
    if device.type == "cpu":
        perf.retain_freed_memory()  # no page faults per iteration (see icnn_torch.perf)
    mean_path = data.image_mean_path(data_dir)
    img_mean, mean_source = data.load_image_mean(mean_path)  # DamagedFileError names the fix
    print(mean_source, flush=True)
    net = load_vgg19(data.vgg19_weights_path(net_dir),  # a damaged file: DamagedFileError
                     variant="leaky" if plan.network == "VGG19_leaky" else "relu",
                     device=device, img_mean=img_mean)
    unknown = [l for l in plan.all_layers if l not in net.layer_names]
    if unknown:
        raise ConfigError(f"{plan.network} has no layer(s) {', '.join(unknown)}; its layers "
                          f"are {', '.join(net.layer_names)}")
    net_gen = load_generator(data.generator_weights_path(net_dir), device=device) \
        if info.uses_generator else None
    reader = _FeatureReader(plan, features_dir, published, script_arg,
                            probe_feature_shapes(net, plan.all_layers, device),
                            _load_std(data, data_dir, plan))
    options = _resolve_options(plan.options, net, data_dir)
    if settings.quiet:
        options[info.display_option] = 0
    return _Inputs(module, device, net, net_gen, reader, options)


def _print_header(job) -> None:
    """The original's lines before each reconstruction (and the layer set of script 3)."""
    print(f"\nSubject:     {job.subject}\nROI:         {job.roi}\nImage label: {job.label}\n"
          + (f"Layer set:   {job.layer_set}\n" if job.layer_set else ""), flush=True)


# --------------------------------------------------------------------------- the run

def run_script(cfg: ScriptConfig, argv: Optional[Sequence[str]] = None,
               script_arg: Optional[str] = None) -> list[Path]:
    """Run a figure script's reconstructions.

    Parameters
    ----------
    cfg : ScriptConfig
        The script's constants.
    argv : sequence of str, optional
        Command-line overrides (default ``sys.argv[1:]``; see :func:`build_parser`).
    script_arg : str, optional
        The script as the user named it, for the commands in messages (default its path).

    Returns
    -------
    list of Path
        The folders this process wrote reconstructions into (one per reconstruction).

    Raises
    ------
    IcnnTorchError
        Every expected failure (missing or damaged files, a wrong constant or option, a
        results folder that cannot be written or holds results of other settings).
    """
    from .jobs import make_jobs, rank_info, split_jobs

    args = build_parser(cfg).parse_args(list(sys.argv[1:] if argv is None else argv))
    info = engine_info(cfg.engine)
    plan = cfg.plan(subjects=_split(args.subjects), rois=_split(args.rois),
                    labels=_split(args.labels),
                    layer_sets=_split(getattr(args, "layers_sets", None)),
                    iterations=args.iterations)
    settings = _settings(cfg, args, info)
    script_arg = script_arg or cfg.script_file
    root = settings.script_results

    rank, world_size, local_rank = rank_info()
    jobs = make_jobs(plan.subjects, plan.rois, plan.labels,
                     list(plan.layer_sets) if plan.layer_sets is not None else None)
    mat_of = {job: results.recon_mat_path(job.result_dir(root), job.label) for job in jobs}
    done = {job for job in jobs if results.is_done(job.result_dir(root), job.label)}
    redo_all = [job for job in jobs if settings.overwrite or job not in done]
    folder = _check_folder(cfg, plan, settings, info, [mat_of[j] for j in redo_all])
    mine = split_jobs(jobs, rank, world_size)
    todo = [job for job in mine if settings.overwrite or job not in done]
    print(f"{plan.script_name}: {len(jobs)} reconstructions, {len(mine)} for rank {rank}/"
          f"{world_size}, {len(mine) - len(todo)} already done", flush=True)
    if not todo:
        print("Done", flush=True)
        return []
    _probe_writable(root)
    inputs = _load_inputs(cfg, plan, info, settings, script_arg, local_rank)

    record = _merged_record(cfg, dict(plan.to_record(),
                                      snapshot_every=settings.snapshot_every,
                                      snapshot_unit=info.snapshot_unit,
                                      first_snapshot=info.first_snapshot,
                                      batch_size=settings.batch_size,
                                      device=str(inputs.device),
                                      decoded_features_dir=str(inputs.reader.features_dir)),
                            folder.record)
    committed = False
    written = []
    for group in _batches(todo, settings.batch_size):
        feats, weights = [], []
        for job in group:
            _print_header(job)
            f, w = inputs.reader.load(job.subject, job.roi, job.label, plan.layers_of(job.layer_set))
            feats.append(f)
            weights.append(w)
        dirs = [job.result_dir(root) for job in group]
        snaps = [results.snapshot_dir(d, job.label) for d, job in zip(dirs, group)]
        for snap in snaps:  # snapshots of an earlier attempt do not describe this one
            shutil.rmtree(snap, ignore_errors=True)
        single = len(group) == 1
        kwargs = dict(inputs.options, layer_weight=weights[0] if single else weights,
                      save_intermediate=settings.snapshot_every > 0,
                      save_intermediate_every=max(1, settings.snapshot_every),
                      save_intermediate_path=str(snaps[0]) if single else [str(s) for s in snaps])
        t0 = time.perf_counter()
        target = feats[0] if single else feats
        try:
            nets = (inputs.net,) if inputs.net_gen is None else (inputs.net, inputs.net_gen)
            img, _loss = inputs.module.reconstruct_image(target, *nets, **kwargs)
        except IcnnTorchError:
            raise
        except OSError as err:  # the engine writes only snapshots
            raise OutputError(f"cannot write the snapshots into {snaps[0].parent}: "
                              f"{err.strerror or err}; choose a writable --results-dir, or "
                              "--snapshot-every 0") from err
        if not committed:  # the first results of this run: the folder now describes them
            _delete_results(folder.stale & {mat_of[job] for job in todo})
            _write_options(root, plan.options)
            results.write_run_record(root, record)
            committed = True
        for job, out_dir, image in zip(group, dirs, [img] if single else list(img)):
            results.save_reconstruction(out_dir, job.label, image)
            written.append(out_dir)
        print(f"saved {len(group)} reconstruction(s) in {time.perf_counter() - t0:.1f} s",
              flush=True)
    print("Done", flush=True)
    return written


def main(constants: Mapping[str, Any], argv: Optional[Sequence[str]] = None) -> NoReturn:
    """The scripts' entry point: run the script whose constants are ``constants``
    (its ``globals()``) and exit.

    Expected failures print one ``error: ...`` line and exit with status 1 (``--debug`` or
    ``ICNN_TORCH_DEBUG=1`` shows the traceback); Ctrl-C exits with 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    script_arg = sys.argv[0] if sys.argv and sys.argv[0] else None

    def run() -> None:
        run_script(ScriptConfig.from_constants(constants), argv, script_arg=script_arg)

    sys.exit(run_cli(run, argv))
