"""Job splitting over torchrun ranks / SLURM array tasks, and collision-free writing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from icnn_torch.run import jobs as jobs_module
from icnn_torch._util import atomic_output
from icnn_torch.run.jobs import Job, make_jobs, rank_info, split_jobs
from icnn_torch.nets.device import device_for_rank

PROJECT_ROOT = Path(__file__).resolve().parents[1]

SUBJECTS = ["S1", "S2", "S3"]
ROIS = ["V1", "VC"]
LABELS = ["Img0016", "Img0036", "Img0042"]
LAYER_SETS = ["layers-1to1", "layers-1to3", "layers-1to5", "layers-1to7"]

# A tiny stand-in for a script's job loop: build the job list, keep this rank's part,
# write one file per job into the shared results tree, and report what it did.
WORKER = r"""
import json, os, sys, time
from icnn_torch._util import atomic_output
from icnn_torch.run.jobs import make_jobs, rank_info, split_jobs
results, report = sys.argv[1], sys.argv[2]
subjects, rois, labels, sets = json.loads(sys.argv[3])
all_jobs = make_jobs(subjects, rois, labels, sets)
rank, world_size, local_rank = rank_info()
mine = split_jobs(all_jobs, rank, world_size)
for job in mine:
    path = job.result_dir(results) / f"recon_img-{job.label}.txt"
    with atomic_output(path) as tmp:
        tmp.write_text(f"{rank}\n")
    time.sleep(0.01)  # let the two processes interleave
    # options.pkl-like file written by every rank at the script root: same content,
    # atomic replace, so concurrent writers cannot corrupt it
    with atomic_output(os.path.join(results, "options.json")) as tmp:
        tmp.write_text(json.dumps({"n_jobs": len(all_jobs)}))
with atomic_output(report) as tmp:
    tmp.write_text(json.dumps({"rank": rank, "world_size": world_size,
                               "local_rank": local_rank,
                               "jobs": [[j.subject, j.roi, j.label, j.layer_set] for j in mine]}))
