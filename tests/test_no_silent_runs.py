"""No silent wrong run: each case reported against the earlier versions, reproduced first.

1. a misspelled constant stops the run and names the setting it resembles;
2. options that do not fit the engine are reported all at once, with another script's
   options for that engine (the DGN bounds note and the record's contents: see
   tests/test_scripts.py::test_an_edited_copy_of_a_script_runs_and_records_itself);
3. two runs on one results folder with different selections both land in the record;
4. an options clash says everything in one message (tests/test_config.py);
5. ``--help`` says what batches give;
6. ``--verify`` says how each file was checked, and that an md5 failed before replacing it;
7. the download prompt shows the total size and the free space, and stops when the disk is
   too small;
8. small things: "1 reconstruction", no rank header in a single process, a readable image
   mean, a picture of what a wrong input size is.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import subprocess
import sys

import numpy as np
import pytest

from icnn_torch import download as dl
from icnn_torch._util import file_lock
from icnn_torch.errors import ConfigError, DownloadError, MissingDataError
from icnn_torch.fetch import ensure as fetch_ensure
from icnn_torch.fetch import items as fetch_items
from icnn_torch.fetch import weights as fetch_weights
from icnn_torch.run import reconstruct
from icnn_torch.run.config import ScriptConfig
from icnn_torch.store import record as records
from icnn_torch.utils import get_cnn_features

from _dl_server import FakeRemote
from _project_tree import (REPO, one_error_line, read_record, run, script_copy, script_env)
from caffe_writer import random_generator_layers, write_caffemodel

SCRIPT5 = "5_reconstruct_shape_image_different_ROI"
SCRIPT2 = "2_reconstruct_natural_image_without_DGN"


# --------------------------------------------------------------------------- 1. typos

def test_misspelled_constants_stop_the_run_with_the_setting_they_resemble(project_root,
                                                                            tmp_path):
    """The issue's case: script 5 with ``subject_list = ['S1']`` and ``snapshot_evry = 0`` ran
    S1-S3 and asked to download files for S2/S3."""
    script = script_copy(tmp_path, SCRIPT5, "5_with_typos",
                         "subject_list = ['S1']\nsnapshot_evry = 0")
    line = one_error_line(run(script, project_root, timeout=120))
    assert "subject_list (did you mean subjects_list?)" in line
    assert "snapshot_evry (did you mean snapshot_every?)" in line
    assert "start its name with '_'" in line
    assert not (tmp_path / "results").exists()  # stopped before anything


def test_a_script_keeps_helper_values_under_underscore_names(project_root, tmp_path):
    script = script_copy(tmp_path, "6_reconstruct_alphabet_image", "6_with_helpers",
                         "_my_letters = ['Img0005']\nimage_label_list = _my_letters\n"
                         "subjects_list = ['S1']\nimport numpy as np")
    proc = run(script, project_root, "--iterations", "1", "--snapshot-every", "0",
               "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_unknown_constant_of_a_config_is_refused():
    constants = dict(__file__="x.py", image_type="natural", network="VGG19",
                     subjects_list=["S1"], rois_list=["VC"], image_label_list=["a"],
                     engine="icnn_lbfgs", opts={}, layers=["fc8"], iter_n=3,
                     ovewrite=True)
    with pytest.raises(ConfigError, match=r"ovewrite \(did you mean overwrite\?\)"):
        ScriptConfig.from_constants(constants)
    del constants["ovewrite"]
    assert ScriptConfig.from_constants(constants).layers == ["fc8"]  # iter_n: a known helper


# --------------------------------------------------------------------------- 2. options

def test_options_that_do_not_fit_the_engine_are_reported_at_once(project_root, tmp_path):
    """The issue's case: switching script 2's engine to icnn_dgn_gd took three edit-run
    cycles, one wrong option named per run."""
    (tmp_path / "1_reconstruct_natural_image.py").write_text(
        (REPO / "1_reconstruct_natural_image.py").read_text())
    script = script_copy(tmp_path, SCRIPT2, "2_with_the_dgn", "engine = 'icnn_dgn_gd'")
    line = one_error_line(run(script, project_root, timeout=300))
    assert "opts does not fit icnn_dgn_gd" in line
    assert "'maxiter' (icnn_dgn_gd counts iterations with 'iter_n')" in line
    assert "'disp' (its progress option is 'disp_every')" in line
    assert "'initial_image' (" in line
    assert "1_reconstruct_natural_image.py runs icnn_dgn_gd with opts = {" in line
    assert "'feat_upper_bound': 'fc7_3x'" in line  # the paper's settings as the suggestion


# --------------------------------------------------------------------------- 3. concurrent runs

def _commit(folder: str, labels: list, barrier) -> None:
    """One process's commit of its selection (same method, its own labels)."""
    record = {"image_type": "natural", "network": "VGG19", "engine": "icnn_lbfgs",
              "layers": ["fc8"], "options": {"maxiter": 1}, "subjects": ["S1"],
              "rois": ["VC"], "labels": labels, "runs": [{"labels": labels}]}
    barrier.wait()
    records.commit_run_record(folder, record, "disp", {"labels": ["a", "b", "c", "d"]})


