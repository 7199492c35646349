"""compose(): every composable pair gradchecks; fused paths equal the generic chain rule."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import gradkit as gk
from gradkit.check import random_target

PAIRS = [
    (a, name)
    for a, name in itertools.product(gk.activations.names(), gk.losses.names())
    if gk.activations.get(a).output_range[0] >= gk.losses.get(name).input_domain[0]
    and gk.activations.get(a).output_range[1] <= gk.losses.get(name).input_domain[1]
]

FUSED_PAIRS = [("softmax", "cross_entropy"), ("softmax", "kl_div"), ("log_softmax", "nll"), ("sigmoid", "bce")]


def test_every_activation_meets_at_least_four_losses():
    for a in gk.activations.names():
        assert sum(1 for p in PAIRS if p[0] == a) >= 4, a


@pytest.mark.parametrize("act_name,loss_name", PAIRS, ids=lambda p: str(p))
@pytest.mark.parametrize("shape,axis", [((5,), -1), ((3, 4), -1), ((4, 3), 0), ((2, 3, 4), -1)], ids=str)
def test_every_pair_gradchecks(act_name, loss_name, shape, axis):
    rng = np.random.default_rng(zlib.crc32(f"{act_name}-{loss_name}-{shape}".encode()))
    act = gk.activations.get(act_name, axis=axis)
    loss_kwargs = {"axis": axis} if isinstance(gk.losses.get(loss_name), gk.losses.ClassLoss) else {}
    for reduction, labels in [("mean", True), ("sum", False), ("none", False)]:
        loss = gk.losses.get(loss_name, reduction=reduction, **loss_kwargs)
        head = gk.compose(act, loss)
        z = rng.uniform(-2.5, 2.5, shape)
        z = np.where(np.abs(z) < 1e-3, 0.1, z)  # away from the kinks of relu & co
        target = random_target(loss, shape, rng, labels=labels)
        if act.stochastic:  # one Gumbel sample, held fixed
            act(z)
            with act.frozen():
                rep = gk.gradcheck(head, z, target=target, rng=1)
        else:
            rep = gk.gradcheck(head, z, target=target, rng=1)
        assert rep.ok, f"{reduction}\n{rep}"


def _options(loss_name, shape):
    if loss_name == "bce":  # elementwise weights broadcast like arrays: along the last axis
        return [{}, {"weight": np.linspace(0.5, 3.0, shape[-1])}]
    return [
        {},
        {"weight": np.array([0.5, 2.0, 1.0, 3.0])},
        {"label_smoothing": 0.2},
        {"ignore_index": 1},
        {"weight": np.array([1.0, 0.0, 2.0, 0.5]), "label_smoothing": 0.1, "ignore_index": 3},
    ]


@pytest.mark.parametrize(
    "act_name,loss_name,target_kind",
    [(a, loss, kind) for a, loss in FUSED_PAIRS for kind in ("labels", "soft") if not (loss == "bce" and kind == "labels")],
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape,axis", [((4,), -1), ((5, 4), -1), ((4, 5), 0), ((2, 3, 4), -1)], ids=str)
def test_fused_equals_generic(act_name, loss_name, target_kind, reduction, shape, axis):
    rng = np.random.default_rng(42)
    for opts in _options(loss_name, shape):
        if loss_name != "bce":
            opts = {**opts, "axis": axis}
        act = gk.activations.get(act_name, axis=axis, **({"temperature": 0.7} if act_name != "sigmoid" else {}))
        loss = gk.losses.get(loss_name, reduction=reduction, **opts)
        fused, generic = gk.compose(act, loss), gk.compose(act, loss, fused=False)
        assert fused.fused and not generic.fused
        z = rng.standard_normal(shape) * 2
        target = random_target(loss, shape, rng, labels=target_kind == "labels")
        if "ignore_index" in opts and target_kind == "labels":
            target = np.where(rng.random(target.shape) < 0.3, opts["ignore_index"], target)
        lf, gf = fused.value_and_grad(z, target)
        lg, gg = generic.value_and_grad(z, target)
        np.testing.assert_allclose(lf, lg, rtol=1e-10, atol=1e-14, err_msg=str(opts))
        np.testing.assert_allclose(gf, gg, rtol=1e-10, atol=1e-14, err_msg=str(opts))
        g = rng.standard_normal(np.shape(lf))
        np.testing.assert_allclose(fused.vjp(z, target, g), generic.vjp(z, target, g), rtol=1e-10, atol=1e-14)


def test_soft_targets_not_summing_to_one_reference():
    """dL/dz = p·Σt − t, not p − t (z=[1,2,3], t=[.5,.2,0], sum).

    Rounded to three digits it is [-0.437, -0.029, 0.466]; a published five-digit
    [-0.43699, -0.02872, 0.46571] is off by up to 4e-5: the exact value,
    confirmed by hand and by torch autograd, is [-0.4369786, -0.0286901, 0.4656687].
    """
    z, t = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.2, 0.0])
    for fused in (None, False):
        head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="sum"), fused=fused)
        _, dz = head.value_and_grad(z, t)
        np.testing.assert_allclose(dz, [-0.437, -0.029, 0.466], atol=5e-4)
        np.testing.assert_allclose(dz, [-0.4369785987807337, -0.028690070261641665, 0.4656686690423753], rtol=1e-12)
        p = gk.Softmax()(z)
        np.testing.assert_allclose(dz, p * t.sum() - t, rtol=1e-12)
        assert not np.allclose(dz, p - t)


def test_softmax_with_mse_differs_from_the_elementwise_shortcut():
    """The bug this project exists for: act.delta * loss.delta is wrong for softmax."""
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((4, 5)), np.eye(5)[[0, 2, 4, 1]]
    head = gk.compose(gk.Softmax(), gk.MSELoss())
    _, dz = head.value_and_grad(z, t)
    p = gk.Softmax()(z)
    shortcut = p * (1 - p) * gk.MSELoss().grad(p, t)
    assert np.max(np.abs(dz - shortcut)) > 1e-3
    assert gk.gradcheck(head, z, target=t).ok


def test_cross_entropy_of_equal_huge_float32_logits_is_log2():
    z = np.array([[1e8, 1e8]], dtype=np.float32)
    for head in (gk.compose(gk.Softmax(), gk.CrossEntropyLoss()), gk.compose(gk.LogSoftmax(), gk.NLLLoss())):
        for fused in (None, False):
            h = gk.compose(head.activation, head.loss, fused=fused)
            L, dz = h.value_and_grad(z, np.array([0]))
            assert L.dtype == np.float32 and dz.dtype == np.float32
            np.testing.assert_allclose(L, np.log(2), rtol=1e-6)
            np.testing.assert_allclose(dz, [[-0.5, 0.5]], rtol=1e-6)


def test_fused_path_is_exact_where_probabilities_underflow():
    z = np.array([[0.0, -800.0]])
    L, dz = gk.compose(gk.Softmax(), gk.CrossEntropyLoss()).value_and_grad(z, np.array([1]))
    np.testing.assert_allclose(L, 800.0, rtol=1e-12)
    np.testing.assert_allclose(dz, [[1.0, -1.0]], rtol=1e-12)
    L, dz = gk.compose(gk.Sigmoid(), gk.BCELoss()).value_and_grad(np.array([-1000.0]), np.array([1.0]))
    np.testing.assert_allclose(L, 1000.0, rtol=1e-12)
    np.testing.assert_allclose(dz, [-1.0], rtol=1e-12)


def test_masked_head_passes_where_and_masks_the_gradient():
    rng = np.random.default_rng(8)
    z = rng.standard_normal((3, 4))
    mask = np.array([[True, True, False, True]] * 3)
    labels = np.array([0, 1, 3])
    for fused in (None, False):
        head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(), fused=fused)
        L, dz = head.value_and_grad(z, labels, where=mask)
        assert np.all(dz[:, 2] == 0)
        L_ref, dz_ref = head.value_and_grad(z[:, [0, 1, 3]], np.array([0, 1, 2]))
        np.testing.assert_allclose(L, L_ref, rtol=1e-12)
        np.testing.assert_allclose(dz[:, [0, 1, 3]], dz_ref, rtol=1e-12)


def test_all_ignored_batch_gives_zero_loss_and_gradient():
    z = np.random.default_rng(1).standard_normal((3, 4))
    for fused in (None, False):
        head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(ignore_index=-1), fused=fused)
        L, dz = head.value_and_grad(z, np.array([-1, -1, -1]))
        assert L == 0.0 and not np.isnan(L)
        assert np.all(dz == 0.0)


def test_head_jvp_and_vjp_agree():
    rng = np.random.default_rng(3)
    z, t = rng.standard_normal((3, 4)), rng.integers(0, 4, 3)
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="none"))
    g, v = rng.standard_normal(3), rng.standard_normal((3, 4))
    np.testing.assert_allclose(np.sum(head.jvp(z, t, v) * g), np.sum(v * head.vjp(z, t, g)), rtol=1e-12)


def test_compose_refuses_pairs_outside_the_loss_domain():
    with pytest.raises(ValueError, match="tanh outputs values in .* bce is defined on"):
        gk.compose(gk.Tanh(), gk.BCELoss())
    with pytest.raises(ValueError, match="log_softmax.*cross_entropy"):
        gk.compose("log_softmax", "cross_entropy")
    assert gk.compose(gk.LogSoftmax(), gk.KLDivLoss(log_input=True)) is not None


def test_compose_requires_matching_class_axes():
    head = gk.compose(gk.Softmax(axis=0), gk.CrossEntropyLoss(axis=-1))
    with pytest.raises(ValueError, match="axis"):
        head.value_and_grad(np.zeros((3, 4)), np.zeros(3, dtype=int))
    # the same axis spelled differently is fine
    gk.compose(gk.Softmax(axis=1), gk.CrossEntropyLoss(axis=-1)).value_and_grad(np.zeros((3, 4)), np.zeros(3, dtype=int))


def test_fused_true_requires_a_fused_pair():
    with pytest.raises(ValueError, match="no fused path for softmax \\+ mse"):
        gk.compose(gk.Softmax(), gk.MSELoss(), fused=True)


def test_compose_rejects_non_functions():
    with pytest.raises(TypeError):
        gk.compose(3, gk.MSELoss())
    with pytest.raises(ValueError, match="unknown loss 'mse2'; valid names: .*mse"):
        gk.compose(gk.Softmax(), "mse2")


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("loss_name", gk.losses.names())
def test_losses_and_heads_keep_low_precision_dtypes(dtype, loss_name):
    """float16 is computed in float32 and returned in float16; float32 stays float32."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((3, 4))
    loss = gk.losses.get(loss_name)
    act = next(a for a in (gk.Softmax(), gk.LogSoftmax(), gk.Tanh())
               if loss.input_domain[0] <= a.output_range[0] and a.output_range[1] <= loss.input_domain[1])
    target = random_target(loss, z.shape, rng, labels=loss_name in ("cross_entropy", "nll"))
    head = gk.compose(act, loss)
    pred = act(z)
    for obj, x in ((loss, pred), (head, z)):
        L, g = obj.value_and_grad(x.astype(dtype), target)
        assert L.dtype == dtype and g.dtype == dtype, type(obj).__name__
        _L32, g32 = obj.value_and_grad(x.astype(dtype).astype(np.float32), target)
        if dtype == np.float16:
            np.testing.assert_array_equal(g, g32.astype(np.float16))
        _L64, g64 = obj.value_and_grad(x.astype(dtype).astype(np.float64), target)
        np.testing.assert_allclose(g.astype(np.float64), g64, rtol=2e-3 if dtype == np.float16 else 1e-5, atol=1e-3 if dtype == np.float16 else 1e-7)
