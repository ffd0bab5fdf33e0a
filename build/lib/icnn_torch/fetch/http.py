"""The resuming downloader: ``pooch.retrieve`` with a downloader of ours that transfers into
``<dest>.part``, resumes a cut or stalled transfer with an HTTP ``Range`` request (a 200
answer restarts it), retries, and checks size and md5 before anything lands under the
final name (a mismatch deletes the file).

Sources (:func:`remote_url`; an environment variable, read at call time, wins over the
default: that is how the tests use a local server): ``ICNN_TORCH_FIGSHARE_API``
(https://api.figshare.com/v2), ``ICNN_TORCH_FIGSHARE_FILES``
(https://ndownloader.figshare.com/files/<id>), ``ICNN_TORCH_VGG19_URL`` (the VGG group's
page), ``ICNN_TORCH_DEEPSIM_URL`` (the Freiburg LMB page), ``ICNN_TORCH_FC7_BOUNDS_URL``
(the original repository's fc7.txt), ``ICNN_TORCH_ICNN_RAW_URL`` (the original icnn
repository's files, for the self-check).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Callable, Optional

import pooch
import requests
import urllib3
from tqdm import tqdm

from .. import __version__
from .._util import PathLike, is_terminal
from ..errors import ChecksumError, DownloadError

__all__ = ["fetch", "remote_url", "USER_AGENT"]

_URL_ENV = {
    "figshare_api": ("ICNN_TORCH_FIGSHARE_API", "https://api.figshare.com/v2"),
    "figshare_files": ("ICNN_TORCH_FIGSHARE_FILES", "https://ndownloader.figshare.com/files"),
    "vgg19": ("ICNN_TORCH_VGG19_URL", "http://www.robots.ox.ac.uk/~vgg/software/very_deep/"
                                      "caffe/VGG_ILSVRC_19_layers.caffemodel"),
    "deepsim": ("ICNN_TORCH_DEEPSIM_URL", "https://lmb.informatik.uni-freiburg.de/resources/"
                "binaries/arxiv2016_alexnet_inversion_with_gans/release_deepsim_v0.zip"),
    "fc7_bounds": ("ICNN_TORCH_FC7_BOUNDS_URL", "https://raw.githubusercontent.com/KamitaniLab/"
                   "DeepImageReconstruction/master/data/act_range/3x/fc7.txt"),
    "icnn_raw": ("ICNN_TORCH_ICNN_RAW_URL", "https://raw.githubusercontent.com/KamitaniLab/icnn"),
}

USER_AGENT = f"icnn-torch/{__version__}"
CHUNK_SIZE = 1 << 16
#: Seconds to wait before retry ``k`` (1-based) is ``RETRY_WAIT * k``.
RETRY_WAIT = 0.5


def remote_url(key: str) -> str:
    """Address of a remote source: ``figshare_api``, ``figshare_files``, ``vgg19``,
    ``deepsim``, ``fc7_bounds`` or ``icnn_raw``; the environment variable wins over the
    default."""
    env, default = _URL_ENV[key]
    return os.environ.get(env, "").strip() or default


class _Cut(Exception):
    """The body ended before its Content-Length (or a resume got the wrong range)."""


def _retryable(err: BaseException) -> bool:
    if isinstance(err, requests.HTTPError):
        return err.response.status_code >= 500 or err.response.status_code in (408, 429)
    return isinstance(err, (_Cut, requests.ConnectionError, requests.Timeout,
                            requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError,
                            ConnectionError, TimeoutError))


@dataclasses.dataclass
class _ResumingDownloader:
    """A pooch downloader: transfers into ``part``, resuming it, then hands it to pooch
    (which checks the md5 and moves it onto the destination)."""

    part: Path
    size: Optional[int]
    timeout: float
    retries: int
    progress: bool
    label: str
    received: int = 0

    def __call__(self, url: str, output_file: str, _pooch, check_only: bool = False) -> None:
        for attempt in range(self.retries + 1):
            try:
                self._transfer(url)
                break
            except Exception as err:  # noqa: BLE001 - classified here
                if isinstance(err, requests.HTTPError) and not _retryable(err):
                    raise DownloadError(f"{self.label}: HTTP {err.response.status_code} "
                                        f"{err.response.reason} from {url}") from err
                if not _retryable(err) or attempt == self.retries:
                    kept = self.part.stat().st_size if self.part.exists() else 0
                    raise DownloadError(
                        f"{self.label}: download from {url} failed after {attempt + 1} "
                        f"attempt(s): {err}." + (f" {kept} bytes are kept in {self.part}; "
                                                 "running the download again resumes from "
                                                 "there." if kept else "")) from err
                time.sleep(RETRY_WAIT * (attempt + 1))
        self.received = self.part.stat().st_size
        if self.size is not None and self.received != self.size:
            self.part.unlink()
            raise ChecksumError(f"{self.label}: downloaded file has {self.received} bytes, "
                                f"expected {self.size}. The bad file was deleted; run the "
                                f"download again. Source: {url}")
        os.replace(self.part, output_file)

    def _transfer(self, url: str) -> None:
        have = self.part.stat().st_size if self.part.exists() else 0
        if self.size is not None and have >= self.size:
            if have == self.size:
                return
            self.part.unlink()
            have = 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                   **({"Range": f"bytes={have}-"} if have else {})}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416 and have:
                return  # nothing beyond what we have: the checksum decides
            response.raise_for_status()
            length = response.headers.get("Content-Length", "")
            length = int(length) if length.isdigit() else None
            mode = "wb"  # a fresh download, or a server that ignored Range: start over
            if have and response.status_code == 206:
                match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != have:
                    self.part.unlink()  # the next attempt starts from zero
                    raise _Cut(f"bytes={have}- was answered with "
                               f"{response.headers.get('Content-Range')!r}")
                mode = "ab"
            have, received = (have if mode == "ab" else 0), 0
            with open(self.part, mode) as out, \
                    tqdm(total=have + length if length is not None else self.size, initial=have,
                         unit="B", unit_scale=True, unit_divisor=1024, desc=self.label,
                         disable=not self.progress, leave=False) as bar:
                # read1 returns what has arrived, so a read that times out loses nothing
                # already received and the resume offset is exact
                while chunk := response.raw.read1(CHUNK_SIZE):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if length is not None and received < length:
            raise _Cut(f"connection closed after {received} of {length} bytes")


def fetch(url: str, dest: PathLike, md5: Optional[str] = None, size: Optional[int] = None,
          progress: bool = True, timeout: float = 60.0, retries: int = 3,
          label: Optional[str] = None, processor: Optional[Callable] = None) -> Path:
    """Download ``url`` to ``dest`` with resume and verification (``pooch.retrieve``).

    Parameters
    ----------
    dest : path-like
        Final path. Nothing is fetched when it exists and matches ``md5`` and ``size``
        (each when given); a file of another size is deleted first.
    md5, size : optional
        Expected hex md5 (checked by pooch) and size in bytes.
    progress : bool
        tqdm bar on stderr, shown when stderr is a terminal.
    timeout : float
        Seconds for connecting and for each read.
    retries : int
        Further attempts after a cut transfer, a timeout, a connection error or an HTTP
        5xx, each resuming ``dest + '.part'`` with ``Range``.
    label : str, optional
        Name in messages and on the bar (default ``dest``'s name).
    processor : callable, optional
        A pooch processor ``(path, action, pooch)`` run on the file (e.g. unpacking).

    Returns
    -------
    Path
        ``dest``, or what ``processor`` returns.

    Raises
    ------
    ChecksumError
        md5 or size mismatch; the file is deleted, the message names both values.
    DownloadError
        HTTP error or too many failed attempts (the ``.part`` is kept for resuming).
    """
    dest = Path(dest)
    label, md5 = label or dest.name, md5.lower() if md5 else None
    if dest.is_file() and size is not None and dest.stat().st_size != size:
        dest.unlink()  # damaged: it does not count as present
    downloader = _ResumingDownloader(dest.with_name(dest.name + ".part"), size, timeout,
                                     retries, progress and is_terminal(), label)
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # pooch logs each download and suggests hashes
    try:
        result = pooch.retrieve(url, known_hash=f"md5:{md5}" if md5 else None,
                                fname=dest.name, path=dest.parent, downloader=downloader,
                                processor=processor)
    except ValueError as err:  # pooch's hash mismatch (it deleted the file)
        got = re.search(r"but got (\w+)", str(err))
        if got is None:
            raise
        raise ChecksumError(
            f"{label}: downloaded file is corrupt: md5 {got.group(1)} ({downloader.received} "
            f"bytes) but expected {md5}{f' ({size} bytes)' if size is not None else ''}. "
            f"The bad file was deleted; run the download again. Source: {url}") from err
    finally:
        logger.setLevel(level)
    return result if processor is not None else dest