def test_records_of_concurrent_processes_merge(tmp_path):
    """Four processes commit at the same moment: no selection is lost (the record is read,
    merged and written under the folder's lock)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    processes = [context.Process(target=_commit, args=(str(tmp_path), [label], barrier))
                 for label in "dcba"]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    record = records.read_run_record(tmp_path)
    assert record["labels"] == ["a", "b", "c", "d"]  # all four, in the script's order
    assert sorted(r["labels"][0] for r in record["runs"]) == ["a", "b", "c", "d"]


def _hold(path: str, seconds: float, log: str) -> None:
    import time
    with file_lock(path):
        with open(log, "a") as f:
            f.write("in\n")
        time.sleep(seconds)
        with open(log, "a") as f:
            f.write("out\n")


@pytest.mark.parametrize("fallback", [False, True], ids=["fcntl", "mkdir"])
def test_file_lock_excludes_other_processes(tmp_path, monkeypatch, fallback):
    """Whoever holds the lock is alone: the log never shows two 'in' in a row. The fallback
    (a lock directory) is what runs where the file system refuses fcntl locks."""
    if fallback:
        monkeypatch.setitem(sys.modules, "fcntl", None)  # as on a platform without it
    log = tmp_path / "log"
    context = multiprocessing.get_context("fork" if fallback else "spawn")
    processes = [context.Process(target=_hold, args=(str(tmp_path / "lock"), 0.2, str(log)))
                 for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert log.read_text() == "in\nout\n" * 3


def test_two_runs_started_together_both_land_in_the_record(project_root, tmp_path):
    """The issue's case: two processes on one results folder with other selections both
    finished, but run.json listed only one of them."""
    base = ["--iterations", "1", "--snapshot-every", "0", "--results-dir",
            str(tmp_path / "results")]
    procs = [subprocess.Popen([sys.executable, str(REPO / f"{SCRIPT2}.py"), "--subjects", "S1",
                               "--labels", label, *base], env=script_env(project_root),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL)
             for label in ("Img0045", "Img0002")]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
    record = read_record(tmp_path / "results" / SCRIPT2)
    assert record["labels"] == ["Img0002", "Img0045"]  # the script's order
    assert len(record["runs"]) == 2


# --------------------------------------------------------------------------- 5. batches

def test_help_says_what_batches_give():
    """The issue's case: --help said 'results equal one at a time'."""
    cfg = ScriptConfig.from_file(REPO / "1_reconstruct_natural_image.py")
    text = " ".join(reconstruct.build_parser(cfg).format_help().split())
    assert "results equal one at a time" not in text
    assert "drift apart" in text and "README" in text


# --------------------------------------------------------------------------- 6. --verify

@pytest.fixture
def loopback(monkeypatch):
    server = FakeRemote().start()
    monkeypatch.setenv("ICNN_TORCH_VGG19_URL", f"{server.url}/vgg.caffemodel")
    monkeypatch.setenv("ICNN_TORCH_DEEPSIM_URL", f"{server.url}/deepsim.zip")
    monkeypatch.delenv("ICNN_TORCH_ASSUME_YES", raising=False)
    yield server
    server.stop()


