"""Shared pieces of the benchmark scripts (not part of the package).

- random-weight models and the true features of random images (no weight file needed);
- a "floor": the bare frozen-weight computation one iteration cannot avoid (generator
  forward, VGG19 forward to the deepest target layer, L2 loss, gradient with respect to
  the input only, generator backward), written with ``torch.nn.functional`` on the same
  weight tensors, so it shares no code with the engines;
- per-iteration clocks (a forward pre-hook on the first layer that runs each iteration);
- medians, ``/proc/self/status`` memory fields, markdown tables, JSON results.

Images here are in Caffe space: (B, 3, 224, 224) float32, BGR, 0..255 scale, ImageNet
mean subtracted; generator inputs are (B, 4096).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
OUT_DIR = BENCH_DIR / "_out"  # git-ignored

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from icnn_torch.models import (IMAGENET_MEAN_BGR, VGG19, VGG19_LAYERS,  # noqa: E402
                               DeePSiMGenerator, center_crop)

#: Script 1's layer set: the 16 convolutions and fc6, fc7, fc8 (19 layers).
ALL_19_LAYERS: tuple[str, ...] = tuple(n for n in VGG19_LAYERS if not n.startswith("pool"))


# ---------------------------------------------------------------------------------------
# Models, features, options


def build_models(seed: int = 0, device: str | torch.device = "cpu",
                 generator: bool = True) -> tuple[VGG19, DeePSiMGenerator | None]:
    """Random-weight VGG19 (He-normal) and DeePSiM generator (He-normal, leaky 0.3).

    The generator's last layer is scaled so that z ~ U(0, 3) gives images of standard
    deviation about 60 (pixel scale), and its biases are small and positive, so that the
    loss moves from z = 0 as with the real weights. Values only matter for the loss
    trajectories, not for the time.
    """
    torch.manual_seed(seed)
    vgg = VGG19().to(device)
    gen = None
    if generator:
        gen = DeePSiMGenerator()
        with torch.no_grad():
            for m in gen.children():
                nn.init.kaiming_normal_(m.weight, a=0.3, nonlinearity="leaky_relu")
                m.bias.uniform_(0.0, 0.1)
            z = torch.rand(4, 4096) * 3.0
            gen.deconv0.weight.mul_(60.0 / float(gen(z).std()))
        gen = gen.to(device)
    return vgg, gen


def random_caffe_images(batch: int, seed: int = 1) -> np.ndarray:
    """(B, 3, 224, 224) float32 Caffe-space images of uniform random 0..255 pixels."""
    rng = np.random.default_rng(seed)
    bgr = rng.integers(0, 256, (batch, 3, 224, 224)).astype(np.float32)
    return bgr - IMAGENET_MEAN_BGR.reshape(1, 3, 1, 1)


def true_features(vgg: VGG19, images: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """Features of ``images`` (B, 3, 224, 224) at ``layers``: dict name -> (B, ...) float32."""
    device = next(vgg.parameters()).device
    with torch.no_grad():
        feats = vgg(torch.as_tensor(images, device=device), list(layers))
    return {n: feats[n].float().cpu().numpy() for n in layers}


def layer_weights(features: Mapping[str, np.ndarray], index: int = 0) -> dict[str, float]:
    """The scripts' weights: ``1 / ||f_l||^2`` of image ``index``, normalised to sum 1."""
    raw = {n: 1.0 / float(np.sum(np.asarray(f[index], dtype=np.float64) ** 2)) for n, f in features.items()}
    total = sum(raw.values())
    return {n: v / total for n, v in raw.items()}


def fc7_like_upper_bound(seed: int = 2) -> np.ndarray:
    """(4096,) float32 integers 2..6, like ``data/act_range/3x/fc7.txt``."""
    return np.random.default_rng(seed).integers(2, 7, 4096).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Floor: bare forward + input-gradient backward on the same weight tensors


