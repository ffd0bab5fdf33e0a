"""Small helpers with one home each: path type, atomic output, file lock, file md5, terminal
check.

Nothing here imports torch, so the command-line entry points can use it before their
heavy imports.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator, TextIO, Union

__all__ = ["PathLike", "atomic_output", "file_lock", "file_md5", "is_terminal"]

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


#: Seconds a lock directory may stay before it counts as left behind by a killed process.
STALE_LOCK_SECONDS = 600.0


@contextlib.contextmanager
def file_lock(path: PathLike, timeout: float = 600.0, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive lock named ``path`` (created if needed) for the block.

    POSIX ``fcntl.flock`` on the file ``path`` when the platform and file system offer it
    (released by the kernel even when the process is killed). Elsewhere (Windows, or a
    network file system that refuses locks) the lock is the directory ``path + '.d'``:
    ``mkdir`` is atomic everywhere; one older than :data:`STALE_LOCK_SECONDS` counts as
    left behind by a killed process and is taken over.

    Raises
    ------
    TimeoutError
        The lock was not obtained within ``timeout`` seconds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None
    if fcntl is not None:
        handle = open(path, "a+b")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
            else:
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                return
        finally:
            handle.close()
    with _directory_lock(Path(f"{path}.d"), timeout, poll):
        yield


@contextlib.contextmanager
def _directory_lock(folder: Path, timeout: float, poll: float) -> Iterator[None]:
    """The fallback of :func:`file_lock`: an atomic ``mkdir``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            folder.mkdir()
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > STALE_LOCK_SECONDS:
                    folder.rmdir()
                    continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not lock {folder} within {timeout:.0f} s") from None
            time.sleep(poll)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            folder.rmdir()


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: standard error) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def file_md5(path: PathLike) -> str:
    """Hex md5 of a file (read in 1 MiB blocks)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
