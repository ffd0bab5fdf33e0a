"""What a figure script does, given its constants: the loop of the original demo scripts.

For every (subject, ROI, image label[, layer set]) job: load the decoded features, rescale
them to the true-feature std (SPEC section 4), weight layers by ``1/||f||^2``, reconstruct,
and write ``recon_img-<label>.mat`` (variable ``recon_img``) and
``recon_img_normalized-<label>.jpg`` into ``<results>/<script>/[<set>/]<subject>/<roi>/``,
with snapshots in ``snapshots/image-<label>/`` there and ``options.pkl`` at
``<results>/<script>/``.

Beyond the original: missing files are downloaded after a prompt (or with ``--yes``);
reconstructions whose outputs exist are skipped (``--force`` redoes them); every output
is written to a temporary name and renamed; jobs are split across ranks under
``torchrun`` or a SLURM array; GD engines can run several images as one batch; CPU runs
keep freed memory for reuse (:func:`icnn_torch.perf.retain_freed_memory`).

Every script accepts the same command-line overrides (``python <script> --help``), meant
for quick checks and cluster use; the constants at the top of the script stay the
reference settings.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .config import ScriptConfig

__all__ = ["ScriptConfig", "run_script", "output_paths"]


ITERATION_KEY = {"icnn_dgn_gd": "iter_n", "icnn_gd": "iter_n",
                 "icnn_lbfgs": "maxiter", "icnn_dgn_lbfgs": "maxiter"}
GENERATOR_ENGINES = ("icnn_dgn_gd", "icnn_dgn_lbfgs")
BATCHED_ENGINES = ("icnn_dgn_gd", "icnn_gd")


def output_paths(out_dir: Path, label: str) -> tuple[Path, Path]:
    """(``recon_img-<label>.mat``, ``recon_img_normalized-<label>.jpg``) in ``out_dir``."""
    return out_dir / f"recon_img-{label}.mat", out_dir / f"recon_img_normalized-{label}.jpg"


def _parse_overrides(cfg: ScriptConfig, argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=Path(cfg.script_file).name,
        description=f"Reconstruct {cfg.image_type} images ({cfg.engine}, {cfg.network}); "
                    "without options, the settings of the script's constants (the paper's).")
    p.add_argument("--subjects", help="comma-separated, e.g. S1,S2 (default: subjects_list)")
    p.add_argument("--rois", help="comma-separated, e.g. V1,VC (default: rois_list)")
    p.add_argument("--labels", help="comma-separated, e.g. Img0009 (default: image_label_list)")
    p.add_argument("--layers-sets", help="script 3: comma-separated set names")
    p.add_argument("--iterations", type=int,
                   help="override iter_n / maxiter (e.g. 3 for a smoke test)")
    p.add_argument("--batch-size", type=int, help="images per batch for the GD engines")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    p.add_argument("--results-dir", help="default: results_dir")
    p.add_argument("--force", action="store_true", help="redo reconstructions that exist")
    p.add_argument("--yes", action="store_true", help="download missing files without asking")
    p.add_argument("--snapshot-every", type=int, help="0 disables snapshots")
    p.add_argument("--quiet", action="store_true", help="no per-iteration output")
    return p.parse_args(list(argv))


def _split(text: str | None, default: Sequence[str]) -> list[str]:
    return list(default) if not text else [t.strip() for t in text.split(",") if t.strip()]


def _write_pickle_atomic(path: Path, obj: Any) -> None:
    from ._util import atomic_output
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=4)


def _plain(value: Any) -> Any:
    """Options as plain Python values (arrays -> lists) for ``options.pkl``."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _save_outputs(out_dir: Path, label: str, img: np.ndarray) -> None:
    """The .jpg first, then the .mat: a job counts as done when both exist."""
    import PIL.Image
    import scipy.io

    from ._util import atomic_output
    from .utils import clip_extreme_value, normalise_img
    mat_path, jpg_path = output_paths(out_dir, label)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(jpg_path) as tmp:
        PIL.Image.fromarray(normalise_img(clip_extreme_value(img, pct=4))).save(tmp, format="JPEG")
    with atomic_output(mat_path) as tmp:
        scipy.io.savemat(tmp, {"recon_img": img})


