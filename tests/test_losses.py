"""The feature-matching objective against a plain numpy reference of SPEC section 5.

The reference below is written from the SPEC formulas, independently of
:mod:`icnn_torch.recon.losses`:

- l2    ``sum(mask * d^2)``,               gradient ``2 d mask``        (d = f - f0)
- l1    ``sum(|mask * d|)``,               gradient ``sign(d) mask`` (the original's)
- inner ``-sum(f * f0 * mask)``,           gradient ``-f0 mask``
- gram  ``||G(F) - G(F0)||_F^2 / (4 N^2 M^2)`` with ``F = (f mask)`` as an N x M matrix
  (N channels, M = H W positions) and ``G(F) = F F^T``; gradient, the original's,
  ``((G(F) - G(F0)) f / (N^2 M^2)) mask`` with ``f`` unmasked (N x M);
- total ``sum_l w_l loss_l``, default ``w_l = 1 / L``.

The objective is built the way the engines build it (:func:`build_feature_loss`), so the
mask forms (3-D, 2-D spatial, 1-D fc, channel lists) are covered too. The gradient of the
total loss through a small net is checked against central finite differences in float64
(with the exact masked gradient, or with the original's under masks where it is the
loss's gradient). tests/test_original_loss.py covers the masked gradients in detail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _engine_helpers import tiny_encoder
from icnn_torch.recon.losses import LOSS_TYPES, weighted_l2
from icnn_torch.recon.objective import FeatureLoss, build_feature_loss
from icnn_torch.recon.transforms import Schedule

LOSSES = ["l2", "l1", "inner", "gram"]
SIZE = 12  # tiny encoder input: c1 (8, 12, 12), c2 (8, 6, 6), fc (16,)
SHAPES = {"c1": (8, SIZE, SIZE), "c2": (8, SIZE // 2, SIZE // 2), "fc": (16,)}


# --------------------------------------------------------------------------- numpy reference

def ref_loss_and_grad(loss_type: str, f: np.ndarray, f0: np.ndarray, mask: np.ndarray):
    """Loss and d loss / d f of one image's layer, float64, from the SPEC formulas."""
    f, f0, mask = (np.asarray(a, dtype=np.float64) for a in (f, f0, mask))
    d = f - f0
    if loss_type == "l2":
        return np.sum(mask * d ** 2), 2 * d * mask
    if loss_type == "l1":
        return np.sum(np.abs(mask * d)), np.sign(d) * mask
    if loss_type == "inner":
        return -np.sum(f * f0 * mask), -f0 * mask
    if loss_type == "gram":
        n = f.shape[0]
        m = int(np.prod(f.shape[1:]))
        F = (f * mask).reshape(n, m)
        F0 = (f0 * mask).reshape(n, m)
        diff = F @ F.T - F0 @ F0.T
        loss = np.sum(diff ** 2) / (4.0 * n ** 2 * m ** 2)
        grad = (diff @ f.reshape(n, m) / (n ** 2 * m ** 2)).reshape(f.shape) * mask
        return loss, grad
    raise AssertionError(loss_type)


def expected_masks(rng) -> tuple[dict, dict, dict]:
    """(mask argument, channel argument, the full masks they mean), built by hand."""
    c1_mask3d = (rng.uniform(size=SHAPES["c1"]) > 0.3).astype(np.float32)
    c2_spatial = np.zeros((4, 4), np.float32)  # 2-D of another size: centred on 6x6
    c2_spatial[1:3, :] = 1.0
    c2_full = np.ones(SHAPES["c2"], np.float32)
    c2_full[:, 1:5, 1:5] = c2_spatial  # centred block of the 4x4 mask, ones around it
    fc_mask = (np.arange(16) % 3 != 0).astype(np.float32)
    masks = {"c1": c1_mask3d, "c2": c2_spatial, "fc": fc_mask}
    full = {"c1": c1_mask3d, "c2": c2_full, "fc": fc_mask}
    return masks, {}, full


def channel_masks() -> tuple[dict, dict]:
    channel = {"c1": [0, 3, 5], "c2": [7]}
    full = {"c1": np.zeros(SHAPES["c1"], np.float32), "c2": np.zeros(SHAPES["c2"], np.float32),
            "fc": np.ones(SHAPES["fc"], np.float32)}
    full["c1"][[0, 3, 5]] = 1.0
    full["c2"][7] = 1.0
    return channel, full


