"""The printed table: the legend (columns and criteria with their reasons), the header and
one row per case."""

from __future__ import annotations

import textwrap
from typing import Iterable

from .cases import Case
from .criteria import LOSS0_MAX, CaseResult, criteria_for
from .references import ORIG_IMG_PATH, PINNED_COMMIT

__all__ = ["legend", "HEADER", "format_row"]


def legend(cases: Iterable[Case]) -> str:
    """What the columns mean and the criteria of ``cases``, with their reasons."""

    def wrapped(text: str, indent: str = "  ", later: str = "         ") -> list[str]:
        return textwrap.wrap(text, 96, initial_indent=indent, subsequent_indent=later)

    lines = wrapped(
        f"Self-check against the original icnn's own Caffe results (KamitaniLab/icnn@"
        f"{PINNED_COMMIT[:7]}, test/). Targets: true features of {ORIG_IMG_PATH} resized "
        "bicubic to the input size, at every conv and fc layer; options, layer weights and "
        "start: each case's files, as the original test.py.", "", "")
    lines += wrapped("n      loss list length, ours/Caffe's (iterations for GD, function "
                     "evaluations for L-BFGS)")
    lines += wrapped("corr   Pearson correlation of our final image with Caffe's")
    lines += wrapped("img    max |ours - Caffe| / value range of Caffe's image")
    lines += wrapped("loss   max relative difference of the loss lists over their common length")
    lines += wrapped("loss0  relative difference of the first loss, the shared start (forward "
                     f"passes only; limit {LOSS0_MAX:g} in every case)")
    lines += wrapped("final  our last loss / Caffe's")
    lines += wrapped(
        "Limits come from float32 arithmetic: the gradient through VGG19 carries a relative "
        "rounding error of about 2e-3 (float32 vs float64, random weights), so runs that "
        "differ only in rounding part visibly. Quick (3-iteration) limits are about 10x the "
        "largest 'spread' measured between two float32 runs of our engine that differ only "
        "in the convolution algorithm (random-weight nets, three or four each); --spread measures "
        "it for your weights. Long runs diverge chaotically; they are judged on what "
        "survives: the start, the iteration budget, the loss reached, the image content.",
        "", "")
    for case in cases:
        crit = criteria_for(case)
        lines += wrapped(f"{case.name}: {crit.describe()}" +
                         (f" (spread measured: {crit.spread})" if crit.spread else ""),
                         "  ", "      ")
    return "\n".join(lines)



#: The column titles of the table (see :func:`legend`).
HEADER = (f"{'case':<22} {'n':>9}  {'corr':>9} {'img':>8} {'loss':>8} {'loss0':>8} "
           f"{'final':>7} {'time':>8}  result")


def format_row(result: CaseResult) -> str:
    """One table row (see :data:`HEADER` / :func:`legend`), plus a ``spread`` row when
    the case was rerun (our two runs compared; not judged)."""
    def cells(r: CaseResult, label: str) -> str:
        n = f"{r.n_ours}/{r.n_ref}"
        return (f"{label:<22} {n:>9}  {r.corr:>9.6f} {r.img:>8.1e} {r.loss:>8.1e} "
                f"{r.loss0:>8.1e} {r.final:>7.4f} {r.seconds:>7.1f}s")

    verdict = "PASS" if result.passed else "FAIL: " + "; ".join(result.failures)
    row = f"{cells(result, result.case.name)}  {verdict}"
    if result.spread is not None:
        row += f"\n{cells(result.spread, '  spread')}  (ours/ours rerun, not judged)"
    return row

