"""The command line of the self-check::

    python -m icnn_torch.selfcheck [--cases quick|full|all|NAME,...] [--device DEV]
        [--vgg19 PATH] [--generator PATH] [--mean PATH] [--net-dir DIR] [--data-dir DIR]
        [--snapshots DIR] [--spread] [--verbose] [--no-progress] [--debug]

It runs under :func:`icnn_torch.run.cli.run_cli`: an expected failure (missing weights, a
failed or corrupt download) prints one ``error:`` line naming the command that fixes it,
rendered by :mod:`icnn_torch.run.advice` in a :class:`~icnn_torch.run.advice.Context` of
the folders given here. The advice sentences of the self-check itself are here too.

torch (and scipy) are imported only once the arguments are parsed: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from .._util import is_terminal
from ..errors import MissingDataError
from ..run.advice import Context
from ..run.cli import run_cli
from ..store.layout import (DEFAULT_DATA_DIR, DEFAULT_NET_DIR, generator_weights_path,
                            image_mean_path, vgg19_weights_path)
from .cases import CASES, Case, select_cases
from .references import PINNED_COMMIT, fetch_references
from .runner import run_selfcheck

__all__ = ["main"]

#: The command, as ``--help`` and the advice name it.
PROG = "python -m icnn_torch.selfcheck"


def _weights(cases: Sequence[Case], args) -> tuple[Path, Optional[Path]]:
    """The weight files the cases need; a MissingDataError with their download items."""
    vgg19 = Path(args.vgg19) if args.vgg19 else vgg19_weights_path(args.net_dir)
    need_gen = any(c.uses_generator for c in cases)
    generator = (Path(args.generator) if args.generator else
                 generator_weights_path(args.net_dir)) if need_gen else None
    missing, items = [], []
    for item, path in (("vgg19", vgg19), ("generator", generator)):
        if path is not None and not path.is_file():
            missing.append(path)
            items.append(item)
    if missing:
        mean = Path(args.mean) if args.mean else image_mean_path(args.data_dir)
        if not mean.is_file():
            items.append("mean")
        raise MissingDataError(missing, items, detail="The self-check runs on the real weights.")
    return vgg19, generator


def _with_refetch_advice(err: MissingDataError, argv: Sequence[str]) -> MissingDataError:
    """``err`` (reference files absent from the cache) with the advice to run the
    self-check again, which downloads them."""
    command = " ".join([PROG, *map(shlex.quote, argv)])
    advice = f"The self-check downloads its reference files itself: run it again ({command})."
    return MissingDataError(err.missing, err.items,
                            detail=f"{err.detail} {advice}" if err.detail else advice)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Recompute the original icnn's Caffe test results (KamitaniLab/icnn "
                    f"@{PINNED_COMMIT[:7]}, test/) with our engines on your weights and "
                    "report how close each case comes.")
    parser.add_argument("--cases", default="all",
                        help="comma-separated case names or the groups quick, full, all "
                             f"(default: %(default)s); cases: {', '.join(c.name for c in CASES)}")
    parser.add_argument("--device", default=None,
                        help="e.g. cpu, cuda, cuda:1 (default: CUDA when available)")
    parser.add_argument("--net-dir", default=DEFAULT_NET_DIR,
                        help="folder of the weights (default: %(default)s)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="folder of ilsvrc_2012_mean.npy and of the reference cache "
                             "(default: %(default)s)")
    parser.add_argument("--vgg19", default=None,
                        help="VGG19 weights, .caffemodel or KamitaniLab's .pt (default: "
                             "NET_DIR/VGG_ILSVRC_19_layers/VGG_ILSVRC_19_layers.caffemodel or .pt)")
    parser.add_argument("--generator", default=None,
                        help="DeePSiM fc7 generator weights (default: NET_DIR/"
                             "generator_for_inverting_fc7/generator.caffemodel or .pt)")
    parser.add_argument("--mean", default=None,
                        help="image mean file (default: DATA_DIR/ilsvrc_2012_mean.npy)")
    parser.add_argument("--snapshots", default=None,
                        help="keep each case's snapshots and our recon_img.mat / loss_list.mat "
                             "in SNAPSHOTS/<case>/ (default: a temporary folder, deleted)")
    parser.add_argument("--spread", action="store_true",
                        help="run every case twice, the second time with another convolution "
                             "algorithm, and print how far our two runs are apart (what "
                             "float32 rounding alone does; doubles the time)")
    parser.add_argument("--verbose", action="store_true",
                        help="print the engines' progress lines as the pickled options ask "
                             "(default: a progress bar on a terminal)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks of expected errors")
    return parser


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None) -> int:
    """Command-line entry point; returns 0 when every case passes, 1 otherwise (also for an
    expected failure, printed as one ``error:`` line naming the command that fixes it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    context = [Context()]
    return run_cli(lambda: _main(argv, out, context), argv, lambda: context[0])


def _main(argv: Sequence[str], out: Optional[TextIO], context: list) -> int:
    out = sys.stdout if out is None else out
    args = _build_parser().parse_args(argv)
    context[0] = Context(data_dir=args.data_dir, net_dir=args.net_dir)
    cases = select_cases(args.cases)
    vgg19_path, generator_path = _weights(cases, args)
    from ..nets.device import choose_device  # torch: only past --help
    from ..nets.weights import load_generator, load_vgg19
    from ..store.net_data import load_image_mean

    device = choose_device(args.device)
    progress = not args.no_progress
    folder = fetch_references(cases, args.data_dir, progress=progress)
    mean, mean_source = load_image_mean(args.mean if args.mean else
                                        image_mean_path(args.data_dir))
    print(mean_source, file=out)
    print(f"weights: {vgg19_path}" + (f", {generator_path}" if generator_path else "") +
          f"; device: {device}", file=out, flush=True)
    net = load_vgg19(vgg19_path, device=device, img_mean=mean)  # damaged: DamagedFileError
    net_gen = load_generator(generator_path, device=device) if generator_path else None
    display = "original" if args.verbose else \
        ("ours" if progress and is_terminal() else "quiet")
    try:
        results = run_selfcheck(cases, net, net_gen, folder, device, out=out,
                                snapshots=args.snapshots, display=display, spread=args.spread)
    except MissingDataError as err:  # a reference file went from the cache since the fetch
        if not all(Path(p).is_relative_to(folder) for p in err.missing):
            raise
        raise _with_refetch_advice(err, argv) from err
    return 0 if all(r.passed for r in results) else 1
