"""Benchmark: time per iteration of each reconstruction engine against its floor.

Usage::

    python benchmarks/bench_iteration.py [--quick] [--repeats 3] [--iters 6] [--device cpu]

For each engine (icnn_lbfgs, icnn_gd, icnn_dgn_gd, icnn_dgn_lbfgs) and layer set
(``conv1``: conv1_1 + conv1_2; ``all19``: the 16 conv layers + fc6, fc7, fc8, as the
scripts use), with random-weight VGG19 and DeePSiM generator and targets from a random
image, it measures in one process:

- **engine**: the median time between consecutive forward passes of the encoder inside
  the engine, i.e. one full iteration (GD) or one function evaluation (L-BFGS): render,
  forward, loss, backward, update, scipy's bookkeeping, progress. The first interval of
  each run (warm-up) is dropped; setup outside the loop is not counted;
- **floor**: the median time of the bare minimum one iteration needs: VGG19 forward to the
  deepest target layer and the backward of a scalar to the input (pixel engines), plus
  the generator forward/backward and crop for the DGN engines.

Engine and floor runs alternate (``--repeats`` rounds) so both see the same machine load.
The table gives the ratio of the medians and, less sensitive to other processes on a
shared machine, the ratio of the fastest iterations. Goal of the issue: ratio engine /
floor <= 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icnn_torch import icnn_dgn_gd, icnn_dgn_lbfgs, icnn_gd, icnn_lbfgs  # noqa: E402
from icnn_torch.models import VGG19, VGG19_LAYERS, DeePSiMGenerator, center_crop  # noqa: E402

GOAL = 1.10
LAYER_SETS = {
    "conv1": ("conv1_1", "conv1_2"),
    "all19": tuple(n for n in VGG19_LAYERS if n.startswith("conv")) + ("fc6", "fc7", "fc8"),
}
ENGINES = ("icnn_lbfgs", "icnn_gd", "icnn_dgn_gd", "icnn_dgn_lbfgs")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
            _sync(self.device)
            self.stamps.append(time.perf_counter())
        return self.net(x, layers)

    def intervals(self) -> list[float]:
        """Seconds between consecutive forwards, the first (warm-up) interval dropped."""
        gaps = np.diff(self.stamps).tolist()
        return gaps[1:]


def run_engine(engine: str, feats: dict, net, gen, device: torch.device, iters: int) -> list[float]:
    """Per-iteration (per-evaluation for L-BFGS) seconds of one short engine run."""
    timed = TimedEncoder(net, device)
    quiet = dict(device=device)
    z0 = np.zeros(4096, np.float32)
    start = np.full((224, 224, 3), 128, np.float32)
    if engine == "icnn_gd":
        icnn_gd.reconstruct_image(feats, timed, initial_image=start, iter_n=iters + 2,
                                  disp_every=0, **quiet)
    elif engine == "icnn_lbfgs":
        icnn_lbfgs.reconstruct_image(feats, timed, initial_image=start, maxiter=iters + 1,
                                     disp=0, **quiet)
    elif engine == "icnn_dgn_gd":
        icnn_dgn_gd.reconstruct_image(feats, timed, gen, initial_gen_feat=z0, iter_n=iters + 2,
                                      disp_every=0, **quiet)
    elif engine == "icnn_dgn_lbfgs":
        icnn_dgn_lbfgs.reconstruct_image(feats, timed, gen, initial_gen_feat=z0 + 1.0,
                                         maxiter=iters + 1, disp=0, **quiet)
    else:
        raise ValueError(engine)
    return timed.intervals()[:iters + 1]


def run_floor(engine: str, layers, net, gen, device: torch.device, iters: int) -> list[float]:
    """Per-iteration seconds of forward to the deepest layer + backward to the input."""
    deepest = max(layers, key=VGG19_LAYERS.index)
    dgn = "dgn" in engine
    if dgn:
        v = torch.ones(1, 4096, device=device)
    else:
        v = torch.zeros(1, 3, 224, 224, device=device)
    times = []
    for _ in range(iters + 1):
        _sync(device)
        t0 = time.perf_counter()
        leaf = v.detach().requires_grad_(True)
        image = center_crop(gen(leaf), net.input_size) if dgn else leaf
        out = net(image, [deepest])[deepest]
        (grad,) = torch.autograd.grad(out.sum(), leaf)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times[1:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 2 iterations (smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating engine/floor rounds")
    parser.add_argument("--iters", type=int, default=6, help="timed iterations per run")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--layer-sets", nargs="+", default=list(LAYER_SETS), choices=list(LAYER_SETS))
    args = parser.parse_args(argv)
    repeats, iters = (1, 2) if args.quick else (args.repeats, args.iters)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    torch.manual_seed(0)
    net = VGG19().to(device)
    gen = DeePSiMGenerator().to(device)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-100, 100, (1, 3, 224, 224)), dtype=torch.float32, device=device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{repeats} round(s) x {iters} iteration(s)", flush=True)
    header = (f"{'engine':<16}{'layers':<8}{'floor s/it':>12}{'engine s/it':>13}{'ratio':>8}"
              f"{'min ratio':>11}")
    print(header)
    print("-" * len(header))
    rows = []
    for layer_set in args.layer_sets:
        layers = LAYER_SETS[layer_set]
        with torch.no_grad():
            feats = {n: f[0].cpu().numpy() for n, f in net(x, layers).items()}
        for engine in args.engines:
            floor, eng = [], []
            for _ in range(repeats):
                floor += run_floor(engine, layers, net, gen, device, iters)
                eng += run_engine(engine, feats, net, gen, device, iters)
            f_med, e_med = statistics.median(floor), statistics.median(eng)
            ratio = e_med / f_med
            min_ratio = min(eng) / min(floor)
            rows.append((engine, layer_set, f_med, e_med, ratio))
            flag = "" if ratio <= GOAL else "  > goal"
            print(f"{engine:<16}{layer_set:<8}{f_med:>12.4f}{e_med:>13.4f}{ratio:>8.3f}"
                  f"{min_ratio:>11.3f}{flag}", flush=True)
    worst = max(r[4] for r in rows)
    print(f"\nworst ratio {worst:.3f} (goal <= {GOAL:.2f}); L-BFGS rows are per function evaluation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
