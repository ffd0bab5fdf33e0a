"""Make sure the items a run needs are present and intact; fetch what is not, after asking.

:func:`ensure_files` checks each item (:mod:`icnn_torch.fetch.items`), and for those that
are absent or damaged: prints them (dry run), or asks once on a terminal, showing the
total download size (estimates marked) and the free space of each target disk, stops
before downloading when a disk cannot hold it, and fetches them one by one, saying why a
present file is replaced. :func:`ensure_plan_files` does this for everything a run's plan
needs, after checking its selection against the data.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, TextIO

from .._util import PathLike, is_terminal
from ..errors import DownloadError, MissingDataError
from ..store.layout import (decoded_feature_path, decoded_feature_zip_name, is_published_tree)
from ..store.published import check_plan
from .items import Check, Item, Place, Size, expand_aliases, human_bytes, item, items_for_plan

if TYPE_CHECKING:
    from ..run.config import RunPlan

__all__ = ["Fetching", "Missing", "ensure_files", "ensure_plan_files", "disk_needs",
           "ASSUME_YES_ENV"]

#: Environment variable that answers the download question (1/yes/true or 0/no/false).
ASSUME_YES_ENV = "ICNN_TORCH_ASSUME_YES"


@dataclasses.dataclass(frozen=True)
class Fetching:
    """How :func:`ensure_files` behaves.

    Attributes
    ----------
    assume_yes : bool or None
        True: download without asking. False: never download, raise. None: use
        ``ICNN_TORCH_ASSUME_YES`` when set, else ask ``[y/N]`` once when ``stdin`` is a
        terminal and raise when it is not.
    progress : bool
        Progress bars (on a terminal).
    timeout : float
        Seconds for connecting and for each read.
    verify : bool
        Check md5s where one is published, load weights that have none, read decoded
        features; without it only sizes (where known) are checked.
    dry_run : bool
        Print what would be fetched (one line per item, on stdout); fetch nothing.
    stdin, stderr : text streams, optional
        Where the question is asked (default: the process's).
    """

    assume_yes: Optional[bool] = None
    progress: bool = True
    timeout: float = 60.0
    verify: bool = False
    dry_run: bool = False
    stdin: Optional[TextIO] = None
    stderr: Optional[TextIO] = None


@dataclasses.dataclass(frozen=True)
class Missing:
    """An item that is not present, and why."""

    item: Item
    check: Check

    def line(self, place: Place) -> str:
        text = self.item.describe(place)
        return text if self.check.state == "absent" else f"{text} [{self.check}]"


def _assume_yes(value: Optional[bool]) -> Optional[bool]:
    if value is not None:
        return value
    text = os.environ.get(ASSUME_YES_ENV, "").strip().lower()
    return True if text in ("1", "y", "yes", "true") else \
        False if text in ("0", "n", "no", "false") else None


def _existing_parent(path: Path) -> Path:
    return next(p for p in (path, *path.resolve().parents) if p.exists())


def disk_needs(missing: Sequence[Missing], place: Place) -> Dict[Path, tuple]:
    """Bytes each target disk needs for ``missing``: ``{folder: (need, estimated, free)}``,
    keyed by the nearest existing folder of the items' targets on that disk.

    The need is what the items occupy once in place plus the largest archive that lies
    beside its unpacked files until it is deleted; ``estimated`` says whether any part of
    it is an estimate. Items of unknown size count as 0.
    """
    disks: Dict[int, list] = {}
    for entry in missing:
        targets = entry.item.targets(place)
        anchor = _existing_parent(targets[0].parent if targets else Path(place.data_dir))
        record = disks.setdefault(anchor.stat().st_dev, [anchor, 0, 0, False])
        final, transient = entry.item.unpacked_size(place), entry.item.transient_size(place)
        record[1] += final.bytes or 0
        record[2] = max(record[2], transient.bytes or 0)
        record[3] |= final.estimated or transient.estimated
    return {anchor: (need + largest, estimated, shutil.disk_usage(anchor).free)
            for anchor, need, largest, estimated in disks.values()}


def _total(missing: Sequence[Missing], place: Place) -> tuple[int, int, int]:
    """(bytes to transfer, of which estimated, items of unknown size)."""
    sizes: List[Size] = [m.item.size(place) for m in missing]
    return (sum(s.bytes or 0 for s in sizes), sum(s.bytes or 0 for s in sizes if s.estimated),
            sum(s.bytes is None for s in sizes))


def _size_lines(missing: Sequence[Missing], place: Place) -> List[str]:
    total, estimated, unknown = _total(missing, place)
    text = f"Total download: {human_bytes(total)}"
    if estimated:
        text += (f" ({human_bytes(estimated)} of it estimated from the layer shapes and label "
                 "counts: no size is published for those files)")
    if unknown:
        text += f"; {unknown} item(s) of unknown size"
    lines = [text + "."]
    for anchor, (need, approx, free) in disk_needs(missing, place).items():
        lines.append(f"Needs {'about ' if approx else ''}{human_bytes(need)} on the disk of "
                     f"{anchor} (free: {human_bytes(free)}).")
    return lines


def _check_space(missing: Sequence[Missing], place: Place) -> None:
    for anchor, (need, approx, free) in disk_needs(missing, place).items():
        if need > free:
            raise DownloadError(
                f"not enough free space: the download needs {'about ' if approx else ''}"
                f"{human_bytes(need)} on the disk of {anchor}, which has {human_bytes(free)} "
                "free; nothing was downloaded")


def ensure_files(names: Sequence[str], place: Place, how: Fetching = Fetching(),
                 expected: Optional[Mapping[str, Sequence[Path]]] = None) -> List[str]:
    """Make sure the named items are present and intact; fetch what is not.

    Parameters
    ----------
    names : sequence of str
        Figshare file names, ``vgg19``, ``generator``, ``fc7_bounds``, ``mean``, ``std``.
    place : Place
        Where they go (data and net folders, caffemodel or PyTorch weights).
    how : Fetching
        Asking, progress, verification, dry run.
    expected : mapping, optional
        Per decoded-feature zip, the files it must provide (a run's subjects, ROIs and
        labels); default every file under its subject folder.

    Returns
    -------
    list of str
        The items downloaded (with ``dry_run``: that would be); empty when all are present
        (then no network is used).

    Raises
    ------
    MissingDataError
        Something is missing and downloading was declined or not allowed (``items``: what
        is missing).
    DownloadError, ChecksumError
        A download failed, a disk cannot hold it, or a name is not a file of the article
        (before any request).
    """
    stdin, stderr = how.stdin or sys.stdin, how.stderr or sys.stderr
    expected = expected or {}
    items = [item(name, place) for name in expand_aliases(names)]
    checks = {i.name: i.check(place, how.verify, expected.get(i.name)) for i in items}
    if how.verify:
        for entry in items:
            found = checks[entry.name]
            if found.ok:
                extra = "" if entry.verifiable_by_md5(place) else " (no md5 is published)"
                stderr.write(f"{entry.name}: intact (checked: {found.how}){extra}\n")
    missing = [Missing(i, checks[i.name]) for i in items if not checks[i.name].ok]
    shown = [m.line(place) for m in missing]
    if how.dry_run or not missing:
        for line in shown:
            print(line)
        if how.dry_run and missing:
            for line in _size_lines(missing, place):
                stderr.write(line + "\n")
        return [m.item.name for m in missing]
    title = f"{len(missing)} item(s) are missing or damaged (data {place.data_dir}, " \
            f"net {place.net_dir}):"
    names_missing = [m.item.name for m in missing]
    assume_yes = _assume_yes(how.assume_yes)
    if assume_yes is None:
        if not is_terminal(stdin):
            raise MissingDataError(shown, names_missing, title=title,
                                   detail="(not asking: standard input is not a terminal)")
        stderr.write("These files are needed:\n  " + "\n  ".join(shown) + "\n" +
                     "\n".join(_size_lines(missing, place)) + "\nDownload them now? [y/N] ")
        stderr.flush()
        assume_yes = stdin.readline().strip().lower() in ("y", "yes")
    if not assume_yes:
        raise MissingDataError(shown, names_missing, title=title)
    _check_space(missing, place)
    fetched = []
    for number, entry in enumerate(missing, 1):
        # KamitaniLab's generator bundle may have brought the original fc7 bounds along
        if entry.item.name == "fc7_bounds" and "generator" in fetched and \
                entry.item.check(place, how.verify).ok:
            continue
        reason = "" if entry.check.state == "absent" else f": replacing it ({entry.check})"
        stderr.write(f"[{number}/{len(missing)}] {entry.item.name}{reason}\n")
        stderr.flush()
        entry.item.fetch(place, entry.check, how.progress, how.timeout)
        fetched.append(entry.item.name)
    return fetched


def ensure_plan_files(plan: "RunPlan", place: Place, how: Fetching = Fetching(),
                      features_dir: Optional[PathLike] = None) -> List[str]:
    """Check a run's selection against the data (:func:`icnn_torch.store.published.check_plan`),
    then :func:`ensure_files` for every file of its plan (:func:`items_for_plan`).

    Parameters
    ----------
    plan : icnn_torch.run.config.RunPlan
    features_dir : path, optional
        The decoded-feature tree the run reads (default ``data_dir/decodedfeatures``, the
        published one, whose zips are downloaded); another tree is checked on disk.

    Raises
    ------
    ConfigError
        Subjects, ROIs, labels or layers the data cannot hold (before any request).
    MissingDataError, DownloadError, ChecksumError
        As :func:`ensure_files`.
    """
    published = is_published_tree(features_dir, place.data_dir)
    check_plan(plan, None if published else features_dir)
    expected = {decoded_feature_zip_name(plan.image_type, plan.network, layer, subject):
                [decoded_feature_path(place.data_dir, plan.image_type, plan.network, layer,
                                      subject, roi, label)
                 for roi in plan.rois for label in plan.labels]
                for subject in plan.subjects for layer in plan.all_layers} if published else {}
    return ensure_files(items_for_plan(plan, place.data_dir, features_dir), place, how,
                        expected)
