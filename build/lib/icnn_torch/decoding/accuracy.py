"""Decoding accuracy: decoded features against the true features of the test images.

Per (subject, ROI, layer), the three measures of the lab's feature-decoding evaluation:

``profile_correlation``
    Pearson correlation, for each unit, of its decoded and true values across the test
    images; the mean over units (units constant in either are left out).
``pattern_correlation``
    Pearson correlation, for each test image, of its decoded and true feature vectors
    after both are normalised with the units' training mean and SD (as the lab's
    evaluation does); the mean over images.
``identification_accuracy``
    Pairwise identification: for each decoded vector, the fraction of the other test
    images whose true features correlate less with it than its own image's do; the
    mean over images (chance 0.5). With one row per trial, each trial is identified
    against the images.

Pattern correlation and identification are bdpy's (``bdpy.evals.metrics``); the profile
correlation is computed here in one pass over all units (:func:`profile_correlation`,
equal to bdpy's per-unit loop, which needs minutes for the 3.2 M units of conv1_1).

The results go to a CSV (written atomically) and a printed table.
"""

from __future__ import annotations

import warnings
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .._util import PathLike
from ..analysis.tables import write_csv

__all__ = ["METRICS", "profile_correlation", "decoding_accuracy", "accuracy_table",
           "write_accuracy_csv"]

METRICS = ("profile_correlation", "pattern_correlation", "identification_accuracy")
COLUMNS = ("subject", "roi", "layer", "n_items", "n_units") + METRICS


def profile_correlation(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Pearson correlation of each unit across samples.

    Parameters
    ----------
    pred, true : ndarray, shape (n_samples, ...)

    Returns
    -------
    ndarray, shape (n_units,), float64
        NaN for a unit constant in ``pred`` or ``true``.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    t = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    if p.shape != t.shape:
        raise ValueError(f"decoded features {p.shape} and true features {t.shape} differ")
    p = p - p.mean(axis=0)
    t = t - t.mean(axis=0)
    denominator = np.sqrt((p * p).sum(axis=0) * (t * t).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (p * t).sum(axis=0) / denominator, np.nan)


def decoding_accuracy(pred: np.ndarray, true: np.ndarray, train_mean: np.ndarray,
                      train_sd: np.ndarray, pred_labels: Optional[Sequence[str]] = None,
                      true_labels: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """The three measures of one layer (see the module docstring).

    Parameters
    ----------
    pred : ndarray, (n_items, ...)
        Decoded features.
    true : ndarray, (n_images, ...)
        True features; row i belongs to ``pred`` row i unless labels are given.
    train_mean, train_sd : ndarray, (n_units,)
        The units' training mean and SD (units of SD 0 are left out of the pattern
        correlation).
    pred_labels, true_labels : sequence of str, optional
        For one row per trial: the image of each ``pred`` row, and of each ``true`` row.

    Returns
    -------
    dict
        ``profile_correlation``, ``pattern_correlation``, ``identification_accuracy``
        (floats; NaN when undefined).
    """
    from bdpy.evals.metrics import pairwise_identification, pattern_correlation
    p = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    t = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    sd = np.asarray(train_sd, dtype=np.float64).reshape(-1)
    mean = np.asarray(train_mean, dtype=np.float64).reshape(-1)
    sd = np.where(sd > 0, sd, np.nan)  # bdpy drops the NaN columns this makes
    single_trial = pred_labels is not None
    if single_trial:
        row = {label: i for i, label in enumerate(true_labels)}
        t_items = t[[row[label] for label in pred_labels]]
    else:
        t_items = t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # bdpy's "NaN column removed"
        profile = float(np.nanmean(profile_correlation(p, t_items))) \
            if len(p) > 1 else float("nan")
        pattern = float(np.nanmean(pattern_correlation(p, t_items, mean=mean, std=sd)))
        if len(t) > 1:
            ident = pairwise_identification(p, t, single_trial=single_trial,
                                            pred_labels=pred_labels, true_labels=true_labels)
            identification = float(np.nanmean(ident))
        else:
            identification = float("nan")
    return {"profile_correlation": profile, "pattern_correlation": pattern,
            "identification_accuracy": identification}


def write_accuracy_csv(rows: Sequence[Mapping[str, object]], path: PathLike):
    """The rows (columns :data:`COLUMNS`) as a CSV, atomically; floats to 6 places."""
    return write_csv([{c: row[c] for c in COLUMNS} for row in rows], path)


def accuracy_table(rows: Sequence[Mapping[str, object]]) -> str:
    """A plain-text table of the rows."""
    if not rows:
        return "(no decoded layers to evaluate)"
    header = (f"{'subject':<8} {'roi':<6} {'layer':<8} {'n':>4} {'units':>9} "
              f"{'profile r':>10} {'pattern r':>10} {'ident.':>8}")
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['subject']:<8} {row['roi']:<6} {row['layer']:<8} "
                     f"{row['n_items']:>4} {row['n_units']:>9} "
                     f"{row['profile_correlation']:>10.4f} {row['pattern_correlation']:>10.4f} "
                     f"{row['identification_accuracy']:>8.4f}")
    return "\n".join(lines)


def rows_in_order(rows: List[dict], subjects: Sequence[str], rois: Sequence[str],
                  layers: Sequence[str]) -> List[dict]:
    """Rows sorted as the run lists subjects, ROIs and layers."""
    def key(row):
        return (subjects.index(row["subject"]), rois.index(row["roi"]),
                layers.index(row["layer"]))
    return sorted(rows, key=key)
