"""The original ``icnn.loss`` module (:mod:`icnn_torch.loss`), and its masked gradients in
the engines' objective.

The reference below is written here from the original's formulas (KamitaniLab/icnn,
``icnn/loss.py`` at commit 455e46f, unchanged since), with ``einsum`` instead of matrix
products so that it shares no arithmetic with the code under test (d = f - f0; for the
Gram loss N channels, M = H W positions, f as an N x M matrix):

- ``L2_loss``    loss ``sum(d d mask)``,          gradient ``2 d mask``
- ``L1_loss``    loss ``sum(|d mask|)``,          gradient ``sign(d) mask``
- ``inner_loss`` loss ``-sum(f f0 mask)``,        gradient ``-f0 mask``
- ``gram``       ``(f mask) (f mask)^T``
- ``gram_loss``  loss ``||gram(f) - gram(f0)||^2 / (4 N^2 M^2)``, gradient
  ``((gram(f) - gram(f0)) f) mask / (N^2 M^2)``: the product with the *unmasked* f, then
  the mask. For a binary mask of whole channels or of whole positions this is the
  gradient of the loss; for other masks it is not (the option ``exact_masked_gradient``
  gives the gradient of the loss).

Tolerances: float64 throughout; each value is a sum of at most 2 x 288 products (or a Gram
entry of 288 terms, squared and summed over 64 entries), so the rounding of either
computation is below 1e3 x 2^-53 ~ 1e-13 of the largest term. Errors are measured against
the largest value of the result, with 1e-10 leaving room for the cancellation in
``gram(f) - gram(f0)``.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from _engine_helpers import tiny_encoder
from icnn_torch.recon.objective import FeatureLoss, build_feature_loss

RTOL = 1e-10  # float64; see the module docstring
SIZE = 12  # tiny encoder input: c1 (8, 12, 12), c2 (8, 6, 6), fc (16,)
SHAPES = {"c1": (8, SIZE, SIZE), "c2": (8, SIZE // 2, SIZE // 2), "fc": (16,)}


# --------------------------------------------------------------------------- numpy reference

def ref_original(loss_type: str, f, f0, mask=1.0):
    """The original's loss and gradient for one layer of one image, float64."""
    f, f0, mask = (np.asarray(a, dtype=np.float64) for a in (f, f0, mask))
    d = f - f0
    if loss_type == "l2":
        return np.einsum("i,i,i->", d.ravel(), d.ravel(), np.broadcast_to(mask, d.shape).ravel()), 2 * d * mask
    if loss_type == "l1":
        return np.abs(d * mask).sum(), np.sign(d) * mask
    if loss_type == "inner":
        return -np.einsum("i,i,i->", f.ravel(), f0.ravel(), np.broadcast_to(mask, f.shape).ravel()), -f0 * mask
    if loss_type == "gram":
        n, m = f.shape[0], f.shape[1] * f.shape[2]
        fm = (f * mask).reshape(n, m)
        f0m = (f0 * mask).reshape(n, m)
        diff = np.einsum("ip,jp->ij", fm, fm) - np.einsum("ip,jp->ij", f0m, f0m)
        loss = np.einsum("ij,ij->", diff, diff) / (4.0 * n ** 2 * m ** 2)
        grad = np.einsum("ij,jp->ip", diff, f.reshape(n, m)).reshape(f.shape) * mask / (n ** 2 * m ** 2)
        return loss, grad
    raise AssertionError(loss_type)


def assert_close(actual, expected, what: str, rtol: float = RTOL) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(expected).max(), 1e-300)
    err = np.abs(actual - expected).max() / scale
    assert err <= rtol, f"{what}: max error {err:.3g} of the largest value {scale:.3g}"


