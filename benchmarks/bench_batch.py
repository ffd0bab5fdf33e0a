"""Benchmark: batched icnn_dgn_gd, time per image.

Usage::

    python benchmarks/bench_batch.py [--quick] [--iters 4] [--repeats 2] [--json out.json]

:func:`icnn_torch.icnn_dgn_gd.reconstruct_image` with a batch of B different targets
(true features of B random images, VGG19 all 19 layers + DeePSiM fc7 generator, script 1's
options, z0 = 0), random weights. Each batch size runs ``--iters`` iterations per repeat,
batch sizes interleaved (1, 8, 1, 8, ...); a forward pre-hook on the generator's first
layer stamps each iteration's start (with a device synchronisation on CUDA), the first
iteration of every run is dropped, and the median iteration time is reported as

- seconds per image-iteration = iteration time / B (lower is better),
- image-iterations per second = B / iteration time ("images/s" of the issue; a 200-iteration
  reconstruction of one image takes 200 image-iterations),
- speed-up per image over batch 1.

CPU: batch 1 and 8. CUDA (when present): batch 1, 8, 24, 64 (a batch that does not fit
in the GPU's memory is reported as out of memory); skipped with a message otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import (ALL_19_LAYERS, IterationClock, OtherCpuLoad, add_malloc_argument,  # noqa: E402
                     apply_malloc, build_models, fc7_like_upper_bound, layer_weights, machine_info,
                     md_table, median, random_caffe_images, true_features, write_json)

from icnn_torch import icnn_dgn_gd  # noqa: E402

CPU_BATCHES = (1, 8)
CUDA_BATCHES = (1, 8, 24, 64)


def make_targets(vgg, batch: int):
    feats = true_features(vgg, random_caffe_images(batch, seed=100 + batch), ALL_19_LAYERS)
    weights = [layer_weights(feats, i) for i in range(batch)]
    return feats, weights


def run_once(vgg, gen, feats, weights, n_iter: int, device) -> list[float]:
    upper = fc7_like_upper_bound()
    with IterationClock(gen.defc7, device=device) as clock:
        icnn_dgn_gd.reconstruct_image(
            feats, vgg, gen, layer_weight=weights, initial_gen_feat=np.zeros(4096, np.float32),
            feat_upper_bound=upper, feat_lower_bound=0., iter_n=n_iter, lr_start=2.,
            lr_end=1e-10, momentum_start=0.9, momentum_end=0.9, decay_start=0.01,
            decay_end=0.01, disp_every=0, device=device)
    return clock.iteration_times(n_iter)


def bench_device(device: str, batches, n_iter: int, repeats: int) -> list[dict]:
    vgg, gen = build_models(seed=0, device=device)
    targets = {b: make_targets(vgg, b) for b in batches}
    samples = {b: [] for b in batches}
    failed: dict[int, str] = {}
    for rep in range(repeats + 1):  # repeat 0 is the untimed warm-up
        for b in batches:
            if b in failed:
                continue
            try:
                t = run_once(vgg, gen, *targets[b], n_iter, device)
            except torch.OutOfMemoryError:
                failed[b] = "out of memory"
                torch.cuda.empty_cache()
                continue
            if rep > 0:
                samples[b] += t
    rows = []
    base = None
    for b in batches:
        if b in failed:
            rows.append({"device": device, "batch": b, "error": failed[b]})
            continue
        it = median(samples[b])
        per_image = it / b
        if base is None:
            base = per_image
        rows.append({"device": device, "batch": b, "s_per_iter": it, "s_per_image_iter": per_image,
                     "image_iters_per_s": b / it, "speedup_per_image_vs_first": base / per_image,
                     "samples": len(samples[b])})
    return rows


def table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["device"], r["batch"], r["error"], "", "", ""])
            continue
        out.append([r["device"], r["batch"], f"{r['s_per_iter']:.3f}", f"{r['s_per_image_iter']:.3f}",
                    f"{r['image_iters_per_s']:.2f}", f"{r['speedup_per_image_vs_first']:.2f}x"])
    return md_table(["device", "batch", "s / iteration", "s / image-iteration", "image-iterations / s",
                     "per-image speed-up vs batch 1"], out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 iterations, 1 repeat")
    ap.add_argument("--iters", type=int, default=None, help="iterations per run (default 4)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 2)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: torch's, one per core)")
    add_malloc_argument(ap)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc_applied = apply_malloc(args.malloc)
    n_iter = args.iters or (3 if args.quick else 4)
    repeats = args.repeats or (1 if args.quick else 2)
    rows = []
    with OtherCpuLoad() as load:
        rows += bench_device("cpu", CPU_BATCHES, n_iter, repeats)
    cuda_note = None
    if torch.cuda.is_available():
        rows += bench_device("cuda", CUDA_BATCHES, max(n_iter, 6), max(repeats, 3))
    else:
        cuda_note = "CUDA not available: batch 1, 8, 24, 64 images/s on GPU skipped"
    print(f"Batched icnn_dgn_gd (VGG19 19 layers + generator), {n_iter} iterations x {repeats} "
          f"repeats, median; first iteration of each run dropped; malloc {args.malloc}")
    print(table(rows))
    if cuda_note:
        print(cuda_note)
    if load.cores is not None:
        print(f"other processes kept {load.cores:.2f} cores busy during the CPU runs")
    if args.json:
        write_json(args.json, {"bench": "batch", "machine": machine_info(), "rows": rows,
                               "malloc": args.malloc, "malloc_applied": malloc_applied,
                               "cuda_note": cuda_note, "other_cpu_cores": load.cores})
    return 0


if __name__ == "__main__":
    sys.exit(main())
