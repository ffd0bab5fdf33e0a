"""Small helpers with one home each: path type, atomic output, terminal check.

Nothing here imports torch, so the command-line entry points can use it before their
heavy imports.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Iterator, TextIO, Union

__all__ = ["PathLike", "atomic_output", "is_terminal"]

#: A file-system path as the public functions accept it.
PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    The temporary name is unique per call (process id plus a random part, in the target
    folder), so several processes may write into the same tree at once; readers see
    either the old file or the complete new one, never a partial one. On an exception
    (Ctrl-C included) the temporary file is removed and ``path`` is untouched. Parent
    folders are created. The file is created by the writer, so it gets the process's
    usual permissions (umask), not ``mkstemp``'s 0600.

    The temporary name keeps ``path``'s suffix, so writers that choose a format by
    extension (``PIL.Image.save``, ``scipy.io.savemat``) behave as for ``path``.

    Examples
    --------
    >>> with atomic_output("out/recon_img-Img0001.mat") as tmp:   # doctest: +SKIP
    ...     scipy.io.savemat(tmp, {"recon_img": img})
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
                           f".tmp{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: standard error) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
