"""Benchmark: our engines against KamitaniLab's bdpy 0.26 on the same work (CPU).

Usage::

    python benchmarks/bench_bdpy.py [--quick] [--iters 6] [--repeats 5] [--threads N] [--json out.json]

bdpy is a dependency of the package (its BData format, for the decoding); the benchmark
compares with release 0.26, the installed one when it is that release, otherwise a copy
installed for the benchmark only into ``benchmarks/_out/bdpy`` (git-ignored) with
``pip install --target benchmarks/_out/bdpy --no-deps bdpy==0.26``. bdpy's package
``__init__`` imports ``yaml``, ``hdf5storage`` and ``pandas`` for file and metadata helpers
that ``reconstruct`` does not use; when they are not installed, empty stand-in modules
take their place (any use of them would fail loudly, none happens).

Two configurations, each on the same random weights (our VGG19 and DeePSiM generator,
copied into bdpy's ``VGG19`` and ``AlexNetGenerator``), the same target features (true
features of a random image, all 19 layers of script 1), the same layer weights
(``1/||f||^2`` normalised), options and iteration count:

- ``dgn``: :func:`icnn_torch.icnn_dgn_gd.reconstruct_image` against
  ``bdpy.recon.torch.icnn.reconstruct(..., generator=...)`` with script 1's options:
  lr 2 -> 1e-10, momentum 0.9, decay 0.01, z0 = 0, bounds 0 .. an fc7-like vector
  (integers 2..6), gradient normalisation, crop 256 -> 224;
- ``pixel_gd``: :func:`icnn_torch.icnn_gd.reconstruct_image` against bdpy without a
  generator, both with the original icnn_gd defaults: lr 2 -> 1e-10, momentum 0.9, decay
  0.2 -> 1e-10, gradient normalisation, Gaussian blur sigma 2 -> 0.5 after every step
  (bdpy ``blurring=True``; our blur equals scipy's filter), no jitter, same initial image.

bdpy is run as a user gets it: its modules keep ``requires_grad=True`` (so it computes
weight gradients every iteration) and its VGG19 always runs to fc8 (here the layer set ends at
fc8 anyway). The ratio is sensitive to the C allocator: bdpy allocates (and glibc maps and
page-faults) hundreds of MB of gradients per iteration. ``--malloc retain`` calls
:func:`icnn_torch.perf.retain_freed_memory` before anything runs: the setting is
process-wide, so bdpy and the floor get it too and the comparison stays like for like.

A third contestant, the floor, is the bare frozen-weight computation of one iteration on
the same tensors (see ``benchmarks/_common.py``).

Timing: contestants run interleaved (ours, bdpy, floor, ours, bdpy, floor, ...), each run
``--iters`` iterations; a forward pre-hook on the first layer of each iteration stamps its
start, so per-iteration times exclude set-up; the first iteration of every run is dropped
(warm-up) and one untimed warm-up run of each precedes the repeats. Reported: the median
per-iteration time over all repeats, and bdpy/ours and ours/floor ratios of those medians.
The machine may be shared: the CPU time other processes used during each run is measured
(``/proc/stat``); when any run saw more than 0.3 busy cores, the headline figures are the
medians of the quiet runs only (or, when no run was quiet, the minima), and the table says
which. All three statistics are in the JSON and the notes.
bdpy's snapshot saving and printing are disabled (``save_snapshot=False``, ``disp_interval``
past the last iteration). The first and last loss of each run show it is the same work.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import subprocess
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import (ALL_19_LAYERS, OUT_DIR, Floor, IterationClock, OtherCpuLoad,  # noqa: E402
                     add_malloc_argument, apply_malloc, build_models, fc7_like_upper_bound, fmt_s,
                     layer_weights, machine_info, md_table, median, random_caffe_images,
                     true_features, write_json)

from icnn_torch import icnn_dgn_gd, icnn_gd  # noqa: E402
from icnn_torch.models import _VGG19_TORCHVISION_KEYS  # noqa: E402

BDPY_VERSION = "0.26"
BDPY_DIR = OUT_DIR / "bdpy"
SPEED_GOAL = 2.0  # issue 5: >= 2x faster per iteration than bdpy (3x is the goal)

# bdpy's human-readable layer names -> attribute paths of its VGG19 (bdpy.dl.torch.models.layer_map).
BDPY_LAYER_MAPPING = {name: key.replace("features.", "features[").replace("classifier.", "classifier[") + "]"
                      for name, key in _VGG19_TORCHVISION_KEYS.items()}


# ---------------------------------------------------------------------------------------
# bdpy, benchmark-only


def ensure_bdpy(target: Path = BDPY_DIR):
    """Import bdpy 0.26: the installed one when it is that release, else from ``target``,
    installing it there first when missing."""
    from importlib import metadata
    try:
        installed = metadata.version("bdpy")
    except metadata.PackageNotFoundError:
        installed = None
    if installed == BDPY_VERSION:
        target = None
    elif not (target / "bdpy" / "recon" / "torch" / "icnn.py").exists():
        print(f"installing bdpy=={BDPY_VERSION} into {target} (benchmark only)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target),
                        "--no-deps", f"bdpy=={BDPY_VERSION}"], check=True)
    if target is not None and str(target) not in sys.path:
        sys.path.insert(0, str(target))
    stubs = []
    for name in ("yaml", "hdf5storage", "pandas"):  # imported by bdpy/__init__, unused here
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
            stubs.append(name)
    try:
        import bdpy
        import bdpy.recon.torch.icnn as bdpy_icnn
        from bdpy.dl.torch import models as bdpy_models
    finally:
        for name in stubs:  # bdpy keeps its references; nobody else must see them
            sys.modules.pop(name, None)
    version = getattr(bdpy, "__version__", None)
    if version is None and target is None:
        version = installed
    elif version is None:
        dist = list(target.glob("bdpy-*.dist-info"))
        version = dist[0].name.removeprefix("bdpy-").removesuffix(".dist-info") if dist else "?"
    return bdpy_icnn, bdpy_models, version


def bdpy_encoder(bdpy_models, vgg) -> torch.nn.Module:
    """bdpy's VGG19 holding our VGG19's weights (left trainable, as a bdpy user has it)."""
    enc = bdpy_models.VGG19()
    sd = vgg.state_dict()
    with torch.no_grad():
        for name, key in _VGG19_TORCHVISION_KEYS.items():
            mod = enc.get_submodule(key)
            mod.weight.copy_(sd[f"{name}.weight"])
            mod.bias.copy_(sd[f"{name}.bias"])
    return enc.eval()


def bdpy_generator(bdpy_models, gen) -> torch.nn.Module:
    """bdpy's fc7 generator (``AlexNetGenerator``) holding our generator's weights.

    Its layers are reachable both as attributes (``defc7`` ...) and inside the
    ``defc``/``deconv`` Sequentials, so the state_dict has each tensor under two names;
    copying by attribute fills both.
    """
    out = bdpy_models.AlexNetGenerator()
    with torch.no_grad():
        for name, mod in gen.named_children():
            dst = getattr(out, name)
            if dst.weight.shape != mod.weight.shape:
                raise RuntimeError(f"generator layer {name}: bdpy {tuple(dst.weight.shape)} vs ours "
                                   f"{tuple(mod.weight.shape)}")
            dst.weight.copy_(mod.weight)
            dst.bias.copy_(mod.bias)
    return out.eval()


# ---------------------------------------------------------------------------------------
# The contestants


class Contest:
    """Targets, options and the three runners of one configuration."""

    def __init__(self, config: str, vgg, gen, enc_b, gen_b, bdpy_icnn, n_iter: int,
                 layers=ALL_19_LAYERS) -> None:
        self.config, self.n_iter = config, n_iter
        self.vgg, self.gen, self.enc_b, self.gen_b, self.bdpy_icnn = vgg, gen, enc_b, gen_b, bdpy_icnn
        feats = true_features(vgg, random_caffe_images(1, seed=11), layers)
        self.features_1 = feats  # (1, ...) arrays: bdpy wants the batch axis
        self.features = {n: f[0] for n, f in feats.items()}
        self.weights = layer_weights(feats)
        self.upper = fc7_like_upper_bound()
        self.x0 = random_caffe_images(1, seed=12)[0]  # (3, 224, 224) Caffe space
        self.rgb0 = np.ascontiguousarray((self.x0 + vgg.img_mean.reshape(3, 1, 1))[::-1].transpose(1, 2, 0))
        self.floor = Floor(vgg, gen if config == "dgn" else None, feats, self.weights)
        self.tmp = str(OUT_DIR / "bdpy_output")  # bdpy creates it; nothing is written

    # Each runner returns (per-iteration seconds, losses).

    def ours(self):
        dgn = self.config == "dgn"
        clock_on = self.gen.defc7 if dgn else self.vgg.conv1_1
        with IterationClock(clock_on) as clock:
            if dgn:
                _, loss = icnn_dgn_gd.reconstruct_image(
                    self.features, self.vgg, self.gen, layer_weight=self.weights,
                    initial_gen_feat=np.zeros(4096, np.float32), feat_upper_bound=self.upper,
                    feat_lower_bound=0., iter_n=self.n_iter, lr_start=2., lr_end=1e-10,
                    momentum_start=0.9, momentum_end=0.9, decay_start=0.01, decay_end=0.01,
                    disp_every=0)
            else:
                _, loss = icnn_gd.reconstruct_image(
                    self.features, self.vgg, layer_weight=self.weights, initial_image=self.rgb0,
                    iter_n=self.n_iter, lr_start=2., lr_end=1e-10, momentum_start=0.9,
                    momentum_end=0.9, decay_start=0.2, decay_end=1e-10, image_jitter=False,
                    image_blur=True, sigma_start=2., sigma_end=0.5, disp_every=0)
        return clock.iteration_times(self.n_iter), np.asarray(loss, dtype=np.float64)

    def bdpy(self):
        dgn = self.config == "dgn"
        clock_on = self.gen_b.defc7 if dgn else self.enc_b.features[0]
        common = dict(layer_mapping=BDPY_LAYER_MAPPING, n_iter=self.n_iter, lr=(2., 1e-10),
                      momentum=(0.9, 0.9), layer_weights=self.weights, return_loss=True,
                      output_dir=self.tmp, save_snapshot=False, disp_interval=self.n_iter + 1,
                      device="cpu")
        with IterationClock(clock_on) as clock, contextlib.redirect_stdout(io.StringIO()):
            if dgn:
                _, loss = self.bdpy_icnn.reconstruct(
                    self.features_1, self.enc_b, generator=self.gen_b, decay=(0.01, 0.01),
                    initial_feature=np.zeros(4096, np.float32), feature_size=(4096,),
                    feature_upper_bound=self.upper, feature_lower_bound=0.,
                    image_size=(224, 224, 3), crop_generator_output=True, **common)
            else:
                _, loss = self.bdpy_icnn.reconstruct(
                    self.features_1, self.enc_b, decay=(0.2, 1e-10),
                    initial_image=self.x0.copy(), jittering=False, blurring=True,
                    sigma=(2., 0.5), **common)
        gc.collect()  # drop bdpy's FeatureExtractor (its __del__ removes its hooks)
        return clock.iteration_times(self.n_iter), np.asarray(loss, dtype=np.float64)

    def floor_run(self):
        if self.config == "dgn":
            v0 = torch.zeros(1, 4096)
        else:
            v0 = torch.as_tensor(self.x0[None].copy())
        return self.floor.time_iterations(v0, self.n_iter)[1:], None


QUIET_CORES = 0.3  # a run during which other processes used less than this is "quiet"


def run_config(contest: Contest, repeats: int) -> dict:
    """Interleaved repeats of ours, bdpy and the floor; medians, minima, quiet-run medians."""
    runners = {"ours": contest.ours, "bdpy": contest.bdpy, "floor": contest.floor_run}
    samples = {k: [] for k in runners}
    quiet = {k: [] for k in runners}
    repeat_medians = {k: [] for k in runners}
    run_loads = {k: [] for k in runners}
    losses = {}
    for k, fn in runners.items():  # untimed warm-up
        t, loss = fn()
        if loss is not None:
            losses[k] = loss
    for _ in range(repeats):
        for k, fn in runners.items():
            with OtherCpuLoad() as load:
                t, _ = fn()
            samples[k] += t
            repeat_medians[k].append(median(t))
            run_loads[k].append(load.cores)
            if load.cores is not None and load.cores < QUIET_CORES:
                quiet[k] += t
    med = {k: median(v) for k, v in samples.items()}
    best = {k: min(v) for k, v in samples.items()}
    quiet_med = {k: median(v) for k, v in quiet.items()} if all(quiet.values()) else None
    loads = [c for v in run_loads.values() for c in v if c is not None]
    contended = bool(loads) and max(loads) >= QUIET_CORES
    # The headline: medians of all runs on a quiet machine; otherwise of the quiet runs, or
    # the minima (least disturbed iteration) when no run was quiet.
    if not contended:
        basis, ref = "median", med
    elif quiet_med is not None:
        basis, ref = "median of quiet runs", quiet_med
    else:
        basis, ref = "minimum (machine busy throughout)", best
    pair = [b / o for b, o in zip(repeat_medians["bdpy"], repeat_medians["ours"])]
    ours_l, bdpy_l = losses["ours"], losses["bdpy"]
    rel = np.abs(ours_l - bdpy_l) / np.maximum(np.abs(bdpy_l), 1e-30)
    return {
        "config": contest.config, "layers": len(contest.features), "iters_per_run": contest.n_iter,
        "repeats": repeats, "median_s": med, "min_s": best, "quiet_median_s": quiet_med,
        "repeat_medians_s": repeat_medians, "run_other_cores": run_loads,
        "bdpy_over_ours": med["bdpy"] / med["ours"], "ours_over_floor": med["ours"] / med["floor"],
        "bdpy_over_floor": med["bdpy"] / med["floor"],
        "min_bdpy_over_ours": best["bdpy"] / best["ours"],
        "min_ours_over_floor": best["ours"] / best["floor"],
        "quiet_bdpy_over_ours": None if quiet_med is None else quiet_med["bdpy"] / quiet_med["ours"],
        "headline_basis": basis, "headline_s": ref,
        "headline_bdpy_over_ours": ref["bdpy"] / ref["ours"],
        "headline_ours_over_floor": ref["ours"] / ref["floor"],
        "pairwise_bdpy_over_ours": pair,
        "loss_ours_first_last": [float(ours_l[0]), float(ours_l[-1])],
        "loss_bdpy_first_last": [float(bdpy_l[0]), float(bdpy_l[-1])],
        "loss_max_rel_diff": float(rel.max()),
    }


DESCRIPTIONS = {
    "dgn": "icnn_dgn_gd vs bdpy + generator (VGG19 19 layers, DeePSiM fc7; script 1 options)",
    "pixel_gd": "icnn_gd vs bdpy pixel GD (VGG19 19 layers; blur 2->0.5, no jitter, decay 0.2)",
}


def table(results: list[dict]) -> str:
    """One row per configuration, on the headline basis (see :func:`run_config`)."""
    rows = []
    for r in results:
        m = r["headline_s"]
        rows.append([r["config"], r["headline_basis"], fmt_s(m["ours"]), fmt_s(m["bdpy"]),
                     fmt_s(m["floor"]), f"**{r['headline_bdpy_over_ours']:.2f}x**",
                     f"{r['headline_ours_over_floor']:.2f}",
                     f"{r['loss_ours_first_last'][0]:.4g} -> {r['loss_ours_first_last'][1]:.4g}",
                     f"{r['loss_bdpy_first_last'][0]:.4g} -> {r['loss_bdpy_first_last'][1]:.4g}",
                     f"{r['loss_max_rel_diff']:.1e}"])
    return md_table(["config", "statistic", "ours s/iter", "bdpy s/iter", "floor s/iter", "bdpy / ours",
                     "ours / floor", "loss ours (first -> last)", "loss bdpy (first -> last)",
                     "max rel. loss diff"], rows)


def notes(r: dict) -> str:
    """The other statistics of one configuration, one line."""
    quiet = r["quiet_bdpy_over_ours"]
    return (f"bdpy/ours: median of all runs {r['bdpy_over_ours']:.2f}, of quiet runs "
            + ("n/a" if quiet is None else f"{quiet:.2f}")
            + f", of minima {r['min_bdpy_over_ours']:.2f}; per repeat "
            + ", ".join(f"{p:.2f}" for p in r["pairwise_bdpy_over_ours"])
            + "; other processes' cores per run (ours/bdpy/floor): "
            + " | ".join(",".join("?" if c is None else f"{c:.1f}" for c in r["run_other_cores"][k])
                         for k in ("ours", "bdpy", "floor")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 iterations, 2 repeats")
    ap.add_argument("--iters", type=int, default=None, help="iterations per run (default 6)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5)")
    ap.add_argument("--configs", default="dgn,pixel_gd")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads for both (default: torch's, one per core)")
    add_malloc_argument(ap)
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc_applied = apply_malloc(args.malloc)
    n_iter = args.iters or (4 if args.quick else 6)
    repeats = args.repeats or (2 if args.quick else 5)
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    bdpy_icnn, bdpy_models, version = ensure_bdpy()
    vgg, gen = build_models(seed=0)
    enc_b = bdpy_encoder(bdpy_models, vgg)
    gen_b = bdpy_generator(bdpy_models, gen)
    results = []
    for config in args.configs.split(","):
        contest = Contest(config, vgg, gen, enc_b, gen_b, bdpy_icnn, n_iter)
        with OtherCpuLoad() as load:
            results.append(run_config(contest, repeats))
        results[-1]["other_cpu_cores"] = load.cores
        print(f"{config}: done", file=sys.stderr, flush=True)
    out = {"bench": "bdpy", "bdpy_version": version, "machine": machine_info(), "results": results,
           "threads": torch.get_num_threads(), "malloc": args.malloc, "malloc_applied": malloc_applied,
           "goal_bdpy_over_ours": SPEED_GOAL, "descriptions": DESCRIPTIONS}
    print(f"bdpy {version} vs icnn_torch, CPU, {n_iter} iterations x {repeats} interleaved repeats "
          f"(s/iteration, first iteration of each run dropped); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, malloc {args.malloc} (all contestants)")
    print(table(results))
    for r in results:
        print(f"- {r['config']}: {DESCRIPTIONS[r['config']]}; {notes(r)}")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