def random_feats(rng, batch: int | None = None) -> dict:
    lead = () if batch is None else (batch,)
    return {n: rng.normal(0, 2, lead + s).astype(np.float32) for n, s in SHAPES.items()}


def evaluate(objective: FeatureLoss, feats: dict, device) -> tuple[np.ndarray, dict]:
    """Per-image loss and its gradient w.r.t. the features (autograd)."""
    leaves = {n: torch.tensor(v, device=device).requires_grad_(True) for n, v in feats.items()}
    loss = objective(leaves)
    grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
    return loss.detach().cpu().numpy(), {n: g.cpu().numpy() for n, g in zip(leaves, grads)}


def assert_close(actual, expected, what: str, rtol: float = 2e-5) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(np.abs(expected).max(), 1e-12)
    err = np.abs(actual - expected).max() / scale
    assert err <= rtol, f"{what}: max error {err:.3g} of the largest value {scale:.3g}"


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("loss_type", LOSSES)
@pytest.mark.parametrize("mask_form", ["none", "masks", "channels"])
def test_layer_losses_and_gradients_match_numpy_reference(loss_type, mask_form, device):
    rng = np.random.default_rng(LOSSES.index(loss_type))
    net = tiny_encoder(device, size=SIZE)
    target = random_feats(rng)
    feats = random_feats(rng)
    if mask_form == "masks":
        mask_arg, channel_arg, full = expected_masks(rng)
    elif mask_form == "channels":
        mask_arg = {}
        channel_arg, full = channel_masks()
    else:
        mask_arg, channel_arg = {}, {}
        full = {n: np.ones(s, np.float32) for n, s in SHAPES.items()}
    layers = ["c1", "c2"] if loss_type == "gram" else ["c1", "c2", "fc"]  # gram: conv only
    weight = {"c1": 0.2, "c2": 1.5, "fc": 0.01}
    objective, batched = build_feature_loss(
        {n: target[n] for n in layers}, net, device, layer_weight={n: weight[n] for n in layers},
        mask={n: m for n, m in mask_arg.items() if n in layers},
        channel={n: c for n, c in channel_arg.items() if n in layers}, loss_type=loss_type)
    assert not batched and objective.layers == layers

    loss, grads = evaluate(objective, {n: feats[n][None] for n in layers}, device)

    ref_total = 0.0
    for name in layers:
        ref_loss, ref_grad = ref_loss_and_grad(loss_type, feats[name], target[name], full[name])
        ref_total += weight[name] * ref_loss
        assert_close(grads[name][0], weight[name] * ref_grad, f"{loss_type} gradient of {name}")
    assert loss.shape == (1,)
    assert_close(loss[0], ref_total, f"{loss_type} total loss")


@pytest.mark.parametrize("loss_type", LOSSES)
def test_default_weights_are_equal_and_sum_to_one(loss_type, device):
    rng = np.random.default_rng(10)
    net = tiny_encoder(device, size=SIZE)
    layers = ["c1", "c2"]
    target, feats = random_feats(rng), random_feats(rng)
    objective, _ = build_feature_loss({n: target[n] for n in layers}, net, device,
                                      loss_type=loss_type)
    loss, _ = evaluate(objective, {n: feats[n][None] for n in layers}, device)
    ones = {n: np.ones(SHAPES[n]) for n in layers}
    expected = sum(ref_loss_and_grad(loss_type, feats[n], target[n], ones[n])[0] for n in layers) / 2
    assert_close(loss[0], expected, f"{loss_type} loss with default weights")


def test_batch_gives_one_loss_per_image_with_per_image_weights(device):
    rng = np.random.default_rng(11)
    net = tiny_encoder(device, size=SIZE)
    batch = 3
    target, feats = random_feats(rng, batch), random_feats(rng, batch)
    w_c1 = np.array([0.1, 1.0, 3.0])
    objective, batched = build_feature_loss(target, net, device,
                                            layer_weight={"c1": w_c1, "c2": 0.5, "fc": 2.0})
    assert batched and objective.batch_size == batch
    loss, grads = evaluate(objective, feats, device)
    for b in range(batch):
        expected = 0.0
        for name, w in (("c1", w_c1[b]), ("c2", 0.5), ("fc", 2.0)):
            ref_loss, ref_grad = ref_loss_and_grad("l2", feats[name][b], target[name][b],
                                                   np.ones(SHAPES[name]))
            expected += w * ref_loss
            assert_close(grads[name][b], w * ref_grad, f"gradient of {name}, image {b}")
        assert_close(loss[b], expected, f"loss of image {b}")
    # select() gives the objective of one image alone
    one = objective.select(1)
    loss1, _ = evaluate(one, {n: v[1:2] for n, v in feats.items()}, device)
    assert_close(loss1[0], loss[1], "selected image's loss")


