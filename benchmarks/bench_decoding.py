"""Benchmark: decoding throughput of FastL2LiR (the lab's package) and ours, same data.

Usage::

    python benchmarks/bench_decoding.py [--quick] [--samples 6000] [--voxels 10000]
        [--units 64,1024] [--num-voxel 500] [--dtype float32] [--json out.json]

The work is one decoding job of ``icnn_torch.decoding``: fit the decoders of U units
(alpha 100, the 500 voxels most correlated with each unit) on normalised training
samples and predict 50 test samples. The data are synthetic, of the real job's sizes:
6,000 training trials (1,200 images x 5), a voxel count for VC (``--voxels``; the
published files could not be read here, 10,000 is an assumption), random low-rank
structure plus noise. Both contestants get identical arrays (same seed).

Each contestant runs in its own process (its peak resident memory is that process's
``ru_maxrss``) at two chunk sizes (``--units``), so that its time splits into a part per
call and a part per unit (a line through the two points):

- ``fastl2lir``: ``FastL2LiR.fit`` + ``predict`` (through
  :class:`icnn_torch.decoding.decoders.Fastl2lirDecoder`); it forms X1'X1 on every call;
- ``torch``: :class:`icnn_torch.decoding.decoders.TorchDecoder`; X1'X1 is formed once per
  training set (timed apart as ``setup``) and reused by every chunk.

Reported: seconds per call and per unit, throughput at the decoder's default chunk of
8,192 units (units per second, and per core of the process's CPU set), the CPU time per
unit at that chunk size (core-seconds of the process, all threads: less sensitive than
wall time to other load on a shared machine), peak memory, and
the agreement of the two on the larger chunk: the largest difference of the predictions
over the largest prediction, and the share of units whose selected voxels are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "benchmarks" / "_out"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DEFAULT_CHUNK = 8192
N_TEST = 50


def make_data(samples: int, voxels: int, units: int, seed: int = 0):
    """Normalised (x_train, y_train, x_test), float32, low rank 20 plus noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((samples + N_TEST, 20)).astype(np.float32)
    x = latent @ rng.standard_normal((20, voxels)).astype(np.float32) * 0.3
    x += rng.standard_normal(x.shape, dtype=np.float32)
    y = latent[:samples] @ rng.standard_normal((20, units)).astype(np.float32)
    y += rng.standard_normal(y.shape, dtype=np.float32)
    mean, sd = x[:samples].mean(0), x[:samples].std(0, ddof=1)
    x = (x - mean) / sd
    y = (y - y.mean(0)) / y.std(0, ddof=1)
    return x[:samples], y, x[samples:]


def contestant(args) -> dict:
    """Run one contestant in this process; print its figures as JSON."""
    import torch

    from icnn_torch.decoding.decoders import make_decoder
    x, y_all, x_test = make_data(args.samples, args.voxels, max(args.units))
    result = {"name": args.contestant, "threads": torch.get_num_threads(), "calls": []}
    t0, c0 = time.perf_counter(), time.process_time()
    decoder = make_decoder(args.contestant, x, 100.0, args.num_voxel, args.dtype)
    result["setup_s"] = time.perf_counter() - t0
    result["setup_cpu_s"] = time.process_time() - c0
    for units in args.units:
        t0, c0 = time.perf_counter(), time.process_time()
        prediction, decoders = decoder.fit_predict(y_all[:, :units], x_test, keep=True)
        result["calls"].append({"units": units, "seconds": time.perf_counter() - t0,
                                "cpu_seconds": time.process_time() - c0})
    np.save(OUT_DIR / f"decoding-{args.contestant}-prediction.npy", prediction)
    np.save(OUT_DIR / f"decoding-{args.contestant}-voxels.npy", decoders.voxel_index)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
    return result


