"""What a figure script does, given its constants: the loop of the original demo scripts.

A script's constants (:class:`~icnn_torch.run.config.ScriptConfig`) and its command-line
overrides give a :class:`~icnn_torch.run.config.RunPlan`. For every (subject, ROI, image
label[, layer set]) job, as the original loops, the public steps of
:mod:`icnn_torch.run.steps`: the decoded features read and checked, rescaled to the
true-feature std, the layers weighted by ``1/||f||^2`` (normalised to sum 1), the engine's
``reconstruct_image``, and the result saved as the original did
(:func:`icnn_torch.store.results.save_reconstruction`: ``recon_img-<label>.mat`` with the
engine's dtype, ``recon_img_normalized-<label>.jpg``, snapshots in
``snapshots/image-<label>/``), with ``options.pkl`` and the run record ``run.json`` at
``<results>/<script>/`` (:mod:`icnn_torch.store.record`).

Beyond the original:

- the constants are checked for typos and the options against the engine, every problem
  in one message, before anything is read or downloaded;
- missing files are checked, and downloaded after a prompt (or with ``--yes``), before
  anything heavy is loaded; the generator is loaded exactly when the engine needs it;
- reconstructions whose outputs exist are skipped (``--force`` redoes them); every output
  goes through a temporary name;
- ``options.pkl`` and ``run.json`` describe the results beside them: a run whose options
  differ from those of results it would not redo stops (one message says all the ways
  out), and runs with equal options merge their selections into the record under a lock;
- jobs are split across ``torchrun`` ranks or a SLURM array (:mod:`icnn_torch.run.jobs`);
  GD engines can optimise several images as one batch;
- expected failures end the script with one ``error: ...`` line and exit status 1
  (:func:`icnn_torch.run.cli.run_cli`; ``--debug`` shows the traceback).

``--help`` imports no torch and reads no data: the heavy modules are imported once the
arguments are parsed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, NoReturn, Optional, Sequence

from ..errors import ConfigError, IcnnTorchError, OutputError
from ..recon.engines import EngineInfo, engine_info
from ..store import record as records
from ..store.layout import is_done, is_published_tree, recon_mat_path, snapshot_dir
from .advice import Context, as_given
from .cli import HelpFormatter, run_cli, split_list
from .config import RunPlan, ScriptConfig, script_context
from .jobs import Job, make_jobs, rank_info, split_jobs
from .script import assume_yes_of

__all__ = ["main", "run_script", "build_parser", "RunSettings", "BATCH_NOTE"]

#: What ``--batch-size`` gives, as measured (see the README, "Batches").
BATCH_NOTE = ("the same arithmetic as one image at a time, rounded otherwise in float32, so "
              "batched and single runs drift apart over the iterations (the README gives "
              "the measured divergence)")


# --------------------------------------------------------------------------- command line

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
        prog=Path(cfg.script_file).name, formatter_class=HelpFormatter,
        description=f"{cfg.figure_title or cfg.script_name}. Reconstruct {cfg.image_type} "
                    f"images from decoded {cfg.network} features with {cfg.engine}. Without "
                    "options it runs the settings of the script's constants (the paper's); "
                    "the options below override them for one run. Lists are comma-separated.",
        epilog=f"Results: {cfg.results_dir}/{cfg.script_name}/"
               f"{'<layer set>/' if cfg.layers_sets is not None else ''}<subject>/<roi>/. "
               "Finished reconstructions are skipped on a rerun.")
    p.add_argument("--subjects", metavar="LIST",
                   help=f"subjects (script: {','.join(cfg.subjects_list)})")
    p.add_argument("--rois", metavar="LIST", help=f"ROIs (script: {','.join(cfg.rois_list)})")
    p.add_argument("--labels", metavar="LIST",
                   help=f"image labels (script: {','.join(cfg.image_label_list)})")
    if cfg.layers_sets is not None:
        p.add_argument("--layers-sets", metavar="LIST",
                       help=f"layer sets, of {','.join(cfg.layers_sets)} (script: all)")
    unit = "L-BFGS iterations" if info.iteration_option == "maxiter" else "iterations"
    p.add_argument("--iterations", type=int, metavar="N",
                   help=f"{info.iteration_option}: {unit} per image "
                        f"(script: {cfg.opts.get(info.iteration_option, 'engine default')})")
    if info.batched:
        p.add_argument("--batch-size", type=int, metavar="N",
                       help=f"images optimised together (script: {cfg.batch_size}); "
                            f"{BATCH_NOTE}")
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


def settings_of(cfg: ScriptConfig, args: argparse.Namespace, info: EngineInfo) -> RunSettings:
    """The run's behaviour from the constants and the command line.

    Raises
    ------
    ConfigError
        A snapshot period, batch size or download policy that cannot be used.
    """
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
    return RunSettings(
        script_results=cfg.path(args.results_dir or cfg.results_dir) / cfg.script_name,
        snapshot_every=snapshot_every, batch_size=batch_size,
        device=args.device or cfg.device, overwrite=bool(cfg.overwrite or args.force),
        assume_yes=assume_yes_of(cfg.download, args.yes), quiet=args.quiet)


# --------------------------------------------------------------------------- the folder

@dataclass
class _Folder:
    """The state of a script's results folder this run must respect."""

    stale: set[Path]   # results made with other settings, all redone by this run


