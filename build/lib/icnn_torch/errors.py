"""The project's own errors: what went wrong, as data.

Every failure a user can act on (a missing or damaged file, a download that failed, a
wrong constant, a reconstruction that diverged, a results folder that cannot be written)
raises a subclass of :class:`IcnnTorchError`. The error says what went wrong and carries
the facts a fix needs (the files, the download items that provide them); it never holds
a shell command. The command-line layer (:mod:`icnn_torch.run.advice`) turns these facts
into the command that fixes the problem, in the terms of the command the user ran, and
:func:`icnn_torch.run.cli.run_cli` prints the one line.

Each class also derives from the built-in exception a caller would catch for that kind
of failure (``FileNotFoundError`` for a missing file, ``ValueError`` for a bad value...),
so library code written against those keeps working.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Union

__all__ = ["IcnnTorchError", "MissingDataError", "DamagedFileError", "DownloadError",
           "ChecksumError", "ConfigError", "DeviceError", "NonFiniteError", "OutputError"]


class IcnnTorchError(Exception):
    """An expected failure, reported to the user as one actionable line."""

    def summary(self) -> str:
        """The message on one line."""
        return " ".join(str(self).split())


class MissingDataError(IcnnTorchError, FileNotFoundError):
    """Data or weight files are absent.

    Attributes
    ----------
    missing : tuple of str
        The missing paths (or one line per missing download item).
    items : tuple of str
        The download items that provide them (``vgg19``, ``generator``, ``fc7_bounds``, or a
        file name of the published data such as
        ``decodedfeatures-natural-VGG19-conv1_1-S1.zip``), in order; empty when no
        download provides them.
    detail : str
        A further sentence (e.g. why nothing was downloaded).
    """

    def __init__(self, missing: Union[str, "os.PathLike[str]", Sequence],
                 items: Sequence[str] = (), detail: str = "", title: str = ""):
        if isinstance(missing, (str, os.PathLike)):
            missing = [missing]
        self.missing = tuple(str(p) for p in missing)
        self.items = tuple(dict.fromkeys(items))
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
        if self.items:
            what += f"\n(download item{'s' if len(self.items) > 1 else ''}: " \
                    f"{', '.join(self.items)})"
        super().__init__(what + (f"\n{detail}" if detail else ""))

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return self.args[0]

    def summary(self) -> str:
        n = len(self.missing)
        what = f"{self.missing[0]} is missing" if n == 1 else \
            f"{n} files are missing (first: {self.missing[0]})"
        detail = f" {' '.join(self.detail.split())}" if self.detail else ""
        return f"{what}.{detail}"


class DamagedFileError(IcnnTorchError, ValueError):
    """A file on disk is truncated, corrupt or not what its name says.

    Attributes
    ----------
    path : str
    reason : str
    item : str or None
        The download item that provides the file (see :class:`MissingDataError`), or None.
    """

    def __init__(self, path, reason: str, item: Optional[str] = None):
        self.path = str(path)
        self.reason = reason
        self.item = item
        super().__init__(f"{self.path} is damaged: {reason}")


class DownloadError(IcnnTorchError, RuntimeError):
    """A download failed (network, HTTP status, unexpected content)."""


class ChecksumError(DownloadError):
    """A downloaded file does not match its published checksum (or size); it was deleted."""


class ConfigError(IcnnTorchError, ValueError):
    """A script constant or a command-line value that cannot be used (the message lists the
    valid values)."""


class DeviceError(ConfigError):
    """A device name that is not a device, or CUDA on a machine without it."""


class NonFiniteError(IcnnTorchError, FloatingPointError):
    """A loss or gradient became NaN or infinite; nothing was saved for that run.

    Likely causes: damaged network weights, or target features with NaN, infinite or
    huge values.
    """


class OutputError(IcnnTorchError, OSError):
    """A result could not be written (read-only folder, disk full...).

    Attributes
    ----------
    path : str or None
        The file or folder that could not be written.
    """

    def __init__(self, message: str, path=None):
        self.path = None if path is None else str(path)
        super().__init__(message)

    def __str__(self) -> str:
        return self.args[0] if self.args else ""