def mask_of(form: str, shape: tuple, rng) -> np.ndarray | float:
    """A full mask of ``shape`` (C, H, W) of one form (or the scalar default 1.)."""
    if form == "default":
        return 1.0
    if form == "channels":  # whole channels, as create_feature_masks makes of a channel list
        mask = np.zeros(shape)
        mask[[0, 3, 5]] = 1.0
        return mask
    if form == "positions":  # whole positions, as a 2-D spatial mask
        return np.broadcast_to(rng.uniform(size=shape[1:]) > 0.4, shape).astype(np.float64)
    if form == "units":  # single units: neither whole channels nor whole positions
        return (rng.uniform(size=shape) > 0.4).astype(np.float64)
    if form == "graded":  # non-binary weights of the units
        return rng.uniform(0.0, 2.0, shape)
    if form == "signed":
        return rng.uniform(-1.0, 1.0, shape)
    raise AssertionError(form)


# --------------------------------------------------------------------------- icnn_torch.loss

ORIGINAL_NAMES = {  # name -> parameters (name, default) of the original's functions
    "L2_loss": [("feat", None), ("feat0", None), ("mask", 1.0)],
    "L1_loss": [("feat", None), ("feat0", None), ("mask", 1.0)],
    "inner_loss": [("feat", None), ("feat0", None), ("mask", 1.0)],
    "gram": [("feat", None), ("mask", 1.0)],
    "gram_loss": [("feat", None), ("feat0", None), ("mask", 1.0)],
    "switch_loss_fun": [("loss_type", None)],
}


def test_loss_module_has_the_originals_names_and_signatures():
    from icnn_torch import loss

    for name, expected in ORIGINAL_NAMES.items():
        params = list(inspect.signature(getattr(loss, name)).parameters.values())
        assert [p.name for p in params] == [n for n, _ in expected], name
        for p, (_, default) in zip(params, expected):
            if default is None:
                assert p.default is inspect.Parameter.empty, (name, p.name)
            else:
                assert p.default == default and type(p.default) is float, (name, p.name)


def test_switch_loss_fun_gives_the_originals_functions_and_rejects_others():
    from icnn_torch.loss import L1_loss, L2_loss, gram_loss, inner_loss, switch_loss_fun

    assert switch_loss_fun("l2") is L2_loss
    assert switch_loss_fun("l1") is L1_loss
    assert switch_loss_fun("inner") is inner_loss
    assert switch_loss_fun("gram") is gram_loss
    for bad in ("L2", "l3", ""):
        with pytest.raises(ValueError, match="unknown loss function type"):
            switch_loss_fun(bad)


@pytest.mark.parametrize("mask_form", ["default", "channels", "positions", "units", "graded", "signed"])
@pytest.mark.parametrize("loss_type", ["l2", "l1", "inner", "gram"])
def test_loss_functions_match_the_originals_formulas(loss_type, mask_form):
    from icnn_torch.loss import switch_loss_fun

    rng = np.random.default_rng(["l2", "l1", "inner", "gram"].index(loss_type))
    shape = SHAPES["c2"]
    f, f0 = rng.normal(0, 2, shape), rng.normal(0, 2, shape)
    mask = mask_of(mask_form, shape, rng)
    fn = switch_loss_fun(loss_type)
    loss, grad = fn(f, f0) if mask_form == "default" else fn(f, f0, mask)
    ref_loss, ref_grad = ref_original(loss_type, f, f0, mask)
    assert np.ndim(loss) == 0 and isinstance(grad, np.ndarray)
    assert_close(loss, ref_loss, f"{loss_type} loss")
    assert_close(grad, ref_grad, f"{loss_type} gradient")


@pytest.mark.parametrize("loss_type", ["l2", "l1", "inner"])
def test_fc_features_are_taken_as_they_are(loss_type):
    from icnn_torch.loss import switch_loss_fun

    rng = np.random.default_rng(5)
    f, f0 = rng.normal(size=16), rng.normal(size=16)
    mask = (np.arange(16) % 3 != 0).astype(np.float64)
    loss, grad = switch_loss_fun(loss_type)(f, f0, mask)
    ref_loss, ref_grad = ref_original(loss_type, f, f0, mask)
    assert_close(loss, ref_loss, f"{loss_type} loss")
    assert_close(grad, ref_grad, f"{loss_type} gradient")


def test_gram_is_the_masked_channel_gram_matrix():
    from icnn_torch.loss import gram

    rng = np.random.default_rng(6)
    f = rng.normal(size=SHAPES["c2"])
    mask = mask_of("units", SHAPES["c2"], rng)
    fm = (f * mask).reshape(8, -1)
    assert_close(gram(f, mask), np.einsum("ip,jp->ij", fm, fm), "gram")
    assert_close(gram(f), np.einsum("ip,jp->ij", f.reshape(8, -1), f.reshape(8, -1)), "gram")


@pytest.mark.parametrize("loss_type", ["l2", "l1", "inner", "gram"])
def test_dtypes_follow_numpy_as_in_the_original(loss_type):
    """The original computed on Caffe's float32 blobs: float32 in, float32 out; a float64
    target promotes as numpy does. The inputs are left unchanged."""
    from icnn_torch.loss import switch_loss_fun

    rng = np.random.default_rng(7)
    f = rng.normal(size=SHAPES["c2"]).astype(np.float32)
    f0 = rng.normal(size=SHAPES["c2"]).astype(np.float32)
    mask = (rng.uniform(size=SHAPES["c2"]) > 0.5).astype(np.float32)
    keep = f.copy(), f0.copy(), mask.copy()
    fn = switch_loss_fun(loss_type)
    for args in ((f, f0), (f, f0, mask)):
        loss, grad = fn(*args)
        assert loss.dtype == np.float32 and grad.dtype == np.float32 and grad.shape == f.shape
    loss, grad = fn(f, f0.astype(np.float64), mask)
    assert grad.dtype == np.float64
    for a, b in zip((f, f0, mask), keep):
        np.testing.assert_array_equal(a, b)


def test_gram_loss_names_the_shape_it_needs():
    from icnn_torch.loss import gram_loss

    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        gram_loss(np.ones(16), np.ones(16))


# --------------------------------------------------------------------------- engines' objective

def objective_float64(loss_type: str, target: dict, mask_form: str, rng, device="cpu",
                      **options) -> tuple:
    """The engines' objective of layers c1 and c2 (built as the engines build it), moved to
    float64, and the full masks it should use."""
    net = tiny_encoder(device, size=SIZE)
    layers = ["c1", "c2"]
    if mask_form == "channels":  # the original's ``channel`` argument
        channel = {"c1": np.array([0, 3, 5]), "c2": np.array([7])}
        full = {n: np.zeros(SHAPES[n]) for n in layers}
        full["c1"][[0, 3, 5]] = 1.0
        full["c2"][7] = 1.0
        mask = None
    else:
        channel = None
        full = {n: mask_of(mask_form, SHAPES[n], rng) for n in layers}
        mask = {n: np.asarray(m, np.float32) for n, m in full.items()}
        full = {n: np.asarray(m, np.float32).astype(np.float64) for n, m in mask.items()}
    weight = {"c1": 0.25, "c2": 1.75}  # exact in float32, as the engines keep weights
    objective, _ = build_feature_loss({n: target[n] for n in layers}, net, torch.device(device),
                                      layer_weight=weight, channel=channel, mask=mask,
                                      loss_type=loss_type, **options)
    objective = dataclasses.replace(
        objective, targets={n: t.double() for n, t in objective.targets.items()},
        masks={n: None if m is None else m.double() for n, m in objective.masks.items()},
        weights=objective.weights.double())
    return objective, full, weight


def layer_gradients(objective: FeatureLoss, feats: dict) -> tuple[float, dict]:
    device = objective.weights.device
    leaves = {n: torch.tensor(feats[n][None], device=device).requires_grad_(True)
              for n in objective.layers}
    loss = objective(leaves)
    grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
    return float(loss[0].detach()), {n: g[0].cpu().numpy() for n, g in zip(leaves, grads)}


