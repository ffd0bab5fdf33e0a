"""The project's own errors, and the guard every command-line entry point runs under.

Every failure a user can act on (a missing or damaged file, a download that failed, a
wrong constant, a reconstruction that diverged, a results folder that cannot be written)
raises a subclass of :class:`IcnnTorchError`. Its message says what went wrong, which
file, and the command that fixes it. :func:`run_cli` turns such an error into one line
on standard error and a non-zero exit status; ``--debug`` on the command line, or the
environment variable ``ICNN_TORCH_DEBUG=1``, shows the traceback as well.

Each class also derives from the built-in exception a caller would catch for that kind
of failure (``FileNotFoundError`` for a missing file, ``ValueError`` for a bad value...),
so library code written against those keeps working.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Optional, Sequence, Union

__all__ = ["IcnnTorchError", "MissingDataError", "DamagedFileError", "DownloadError",
           "ChecksumError", "ConfigError", "DeviceError", "NonFiniteError", "OutputError", "run_cli",
           "debug_requested", "DEBUG_ENV"]

#: Environment variable that makes :func:`run_cli` print tracebacks (1/yes/true).
DEBUG_ENV = "ICNN_TORCH_DEBUG"


class IcnnTorchError(Exception):
    """An expected failure, reported to the user as one actionable line."""

    def summary(self) -> str:
        """The message on one line (what the command-line guard prints)."""
        return " ".join(str(self).split())


class MissingDataError(IcnnTorchError, FileNotFoundError):
    """Data or weight files are absent.

    The message names the missing file(s) and the command that downloads them.

    Attributes
    ----------
    missing : tuple of str
        The missing paths (or download items).
    command : str
        Shell command that downloads them, e.g.
        ``python -m icnn_torch.download decodedfeatures-natural-VGG19-conv1_1-S1.zip``.
    """

    def __init__(self, missing: Union[str, "os.PathLike[str]", Sequence], command: str,
                 detail: str = "", title: str = ""):
        if isinstance(missing, (str, os.PathLike)):
            missing = [missing]
        self.missing = tuple(str(p) for p in missing)
        self.command = command
        self.detail = detail
        shown = "\n  ".join(self.missing[:20])
        if len(self.missing) > 20:
            shown += f"\n  ... and {len(self.missing) - 20} more"
        if title:
            what = f"{title}\n  {shown}"
        elif len(self.missing) == 1:
            what = f"File not found: {self.missing[0]}"
        else:
            what = f"{len(self.missing)} files not found:\n  {shown}"
        message = f"{what}\n{detail + chr(10) if detail else ''}Download with:\n  {command}"
        super().__init__(message)

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return self.args[0]

    def summary(self) -> str:
        n = len(self.missing)
        what = f"{self.missing[0]} is missing" if n == 1 else \
            f"{n} files are missing (first: {self.missing[0]})"
        detail = f" {' '.join(self.detail.split())}" if self.detail else ""
        return f"{what}.{detail} Download with: {self.command}"


class DamagedFileError(IcnnTorchError, ValueError):
    """A file on disk is truncated, corrupt or not what its name says.

    Attributes
    ----------
    path : str
    command : str
        Command that replaces the file ("" when there is none).
    """

    def __init__(self, path, reason: str, command: str = ""):
        self.path = str(path)
        self.reason = reason
        self.command = command
        fix = f"; replace it with: {command}" if command else ""
        super().__init__(f"{self.path} is damaged: {reason}{fix}")


class DownloadError(IcnnTorchError, RuntimeError):
    """A download failed (network, HTTP status, unexpected content)."""


class ChecksumError(DownloadError):
    """A downloaded file does not match its published checksum (or size)."""


class ConfigError(IcnnTorchError, ValueError):
    """A script constant or a command-line value that cannot be used (the message lists the
    valid values)."""


class DeviceError(ConfigError):
    """A device that is not a device, or CUDA on a machine without it."""


class NonFiniteError(IcnnTorchError, FloatingPointError):
    """A loss or gradient became NaN or infinite; nothing was saved for that run."""


class OutputError(IcnnTorchError, OSError):
    """A result could not be written (read-only folder, disk full...)."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


def debug_requested(argv: Optional[Sequence[str]] = None) -> bool:
    """Whether ``--debug`` is among the arguments or ``ICNN_TORCH_DEBUG`` is set to a true
    value (1, yes, true)."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or \
        os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "yes", "true")


def run_cli(main: Callable[[], Optional[int]], argv: Optional[Sequence[str]] = None) -> int:
    """Run a command-line entry point; return its exit status.

    A :class:`IcnnTorchError` becomes ``error: <one line>`` on standard error and status 1
    (with the traceback first when :func:`debug_requested`); Ctrl-C becomes status 130.
    Other exceptions are bugs and propagate with their traceback.

    Parameters
    ----------
    main : callable
        The entry point, returning an exit status (None counts as 0).
    argv : sequence of str, optional
        The arguments :func:`debug_requested` looks at (default ``sys.argv[1:]``).
    """
    try:
        status = main()
    except IcnnTorchError as err:
        if debug_requested(argv):
            traceback.print_exc()
        print(f"error: {err.summary()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug_requested(argv):
            traceback.print_exc()
        print("\ninterrupted; finished results are kept, a rerun continues with the rest",
              file=sys.stderr)
        return 130
    return 0 if status is None else int(status)
