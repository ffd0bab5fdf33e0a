"""What a script's results folder says about the results in it: the run record ``run.json``
and the original's ``options.pkl``, and how a run's settings compare with them.

``options.pkl`` holds the engine options as the script gave them (as the original wrote
it; ours with the symbolic values ``'mean'``, ``'zeros'``, ``'fc7_3x'`` instead of arrays,
plain Python values only). ``run.json`` is ours: the *method* (image type, network,
engine, layers or layer sets, the script's options and every option the engine ran with),
the *selection* the folder holds (subjects, ROIs, labels, layer sets, in the script's
order), and one entry per process that wrote results (``runs``: time, rank, device,
library versions, weight files).

Several processes (ranks of one run, or separate runs with the same method and other
selections) may write into one folder: :func:`commit_run_record` reads, merges and writes
the record under an exclusive lock (:func:`icnn_torch._util.file_lock`), so no selection is
lost.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from .. import __version__
from .._util import PathLike, atomic_output, file_lock
from ..errors import DamagedFileError, OutputError
from .layout import OPTIONS_NAME, RUN_RECORD_NAME, recon_jpg_path, snapshot_dir

__all__ = ["RUN_RECORD_FORMAT", "RUN_RECORD_VERSION", "plain_values", "json_plain",
           "write_run_record", "read_run_record", "read_options", "write_options",
           "method_of", "differences", "existing_results", "delete_results",
           "merge_selection", "commit_run_record"]

#: Marks a JSON file as our run record, with the version of its layout.
RUN_RECORD_FORMAT = "icnn-torch run record"
RUN_RECORD_VERSION = 2
#: The fields of a record that decide what a result is (the *method*).
METHOD_FIELDS = ("image_type", "network", "engine")


def plain_values(value: Any) -> Any:
    """Options as plain JSON/pickle values: arrays and numpy scalars become lists/numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_values(v) for v in value)
    return value


def json_plain(value: Any) -> Any:
    """The value as the run record stores it (tuples become lists, arrays lists)."""
    return json.loads(json.dumps(plain_values(value)))


# --------------------------------------------------------------------------- the files

def write_run_record(script_results: PathLike, record: Mapping[str, Any]) -> Path:
    """Write the run record of a script folder (atomically), adding its format marker.

    Parameters
    ----------
    script_results : path
        ``<results_dir>/<script name>``.
    record : mapping
        JSON-serialisable fields (see the module docstring); arrays must already be lists.

    Raises
    ------
    OutputError
        The folder cannot be written.
    """
    body = {"format": RUN_RECORD_FORMAT, "version": RUN_RECORD_VERSION,
            "icnn_torch": __version__, **record}
    path = Path(script_results) / RUN_RECORD_NAME
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}", path) from err
    return path


def read_run_record(script_results: PathLike) -> Optional[dict]:
    """The run record of a script folder, or None when it has none (e.g. results of the
    original code).

    Raises
    ------
    DamagedFileError
        The file exists but is not a run record of ours.
    """
    path = Path(script_results) / RUN_RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DamagedFileError(path, f"not readable as JSON ({err})") from err
    if not isinstance(record, dict) or record.get("format") != RUN_RECORD_FORMAT:
        raise DamagedFileError(path, "not an icnn-torch run record")
    return record


class _PlainUnpickler(pickle.Unpickler):
    """Reads only plain values (dicts, lists, numbers, strings): ours, never code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"not a plain-value pickle (it refers to {module}.{name})")


def read_options(script_results: PathLike) -> Optional[dict]:
    """The options dict of ``options.pkl`` when it holds plain values (ours), else None
    (absent, the original's with numpy arrays, or damaged)."""
    path = Path(script_results) / OPTIONS_NAME
    try:
        with open(path, "rb") as f:
            options = _PlainUnpickler(f).load()
    except Exception:  # noqa: BLE001 - absent, foreign (the original's) or damaged alike
        return None
    return options if isinstance(options, dict) else None


def write_options(script_results: PathLike, options: Mapping[str, Any]) -> Path:
    """``options.pkl``: the engine options dict, pickled, as the original wrote it (ours with
    symbolic values instead of arrays, plain Python values only, binary mode).

    Raises
    ------
    OutputError
        The folder cannot be written.
    """
    path = Path(script_results) / OPTIONS_NAME
    try:
        with atomic_output(path) as tmp:
            tmp.write_bytes(pickle.dumps(plain_values(dict(options)), protocol=4))
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}", path) from err
    return path


# --------------------------------------------------------------------------- comparing

def method_of(record: Mapping[str, Any], display_option: str) -> dict:
    """What decides a result, from a run record: image type, network, engine, layers or
    layer sets, and the engine options without the display option."""
    options = {k: v for k, v in (record.get("options") or {}).items() if k != display_option}
    method = {k: record[k] for k in METHOD_FIELDS if k in record}
    if record.get("layer_sets") is not None:
        method["layer_sets"] = record["layer_sets"]
    elif "layers" in record:
        method["layers"] = record["layers"]
    method["options"] = options
    return method


