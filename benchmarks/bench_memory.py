"""Benchmark: peak resident memory of one full DGN reconstruction on the CPU.

Usage::

    python benchmarks/bench_memory.py [--quick] [--iters 200] [--init file|random] [--json out.json]

One reconstruction of script 1's kind (:func:`icnn_torch.icnn_dgn_gd.reconstruct_image`,
VGG19 all 19 layers + DeePSiM fc7 generator, 224x224 crop of 256x256, z0 = 0, bounds
0 .. an fc7-like vector, 200 iterations by default) runs in a fresh Python process, so the
figures are that reconstruction's alone:

- ``peak total``: the process's peak resident set (``VmHWM`` of ``/proc/self/status``,
  cross-checked with ``ru_maxrss``), model construction included, since that is what a
  user pays: by default (``--init file``) the models are loaded with
  :func:`icnn_torch.models.load_vgg19` / :func:`~icnn_torch.models.load_generator` from
  random-weight state_dicts written once to ``benchmarks/_out/`` (the same path as real
  ``.pt`` weights); ``--init random`` builds them in memory instead;
- ``baseline``: the resident set after imports, models and target features are ready;
- ``increase``: peak during the reconstruction minus that baseline (the peak counter is
  reset before the run via ``/proc/self/clear_refs`` when the kernel allows);
- the resident set at a few iterations, to show that memory does not grow with them.

``--malloc retain`` (the default: what the figure scripts do on the CPU) calls
:func:`icnn_torch.perf.retain_freed_memory` first, so freed memory stays in the process;
``--malloc default`` keeps glibc's own behaviour.

Goal of issue 5: peak total < 2.5 GB (2.5e9 bytes).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (OUT_DIR, add_malloc_argument, apply_malloc, machine_info, md_table,  # noqa: E402
                     write_json)

GOAL_BYTES = 2.5e9
MIB = 1024 * 1024


def _weights_files() -> tuple[Path, Path]:
    """Random-weight state_dicts of VGG19 and the generator (written once, reused)."""
    vgg_pt, gen_pt = OUT_DIR / "random_vgg19.pt", OUT_DIR / "random_generator.pt"
    if not (vgg_pt.exists() and gen_pt.exists()):
        import torch

        from _common import build_models
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        vgg, gen = build_models(seed=0)
        for module, path in ((vgg, vgg_pt), (gen, gen_pt)):
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(module.state_dict(), tmp)
            os.replace(tmp, path)
    return vgg_pt, gen_pt


def child(iters: int, init: str, vgg_pt: str | None, gen_pt: str | None, malloc: str) -> dict:
    """Run in a fresh process: build, reconstruct, report memory (KiB -> MiB)."""
    malloc_applied = apply_malloc(malloc)
    from _common import (ALL_19_LAYERS, build_models, fc7_like_upper_bound, layer_weights,
                         random_caffe_images, reset_peak, status_kib, true_features)
    import numpy as np
    import torch

    from icnn_torch import icnn_dgn_gd
    from icnn_torch.models import load_generator, load_vgg19

    rss_imports = status_kib("VmRSS")
    t0 = time.perf_counter()
    if init == "file":
        vgg = load_vgg19(vgg_pt, device="cpu")
        gen = load_generator(gen_pt, device="cpu")
    else:
        vgg, gen = build_models(seed=0)
    t_models = time.perf_counter() - t0
    rss_models = status_kib("VmRSS")
    feats = true_features(vgg, random_caffe_images(1, seed=11), ALL_19_LAYERS)
    features = {n: f[0] for n, f in feats.items()}
    weights = layer_weights(feats)
    upper = fc7_like_upper_bound()
    peak_before_run = status_kib("VmHWM")
    reset_ok = reset_peak()
    baseline = status_kib("VmRSS")

    trace: list[tuple[int, int]] = []
    marks = {1, 2, max(1, iters // 2), iters}
    count = [0]

    def sample(module, args):  # generator forward pre-hook: once per iteration
        count[0] += 1
        if count[0] in marks:
            trace.append((count[0], status_kib("VmRSS")))

    handle = gen.defc7.register_forward_pre_hook(sample)
    t0 = time.perf_counter()
    _, loss = icnn_dgn_gd.reconstruct_image(
        features, vgg, gen, layer_weight=weights, initial_gen_feat=np.zeros(4096, np.float32),
        feat_upper_bound=upper, feat_lower_bound=0., iter_n=iters, lr_start=2., lr_end=1e-10,
        momentum_start=0.9, momentum_end=0.9, decay_start=0.01, decay_end=0.01, disp_every=0)
    t_run = time.perf_counter() - t0
    handle.remove()
    peak_run = status_kib("VmHWM")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, never reset
    peak_total = max(peak_before_run, peak_run, maxrss)
    return {
        "iters": iters, "init": init, "torch_threads": torch.get_num_threads(),
        "malloc": malloc, "malloc_applied": malloc_applied,
        "rss_after_imports_mib": rss_imports / 1024, "rss_after_models_mib": rss_models / 1024,
        "baseline_mib": baseline / 1024, "peak_before_run_mib": peak_before_run / 1024,
        "peak_run_mib": peak_run / 1024, "ru_maxrss_mib": maxrss / 1024,
        "peak_total_mib": peak_total / 1024,
        "increase_mib": (peak_run - baseline) / 1024 if reset_ok else None,
        "peak_reset": reset_ok, "rss_trace_mib": [(i, k / 1024) for i, k in trace],
        "models_s": t_models, "run_s": t_run, "s_per_iter": t_run / iters,
        "loss_first_last": [float(loss[0]), float(loss[-1])],
    }


def table(r: dict) -> str:
    inc = "n/a (peak reset not permitted)" if r["increase_mib"] is None else f"{r['increase_mib']:.0f} MiB"
    ok = "yes" if r["peak_total_mib"] * MIB < GOAL_BYTES else "**no**"
    trace = ", ".join(f"it {i}: {m:.0f}" for i, m in r["rss_trace_mib"])
    rows = [
        ["peak RSS, whole process (models built in it)", f"**{r['peak_total_mib']:.0f} MiB** "
         f"({r['peak_total_mib'] * MIB / 1e9:.2f} GB)", f"< 2.5 GB: {ok}"],
        ["RSS after imports", f"{r['rss_after_imports_mib']:.0f} MiB", ""],
        ["RSS after models (" + ("load_vgg19/load_generator from .pt" if r["init"] == "file"
                                 else "random init") + ")",
         f"{r['rss_after_models_mib']:.0f} MiB", f"{r['models_s']:.1f} s"],
        ["peak increase during the reconstruction", inc, f"over {r['baseline_mib']:.0f} MiB"],
        ["RSS during the run (MiB)", trace, f"{r['iters']} iterations, {r['s_per_iter']:.2f} s/iter"],
    ]
    return md_table(["DGN reconstruction, CPU, VGG19 19 layers + generator", "value", "note"], rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 5 iterations")
    ap.add_argument("--iters", type=int, default=None, help="iterations (default 200, script 1's)")
    ap.add_argument("--init", choices=("file", "random"), default="file")
    add_malloc_argument(ap, default="retain")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--vgg-pt", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--gen-pt", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    iters = args.iters or (5 if args.quick else 200)
    if args.child:
        print("RESULT " + json.dumps(child(iters, args.init, args.vgg_pt, args.gen_pt, args.malloc)),
              flush=True)
        return 0
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--iters", str(iters), "--init", args.init,
           "--malloc", args.malloc]
    if args.init == "file":
        vgg_pt, gen_pt = _weights_files()
        cmd += ["--vgg-pt", str(vgg_pt), "--gen-pt", str(gen_pt)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        raise SystemExit(f"memory child failed (exit {proc.returncode})")
    result = json.loads(lines[-1][len("RESULT "):])
    out = {"bench": "memory", "machine": machine_info(), "result": result, "goal_bytes": GOAL_BYTES}
    print(f"Peak memory of one DGN reconstruction ({iters} iterations, fresh process, CPU, "
          f"malloc {args.malloc})")
    print(table(result))
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
