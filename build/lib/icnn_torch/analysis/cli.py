"""The command lines of the analysis: ``python -m icnn_torch.evaluate`` and
``python -m icnn_torch.figure``.

Usage::

    python -m icnn_torch.evaluate results --stimuli path/to/stimuli [--mapping map.csv]
        [--layers conv3_4,fc7 | --no-features] [--vgg19 FILE] [--out results/evaluation.csv]
        [--device cuda:0] [--scripts 1_reconstruct_natural_image,...] [--image-type natural]
        [--recon-form clip] [--per-image] [--debug]

    python -m icnn_torch.figure results [--stimuli DIR [--mapping CSV]] [--out-dir DIR]
        [--labels Img0009,Img0002,...] [--scripts NAME,...] [--image-type TYPE]
        [--cell-inches 0.9] [--dpi 300] [--debug]

``evaluate`` (:mod:`icnn_torch.analysis.evaluate`) writes one CSV row per reconstruction
plus one ``label = "mean"`` row per set, atomically, by default to
``RESULTS_DIR/evaluation.csv``, and prints the mean rows (or all rows with
``--per-image``) as a table. ``figure`` (:mod:`icnn_torch.analysis.figure`) writes one
panel per script folder as PNG and PDF, by default into ``RESULTS_DIR/figures/``. Lists
are comma-separated, as the figure scripts take them. Errors of the project print one
``error: ...`` line (:func:`icnn_torch.run.cli.run_cli`) and return status 1; ``--debug``
shows the traceback. The advice in that line is the command line's: the library's errors
name files and values, and here they get the option that helps (``--out`` /
``--out-dir`` for a file that cannot be written, through :mod:`icnn_torch.run.advice`;
``--vgg19`` / ``--no-features`` for feature identification; how to make results).

Nothing here imports torch or matplotlib before the work starts, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ConfigError, MissingDataError
from ..run.advice import Context
from ..run.cli import comma_list, run_cli, warnings_to_stderr
from ..store.results import RECON_FORMS
from .evaluate import (DEFAULT_VGG19_PATH, NetInputSizeError, NoReconstructionsError,
                       evaluate_results, format_table, single_image_sets)
from .figure import make_figures
from .metrics import DEFAULT_FEATURE_LAYERS
from .panel import PanelStyle
from .tables import write_csv

__all__ = ["evaluate_parser", "evaluate_main", "figure_parser", "figure_main"]

#: What to do about a results tree without reconstructions.
RUN_A_SCRIPT = "run a figure script first (e.g. python 1_reconstruct_natural_image.py)"


def _check_results_dir(results_dir: str) -> None:
    """Stop with the way to make results when ``results_dir`` is not a folder (before any
    other check of the command, whose messages would not say it)."""
    if not Path(results_dir).is_dir():
        raise ConfigError(f"results folder {results_dir} does not exist; {RUN_A_SCRIPT}")


# --------------------------------------------------------------------------- evaluate

def evaluate_parser() -> argparse.ArgumentParser:
    """The options of ``python -m icnn_torch.evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.evaluate",
        description="Pairwise identification (pixel correlation, Euclidean distance, VGG19 "
                    "features), PixCorr and SSIM of reconstructions against stimulus images.")
    parser.add_argument("results_dir", help="results folder (or one script's folder)")
    parser.add_argument("--stimuli", required=True,
                        help="folder of stimulus images: <image_type>/<label>.<ext> or "
                             "<label>.<ext>")
    parser.add_argument("--mapping", help="CSV of label,filename (or image_type,label,"
                                          "filename) rows; names relative to --stimuli")
    parser.add_argument("--layers", type=comma_list, default=list(DEFAULT_FEATURE_LAYERS),
                        help="VGG19 layers for feature identification, comma-separated "
                             f"(default: {','.join(DEFAULT_FEATURE_LAYERS)})")
    parser.add_argument("--no-features", action="store_true",
                        help="skip feature identification (no VGG19 needed)")
    parser.add_argument("--vgg19", default=None,
                        help=f"VGG19 weights (default: {DEFAULT_VGG19_PATH})")
    parser.add_argument("--out", default=None,
                        help="CSV file to write (default: RESULTS_DIR/evaluation.csv)")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 "
                                                       "(default: CUDA when available)")
    parser.add_argument("--scripts", type=comma_list, default=None,
                        help="script folder names to evaluate, comma-separated "
                             "(default: all found)")
    parser.add_argument("--image-type", default=None,
                        help="image type of script folders without a run record (results "
                             "of the original code), e.g. natural; it selects "
                             "<stimuli>/<image type>/")
    parser.add_argument("--recon-form", choices=RECON_FORMS, default="clip",
                        help="how to read recon_img (default: %(default)s)")
    parser.add_argument("--per-image", action="store_true",
                        help="print every image's row, not only the set means")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _evaluate_rows(args: argparse.Namespace) -> list[dict[str, object]]:
    """:func:`evaluate_results` with the options; its errors say which option helps."""
    layers = [] if args.no_features else args.layers
    try:
        return evaluate_results(args.results_dir, args.stimuli, mapping=args.mapping,
                                layers=layers, vgg19_path=args.vgg19, device=args.device,
                                scripts=args.scripts, recon_form=args.recon_form,
                                image_type=args.image_type)
    except NoReconstructionsError as err:
        raise ConfigError(f"{err}; {RUN_A_SCRIPT}") from err
    except NetInputSizeError as err:
        raise ConfigError(f"{err}; skip feature identification with --no-features") from err
    except MissingDataError as err:
        if "vgg19" not in err.items:
            raise
        raise MissingDataError(err.missing, err.items,
                               detail=f"{err.detail.rstrip('.')}; pass --vgg19 FILE, or skip "
                                      "it with --no-features.") from err


