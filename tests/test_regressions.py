"""Defects found in review, each pinned by a test (each docstring says what was wrong)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("cls", [gk.Softmax, gk.LogSoftmax])
def test_nan_logit_makes_its_row_nan_like_pytorch(cls):
    """Was: softmax([nan, 2]) = [nan, 7.39] and a negative cross-entropy."""
    z = np.array([[np.nan, 2.0, 1.0], [0.5, 0.2, 0.1]])
    y = cls()(z)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    ref = (torch.softmax if cls is gk.Softmax else torch.log_softmax)(torch.tensor(z), dim=-1).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    g = np.random.default_rng(0).standard_normal(z.shape)
    assert np.isnan(cls().vjp(z, g)[0]).all() and np.isfinite(cls().vjp(z, g)[1]).all()
    for fused in (None, False):
        L, dz = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(), fused=fused).value_and_grad(z, np.array([1, 0]))
        assert np.isnan(L) and np.isnan(dz[0]).all()


@pytest.mark.parametrize(
    "target,label_smoothing",
    [
        (np.array([1, 0]), 0.1),  # smoothing with a mask: was inf, and fused != generic
        (np.array([2, 0]), 0.0),  # a label on a masked class
        (np.array([[0.2, 0.5, 0.3, 0.1], [0.5, 0.5, 0.0, 0.4]]), 0.2),  # soft mass on masked classes
    ],
)
def test_target_mass_on_masked_classes_is_dropped_and_fused_equals_generic(target, label_smoothing):
    z = np.array([[1.0, 2.0, 0.5, -1.0], [0.3, -0.2, 0.9, 0.1]])
    mask = np.array([[True, True, False, True], [True, True, False, True]])
    results = []
    for act, loss_cls in ((gk.Softmax(), gk.CrossEntropyLoss), (gk.LogSoftmax(), gk.NLLLoss)):
        for fused in (None, False):
            head = gk.compose(act, loss_cls(label_smoothing=label_smoothing), fused=fused)
            L, dz = head.value_and_grad(z, target, where=mask)
            assert np.isfinite(L) and np.isfinite(dz).all()
            assert np.all(dz[~mask] == 0)
            np.testing.assert_allclose(dz.sum(axis=-1), 0.0, atol=1e-15)  # shift invariance on live classes
            results.append((L, dz))
    for L, dz in results[1:]:
        np.testing.assert_allclose(L, results[0][0], rtol=1e-12)
        np.testing.assert_allclose(dz, results[0][1], rtol=1e-12, atol=1e-15)
    # smoothing spreads over the live classes only: same as the unmasked problem on them
    keep = [0, 1, 3]
    if target.ndim == 1 and 2 not in target:
        ref = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(label_smoothing=label_smoothing))
        L_ref, dz_ref = ref.value_and_grad(z[:, keep], np.array([{0: 0, 1: 1, 3: 2}[int(c)] for c in target]))
        np.testing.assert_allclose(results[0][0], L_ref, rtol=1e-12)
        np.testing.assert_allclose(results[0][1][:, keep], dz_ref, rtol=1e-12)


def test_head_jvp_uses_the_exact_path_and_checks_axes():
    """Was: jvp went through the clamped generic path (1030.58 instead of 0.5)."""
    h = gk.compose(gk.Sigmoid(), gk.BCELoss(reduction="sum"))
    np.testing.assert_allclose(h.jvp(np.float32([20.0]), np.float32([0.5]), np.float32([1.0])), 0.5, rtol=1e-6)
    np.testing.assert_allclose(h.jvp(np.array([40.0]), np.array([0.5]), np.array([1.0])), 0.5, rtol=1e-12)
    ce = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="sum"))
    np.testing.assert_allclose(ce.jvp(np.float32([0, -110]), 1, np.float32([0, 1])), -1.0, rtol=1e-6)
    assert gk.gradcheck(h, np.array([40.0, -40.0, 0.3]), target=np.array([0.5, 0.5, 0.5])).ok
    with pytest.raises(ValueError, match="axis"):
        gk.compose(gk.Softmax(axis=0), gk.CrossEntropyLoss()).jvp(np.zeros((3, 3)), np.zeros(3, int), np.ones((3, 3)))


@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32, torch.uint8])
def test_class_weights_with_multidimensional_and_small_int_labels_on_torch(label_dtype):
    """Was: IndexError in xp.take for 2-d labels, RuntimeError for uint8 labels."""
    gen = torch.Generator().manual_seed(0)
    p = gk.Softmax()(torch.randn(2, 3, 4, dtype=torch.float64, generator=gen))
    labels = torch.randint(0, 4, (2, 3), generator=gen).to(label_dtype)
    loss = gk.CrossEntropyLoss(weight=[1.0, 2.0, 3.0, 4.0])
    L, dp = loss.value_and_grad(p, labels)
    L0, dp0 = loss.value_and_grad(p.numpy(), labels.numpy())
    assert isinstance(dp, torch.Tensor)
    np.testing.assert_allclose(dp.numpy(), dp0, rtol=1e-12)
    np.testing.assert_allclose(float(L), L0, rtol=1e-12)


@pytest.mark.parametrize(
    "make,exc,pattern",
    [
        (lambda: gk.BCELoss(weight=-1.0), ValueError, "weight must be finite and >= 0"),
        (lambda: gk.BCELoss(weight=np.nan), ValueError, "weight must be finite and >= 0"),
        (lambda: gk.BCEWithLogitsLoss(pos_weight=-2.0), ValueError, "pos_weight must be finite and >= 0"),
        (lambda: gk.CrossEntropyLoss(weight=[1j, 1, 1]), TypeError, "weight must be a real array"),
        (lambda: gk.CrossEntropyLoss(weight=[True, False]), TypeError, "weight must be a real array"),
    ],
)
def test_weights_are_validated_at_construction(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def test_bce_weight_must_broadcast_to_pred_not_beyond():
    """Was: a (2, 3) weight on pred (3,) returned (2, 3) results."""
    with pytest.raises(ValueError, match=r"weight must broadcast to pred's shape \(3,\); got \(2, 3\)"):
        gk.BCELoss(weight=np.ones((2, 3)), reduction="none")(np.array([0.2, 0.7, 0.9]), np.array([0.0, 1, 1]))


def test_bce_nan_prediction_propagates():
    """Was: 50.35 for pred [nan, .5]."""
    assert np.isnan(gk.BCELoss()(np.array([np.nan, 0.5]), np.array([0.0, 1.0])))


def test_label_smoothing_accepts_numpy_scalars():
    assert gk.CrossEntropyLoss(label_smoothing=np.float32(0.25)).label_smoothing == 0.25


def test_gelu_tanh_keeps_precision_in_the_lower_tail():
    """Was: 1 + tanh(u) cancelled (float32 at x=-5.4: 12x too large; float64 0 below -6)."""
    x = np.linspace(-9.0, -3.0, 61)
    xl = x.astype(np.longdouble)  # 64-bit mantissa
    c = np.sqrt(np.longdouble(2) / np.pi)
    u = c * (xl + np.longdouble(0.044715) * xl**3)
    e = np.exp(-2 * u)  # ½(1 + tanh u) = 1 / (1 + e^{-2u}), no cancellation
    ref = xl / (1 + e)
    dref = 1 / (1 + e) + xl * 2 * e / (1 + e) ** 2 * c * (1 + 3 * np.longdouble(0.044715) * xl**2)
    # where it does not cancel yet, the textbook formula agrees
    head = x > -4
    np.testing.assert_allclose(ref[head], (0.5 * xl * (1 + np.tanh(u)))[head], rtol=1e-6)
    act = gk.GELU(approximate="tanh")
    np.testing.assert_allclose(act(x), ref.astype(np.float64), rtol=1e-9)
    np.testing.assert_allclose(act.derivative(x), dref.astype(np.float64), rtol=1e-8)
    np.testing.assert_allclose(act(x.astype(np.float32)), ref.astype(np.float64), rtol=1e-5)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "hard_sigmoid"])
def test_nan_reaches_the_derivative_of_piecewise_activations(name):
    assert np.isnan(gk.activations.get(name).derivative(np.array([np.nan, 1.0])))[0]


def test_gradcheck_on_0d_input_skips_the_jacobian():
    rep = gk.gradcheck(gk.ReLU(), 1.0)
    assert rep.ok and "jacobian" not in {r.check for r in rep.results}


@pytest.mark.parametrize(
    "kwargs,pattern",
    [({"eps": 0}, "eps must be finite and > 0"), ({"rtol": -1.0}, "rtol must be finite and >= 0"),
     ({"rtol": 0, "atol": 0}, "must not both be 0"), ({"max_points": 0}, "max_points must be >= 1")],
)
def test_gradcheck_validates_its_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        gk.gradcheck(gk.Softmax(), np.ones(3), **kwargs)


def test_registry_names_unknown_constructor_arguments():
    with pytest.raises(TypeError, match="softmax got unexpected argument.* foo; it accepts: axis, temperature"):
        gk.activations.get("softmax", foo=1)


def test_cli_reports_call_time_errors_and_empty_checks(capsys):
    from gradkit.apps.cli import main

    assert main(["jacobian", "softmax", "1", "2", "--set", "axis=3"]) == 2
    assert "axis must be in" in capsys.readouterr().err
    assert main(["check", "log_softmax", "kl_div"]) == 2
    assert "no composable pair" in capsys.readouterr().err


@pytest.mark.parametrize("loss", [gk.BCEWithLogitsLoss(), gk.MSELoss(), gk.HuberLoss(), gk.BCELoss()], ids=repr)
def test_masked_entries_take_no_part_in_elementwise_losses(loss):
    # log_softmax gives -inf at masked entries: bce_with_logits on it used to give NaN
    rng = np.random.default_rng(4)
    z, t = rng.standard_normal((3, 5)), rng.uniform(0, 1, (3, 5))
    where = rng.random((3, 5)) < 0.6
    where[0] = False
    act = gk.Softmax() if isinstance(loss, gk.BCELoss) else gk.LogSoftmax()
    head = gk.compose(act, loss)
    L, dz = head.value_and_grad(z, t, where=where)
    assert np.isfinite(L) and np.all(np.isfinite(dz)) and np.all(dz[~where] == 0)
    items = gk.compose(act, type(loss)(reduction="none")).value_and_grad(z, t, where=where)[0]
    assert np.all(items[~where] == 0)
    y = act(z, where=where)
    expected = type(loss)(reduction="sum")(np.where(where, y, 0.0)[where], t[where])
    np.testing.assert_allclose(L * z.size, expected, rtol=1e-12)  # the mean still divides by all elements

    def f(x):
        return head(x, t, where=where)

    v = rng.standard_normal(z.shape)
    np.testing.assert_allclose(head.jvp(z, t, v, where=where), np.sum(dz * v), rtol=1e-10)
    assert gk.gradcheck(f, z, vjp=lambda x, g: g * head.grad(x, t, where=where)).ok


@pytest.mark.parametrize("use_kernels", [True, False], ids=["kernel", "portable"])
@pytest.mark.parametrize("name", ["sparsemax_loss", "entmax15_loss", "entmax_bisect_loss"])
def test_fenchel_young_mean_stays_finite_when_an_item_is_the_float_maximum(name, use_kernels):
    # found by hypothesis: the second item is the float32 maximum to within rounding, and the float32
    # item (2·Σ (y - t)(z/2 - max/2)) rounded past it to inf, so the mean (half the maximum) was inf
    p = np.array([[0.0, 0.0, 0.0], [0.0, np.finfo(np.float32).max, 0.0]], np.float32)
    t = np.array([[0.09636218, 0.09636218, 0.09636218], [0.0625, 0.0, 0.09636218]], np.float32)
    exact = gk.losses.get(name, reduction="none")(p.astype(np.float64), t.astype(np.float64))
    context = contextlib.nullcontext() if use_kernels else kernels.disabled()
    with context:
        mean, grad = gk.losses.get(name).value_and_grad(p, t)
        head_mean = gk.compose(name.removesuffix("_loss"), name)(p, t)
    assert mean.dtype == np.float32 and np.isfinite(grad).all()
    np.testing.assert_allclose([mean, head_mean], exact.mean(), rtol=1e-6)
