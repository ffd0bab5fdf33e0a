"""Benchmark: how far a batched icnn_dgn_gd run drifts from one-image-at-a-time runs.

Usage::

    python benchmarks/bench_batch_divergence.py [--iters 200] [--batch 2] [--quick]
                                               [--json out.json] [--device cpu]

What it measures. The figure scripts' ``--batch-size N`` optimises N images in one call of
:func:`icnn_torch.icnn_dgn_gd.reconstruct_image`. Every image's arithmetic is the same as
alone (its own loss, gradient normalisation, momentum, decay and bounds), but the float32
operations are grouped differently (convolutions and matrix products over a batch of N
choose other blockings and summation orders), so the roundings differ and the two runs
drift apart over the iterations. This script measures that drift.

How. Random-weight VGG19 and DeePSiM generator of the real sizes
(``_common.build_models``); targets are the true features, at script 1's 19 layers, of B
random images (``_common.random_caffe_images``, ``_common.true_features``); layer weights
as the scripts (``1 / ||f_l||^2`` per image, normalised to sum 1:
``_common.layer_weights``); script 1's options: loss l2, lr 2 -> 1e-10, momentum 0.9,
decay 0.01, z in [0, fc7-like upper bound] (a (4096,) float64 array of integers 2..6, as
the scripts load ``data/act_range/3x/fc7.txt`` with ``np.loadtxt``: z becomes float64 after
the first clip, as in the scripts), start z = 0 (float32), ``disp_every=0``. Runs:

1. the B targets as one batch (a list of B feature dicts and a list of B layer-weight
   dicts);
2. each image alone, with the same options (B runs);
3. the control: image 0 alone once more (the same call as in 2). If the two single runs
   are bit-identical, the computation is deterministic here and the batched-vs-single
   difference comes from rounding alone (the grouping of the batch), not from
   nondeterminism of the kernels;
4. the sensitivity check (skipped with ``--no-sensitivity``): image 0 alone with its
   targets moved by one float32 ulp (``np.nextafter`` towards +inf) at a random half of
   their values (layer weights unchanged), a perturbation of the size of one rounding.
   If it drifts from the unperturbed run as far as the batched run does, the drift is the
   optimisation's sensitivity to any rounding-size change, not something the batch does
   to the arithmetic.

Reported per image (batched vs single) and for the control and sensitivity pairs: the
first iteration (1-based) whose losses differ in any bit, the relative loss difference
``|L_a - L_b| / |L_b|`` at iterations 1, 5, 10, 50, 100, 200 (those within ``--iters``)
and the last, the final losses, and for the returned final images (RGB, 0..255 scale,
mean added back, not clipped; (224, 224, 3)): the Pearson correlation over all pixel
values, ``1 - r``, the largest and the mean absolute difference. A markdown table is
printed; ``--json`` writes it all with the full loss lists.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import (ALL_19_LAYERS, OtherCpuLoad, build_models, fc7_like_upper_bound,  # noqa: E402
                     layer_weights, machine_info, md_table, random_caffe_images, true_features,
                     write_json)

from icnn_torch import icnn_dgn_gd  # noqa: E402

#: Iterations (1-based) at which the relative loss difference is reported.
REPORT_ITERATIONS = (1, 5, 10, 50, 100, 200)
QUICK_ITERS = 20


def script1_options(iter_n: int, device: str) -> dict:
    """Script 1's icnn_dgn_gd options, with its symbolic values as the scripts resolve them."""
    return dict(loss_type="l2", iter_n=iter_n, lr_start=2., lr_end=1e-10,
                momentum_start=0.9, momentum_end=0.9, decay_start=0.01, decay_end=0.01,
                feat_lower_bound=0.,
                # 'fc7_3x': np.loadtxt gives float64, and so z is float64 after the first clip
                feat_upper_bound=fc7_like_upper_bound().astype(np.float64),
                initial_gen_feat=np.zeros(4096, dtype=np.float32),  # 'zeros'
                disp_every=0, device=device)