def _bare_vgg(vgg: VGG19, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """Pre-ReLU features of the original VGG19 with functional ops, to the deepest layer."""
    wanted = set(layers)
    deepest = max(VGG19_LAYERS.index(n) for n in wanted)
    out = {}
    for name in VGG19_LAYERS[:deepest + 1]:
        if name.startswith("pool"):
            x = F.max_pool2d(x, 2, 2)
            y = x
        elif name.startswith("conv"):
            m = getattr(vgg, name)
            y = F.conv2d(x, m.weight, m.bias, padding=1)
            x = F.relu(y)
        else:
            m = getattr(vgg, name)
            y = F.linear(x.flatten(1), m.weight, m.bias)
            x = F.relu(y)
        if name in wanted:
            out[name] = y
    return out


def _bare_generator(gen: DeePSiMGenerator, z: Tensor) -> Tensor:
    x = z
    children = [m for m in gen.children()]
    for i, m in enumerate(children):
        if isinstance(m, nn.Linear):
            x = F.linear(x, m.weight, m.bias)
        else:
            if x.dim() == 2:
                x = x.reshape(x.shape[0], 256, 4, 4)
            x = F.conv_transpose2d(x, m.weight, m.bias, stride=m.stride, padding=m.padding)
        if i < len(children) - 1:
            x = F.leaky_relu(x, 0.3)
    return x


class Floor:
    """One bare iteration: (generator forward,) VGG19 forward, L2 loss, input gradient.

    Parameters
    ----------
    vgg : VGG19
    gen : DeePSiMGenerator or None
        None: the variable is the image (B, 3, 224, 224); else z (B, 4096).
    features : dict name -> (B, ...) ndarray
        Targets.
    weights : dict name -> float
    """

    def __init__(self, vgg: VGG19, gen, features: Mapping[str, np.ndarray],
                 weights: Mapping[str, float]) -> None:
        self.vgg, self.gen = vgg, gen
        self.device = next(vgg.parameters()).device
        self.layers = [n for n in VGG19_LAYERS if n in features]
        self.targets = {n: torch.as_tensor(np.ascontiguousarray(features[n]), device=self.device)
                        for n in self.layers}
        self.weights = {n: float(weights[n]) for n in self.layers}

    def step(self, v: Tensor) -> Tensor:
        """Gradient of the loss with respect to ``v`` (detached)."""
        v = v.detach().requires_grad_(True)
        with torch.enable_grad():
            x = center_crop(_bare_generator(self.gen, v), (224, 224)) if self.gen is not None else v
            feats = _bare_vgg(self.vgg, x, self.layers)
            loss = sum(self.weights[n] * (feats[n] - self.targets[n]).pow(2).sum() for n in self.layers)
            (g,) = torch.autograd.grad(loss, v)
        return g

    def time_iterations(self, v0: Tensor, n_iter: int) -> list[float]:
        """Seconds of each of ``n_iter`` steps (with a tiny update so inputs change)."""
        times = []
        v = v0.detach().clone()
        for _ in range(n_iter):
            t0 = time.perf_counter()
            g = self.step(v)
            v = v - 1e-3 * g / g.abs().mean().clamp_min(1e-12)
            sync(self.device)
            times.append(time.perf_counter() - t0)
        return times


# ---------------------------------------------------------------------------------------
# Clocks and statistics


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class IterationClock:
    """Stamps the start of every forward of ``module`` (a forward pre-hook).

    Put it on a layer that runs exactly once per iteration and first in it (the first
    generator layer, or the encoder's first convolution). The differences of consecutive
    stamps are whole-iteration times with setup and epilogue excluded.
    """

    def __init__(self, module: nn.Module, device=None) -> None:
        self.module, self.device = module, device
        self.stamps: list[float] = []
        self._handle = None

    def _hook(self, module, args) -> None:
        if self.device is not None:
            sync(self.device)
        self.stamps.append(time.perf_counter())

    def __enter__(self) -> "IterationClock":
        self.stamps = []
        self._handle = self.module.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def iteration_times(self, n_iter: int, drop_first: int = 1) -> list[float]:
        """Durations of iterations ``drop_first .. n_iter - 2`` (the last has no end stamp).

        Only the last ``n_iter`` stamps are used, so a set-up forward (shape probe) before
        the loop is ignored.
        """
        stamps = self.stamps[-n_iter:]
        if len(stamps) < n_iter:
            raise RuntimeError(f"expected {n_iter} forward calls, saw {len(self.stamps)}")
        diffs = np.diff(stamps).tolist()
        return diffs[drop_first:]


def median(values: Iterable[float]) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else float("nan")


class OtherCpuLoad:
    """How many cores other processes kept busy while the block ran (Linux ``/proc/stat``).

    ``cores`` = (machine busy CPU time - this process's and its children's CPU time) /
    wall time; about 0 on a quiet machine, up to the number of cores.
    """

    def __init__(self) -> None:
        self.cores: float | None = None

    @staticmethod
    def _busy_s() -> float | None:
        try:
            with open("/proc/stat") as f:
                parts = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
        busy = sum(parts[:8]) - idle  # user nice system idle iowait irq softirq steal
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_s() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> "OtherCpuLoad":
        self._t0, self._b0, self._o0 = time.perf_counter(), self._busy_s(), self._own_s()
        return self

    def __exit__(self, *exc) -> None:
        b1 = self._busy_s()
        wall = time.perf_counter() - self._t0
        if b1 is None or self._b0 is None or wall <= 0:
            return
        self.cores = max(0.0, ((b1 - self._b0) - (self._own_s() - self._o0)) / wall)


# ---------------------------------------------------------------------------------------
# Allocator modes

MALLOC_MODES = ("default", "retain")


def add_malloc_argument(parser, default: str = "default") -> None:
    """The ``--malloc`` option shared by the benchmarks."""
    parser.add_argument("--malloc", choices=MALLOC_MODES, default=default,
                        help="default: glibc's own malloc (a library user's); retain: "
                             "icnn_torch.perf.retain_freed_memory() first, as the figure scripts do "
                             f"on the CPU; process-wide (default: {default})")


def apply_malloc(mode: str) -> bool:
    """Apply an allocator mode to this process; True when freed memory is now retained."""
    from icnn_torch import perf
    return perf.retain_freed_memory() if mode == "retain" else False


# ---------------------------------------------------------------------------------------
# Memory (Linux)


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# Output


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def iteration_table(rows: Sequence[Mapping], goal: float) -> str:
    """bench_iteration.py's rows (engine / floor per engine and layer set) as markdown."""
    out = []
    for r in rows:
        scipy_s = r.get("scipy_s")
        out.append([r["engine"], r["layers"], f"{r['engine_s']:.3f}", f"{r['floor_s']:.3f}",
                    f"**{r['ratio']:.2f}**" + ("" if r["ratio"] <= goal else f" (> {goal:.2f})"),
                    "" if scipy_s is None else f"{scipy_s * 1e3:.0f} ms",
                    "" if scipy_s is None else f"{r['ratio_without_scipy']:.2f}",
                    f"{min(r['round_ratios']):.2f}-{max(r['round_ratios']):.2f}"])
    return md_table(["engine", "layers", "engine s/iter", "floor s/iter", "engine / floor",
                     "of which scipy L-BFGS-B", "(engine - scipy) / floor", "round ratios"], out)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON through a temp file in the same folder and rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def machine_info() -> dict:
    """Torch version, threads, CPU count, load average, CUDA device name."""
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        info["loadavg_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    return info


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}"
