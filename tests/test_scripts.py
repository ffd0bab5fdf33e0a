"""The seven figure scripts, end to end, on a synthetic project tree.

The tree (built once per session) holds everything the scripts read, in the original
layout: random-weight caffemodels (VGG19 in Caffe's V1 format, the generator in V2),
decoded features that are the true features of random smooth images (so
reconstruction has something to find), std files, the fc7 bounds and the image mean.
Each script runs as a subprocess, as a user runs it, with the documented command-line
overrides (one subject, one or two labels, one iteration) and ``ICNN_TORCH_ROOT``
pointing at the tree.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.ndimage

from icnn_torch.store import layout

from _project_tree import (KILL_LABELS, LAYER_SETS, REPO, SCRIPTS, check_outputs,
                           one_error_line, read_options, read_record, run, script_copy,
                           script_env)

@pytest.mark.parametrize("script", list(SCRIPTS))
def test_script_runs_and_writes_the_original_tree(project_root, script):
    image_type, network, pairs, extra = SCRIPTS[script]
    labels = sorted({label for _, label in pairs})
    proc = run(script, project_root, "--subjects", "S1", "--labels", ",".join(labels),
                "--iterations", "1", "--snapshot-every", "1", *extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = project_root / "results" / script
    with open(results / "options.pkl", "rb") as f:
        options = pickle.load(f)
    assert options["loss_type"] == "l2"
    assert options["iter_n" if script.startswith("1_") else "maxiter"] == 1
    sets = LAYER_SETS if script.startswith("3_") else [None]
    for layer_set in sets:
        base = results / layer_set if layer_set else results
        for roi, label in pairs:
            out_dir = base / "S1" / roi
            img = check_outputs(out_dir, label, np.float32 if script.startswith("1_") else None)
            snaps = sorted((out_dir / "snapshots" / f"image-{label}").glob("0*.jpg"))
            first = "00001.jpg" if script.startswith("1_") else "00000.jpg"
            assert snaps and snaps[0].name == first
            if not script.startswith("1_"):
                assert img.min() >= -1e-3 and img.max() <= 255 + 1e-3  # the L-BFGS pixel box
    assert "iter=" in proc.stdout  # not a terminal: the original's progress lines
    assert "image mean: per-channel average" in proc.stdout


def test_rerun_skips_finished_and_force_redoes(project_root):
    script = "6_reconstruct_alphabet_image"
    args = ("--subjects", "S1", "--labels", "Img0005", "--iterations", "1", "--snapshot-every", "0")
    first = run(script, project_root, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    mat = project_root / "results" / script / "S1" / "VC" / "recon_img-Img0005.mat"
    stamp = mat.stat().st_mtime_ns
    again = run(script, project_root, *args)
    assert again.returncode == 0 and "1 already done" in again.stdout
    assert mat.stat().st_mtime_ns == stamp
    forced = run(script, project_root, *args, "--force")
    assert forced.returncode == 0 and "0 already done" in forced.stdout
    assert mat.stat().st_mtime_ns != stamp


def test_killed_run_resumes_without_redoing_or_corrupting(project_root, tmp_path):
    """SIGKILL script 2 after its first image; the rerun does only the second one."""
    script = "2_reconstruct_natural_image_without_DGN"
    args = ["--subjects", "S1", "--labels", ",".join(KILL_LABELS), "--iterations", "8",
            "--snapshot-every", "0", "--results-dir", str(tmp_path / "results")]
    env = script_env(project_root)
    out_dir = tmp_path / "results" / script / "S1" / "VC"
    first_mat = out_dir / f"recon_img-{KILL_LABELS[0]}.mat"
    proc = subprocess.Popen([sys.executable, str(REPO / f"{script}.py"), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not first_mat.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first_mat.exists(), "the first reconstruction never finished"
        time.sleep(0.5)  # well inside the second reconstruction
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    second_mat = out_dir / f"recon_img-{KILL_LABELS[1]}.mat"
    assert not second_mat.exists(), "the run finished before it was killed; test is void"
    stamp = first_mat.stat().st_mtime_ns
    check_outputs(out_dir, KILL_LABELS[0], None)

    rerun = run(script, project_root, *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "1 already done" in rerun.stdout
    assert first_mat.stat().st_mtime_ns == stamp
    for label in KILL_LABELS:
        check_outputs(out_dir, label, None)


def test_missing_data_names_the_download_command(project_root, tmp_path):
    """With no terminal and a feature file absent, stop with the command, touch no network."""
    import shutil
    root = tmp_path / "incomplete"
    shutil.copytree(project_root / "data", root / "data",
                    ignore=shutil.ignore_patterns("conv5_4"))
    os.symlink(project_root / "net", root / "net")
    proc = run("4_reconstruct_shape_image", root, "--subjects", "S1", "--labels", "Img0001",
                "--iterations", "1", timeout=120)
    assert proc.returncode != 0
    assert "python -m icnn_torch.download" in proc.stderr
    assert "decodedfeatures-color_shape-VGG19-conv5_4-S1.zip" in proc.stderr


# --------------------------------------------------------------------------- copies of the scripts

COPY_OF_1 = """
image_type = 'color_shape'
subjects_list = ['S1']
rois_list = ['V1']
image_label_list = ['Img0004']
layers = ['conv1_1', 'conv3_1', 'fc7']
engine = 'icnn_dgn_lbfgs'
opts = {'loss_type': 'l2', 'maxiter': 2, 'disp': None, 'initial_gen_feat': 'zeros'}
"""

COPY_OF_2 = """
image_type = 'alphabet'
subjects_list = ['S1']
image_label_list = ['Img0005']
layers = ['conv2_1', 'conv4_2', 'fc6', 'fc8']
engine = 'icnn_dgn_gd'
opts = {'loss_type': 'l2', 'iter_n': 2, 'disp_every': None, 'lr_start': 2., 'lr_end': 1e-10,
        'momentum_start': 0.9, 'momentum_end': 0.9, 'decay_start': 0.01, 'decay_end': 0.01,
        'feat_lower_bound': 0., 'feat_upper_bound': 'fc7_3x', 'initial_gen_feat': 'zeros'}