"""


def _clean_env(extra: dict) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK") and not key.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                      env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _run_ranks(tmp_path: Path, rank_envs: list, layer_sets=LAYER_SETS):
    """Start one worker process per environment at once; return the results tree, reports."""
    results = (tmp_path / "results"
               / "3_reconstruct_natural_image_different_combinations_of_CNN_layers")
    spec = json.dumps([SUBJECTS, ROIS, LABELS, layer_sets])
    procs, reports = [], []
    for index, extra in enumerate(rank_envs):
        report = tmp_path / f"report{index}.json"
        reports.append(report)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(results), str(report),
                                       spec], env=_clean_env(extra), cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return results, [json.loads(report.read_text()) for report in reports]


def _check_split_and_tree(results: Path, reports: list, layer_sets=LAYER_SETS) -> None:
    all_jobs = [Job(*job) for job in
                [[s, r, label, ls] for s in SUBJECTS for r in ROIS for label in LABELS
                 for ls in layer_sets]]
    parts = [[Job(*job) for job in report["jobs"]] for report in reports]
    # every job done exactly once
    assert sum(len(part) for part in parts) == len(all_jobs) == 72
    assert set(parts[0]).isdisjoint(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(all_jobs)
    assert abs(len(parts[0]) - len(parts[1])) <= 1
    # the results tree holds one complete file per job, written by the rank that owned it
    written = sorted(p for p in results.rglob("recon_img-*.txt"))
    assert len(written) == len(all_jobs)
    for report, part in zip(reports, parts):
        for job in part:
            path = results / job.layer_set / job.subject / job.roi / f"recon_img-{job.label}.txt"
            assert path.read_text() == f"{report['rank']}\n"
    assert json.loads((results / "options.json").read_text()) == {"n_jobs": 72}
    leftovers = [p for p in results.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_two_torchrun_ranks_split_jobs_into_disjoint_halves(tmp_path):
    results, reports = _run_ranks(tmp_path, [
        {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"},
        {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"},
    ])
    assert [(r["rank"], r["world_size"], r["local_rank"]) for r in reports] == [
        (0, 2, 0), (1, 2, 1)]
    _check_split_and_tree(results, reports)


def test_two_slurm_array_tasks_split_jobs_into_disjoint_halves(tmp_path):
    # sbatch --array=3-4: task ids 3 and 4, minimum 3
    results, reports = _run_ranks(tmp_path, [
        {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "3"},
        {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "3"},
    ])
    assert [(r["rank"], r["world_size"]) for r in reports] == [(0, 2), (1, 2)]
    _check_split_and_tree(results, reports)


def test_make_jobs_follows_the_original_loop_order():
    jobs = make_jobs(["S1", "S2"], ["VC"], ["a", "b"], ["x", "y"])
    assert jobs[:3] == [Job("S1", "VC", "a", "x"), Job("S1", "VC", "a", "y"),
                        Job("S1", "VC", "b", "x")]
    assert len(jobs) == 8
    assert make_jobs(["S1"], ["VC"], ["a"]) == [Job("S1", "VC", "a", None)]
    assert Job("S1", "VC", "a").result_dir("r") == Path("r/S1/VC")
    assert Job("S1", "VC", "a", "layers-1to3").result_dir("r") == Path("r/layers-1to3/S1/VC")


@pytest.mark.parametrize("n_jobs", [0, 1, 5, 7, 72])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_split_jobs_partitions_round_robin(n_jobs, world_size):
    jobs = list(range(n_jobs))
    parts = [split_jobs(jobs, rank, world_size) for rank in range(world_size)]
    assert sorted(x for part in parts for x in part) == jobs
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    for rank, part in enumerate(parts):
        assert all(x % world_size == rank for x in part)
        assert part == sorted(part)
    assert parts == [split_jobs(iter(jobs), rank, world_size) for rank in range(world_size)]


@pytest.mark.parametrize("rank, world_size", [(2, 2), (-1, 2), (0, 0)])
def test_split_jobs_rejects_bad_ranks(rank, world_size):
    with pytest.raises(ValueError, match="rank"):
        split_jobs([1, 2, 3], rank, world_size)


@pytest.mark.parametrize("env, expected", [
    ({}, (0, 1, 0)),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (3, 4, 1)),
    ({"RANK": "1", "WORLD_SIZE": "2"}, (1, 2, 0)),
    # sbatch --array=0-3
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 4, 0)),
    # sbatch --array=10-13 (ids offset by SLURM_ARRAY_TASK_MIN)
    ({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_COUNT": "4",
      "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"}, (2, 4, 0)),
    # sbatch --array=1-7:2 -> ids 1 3 5 7
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4",
      "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_STEP": "2"}, (2, 4, 0)),
    # array of 3 tasks, each running torchrun --nproc_per_node=2: task 1, local rank 1
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3",
      "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, (3, 6, 1)),
    # a plain (non-array) SLURM job is a single process
    ({"SLURM_JOB_ID": "99", "SLURM_PROCID": "0"}, (0, 1, 0)),
])
def test_rank_info_reads_torchrun_and_slurm_variables(env, expected):
    assert rank_info(env) == expected


def test_rank_info_composed_ranks_cover_every_slot():
    seen = set()
    for task in range(3):
        for local in range(2):
            env = {"SLURM_ARRAY_TASK_ID": str(task + 5), "SLURM_ARRAY_TASK_MIN": "5",
                   "SLURM_ARRAY_TASK_COUNT": "3", "RANK": str(local), "WORLD_SIZE": "2",
                   "LOCAL_RANK": str(local)}
            rank, world_size, _ = rank_info(env)
            assert world_size == 6
            seen.add(rank)
    assert seen == set(range(6))


@pytest.mark.parametrize("env, message", [
    ({"RANK": "0"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2"}, "RANK"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK < WORLD_SIZE"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x'"),
    ({"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT"),
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3"}, "--array=0-2"),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_STEP": "2"}, "not on the array grid"),
])
def test_rank_info_errors_name_the_variables(env, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        rank_info(env)


def test_rank_info_defaults_to_os_environ(monkeypatch):
    for key in list(os.environ):
        if key in ("RANK", "WORLD_SIZE", "LOCAL_RANK") or key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert rank_info() == (1, 3, 0)
    assert split_jobs(list("abcdefg"), *rank_info()[:2]) == ["b", "e"]


def test_device_for_rank_cycles_over_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [device_for_rank(i) for i in range(4)] == [torch.device("cuda", i % 2)
                                                      for i in range(4)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for_rank(3) == torch.device("cpu")
    with pytest.raises(ValueError):
        device_for_rank(-1)


def test_device_for_rank_on_this_machine():
    device = device_for_rank(0)
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    torch.zeros(1, device=device)  # usable


def test_atomic_output_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "sub" / "recon_img-Img0001.mat"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".mat" and tmp != target
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_atomic_output_names_differ_between_calls(tmp_path):
    with atomic_output(tmp_path / "a.png") as first, atomic_output(tmp_path / "a.png") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "a.png").read_text() in ("1", "2")
    assert jobs_module.__all__  # module exports its public API
