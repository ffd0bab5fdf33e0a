"""The decoding entry point: ``decode_features.py``'s constants in, the decoded-feature tree out.

``decode_features.py`` (at the project root) holds the constants
(:class:`~icnn_torch.decoding.config.DecodeConfig`) and makes one call, :func:`main`, as
the figure scripts do: the constants are checked for typos, the command line overrides
them (:func:`~icnn_torch.decoding.config.build_parser`), and an expected failure ends the
run with one ``error: ...`` line naming its fix (:func:`icnn_torch.run.cli.run_cli`; a
missing fMRI file or weight: this command again with ``--yes``).

A run needs the ``decoding`` extra (bdpy, fastl2lir: ``pip install -e '.[decoding]'``);
without it the run stops with one line saying so (``--help`` still answers). It has three
stages (:mod:`icnn_torch.decoding.stages`), each resumable (a killed or repeated run
continues where it stopped) and each selectable with ``--stages``: ``features`` (the
images' features, rank 0), ``decode`` (the unit-chunk jobs, split over processes by
:func:`icnn_torch.run.jobs.rank_info` and :func:`icnn_torch.run.jobs.split_jobs`:
``torchrun``, SLURM arrays) and ``accuracy`` (rank 0). Rank 0 makes the fMRI files present
first (:func:`icnn_torch.decoding.fmri.ensure_fmri_files`: the fetch layer's items, asked
for once on a terminal), VGG19 when the features stage builds it; other ranks wait.

Test images and labels: the test fMRI labels its trials by stimulus name; the tree names
the images ``Img0001`` ... in the order of the stimulus ids (``test_labels = 'Img'``, the
order of the lab's own list of the 50 test images, ``imageID_test.csv`` of
KamitaniLab/GenericObjectDecoding), or by the stimulus names themselves
(``'stimulus_name'``), or as a CSV file maps them (rows ``stimulus_name,label``). That
the published decoded features number the images in the same order is likely but not
verified (no public statement found); ``image_labels.csv`` beside the accuracy CSV lists
the mapping a run used.

Paths in the constants are relative to the project root: ``ICNN_TORCH_ROOT`` when set,
else the script's folder. Nothing here imports torch, bdpy, fastl2lir or h5py before the
arguments are parsed, so ``--help`` answers at once.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

from ..errors import ConfigError, IcnnTorchError
from ..run.advice import Context, as_given
from ..run.cli import run_cli
from ..run.jobs import rank_info
from .config import STAGES, DecodeConfig, build_parser, resolve

__all__ = ["DecodeConfig", "STAGES", "EXTRA_MODULES", "INSTALL_EXTRA", "missing_extra",
           "rerun_command", "run_decoding", "main"]

#: The ``decoding`` extra of the package: what a run imports beyond the figure scripts.
EXTRA_MODULES = ("bdpy", "fastl2lir")
#: How to install it from the project's folder.
INSTALL_EXTRA = "pip install -e '.[decoding]'"


def missing_extra() -> List[str]:
    """The modules of :data:`EXTRA_MODULES` that cannot be imported here."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - absent, or installed but broken: not usable
            missing.append(name)
    return missing


def rerun_command(script: str, argv: Sequence[str]) -> str:
    """``python <script> <arguments>``: the command as the user ran it, without ``--yes``
    (the advice adds it)."""
    return " ".join(["python", shlex.quote(script), *(shlex.quote(a) for a in argv
                                                      if a != "--yes")])


def run_decoding(cfg: DecodeConfig, argv: Optional[Sequence[str]] = None,
                 context: Optional[list] = None) -> None:
    """Run the stages of ``decode_features.py`` (see the module docstring).

    Parameters
    ----------
    cfg : DecodeConfig
    argv : sequence of str, optional
        Command-line overrides (default ``sys.argv[1:]``).
    context : list, optional
        A one-element list whose :class:`~icnn_torch.run.advice.Context` the run fills in
        with its folders (for the error line's fix).

    Raises
    ------
    IcnnTorchError
        Every expected failure: the ``decoding`` extra missing, a wrong constant or
        option, missing or damaged files, images that are not there.
    """
    context = context if context is not None else [Context()]
    args = build_parser(cfg).parse_args(list(sys.argv[1:] if argv is None else argv))
    missing = missing_extra()
    if missing:
        raise IcnnTorchError(f"{Path(cfg.script_file).name} needs bdpy and fastl2lir (not "
                             f"importable here: {', '.join(missing)}): {INSTALL_EXTRA}")
    run = resolve(cfg, args)
    context[0] = Context(data_dir=as_given(cfg.path(cfg.data_dir)),
                         net_dir=as_given(cfg.path(cfg.net_dir)),
                         rerun_command=context[0].rerun_command)
    from . import stages  # numpy, h5py, the network stack: after --help
    from .fmri import ensure_fmri_files
    try:
        run.rank, run.world_size, run.local_rank = rank_info()
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if run.needs_device:  # a wrong device stops the run before any download
        from ..nets.device import choose_device  # torch
        run.device = choose_device(run.device_name, run.local_rank)
    if run.rank == 0:
        ensure_fmri_files(run.files, stages.fetching_of(run), stages.place_of(run))
    else:
        stages.wait_for(lambda: all(p.is_file() for p in run.files.values()),
                        "the fMRI files", run.rank)
    stages.say(f"decode_features: subjects {', '.join(run.subjects)}; ROIs "
               f"{', '.join(run.rois)}; {len(run.layers)} layer(s); network {cfg.network}; "
               f"stages {', '.join(run.stages)}")
    cache = stages.FmriCache(cfg.label_key)
    labels = stages.label_map(run, stages.test_stimuli(run, cache))
    stages.check_rois(run, cache)
    if run.rank == 0:
        stages.write_label_list(run, labels)
    if "features" in run.stages:
        stages.stage_features(run, cache, labels)
    if "decode" in run.stages:
        stages.stage_decode(run, cache, labels)
    if "accuracy" in run.stages:
        stages.stage_accuracy(run, labels)


def main(constants: Union[Mapping[str, Any], DecodeConfig],
         argv: Optional[Sequence[str]] = None) -> int:
    """``decode_features.py``'s entry point: run the script whose constants are
    ``constants`` (its ``globals()``, or a :class:`DecodeConfig`) under
    :func:`icnn_torch.run.cli.run_cli`; return the exit status.

    Expected failures (a misspelled constant included) print one ``error: ...`` line and
    give status 1 (``--debug`` or ``ICNN_TORCH_DEBUG=1`` shows the traceback); Ctrl-C
    gives 130.
    """
    # the script as the user named it, when it runs from the command line
    script_arg = sys.argv[0] if argv is None and sys.argv and sys.argv[0] else None
    argv = list(sys.argv[1:] if argv is None else argv)
    context = [Context()]

    def go() -> None:
        cfg = constants if isinstance(constants, DecodeConfig) else \
            DecodeConfig.from_constants(constants)
        context[0] = Context(rerun_command=rerun_command(script_arg or cfg.script_file, argv))
        run_decoding(cfg, argv, context)

    return run_cli(go, argv, lambda: context[0])