def _line(calls, key: str = "seconds") -> tuple:
    """(seconds per call, seconds per unit) through the two measured chunk sizes."""
    (u1, t1), (u2, t2) = [(c["units"], c[key]) for c in calls[:2]]
    per_unit = (t2 - t1) / (u2 - u1)
    return max(t1 - per_unit * u1, 0.0), per_unit


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1,200 samples, 2,000 voxels")
    p.add_argument("--samples", type=int, default=6000)
    p.add_argument("--voxels", type=int, default=10000)
    p.add_argument("--units", default="64,1024", help="two chunk sizes")
    p.add_argument("--num-voxel", type=int, default=500)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--reference64", action="store_true",
                   help="also run fastl2lir in float64 on the larger chunk and compare both "
                        "float32 results with it")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--contestant", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.voxels, args.units = 1200, 2000, "32,256"
    args.units = [int(u) for u in str(args.units).split(",")]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.contestant:
        contestant(args)
        return 0
    cores = len(os.sched_getaffinity(0))
    results = {}
    for name in ("fastl2lir", "torch"):
        cmd = [sys.executable, __file__, "--contestant", name, "--samples", str(args.samples),
               "--voxels", str(args.voxels), "--units", ",".join(map(str, args.units)),
               "--num-voxel", str(args.num_voxel), "--dtype", args.dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = np.load(OUT_DIR / "decoding-fastl2lir-prediction.npy")
    ours = np.load(OUT_DIR / "decoding-torch-prediction.npy")
    same = (np.load(OUT_DIR / "decoding-fastl2lir-voxels.npy")
            == np.load(OUT_DIR / "decoding-torch-voxels.npy")).all(axis=1)
    scale = float(np.abs(ref).max())
    agreement = {"max_abs_diff_over_scale": float(np.abs(ours - ref).max() / scale),
                 "same_voxels_share": float(same.mean()),
                 "max_abs_diff_over_scale_same_voxels":
                     float(np.abs(ours - ref)[:, same].max() / scale) if same.any() else None}
    if args.reference64:  # fastl2lir in float64: the exact answer to compare both with
        cmd = [sys.executable, __file__, "--contestant", "fastl2lir", "--samples",
               str(args.samples), "--voxels", str(args.voxels), "--units",
               f"{args.units[-1]},{args.units[-1]}", "--num-voxel", str(args.num_voxel),
               "--dtype", "float64"]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        exact = np.load(OUT_DIR / "decoding-fastl2lir-prediction.npy")
        agreement["fastl2lir_vs_float64_over_scale"] = float(np.abs(ref - exact).max() / scale)
        agreement["torch_vs_float64_over_scale"] = float(np.abs(ours - exact).max() / scale)
    rows = []
    for name, r in results.items():
        per_call, per_unit = _line(r["calls"])
        if name == "torch":  # the set-up is paid once per training set, not per chunk
            per_call_amortised = per_call
        else:
            per_call_amortised = per_call + r["setup_s"]
        chunk_s = per_call_amortised + DEFAULT_CHUNK * per_unit
        cpu_call, cpu_unit = _line(r["calls"], "cpu_seconds")
        r.update(cpu_per_unit_s=cpu_unit, cpu_per_call_s=cpu_call,
                 core_s_per_unit_at_chunk=cpu_unit + cpu_call / DEFAULT_CHUNK)
        r.update(per_call_s=per_call, per_unit_s=per_unit, chunk_s=chunk_s,
                 units_per_s=DEFAULT_CHUNK / chunk_s,
                 units_per_s_per_core=DEFAULT_CHUNK / chunk_s / cores)
        rows.append(r)
    print(f"data: {args.samples} training samples x {args.voxels} voxels, {N_TEST} test "
          f"samples, {args.num_voxel} voxels per unit, {args.dtype}; {cores} cores\n")
    print("| decoder | set-up per training set (s) | per call (s) | per unit (ms) | "
          f"units/s at {DEFAULT_CHUNK}-unit chunks | per core | CPU time per unit (core-ms) "
          "| peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['setup_s']:.2f} | {r['per_call_s']:.2f} | "
              f"{1e3 * r['per_unit_s']:.2f} | {r['units_per_s']:.0f} | "
              f"{r['units_per_s_per_core']:.0f} | {1e3 * r['core_s_per_unit_at_chunk']:.1f} | "
              f"{r['peak_rss_mib']:.0f} |")
    speedup = rows[1]["units_per_s"] / rows[0]["units_per_s"]
    print(f"\ntorch / fastl2lir throughput: {speedup:.2f}x; predictions differ by at most "
          f"{agreement['max_abs_diff_over_scale']:.1e} of their scale; identical voxel "
          f"selections for {100 * agreement['same_voxels_share']:.1f}% of the units")
    if "fastl2lir_vs_float64_over_scale" in agreement:
        print(f"distance from the float64 solution, over the scale: fastl2lir "
              f"{agreement['fastl2lir_vs_float64_over_scale']:.1e}, torch "
              f"{agreement['torch_vs_float64_over_scale']:.1e}")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} (1 min), on {cores} cores")
    out = {"args": {k: v for k, v in vars(args).items() if k != "contestant"},
           "cores": cores, "load_average": load, "results": results, "agreement": agreement,
           "speedup": speedup}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    (OUT_DIR / "bench_decoding.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
