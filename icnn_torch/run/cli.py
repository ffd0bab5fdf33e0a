"""The guard every command-line entry point runs under: an expected failure becomes one
``error: ...`` line (with the command that fixes it, :mod:`icnn_torch.run.advice`) and exit
status 1; ``--debug`` or ``ICNN_TORCH_DEBUG=1`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
import traceback
import warnings
from typing import Callable, Iterator, Optional, Sequence, Union

from ..errors import IcnnTorchError
from .advice import Context, render

__all__ = ["run_cli", "debug_requested", "DEBUG_ENV", "split_list", "comma_list",
           "warnings_to_stderr", "HelpFormatter"]

#: Environment variable that makes :func:`run_cli` print tracebacks (1/yes/true).
DEBUG_ENV = "ICNN_TORCH_DEBUG"


def debug_requested(argv: Optional[Sequence[str]] = None) -> bool:
    """Whether ``--debug`` is among the arguments or ``ICNN_TORCH_DEBUG`` is set to a true
    value (1, yes, true)."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or \
        os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "yes", "true")


def run_cli(main: Callable[[], Optional[int]], argv: Optional[Sequence[str]] = None,
            context: Union[Context, Callable[[], Context], None] = None) -> int:
    """Run a command-line entry point; return its exit status.

    A :class:`~icnn_torch.errors.IcnnTorchError` becomes ``error: <one line>`` on standard
    error and status 1 (with the traceback first when :func:`debug_requested`); Ctrl-C
    becomes status 130. Other exceptions are bugs and propagate with their traceback.

    Parameters
    ----------
    main : callable
        The entry point, returning an exit status (None counts as 0).
    argv : sequence of str, optional
        The arguments :func:`debug_requested` looks at (default ``sys.argv[1:]``).
    context : Context or callable returning one, optional
        How the user runs things, for the fix the line names (a callable is asked after
        the failure, so the entry point can fill it in as it learns its folders).
    """
    try:
        status = main()
    except IcnnTorchError as err:
        if debug_requested(argv):
            traceback.print_exc()
        ctx = context() if callable(context) else context
        print(f"error: {render(err, ctx or Context())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug_requested(argv):
            traceback.print_exc()
        print("\ninterrupted; finished results are kept, a rerun continues with the rest",
              file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


def split_list(text: Optional[str]) -> Optional[list[str]]:
    """A comma-separated command-line list (duplicates dropped, order kept); None when not
    given."""
    if text is None:
        return None
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def comma_list(text: str) -> list[str]:
    """A comma-separated command-line list (``conv3_4,fc7``) as its non-empty items: the
    list syntax of every command line here, as the figure scripts take them."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


class HelpFormatter(argparse.HelpFormatter):
    """Wraps ``--help`` texts at spaces only, so that a comma-separated default
    (``conv1_1,conv1_2,...``) stays one copyable word."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False,
                             break_on_hyphens=False)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Within the block, print each UserWarning as one ``warning: ...`` line on standard
    error, when it happens (every occurrence, not only the first per place)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield
