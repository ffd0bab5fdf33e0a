"""Mechanics of the four reconstruction engines, on small random encoders.

What a user relies on besides the result itself: the update rule (checked step by step
against an independent re-computation), icnn_gd's options, the loss list, the progress
lines, the snapshot files and their names, errors on bad targets, and batches. The
full-size inversions through VGG19 and a pretrained CNN are in ``test_engine_*.py`` and
``test_pretrained_inversion.py``.

Pixel engines use a 32x32 encoder (:func:`tiny_encoder`); the generator engines a 224x224
one (the generator's 256x256 output is centre-cropped to it) and a random DeePSiM
generator.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import scipy.io
import scipy.ndimage
import torch
from PIL import Image

from _engine_helpers import (CountingEncoder, RecordingGenerator, draw_latent, encoder_features,
                             fc7_upper_bounds, generator_image, random_generator, random_rgb,
                             tiny_encoder)
from icnn_torch import icnn_dgn_gd, icnn_dgn_lbfgs, icnn_gd, icnn_lbfgs
from icnn_torch.models import center_crop
from icnn_torch.perf import full_float32
from icnn_torch.recon.objective import build_feature_loss
from icnn_torch.recon.transforms import gaussian_blur_torch
from icnn_torch.utils import img_deprocess, img_preprocess

ITER_LINE = re.compile(r"^iter=(\d+); err=([^;]+);$")
SIZE = 32
E_K2 = float(np.mean(np.arange(256.0) ** 2))  # E[k^2], k uniform on 0..255


# --------------------------------------------------------------------------- helpers

def true_targets(net, rgb: np.ndarray, layers=("c1", "c2", "fc")) -> dict:
    """Features (no batch axis) of an RGB 0..255 image, computed directly with the net."""
    return encoder_features(net, rgb, layers)


def l2_objective(net, targets: dict, weights: dict):
    """sum_l w_l ||f_l(x) - t_l||^2 of a Caffe-space batch, written out here (not ours)."""
    device = next(net.parameters()).device
    t = {n: torch.tensor(v, device=device) for n, v in targets.items()}

    def loss(x: torch.Tensor) -> torch.Tensor:
        feats = net(x, list(targets))
        return sum(weights[n] * ((feats[n] - t[n]) ** 2).flatten(1).sum(1) for n in targets)

    return loss


def lin(start: float, end: float, n: int, t: int) -> float:
    return start + t * (end - start) / n


def parse_lines(text: str) -> list[tuple[int, list[float]]]:
    out = []
    for line in text.splitlines():
        m = ITER_LINE.match(line.strip())
        if m:
            out.append((int(m.group(1)), [float(v) for v in m.group(2).split(",")]))
    return out


def minmax_uint8(img: np.ndarray) -> np.ndarray:
    """min -> 0, max -> 255, truncated to uint8 (the snapshot normalisation, written here)."""
    x = np.asarray(img, np.float64)
    x = x - x.min()
    return (x * (255.0 / x.max())).astype(np.uint8)


def jpeg_roundtrip(img_uint8: np.ndarray) -> np.ndarray:
    """What PIL's default JPEG encoder makes of an image (chroma subsampling included)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img_uint8)).save(buf, format="JPEG")
    buf.seek(0)
    return read_rgb(buf)


def read_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def assert_jpeg_of(path, expected_uint8: np.ndarray) -> None:
    """The JPEG at ``path`` encodes ``expected_uint8`` (up to an odd 1-level rounding)."""
    diff = np.abs(read_rgb(path) - jpeg_roundtrip(expected_uint8))
    assert diff.mean() < 0.5, f"{path}: mean difference {diff.mean():.2f} levels from the expected image"


PIXEL_ENGINES = {
    "icnn_gd": lambda f, net, **kw: icnn_gd.reconstruct_image(f, net, **kw),
    "icnn_lbfgs": lambda f, net, **kw: icnn_lbfgs.reconstruct_image(f, net, **kw),
}


# --------------------------------------------------------------------------- target errors

@pytest.mark.parametrize("engine", ["icnn_gd", "icnn_lbfgs", "icnn_dgn_gd", "icnn_dgn_lbfgs"])
def test_mismatched_feature_shape_names_layer_and_both_shapes(engine, device):
    net = tiny_encoder(device, size=SIZE)
    feats = true_targets(net, random_rgb(0))
    feats["c2"] = feats["c2"][:, :5, :5]
    call = {"icnn_gd": lambda: icnn_gd.reconstruct_image(feats, net, iter_n=1, disp_every=0),
            "icnn_lbfgs": lambda: icnn_lbfgs.reconstruct_image(feats, net, maxiter=1, disp=0),
            "icnn_dgn_gd": lambda: icnn_dgn_gd.reconstruct_image(feats, net, None, iter_n=1,
                                                                 disp_every=0),
            "icnn_dgn_lbfgs": lambda: icnn_dgn_lbfgs.reconstruct_image(feats, net, None, maxiter=1,
                                                                       disp=0)}[engine]
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert "'c2'" in message
    assert str((8, 5, 5)) in message and str((8, SIZE // 2, SIZE // 2)) in message


def test_unknown_layer_is_named(device):
    net = tiny_encoder(device, size=SIZE)
    with pytest.raises(KeyError, match="conv9"):
        icnn_gd.reconstruct_image({"conv9": np.zeros(3, np.float32)}, net, iter_n=1, disp_every=0)


@pytest.mark.parametrize("engine", sorted(PIXEL_ENGINES))
def test_all_zero_target_layer_never_yields_nan(engine, device):
    """The scripts' 1/||f||^2 weights of an all-zero layer are inf: a clear error. With
    finite weights (default or given) such a layer is an ordinary target."""
    net = tiny_encoder(device, size=SIZE)
    feats = true_targets(net, random_rgb(1))
    feats["c2"] = np.zeros_like(feats["c2"])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = {n: 1.0 / np.sum(f.astype(np.float64) ** 2) for n, f in feats.items()}
        total = sum(inv.values())
        weights = {n: v / total for n, v in inv.items()}
    assert not np.isfinite(weights["c2"])
    run = PIXEL_ENGINES[engine]
    kw = {"iter_n": 3, "disp_every": 0} if engine == "icnn_gd" else {"maxiter": 3, "disp": 0}
    with pytest.raises(ValueError, match="NaN or inf") as err:
        run(feats, net, layer_weight=weights, **kw)
    assert "c2" in str(err.value)
    np.random.seed(0)
    img, losses = run(feats, net, **kw)
    assert np.all(np.isfinite(img)) and np.all(np.isfinite(losses))
    img, losses = run(feats, net, layer_weight={"c1": 0.5, "c2": 0.5, "fc": 0.0}, **kw)
    assert np.all(np.isfinite(img)) and np.all(np.isfinite(losses))


def test_nan_target_is_rejected(device):
    net = tiny_encoder(device, size=SIZE)
    feats = true_targets(net, random_rgb(2))
    feats["fc"][3] = np.nan
    with pytest.raises(ValueError, match="'fc'"):
        icnn_gd.reconstruct_image(feats, net, iter_n=1, disp_every=0)


# --------------------------------------------------------------------------- update rules

def test_icnn_gd_step_matches_independent_recomputation(device):
    """Two iterations: g/mean|g|, momentum, step, decay, blur with scipy's filter; the
    schedules linear over iter_n and one step short of their end values."""
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(3))
    weights = {"c1": 0.3, "c2": 0.5, "fc": 0.2}
    x0_rgb = random_rgb(4)
    n, opts = 2, dict(lr_start=3.0, lr_end=1.0, momentum_start=0.5, momentum_end=0.1,
                      decay_start=0.1, decay_end=0.02, sigma_start=1.5, sigma_end=0.5)
    img, losses = icnn_gd.reconstruct_image(targets, net, layer_weight=weights, initial_image=x0_rgb,
                                            iter_n=n, disp_every=0, **opts)

    objective = l2_objective(net, targets, weights)
    x = img_preprocess(x0_rgb, net.img_mean).astype(np.float64)
    delta = np.zeros_like(x)
    expected_losses = []
    for t in range(n):
        xt = torch.tensor(x[None], dtype=torch.float32, device=device, requires_grad=True)
        loss = objective(xt).sum()
        (g,) = torch.autograd.grad(loss, xt)
        expected_losses.append(float(loss.detach()))
        g = g[0].cpu().numpy().astype(np.float64)
        g = g / np.mean(np.abs(g))
        delta = lin(opts["momentum_start"], opts["momentum_end"], n, t) * delta + g
        x = x - lin(opts["lr_start"], opts["lr_end"], n, t) * delta
        x = (1 - lin(opts["decay_start"], opts["decay_end"], n, t)) * x
        sigma = lin(opts["sigma_start"], opts["sigma_end"], n, t)
        x = np.stack([scipy.ndimage.gaussian_filter(c, sigma) for c in x])
    expected = img_deprocess(x, net.img_mean)
    assert losses.shape == (n,)
    # float32 losses of a float64-tracked trajectory, two steps: float32 summation order
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5)
    np.testing.assert_allclose(img, expected, atol=1e-3 * np.abs(expected).max())


def test_icnn_gd_schedule_stops_one_step_short_of_its_end(device):
    """decay 0 -> 1 over 2 iterations: the second step decays by 0.5, not by 1 (which
    would leave the flat mean image). lr 0, no blur: only the decay acts."""
    net = tiny_encoder(device, size=SIZE)
    x0 = random_rgb(5)
    img, _ = icnn_gd.reconstruct_image(true_targets(net, random_rgb(6)), net, initial_image=x0,
                                       iter_n=2, lr_start=0, lr_end=0, decay_start=0, decay_end=1,
                                       image_blur=False, disp_every=0)
    x = img_preprocess(img, net.img_mean)
    np.testing.assert_allclose(x, 0.5 * img_preprocess(x0, net.img_mean), atol=1e-3)


def test_icnn_dgn_gd_step_order_bounds_and_returned_latent(device):
    """Three iterations, each update recomputed here from the z the engine evaluated:
    g/mean|g| -> momentum -> step -> decay -> clip to [0, upper]. The returned z is the last
    *evaluated* one (z_2, before the third update), its image is crop(G(z_2)), and each
    recorded loss is the loss at the z of its iteration.

    Why step by step: this generator's float32 gradient with respect to z is good to about
    5e-4 only (its Jacobian cancels most of the image gradient), so two float32 runs of the
    same iterations that round differently (another CPU, another thread count) drift apart
    by more than the float32 rounding of one step. Each step is therefore recomputed from
    the engine's own z_t, with the gradient the engine's objective gives at z_t (the same
    computation in the same process), in float64; what remains is the float32 rounding of
    the engine's update, a few operations on values of at most max|z_t| + lr*max|delta|.
    The losses are compared with an independent loss at the engine's z_t: they differ by
    the float32 summation order only (rtol 1e-5 for 2e5 terms)."""
    net = tiny_encoder(device, size=224)
    gen = random_generator(str(device))
    upper = fc7_upper_bounds()
    z_true = draw_latent(upper, np.random.default_rng(8))
    targets = true_targets(net, generator_image(gen, z_true, net.img_mean))
    weights = {"c1": 0.3, "c2": 0.5, "fc": 0.2}
    z0 = np.random.default_rng(9).normal(1.0, 1.0, 4096).astype(np.float32)  # partly out of bounds
    n, lr, mom, decay = 3, 2.0, 0.9, 0.01
    recording = RecordingGenerator(gen)
    img, losses, z_ret = icnn_dgn_gd.reconstruct_image(
        targets, net, recording, layer_weight=weights, initial_gen_feat=z0,
        feat_upper_bound=upper, feat_lower_bound=0.0, iter_n=n, lr_start=lr, lr_end=lr,
        momentum_start=mom, momentum_end=mom, decay_start=decay, decay_end=decay,
        disp_every=0, return_gen_feat=True)
    seen = [z.reshape(-1) for z in recording.seen]
    assert len(seen) == n
    np.testing.assert_array_equal(seen[0], z0)

    engine_objective, _ = build_feature_loss(targets, net, device, layer_weight=weights)
    independent = l2_objective(net, targets, weights)
    delta = np.zeros(4096)
    for t in range(n):
        zt = torch.tensor(seen[t][None], device=device, requires_grad=True)
        with full_float32(device):  # as the engine computes it (no TF32 on CUDA)
            loss = engine_objective(net(center_crop(gen(zt)), engine_objective.layers)).sum()
            (g,) = torch.autograd.grad(loss, zt)
        with torch.no_grad():
            expected = float(independent(center_crop(gen(zt.detach()))))
        assert float(losses[t]) == pytest.approx(expected, rel=1e-5)
        g = g[0].cpu().numpy().astype(np.float64)
        delta = mom * delta + g / np.mean(np.abs(g))
        step = seen[t] - lr * delta
        predicted = np.clip((1 - decay) * step, 0.0, upper)
        if t + 1 < n:
            # float32 rounding of the engine's update: 8 roundings of the largest magnitude
            atol = 8 * np.finfo(np.float32).eps * float(np.abs(seen[t]).max() + lr * np.abs(delta).max())
            np.testing.assert_allclose(seen[t + 1], predicted, rtol=0, atol=atol)
    np.testing.assert_array_equal(z_ret, seen[-1])  # the last evaluated z, not the update after it
    assert np.all(z_ret >= 0) and np.all(z_ret <= upper)
    assert not np.allclose(z_ret, predicted, atol=1e-3)
    np.testing.assert_allclose(img, generator_image(gen, z_ret, net.img_mean), atol=1e-2)


def test_icnn_dgn_gd_single_iteration_returns_the_start(device):
    net = tiny_encoder(device, size=224)
    gen = random_generator(str(device))
    targets = true_targets(net, random_rgb(10, size=224))
    z0 = draw_latent(fc7_upper_bounds(), np.random.default_rng(11))
    img, losses, z = icnn_dgn_gd.reconstruct_image(targets, net, gen, initial_gen_feat=z0, iter_n=1,
                                                   disp_every=0, return_gen_feat=True)
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_allclose(img, generator_image(gen, z0, net.img_mean), atol=1e-2)
    assert losses.shape == (1,)


# --------------------------------------------------------------------------- icnn_gd options

@pytest.mark.parametrize("sigma", [0.5, 1.3, 2.0])
def test_blur_equals_scipy_gaussian_filter(sigma, device):
    rng = np.random.default_rng(12)
    img = rng.normal(0, 50, (2, 3, 40, 52))
    out = gaussian_blur_torch(torch.tensor(img, device=device), sigma).cpu().numpy()
    expected = np.stack([[scipy.ndimage.gaussian_filter(c, sigma) for c in im] for im in img])
    np.testing.assert_allclose(out, expected, atol=1e-9)
    out32 = gaussian_blur_torch(torch.tensor(img, dtype=torch.float32, device=device), sigma)
    np.testing.assert_allclose(out32.cpu().numpy(), expected, atol=1e-3)


def test_icnn_gd_blur_alone_applies_scipy_filter(device):
    net = tiny_encoder(device, size=SIZE)
    x0 = random_rgb(13)
    img, _ = icnn_gd.reconstruct_image(true_targets(net, random_rgb(14)), net, initial_image=x0,
                                       iter_n=1, lr_start=0, lr_end=0, decay_start=0, decay_end=0,
                                       sigma_start=1.7, sigma_end=0.1, disp_every=0)
    x = img_preprocess(x0, net.img_mean).astype(np.float64)
    expected = np.stack([scipy.ndimage.gaussian_filter(c, 1.7) for c in x])
    np.testing.assert_allclose(img_preprocess(img, net.img_mean), expected, atol=1e-3)


def jitter_shifts(device, iter_n: int, jitter_size: int, seed: int | None) -> list[tuple[int, int]]:
    """The (dy, dx) roll icnn_gd applies in each iteration, read off its losses.

    The encoder is the identity, the start image is zero but for one marked pixel and the
    target numbers every position differently, so the loss of a rolled start names the
    roll: loss = const - 2 * marker * target[marked position + roll]. lr 0: the image never
    changes, only the rolls do.
    """
    from icnn_torch.features import FeatureExtractor

    net = FeatureExtractor(torch.nn.Sequential(torch.nn.Identity()), {"img": "0"},
                           input_size=(SIZE, SIZE))
    x0 = np.zeros((3, SIZE, SIZE), np.float32)
    x0[0, 10, 12] = 500.0
    target = np.zeros((3, SIZE, SIZE), np.float32)
    target[0] = 0.01 * np.arange(SIZE * SIZE).reshape(SIZE, SIZE)
    img, losses = icnn_gd.reconstruct_image(
        {"img": target}, net, initial_image=img_deprocess(x0, net.img_mean), iter_n=iter_n,
        image_jitter=True, jitter_size=jitter_size, seed=seed, lr_start=0, lr_end=0,
        decay_start=0, decay_end=0, image_blur=False, disp_every=0, device=device)
    np.testing.assert_allclose(img_preprocess(img, net.img_mean), x0, atol=1e-3)  # roll undone
    const = float(np.sum(x0 ** 2) + np.sum(target ** 2))
    shifts = []
    for value in losses:
        index = (const - float(value)) / (2 * 500.0 * 0.01)
        assert abs(index - round(index)) < 0.05, "the loss is not that of a rolled start image"
        y, x = divmod(int(round(index)), SIZE)
        dy, dx = (y - 10 + SIZE // 2) % SIZE - SIZE // 2, (x - 12 + SIZE // 2) % SIZE - SIZE // 2
        assert abs(dy) <= jitter_size and abs(dx) <= jitter_size
        shifts.append((dy, dx))
    return shifts


def _check_jittered_gd_against_recomputation(device, shifts, seed: int, image_seeds,
                                              rolls_momentum: bool, **option) -> None:
    """Run icnn_gd with jitter (``seed``) and recompute its iterations from the drawn
    ``shifts`` in float64: image and momentum rolled before the step and rolled back after
    it; with ``rolls_momentum`` False the gradient stays in the shifted frame (the
    original's roll back)."""
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(image_seeds[0]))
    weights = {"c1": 0.3, "c2": 0.5, "fc": 0.2}
    x0 = random_rgb(image_seeds[1])
    n = len(shifts)
    img, losses = icnn_gd.reconstruct_image(
        targets, net, iter_n=n, image_jitter=True, jitter_size=8, seed=seed, image_blur=False,
        disp_every=0, initial_image=x0, layer_weight=weights, lr_start=1.5, lr_end=0.5,
        momentum_start=0.9, momentum_end=0.9, decay_start=0.1, decay_end=0.1, **option)
    objective = l2_objective(net, targets, weights)
    x = img_preprocess(x0, net.img_mean).astype(np.float64)
    delta = np.zeros_like(x)
    for t, (dy, dx) in enumerate(shifts):
        xs = np.roll(x, (dy, dx), (1, 2))
        ds = np.roll(delta, (dy, dx), (1, 2))
        xt = torch.tensor(xs[None], dtype=torch.float32, device=device, requires_grad=True)
        loss = objective(xt).sum()
        # float32 losses of a float64-tracked trajectory: 1e-7 apart measured, 100x margin
        assert float(loss.detach()) == pytest.approx(float(losses[t]), rel=1e-5)
        (g,) = torch.autograd.grad(loss, xt)
        g = g[0].cpu().numpy().astype(np.float64)
        g = g / np.mean(np.abs(g))
        ds = 0.9 * ds + g
        xs = xs - lin(1.5, 0.5, n, t) * ds
        x = (1 - 0.1) * np.roll(xs, (-dy, -dx), (1, 2))
        delta = np.roll(ds, (-dy, -dx), (1, 2)) if rolls_momentum else \
            np.roll(ds - g, (-dy, -dx), (1, 2)) + g
    expected = img_deprocess(x, net.img_mean)
    np.testing.assert_allclose(img, expected, atol=1e-3 * np.abs(expected).max())


def test_icnn_gd_jitter_option_rolls_image_and_momentum_and_undoes_the_roll(device):
    # 1. each iteration evaluates the image rolled by up to +-jitter_size px (seeded)
    shifts = jitter_shifts(device, iter_n=4, jitter_size=8, seed=3)
    assert len(set(shifts)) > 1
    assert jitter_shifts(device, iter_n=4, jitter_size=8, seed=3) == shifts
    assert jitter_shifts(device, iter_n=4, jitter_size=8, seed=4) != shifts

    # 2. with steps, the same seed draws the same rolls; recompute the iterations with
    #    image and momentum buffer rolled before the step and rolled back after it
    _check_jittered_gd_against_recomputation(device, shifts, 3, (15, 16), rolls_momentum=True,
                                             jitter_rolls_momentum=True)


def test_icnn_gd_jitter_default_handles_the_momentum_as_the_original(device):
    """By default the roll back is the original's: the gradient is taken out of the
    momentum buffer, the buffer rolled back, and the gradient added in again unrolled
    (so it stays in the frame of the shifted image)."""
    shifts = jitter_shifts(device, iter_n=4, jitter_size=8, seed=5)
    _check_jittered_gd_against_recomputation(device, shifts, 5, (47, 48), rolls_momentum=False)


def test_icnn_gd_draws_the_originals_random_numbers_in_its_order(device):
    """A seeded run draws from numpy's global generator what the original draws, in its
    order: the regulariser's noise image (always), the random start image, then one
    (ox, oy) jitter shift per iteration; so it leaves the generator in the same state."""
    from icnn_torch.features import FeatureExtractor

    net = FeatureExtractor(torch.nn.Sequential(torch.nn.Identity()), {"img": "0"},
                           input_size=(SIZE, SIZE))
    iter_n, jitter = 3, 4
    np.random.seed(2024)
    np.random.randint(0, 256, (SIZE, SIZE, 3))  # the noise image of the regulariser scale
    start = np.random.randint(0, 256, (SIZE, SIZE, 3))
    [np.random.randint(-jitter, jitter + 1, 2) for _ in range(iter_n)]  # the jitter shifts
    after = np.random.randint(0, 2 ** 31)
    target = np.zeros((3, SIZE, SIZE), np.float32)
    np.random.seed(2024)
    img, losses = icnn_gd.reconstruct_image(
        {"img": target}, net, iter_n=iter_n, image_jitter=True, jitter_size=jitter,
        lr_start=0, lr_end=0, decay_start=0, decay_end=0, image_blur=False, disp_every=0,
        device=device)
    assert np.random.randint(0, 2 ** 31) == after
    np.testing.assert_allclose(img, start, atol=1e-3)  # lr 0: the drawn start, rolled back
    # the shifts themselves, read off the losses (start image given: noise, then shifts)
    np.random.seed(77)
    np.random.randint(0, 256, (SIZE, SIZE, 3))
    expected = [tuple(int(v) for v in np.random.randint(-jitter, jitter + 1, 2))[::-1]
                for _ in range(iter_n)]
    np.random.seed(77)
    assert jitter_shifts(device, iter_n=iter_n, jitter_size=jitter, seed=None) == expected
    assert len(set(expected)) > 1


def test_icnn_gd_jitter_still_reconstructs(device):
    net = tiny_encoder(device, size=SIZE)
    photo = random_rgb(17)
    photo = np.stack([scipy.ndimage.gaussian_filter(photo[..., c], 3) for c in range(3)], -1)
    photo = (photo - photo.min()) / np.ptp(photo) * 255
    targets = true_targets(net, photo)
    np.random.seed(1)
    img, losses = icnn_gd.reconstruct_image(targets, net, iter_n=40, image_jitter=True,
                                            jitter_size=4, seed=0, disp_every=0)
    assert losses[-5:].mean() < 0.5 * losses[:5].mean()


def uniform_image_scale(shape) -> float:
    """(||uniform random 0..255 image|| / 2)^2 in expectation."""
    return float(np.prod(shape)) * E_K2 / 4.0


def tv_numpy(x: np.ndarray, beta: float) -> float:
    """sum over channels and pixels of (dx^2 + dy^2)^(beta/2), forward differences,
    last row/column difference zero."""
    dy = np.zeros_like(x)
    dx = np.zeros_like(x)
    dy[:, :-1, :] = x[:, 1:, :] - x[:, :-1, :]
    dx[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return float(np.sum((dy ** 2 + dx ** 2) ** (beta / 2)))


@pytest.mark.parametrize("reg", ["p_norm", "TV"])
def test_icnn_gd_regularisers_enter_the_error_and_shrink_their_norm(reg, device, capsys):
    """The regulariser enters the printed error (``iter=1; err=...``) and the momentum, not
    the loss list (the feature loss, as the original records it). Its scale is
    ``(||noise|| / 2)^2`` of a noise image drawn from numpy's global generator before
    anything else (the original's), or the expected value with ``regulariser_noise=False``."""
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(18))
    weights = {"c1": 0.3, "c2": 0.5, "fc": 0.2}
    x0 = random_rgb(19)
    common = dict(layer_weight=weights, initial_image=x0, iter_n=20, disp_every=1)
    if reg == "p_norm":
        opts = dict(use_p_norm_reg=True, p=3, lamda_start=0.7, lamda_end=0.7)
        norm = lambda x: float(np.sum(np.abs(x) ** 3))  # noqa: E731
        weight = 0.7
    else:
        opts = dict(use_TV_norm_reg=True, TVbeta=2, TVlamda_start=0.6, TVlamda_end=0.6)
        norm = lambda x: tv_numpy(x, 2.0)  # noqa: E731
        weight = 0.6
    x0c = img_preprocess(x0, net.img_mean).astype(np.float64)
    with torch.no_grad():
        feat_loss0 = float(l2_objective(net, targets, weights)(
            torch.tensor(x0c[None], dtype=torch.float32, device=device)))
    np.random.seed(61)
    noise = np.random.randint(0, 256, (SIZE, SIZE, 3))  # what the original draws first
    noise_scale = float(np.linalg.norm(noise) / 2.0) ** 2
    for regulariser_noise, scale in ((True, noise_scale), (False, uniform_image_scale(x0c.shape))):
        np.random.seed(61)
        img_reg, loss_reg = icnn_gd.reconstruct_image(
            targets, net, **opts, **common, regulariser_noise=regulariser_noise)
        first_err = parse_lines(capsys.readouterr().out)[0][1][0]
        # the same start in two float32 forward passes (summation order), and the %g
        # print of the error (6 significant digits, at most 5e-6)
        assert loss_reg[0] == pytest.approx(feat_loss0, rel=1e-5)
        assert first_err == pytest.approx(feat_loss0 + weight * norm(x0c) / scale, rel=1e-5)
    assert abs(noise_scale / uniform_image_scale(x0c.shape) - 1) < 0.05  # the two scales agree
    img_plain, loss_plain = icnn_gd.reconstruct_image(targets, net, **common)
    assert loss_plain[0] == pytest.approx(feat_loss0, rel=1e-5)
    assert norm(img_preprocess(img_reg, net.img_mean)) < 0.9 * norm(img_preprocess(img_plain, net.img_mean))


@pytest.mark.parametrize("every_hit", [True, False])
def test_icnn_gd_clip_extreme_clips_to_percentiles_every_n(every_hit, device):
    net = tiny_encoder(device, size=SIZE)
    x0 = random_rgb(20)
    iter_n = 4 if every_hit else 3
    img, _ = icnn_gd.reconstruct_image(
        true_targets(net, random_rgb(21)), net, initial_image=x0, iter_n=iter_n, lr_start=0,
        lr_end=0, decay_start=0, decay_end=0, image_blur=False, disp_every=0, clip_extreme=True,
        clip_extreme_every=4, e_pct_start=10, e_pct_end=10)
    x = img_preprocess(x0, net.img_mean)
    if every_hit:
        lo, hi = np.percentile(x, [5, 95])
        expected = np.clip(x, lo, hi)
        assert np.mean(expected != x) > 0.05
    else:
        expected = x  # clipping only after iterations 4, 8, ...
    np.testing.assert_allclose(img_preprocess(img, net.img_mean), expected, atol=1e-3)


def test_icnn_gd_clip_small_norm_zeroes_the_weakest_pixels(device):
    net = tiny_encoder(device, size=SIZE)
    x0 = random_rgb(22)
    img, _ = icnn_gd.reconstruct_image(
        true_targets(net, random_rgb(23)), net, initial_image=x0, iter_n=4, lr_start=0, lr_end=0,
        decay_start=0, decay_end=0, image_blur=False, disp_every=0, clip_small_norm=True,
        n_pct_start=20, n_pct_end=20)
    x = img_preprocess(x0, net.img_mean)
    norm = np.sqrt(np.sum(x ** 2, axis=0))
    weak = norm < np.percentile(norm, 20)
    expected = x * ~weak
    np.testing.assert_allclose(img_preprocess(img, net.img_mean), expected, atol=1e-3)
    assert 0.15 < weak.mean() < 0.25


def test_icnn_gd_clip_small_contribution_zeroes_pixels_of_least_img_times_grad(device):
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(24))
    weights = {"c1": 0.3, "c2": 0.5, "fc": 0.2}
    x0 = random_rgb(25)
    img, _ = icnn_gd.reconstruct_image(
        targets, net, layer_weight=weights, initial_image=x0, iter_n=1, lr_start=0, lr_end=0,
        decay_start=0, decay_end=0, image_blur=False, disp_every=0, clip_small_contribution=True,
        clip_small_contribution_every=1, c_pct_start=30, c_pct_end=30)
    x = img_preprocess(x0, net.img_mean)
    xt = torch.tensor(x[None], device=device, requires_grad=True)
    (g,) = torch.autograd.grad(l2_objective(net, targets, weights)(xt).sum(), xt)
    contribution = np.sqrt(np.sum((x * g[0].cpu().numpy()) ** 2, axis=0))
    small = contribution < np.percentile(contribution, 30)
    out = img_preprocess(img, net.img_mean)
    zeroed = np.all(out == 0, axis=0)
    # ties at the threshold aside, exactly the small-contribution pixels are zeroed
    assert np.mean(zeroed != small) < 0.002
    np.testing.assert_allclose(out[:, ~zeroed], x[:, ~zeroed], atol=1e-3)


# --------------------------------------------------------------------------- loss lists

def test_loss_list_lengths(device):
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(26))
    np.random.seed(2)
    _, losses = icnn_gd.reconstruct_image(targets, net, iter_n=7, disp_every=0)
    assert losses.shape == (7,)
    counting = CountingEncoder(net)
    maxiter = 6
    _, losses = icnn_lbfgs.reconstruct_image(targets, counting, maxiter=maxiter, disp=0,
                                             device=device)
    assert losses.ndim == 1 and len(losses) == counting.graph_calls
    assert len(losses) > maxiter  # one per function evaluation
    assert np.all(np.isfinite(losses)) and losses.min() < losses[0]


def test_generator_loss_list_lengths(device):
    net = tiny_encoder(device, size=224)
    gen = random_generator(str(device))
    targets = true_targets(net, generator_image(gen, draw_latent(fc7_upper_bounds(),
                                                                np.random.default_rng(27)),
                                                net.img_mean))
    z0 = np.zeros(4096, np.float32)
    _, losses = icnn_dgn_gd.reconstruct_image(targets, net, gen, initial_gen_feat=z0, iter_n=5,
                                              disp_every=0)
    assert losses.shape == (5,)
    counting = CountingEncoder(net)
    maxiter = 4
    _, losses = icnn_dgn_lbfgs.reconstruct_image(targets, counting, gen, initial_gen_feat=z0,
                                                 maxiter=maxiter, disp=0, device=device)
    assert len(losses) == counting.graph_calls and len(losses) > maxiter


# --------------------------------------------------------------------------- progress lines

def test_gd_progress_lines_every_n(device, capsys):
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(28))
    np.random.seed(3)
    _, losses = icnn_gd.reconstruct_image(targets, net, iter_n=7, disp_every=3)
    lines = parse_lines(capsys.readouterr().out)
    assert [n for n, _ in lines] == [3, 6]
    for n, err in lines:
        # printed with %g (6 significant digits): at most 5e-6 relative from the rounding
        assert err[0] == pytest.approx(float(losses[n - 1]), rel=1e-5)
    icnn_gd.reconstruct_image(targets, net, iter_n=3, disp_every=0)
    assert capsys.readouterr().out == ""


def test_batch_progress_lines_list_every_image(device, capsys):
    net = tiny_encoder(device, size=SIZE)
    imgs = random_rgb(29, batch=2)
    targets = [true_targets(net, im) for im in imgs]
    _, losses = icnn_gd.reconstruct_image(targets, net, initial_image=random_rgb(30, batch=2),
                                          iter_n=2, disp_every=1)
    lines = parse_lines(capsys.readouterr().out)
    assert [n for n, _ in lines] == [1, 2]
    assert losses.shape == (2, 2)
    # printed with %g (6 significant digits): at most 5e-6 relative from the rounding
    np.testing.assert_allclose([err for _, err in lines], losses.T, rtol=1e-5)


def test_lbfgs_progress_lines_per_iteration(device, capsys):
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(31))
    np.random.seed(4)
    _, losses = icnn_lbfgs.reconstruct_image(targets, net, maxiter=5, disp=True)
    lines = parse_lines(capsys.readouterr().out)
    assert [n for n, _ in lines] == list(range(1, len(lines) + 1)) and 1 <= len(lines) <= 5
    for _, err in lines:  # the loss of an evaluation (the accepted point's)
        assert any(abs(err[0] - v) <= 1e-5 * abs(v) for v in losses), err
    icnn_lbfgs.reconstruct_image(targets, net, maxiter=4, disp=2)
    assert all(n % 2 == 0 for n, _ in parse_lines(capsys.readouterr().out))
    icnn_lbfgs.reconstruct_image(targets, net, maxiter=3, disp=False)
    assert capsys.readouterr().out == ""


def test_dgn_progress_lines(device, capsys):
    net = tiny_encoder(device, size=224)
    gen = random_generator(str(device))
    targets = true_targets(net, random_rgb(32, size=224))
    z0 = np.zeros(4096, np.float32)
    _, losses = icnn_dgn_gd.reconstruct_image(targets, net, gen, initial_gen_feat=z0, iter_n=4,
                                              disp_every=2)
    lines = parse_lines(capsys.readouterr().out)
    assert [n for n, _ in lines] == [2, 4]
    # printed with %g (6 significant digits): at most 5e-6 relative from the rounding
    assert lines[-1][1][0] == pytest.approx(float(losses[3]), rel=1e-5)
    icnn_dgn_lbfgs.reconstruct_image(targets, net, gen, initial_gen_feat=z0, maxiter=2, disp=True)
    assert [n for n, _ in parse_lines(capsys.readouterr().out)] in ([1], [1, 2])


# --------------------------------------------------------------------------- snapshot files

def test_icnn_gd_snapshots(device, tmp_path):
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(33))
    x0 = random_rgb(34)
    img, _ = icnn_gd.reconstruct_image(targets, net, initial_image=x0, iter_n=5, disp_every=0,
                                       save_intermediate=True, save_intermediate_every=2,
                                       save_intermediate_path=str(tmp_path / "a"),
                                       save_intermediate_ext="png")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["00002.png", "00004.png", "initial_img.png"]
    np.testing.assert_array_equal(read_rgb(tmp_path / "a" / "initial_img.png"),
                                  np.uint8(np.clip(x0, 0, 255)))
    img, _ = icnn_gd.reconstruct_image(targets, net, initial_image=x0, iter_n=3, disp_every=0,
                                       save_intermediate=True,
                                       save_intermediate_path=str(tmp_path / "b"))
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == ["00001.jpg", "00002.jpg", "00003.jpg", "initial_img.jpg"]  # the original's ext
    # the last snapshot is the returned image, min-max normalised (JPEG-compressed)
    assert_jpeg_of(tmp_path / "b" / "00003.jpg", minmax_uint8(img))


def test_icnn_gd_batch_snapshots_go_to_one_folder_per_image(device, tmp_path):
    net = tiny_encoder(device, size=SIZE)
    targets = [true_targets(net, im) for im in random_rgb(35, batch=2)]
    icnn_gd.reconstruct_image(targets, net, initial_image=random_rgb(36, batch=2), iter_n=2,
                              disp_every=0, save_intermediate=True, save_intermediate_path=str(tmp_path))
    for b in range(2):
        folder = tmp_path / f"image-{b:03d}"
        assert sorted(p.name for p in folder.iterdir()) == ["00001.jpg", "00002.jpg", "initial_img.jpg"]