_MISSING = object()


def _short(value: Any, limit: int = 40) -> str:
    text = "(unset)" if value is _MISSING else json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"name: <old> there, <new> here"`` for every setting of the method ``old`` that
    ``new`` changes (methods as :func:`method_of` gives them)."""
    diffs = []
    for key in (*METHOD_FIELDS, "layers"):
        if key in old and key in new and old[key] != new[key]:
            diffs.append(f"{key}: {_short(old[key])} there, {_short(new[key])} here")
    if ("layer_sets" in old) != ("layer_sets" in new):
        def names(method):
            return _short(list(method["layer_sets"])) if "layer_sets" in method else "none"
        diffs.append(f"layer sets: {names(old)} there, {names(new)} here")
    for name in set(old.get("layer_sets") or {}) & set(new.get("layer_sets") or {}):
        if old["layer_sets"][name] != new["layer_sets"][name]:
            diffs.append(f"layer set {name}: {_short(old['layer_sets'][name])} there, "
                         f"{_short(new['layer_sets'][name])} here")
    old_opts, new_opts = old.get("options", {}), new.get("options", {})
    for key in list(old_opts) + [k for k in new_opts if k not in old_opts]:
        before, after = old_opts.get(key, _MISSING), new_opts.get(key, _MISSING)
        if before != after:
            diffs.append(f"{key}: {_short(before)} there, {_short(after)} here")
    return diffs


def existing_results(script_results: PathLike) -> set[Path]:
    """The ``recon_img-*.mat`` files under a script's results folder (not in snapshots)."""
    root = Path(script_results)
    if not root.is_dir():
        return set()
    return {p for p in root.rglob("recon_img-*.mat")
            if "snapshots" not in p.relative_to(root).parts}


def delete_results(paths: Iterable[Path]) -> None:
    """Remove results (``.mat``, ``.jpg`` and snapshots), e.g. made with other settings."""
    for mat in sorted(paths):
        label = mat.stem[len("recon_img-"):]
        for path in (mat, recon_jpg_path(mat.parent, label)):
            path.unlink(missing_ok=True)
        shutil.rmtree(snapshot_dir(mat.parent, label), ignore_errors=True)


# --------------------------------------------------------------------------- merging

def _in_order(order: Sequence[str], *lists: Iterable[str]) -> list[str]:
    """The union of ``lists``, in ``order`` first, then in order of appearance."""
    union = list(dict.fromkeys(x for values in lists for x in values))
    rank = {x: i for i, x in enumerate(order)}
    return sorted(union, key=lambda x: (rank.get(x, len(rank)), union.index(x)))


def merge_selection(new: Mapping[str, Any], old: Optional[Mapping[str, Any]],
                    order: Mapping[str, Sequence[str]]) -> dict:
    """``new`` with the selection of ``old`` (a record of the same method, or None) added.

    Parameters
    ----------
    new, old : mapping
        Run records.
    order : mapping
        The script's order of ``subjects``, ``rois``, ``labels`` and ``layer_sets``: the
        merged lists follow it, values it lacks come after in order of appearance.

    Returns
    -------
    dict
        ``new`` with the union of both selections, and the ``runs`` of both.
    """
    old = old or {}
    merged = dict(new)
    for key in ("subjects", "rois", "labels"):
        merged[key] = _in_order(order.get(key, ()), old.get(key, []), new[key])
    if new.get("layer_sets") is not None:
        sets = {**(old.get("layer_sets") or {}), **new["layer_sets"]}
        names = _in_order(order.get("layer_sets", ()), sets)
        merged["layer_sets"] = {name: sets[name] for name in names}
        merged["layers"] = list(dict.fromkeys(l for name in names for l in sets[name]))
    merged["runs"] = list(old.get("runs", [])) + list(new.get("runs", []))
    return merged


def commit_run_record(script_results: PathLike, record: Mapping[str, Any],
                      display_option: str, order: Mapping[str, Sequence[str]],
                      options: Optional[Mapping[str, Any]] = None) -> dict:
    """Merge ``record`` into the folder's run record and write it, under the folder's lock.

    The record on disk is read inside the lock, so processes that commit at the same time
    (ranks of a run, or runs of the same method with other selections) each add their
    selection and run entry; a record of another method (or none, or a damaged one) is
    replaced. ``options.pkl`` is written in the same locked step when ``options`` is given.

    Returns
    -------
    dict
        The record as written (without its format fields).

    Raises
    ------
    OutputError
        The folder cannot be written.
    """
    root = Path(script_results)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write into {root}: {err.strerror or err}", root) from err
    with file_lock(root / f".{RUN_RECORD_NAME}.lock"):
        try:
            old = read_run_record(root)
        except DamagedFileError:
            old = None
        same = old is not None and \
            not differences(method_of(old, display_option), method_of(record, display_option))
        merged = merge_selection(record, old if same else None, order)
        if options is not None:
            write_options(root, options)
        write_run_record(root, merged)
    return merged
