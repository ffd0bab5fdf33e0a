"""Run the whole benchmark suite and print one markdown table set (issue 5).

Usage::

    python benchmarks/run_all.py [--quick] [--only iteration,bdpy,memory,batch]
        [--malloc default,retain] [--out FILE]

Each benchmark runs in its own subprocess (so memory peaks, thread pools and allocator
settings are clean), once per allocator mode of ``--malloc`` (default: both): ``default``
is glibc's own malloc, what a library user gets; ``retain`` first calls
:func:`icnn_torch.perf.retain_freed_memory`, what the figure scripts do on the CPU.

- ``bench_iteration.py``: seconds per iteration / floor per engine and layer set;
- ``bench_bdpy.py``: icnn_dgn_gd and icnn_gd against bdpy 0.26 on the same work (the installed
  bdpy when it is 0.26, else a copy in ``benchmarks/_out/bdpy`` installed on first use); the
  allocator mode applies to both contestants;
- ``bench_memory.py``: peak RSS of one full DGN reconstruction in a fresh process;
- ``bench_batch.py``: batched icnn_dgn_gd, per-image time (CPU: batch 1, 8; CUDA when
  present: 1, 8, 24, 64).

Every timing is a median of interleaved repeats measured in the same process as its
reference. The combined markdown is printed and written to ``benchmarks/_out/results.md``
(``--out`` to change). ``--quick`` passes ``--quick`` to every benchmark (a smoke run of
about two minutes; its numbers are rough). Exit status 0 even when a benchmark fails (its
section says so).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import OUT_DIR, OtherCpuLoad, iteration_table, machine_info, md_table  # noqa: E402

BENCHES = ("iteration", "bdpy", "memory", "batch")
MIB = 1024 * 1024


def run_bench(name: str, quick: bool, timeout: float, malloc: str, threads: int | None = None) -> dict:
    """Run ``bench_<name>.py`` in a subprocess; return its JSON and output."""
    script = HERE / f"bench_{name}.py"
    if not script.exists():
        return {"name": name, "malloc": malloc, "missing": True}
    cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
    json_path = OUT_DIR / f"{name}_{malloc}{'_quick' if quick else ''}.json"
    if json_path.exists():
        json_path.unlink()
    cmd += ["--json", str(json_path), "--malloc", malloc]
    if threads and name in ("bdpy", "batch", "iteration"):
        cmd += ["--threads", str(threads)]
    print(f"[run_all] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with OtherCpuLoad() as load:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(HERE.parent))
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc, out, err = "timeout", exc.stdout or "", (exc.stderr or "") + f"\ntimed out after {timeout} s"
            out = out.decode() if isinstance(out, bytes) else out
            err = err.decode() if isinstance(err, bytes) else err
    wall = time.perf_counter() - t0
    data = json.loads(json_path.read_text()) if json_path.exists() else None
    print(f"[run_all] {name} ({malloc}): exit {rc}, {wall:.0f} s", file=sys.stderr, flush=True)
    return {"name": name, "malloc": malloc, "rc": rc, "stdout": out, "stderr": err, "data": data,
            "wall_s": wall, "other_cores": load.cores}


def _failed(res: dict) -> str | None:
    if res.get("missing"):
        return f"`bench_{res['name']}.py` not present: skipped."
    if res["rc"] != 0 or res["data"] is None:
        tail = "\n".join((res["stderr"] or res["stdout"]).strip().splitlines()[-8:])
        return f"`bench_{res['name']}.py` failed (exit {res['rc']}):\n\n```\n{tail}\n```"
    return None


def _load_note(res: dict) -> str:
    cores = res.get("other_cores")
    return "" if cores is None else f" Other processes kept {cores:.2f} cores busy during it."


def _bullets(lines, blank: bool = True) -> str:
    """Markdown bullets of the non-empty ``lines`` (after a blank line when ``blank``)."""
    lines = [ln for ln in lines if ln]
    if not lines:
        return ""
    return ("\n\n" if blank else "\n") + "\n".join(f"- {ln}" for ln in lines)


def section_iteration(res: dict) -> tuple[str, dict]:
    """Engine / floor per engine and layer set (bench_iteration.py's JSON)."""
    fail = _failed(res)
    if fail:
        return fail, {}
    d = res["data"]
    text = iteration_table(d["rows"], d["goal"])
    r0 = d["rows"][0]
    notes = [f"engine / floor: median over {r0['rounds']} rounds of (engine median / floor median of "
             "the round); L-BFGS rows per function evaluation; scipy: time inside L-BFGS-B "
             "between evaluations (the algorithm's own O(m n) work, kept by a faithful port).",
             _load_note(res).strip()]
    text += _bullets(notes)
    worst = max(d["rows"], key=lambda r: r["ratio"])
    worst_own = max(d["rows"], key=lambda r: r.get("ratio_without_scipy", r["ratio"]))
    return text, {"worst_engine_over_floor": (worst["ratio"], f"{worst['engine']} {worst['layers']}"),
                  "worst_without_scipy": (worst_own.get("ratio_without_scipy", worst_own["ratio"]),
                                          f"{worst_own['engine']} {worst_own['layers']}")}


def section_bdpy(res: dict) -> tuple[str, dict]:
    fail = _failed(res)
    if fail:
        return fail, {}
    d = res["data"]
    rows = []
    for r in d["results"]:
        m = r["headline_s"]
        lo, lb = r["loss_ours_first_last"], r["loss_bdpy_first_last"]
        rows.append([d["descriptions"][r["config"]], r["headline_basis"], f"{m['ours']:.3f}",
                     f"{m['bdpy']:.3f}", f"{m['floor']:.3f}", f"**{r['headline_bdpy_over_ours']:.2f}x**",
                     f"{r['headline_ours_over_floor']:.2f}",
                     f"{lo[0]:.4g} -> {lo[1]:.4g} / {lb[0]:.4g} -> {lb[1]:.4g}",
                     f"{r['loss_max_rel_diff']:.0e}"])
    r0 = d["results"][0]
    text = md_table(["configuration (CPU)", "statistic", "ours s/iter", f"bdpy {d['bdpy_version']} s/iter",
                     "floor s/iter", "bdpy / ours", "ours / floor", "loss first -> last (ours / bdpy)",
                     "max rel. loss diff"], rows)
    notes = [f"{r0['iters_per_run']} iterations per run x {r0['repeats']} interleaved repeats "
             f"(ours, bdpy, floor, ...), {d.get('threads', '?')} torch threads, first iteration of each "
             "run dropped; same random weights, true features of a random image, layer weights, "
             "options and iteration count."]
    for r in d["results"]:
        quiet = r["quiet_bdpy_over_ours"]
        notes.append(f"{r['config']}: bdpy/ours median of all runs {r['bdpy_over_ours']:.2f}, of quiet runs "
                     + ("n/a" if quiet is None else f"{quiet:.2f}")
                     + f", of minima {r['min_bdpy_over_ours']:.2f}; per repeat "
                     + ", ".join(f"{p:.2f}" for p in r["pairwise_bdpy_over_ours"]) + ".")
    notes.append(_load_note(res).strip())
    text += _bullets(notes)
    dgn = next((r for r in d["results"] if r["config"] == "dgn"), None)
    return text, {"dgn_bdpy_over_ours": None if dgn is None else dgn["headline_bdpy_over_ours"],
                  "dgn_basis": None if dgn is None else dgn["headline_basis"]}


def section_memory(res: dict) -> tuple[str, dict]:
    fail = _failed(res)
    if fail:
        return fail, {}
    r = res["data"]["result"]
    inc = "n/a" if r["increase_mib"] is None else f"{r['increase_mib']:.0f} MiB"
    trace = ", ".join(f"it {i}: {m:.0f}" for i, m in r["rss_trace_mib"])
    how = "load_vgg19 + load_generator from .pt" if r["init"] == "file" else "random init in memory"
    rows = [[f"one DGN reconstruction, {r['iters']} iterations (VGG19 19 layers + generator, 224x224)",
             f"**{r['peak_total_mib']:.0f} MiB** ({r['peak_total_mib'] * MIB / 1e9:.2f} GB)",
             f"{r['rss_after_models_mib']:.0f} MiB ({how}; imports alone {r['rss_after_imports_mib']:.0f})",
             inc, trace]]
    text = md_table(["fresh process, CPU", "peak RSS (VmHWM, models included)", "RSS after models",
                     "peak increase during the run", "RSS at iterations (MiB)"], rows)
    return text, {"peak_total_bytes": r["peak_total_mib"] * MIB}


def section_batch(res: dict) -> tuple[str, dict]:
    fail = _failed(res)
    if fail:
        return fail, {}
    d = res["data"]
    rows = []
    for r in d["rows"]:
        if "error" in r:
            rows.append([r["device"], r["batch"], r["error"], "", "", ""])
        else:
            rows.append([r["device"], r["batch"], f"{r['s_per_iter']:.3f}", f"{r['s_per_image_iter']:.3f}",
                         f"{r['image_iters_per_s']:.2f}", f"{r['speedup_per_image_vs_first']:.2f}x"])
    text = md_table(["device", "batch", "s / iteration", "s / image-iteration", "image-iterations / s",
                     "per-image speed-up vs batch 1"], rows)
    notes = [f"{d['cuda_note']}." if d.get("cuda_note") else "", _load_note(res).strip()]
    text += _bullets(notes)
    cpu = {r["batch"]: r for r in d["rows"] if r["device"] == "cpu" and "error" not in r}
    return text, {"cpu_per_image": {b: r["s_per_image_iter"] for b, r in cpu.items()}}


MALLOC_LABEL = {"default": "glibc default malloc (library default)",
                "retain": "retain_freed_memory() (what the scripts do on CPU)"}


def goals_table(facts: dict[str, dict]) -> str:
    """One row per goal and allocator mode; ``facts[mode]`` holds what the sections found."""
    rows = []
    for mode, f in facts.items():
        label = f"[{mode}]"
        ratio = f.get("dgn_bdpy_over_ours")
        if ratio is not None:
            rows.append([f"icnn_dgn_gd per iteration vs bdpy 0.26 (CPU, same work) {label}",
                         ">= 2x (3x goal)", f"{ratio:.2f}x ({f.get('dgn_basis')})",
                         "yes" if ratio >= 3 else ("2x yes, 3x no" if ratio >= 2 else "**no**")])
        peak = f.get("peak_total_bytes")
        if peak is not None:
            rows.append([f"peak RSS of a DGN reconstruction {label}", "< 2.5 GB", f"{peak / 1e9:.2f} GB",
                         "yes" if peak < 2.5e9 else "**no**"])
        worst = f.get("worst_engine_over_floor")
        if worst is not None:
            own = f.get("worst_without_scipy")
            rows.append([f"worst engine / floor {label}", "<= 1.10", f"{worst[0]:.2f} ({worst[1]})",
                         "yes" if worst[0] <= 1.10 else "**no**"])
            if own is not None and own[1] != worst[1]:
                rows.append([f"worst (engine - scipy L-BFGS-B) / floor {label}", "<= 1.10",
                             f"{own[0]:.2f} ({own[1]})", "yes" if own[0] <= 1.10 else "**no**"])
        per_image = f.get("cpu_per_image")
        if per_image:
            rows.append([f"batched icnn_dgn_gd per-image time, CPU {label}", "reported for batch 1 and 8",
                         ", ".join(f"batch {b}: {v:.3f} s" for b, v in sorted(per_image.items())),
                         "yes" if {1, 8} <= set(per_image) else "partly"])
    return md_table(["goal (issue 5)", "target", "measured", "met"], rows) if rows else "(no goal measured)"


def _contention_warning(busy: dict, cpus: int | None) -> str:
    """A warning when other processes used a noticeable share of the CPU during a benchmark."""
    loaded = {k: v for k, v in busy.items() if v > 0.25}
    if not loaded:
        return ""
    return ("\n\n**Warning: other processes were busy during "
            + ", ".join(f"{k} ({v:.2f} of {cpus} cores)" for k, v in loaded.items())
            + "**. With all cores used by torch's threads, sharing them with another busy process "
            "slows every parallel operation several-fold, so absolute times are inflated and "
            "ratios compressed; rerun on a quiet machine (or try `--threads 1`).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run of every benchmark")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {BENCHES}")
    ap.add_argument("--out", default=None, help="markdown output (default benchmarks/_out/results.md)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for bench_iteration, bench_bdpy and bench_batch (default: torch's)")
    ap.add_argument("--malloc", default="default,retain",
                    help="allocator modes, comma-separated: default (glibc's), retain "
                         "(icnn_torch.perf.retain_freed_memory, as the scripts on CPU)")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.malloc.split(",") if m.strip()]
    if not modes or any(m not in MALLOC_LABEL for m in modes):
        ap.error(f"--malloc takes a comma-separated subset of {list(MALLOC_LABEL)}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    wanted = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in wanted if b not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {BENCHES}")
    info = machine_info()
    t0 = time.perf_counter()
    sections = {
        "iteration": ("Seconds per iteration / floor (per engine and layer set)", section_iteration),
        "bdpy": ("Against bdpy 0.26 (`bdpy.recon.torch.icnn.reconstruct`)", section_bdpy),
        "memory": ("Peak resident memory", section_memory),
        "batch": ("Batched icnn_dgn_gd", section_batch),
    }
    parts, facts, busy = [], {m: {} for m in modes}, {}
    for name in wanted:
        title, fn = sections[name]
        parts.append(f"### {title}")
        for mode in modes:
            res = run_bench(name, args.quick, args.timeout, mode, args.threads)
            if res.get("other_cores") is not None:
                busy[f"{name} ({mode})"] = res["other_cores"]
            try:
                text, got = fn(res)
            except Exception as exc:  # a format change in one benchmark must not sink the rest
                text, got = f"could not read the output of bench_{name}.py: {exc!r}", {}
            facts[mode].update(got)
            parts.append(f"#### {MALLOC_LABEL[mode]}\n\n{text}")
    total = time.perf_counter() - t0
    head = (f"## Benchmarks{' (quick smoke run: rough numbers)' if args.quick else ''}\n\n"
            f"{datetime.date.today().isoformat()}; torch {info['torch']}, "
            f"{args.threads or info['threads']} threads, "
            f"{info['cpus']} CPUs" + (f", CUDA {info['cuda']}" if "cuda" in info else ", no CUDA")
            + f"; Python {info['python']}; suite took {total / 60:.1f} min. "
            "Command: `" + " ".join(["python benchmarks/run_all.py"]
                                    + list(sys.argv[1:] if argv is None else argv)) + "`."
            + _contention_warning(busy, info["cpus"]) + "\n\n### Goals\n\n" + goals_table(facts))
    text = head + "\n\n" + "\n\n".join(parts) + "\n"
    print(text)
    out = Path(args.out) if args.out else OUT_DIR / ("results_quick.md" if args.quick else "results.md")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"(written to {out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
