"""Tables of results: rows of values written as CSV (atomically, floats to 6 places)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Mapping, Sequence

from .._util import PathLike, atomic_output
from ..errors import OutputError

__all__ = ["format_value", "write_csv"]


def format_value(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def write_csv(rows: Sequence[Mapping[str, object]], path: PathLike) -> Path:
    """Write rows (dicts with the same keys, in column order) to ``path`` atomically; floats
    to 6 places, NaN as ``nan``."""
    if not rows:
        raise ValueError("no rows to write")
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_value(row.get(column, "")) for column in columns])
    path = Path(path)
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}", path) from err
    return path
