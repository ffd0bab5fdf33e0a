"""The package as users get it: installed (not editable) and used from another folder, and the
figure scripts without the decoding packages.

- ``pip install --target`` of this checkout, then a copy of script 2 in another folder,
  run from a third folder with only the installed package importable: its ``data_dir`` and
  ``net_dir`` constants point at the synthetic tree, nothing else tells it where the
  project is (no ``ICNN_TORCH_ROOT``); the run also needs the package data (the published
  file list);
- the figure scripts, ``download``, ``evaluate``, ``figure`` and ``selfcheck`` import and
  run with bdpy and fastl2lir unimportable (they are the ``decoding`` extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import scipy.io

from _project_tree import REPO, check_outputs, script_copy, script_env

SCRIPT2 = "2_reconstruct_natural_image_without_DGN"


def test_installed_package_runs_a_script_copy_from_another_folder(project_root, tmp_path):
    # a copy of what the package is built from, so that setuptools' build folder lands there
    source = tmp_path / "source"
    shutil.copytree(REPO / "icnn_torch", source / "icnn_torch",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-compile", "--disable-pip-version-check", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    assert (site / "icnn_torch" / "store" / "article_7033577_files.csv").is_file()

    elsewhere = tmp_path / "my_analysis"
    elsewhere.mkdir()
    data, net = project_root / "data", project_root / "net"
    script = script_copy(elsewhere, SCRIPT2, "my_figure",
                         f"data_dir = {str(data)!r}\nnet_dir = {str(net)!r}\n"
                         "decoded_features_dir = data_dir + '/decodedfeatures'")
    cwd = tmp_path / "somewhere_else"
    cwd.mkdir()
    env = script_env(project_root, PYTHONPATH=str(site))
    del env["ICNN_TORCH_ROOT"]
    where = subprocess.run([sys.executable, "-c", "import icnn_torch; print(icnn_torch.__file__)"],
                           cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    proc = subprocess.run([sys.executable, str(script), "--subjects", "S1", "--labels",
                           "Img0002", "--iterations", "1", "--snapshot-every", "0"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out_dir = elsewhere / "results" / "my_figure" / "S1" / "VC"  # beside the script
    check_outputs(out_dir, "Img0002", None)
    assert scipy.io.loadmat(out_dir / "recon_img-Img0002.mat")["recon_img"].shape == (224, 224, 3)
    assert not (cwd / "results").exists()


def _blocked_env(project_root: Path, tmp_path: Path) -> dict:
    """An environment where ``import bdpy`` and ``import fastl2lir`` fail."""
    blocker = tmp_path / "blocker"
    (blocker / "bdpy").mkdir(parents=True)
    (blocker / "bdpy" / "__init__.py").write_text("raise ImportError('bdpy blocked by the test')")
    (blocker / "fastl2lir.py").write_text("raise ImportError('fastl2lir blocked by the test')")
    return script_env(project_root, PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]))


def test_figure_scripts_run_without_the_decoding_packages(project_root, tmp_path):
    env = _blocked_env(project_root, tmp_path)
    for module in ("bdpy", "fastl2lir"):  # the blocker works
        probe = subprocess.run([sys.executable, "-c", f"import {module}"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 1 and "blocked by the test" in probe.stderr
    imports = subprocess.run(
        [sys.executable, "-c", "import icnn_torch.download, icnn_torch.evaluate, "
         "icnn_torch.figure, icnn_torch.selfcheck, icnn_torch.run.steps, icnn_torch.models"],
        env=env, capture_output=True, text=True, timeout=120)
    assert imports.returncode == 0, imports.stderr[-2000:]
    proc = subprocess.run([sys.executable, str(REPO / "6_reconstruct_alphabet_image.py"),
                           "--subjects", "S1", "--labels", "Img0005", "--iterations", "1",
                           "--snapshot-every", "0", "--results-dir", str(tmp_path / "results")],
                          env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
