"""Benchmark: the GPU path, run and measured, in one call.

Usage::

    python benchmarks/bench_gpu.py --out DIR [--device cuda|cpu] [--quick]
        [--only tests,agreement,batch,lbfgs,projection]

Random-weight nets of the real sizes (VGG19 224x224, DeePSiM generator), no weight file
and no data. Sections, in this order:

1. **tests**: the suite's CUDA cases (``pytest -p _cuda_cases``: the ``device`` fixture's
   ``cuda`` parameter and the CUDA-only tests, see ``benchmarks/_cuda_cases.py``), in a
   subprocess; passed / failed / skipped from pytest's junit XML (``DIR/cuda_cases.xml``,
   log in ``DIR/cuda_cases.log``).
2. **agreement**: the first function evaluation (loss, and gradient with respect to the
   optimised variable) of the four engines at script-like settings, on the CPU and on the
   other device, same weights and targets; relative differences against a tolerance
   derived from float32 rounding (see :func:`float32_tolerances`). With ``--device cpu``
   the other device is the CPU with native (im2col) convolutions instead of oneDNN's:
   another summation order, not a GPU result.
3. **batch**: icnn_dgn_gd at script 1's settings, seconds per image-iteration at batch 1,
   8, 24, 64 (CPU: 1, 8; quick: 1, 2) with ``bench_batch.py``'s run, and the peak memory
   (CUDA: ``torch.cuda.max_memory_allocated``; CPU: VmHWM, the whole process).
4. **lbfgs**: pixel L-BFGS at script 2's settings (19 layers, flat mean-colour start).
   (a) One process, one reconstruction of ``--split-iters`` iterations (full: the
   scripts' 200): where each evaluation's time goes, from timers around its parts (a
   proxy of the encoder synchronises and stamps at its call and when the input's gradient
   is done; a wrapper of ``scipy.optimize.minimize`` stamps each evaluation's start and
   end): copy in (scipy's float64 vector to a float32 device tensor), device (forward,
   loss, backward, synchronised), copy out (loss and float64 gradient back to numpy,
   finiteness check), scipy (L-BFGS-B's own step between evaluations); and the ratio of
   evaluations to iterations. (b) K = 1, 2, 4, 8, 16 worker processes (quick: 1, 2) on
   the device, each running icnn_lbfgs on its own target for ``--lbfgs-evals``
   evaluations, started together; aggregate evaluations per second over the window in
   which all K run. Workers pick their device with ``device_for_rank`` as the scripts do
   under ``torchrun`` (every rank on ``cuda:0`` with one GPU).
5. **projection**: the seven scripts' constants read from the script files
   (``ScriptConfig.from_file``), reconstructions counted, and the wall time of all seven
   figures projected from the measured rates with the best batch size (script 1) and
   process count (scripts 2-7). Projected, not measured: labelled so.

Everything goes to ``DIR/bench_gpu.md`` (the tables) and ``DIR/bench_gpu.json``. Exit
status 1 when a CUDA case failed, an agreement row is outside its tolerance or a section
broke; else 0.

Sizing of the full run on one H200 (to end within 8 minutes): the CUDA cases are stopped
after ``--tests-timeout`` (270 s); the rest is sized by its work. Agreement: 5 first
evaluations per device. DGN GD: (1 + 3) x 12 iterations of batches 1, 8, 24 and 64, at
about 82 GFLOP per image-iteration (VGG19's forward and input gradient, 78, plus the
generator's), 380 TFLOP in all: about 10 s if float32 convolutions run at 40 TFLOP/s (an
assumption, 60% of the datasheet's 67). L-BFGS: 16 processes started once (import, random
nets, warm-up: tens of seconds), 5 rounds of 100 evaluations per process (3100
evaluations), and one 200-iteration reconstruction (about 240 evaluations), each
evaluation 10-20 ms in one process. About 2 minutes besides the tests. ``--quick`` on a
CPU: 3 to 4 minutes on 2 busy cores.

GPU machines without a package registry: ``benchmarks/gpu_wheels.sh`` fetches the
missing test dependencies as wheels (see its header).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import math
import multiprocessing as mp
import os
import queue
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_batch  # noqa: E402  (make_targets, run_once: bench_batch.py's batched DGN run)
from _common import (ALL_19_LAYERS, ROOT, OtherCpuLoad, build_models,  # noqa: E402
                     fc7_like_upper_bound, layer_weights, machine_info, md_table, median, random_caffe_images,
                     reset_peak, status_kib, sync, true_features, write_json)

from icnn_torch import icnn_dgn_gd, icnn_dgn_lbfgs, icnn_gd, icnn_lbfgs  # noqa: E402
from icnn_torch.models import VGG19_LAYERS, center_crop  # noqa: E402
from icnn_torch.recon import lbfgs as recon_lbfgs  # noqa: E402  (its scipy.optimize.minimize is wrapped)
from icnn_torch.recon.param import initial_pixels  # noqa: E402

# Outside the package's published names: imported here only, to repoint when the layout changes.
from icnn_torch.run.config import ScriptConfig  # noqa: E402  (the seven scripts' constants)
from icnn_torch.nets.device import device_for_rank  # noqa: E402  (torchrun's rank -> device)

SECTIONS = ("tests", "agreement", "batch", "lbfgs", "projection")
U32 = 2.0 ** -24  # float32 unit roundoff
GOAL_ALL_SEVEN_S = 180.0
GOAL_SCRIPT1_BATCH_S = 10.0


# ---------------------------------------------------------------------------------------
# Instruments: a proxy of a net, a wrapper of scipy's minimize


class StopEvaluations(Exception):
    """Raised by :class:`MinimizeSpy` in place of the evaluation after its budget."""


class MinimizeSpy:
    """Wraps ``scipy.optimize.minimize`` as :mod:`icnn_torch.recon.lbfgs` calls it.

    Stamps the start and end of every evaluation of the objective (``clock``), keeps the
    loss values and each run's ``OptimizeResult``, and raises :class:`StopEvaluations`
    instead of evaluation ``stop_after + 1``.
    """

    def __init__(self, stop_after: int | None = None, clock=time.perf_counter) -> None:
        self.stop_after, self.clock = stop_after, clock
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.values: list[float] = []
        self.results: list = []

    def __enter__(self) -> "MinimizeSpy":
        self._orig = recon_lbfgs.scipy.optimize.minimize
        spy = self

        def minimize(fun, x0, *args, **kwargs):
            def timed(x):
                if spy.stop_after is not None and len(spy.ends) >= spy.stop_after:
                    raise StopEvaluations
                spy.starts.append(spy.clock())
                out = fun(x)
                spy.ends.append(spy.clock())
                spy.values.append(float(out[0]))
                return out
            res = spy._orig(timed, x0, *args, **kwargs)
            spy.results.append(res)
            return res

        recon_lbfgs.scipy.optimize.minimize = minimize
        return self

    def __exit__(self, *exc) -> None:
        recon_lbfgs.scipy.optimize.minimize = self._orig


class Tap:
    """A proxy of a net (encoder or generator) that watches its differentiable calls.

    Attributes are the net's. On a call whose input requires grad it hooks the input's
    gradient. Without ``stamps`` the first such gradient is kept (``first_grad``, float64,
    on the CPU); with ``stamps`` it synchronises the device and stamps the call (``calls``)
    and the moment each gradient is done (``grads_done``), copying nothing.
    """

    def __init__(self, net, device, stamps: bool = False) -> None:
        self.__dict__.update(net=net, device=torch.device(device), stamps=stamps,
                             calls=[], grads_done=[], first_grad=None)

    def __getattr__(self, name):
        return getattr(self.net, name)

    def __call__(self, x, *args, **kwargs):
        if x.requires_grad:
            if self.stamps:
                sync(self.device)
                self.calls.append(time.perf_counter())
            x.register_hook(self._on_grad)
        return self.net(x, *args, **kwargs)

    def _on_grad(self, grad) -> None:
        if self.stamps:
            sync(self.device)
            self.grads_done.append(time.perf_counter())
        elif self.first_grad is None:
            self.first_grad = grad.detach().double().cpu().numpy()


def with_random_biases(vgg, seed: int = 3):
    """Give the random VGG19's zero biases values in [-1, 1] (in place; returns ``vgg``).

    With zero biases the scripts' flat mean-colour start (0 in Caffe space) gives all-zero
    features and a gradient from conv1_1 alone; real VGG19 biases are nonzero.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in vgg.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1).to(m.bias.device))
    return vgg