def _single_image_note(rows: Sequence[dict[str, object]]) -> Optional[str]:
    """One line on the sets whose identification is NaN because they hold one image."""
    sets = single_image_sets(rows)
    if not sets:
        return None
    shown = ", ".join(sets[:3]) + (f" and {len(sets) - 3} more" if len(sets) > 3 else "")
    return ("note: pairwise identification needs at least two images in a set "
            f"(a reconstruction's own stimulus and another); {len(sets)} set{'s' if len(sets) > 1 else ''} of a single image "
            f"({shown}) {'have' if len(sets) > 1 else 'has'} none (n/a in the table, nan "
            "in the CSV)")


def _evaluate(argv: Optional[Sequence[str]]) -> int:
    args = evaluate_parser().parse_args(argv)
    _check_results_dir(args.results_dir)
    with warnings_to_stderr():
        rows = _evaluate_rows(args)
    if not rows:
        raise ConfigError(f"no reconstruction under {args.results_dir} has a stimulus image "
                          f"in {args.stimuli} (expected e.g. {args.stimuli}/natural/Img0009."
                          f"png or {args.stimuli}/Img0009.png, or a --mapping CSV)")
    out = Path(args.out) if args.out else Path(args.results_dir) / "evaluation.csv"
    write_csv(rows, out)
    note = _single_image_note(rows)
    if note is not None:
        print(note, file=sys.stderr)
    print(format_table(rows, per_image=args.per_image))
    print(f"\nwrote {out}")
    return 0


def evaluate_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m icnn_torch.evaluate`` (arguments ``argv``, default the process's);
    returns the exit status.

    Errors of the project (a missing folder or weight file, a damaged file, a bad value)
    print one ``error: ...`` line and return 1; ``--debug`` shows the traceback.
    """
    return run_cli(lambda: _evaluate(argv), argv, Context(results_option="--out"))


# --------------------------------------------------------------------------- figure

def figure_parser() -> argparse.ArgumentParser:
    """The options of ``python -m icnn_torch.figure``."""
    parser = argparse.ArgumentParser(
        prog="python -m icnn_torch.figure",
        description="Write one paper-style panel (PNG and PDF) per script of a results tree.")
    parser.add_argument("results_dir", help="results folder (or one script's folder)")
    parser.add_argument("--stimuli", default=None,
                        help="stimulus folder; adds a ground-truth row on top")
    parser.add_argument("--mapping", default=None,
                        help="CSV of label,filename (or image_type,label,filename) rows")
    parser.add_argument("--out-dir", default=None,
                        help="where the panels go (default: RESULTS_DIR/figures)")
    parser.add_argument("--labels", type=comma_list, default=None,
                        help="columns in this order, comma-separated (default: the "
                             "script's label order)")
    parser.add_argument("--scripts", type=comma_list, default=None,
                        help="script folder names to draw, comma-separated (default: all)")
    parser.add_argument("--image-type", default=None,
                        help="image type of script folders without a run record, e.g. "
                             "natural; it selects <stimuli>/<image type>/")
    parser.add_argument("--cell-inches", type=float, default=None,
                        help="side of an image cell in inches (default: up to 1, fitted "
                             "to a 7.5 x 8.75 in page)")
    parser.add_argument("--dpi", type=float, default=300,
                        help="resolution of the PNG (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _figure(argv: Optional[Sequence[str]]) -> int:
    parser = figure_parser()
    args = parser.parse_args(argv)
    if args.cell_inches is not None and args.cell_inches <= 0:
        parser.error("--cell-inches must be positive")
    if args.dpi <= 0:
        parser.error("--dpi must be positive")
    _check_results_dir(args.results_dir)
    with warnings_to_stderr():
        written = make_figures(args.results_dir, args.out_dir, args.stimuli, args.mapping,
                               args.labels, args.scripts, args.image_type,
                               PanelStyle(cell=args.cell_inches), args.dpi)
    if not written:
        raise ConfigError(f"no recon_img-<label>.mat files under {args.results_dir}"
                          + (" with the labels given" if args.labels else "")
                          + f"; {RUN_A_SCRIPT}")
    for path in written:
        print(f"wrote {path}")
    return 0


def figure_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m icnn_torch.figure`` (arguments ``argv``, default the process's); returns
    the exit status.

    Errors of the project print one ``error: ...`` line and return 1; ``--debug`` shows
    the traceback.
    """
    return run_cli(lambda: _figure(argv), argv, Context(results_option="--out-dir"))