def test_masks_with_a_batch_axis_apply_per_image(device):
    rng = np.random.default_rng(13)
    net = tiny_encoder(device, size=SIZE)
    target, feats = random_feats(rng, 2), random_feats(rng, 2)
    masks = (rng.uniform(size=(2,) + SHAPES["c1"]) > 0.5).astype(np.float32)
    objective, _ = build_feature_loss({"c1": target["c1"]}, net, device, mask={"c1": masks})
    loss, grads = evaluate(objective, {"c1": feats["c1"]}, device)
    for b in range(2):
        ref_loss, ref_grad = ref_loss_and_grad("l2", feats["c1"][b], target["c1"][b], masks[b])
        assert_close(loss[b], ref_loss, f"loss of image {b}")
        assert_close(grads["c1"][b], ref_grad, f"gradient of image {b}")


def test_fc_targets_stored_as_row_or_column_are_accepted(device):
    rng = np.random.default_rng(12)
    net = tiny_encoder(device, size=SIZE)
    fc = rng.normal(size=16).astype(np.float32)
    feats = {"fc": rng.normal(size=(1, 16)).astype(np.float32)}
    losses = []
    for form in (fc, fc.reshape(1, 16), fc.reshape(16, 1)):
        objective, batched = build_feature_loss({"fc": form}, net, device)
        assert not batched
        losses.append(evaluate(objective, feats, device)[0][0])
    expected = ref_loss_and_grad("l2", feats["fc"][0], fc, np.ones(16))[0]
    for value in losses:
        assert_close(value, expected, "fc loss")


@pytest.mark.parametrize("exact", [False, True], ids=["original", "exact"])
@pytest.mark.parametrize("loss_type", LOSSES)
def test_gradient_of_total_loss_through_net_matches_finite_differences(loss_type, exact, device):
    """float64 net, masks and unequal weights; central differences on every input value.

    ``exact_masked_gradient=True`` with a mask of single units; the original's gradients
    (the default) with a 0/1 mask of whole positions, where they are the loss's gradient.
    """
    size = 6
    net32 = tiny_encoder(device, size=size, activation=torch.nn.Tanh)
    net64 = tiny_encoder(device, size=size, activation=torch.nn.Tanh, dtype=torch.float64)
    rng = np.random.default_rng(20 + LOSSES.index(loss_type))
    layers = ["c1", "c2"] if loss_type == "gram" else ["c1", "c2", "fc"]
    x_target = torch.tensor(rng.uniform(-100, 100, (1, 3, size, size)), device=device)
    with torch.no_grad():
        target = {n: v[0].cpu().numpy() for n, v in net64(x_target, layers).items()}
    # perturb the targets so no loss sits at its optimum (l1's kink at d = 0)
    target = {n: t + rng.normal(0, 0.5, t.shape) for n, t in target.items()}
    units = rng.uniform(size=(8, size, size)) > 0.2
    mask = {"c1": (units if exact else units[0]).astype(np.float32)}  # 3-D, or 2-D positions
    objective32, _ = build_feature_loss(target, net32, device, mask=mask,
                                        channel={"c2": [1, 2, 6]},
                                        layer_weight={"c1": 0.7, "c2": 1.3, "fc": 0.4},
                                        loss_type=loss_type, exact_masked_gradient=exact)
    objective = FeatureLoss(objective32.layers,
                            {n: t.double() for n, t in objective32.targets.items()},
                            {n: None if m is None else m.double() for n, m in objective32.masks.items()},
                            objective32.weights.double(), loss_type, exact)

    def total(x: torch.Tensor) -> torch.Tensor:
        return objective(net64(x, layers)).sum()

    x = torch.tensor(rng.uniform(-100, 100, (1, 3, size, size)), device=device, requires_grad=True)
    (grad,) = torch.autograd.grad(total(x), x)
    eps = 1e-4
    numeric = torch.zeros_like(x)
    flat = x.detach().clone().view(-1)
    with torch.no_grad():
        for i in range(flat.numel()):
            keep = flat[i].item()
            flat[i] = keep + eps
            up = total(flat.view_as(x))
            flat[i] = keep - eps
            down = total(flat.view_as(x))
            flat[i] = keep
            numeric.view(-1)[i] = (up - down) / (2 * eps)
    assert_close(grad.cpu().numpy(), numeric.cpu().numpy(), f"{loss_type} input gradient",
                 rtol=1e-6)
    assert float(grad.abs().max()) > 0