def check_folder(plan: RunPlan, settings: RunSettings, info: EngineInfo,
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
        One message says everything: what differs, how many results ``--force`` would
        redo and how many lie outside this run's selection (which ``--force`` would not
        touch).
    """
    root = settings.script_results
    old_method, source = _previous_method(root, info.display_option)
    existing = records.existing_results(root)
    if old_method is None:
        if existing:
            print(f"note: {len(existing)} reconstruction(s) in {root} have no record of their "
                  f"options ({source}); they are kept and count as done", flush=True)
        return _Folder(stale=set())
    new_method = records.method_of(records.json_plain(plan.to_record()), info.display_option)
    diffs = records.differences(old_method, new_method)
    if not diffs:
        return _Folder(stale=set())
    selected = {recon_mat_path(job.result_dir(root), job.label) for job in _jobs_of(plan)}
    outside = sorted(existing - selected)
    inside_kept = sorted((existing & selected) - set(redo))
    if outside or inside_kept:
        shown = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
        ways = []
        if inside_kept:
            ways.append(f"{len(inside_kept)} of them are in this run's selection: --force redoes "
                        "them")
        if outside:
            ways.append(f"{len(outside)} lie outside this run's selection (e.g. "
                        f"{outside[0].relative_to(root)}), which --force does not touch: "
                        "include them in the selection, delete them")
        ways.append("or choose another --results-dir")
        raise ConfigError(f"{root} holds {len(outside) + len(inside_kept)} reconstruction(s) "
                          f"made with other settings ({shown}; from its {source}) that this "
                          f"run would not redo; {', '.join(ways)}")
    return _Folder(stale=existing)


def _jobs_of(plan: RunPlan) -> list[Job]:
    return make_jobs(plan.subjects, plan.rois, plan.labels,
                     list(plan.layer_sets) if plan.layer_sets is not None else None)


def _previous_method(script_results: Path, display_option: str) -> tuple[Optional[dict], str]:
    """(method, where it was read) of the results already in the folder: from the run
    record when it is ours, else from ``options.pkl`` when it holds plain values (an
    earlier version of this port); else (None, why)."""
    try:
        record = records.read_run_record(script_results)
    except IcnnTorchError as err:
        print(f"note: ignoring {getattr(err, 'path', '')} ({getattr(err, 'reason', err)})",
              flush=True)
        record = None
    if record is not None:
        return records.method_of(record, display_option), records.RUN_RECORD_NAME
    options = records.read_options(script_results)
    if options is None:
        return None, "no readable record"
    return records.method_of({"options": records.json_plain(options)}, display_option), \
        records.OPTIONS_NAME


def probe_writable(folder: Path) -> None:
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
        raise OutputError(f"cannot write into {folder}: {err.strerror or err}", folder) from err


# --------------------------------------------------------------------------- the run

def _batches(jobs: Sequence[Job], size: int) -> list[list[Job]]:
    """Consecutive groups of at most ``size`` jobs sharing a layer set (order kept within
    each layer set; with ``size`` 1 the job order is unchanged)."""
    if size == 1:
        return [[job] for job in jobs]
    by_set: dict = {}
    for job in jobs:
        by_set.setdefault(job.layer_set, []).append(job)
    return [group[i:i + size] for group in by_set.values() for i in range(0, len(group), size)]


def _print_header(job: Job) -> None:
    """The original's lines before each reconstruction (and the layer set of script 3)."""
    print(f"\nSubject:     {job.subject}\nROI:         {job.roi}\nImage label: {job.label}\n"
          + (f"Layer set:   {job.layer_set}\n" if job.layer_set else ""), flush=True)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def run_script(cfg: ScriptConfig, argv: Optional[Sequence[str]] = None,
               script_arg: Optional[str] = None,
               context: Optional[list] = None) -> list[Path]:
    """Run a figure script's reconstructions.

    Parameters
    ----------
    cfg : ScriptConfig
        The script's constants.
    argv : sequence of str, optional
        Command-line overrides (default ``sys.argv[1:]``; see :func:`build_parser`).
    script_arg : str, optional
        The script as the user named it, for the commands in messages (default its path).
    context : list, optional
        A one-element list the run fills with its :class:`~icnn_torch.run.advice.Context`
        as it learns it (for the error line's fix).

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
    context = context if context is not None else [Context()]
    args = build_parser(cfg).parse_args(list(sys.argv[1:] if argv is None else argv))
    info = engine_info(cfg.engine)
    plan = cfg.plan(subjects=split_list(args.subjects), rois=split_list(args.rois),
                    labels=split_list(args.labels),
                    layer_sets=split_list(getattr(args, "layers_sets", None)),
                    iterations=args.iterations)
    settings = settings_of(cfg, args, info)
    script_arg = script_arg or cfg.script_file
    data_dir, net_dir = as_given(cfg.path(cfg.data_dir)), as_given(cfg.path(cfg.net_dir))
    features_dir = as_given(cfg.path(cfg.decoded_features_dir))
    published = is_published_tree(features_dir, data_dir)
    context[0] = script_context(script_arg, plan, data_dir, net_dir, published,
                                results_option="--results-dir")
    module = info.load()  # the engine (and torch): its options are checked before any I/O
    from . import options as engine_options  # heavy: scipy (after --help)
    engine_options.check_options(plan, module, Path(cfg.script_file).resolve().parent)
    from ..nets.device import choose_device
    device = choose_device(settings.device, rank_info()[2])  # before any download
    note = engine_options.bounds_note(plan, module)
    if note:
        print(note, flush=True)
    root = settings.script_results

    rank, world_size, local_rank = rank_info()
    jobs = _jobs_of(plan)
    mat_of = {job: recon_mat_path(job.result_dir(root), job.label) for job in jobs}
    done = {job for job in jobs if is_done(job.result_dir(root), job.label)}
    redo_all = [job for job in jobs if settings.overwrite or job not in done]
    folder = check_folder(plan, settings, info, [mat_of[j] for j in redo_all])
    mine = split_jobs(jobs, rank, world_size)
    todo = [job for job in mine if settings.overwrite or job not in done]
    share = f", {len(mine)} for rank {rank}/{world_size}" if world_size > 1 else ""
    print(f"{plan.script_name}: {_count(len(jobs), 'reconstruction')}{share}, "
          f"{len(mine) - len(todo)} already done", flush=True)
    if not todo:
        print("Done", flush=True)
        return []
    probe_writable(root)

    from ..fetch.ensure import Fetching, ensure_plan_files  # heavy: network stack
    from ..fetch.items import Place
    from ..store.results import save_reconstruction
    from . import steps
    ensure_plan_files(plan, Place.at(data_dir, net_dir),
                      Fetching(assume_yes=settings.assume_yes, progress=not settings.quiet),
                      None if published else features_dir)
    inputs = steps.load_inputs(plan.engine, plan.network, plan.all_layers, plan.options,
                               data_dir, net_dir, device, local_rank)
    print(f"device: {steps.device_name(inputs.device)}", flush=True)
    print(inputs.mean_source, flush=True)
    options = dict(inputs.options)
    shown_options = dict(plan.options)
    if settings.quiet:
        options[info.display_option] = 0
        shown_options[info.display_option] = 0
    record = dict(plan.to_record(), snapshot_every=settings.snapshot_every,
                  snapshot_unit=info.snapshot_unit, first_snapshot=info.first_snapshot,
                  batch_size=settings.batch_size, decoded_features_dir=str(features_dir),
                  engine_options=steps.engine_options(inputs, shown_options, data_dir),
                  runs=[{"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "rank": rank, "world_size": world_size,
                         "device": steps.device_name(inputs.device),
                         "versions": steps.versions(), "files": inputs.files,
                         "jobs": len(todo)}])
    order = {"subjects": cfg.subjects_list, "rois": cfg.rois_list,
             "labels": cfg.image_label_list, "layer_sets": list(cfg.layers_sets or ())}
    committed = False
    written = []
    for group in _batches(todo, settings.batch_size):
        feats, weights = [], []
        for job in group:
            _print_header(job)
            f, w = steps.prepare_features(features_dir, plan.image_type, plan.network,
                                          plan.layers_of(job.layer_set), job.subject, job.roi,
                                          job.label, inputs.feat_std0, inputs.shapes)
            feats.append(f)
            weights.append(w)
        dirs = [job.result_dir(root) for job in group]
        snaps = [snapshot_dir(d, job.label) for d, job in zip(dirs, group)]
        for snap in snaps:  # snapshots of an earlier attempt do not describe this one
            shutil.rmtree(snap, ignore_errors=True)
        single = len(group) == 1
        kwargs = dict(options, layer_weight=weights[0] if single else weights,
                      save_intermediate=settings.snapshot_every > 0,
                      save_intermediate_every=max(1, settings.snapshot_every),
                      save_intermediate_path=str(snaps[0]) if single else [str(s) for s in snaps])
        t0 = time.perf_counter()
        nets = (inputs.net,) if inputs.net_gen is None else (inputs.net, inputs.net_gen)
        try:
            img, _loss = inputs.module.reconstruct_image(feats[0] if single else feats, *nets,
                                                         **kwargs)
        except IcnnTorchError:
            raise
        except OSError as err:  # the engine writes only snapshots
            raise OutputError(f"cannot write the snapshots into {snaps[0].parent}: "
                              f"{err.strerror or err} (--snapshot-every 0 saves none)",
                              snaps[0].parent) from err
        if not committed:  # the first results of this run: the folder now describes them
            records.delete_results(folder.stale & {mat_of[job] for job in todo})
            records.commit_run_record(root, record, info.display_option, order, plan.options)
            committed = True
        for job, out_dir, image in zip(group, dirs, [img] if single else list(img)):
            save_reconstruction(out_dir, job.label, image)
            written.append(out_dir)
        print(f"saved {_count(len(group), 'reconstruction')} in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
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
    context = [Context()]

    def run() -> None:
        run_script(ScriptConfig.from_constants(constants), argv, script_arg=script_arg,
                   context=context)

    sys.exit(run_cli(run, argv, lambda: context[0]))