def test_verify_says_how_each_file_is_checked(tmp_path, capsys):
    """The issue's case: --verify generator said "all requested files are present" although
    no md5 of the generator is published."""
    net = tmp_path / "net"
    gen = net / "generator_for_inverting_fc7" / "generator.caffemodel"
    gen.parent.mkdir(parents=True)
    write_caffemodel(gen, random_generator_layers(seed=3), fmt="v2")
    assert dl.main(["generator", "--verify", "--net-dir", str(net), "--data-dir",
                    str(tmp_path / "data")]) == 0
    err = capsys.readouterr().err
    assert "generator: intact (checked: loading) (no md5 is published)" in err
    # a cut generator fails the loading check and counts as damaged
    gen.write_bytes(gen.read_bytes()[:gen.stat().st_size // 3])
    assert dl.main(["generator", "--verify", "--net-dir", str(net), "--data-dir",
                    str(tmp_path / "data"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[damaged:" in out and "cannot be loaded" in out


def test_verify_reports_an_md5_failure_before_replacing(loopback, tmp_path, monkeypatch,
                                                       capsys):
    """The issue's case: --verify vgg19 on a file with a wrong md5 re-downloaded without
    saying the md5 failed."""
    body = bytes(range(256)) * 40
    loopback.add_path("/vgg.caffemodel", body)
    monkeypatch.setattr(fetch_weights, "VGG19_SIZE", len(body))
    monkeypatch.setattr(fetch_weights, "VGG19_MD5", hashlib.md5(body).hexdigest())
    vgg = tmp_path / "net" / "VGG_ILSVRC_19_layers" / "VGG_ILSVRC_19_layers.caffemodel"
    vgg.parent.mkdir(parents=True)
    vgg.write_bytes(bytes(len(body)))  # the right size, other bytes
    assert dl.main(["vgg19", "--verify", "--yes", "--no-progress", "--net-dir",
                    str(tmp_path / "net"), "--data-dir", str(tmp_path / "data")]) == 0
    err = capsys.readouterr().err
    line = next(l for l in err.splitlines() if l.startswith("[1/1] vgg19"))
    assert "replacing it" in line and "md5" in line and "not the published" in line
    assert vgg.read_bytes() == body


# --------------------------------------------------------------------------- 7. the prompt

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_prompt_shows_total_size_and_free_space_and_stops_when_the_disk_is_too_small(
        loopback, tmp_path, monkeypatch):
    """The issue's case: 62 file names before 'Download them now? [y/N]', no total size,
    no check of the free space."""
    plan = ScriptConfig.from_file(REPO / "1_reconstruct_natural_image.py").plan(subjects=["S1"])
    place = dl.Place.at(tmp_path / "data", tmp_path / "net")
    prompt = io.StringIO()
    with pytest.raises(MissingDataError):  # declined: nothing downloaded
        dl.ensure_plan_files(plan, place, dl.Fetching(stdin=_Terminal("n\n"), stderr=prompt,
                                                      progress=False))
    text = prompt.getvalue()
    assert "Total download:" in text and "estimated from the layer shapes and label counts" in text
    assert "free:" in text and text.count("[y/N]") == 1
    # script 1, one subject: 19 zips of 6 ROIs x 50 images of every layer, about 17.8 GB
    total = sum(fetch_items.item(i, place).size(place).bytes
                for i in dl.items_for_plan(plan, place.data_dir))
    assert 17e9 < total < 19e9
    # a disk too small: stops before any request
    monkeypatch.setattr(fetch_ensure.shutil, "disk_usage",
                        lambda path: type("Usage", (), {"free": 10 ** 9})())
    with pytest.raises(DownloadError, match="not enough free space.*nothing was downloaded"):
        dl.ensure_plan_files(plan, place, dl.Fetching(assume_yes=True, progress=False,
                                                      stderr=io.StringIO()))
    assert loopback.requests == []


# --------------------------------------------------------------------------- 8. small things

def test_header_of_a_single_process_run(project_root, tmp_path):
    proc = run("6_reconstruct_alphabet_image", project_root, "--subjects", "S1", "--labels",
               "Img0005", "--iterations", "1", "--snapshot-every", "0", "--results-dir",
               str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = proc.stdout.splitlines()[0]
    assert first == "6_reconstruct_alphabet_image: 1 reconstruction, 0 already done"
    assert "saved 1 reconstruction in" in proc.stdout
    assert "image mean: per-channel average of" in proc.stdout
    assert "BGR (104.000, 116.700, 122.700)" in proc.stdout  # rounded, not float32 noise


def test_wrong_input_size_names_the_expected_size():
    """The issue's case: get_cnn_features on a 500x500 image failed inside fc6 with a matmul
    shape error."""
    from icnn_torch.models import VGG19
    net = VGG19()
    with pytest.raises(ValueError, match=r"500x500, but the net takes 224x224.*resize"):
        get_cnn_features(net, np.zeros((500, 500, 3)), ["fc6"])


def test_record_holds_no_arrays_only_their_names(tmp_path):
    """Arrays in the record are named by symbol and file, never dumped."""
    from icnn_torch import icnn_dgn_gd
    from icnn_torch.run.options import describe_options
    described = describe_options(icnn_dgn_gd, {"feat_upper_bound": "fc7_3x",
                                               "initial_gen_feat": np.zeros(4096)}, tmp_path)
    assert described["feat_upper_bound"]["symbol"] == "fc7_3x"
    assert described["initial_gen_feat"] == "array (4096,) float64"
    json.dumps(described)


def test_readme_puts_the_commands_and_a_contents_list_first():
    """The issue's case: the README's test command was at line 472 of 569, with no table of
    contents; the scripts' table gave the PLOS figure numbers only."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    head = "\n".join(lines[:45])
    assert "**Contents:**" in head
    ci = (REPO / ".ci" / "run").read_text()
    test_command = next(l.strip() for l in ci.splitlines() if l.strip().startswith("python -m pytest"))
    assert test_command in head and "pip install -r requirements.txt" in head
    table = "\n".join(l for l in lines if l.startswith("| `") and "reconstruct" in l)
    for cell in ("Fig 2; Figure 2(a)", "Fig 3A; 2(b)", "Fig 4; 2(d)", "Fig 6A; 3(a)",
                 "Fig 7A; 3(c)", "Fig 6B; 3(e)", "Fig 8; 4"):  # PLOS; bioRxiv preprint
        assert f"| {cell} |" in table, cell