def test_gram_loss_rejects_fc_features(device):
    net = tiny_encoder(device, size=SIZE)
    objective, _ = build_feature_loss({"fc": np.ones(16, np.float32)}, net, device, loss_type="gram")
    with pytest.raises(ValueError, match="gram"):
        objective({"fc": torch.ones(1, 16, device=device)})


def test_unknown_loss_type_is_rejected(device):
    net = tiny_encoder(device, size=SIZE)
    with pytest.raises(ValueError, match="l2"):
        build_feature_loss({"fc": np.ones(16, np.float32)}, net, device, loss_type="l3")
    assert set(LOSS_TYPES) == set(LOSSES)


def test_linear_schedule_never_reaches_its_end_value():
    n = 200
    lr = Schedule(2.0, 1e-10, n)
    values = np.array([lr(t) for t in range(n)])
    expected = 2.0 + np.arange(n) * (1e-10 - 2.0) / n
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert values[0] == 2.0
    assert values[-1] == pytest.approx(2.0 / n, rel=1e-6)  # one step short of the end
    assert values.min() > 1e-10


def test_fused_l2_backward_matches_autograd_and_refuses_a_second_backward(device):
    """The hand-written l2 backward equals autograd's; its in-place gradient is used once."""
    rng = np.random.default_rng(30)
    feat = torch.tensor(rng.normal(size=(2, 8, 5, 5)), dtype=torch.float32, device=device)
    target = torch.tensor(rng.normal(size=(2, 8, 5, 5)), dtype=torch.float32, device=device)
    mask = torch.tensor(rng.uniform(size=(1, 8, 5, 5)) > 0.4, dtype=torch.float32, device=device)
    weight = torch.tensor([0.3, 2.0], device=device)
    upstream = torch.tensor([1.5, -0.5], device=device)
    for m in (None, mask):
        leaf = feat.clone().requires_grad_(True)
        (fused,) = torch.autograd.grad(weighted_l2(leaf, target, m, weight), leaf, upstream)
        leaf2 = feat.clone().requires_grad_(True)
        plain = weight * LOSS_TYPES["l2"](leaf2, target, m)
        (ref,) = torch.autograd.grad(plain, leaf2, upstream)
        torch.testing.assert_close(fused, ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(weighted_l2(feat, target, m, weight), plain.detach())
    leaf = feat.clone().requires_grad_(True)
    loss = weighted_l2(leaf, target, None, weight).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


def test_channels_last_features_give_the_same_loss_and_gradient(device):
    """A channels-last encoder's features: targets follow their layout, results unchanged."""
    rng = np.random.default_rng(31)
    net = tiny_encoder(device, size=SIZE)
    target, feats = random_feats(rng), random_feats(rng)
    mask = {"c1": (rng.uniform(size=SHAPES["c1"]) > 0.5).astype(np.float32)}
    results = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        objective, _ = build_feature_loss(target, net, device, mask=mask)
        leaves = {n: torch.tensor(v[None], device=device) for n, v in feats.items()}
        leaves = {n: (v.contiguous(memory_format=fmt) if v.dim() == 4 else v).requires_grad_(True)
                  for n, v in leaves.items()}
        loss = objective(leaves)
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        results.append((loss.detach(), grads))
        if fmt is torch.channels_last:
            for name in ("c1", "c2"):
                assert objective.targets[name].is_contiguous(memory_format=torch.channels_last)
                assert grads[list(leaves).index(name)].is_contiguous(memory_format=torch.channels_last)
            assert objective.masks["c1"].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=0)
    for g_cl, g in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(g_cl, g, rtol=1e-6, atol=1e-6)