def random_pair(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    target = {n: rng.normal(0, 2, s).astype(np.float32) for n, s in SHAPES.items()}
    feats = {n: rng.normal(0, 2, s) for n, s in SHAPES.items()}
    return target, feats


@pytest.mark.parametrize("mask_form", ["channels", "positions", "units", "graded", "signed"])
@pytest.mark.parametrize("loss_type", ["l1", "gram"])
def test_engine_layer_gradients_under_masks_are_the_originals(loss_type, mask_form, device):
    """Per layer, the gradient the engines back-propagate is the original's
    ``layer_weight * grad`` (``sign(d) mask``; ``(G - G0) f`` on the unmasked f, then the
    mask), and the loss its ``sum(layer_weight * loss)``."""
    target, feats = random_pair(40 + ["l1", "gram"].index(loss_type))
    objective, full, weight = objective_float64(loss_type, target, mask_form,
                                                np.random.default_rng(41), device)
    loss, grads = layer_gradients(objective, feats)
    ref_total = 0.0
    for name in objective.layers:
        ref_loss, ref_grad = ref_original(loss_type, feats[name], target[name], full[name])
        ref_total += weight[name] * ref_loss
        assert_close(grads[name], weight[name] * ref_grad, f"{loss_type} gradient of {name}")
    assert_close(loss, ref_total, f"{loss_type} loss")


def central_differences(objective: FeatureLoss, feats: dict, name: str, eps: float = 1e-6) -> np.ndarray:
    """d loss / d feats[name] by central differences (float64)."""
    base = {n: torch.tensor(v[None]) for n, v in feats.items() if n in objective.layers}
    flat = base[name].view(-1)
    out = np.zeros(flat.numel())
    for i in range(flat.numel()):
        keep = flat[i].item()
        flat[i] = keep + eps
        up = float(objective(base)[0])
        flat[i] = keep - eps
        down = float(objective(base)[0])
        flat[i] = keep
        out[i] = (up - down) / (2 * eps)
    return out.reshape(feats[name].shape)


@pytest.mark.parametrize("loss_type,mask_form", [("gram", "units"), ("gram", "graded"),
                                                 ("gram", "signed"), ("l1", "signed")])
def test_exact_masked_gradient_is_the_gradient_of_the_masked_loss(loss_type, mask_form):
    """``exact_masked_gradient=True``: the gradient of the loss the engines report and
    minimise (central differences; error O(eps^2 f''') ~ 1e-9 of the largest value, the
    cube terms of the Gram loss being O(1)); the original's formula is not, for these masks."""
    target, feats = random_pair(50)
    exact, _, _ = objective_float64(loss_type, target, mask_form, np.random.default_rng(51),
                                    exact_masked_gradient=True)
    original, _, _ = objective_float64(loss_type, target, mask_form, np.random.default_rng(51))
    loss_exact, grads_exact = layer_gradients(exact, feats)
    loss_original, grads_original = layer_gradients(original, feats)
    assert loss_exact == loss_original  # the same loss, only its gradient differs
    numeric = central_differences(exact, feats, "c2")
    assert_close(grads_exact["c2"], numeric, f"{loss_type} exact gradient", rtol=1e-7)
    err = np.abs(grads_original["c2"] - numeric).max() / np.abs(numeric).max()
    assert err > 1e-3, f"the original's {loss_type} gradient equals the loss's here ({err:.3g})"


@pytest.mark.parametrize("loss_type", ["l2", "l1", "inner", "gram"])
def test_without_masks_the_option_changes_nothing(loss_type, device):
    """No mask: one computation whatever ``exact_masked_gradient`` says (float32, bit for bit)."""
    target, feats = random_pair(60)
    net = tiny_encoder(device, size=SIZE)
    layers = ["c1", "c2"] if loss_type == "gram" else ["c1", "c2", "fc"]
    results = []
    for exact in (False, True):
        objective, _ = build_feature_loss({n: target[n] for n in layers}, net, device,
                                          loss_type=loss_type, exact_masked_gradient=exact)
        assert objective.exact_masked_gradient is exact
        assert all(m is None for m in objective.masks.values())
        leaves = {n: torch.tensor(feats[n][None], dtype=torch.float32,
                                  device=device).requires_grad_(True) for n in layers}
        loss = objective(leaves)
        results.append((loss.detach(), torch.autograd.grad(loss.sum(), list(leaves.values()))))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.equal(a, b)


def test_select_keeps_the_option():
    target, _ = random_pair(70)
    net = tiny_encoder("cpu", size=SIZE)
    for exact in (False, True):
        objective, _ = build_feature_loss({"c1": target["c1"]}, net, torch.device("cpu"),
                                          exact_masked_gradient=exact)
        assert objective.select(0).exact_masked_gradient is exact