def test_icnn_lbfgs_snapshots_per_evaluation_from_zero(device, tmp_path):
    net = tiny_encoder(device, size=SIZE)
    targets = true_targets(net, random_rgb(37))
    x0 = random_rgb(38)
    img, losses = icnn_lbfgs.reconstruct_image(targets, net, initial_image=x0, maxiter=3, disp=0,
                                               save_intermediate=True,
                                               save_intermediate_path=str(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{k:05d}.jpg" for k in range(len(losses))] + ["initial_img.png"]
    # evaluation 0 is the start image
    assert_jpeg_of(tmp_path / "00000.jpg", minmax_uint8(x0))
    np.testing.assert_array_equal(read_rgb(tmp_path / "initial_img.png"), np.uint8(x0))
    assert img.min() >= -1e-3 and img.max() <= 255 + 1e-3  # pixel box [0, 255]


@pytest.mark.parametrize("engine", ["icnn_dgn_gd", "icnn_dgn_lbfgs"])
def test_generator_engine_snapshots(engine, device, tmp_path):
    """The original's files: ``initial_gen_feat.mat`` (both), ``initial_img.jpg`` (GD only,
    the start not normalised), the numbered snapshots, and ``final_gen_feat.mat`` holding
    the returned z (variable ``final_gen_feat``)."""
    net = tiny_encoder(device, size=224)
    gen = random_generator(str(device))
    targets = true_targets(net, random_rgb(39, size=224))
    z0 = draw_latent(fc7_upper_bounds(), np.random.default_rng(40))
    if engine == "icnn_dgn_gd":
        img, losses, z = icnn_dgn_gd.reconstruct_image(
            targets, net, gen, initial_gen_feat=z0, iter_n=3, feat_upper_bound=fc7_upper_bounds(),
            disp_every=0, save_intermediate=True, save_intermediate_path=str(tmp_path),
            return_gen_feat=True)
        numbered = [f"{k:05d}.jpg" for k in range(1, 4)]
        starts = ["initial_gen_feat.mat", "initial_img.jpg"]
        last = "00003.jpg"
    else:
        img, losses, z = icnn_dgn_lbfgs.reconstruct_image(
            targets, net, gen, initial_gen_feat=z0, maxiter=2, disp=0, save_intermediate=True,
            save_intermediate_path=str(tmp_path), return_gen_feat=True)
        numbered = [f"{k:05d}.jpg" for k in range(len(losses))]
        starts = ["initial_gen_feat.mat"]
        last = None
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == numbered + ["final_gen_feat.mat"] + starts
    saved = scipy.io.loadmat(tmp_path / "initial_gen_feat.mat")["initial_gen_feat"].reshape(-1)
    np.testing.assert_allclose(saved, z0, rtol=1e-6)
    final = scipy.io.loadmat(tmp_path / "final_gen_feat.mat")["final_gen_feat"].reshape(-1)
    np.testing.assert_array_equal(final, z)
    start = generator_image(gen, z0, net.img_mean)
    if engine == "icnn_dgn_gd":
        assert_jpeg_of(tmp_path / "initial_img.jpg", np.uint8(np.clip(start, 0, 255)))  # not normalised
    else:  # evaluation 0 is z0
        assert_jpeg_of(tmp_path / numbered[0], minmax_uint8(start))
    if last is not None:  # the image of the last forward pass is the returned one
        assert_jpeg_of(tmp_path / last, minmax_uint8(img))


# --------------------------------------------------------------------------- DGN L-BFGS bounds

def test_icnn_dgn_lbfgs_starts_inside_bounds_and_returns_image_of_final_latent(device):
    net = tiny_encoder(device, size=224)
    gen = RecordingGenerator(random_generator(str(device)))
    upper = fc7_upper_bounds()
    targets = true_targets(net, generator_image(gen.gen, draw_latent(upper, np.random.default_rng(41)),
                                                net.img_mean))
    bounds = np.stack([np.zeros(4096), upper], axis=1)
    np.random.seed(5)  # N(0, 1) start: about half of it below the lower bound 0
    img, losses, z = icnn_dgn_lbfgs.reconstruct_image(targets, net, gen, gen_feat_bounds=bounds,
                                                      maxiter=5, disp=0, return_gen_feat=True)
    first = gen.seen[0].reshape(-1)
    assert np.all(first >= 0) and np.all(first <= upper)
    assert np.mean(first == 0) > 0.3  # the negative half was clipped onto the bound
    for seen in gen.seen:
        assert np.all(seen >= 0) and np.all(seen <= upper + 1e-5)
    assert np.all(z >= 0) and np.all(z <= upper + 1e-5)
    np.testing.assert_allclose(img, generator_image(gen.gen, z, net.img_mean), atol=1e-2)
    assert min(losses) < losses[0]


# --------------------------------------------------------------------------- batches

def test_icnn_dgn_gd_batch_equals_single_runs(device):
    """Per-image gradient normalisation, bounds (one row per image) and losses.

    The tolerance is looser than the pixel engine's 1e-5 (test_engine_gd.py): the float32
    gradient with respect to z is itself only good to ~5e-4 here (measured against a
    float64 run of the same nets: the generator's Jacobian cancels most of the image
    gradient), so batched and single runs, which round differently, agree to about that
    after a step. A small step keeps it from being amplified (at lr 2 a normalised step
    moves z by whole units)."""
    net = tiny_encoder(device, size=224)
    gen = random_generator(str(device))
    upper = fc7_upper_bounds()
    rng = np.random.default_rng(42)
    targets = [true_targets(net, generator_image(gen, draw_latent(upper, rng), net.img_mean))
               for _ in range(3)]
    z0 = draw_latent(upper, rng, 3)
    uppers = upper[None] * np.array([[1.0], [0.5], [1.5]], np.float32)
    opts = dict(iter_n=4, lr_start=0.05, lr_end=0.01, disp_every=0, return_gen_feat=True)
    img_b, loss_b, z_b = icnn_dgn_gd.reconstruct_image(targets, net, gen, initial_gen_feat=z0,
                                                       feat_upper_bound=uppers, **opts)
    assert img_b.shape == (3, 224, 224, 3) and loss_b.shape == (3, 4) and z_b.shape == (3, 4096)
    for b in range(3):
        img, loss, z = icnn_dgn_gd.reconstruct_image(targets[b], net, gen, initial_gen_feat=z0[b],
                                                     feat_upper_bound=uppers[b], **opts)
        np.testing.assert_allclose(loss_b[b], loss, rtol=1e-4)
        assert np.abs(z_b[b] - z).max() <= 1e-3 * np.abs(z).max()
        assert np.abs(img_b[b] - img).max() <= 1e-3 * np.abs(img).max()
        assert np.all(z_b[b] <= uppers[b] + 1e-6)
    # bounds per image: image 1 is clipped to its halved bound, image 0 is not
    assert np.any(z_b[1] == uppers[1]) and np.any(z_b[0] > uppers[1])


def test_icnn_lbfgs_batch_reconstructs_each_image_alone(device):
    net = tiny_encoder(device, size=SIZE)
    targets = [true_targets(net, im) for im in random_rgb(43, batch=2)]
    starts = random_rgb(44, batch=2)
    img_b, loss_b = icnn_lbfgs.reconstruct_image(targets, net, initial_image=starts, maxiter=4, disp=0)
    assert img_b.shape == (2, SIZE, SIZE, 3) and len(loss_b) == 2
    for b in range(2):
        img, loss = icnn_lbfgs.reconstruct_image(targets[b], net, initial_image=starts[b], maxiter=4,
                                                 disp=0)
        np.testing.assert_allclose(img_b[b], img, atol=1e-4)
        np.testing.assert_allclose(loss_b[b], loss, rtol=1e-6)


def test_default_snapshot_folder_is_created_in_the_working_directory(device, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = tiny_encoder(device, size=SIZE)
    icnn_gd.reconstruct_image(true_targets(net, random_rgb(45)), net, initial_image=random_rgb(46),
                              iter_n=1, disp_every=0, save_intermediate=True)
    (folder,) = list(tmp_path.iterdir())
    assert re.fullmatch(r"recon_img_gd_snapshots\d{8}T\d{6}", folder.name)  # the original's name
    assert sorted(p.name for p in folder.iterdir()) == ["00001.jpg", "initial_img.jpg"]
