"""Run the whole benchmark suite and print one markdown table set (issue 5).

Usage::

    python benchmarks/run_all.py [--quick] [--only iteration,bdpy,memory,batch] [--out FILE]

Each benchmark runs in its own subprocess (so memory peaks and thread pools are clean):

- ``bench_iteration.py``: seconds per iteration / floor per engine and layer set;
- ``bench_bdpy.py``: icnn_dgn_gd and icnn_gd against bdpy 0.26 on the same work (installs
  bdpy into ``benchmarks/_out/bdpy`` on first use; not a package dependency);
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
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import OUT_DIR, OtherCpuLoad, machine_info, md_table  # noqa: E402

BENCHES = ("iteration", "bdpy", "memory", "batch")
MIB = 1024 * 1024


def run_bench(name: str, quick: bool, timeout: float, threads: int | None = None) -> dict:
    """Run ``bench_<name>.py`` in a subprocess; return its JSON (when it writes one) and output."""
    script = HERE / f"bench_{name}.py"
    if not script.exists():
        return {"name": name, "missing": True}
    cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
    json_path = None
    if name != "iteration":  # bench_iteration.py prints a table only
        json_path = OUT_DIR / f"{name}{'_quick' if quick else ''}.json"
        if json_path.exists():
            json_path.unlink()
        cmd += ["--json", str(json_path)]
        if threads and name in ("bdpy", "batch"):
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
    data = None
    if json_path is not None and json_path.exists():
        data = json.loads(json_path.read_text())
    print(f"[run_all] {name}: exit {rc}, {wall:.0f} s", file=sys.stderr, flush=True)
    return {"name": name, "rc": rc, "stdout": out, "stderr": err, "data": data, "wall_s": wall,
            "other_cores": load.cores}


def _failed(res: dict) -> str | None:
    if res.get("missing"):
        return f"`bench_{res['name']}.py` not present: skipped."
    if res["rc"] != 0 or (res["name"] != "iteration" and res["data"] is None):
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


_ITER_ROW = re.compile(r"^(icnn_\w+)\s+(\w+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)(.*)$")


def section_iteration(res: dict) -> tuple[str, dict]:
    """Parse bench_iteration.py's table (engine, layers, floor s, engine s, ratio)."""
    fail = _failed(res)
    if fail:
        return fail, {}
    rows, ratios = [], []
    for line in res["stdout"].splitlines():
        m = _ITER_ROW.match(line.strip())
        if m:
            engine, layers, floor_s, engine_s, ratio, rest = m.groups()
            rows.append([engine, layers, f"{float(engine_s):.3f}", f"{float(floor_s):.3f}",
                         f"{float(ratio):.2f}"])
            ratios.append(float(ratio))
    if not rows:  # unknown format: show it as it is
        return "```\n" + res["stdout"].strip() + "\n```", {}
    extra = [ln.strip() for ln in res["stdout"].splitlines() if ln.strip() and not _ITER_ROW.match(ln.strip())
             and not set(ln.strip()) <= set("-") and not ln.strip().startswith("engine ")]
    text = md_table(["engine", "layers", "s / iteration", "floor s", "engine / floor"], rows)
    text += _bullets(extra + [_load_note(res).strip()])
    return text, {"worst_engine_over_floor": max(ratios)}


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


def goals_table(facts: dict) -> str:
    rows = []
    ratio = facts.get("dgn_bdpy_over_ours")
    if ratio is not None:
        rows.append(["icnn_dgn_gd per iteration vs bdpy 0.26 (CPU, same work)", ">= 2x (3x goal)",
                     f"{ratio:.2f}x ({facts.get('dgn_basis')})",
                     "yes" if ratio >= 3 else ("2x yes, 3x no" if ratio >= 2 else "**no**")])
    peak = facts.get("peak_total_bytes")
    if peak is not None:
        rows.append(["peak RSS of a DGN reconstruction", "< 2.5 GB", f"{peak / 1e9:.2f} GB",
                     "yes" if peak < 2.5e9 else "**no**"])
    worst = facts.get("worst_engine_over_floor")
    if worst is not None:
        rows.append(["worst engine / floor (bench_iteration)", "<= 1.10", f"{worst:.2f}",
                     "yes" if worst <= 1.10 else "**no**"])
    per_image = facts.get("cpu_per_image")
    if per_image:
        rows.append(["batched icnn_dgn_gd per-image time, CPU", "reported for batch 1 and 8",
                     ", ".join(f"batch {b}: {s:.3f} s" for b, s in sorted(per_image.items())),
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
                    help="torch threads for bench_bdpy and bench_batch (default: torch's)")
    args = ap.parse_args(argv)
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
    parts, facts, busy = [], {}, {}
    for name in wanted:
        res = run_bench(name, args.quick, args.timeout, args.threads)
        if res.get("other_cores") is not None:
            busy[name] = res["other_cores"]
        title, fn = sections[name]
        try:
            text, got = fn(res)
        except Exception as exc:  # a format change in one benchmark must not sink the rest
            text, got = f"could not read the output of bench_{name}.py: {exc!r}", {}
        facts.update(got)
        parts.append(f"### {title}\n\n{text}")
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