"""


@pytest.mark.parametrize("source, name, edits, expected", [
    ("1_reconstruct_natural_image", "8_my_shape_variant", COPY_OF_1,
     dict(image_type="color_shape", engine="icnn_dgn_lbfgs", subjects=["S1"], rois=["V1"],
          labels=["Img0004"], layers=["conv1_1", "conv3_1", "fc7"], iterations=2,
          figure_title="Fig 2. Seen natural image reconstructions")),
    ("2_reconstruct_natural_image_without_DGN", "my_letters_with_dgn", COPY_OF_2,
     dict(image_type="alphabet", engine="icnn_dgn_gd", subjects=["S1"], rois=["VC"],
          labels=["Img0005"], layers=["conv2_1", "conv4_2", "fc6", "fc8"], iterations=2,
          figure_title="Fig 3A. Effect of the deep generator network (DGN)")),
])
def test_an_edited_copy_of_a_script_runs_and_records_itself(project_root, tmp_path, source,
                                                             name, edits, expected):
    script = script_copy(tmp_path, source, name, edits)
    results_root = tmp_path / "results"
    proc = run(script, project_root, "--results-dir", str(results_root))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = results_root / name
    out_dir = folder / "S1" / expected["rois"][0]
    label = expected["labels"][0]
    check_outputs(out_dir, label, None)
    record = read_record(folder)
    for key, value in expected.items():
        assert record[key] == value, key
    assert record["script"] == name and record["network"] == "VGG19"
    assert record["layer_sets"] is None
    assert record["snapshot_every"] == 1 and record["batch_size"] == 1
    # what really ran: every option of the engine (the script's, and the defaults), the
    # device, the versions and the weight files
    import inspect
    import scipy
    import torch
    from icnn_torch import __version__
    from icnn_torch.recon.engines import engine_info
    engine = engine_info(expected["engine"]).load()
    keywords = set(inspect.signature(engine.reconstruct_image).parameters) - {
        "features", "net", "net_gen", "save_intermediate", "save_intermediate_every"}
    assert set(record["engine_options"]) == keywords
    assert record["engine_options"]["loss_type"] == "l2"
    [entry] = record["runs"]
    assert entry["device"].startswith("cpu") and entry["rank"] == 0 and entry["world_size"] == 1
    assert entry["versions"]["icnn_torch"] == __version__
    assert entry["versions"]["torch"] == torch.__version__
    assert entry["versions"]["numpy"] == np.__version__
    assert entry["versions"]["scipy"] == scipy.__version__
    files = {Path(f["path"]).name: f for f in entry["files"]}
    for weights in ("VGG_ILSVRC_19_layers.caffemodel", "generator.caffemodel"):
        path = Path(files[weights]["path"])
        assert files[weights]["size"] == path.stat().st_size
    if expected["engine"] == "icnn_dgn_gd":  # the paper's bounds: named with their file
        bounds = record["engine_options"]["feat_upper_bound"]
        assert bounds["symbol"] == "fc7_3x" and bounds["file"].endswith("act_range/3x/fc7.txt")
        assert files["fc7.txt"]["md5"] == bounds["md5"]
        assert "not the paper's fc7 bounds" not in proc.stdout
    else:  # icnn_dgn_lbfgs without gen_feat_bounds: the engine's default, and one line says so
        assert record["engine_options"]["gen_feat_bounds"] is None
        assert "runs with gen_feat_bounds = None (the engine's default: (0, 100) per unit), " \
               "not the paper's fc7 bounds" in proc.stdout
    assert Path(record["decoded_features_dir"]).parts[-2:] == ("data", "decodedfeatures")
    iteration_key = "iter_n" if expected["engine"] == "icnn_dgn_gd" else "maxiter"
    assert record["options"][iteration_key] == 2
    assert read_options(folder) == record["options"]  # options.pkl: the same engine options
    # the generator was used (the DGN engines save its start with the snapshots), and the
    # script's default snapshot period of 1 saved every step
    snaps = out_dir / "snapshots" / f"image-{label}"
    assert (snaps / "initial_gen_feat.mat").is_file()
    numbers = sorted(int(p.stem) for p in snaps.glob("0*.jpg"))
    if expected["engine"] == "icnn_dgn_gd":
        assert numbers == [1, 2]  # one per iteration
    else:
        assert numbers[0] == 0 and numbers == list(range(len(numbers))) and len(numbers) >= 3


def _tree_without_generator(project_root: Path, root: Path) -> Path:
    (root / "net").mkdir(parents=True)
    os.symlink(project_root / "data", root / "data")
    vgg_dir = (project_root / "net" / layout.VGG19_CAFFEMODEL_RELPATH).parent
    os.symlink(vgg_dir, root / "net" / vgg_dir.name)
    return root


def test_generator_is_checked_exactly_for_dgn_engines(project_root, tmp_path):
    """Script 2 runs without the generator; its copy switched to icnn_dgn_gd asks for it."""
    root = _tree_without_generator(project_root, tmp_path / "no_generator")
    args = ("--iterations", "1", "--snapshot-every", "0", "--results-dir", str(tmp_path / "r"))
    plain = run("2_reconstruct_natural_image_without_DGN", root, "--subjects", "S1",
                 "--labels", "Img0002", *args)
    assert plain.returncode == 0, plain.stderr[-3000:]
    copy = script_copy(tmp_path, "2_reconstruct_natural_image_without_DGN", "2_with_dgn",
                        COPY_OF_2)
    proc = run(copy, root, *args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "generator" in lines[0] and "python -m icnn_torch.download" in lines[0]


# --------------------------------------------------------------------------- one-line failures

def test_offline_run_without_data_is_one_line(tmp_path):
    """``python 1_reconstruct_natural_image.py </dev/null`` in an empty project, offline."""
    root = tmp_path / "empty"
    root.mkdir()
    line = one_error_line(run("1_reconstruct_natural_image", root, timeout=120))
    assert "python -m icnn_torch.download" in line
    assert "not a terminal" in line
    assert "data_dir" in line and "net_dir" in line  # the constants that say where they are
    debug = run("1_reconstruct_natural_image", root, "--debug", timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "MissingDataError" in debug.stderr
    assert not (root / "results").exists()  # a run that fails before its work leaves nothing


@pytest.mark.parametrize("how", ["read-only folder", "a file in the way"])
def test_unwritable_results_dir_is_one_line(project_root, tmp_path, how):
    if how == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        results_dir = tmp_path / "readonly"
        results_dir.mkdir()
        results_dir.chmod(0o555)
    else:
        (tmp_path / "file").write_text("not a folder")
        results_dir = tmp_path / "file" / "results"
    try:
        proc = run("6_reconstruct_alphabet_image", project_root, "--subjects", "S1",
                    "--labels", "Img0005", "--iterations", "1", "--results-dir",
                    str(results_dir), timeout=120)
    finally:
        if how == "read-only folder":
            results_dir.chmod(0o755)
    line = one_error_line(proc)
    assert "cannot write into" in line and "--results-dir" in line
    assert "6_reconstruct_alphabet_image" in line


def _bad_feature_tree(project_root: Path, tmp_path: Path, bad: np.ndarray) -> Path:
    """A decoded-feature tree with the true conv5_4 file and a replaced fc8 file."""
    tree = tmp_path / "my_decoded"
    for layer in ("conv5_4", "fc8"):
        src = layout.decoded_feature_path(project_root / "data", "alphabet", "VGG19", layer, "S1",
                                        "VC", "Img0005")
        dst = layout.decode_feature_filename(tree, "alphabet", "VGG19", layer, "S1", "VC",
                                           "Img0005")
        dst.parent.mkdir(parents=True)
        if layer == "fc8":
            scipy.io.savemat(dst, {"feat": bad})
        else:
            os.symlink(src, dst)
    return tree


@pytest.mark.parametrize("bad, message", [
    (np.ones((1, 10), np.float32), "layer fc8 has features of shape (10,), but VGG19's fc8 gives (1000,)"),
    (np.full((1, 1000), np.nan, np.float32), "layer fc8 has NaN or infinite features"),
    (np.zeros((1, 1000), np.float32), "layer fc8 has all-zero features"),
])
def test_bad_decoded_features_are_one_line_naming_the_file(project_root, tmp_path, bad, message):
    tree = _bad_feature_tree(project_root, tmp_path, bad)
    script = script_copy(tmp_path, "6_reconstruct_alphabet_image", "6_from_my_decoder",
                          f"decoded_features_dir = {str(tree)!r}\nlayers = ['conv5_4', 'fc8']\n"
                          "subjects_list = ['S1']\nimage_label_list = ['Img0005']")
    args = ("--iterations", "1", "--results-dir", str(tmp_path / "results"))
    line = one_error_line(run(script, project_root, *args, timeout=180))
    bad_file = layout.decode_feature_filename(tree, "alphabet", "VGG19", "fc8", "S1", "VC", "Img0005")
    assert str(bad_file) in line and message in line
    assert not (tmp_path / "results" / "6_from_my_decoder" / "options.pkl").exists()
    assert not (tmp_path / "results" / "6_from_my_decoder" / "run.json").exists()
    if np.isnan(bad).any():
        debug = run(script, project_root, *args, timeout=180, ICNN_TORCH_DEBUG="1")
        assert debug.returncode == 1 and "Traceback" in debug.stderr
        assert "DamagedFileError" in debug.stderr


# --------------------------------------------------------------------------- options.pkl, run.json

def test_options_and_record_describe_the_results_there(project_root, tmp_path):
    """A rerun with other options over finished results stops and changes nothing;
    --force redoes them and rewrites options.pkl and the record."""
    script = "6_reconstruct_alphabet_image"
    base = ("--subjects", "S1", "--labels", "Img0005", "--snapshot-every", "0",
            "--results-dir", str(tmp_path / "results"))
    folder = tmp_path / "results" / script
    first = run(script, project_root, *base, "--iterations", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert read_options(folder)["maxiter"] == 1 and read_record(folder)["iterations"] == 1
    before = {name: (folder / name).read_bytes() for name in ("options.pkl", "run.json")}
    mat = folder / "S1" / "VC" / "recon_img-Img0005.mat"
    stamp = mat.stat().st_mtime_ns

    other = run(script, project_root, *base, "--iterations", "2")
    line = one_error_line(other)
    assert "maxiter: 1 there, 2 here" in line and "--force" in line and "--results-dir" in line
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert mat.stat().st_mtime_ns == stamp

    forced = run(script, project_root, *base, "--iterations", "2", "--force")
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert read_options(folder)["maxiter"] == 2 and read_record(folder)["iterations"] == 2
    assert mat.stat().st_mtime_ns != stamp

    same = run(script, project_root, *base, "--iterations", "2")
    assert same.returncode == 0 and "1 already done" in same.stdout
    assert read_options(folder)["maxiter"] == 2


def test_runs_with_equal_options_merge_their_selection_in_script_order(project_root, tmp_path):
    script = "2_reconstruct_natural_image_without_DGN"  # labels Img0002 Img0011 Img0045 Img0048
    base = ("--subjects", "S1", "--iterations", "1", "--snapshot-every", "0",
            "--results-dir", str(tmp_path / "results"))
    for label in ("Img0045", "Img0002"):
        proc = run(script, project_root, *base, "--labels", label)
        assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_record(tmp_path / "results" / script)
    assert record["labels"] == ["Img0002", "Img0045"]
    assert record["subjects"] == ["S1"] and record["rois"] == ["VC"]


def test_two_ranks_share_a_scripts_jobs(project_root, tmp_path):
    """torchrun-style RANK/WORLD_SIZE: each process does its half and both record it."""
    script = "2_reconstruct_natural_image_without_DGN"
    args = ["--subjects", "S1", "--labels", ",".join(KILL_LABELS), "--iterations", "1",
            "--snapshot-every", "0", "--results-dir", str(tmp_path / "results")]
    procs = [subprocess.Popen([sys.executable, str(REPO / f"{script}.py"), *args],
                              env=script_env(project_root, RANK=str(rank), WORLD_SIZE="2",
                                       LOCAL_RANK=str(rank)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for rank in (0, 1)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for rank, (proc, (out, err)) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, err[-3000:]
        assert f"2 reconstructions, 1 for rank {rank}/2, 0 already done" in out
    folder = tmp_path / "results" / script
    for label in KILL_LABELS:
        check_outputs(folder / "S1" / "VC", label, None)
    assert read_record(folder)["labels"] == KILL_LABELS


# --------------------------------------------------------------------------- dtypes, --help

def test_lbfgs_script_saves_float64(project_root, tmp_path):
    """The L-BFGS engines return scipy's float64 ``res.x``; the script saves it as it is."""
    proc = run("4_reconstruct_shape_image", project_root, "--subjects", "S1", "--labels",
                "Img0001", "--iterations", "1", "--snapshot-every", "0", "--results-dir",
                str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_dir = tmp_path / "results" / "4_reconstruct_shape_image" / "S1" / "VC"
    check_outputs(out_dir, "Img0001", np.float64)


def test_recon_img_is_saved_as_the_engine_returns_it(project_root, tmp_path, monkeypatch):
    """An engine stand-in returning float64: the .mat holds exactly its array."""
    from icnn_torch import perf
    from icnn_torch.recon import engines
    from icnn_torch.run import reconstruct
    from icnn_torch.run.config import ScriptConfig

    returned = np.random.default_rng(3).uniform(-20, 280, (224, 224, 3))  # float64
    calls = []

    class StandIn:
        @staticmethod
        def reconstruct_image(features, net, layer_weight=None, loss_type="l2", maxiter=500,
                              disp=None, initial_image=None, save_intermediate=False,
                              save_intermediate_every=1, save_intermediate_path=None):
            calls.append(dict(features=features, layer_weight=layer_weight, maxiter=maxiter,
                              disp=disp, initial_image=initial_image,
                              save_intermediate=save_intermediate,
                              every=save_intermediate_every, path=save_intermediate_path))
            return returned.copy(), np.zeros(3)

    monkeypatch.setattr(engines.EngineInfo, "load", lambda self: StandIn)
    monkeypatch.setattr(perf, "retain_freed_memory", lambda: False)  # not in pytest's process
    monkeypatch.setenv("ICNN_TORCH_ROOT", str(project_root))
    cfg = ScriptConfig.from_file(REPO / "6_reconstruct_alphabet_image.py")
    written = reconstruct.run_script(cfg, ["--subjects", "S1", "--labels", "Img0005",
                                        "--iterations", "3", "--quiet",
                                        "--results-dir", str(tmp_path / "results")])
    out_dir = tmp_path / "results" / "6_reconstruct_alphabet_image" / "S1" / "VC"
    assert written == [out_dir]
    saved = scipy.io.loadmat(out_dir / "recon_img-Img0005.mat")["recon_img"]
    assert saved.dtype == np.float64 and np.array_equal(saved, returned)
    (call,) = calls
    assert list(call["features"]) == list(cfg.layers) and call["maxiter"] == 3
    assert call["disp"] == 0  # --quiet
    assert call["save_intermediate"] and call["every"] == 1  # the script's snapshot_every
    assert Path(call["path"]) == out_dir / "snapshots" / "image-Img0005"
    assert set(call["layer_weight"]) == set(cfg.layers)
    assert abs(sum(call["layer_weight"].values()) - 1) < 1e-12  # normalised in float64
    mean_rgb = call["initial_image"][0, 0]  # 'mean': the flat image of the file's mean (BGR->RGB)
    assert call["initial_image"].shape == (224, 224, 3)
    np.testing.assert_allclose(mean_rgb, [122.7, 116.7, 104.0], rtol=1e-6)  # float32 storage


SCRIPT_NAMES = [
    "1_reconstruct_natural_image", "2_reconstruct_natural_image_without_DGN",
    "3_reconstruct_natural_image_different_combinations_of_CNN_layers",
    "4_reconstruct_shape_image", "5_reconstruct_shape_image_different_ROI",
    "6_reconstruct_alphabet_image", "7_reconstruct_imagined_image"]


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_help_lists_what_the_script_uses_without_importing_torch(tmp_path, script):
    proc = subprocess.run([sys.executable, "-X", "importtime", str(REPO / f"{script}.py"),
                           "--help"], env=script_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "torch" not in imported and "scipy" not in imported
    text = proc.stdout
    for option in ("--subjects", "--rois", "--labels", "--iterations", "--snapshot-every",
                   "--device", "--results-dir", "--force", "--yes", "--quiet", "--debug"):
        assert option in text
    assert ("--layers-sets" in text) == script.startswith("3_")
    assert ("--batch-size" in text) == script.startswith("1_")  # icnn_dgn_gd: batched
    assert "(script: S1,S2,S3)" in text
    if script.startswith("3_"):
        assert "layers-1to1,layers-1to3,layers-1to5,layers-1to7" in text
    if script.startswith("1_"):
        assert "iter_n: iterations" in text and "every N iterations" in text
    else:
        assert "maxiter: L-BFGS iterations" in text and "every N function evaluations" in text
    assert text.split("\n\n")[1].startswith("Fig ")