def _done(out_dir: Path, label: str) -> bool:
    return all(p.is_file() for p in output_paths(out_dir, label))


def run_script(cfg: ScriptConfig, argv: Sequence[str] | None = None) -> list[Path]:
    """Run a figure script's reconstructions. Returns the folders it wrote into.

    Parameters
    ----------
    cfg : ScriptConfig
    argv : sequence of str, optional
        Command-line overrides (default ``sys.argv[1:]``).
    """
    import torch

    from . import data, download, icnn_dgn_gd, icnn_dgn_lbfgs, icnn_gd, icnn_lbfgs, perf
    from .jobs import device_for_rank, make_jobs, rank_info, split_jobs
    from .models import load_generator, load_vgg19

    args = _parse_overrides(cfg, sys.argv[1:] if argv is None else argv)
    if cfg.engine not in ITERATION_KEY:
        raise SystemExit(f"unknown engine {cfg.engine!r}; choose from {sorted(ITERATION_KEY)}")
    wrong = {"maxiter"} if ITERATION_KEY[cfg.engine] == "iter_n" else {"iter_n"}
    if wrong & set(cfg.opts):
        raise SystemExit(f"opts has {sorted(wrong & set(cfg.opts))}, which {cfg.engine} does not take; "
                         f"it counts iterations with {ITERATION_KEY[cfg.engine]!r}")
    root = cfg.root
    data_dir, net_dir = root / cfg.data_dir, root / cfg.net_dir
    subjects = _split(args.subjects, cfg.subjects_list)
    rois = _split(args.rois, cfg.rois_list)
    labels = _split(args.labels, cfg.image_label_list)
    if cfg.layers_sets is not None:
        set_names = _split(args.layers_sets, list(cfg.layers_sets))
        unknown = [s for s in set_names if s not in cfg.layers_sets]
        if unknown:
            raise SystemExit(f"unknown layer set(s) {unknown}; choose from {list(cfg.layers_sets)}")
        layer_sets = {s: list(cfg.layers_sets[s]) for s in set_names}
        all_layers = sorted({l for ls in layer_sets.values() for l in ls})
    else:
        layer_sets = None
        all_layers = list(cfg.layers or [])
    results_root = (root / (args.results_dir or cfg.results_dir)).resolve() / cfg.script_name
    overwrite = cfg.overwrite or args.force
    batch_size = max(1, args.batch_size or cfg.batch_size)
    snapshot_every = cfg.snapshot_every if args.snapshot_every is None else args.snapshot_every

    # Files: check, and download what is missing (no network when all are present).
    assume_yes = True if (args.yes or cfg.download == "yes") else (False if cfg.download == "no" else None)
    plan = cfg.plan(subjects=subjects, rois=rois, labels=labels,
                    layer_sets=list(layer_sets) if layer_sets is not None else None)
    download.ensure_plan_files(plan, data_dir=data_dir, net_dir=net_dir,
                               features_dir=cfg.path(cfg.decoded_features_dir),
                               script_arg=cfg.script_file, assume_yes=assume_yes)

    rank, world_size, local_rank = rank_info()
    if args.device or cfg.device:
        device = torch.device(args.device or cfg.device)
    else:
        device = device_for_rank(local_rank)
    if device.type == "cpu":
        perf.retain_freed_memory()  # no page faults per iteration (see icnn_torch.perf)
    img_mean, mean_source = data.load_image_mean(data.image_mean_path(data_dir))
    print(mean_source)
    variant = "leaky" if cfg.network == "VGG19_leaky" else "relu"
    net = load_vgg19(data.vgg19_weights_path(net_dir), variant=variant, device=device, img_mean=img_mean)
    feat_std0 = data.load_feat_std(data.feat_std_path(data_dir, cfg.network))
    net_gen = None
    opts = dict(cfg.opts)
    iter_key = ITERATION_KEY[cfg.engine]
    if args.iterations is not None:
        opts[iter_key] = args.iterations
    if cfg.engine in GENERATOR_ENGINES:
        net_gen = load_generator(data.generator_weights_path(net_dir), device=device)
    resolved = _resolve_options(opts, net, data_dir)
    if args.quiet:
        resolved["disp_every" if cfg.engine in BATCHED_ENGINES else "disp"] = 0

    if rank == 0 or not (results_root / "options.pkl").exists():
        results_root.mkdir(parents=True, exist_ok=True)
        _write_pickle_atomic(results_root / "options.pkl", _plain(opts))

    jobs = make_jobs(subjects, rois, labels, list(layer_sets) if layer_sets else None)
    mine = split_jobs(jobs, rank, world_size)
    todo = [j for j in mine if overwrite or not _done(j.result_dir(results_root), j.label)]
    print(f"{cfg.script_name}: {len(jobs)} reconstructions, {len(mine)} for rank {rank}/{world_size}, "
          f"{len(mine) - len(todo)} already done, device {device}")
    engine = {"icnn_dgn_gd": icnn_dgn_gd, "icnn_gd": icnn_gd, "icnn_lbfgs": icnn_lbfgs,
              "icnn_dgn_lbfgs": icnn_dgn_lbfgs}[cfg.engine]
    step = batch_size if cfg.engine in BATCHED_ENGINES else 1
    written = []
    for start in range(0, len(todo), step):
        group = todo[start:start + step]
        feats, weights = [], []
        for job in group:
            layers = layer_sets[job.layer_set] if layer_sets else all_layers
            print(f"\nsubject: {job.subject}\nROI: {job.roi}\nimage_label: {job.label}"
                  + (f"\nlayer_set: {job.layer_set}" if job.layer_set else "") + "\n", flush=True)
            raw = data.load_decoded_features(data_dir, cfg.image_type, cfg.network, layers,
                                             job.subject, job.roi, job.label)
            corrected = data.correct_feature_std(raw, feat_std0)
            feats.append(corrected)
            weights.append(data.layer_weights_inverse_sq_norm(corrected))
        if len({tuple(f) for f in feats}) > 1:  # different layer sets: not one batch
            raise RuntimeError("a batch mixes layer sets")
        dirs = [j.result_dir(results_root) for j in group]
        snaps = [d / "snapshots" / f"image-{j.label}" for d, j in zip(dirs, group)]
        kwargs = dict(resolved, layer_weight=weights if len(group) > 1 else weights[0],
                      save_intermediate=snapshot_every > 0,
                      save_intermediate_every=max(1, snapshot_every),
                      save_intermediate_path=[str(s) for s in snaps] if len(group) > 1 else str(snaps[0]))
        t0 = time.perf_counter()
        target = feats if len(group) > 1 else feats[0]
        if net_gen is not None:
            img, _loss = engine.reconstruct_image(target, net, net_gen, **kwargs)
        else:
            img, _loss = engine.reconstruct_image(target, net, **kwargs)
        images = img if len(group) > 1 else img[None]
        for job, out_dir, image in zip(group, dirs, images):
            _save_outputs(out_dir, job.label, np.asarray(image, dtype=np.float32))
            written.append(out_dir)
        print(f"saved {len(group)} reconstruction(s) in {time.perf_counter() - t0:.1f} s", flush=True)
    return written


def _resolve_options(opts: dict, net, data_dir: Path) -> dict:
    """Replace the symbolic option values by arrays (see :class:`ScriptConfig`)."""
    from . import data
    out = dict(opts)
    if isinstance(out.get("initial_image"), str):
        if out["initial_image"] != "mean":
            raise ValueError(f"unknown initial_image {out['initial_image']!r}")
        h, w = net.input_size
        out["initial_image"] = np.broadcast_to(np.asarray(net.img_mean, np.float32)[::-1], (h, w, 3)).copy()
    if isinstance(out.get("initial_gen_feat"), str):
        if out["initial_gen_feat"] != "zeros":
            raise ValueError(f"unknown initial_gen_feat {out['initial_gen_feat']!r}")
        out["initial_gen_feat"] = np.zeros(4096, dtype=np.float32)
    if isinstance(out.get("feat_upper_bound"), str):
        if out["feat_upper_bound"] != "fc7_3x":
            raise ValueError(f"unknown feat_upper_bound {out['feat_upper_bound']!r}")
        out["feat_upper_bound"] = data.load_fc7_upper_bound(data.fc7_bounds_path(data_dir))
    return out
