"""``python -m icnn_torch.download``: the command line of the downloads.

::

    python -m icnn_torch.download [NAME ...] [--script PATH_OR_NUMBER [--subjects ...]
        [--rois ...] [--labels ...] [--layers-sets ...]] [--dry-run] [--verify] [--yes]

``NAME``: a file of figshare article 7033577 (``--list``) or ``vgg19``, ``generator``,
``fc7_bounds``, ``mean``, ``std``, or a published fMRI file (``fmri``: all six, into
``<data-dir>/fmri``). ``--script`` reads what a script needs from the script
file itself (constants, with the scripts' overrides; its data and net folders).
``--dry-run`` prints what would be fetched and needs no network; ``--verify`` checks md5s
where one is published, loads the weights that have none and reads decoded features, and
replaces damaged files, saying which check each passed or failed. Known sizes (the VGG19
weights, the fc7 bounds, the image mean and std files, and the decoded-feature zips once
``--refresh-list`` has cached theirs) are always checked: a file of another size does not
count as present. The sources can be redirected with environment variables (see
:mod:`icnn_torch.fetch.http`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .._util import is_terminal
from ..run.advice import Context
from ..run.cli import run_cli, split_list
from ..run.config import ScriptConfig, script_context
from ..store.layout import DEFAULT_DATA_DIR, DEFAULT_NET_DIR, is_published_tree
from .ensure import Fetching, ensure_files, ensure_plan_files
from .figshare import article_files, refresh_file_list
from .items import ALIASES, Place

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.download",
        description="Download the decoded features, std files, image mean, fc7 bounds and "
                    "network weights of the Deep Image Reconstruction demo. Files present "
                    "and intact are skipped.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="figshare file name of article 7033577, or vgg19, generator, "
                             "fc7_bounds, mean, std, or a published fMRI file of the original "
                             "(fmri: all six; into DATA_DIR/fmri)")
    parser.add_argument("--script", help="everything this script needs (its path, or its "
                                         "name or number in the current folder)")
    for flag, example in (("--subjects", "S1,S2"), ("--rois", "VC,V1"),
                          ("--labels", "Img0001,Img0002"), ("--layers-sets", "layers-1to1")):
        parser.add_argument(flag, help=f"with --script: comma-separated, e.g. {example} "
                                       "(default: the script's)")
    for flag, text in (("--pytorch", "KamitaniLab's PyTorch conversions of VGG19 and the "
                                     "generator instead of the caffemodels"),
                       ("--yes", "do not ask for confirmation on a terminal"),
                       ("--dry-run", "print what would be fetched, one line per file; "
                                     "fetch nothing"),
                       ("--verify", "check present files: md5 where one is published (VGG19, "
                                    "fc7 bounds, mean, std), loading for the generator and "
                                    "the PyTorch files, reading for decoded features; replace "
                                    "damaged ones"),
                       ("--no-progress", "no progress bar"),
                       ("--list", "print the files of the figshare article (name, id, size, "
                                  "md5)"),
                       ("--refresh-list", "read the file list from figshare, check it, cache "
                                          "its sizes"),
                       ("--debug", "show the traceback of an error")):
        parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument("--data-dir", help="default: data (with --script: the script's)")
    parser.add_argument("--net-dir", help="default: net (with --script: the script's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per read")
    return parser


def _main(argv: Optional[Sequence[str]], context: list) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    selection = {key: split_list(value) for key, value in (
        ("subjects", args.subjects), ("rois", args.rois), ("labels", args.labels),
        ("layer_sets", args.layers_sets))}
    if not args.script and any(selection.values()):
        parser.error("--subjects/--rois/--labels/--layers-sets select within --script")
    for name in args.names:
        if name not in ALIASES and "/" in name:
            parser.error(f"{name!r}: give a file name, not a path")
    options = ("--pytorch",) * args.pytorch + ("--verify",) * args.verify
    data_dir = Path(args.data_dir or DEFAULT_DATA_DIR)
    net_dir = Path(args.net_dir or DEFAULT_NET_DIR)
    context[0] = Context(data_dir=data_dir, net_dir=net_dir, download_options=options)
    config = plan = features_dir = None
    if args.script:
        config = ScriptConfig.from_file(args.script)
        data_dir = Path(args.data_dir) if args.data_dir else config.path(config.data_dir)
        net_dir = Path(args.net_dir) if args.net_dir else config.path(config.net_dir)
        # the script's decoded_features_dir; its own data folder's follows --data-dir
        features_dir = config.path(config.decoded_features_dir)
        if is_published_tree(features_dir, config.path(config.data_dir)):
            features_dir = None
        plan = config.plan(**selection)
        context[0] = script_context(args.script, plan, data_dir, net_dir,
                                    features_published=features_dir is None,
                                    download_options=options)
    if args.refresh_list:
        refresh_file_list(data_dir, timeout=args.timeout)
    for entry in sorted(article_files(data_dir).values(), key=lambda e: e.name) \
            if args.list else ():
        print(f"{entry.name}\t{entry.id}\t{'' if entry.size is None else entry.size}\t{entry.md5}")
    if not args.names and plan is None:
        if args.list or args.refresh_list:
            return 0
        parser.print_usage(sys.stderr)
        print("nothing to download: give NAMEs or --script (see --help)", file=sys.stderr)
        return 2
    place = Place.at(data_dir, net_dir, args.pytorch)
    how = Fetching(assume_yes=True if (args.yes or not is_terminal(sys.stdin)) else None,
                   progress=not args.no_progress, timeout=args.timeout, verify=args.verify,
                   dry_run=args.dry_run)
    done = ensure_files(args.names, place, how) if args.names else []
    if plan is not None:
        done += ensure_plan_files(plan, place, how, features_dir)
    print(f"{len(done)} item(s) would be fetched" if args.dry_run and done else
          f"done: {len(done)} item(s) downloaded" if done else
          "all requested files are present" + (" (each checked as listed above)"
                                               if args.verify else ""), file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point (under :func:`icnn_torch.run.cli.run_cli`); returns the exit
    status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    context = [Context()]
    return run_cli(lambda: _main(argv, context), argv, lambda: context[0])