def mean_colour_start(vgg) -> np.ndarray:
    """The scripts' ``initial_image='mean'``: (224, 224, 3) RGB of the mean colour."""
    return np.broadcast_to(np.asarray(vgg.img_mean, np.float32)[::-1], (224, 224, 3)).copy()


def random_start(seed: int = 11) -> np.ndarray:
    """(224, 224, 3) RGB uniform random integers 0..255 (what icnn_gd draws when None)."""
    return np.random.default_rng(seed).integers(0, 256, (224, 224, 3)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# 1. The suite's CUDA cases


def section_tests(out: Path, timeout: float) -> dict:
    xml_path, log_path = out / "cuda_cases.xml", out / "cuda_cases.log"
    if xml_path.exists():
        xml_path.unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "_cuda_cases", "-p", "no:cacheprovider",
           f"--junitxml={xml_path}", "-rfEs", "tests"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout)
        rc, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = "timeout"
        log = "".join(s.decode() if isinstance(s, bytes) else (s or "") for s in (exc.stdout, exc.stderr))
        log += f"\n[bench_gpu] pytest stopped after {timeout:.0f} s\n"
    wall = time.perf_counter() - t0
    _write_text(log_path, log)
    counts, skips, failed = Counter(), Counter(), []
    if xml_path.exists():
        for case in ET.parse(xml_path).iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            kinds = {child.tag for child in case}
            if "failure" in kinds or "error" in kinds:
                counts["failed" if "failure" in kinds else "error"] += 1
                failed.append(name)
            elif "skipped" in kinds:
                counts["skipped"] += 1
                msg = case.find("skipped").get("message", "")
                skips[msg.split(": ", 1)[-1] if msg else "?"] += 1
            else:
                counts["passed"] += 1
    selected = sum(counts.values())
    skipped = "0" if not skips else "; ".join(f"{n} ({reason})" for reason, n in skips.most_common())
    row = [selected, counts["passed"], counts["failed"], counts["error"], skipped, f"{wall:.0f}",
           f"{rc}"]
    table = md_table(["CUDA cases selected", "passed", "failed", "errors", "skipped (reason)",
                      "wall s", "pytest exit"], [row])
    notes = ["Selected by `-p _cuda_cases` (the `device` fixture's `cuda` parameter, and "
             "tests whose skipif names CUDA); `-k cuda` would add two CPU cases whose names "
             "say cuda."]
    if failed:
        notes.append("Failed: " + ", ".join(f"`{n}`" for n in failed[:20])
                     + (f" and {len(failed) - 20} more" if len(failed) > 20 else ""))
    if rc == "timeout" or not xml_path.exists():
        notes.append(f"pytest gave no report (exit {rc}); see cuda_cases.log.")
    ok = rc != "timeout" and xml_path.exists() and not failed
    return {"table": table, "notes": notes, "ok": ok,
            "data": {"selected": selected, **counts, "skips": dict(skips), "failed_ids": failed,
                     "wall_s": wall, "exit": rc}}


