"""Benchmark: time per iteration of each reconstruction engine against its floor.

Usage::

    python benchmarks/bench_iteration.py [--quick] [--rounds 5] [--device cpu]
        [--malloc default|retain] [--channels-last] [--json out.json]

For each engine (icnn_lbfgs, icnn_gd, icnn_dgn_gd, icnn_dgn_lbfgs) and layer set
(``conv1``: conv1_1 + conv1_2; ``all19``: the 16 conv layers + fc6, fc7, fc8, as the
scripts use), with random-weight VGG19 and DeePSiM generator and targets from a random
image, it measures in one process:

- **engine**: the time between consecutive forward passes of the encoder inside the
  engine, i.e. one full iteration (GD) or one function evaluation (L-BFGS): render,
  forward, loss, backward, update, scipy's bookkeeping, progress. The first interval of
  each run (warm-up) is dropped; set-up outside the loop is not counted;
- **floor**: the bare minimum one iteration needs, on the same weight tensors: VGG19
  forward to the deepest target layer and the backward of a scalar to the input (pixel
  engines), plus the generator forward/backward and the crop (DGN engines). It has no
  loss: the loss on the target layers is part of what the engine is measured doing;
- **scipy** (L-BFGS engines): the part of each evaluation spent inside scipy's L-BFGS-B,
  i.e. outside our objective function, measured in the same engine runs by wrapping the
  objective that the engine hands to ``scipy.optimize.minimize`` (the median time from
  the end of one evaluation to the start of the next). It is the
  algorithm's own cost (``O(m n)`` work per iteration on n = 150,528 pixels or 4,096
  latents, m = 10), which a faithful port keeps.

Floor and engine runs alternate (``--rounds`` rounds, each a floor run and an engine run
of about the same length) so that both see the same machine load. Reported: the median
per-iteration times over all rounds, and **engine / floor as the median of the per-round
ratios** (each round's engine median over the floor median measured just before it),
which cancels the slow drifts of a shared machine. Goal of issue 5: engine / floor <= 1.10.

``--malloc retain`` first calls :func:`icnn_torch.perf.retain_freed_memory` (what the
figure scripts do on the CPU); ``--channels-last`` converts both nets to channels-last
memory format (floor and engine alike).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (add_malloc_argument, apply_malloc, iteration_table, machine_info,  # noqa: E402
                     sync, write_json)

from icnn_torch import icnn_dgn_gd, icnn_dgn_lbfgs, icnn_gd, icnn_lbfgs  # noqa: E402
from icnn_torch.recon import lbfgs as optim_lbfgs  # noqa: E402
from icnn_torch.models import VGG19, VGG19_LAYERS, DeePSiMGenerator, center_crop  # noqa: E402

GOAL = 1.10
LAYER_SETS = {
    "conv1": ("conv1_1", "conv1_2"),
    "all19": tuple(n for n in VGG19_LAYERS if n.startswith("conv")) + ("fc6", "fc7", "fc8"),
}
ENGINES = ("icnn_lbfgs", "icnn_gd", "icnn_dgn_gd", "icnn_dgn_lbfgs")
LBFGS_ENGINES = ("icnn_lbfgs", "icnn_dgn_lbfgs")


class TimedEncoder:
    """An encoder proxy stamping the time of every forward that builds a graph."""

    def __init__(self, net, device: torch.device) -> None:
        self.net = net
        self.device = device
        self.layer_names = net.layer_names
        self.img_mean = net.img_mean
        self.input_size = net.input_size
        self.stamps: list[float] = []

    def parameters(self):
        return self.net.parameters()

    def __call__(self, x, layers=None):
        if torch.is_grad_enabled():
            sync(self.device)
            self.stamps.append(time.perf_counter())
        return self.net(x, layers)

    def intervals(self) -> list[float]:
        """Seconds between consecutive forwards, the first (warm-up) interval dropped."""
        return np.diff(self.stamps).tolist()[1:]


class ScipyShare:
    """Wraps ``scipy.optimize.minimize`` as the engines call it, to time scipy's own work.

    While active, the objective passed to ``minimize`` is wrapped to stamp when each
    evaluation starts and ends; the gaps between the end of one evaluation and the start of
    the next are the time L-BFGS-B spends per evaluation (set-up before the first and
    clean-up after the last are excluded).
    """

    def __init__(self) -> None:
        self.gaps: list[float] = []

    def __enter__(self) -> "ScipyShare":
        self._orig = optim_lbfgs.scipy.optimize.minimize
        share = self

        def minimize(fun, x0, *args, **kwargs):
            last_end = [None]

            def timed(x):
                t0 = time.perf_counter()
                if last_end[0] is not None:
                    share.gaps.append(t0 - last_end[0])
                try:
                    return fun(x)
                finally:
                    last_end[0] = time.perf_counter()
            return share._orig(timed, x0, *args, **kwargs)

        optim_lbfgs.scipy.optimize.minimize = minimize
        return self

    def __exit__(self, *exc) -> None:
        optim_lbfgs.scipy.optimize.minimize = self._orig

    @property
    def scipy_s_per_evaluation(self) -> float | None:
        return statistics.median(self.gaps) if self.gaps else None


def run_engine(engine: str, feats: dict, net, gen, device: torch.device, iters: int) -> tuple[list[float], float | None]:
    """Per-iteration (per-evaluation for L-BFGS) seconds of one short engine run, and for
    L-BFGS the seconds per evaluation spent inside scipy."""
    timed = TimedEncoder(net, device)
    z0 = np.zeros(4096, np.float32)
    start = np.full((224, 224, 3), 128, np.float32)
    share = ScipyShare()
    with share:
        if engine == "icnn_gd":
            icnn_gd.reconstruct_image(feats, timed, initial_image=start, iter_n=iters + 2,
                                      disp_every=0, device=device)
        elif engine == "icnn_lbfgs":
            icnn_lbfgs.reconstruct_image(feats, timed, initial_image=start, maxiter=iters + 1,
                                         disp=0, device=device)
        elif engine == "icnn_dgn_gd":
            icnn_dgn_gd.reconstruct_image(feats, timed, gen, initial_gen_feat=z0, iter_n=iters + 2,
                                          disp_every=0, device=device)
        elif engine == "icnn_dgn_lbfgs":
            icnn_dgn_lbfgs.reconstruct_image(feats, timed, gen, initial_gen_feat=z0 + 1.0,
                                             maxiter=iters + 1, disp=0, device=device)
        else:
            raise ValueError(engine)
    scipy_s = share.scipy_s_per_evaluation if engine in LBFGS_ENGINES else None
    return timed.intervals()[:iters + 1], scipy_s


def run_floor(engine: str, layers, net, gen, device: torch.device, iters: int,
              memory_format: torch.memory_format) -> list[float]:
    """Per-iteration seconds of forward to the deepest layer + backward to the input."""
    deepest = max(layers, key=VGG19_LAYERS.index)
    dgn = "dgn" in engine
    if dgn:
        v = torch.ones(1, 4096, device=device)
    else:
        v = torch.zeros(1, 3, 224, 224, device=device).contiguous(memory_format=memory_format)
    times = []
    for _ in range(iters + 1):
        sync(device)
        t0 = time.perf_counter()
        leaf = v.detach().requires_grad_(True)
        image = center_crop(gen(leaf), net.input_size) if dgn else leaf
        out = net(image, [deepest])[deepest]
        (grad,) = torch.autograd.grad(out.sum(), leaf)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times[1:]


def measure(engine: str, layer_set: str, feats: dict, net, gen, device, rounds: int, iters: int,
            memory_format) -> dict:
    """Alternating floor/engine rounds of one (engine, layer set)."""
    layers = LAYER_SETS[layer_set]
    floor_all, eng_all, ratios, scipy_s = [], [], [], []
    run_engine(engine, feats, net, gen, device, 2)  # untimed warm-up
    for _ in range(rounds):
        f = run_floor(engine, layers, net, gen, device, iters, memory_format)
        e, s = run_engine(engine, feats, net, gen, device, iters)
        floor_all += f
        eng_all += e
        ratios.append(statistics.median(e) / statistics.median(f))
        if s is not None:
            scipy_s.append(s)
    floor_s, engine_s = statistics.median(floor_all), statistics.median(eng_all)
    row = {"engine": engine, "layers": layer_set, "floor_s": floor_s, "engine_s": engine_s,
           "ratio": statistics.median(ratios), "round_ratios": ratios,
           "iters_per_run": iters, "rounds": rounds}
    if scipy_s:
        s = statistics.median(scipy_s)
        row["scipy_s"] = s
        row["ratio_without_scipy"] = (engine_s - s) / floor_s
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 iterations (smoke run)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating floor/engine rounds")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed iterations per run (default: 12 for conv1, 5 for all19)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--layer-sets", nargs="+", default=list(LAYER_SETS), choices=list(LAYER_SETS))
    add_malloc_argument(parser)
    parser.add_argument("--channels-last", action="store_true", help="channels-last nets")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc_applied = apply_malloc(args.malloc)
    rounds = 2 if args.quick else args.rounds
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    torch.manual_seed(0)
    net = VGG19().to(device, memory_format=memory_format)
    gen = DeePSiMGenerator().to(device, memory_format=memory_format)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-100, 100, (1, 3, 224, 224)), dtype=torch.float32, device=device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"malloc {args.malloc}, {'channels-last' if args.channels_last else 'contiguous'} nets, "
          f"{rounds} rounds", flush=True)
    rows = []
    for layer_set in args.layer_sets:
        layers = LAYER_SETS[layer_set]
        iters = 2 if args.quick else (args.iters or (12 if layer_set == "conv1" else 5))
        with torch.no_grad():
            feats = {n: f[0].cpu().numpy() for n, f in net(x, layers).items()}
        for engine in args.engines:
            row = measure(engine, layer_set, feats, net, gen, device, rounds, iters, memory_format)
            rows.append(row)
            extra = "" if "scipy_s" not in row else \
                f"  scipy {row['scipy_s'] * 1e3:.0f} ms/eval, without it {row['ratio_without_scipy']:.3f}"
            print(f"{engine:<16}{layer_set:<7} engine {row['engine_s']:.4f}  floor {row['floor_s']:.4f}  "
                  f"ratio {row['ratio']:.3f}{extra}", file=sys.stderr, flush=True)
    print(iteration_table(rows, GOAL))
    worst = max(r["ratio"] for r in rows)
    print(f"\nworst engine / floor {worst:.2f} (goal <= {GOAL:.2f}); L-BFGS rows are per function "
          "evaluation")
    if args.json:
        write_json(args.json, {"bench": "iteration", "machine": machine_info(), "device": str(device),
                               "malloc": args.malloc, "malloc_applied": malloc_applied,
                               "channels_last": args.channels_last, "rows": rows, "goal": GOAL})
    return 0


if __name__ == "__main__":
    sys.exit(main())
