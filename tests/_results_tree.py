"""Small results trees for the evaluation and figure tests: run records written from the
scripts' own constants (as a run writes them), reconstructions and stimulus images."""

import dataclasses
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from icnn_torch.store.layout import recon_jpg_path
from icnn_torch.store.record import write_run_record
from icnn_torch.run.config import ScriptConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def write_record(results_dir: Path, script: str, folder_name: str = None, **constants):
    """Write ``<results_dir>/<folder>/run.json`` from the constants of ``<script>.py`` of
    the project (any of them replaced by ``constants``), as a run of that script writes
    it; return the plan."""
    cfg = ScriptConfig.from_file(PROJECT_ROOT / f"{script}.py")
    if folder_name is not None:
        constants["script_file"] = str(PROJECT_ROOT / f"{folder_name}.py")
    cfg = dataclasses.replace(cfg, **constants)
    plan = cfg.plan()
    write_run_record(results_dir / plan.script_name, plan.to_record())
    return plan


def save_recon(folder: Path, label: str, img: np.ndarray, with_jpg: bool = False) -> None:
    """``recon_img-<label>.mat`` holding ``img`` as is; with ``with_jpg`` also the JPEG of
    its pixels clipped to 0..255 (not the scripts' normalisation, so that a solid colour
    stays that colour)."""
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"recon_img-{label}.mat", {"recon_img": img})
    if with_jpg:
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            recon_jpg_path(folder, label), quality=95)


def save_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def panel_texts(fig, gid: str) -> list:
    """The texts of a figure panel with this ``gid`` (``icnn_torch.analysis.panel.GID_*``)."""
    return [text.get_text() for text in fig.texts if text.get_gid() == gid]


def panel_grid(fig) -> list:
    """The cells of a figure panel as rows (top to bottom) of axes (left to right)."""
    from icnn_torch.analysis.panel import GID_IMAGE, GID_MISSING

    rows: dict = {}
    for ax in fig.axes:
        if ax.get_gid() in (GID_IMAGE, GID_MISSING):
            x0, y0, _, _ = ax.get_position(original=True).bounds  # the cell, not the image
            rows.setdefault(round(y0, 6), []).append((x0, ax))
    return [[ax for _, ax in sorted(row, key=lambda item: item[0])]
            for _, row in sorted(rows.items(), reverse=True)]