# ---------------------------------------------------------------------------------------
# 2. CPU vs device agreement of the first evaluation


def fan_in_out(m: nn.Module) -> tuple[int, int]:
    """Terms per output element of the forward (fan-in) and of the input-gradient (fan-out)."""
    w = m.weight
    if isinstance(m, nn.Linear):
        return int(w.shape[1]), int(w.shape[0])
    if isinstance(m, nn.ConvTranspose2d):
        c_in, c_out, kh, kw = w.shape
        sh, sw = m.stride
        return int(c_in * math.ceil(kh / sh) * math.ceil(kw / sw)), int(c_out * kh * kw)
    c_out, c_in, kh, kw = w.shape
    return int(c_in * kh * kw), int(c_out * kh * kw)


def float32_tolerances(vgg, gen, x_or_z: torch.Tensor, feats: dict, layers) -> dict:
    """Tolerances of the loss and gradient of one evaluation, two float32 implementations.

    Rounding. A float32 sum or dot product of n terms computed in any order carries a
    relative error of about ``sqrt(n) u`` (u = 2^-24; the probabilistic bound of Higham &
    Mary 2019, SIAM J. Sci. Comput. 41(5), with lambda = 1); two implementations summing
    in different orders differ by up to ``2 sqrt(n) u``. Along the net, first-order
    relative errors add: after layer l the features differ by
    ``eps_l = 2 u sum_{k <= l} sqrt(fan_in_k)`` (fan-in: C_in*3*3 for a convolution,
    inputs for an fc layer; the generator's layers first for the DGN engines). A layer's
    loss ``||f - t||^2`` moves by ``2 eps_l ||f|| / ||f - t||`` relative, plus
    ``2 sqrt(n_l) u`` for its own float32 sum of n_l squares: ``tol_loss`` is the largest
    over the target layers. The gradient adds the backward's sums (fan-out: C_out*3*3, or
    the outputs of an fc layer) over the whole path: ``max_l eps_l ||f||/||f - t|| +
    2 u sum sqrt(fan_out)``.

    Switches. Where a ReLU input lies within ``eps_l rms(f_l)`` of 0, or the two largest
    of a 2x2 max-pool window lie that close, the two implementations may route the
    gradient differently: a discrete change rounding does not bound. Each such candidate
    moves one element of an N_l-element map; with the gradient spread evenly over the
    map that is ``sqrt(2 / N_l)`` of the gradient's norm. The allowance for switches is
    ``sqrt(sum_l 2 C_l / N_l)`` over the candidates C_l counted in the reference forward.
    Exact ties (a flat start image) make it large: there the gradient depends on how each
    library breaks ties, which float32 does not fix.
    """
    deepest = max(VGG19_LAYERS.index(n) for n in layers)
    path = [n for n in VGG19_LAYERS[:deepest + 1] if not n.startswith("pool")]
    eps, bwd_chain = 0.0, 0.0
    candidates, switch_share = {}, 0.0
    with torch.no_grad():
        if gen is not None:
            pre = []
            handles = [m.register_forward_hook(lambda m, i, o: pre.append(o))
                       for m in gen.children()]
            try:
                image = center_crop(gen(x_or_z), vgg.input_size)
            finally:
                for h in handles:
                    h.remove()
            mods = list(gen.children())
            for k, (m, y) in enumerate(zip(mods, pre)):
                fi, fo = fan_in_out(m)
                eps += 2 * U32 * math.sqrt(fi)
                bwd_chain += 2 * U32 * math.sqrt(fo)
                if k < len(mods) - 1:  # followed by a leaky ReLU
                    c = int((y.abs() <= eps * y.pow(2).mean().sqrt()).sum())
                    candidates[f"gen.{k}"] = c
                    switch_share += 2 * c / y[0].numel()
        else:
            image = x_or_z
        out = vgg(image, path)
    rel_err = {}
    for i, name in enumerate(path):
        m = getattr(vgg, name)
        fi, fo = fan_in_out(m)
        eps += 2 * U32 * math.sqrt(fi)
        bwd_chain += 2 * U32 * math.sqrt(fo)
        y = out[name].double()
        scale = float(y.pow(2).mean().sqrt())
        if name in layers:
            t = torch.as_tensor(np.asarray(feats[name])).double().reshape(y.shape)
            ratio = float(y.norm() / (y - t).norm())
            rel_err[name] = (eps * ratio, 2 * eps * ratio + 2 * math.sqrt(y[0].numel()) * U32)
        if i == len(path) - 1:
            continue  # the deepest layer's activation is not on the gradient's path
        c = int((y.abs() <= eps * scale).sum())
        nxt = VGG19_LAYERS[VGG19_LAYERS.index(name) + 1]
        if nxt.startswith("pool") and vgg.variant == "relu":
            a = y.clamp_min(0)
            b, ch, h, w = a.shape
            win = a.reshape(b, ch, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, ch, h // 2, w // 2, 4)
            top2 = win.topk(2, dim=-1).values
            c += int(((top2[..., 0] - top2[..., 1] <= eps * scale) & (top2[..., 0] > eps * scale)).sum())
        candidates[name] = c
        switch_share += 2 * c / y[0].numel()
    grad_rounding = max(v[0] for v in rel_err.values()) + bwd_chain
    return {"tol_loss": max(v[1] for v in rel_err.values()), "tol_grad_rounding": grad_rounding,
            "tol_grad_switches": math.sqrt(switch_share),
            "tol_grad": grad_rounding + math.sqrt(switch_share),
            "switch_candidates": sum(candidates.values()), "candidates_per_layer": candidates,
            "eps_features_deepest": eps}


AGREEMENT_CASES = (
    # (engine, start, description)
    ("icnn_dgn_gd", "zeros", "script 1: z0 = 0, fc7-like upper bound, lr 2, momentum 0.9, decay 0.01"),
    ("icnn_lbfgs", "mean", "script 2: flat mean-colour start"),
    ("icnn_lbfgs", "random", "random start (no ties)"),
    ("icnn_gd", "random", "random start, the original's defaults"),
    ("icnn_dgn_lbfgs", "zeros", "z0 = 0, bounds (0, fc7-like upper bound)"),
)


def first_evaluation(engine: str, start: str, vgg, gen, feats, weights, device) -> tuple[float, np.ndarray]:
    """Loss and gradient (w.r.t. the optimised variable) of an engine's first evaluation."""
    dgn = engine.startswith("icnn_dgn")
    upper = fc7_like_upper_bound()
    z0 = np.zeros(4096, np.float32)
    rgb = mean_colour_start(vgg) if start == "mean" else random_start()
    net = Tap(vgg, device)
    tap = Tap(gen, device) if dgn else net
    loss = None
    with MinimizeSpy(stop_after=1) as spy:
        try:
            if engine == "icnn_dgn_gd":
                _, losses = icnn_dgn_gd.reconstruct_image(
                    feats, net, tap, layer_weight=weights, initial_gen_feat=z0, feat_upper_bound=upper,
                    feat_lower_bound=0., iter_n=1, disp_every=0, device=device)
                loss = float(losses[0])
            elif engine == "icnn_gd":
                _, losses = icnn_gd.reconstruct_image(feats, net, layer_weight=weights, initial_image=rgb,
                                                      iter_n=1, disp_every=0, device=device)
                loss = float(losses[0])
            elif engine == "icnn_lbfgs":
                icnn_lbfgs.reconstruct_image(feats, net, layer_weight=weights, initial_image=rgb,
                                             maxiter=200, disp=False, device=device)
            elif engine == "icnn_dgn_lbfgs":
                icnn_dgn_lbfgs.reconstruct_image(
                    feats, net, tap, layer_weight=weights, initial_gen_feat=z0,
                    gen_feat_bounds=np.stack([np.zeros(4096), upper], axis=1), maxiter=200,
                    disp=False, device=device)
            else:
                raise ValueError(engine)
        except StopEvaluations:
            pass
    if loss is None:
        loss = spy.values[0]
    if tap.first_grad is None:
        raise RuntimeError(f"{engine}: no gradient seen")
    return loss, tap.first_grad


def section_agreement(device: torch.device) -> dict:
    cpu = torch.device("cpu")
    vgg, gen = build_models(seed=0, device=cpu)
    with_random_biases(vgg)
    feats_b = true_features(vgg, random_caffe_images(1, seed=21), ALL_19_LAYERS)
    feats = {n: f[0] for n, f in feats_b.items()}
    weights = layer_weights(feats_b)
    if device.type == "cuda":
        other_name = f"cuda ({torch.cuda.get_device_name(device)})"
        vgg_o, gen_o = copy.deepcopy(vgg).to(device), copy.deepcopy(gen).to(device)
        other_ctx, other_dev = contextlib.nullcontext, device
    else:
        other_name = "cpu, native convolutions (oneDNN off): not a GPU result"
        vgg_o, gen_o = vgg, gen
        other_ctx, other_dev = (lambda: torch.backends.mkldnn.flags(enabled=False)), cpu
    rows, data, ok = [], [], True
    for engine, start, desc in AGREEMENT_CASES:
        dgn = engine.startswith("icnn_dgn")
        loss_ref, grad_ref = first_evaluation(engine, start, vgg, gen, feats, weights, cpu)
        with other_ctx():
            loss_o, grad_o = first_evaluation(engine, start, vgg_o, gen_o, feats, weights, other_dev)
        if dgn:
            x = torch.zeros(1, 4096)
        else:
            rgb = mean_colour_start(vgg) if start == "mean" else random_start()
            x, _ = initial_pixels(rgb, 1, (224, 224), vgg.img_mean, cpu)
        tol = float32_tolerances(vgg, gen if dgn else None, x, feats, ALL_19_LAYERS)
        d_loss = abs(loss_o - loss_ref) / abs(loss_ref)
        d_grad = float(np.linalg.norm(grad_o - grad_ref) / np.linalg.norm(grad_ref))
        d_max = float(np.abs(grad_o - grad_ref).max() / np.abs(grad_ref).max())
        good = d_loss <= tol["tol_loss"] and d_grad <= tol["tol_grad"]
        ok &= good
        rows.append([engine, desc, f"{loss_ref:.6g}", f"{d_loss:.1e}", f"{tol['tol_loss']:.1e}",
                     f"{d_grad:.1e}", f"{tol['tol_grad_rounding']:.1e} + {tol['tol_grad_switches']:.1e}",
                     tol["switch_candidates"], f"{d_max:.1e}", "yes" if good else "**no**"])
        data.append({"engine": engine, "start": start, "loss_ref": loss_ref, "loss_other": loss_o,
                     "loss_rel_diff": d_loss, "grad_rel_diff": d_grad, "grad_max_elt_rel": d_max,
                     "agree": good, **tol})
    table = md_table(["engine", "settings", "loss (CPU)", "loss rel. diff", "tol", "gradient rel. diff "
                      "(norm)", "tol (rounding + switches)", "switch candidates",
                      "max elt diff / max |g|", "within"], rows)
    notes = [f"Reference: CPU, torch's default convolutions (oneDNN), {torch.get_num_threads()} threads; "
             f"other: {other_name}. Same random weights (VGG19 biases in [-1, 1]), targets (true "
             "features of one random image, 19 layers) and layer weights (1/||f||^2, normalised).",
             "Gradient with respect to the optimised variable: pixels (Caffe space) or z. Relative "
             "differences: |a - b| / |a| for the loss, ||a - b|| / ||a|| for the gradient.",
             "Tolerances from float32 rounding (2 sqrt(n) u per sum of n terms, u = 2^-24, along the "
             "forward and backward chains) plus an allowance for ReLU / max-pool switches counted in "
             "the reference forward (candidates within the rounding of a kink or a tie): see "
             "`float32_tolerances` in bench_gpu.py.",
             "Script 2's flat start is constant in Caffe space (0), so every feature map is constant "
             "away from the borders and its max-pool windows tie exactly: there the gradient depends "
             "on how each library breaks ties (and on whether its convolution gives equal values at "
             "equal inputs), which float32 does not fix. The random-start rows check the arithmetic."]
    return {"table": table, "notes": notes, "ok": ok, "data": {"other": other_name, "rows": data}}


# ---------------------------------------------------------------------------------------
# 3. Batched DGN GD


def section_batch(device: torch.device, quick: bool) -> dict:
    if device.type == "cuda":
        batches = (1, 8, 24, 64)
    else:
        batches = (1, 2) if quick else (1, 8)
    n_iter, repeats = (3, 1) if quick else (12, 3)
    vgg, gen = build_models(seed=0, device=device)
    targets = {b: bench_batch.make_targets(vgg, b) for b in batches}
    models_bytes = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    samples = {b: [] for b in batches}
    peak = {b: 0 for b in batches}
    failed: dict[int, str] = {}
    for rep in range(repeats + 1):  # repeat 0: untimed warm-up
        for b in batches:
            if b in failed:
                continue
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            else:
                reset_peak()
            try:
                t = bench_batch.run_once(vgg, gen, *targets[b], n_iter, device)
            except torch.OutOfMemoryError:
                failed[b] = "out of memory"
                torch.cuda.empty_cache()
                continue
            if device.type == "cuda":
                peak[b] = max(peak[b], torch.cuda.max_memory_allocated(device))
            else:
                peak[b] = max(peak[b], status_kib("VmHWM") * 1024)
            if rep > 0:
                samples[b] += t
    rows, data, base = [], [], None
    for b in batches:
        if b in failed:
            rows.append([b, failed[b], "", "", "", "", ""])
            data.append({"batch": b, "error": failed[b]})
            continue
        it = median(samples[b])
        per_image = it / b
        base = base or per_image
        rows.append([b, f"{it:.4f}", f"{per_image:.4f}", f"{b / it:.1f}", f"{base / per_image:.2f}x",
                     f"{peak[b] / 2**30:.2f} GiB", f"{200 * it:.1f} s"])
        data.append({"batch": b, "s_per_iter": it, "s_per_image_iter": per_image,
                     "image_iters_per_s": b / it, "peak_bytes": peak[b], "samples": len(samples[b])})
    del vgg, gen, targets
    if device.type == "cuda":
        torch.cuda.empty_cache()  # leave the device's memory to the L-BFGS processes
    mem = "peak GPU memory (max_memory_allocated, models included)" if device.type == "cuda" \
        else "peak RSS (VmHWM, whole process)"
    table = md_table(["batch", "s / iteration", "s / image-iteration", "image-iterations / s",
                      "per-image speed-up vs batch 1", mem, "200 iterations (projected)"], rows)
    notes = [f"icnn_dgn_gd, VGG19 19 layers + DeePSiM generator, script 1's options (z0 = 0, fc7-like "
             f"bounds), {device}; {n_iter} iterations x {repeats} repeats after a warm-up, batch sizes "
             "interleaved, first iteration of each run dropped, median; each iteration synchronised "
             "(bench_batch.py's run)."]
    if models_bytes is not None:
        notes.append(f"Models and targets on the GPU before the runs: {models_bytes / 2**30:.2f} GiB.")
    return {"table": table, "notes": notes, "ok": True,
            "data": {"device": str(device), "n_iter": n_iter, "repeats": repeats, "rows": data}}


# ---------------------------------------------------------------------------------------
# 4. Pixel L-BFGS: where an evaluation's time goes, and processes sharing the device


def lbfgs_problem(device: torch.device, seed: int):
    """Script 2's problem on random weights: (vgg, single-image targets, weights, start)."""
    vgg, _ = build_models(seed=0, device=device, generator=False)
    with_random_biases(vgg)
    feats_b = true_features(vgg, random_caffe_images(1, seed=seed), ALL_19_LAYERS)
    return vgg, {n: f[0] for n, f in feats_b.items()}, layer_weights(feats_b), mean_colour_start(vgg)


def split_run(device: torch.device, iters: int) -> dict:
    """One reconstruction at script 2's settings with timers around each evaluation's parts."""
    vgg, feats, weights, start = lbfgs_problem(device, seed=31)
    with MinimizeSpy(stop_after=2):
        with contextlib.suppress(StopEvaluations):  # warm-up: first-call costs
            icnn_lbfgs.reconstruct_image(feats, vgg, layer_weight=weights, initial_image=start,
                                         maxiter=iters, disp=False, device=device)
    net = Tap(vgg, device, stamps=True)
    with MinimizeSpy() as spy:
        sync(device)
        t_call = time.perf_counter()
        icnn_lbfgs.reconstruct_image(feats, net, layer_weight=weights, initial_image=start,
                                     maxiter=iters, disp=False, device=device)
        t_return = time.perf_counter()
    n = len(spy.ends)
    if not (len(net.calls) == len(net.grads_done) == n):
        raise RuntimeError(f"{n} evaluations but {len(net.calls)} net calls and "
                           f"{len(net.grads_done)} gradients")
    fs, fe = np.array(spy.starts), np.array(spy.ends)
    nc, gd = np.array(net.calls), np.array(net.grads_done)
    parts = {"copy_in": nc - fs, "device": gd - nc, "copy_out": fe - gd, "scipy": fs[1:] - fe[:-1]}
    res = spy.results[-1]
    return {"iterations_asked": iters, "nit": int(res.nit), "nfev": int(res.nfev), "evaluations": n,
            "message": str(res.message), "evals_per_iteration": n / max(int(res.nit), 1),
            "per_evaluation_s": float(np.median(np.diff(fs))) if n > 1 else float(fe[0] - fs[0]),
            "parts_median_s": {k: float(np.median(v)) for k, v in parts.items() if len(v)},
            "parts_mean_s": {k: float(np.mean(v)) for k, v in parts.items() if len(v)},
            "setup_s": float(fs[0] - t_call), "teardown_s": float(t_return - fe[-1]),
            "wall_s": float(t_return - t_call)}


def _lbfgs_worker(rank: int, device_type: str, threads: int, commands, results) -> None:
    """A process of section 4b: one target, icnn_lbfgs for a set number of evaluations per
    command ``(K, go_at, n_evals, threads)``; ``None`` ends it."""
    try:
        t0 = time.monotonic()
        torch.set_num_threads(threads)
        device = device_for_rank(rank) if device_type == "cuda" else torch.device("cpu")
        vgg, feats, weights, start = lbfgs_problem(device, seed=200 + rank)

        def run(n_evals: int) -> list[float]:
            with MinimizeSpy(stop_after=n_evals, clock=time.monotonic) as spy:
                while len(spy.ends) < n_evals:  # a run that converges early starts again
                    with contextlib.suppress(StopEvaluations):
                        icnn_lbfgs.reconstruct_image(feats, vgg, layer_weight=weights, initial_image=start,
                                                     maxiter=100000, disp=False, device=device)
            return spy.ends

        run(2)  # warm-up
        results.put(("ready", rank, str(device), time.monotonic() - t0))
        while True:
            cmd = commands.get()
            if cmd is None:
                return
            k, go_at, n_evals, threads = cmd
            torch.set_num_threads(threads)
            time.sleep(max(0.0, go_at - time.monotonic()))
            results.put(("done", rank, k, run(n_evals)))
    except Exception:  # reported to the parent, which ends the section
        results.put(("error", rank, traceback.format_exc()))


def _get(results, workers, timeout: float):
    """The next message of the workers; a worker's error, death or silence raises."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = results.get(timeout=1.0)
            break
        except queue.Empty:
            dead = [w.name for w in workers if w.exitcode is not None]
            if dead:
                raise RuntimeError(f"L-BFGS worker(s) {', '.join(dead)} ended without a report") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"no word from the L-BFGS workers in {timeout:.0f} s") from None
    if msg[0] == "error":
        raise RuntimeError(f"L-BFGS worker {msg[1]} failed:\n{msg[2]}")
    return msg


def processes_run(device: torch.device, procs, n_evals: int) -> dict:
    """Aggregate evaluations per second of K processes sharing the device."""
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    kmax, cpus = max(procs), os.cpu_count() or 1
    commands, results = [ctx.Queue() for _ in range(kmax)], ctx.Queue()
    workers = [ctx.Process(target=_lbfgs_worker, args=(r, device.type, max(1, cpus // kmax), commands[r],
                                                       results), daemon=True) for r in range(kmax)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    rounds = []
    try:
        ready = [_get(results, workers, 600) for _ in range(kmax)]
        startup_s = time.monotonic() - t0
        devices = sorted({m[2] for m in ready})
        for k in procs:
            go_at = time.monotonic() + 0.5
            for r in range(k):
                commands[r].put((k, go_at, n_evals, max(1, cpus // k)))
            ends = [_get(results, workers, 600)[3] for _ in range(k)]
            first = max(e[0] for e in ends)
            last = min(e[-1] for e in ends)
            if last > first:
                count = sum(sum(1 for t in e if first < t <= last) for e in ends)
                rate = count / (last - first)
            else:
                rate = k * n_evals / (max(e[-1] for e in ends) - go_at)
            per_proc = median(d for e in ends for d in np.diff(e))
            rounds.append({"processes": k, "evals_per_s": rate, "s_per_eval_per_process": per_proc,
                           "makespan_evals_per_s": k * n_evals / (max(e[-1] for e in ends) - go_at),
                           "evaluations": k * n_evals})
    finally:
        for q in commands:
            q.put(None)
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.terminate()
    return {"rounds": rounds, "startup_s": startup_s, "devices": devices, "evals_per_process": n_evals,
            "threads_per_process": {k: max(1, cpus // k) for k in procs}}


def section_lbfgs(device: torch.device, procs, n_evals: int, split_iters: int) -> dict:
    split = split_run(device, split_iters)
    pool = processes_run(device, procs, n_evals)
    p = split["parts_median_s"]
    total = sum(p.values())
    names = {"device": "device: forward + loss + backward (synchronised)",
             "scipy": "scipy L-BFGS-B step", "copy_in": "copy in (float64 numpy -> float32 tensor)",
             "copy_out": "copy out (loss, float64 gradient -> numpy, finiteness check)"}
    split_rows = [[names[k], f"{v * 1e3:.2f}", f"{100 * v / total:.0f}%"] for k, v in p.items()]
    split_rows.append(["sum of medians", f"{total * 1e3:.2f}", ""])
    split_rows.append(["median time from one evaluation's start to the next",
                       f"{split['per_evaluation_s'] * 1e3:.2f}", ""])
    t_split = md_table(["part of one evaluation (one process)", "ms (median)", "share"], split_rows)
    base = pool["rounds"][0]["evals_per_s"]
    t_pool = md_table(["processes on the device", "evaluations / s (all processes)", "vs 1 process",
                       "s / evaluation in each process (median)", "torch threads each"],
                      [[r["processes"], f"{r['evals_per_s']:.2f}", f"{r['evals_per_s'] / base:.2f}x",
                        f"{r['s_per_eval_per_process']:.4f}", pool["threads_per_process"][r["processes"]]]
                       for r in pool["rounds"]])
    notes = [f"Script 2's settings on random weights: 19 layers, flat mean-colour start, layer weights "
             f"1/||f||^2; {device}.",
             f"Split: one reconstruction of {split['iterations_asked']} iterations after a 2-evaluation "
             f"warm-up: {split['evaluations']} evaluations for {split['nit']} iterations "
             f"(**{split['evals_per_iteration']:.2f} evaluations per iteration**, scipy: "
             f"{split['message']}); {split['wall_s']:.1f} s in all, of which set-up before the first "
             f"evaluation {split['setup_s'] * 1e3:.0f} ms and after the last {split['teardown_s'] * 1e3:.0f} ms. "
             "The timers synchronise the device twice per evaluation (the processes below do not).",
             f"Processes: started once with `spawn`, each on {', '.join(pool['devices'])} "
             "(`device_for_rank(rank)`), its own target, a warm-up, then per round "
             f"{pool['evals_per_process']} evaluations each, started together; rate = evaluations "
             "finished while all of the round's processes ran / that window. Start-up of "
             f"{max(procs)} processes together (import, random nets, warm-up): {pool['startup_s']:.1f} s."]
    return {"table": t_split + "\n\n" + t_pool, "notes": notes, "ok": True,
            "data": {"split": split, "processes": pool}}


# ---------------------------------------------------------------------------------------
# 5. Projection of the seven figures


def script_jobs() -> list[dict]:
    """Each figure script's engine, iterations and number of reconstructions (its constants)."""
    out = []
    for path in sorted(ROOT.glob("[1-7]_*.py")):
        plan = ScriptConfig.from_file(path).plan()
        sets = len(plan.layer_sets) if plan.layer_sets else 1
        out.append({"script": plan.script_name, "engine": plan.engine, "iterations": plan.iterations,
                    "reconstructions": len(plan.subjects) * len(plan.rois) * len(plan.labels) * sets,
                    "layer_sets": sets, "network": plan.network})
    return out


def section_projection(device: torch.device, batch: dict | None, lbfgs: dict | None) -> dict:
    jobs = script_jobs()
    batch_rows = [r for r in (batch or {}).get("rows", []) if "error" not in r]
    rounds = (lbfgs or {}).get("processes", {}).get("rounds", [])
    split = (lbfgs or {}).get("split")
    rows, data, total, complete = [], [], 0.0, True
    for j in jobs:
        n, iters = j["reconstructions"], j["iterations"]
        best = None
        if j["engine"] in ("icnn_dgn_gd", "icnn_gd") and batch_rows:
            for r in batch_rows:
                wall = math.ceil(n / r["batch"]) * iters * r["s_per_iter"]
                if best is None or wall < best[0]:
                    best = (wall, f"batch {r['batch']}", f"{iters} iterations x {math.ceil(n / r['batch'])} batch(es)")
        elif j["engine"] == "icnn_lbfgs" and rounds and split:
            evals = iters * split["evals_per_iteration"]
            setup = split["setup_s"] + split["teardown_s"]
            for r in rounds:
                k = r["processes"]
                per_eval = k / r["evals_per_s"]  # seconds per evaluation in each of k processes
                wall = math.ceil(n / k) * (evals * per_eval + setup)
                if best is None or wall < best[0]:
                    best = (wall, f"{k} processes", f"{evals:.0f} evaluations x {math.ceil(n / k)} per process")
        if best is None:
            complete = False
            rows.append([j["script"], j["engine"], n, iters, "not measured", "", ""])
            data.append({**j, "projected_s": None})
            continue
        total += best[0]
        rows.append([j["script"], j["engine"], n, iters, best[1], best[2], f"{best[0]:.0f} s"])
        data.append({**j, "projected_s": best[0], "setting": best[1]})
    n_all = sum(j["reconstructions"] for j in jobs)
    n_dgn = sum(j["reconstructions"] for j in jobs if j["engine"] == "icnn_dgn_gd")
    rows.append([f"**all seven** ({n_all} reconstructions: {n_dgn} DGN GD + {n_all - n_dgn} other)",
                 "", n_all, "", "", "", f"**{total:.0f} s** ({total / 60:.1f} min)" if complete else "incomplete"])
    table = md_table(["script", "engine", "reconstructions", "iterations", "best measured setting",
                      "work per process / batch", "projected wall time"], rows)
    b24 = next((r for r in batch_rows if r["batch"] == 24), None)
    goal_rows = [["all seven figures, one device, scripts' settings", f"< {GOAL_ALL_SEVEN_S:.0f} s",
                  f"{total:.0f} s (projected)" if complete else "not projected",
                  ("yes" if total < GOAL_ALL_SEVEN_S else "**no**") if complete else "n/a"],
                 ["script 1's 24 DGN reconstructions as one batch (200 iterations)",
                  f"< {GOAL_SCRIPT1_BATCH_S:.0f} s",
                  f"{200 * b24['s_per_iter']:.1f} s (projected from s / iteration at batch 24)" if b24
                  else "batch 24 not measured on this device",
                  ("yes" if 200 * b24["s_per_iter"] < GOAL_SCRIPT1_BATCH_S else "**no**") if b24 else "n/a"]]
    table += "\n\n" + md_table([f"goal (on {device.type})", "target", "value", "met"], goal_rows)
    notes = ["**Projected, not measured**: reconstructions x iterations x the measured per-iteration "
             "(batch) or per-evaluation (processes) rates of this run; scripts run one after another, "
             "each with its best measured batch size or process count (`torchrun --standalone "
             "--nproc_per_node=K`); reconstructions split round-robin, so a process does ceil(n / K).",
             "Not included: loading the real weights and decoded features, process start-up "
             "(measured above for random nets), writing results and snapshots.",
             "L-BFGS evaluations per reconstruction = iterations x the evaluations per iteration of the "
             "split run above" + ("" if not split else f" ({split['evals_per_iteration']:.2f}, from one "
                                  f"{split['iterations_asked']}-iteration run)") + "; per-reconstruction "
             "set-up from the same run.",
             "Script 3's shallower layer sets (1to1, 1to3, 1to5: forward stops earlier) are projected "
             "at the 19-layer rate (an upper bound); script 7's VGG19_leaky (leaky ReLU, average "
             "pooling, same sizes) at the ReLU net's rate."]
    if device.type != "cuda":
        notes.insert(0, f"Device {device}: these are not GPU figures.")
    return {"table": table, "notes": notes, "ok": True,
            "data": {"scripts": data, "total_s": total if complete else None}}


# ---------------------------------------------------------------------------------------
# Driver


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


TITLES = {"tests": "The suite's CUDA cases", "agreement": "CPU vs device: first evaluation of each engine",
          "batch": "DGN GD (script 1's settings): batch size", "lbfgs": "Pixel L-BFGS (script 2's settings)",
          "projection": "All seven figures: projected wall time"}


def run_section(name: str, out: Path, device: torch.device, args, procs, n_evals: int,
                split_iters: int, done: dict) -> dict:
    """One section's result: ``table`` (markdown), ``notes``, ``ok``, ``data`` (JSON)."""
    if name == "tests":
        return section_tests(out, args.tests_timeout)
    if name == "agreement":
        return section_agreement(device)
    if name == "batch":
        return section_batch(device, args.quick)
    if name == "lbfgs":
        return section_lbfgs(device, procs, n_evals, split_iters)
    return section_projection(device, done.get("batch", {}).get("data"), done.get("lbfgs", {}).get("data"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for bench_gpu.md, bench_gpu.json, cuda_cases.*")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: CPU batches 1, 2; processes 1, 2; short L-BFGS runs")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    ap.add_argument("--procs", default=None, help="process counts (default 1,2,4,8,16; quick 1,2)")
    ap.add_argument("--lbfgs-evals", type=int, default=None,
                    help="evaluations per process per round (default 100; quick 3)")
    ap.add_argument("--split-iters", type=int, default=None,
                    help="iterations of the split run (default: the scripts' 200; quick 4)")
    ap.add_argument("--tests-timeout", type=float, default=270.0, help="seconds for the CUDA cases")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available here (use --device cpu)")
    if device.type not in ("cuda", "cpu"):
        ap.error("--device takes cuda or cpu")
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    if any(s not in SECTIONS for s in wanted):
        ap.error(f"--only takes a subset of {SECTIONS}")
    procs = tuple(int(p) for p in (args.procs or ("1,2" if args.quick else "1,2,4,8,16")).split(","))
    n_evals = args.lbfgs_evals or (3 if args.quick else 100)
    split_iters = args.split_iters or (4 if args.quick else 200)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    info = machine_info()
    t_start = time.perf_counter()
    results: dict[str, dict] = {}
    for name in wanted:
        print(f"[bench_gpu] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        with OtherCpuLoad() as load:
            try:
                results[name] = run_section(name, out, device, args, procs, n_evals, split_iters, results)
            except Exception:
                results[name] = {"table": f"section failed:\n\n```\n{traceback.format_exc()}```",
                                 "notes": [], "ok": False, "data": None}
        results[name]["wall_s"] = time.perf_counter() - t0
        results[name]["other_cpu_cores"] = load.cores
        if load.cores is not None and load.cores > 0.25 and results[name]["wall_s"] > 2:
            results[name]["notes"].append(
                f"**Other processes kept {load.cores:.2f} of {info['cpus']} cores busy during this "
                "section**: its CPU timings are inflated (threads waiting for shared cores).")
        print(f"[bench_gpu] {name}: {results[name]['wall_s']:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - t_start
    where = info.get("cuda", "no CUDA") if device.type == "cuda" else "CPU"
    cmd = "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    head = (f"## bench_gpu{' (quick: rough numbers)' if args.quick else ''}\n\n"
            f"{datetime.date.today().isoformat()}; device {device} ({where}); torch {info['torch']}, "
            f"{info['threads']} threads, {info['cpus']} CPUs, Python {info['python']}; "
            f"took {total:.0f} s. Command: `{cmd}`.")
    parts = [head]
    for name in wanted:
        r = results[name]
        notes = "".join(f"\n- {n}" for n in r["notes"] if n)
        parts.append(f"### {TITLES[name]} ({r['wall_s']:.0f} s)\n\n{r['table']}\n{notes}")
    text = "\n\n".join(parts) + "\n"
    _write_text(out / "bench_gpu.md", text)
    write_json(out / "bench_gpu.json", {"bench": "gpu", "machine": info, "device": str(device),
                                        "quick": args.quick, "wall_s": total,
                                        "sections": {k: {"ok": v["ok"], "wall_s": v["wall_s"],
                                                         "other_cpu_cores": v["other_cpu_cores"],
                                                         "data": v["data"]} for k, v in results.items()}})
    print(text)
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