def run(vgg, gen, features, weights, options: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """One reconstruct_image call: (image(s), loss list(s), seconds)."""
    t0 = time.perf_counter()
    img, losses = icnn_dgn_gd.reconstruct_image(features, vgg, gen, layer_weight=weights,
                                                **options)
    return np.asarray(img), np.asarray(losses), time.perf_counter() - t0


def one_ulp_perturbed(features: dict, seed: int = 3) -> dict:
    """``features`` with a random half of each layer's values moved up by one float32 ulp."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, f in features.items():
        f = np.asarray(f, dtype=np.float32)
        up = np.nextafter(f, np.float32(np.inf))
        out[name] = np.where(rng.random(f.shape) < 0.5, up, f).astype(np.float32)
    return out


def first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """1-based index of the first iteration whose losses differ in any bit; None if none."""
    differ = np.flatnonzero(a != b)
    return int(differ[0]) + 1 if differ.size else None


def compare(loss_a: np.ndarray, loss_b: np.ndarray, img_a: np.ndarray, img_b: np.ndarray,
            iters: Sequence[int]) -> dict:
    """Run a against run b (b is the reference: one image alone)."""
    a64, b64 = loss_a.astype(np.float64), loss_b.astype(np.float64)
    rel = {int(t): float(abs(a64[t - 1] - b64[t - 1]) / abs(b64[t - 1])) for t in iters}
    x, y = img_a.astype(np.float64).ravel(), img_b.astype(np.float64).ravel()
    if np.array_equal(x, y):
        r = 1.0
    else:
        r = float(np.corrcoef(x, y)[0, 1])
    diff = np.abs(x - y)
    return {"first_differing_iteration": first_difference(loss_a, loss_b),
            "rel_loss_diff": rel,
            "final_loss_a": float(loss_a[-1]), "final_loss_b": float(loss_b[-1]),
            "image_pearson_r": r, "image_one_minus_r": 1.0 - r,
            "image_max_abs_diff": float(diff.max()), "image_mean_abs_diff": float(diff.mean()),
            "images_bit_identical": bool(np.array_equal(img_a, img_b)),
            "losses_bit_identical": bool(np.array_equal(loss_a, loss_b))}


def table(rows: list[dict], iters: Sequence[int]) -> str:
    headers = (["pair", "first differing iteration"]
               + [f"rel. loss diff @{t}" for t in iters]
               + ["final loss a", "final loss b", "image r", "1 - r", "max |diff| (0..255)",
                  "mean |diff|"])
    out = []
    for r in rows:
        first = r["first_differing_iteration"]
        out.append([r["pair"], "none" if first is None else first]
                   + [f"{r['rel_loss_diff'][t]:.1e}" for t in iters]
                   + [f"{r['final_loss_a']:.6e}", f"{r['final_loss_b']:.6e}",
                      f"{r['image_pearson_r']:.6f}", f"{r['image_one_minus_r']:.1e}",
                      f"{r['image_max_abs_diff']:.2f}", f"{r['image_mean_abs_diff']:.3f}"])
    return md_table(headers, out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=None,
                    help=f"iterations per run (default 200; {QUICK_ITERS} with --quick)")
    ap.add_argument("--batch", type=int, default=2, help="images in the batch (default 2)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK_ITERS} iterations unless --iters is given")
    ap.add_argument("--json", default=None, help="write the results as JSON to this path")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--no-sensitivity", action="store_true",
                    help="skip the run of image 0 with one-ulp-perturbed targets")
    args = ap.parse_args(argv)
    n_iter = args.iters or (QUICK_ITERS if args.quick else 200)
    if n_iter < 1 or args.batch < 2:
        ap.error("--iters must be >= 1 and --batch >= 2")
    iters = [t for t in REPORT_ITERATIONS if t <= n_iter]
    if n_iter not in iters:
        iters.append(n_iter)

    vgg, gen = build_models(seed=0, device=args.device)
    feats = true_features(vgg, random_caffe_images(args.batch, seed=1), ALL_19_LAYERS)
    per_image = [{n: np.ascontiguousarray(f[i]) for n, f in feats.items()}
                 for i in range(args.batch)]
    weights = [layer_weights(feats, i) for i in range(args.batch)]
    options = script1_options(n_iter, args.device)

    seconds = {}
    with OtherCpuLoad() as load:
        img_b, loss_b, seconds["batched"] = run(vgg, gen, per_image, weights, options)
        singles = []
        for i in range(args.batch):
            img, loss, seconds[f"single_{i}"] = run(vgg, gen, per_image[i], weights[i], options)
            singles.append((img, loss))
        img_c, loss_c, seconds["control_0"] = run(vgg, gen, per_image[0], weights[0], options)
        if not args.no_sensitivity:
            img_p, loss_p, seconds["perturbed_0"] = run(vgg, gen, one_ulp_perturbed(per_image[0]),
                                                        weights[0], options)

    rows = []
    for i in range(args.batch):
        r = compare(loss_b[i], singles[i][1], img_b[i], singles[i][0], iters)
        rows.append({"pair": f"image {i}: batched (a) vs alone (b)", "image": i,
                     "kind": "batched_vs_single", **r})
    r = compare(loss_c, singles[0][1], img_c, singles[0][0], iters)
    rows.append({"pair": "image 0: alone, second call (a) vs first (b) [control]", "image": 0,
                 "kind": "control", **r})
    if not args.no_sensitivity:
        r = compare(loss_p, singles[0][1], img_p, singles[0][0], iters)
        rows.append({"pair": "image 0: alone, targets moved 1 ulp (a) vs alone (b) [sensitivity]",
                     "image": 0, "kind": "sensitivity", **r})

    print(f"icnn_dgn_gd, batch of {args.batch} vs one image at a time: {n_iter} iterations, "
          f"script 1's options, random-weight VGG19 (19 layers) + DeePSiM generator, "
          f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(table(rows, iters))
    print("run seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    if load.cores is not None:
        print(f"other processes kept {load.cores:.2f} cores busy during the runs")
    control = next(r for r in rows if r["kind"] == "control")
    print("control: the two single runs of image 0 are "
          + ("bit-identical (losses and image): the batched-vs-single difference is rounding "
             "alone" if control["losses_bit_identical"] and control["images_bit_identical"]
             else "NOT bit-identical: the kernels are nondeterministic here, so part of the "
                  "difference is not the batch's rounding"))
    if args.json:
        write_json(args.json, {
            "bench": "batch_divergence", "machine": machine_info(), "device": args.device,
            "iters": n_iter, "batch": args.batch, "report_iterations": iters,
            "options": {k: (f"array {v.shape} {v.dtype}" if isinstance(v, np.ndarray) else v)
                        for k, v in options.items()},
            "rows": rows, "seconds": seconds, "other_cpu_cores": load.cores,
            "losses": {"batched": loss_b.tolist(),
                       "single": [s[1].tolist() for s in singles],
                       "control_0": loss_c.tolist(),
                       "perturbed_0": None if args.no_sensitivity else loss_p.tolist()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
