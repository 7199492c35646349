"""Numerics and domains: each test fails on the code before the fix.

* losses refuse ``pred`` outside their ``input_domain`` (logits passed as probabilities),
  but not rounding (a softmax of 1 + 1 ulp) and not masked-out entries;
* gradients that are finite are computed finite at huge finite inputs (scale before multiplying);
* ``bce_with_logits`` at ``z = ±inf`` gives its limits, never NaN;
* ``TaylorSoftmax(order=...)`` is validated;
* object / string dtypes are refused for ``g``, ``v``, ``y``, ``where``, ``target`` and weights;
* the numba kernels warn as the portable path does where a row spans more than the float range.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels

RNG = np.random.default_rng(1313)
P = gk.Softmax()(RNG.standard_normal((3, 4)))
LABELS = np.array([0, 3, 1])


# -- domains ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss,pred,pattern",
    [
        (gk.CrossEntropyLoss(), P * 2.5, (r"pred must be probabilities in \[0.0, 1.0\] for cross_entropy; got values in "
         r"\[.*\]\. Logits \(what PyTorch's CrossEntropyLoss takes\) go through compose\(Softmax\(\), CrossEntropyLoss\(\)\)")),
        (gk.CrossEntropyLoss(), RNG.standard_normal((3, 4)) * 3, r"probabilities in \[0.0, 1.0\] for cross_entropy"),
        (gk.NLLLoss(), np.abs(RNG.standard_normal((3, 4))) + 0.1,
         r"pred must be log-probabilities <= 0.0 for nll; got values in \[.*\]\. Logits go through compose\(LogSoftmax\(\), NLLLoss\(\)\)"),
        (gk.KLDivLoss(), P + 1.0, r"probabilities in \[0.0, 1.0\] for kl_div.*compose\(Softmax\(\), KLDivLoss\(\)\)"),
        (gk.KLDivLoss(log_input=True), P, r"log-probabilities <= 0.0 for kl_div.*KLDivLoss\(log_input=True\)"),
        (gk.BCELoss(), P + 1.0, r"probabilities in \[0.0, 1.0\] for bce; .*Logits go through BCEWithLogitsLoss"),
    ],
    ids=["xent>1", "xent-logits", "nll>0", "kl>1", "kl-log>0", "bce>1"],
)
def test_losses_refuse_pred_outside_their_domain(loss, pred, pattern):
    """Was: cross_entropy on values > 1 returned a negative loss, nll on positive values too."""
    target = np.zeros((3, 4)) if isinstance(loss, gk.BCELoss) else LABELS
    calls = [lambda: loss(pred, target), lambda: loss.grad(pred, target),
             lambda: loss.jvp(pred, target, RNG.standard_normal(pred.shape))]
    if loss.reduction == "mean":
        calls.append(lambda: loss.vjp(pred, target, RNG.standard_normal(())))
    for call in calls:
        with pytest.raises(ValueError, match=pattern):
            call()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rounding_at_the_bound_is_not_refused_and_is_clipped(dtype):
    """A probability a few ulps above 1 or a log-probability of +1e-17 is rounding: accepted, and
    treated as the bound (bce at p = 1 + ulp was refused; clipped it is a finite 0, not NaN)."""
    one_up = np.nextafter(dtype(1), dtype(2))
    few_up = dtype(1) + dtype(8) * np.finfo(dtype).eps  # 8 ulps: inside the 16-ulp tolerance
    for p1 in (one_up, few_up):
        p = np.array([[p1, 0.0]], dtype=dtype)
        assert gk.CrossEntropyLoss()(p, np.array([0])) == 0
        assert gk.KLDivLoss()(p, np.array([[1.0, 0.0]], dtype=dtype)) == 0
        L, g = gk.BCELoss(reduction="none").value_and_grad(p, np.array([[1.0, 0.0]], dtype=dtype))
        assert np.all(L == 0) and np.isfinite(g).all()
    q = np.array([[dtype(1e-17) if dtype == np.float64 else np.finfo(dtype).eps, -1.0]], dtype=dtype)
    assert gk.NLLLoss()(q, np.array([0])) == 0  # -q clipped at 0: not a negative loss
    assert gk.KLDivLoss(log_input=True)(q, np.array([[1.0, 0.0]], dtype=dtype)) == 0
    # 64 ulps is no longer rounding
    far = dtype(1) + dtype(64) * np.finfo(dtype).eps
    with pytest.raises(ValueError, match="probabilities in"):
        gk.CrossEntropyLoss()(np.array([[far, 0.0]], dtype=dtype), np.array([0]))


def test_masked_entries_may_hold_anything():
    """Entries masked out by where= (in a composed head) are not checked: they take no part."""
    z = np.array([[1.0, 2.0, 0.5, -1.0], [0.3, -0.2, 0.9, 0.1]])
    mask = np.array([[True, True, False, True], [True, False, True, True]])
    hostile = np.where(mask, z, np.array([[0, 0, np.inf, 0], [0, np.nan, 0, 0]]))
    for act, loss in [(gk.Softmax(), gk.BCELoss()), (gk.LogSoftmax(), gk.NLLLoss()),
                      (gk.Softmax(), gk.CrossEntropyLoss()), (gk.Sparsemax(), gk.KLDivLoss())]:
        target = np.array([1, 2]) if isinstance(loss, (gk.NLLLoss, gk.CrossEntropyLoss)) else np.full(z.shape, 0.25)
        L, dz = gk.compose(act, loss, fused=False).value_and_grad(hostile, target, where=mask)
        assert np.isfinite(L) and np.isfinite(dz).all() and np.all(dz[~mask] == 0), (act, loss)
    # the loss's own check, given the live mask: a masked 5.0 is not refused, a live one is
    p = np.array([[0.5, 5.0]])
    live = np.array([[True, False]])
    assert gk.CrossEntropyLoss().in_domain(np, p, live=live) is p
    with pytest.raises(ValueError, match=r"got values in \[0.5, 5.0\]"):
        gk.CrossEntropyLoss().in_domain(np, p)


# -- overflow at huge finite inputs -----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:overflow encountered in multiply")  # the loss value, (9e307)², is inf: right
@pytest.mark.parametrize("dtype,big", [(np.float64, 9e307), (np.float32, 3e38)])
def test_log_softmax_into_mse_gradient_is_finite_at_huge_logits(dtype, big):
    """Was: compose(LogSoftmax(), MSELoss()).grad([[0, 9e307]], 0) = [nan, inf]; exactly [-9e307, 9e307]."""
    z = np.array([[0.0, big]], dtype=dtype)
    for fused in (None, False):
        dz = gk.compose(gk.LogSoftmax(), gk.MSELoss(), fused=fused).grad(z, np.zeros((1, 2), dtype=dtype))
        np.testing.assert_allclose(dz, np.array([[-big, big]], dtype=dtype), rtol=1e-6)
    # the same for the loss alone and under an upstream g
    p = np.array([big, 0.0], dtype=dtype)
    np.testing.assert_allclose(gk.MSELoss().grad(p, np.zeros(2, dtype=dtype)), [big, 0.0], rtol=1e-6)
    g = dtype(0.25)
    np.testing.assert_allclose(gk.MSELoss().vjp(p, np.zeros(2, dtype=dtype), g), [0.25 * big, 0.0], rtol=1e-6)


def test_mse_gradient_still_overflows_where_the_exact_one_does():
    """reduction='sum': 2·9e307 is beyond float64 — inf is the right answer there, not a finite guess."""
    with np.errstate(over="ignore"):
        g = gk.MSELoss(reduction="sum").grad(np.array([9e307]), np.array([0.0]))
    assert g[0] == np.inf


@pytest.mark.parametrize("pos_weight", [None, 3.0, 0.0])
def test_bce_with_logits_limits_at_infinity(pos_weight):
    """Was NaN at z = -inf (every t) and at z = +inf, t = 1. The exact limits, w = pos_weight:
    loss(+inf) = +inf if t < 1 else 0; loss(-inf) = +inf if w·t > 0 else 0; grad = 1 - t and -w·t."""
    w = 1.0 if pos_weight is None else pos_weight
    t = np.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0])
    z = np.array([np.inf] * 3 + [-np.inf] * 3)
    loss = gk.BCEWithLogitsLoss(reduction="none", pos_weight=pos_weight)
    L, g = loss.value_and_grad(z, t)
    expected = [np.inf, np.inf, 0.0] + [np.inf if w * tt > 0 else 0.0 for tt in t[3:]]
    np.testing.assert_array_equal(L, expected)
    np.testing.assert_array_equal(g, np.concatenate([1.0 - t[:3], -w * t[3:]]))
    if pos_weight is None:  # the same through the fused sigmoid head
        Lh, gh = gk.compose(gk.Sigmoid(), gk.BCELoss(reduction="none")).value_and_grad(z, t)
        np.testing.assert_array_equal(Lh, expected)
        np.testing.assert_array_equal(gh, g)


def test_bce_with_logits_pos_weight_at_huge_negative_logit_is_finite():
    """(1-t)z + c·softplus(-z) at z = -1e308 overflowed (c·1e308) although the loss, w·t·1e308, is finite."""
    L = gk.BCEWithLogitsLoss(reduction="none", pos_weight=3.0)(np.array([-1e308]), np.array([0.5]))
    np.testing.assert_allclose(L, [1.5e308], rtol=1e-15)


# -- Taylor order -----------------------------------------------------------------------------


@pytest.mark.parametrize("order", [22, 40, 172, 1000])
def test_taylor_order_beyond_the_exact_range_is_refused(order):
    """Was: order=172 accepted, then OverflowError (1/172! is no float); 40 gave inf/NaN in float32."""
    for cls in (gk.TaylorSoftmax, gk.LogTaylorSoftmax):
        with pytest.raises(ValueError, match=rf"order must be an even integer in \[2, 20\] .*; got {order}"):
            cls(order=order)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_taylor_order_20_is_accurate_over_the_whole_finite_range(dtype):
    fmax = float(np.finfo(dtype).max)
    z = np.array([[-fmax, -30.0, -9.2, -1.0, 0.0, 1e-30, 2.5, 40.0, fmax]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = gk.TaylorSoftmax(order=20)(z)
        logy = gk.LogTaylorSoftmax(order=20)(z)
    assert np.isfinite(y).all() and np.isfinite(logy).all()
    # the two largest |z| share the mass (φ even in its leading term), the rest underflow
    np.testing.assert_allclose(y[0, [0, -1]], 0.5, rtol=1e-6)
    # a moderate row: against float64 polynomial evaluation in exact rational arithmetic
    from fractions import Fraction
    from math import factorial

    row = [-9.2, -3.0, 0.5, 4.0]
    phi = [float(sum(Fraction(v) ** i / factorial(i) for i in range(21))) for v in row]
    ref = np.array(phi) / sum(phi)
    got = gk.TaylorSoftmax(order=20)(np.array(row, dtype=dtype))
    np.testing.assert_allclose(got, ref, rtol=1e-12 if dtype == np.float64 else 2e-3)


# -- object dtypes ----------------------------------------------------------------------------

OBJ = np.array([0.1, 0.2, 0.3], dtype=object)
STR = np.array(["0.1", "0.2", "0.3"])


@pytest.mark.parametrize("name", gk.activations.names())
@pytest.mark.parametrize("bad", [OBJ, STR], ids=["object", "str"])
def test_activations_refuse_object_upstreams(name, bad):
    """Was: an object-dtype g/v/y was computed element by element in Python (or crashed inside)."""
    act = gk.activations.get(name)
    x = np.array([0.3, -1.2, 2.0])
    if act.stochastic:
        act(x)  # draws the noise the derivatives use
    with pytest.raises(TypeError, match=r"g must be a numeric array, got dtype"):
        act.vjp(x, bad)
    with pytest.raises(TypeError, match=r"v must be a numeric array, got dtype"):
        act.jvp(x, bad)
    if not act.stochastic:  # Gumbel-softmax ignores y (its derivatives are at x + noise)
        with pytest.raises(TypeError, match=r"y must be a numeric array, got dtype"):
            act.vjp(x, np.ones(3), y=bad)
        with pytest.raises(TypeError, match=r"y must be a numeric array, got dtype"):
            act.jacobian(x, y=bad)
    if act.supports_mask:
        with pytest.raises(TypeError, match=r"where must be a numeric array, got dtype|where must be a boolean mask"):
            act(x, where=np.array([True, False, True], dtype=object))


@pytest.mark.parametrize("name", gk.losses.names())
def test_losses_refuse_object_targets_upstreams_and_weights(name):
    loss = gk.losses.get(name)
    pred = np.array([[0.2, 0.5, 0.3]]) if name not in ("nll",) else np.log([[0.2, 0.5, 0.3]])
    with pytest.raises(TypeError, match=r"target must be a numeric array, got dtype object"):
        loss(pred, np.array([[0.0, 1.0, 0.0]], dtype=object))
    target = np.array([[0.0, 1.0, 0.0]])
    with pytest.raises(TypeError, match=r"v must be a numeric array, got dtype object"):
        loss.jvp(pred, target, np.array([[1.0, 2.0, 3.0]], dtype=object))
    with pytest.raises(TypeError, match=r"g must be a numeric array, got dtype object"):
        loss.vjp(pred, target, np.array(1.0, dtype=object))
    for kw in ("weight", "pos_weight"):
        try:
            gk.losses.get(name, **{kw: np.ones(3)})
        except TypeError:
            continue  # the loss takes no such argument
        with pytest.raises(TypeError, match=rf"{kw} must be a numeric array, got dtype object"):
            gk.losses.get(name, **{kw: np.ones(3, dtype=object)})


def test_composed_head_refuses_object_upstreams():
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="none"))
    z = np.array([[0.1, 2.0, -1.0]])
    with pytest.raises(TypeError, match=r"g must be a numeric array, got dtype object"):
        head.vjp(z, np.array([1]), np.array([1.0], dtype=object))
    with pytest.raises(TypeError, match=r"v must be a numeric array, got dtype object"):
        head.jvp(z, np.array([1]), np.array([[1.0, 0.0, 0.0]], dtype=object))


# -- warnings: numba kernels == portable path --------------------------------------------------

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")


def _record(fn):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = fn()
    return out, sorted({(w.category.__name__, str(w.message)) for w in seen})


@needs_numba
@pytest.mark.parametrize("dtype,lo,hi", [(np.float32, -3e38, 3e38), (np.float64, -1.5e308, 1e308)])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
@pytest.mark.parametrize("cls", [gk.Softmax, gk.LogSoftmax], ids=lambda c: c.__name__)
def test_kernels_warn_like_the_portable_path_on_rows_spanning_the_float_range(cls, dtype, lo, hi, temperature):
    """Was: the portable path warned 'overflow encountered in subtract', the numba path said nothing."""
    act = cls(temperature=temperature)
    x = np.array([[lo, hi, 0.0], [0.5, -1.0, 2.0], [-0.95 * hi, 0.0, 1.0]], dtype=dtype)
    g = RNG.standard_normal(x.shape).astype(dtype)
    mask = np.array([[True, True, False], [True, True, True], [True, True, True]])
    calls = [lambda: act(x), lambda: act.vjp(x, g), lambda: act.jvp(x, g), lambda: act.jacobian(x),
             lambda: act(x, where=mask), lambda: act(x[1:])]
    for k, call in enumerate(calls):
        fast, w_fast = _record(call)
        with kernels.disabled():
            ref, w_ref = _record(call)
        assert w_fast == w_ref, (k, w_fast, w_ref)
        np.testing.assert_allclose(fast, ref, rtol=1e-5)
    # and the warnings are there where they should be: row 0 spans beyond the range
    assert ("RuntimeWarning", "overflow encountered in subtract") in _record(calls[0])[1]
    # at T = 0.5 the last row's shift (-0.95 max) / T overflows too: the divide warning
    assert (("RuntimeWarning", "overflow encountered in divide") in _record(lambda: act(x[2:]))[1]) == (temperature < 1)
    assert _record(lambda: act(x[1:2]))[1] == []


@needs_numba
@pytest.mark.parametrize("dtype,big", [(np.float32, 3e38), (np.float64, 1e308)])
def test_fused_cross_entropy_kernel_warns_and_answers_like_the_portable_path(dtype, big):
    """Was: the numba head was silent, and the portable one gave gradient 0 for a finite logit whose
    shift overflowed (it took it for a -inf logit); exactly, p - t = [-1, 1, 0]."""
    z = np.array([[-big, big, 0.0]], dtype=dtype)
    for act, loss in ((gk.Softmax(), gk.CrossEntropyLoss()), (gk.LogSoftmax(), gk.NLLLoss())):
        head = gk.compose(act, loss)
        (L, g), w_fast = _record(lambda head=head: head.value_and_grad(z, np.array([0])))
        with kernels.disabled():
            (L_ref, g_ref), w_ref = _record(lambda head=head: head.value_and_grad(z, np.array([0])))
        assert w_fast == w_ref == [("RuntimeWarning", "overflow encountered in subtract")]
        assert L == L_ref == np.inf  # -log p = 2·big: beyond the range
        np.testing.assert_array_equal(g, [[-1.0, 1.0, 0.0]])
        np.testing.assert_array_equal(g_ref, g)
        # ignored rows are shifted too on the portable path: same warning
        _, w_fast = _record(lambda head=head: head.value_and_grad(z, np.array([-100])))
        with kernels.disabled():
            _, w_ref = _record(lambda head=head: head.value_and_grad(z, np.array([-100])))
        assert w_fast == w_ref


# -- found by the property tests (tests/hostile/test_properties.py) -----------------------------

MAX64 = float(np.finfo(np.float64).max)


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the loss values themselves (d², p - t): inf, right
def test_mse_factors_are_combined_before_they_touch_the_gradient():
    """Was inf: 2·d with d = -max before the upstream 0.125 (vjp), before v (jvp); p - t itself overflowing."""
    p, t = np.array([[0.0]]), np.array([[MAX64]])
    np.testing.assert_allclose(gk.MSELoss().vjp(p, t, np.float64(0.125)), [[-0.25 * MAX64]], rtol=1e-15)
    np.testing.assert_allclose(gk.MSELoss().jvp(p, t, np.array([[-0.125]])), 0.25 * MAX64, rtol=1e-15)
    # the terms 2·(p - t)·v (±4·max·v) overflow, with both signs: their sum is finite
    pp, tt = np.array([MAX64, MAX64]), np.array([-MAX64, -MAX64])
    np.testing.assert_allclose(gk.MSELoss(reduction="sum").jvp(pp, tt, np.array([-0.5, 0.625])),
                               0.5 * MAX64, rtol=1e-15)  # 2·(2·max)·0.125
    # p - t = 2·max is beyond the range, the mean's gradient 2·(p - t)/4 = max is not
    g = gk.MSELoss().grad(np.array([MAX64, 0, 0, 0]), np.array([-MAX64, 0, 0, 0]))
    np.testing.assert_allclose(g, [MAX64, 0, 0, 0], rtol=1e-15)


def test_mean_of_items_whose_sum_overflows_is_finite():
    """Was inf: Σ items overflowed before the division by n."""
    big = np.float32(1.7014117e38)
    L = gk.HuberLoss()(np.zeros(3, np.float32), np.full(3, big, np.float32))
    np.testing.assert_allclose(L, big - 0.5, rtol=1e-6)
    L = gk.MAELoss()(np.full(4, MAX64), np.zeros(4))
    assert L == MAX64


def test_huber_does_not_warn_about_the_branch_it_does_not_use():
    """Was: RuntimeWarning 'overflow encountered in multiply' from ½d² at |d| = 1e200, a finite loss."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L, g = gk.HuberLoss(delta=2.0).value_and_grad(np.array([1e200]), np.array([0.0]))
    assert L == 2.0 * (1e200 - 1.0) and g[0] == 2.0


@pytest.mark.filterwarnings("ignore:overflow encountered in multiply")
def test_heads_whose_loss_gradient_overflows_but_whose_own_gradient_does_not():
    """Was NaN: dL/dp = 2(p - t) = -2·max, then the sparsemax / softmax Jacobian's inf - inf; exactly 0.
    Was inf: the JVP of SELU into MSE contracted the (overflowing) gradient; forward mode is finite."""
    z, t = np.array([[0.0]]), np.array([[MAX64]])
    for act in (gk.Sparsemax(), gk.Softmax(), gk.Entmax15()):
        assert gk.compose(act, gk.MSELoss()).grad(z, t)[0, 0] == 0.0
    v = np.array([[-0.125, 0.625]])
    jvp = gk.compose(gk.SELU(), gk.MSELoss()).jvp(np.zeros((1, 2)), np.full((1, 2), MAX64), v)
    slope = gk.SELU().derivative(np.array([0.0]))[0]
    np.testing.assert_allclose(jvp, -MAX64 * (slope * 0.5), rtol=1e-14)  # Σ 2(p - t)·slope·v / 2


def test_fenchel_young_loss_of_a_row_spanning_the_range_is_finite():
    """Was inf: ⟨y - t, z - max z⟩ with z - max z = -1.5·max overflowing; the loss is 0.75·max - 0.39."""
    z = np.array([[MAX64, -MAX64 / 2]])
    for loss in (gk.losses.SparsemaxLoss(), gk.losses.Entmax15Loss()):
        L = loss(z, np.array([[1.0, 1.0]]))
        assert np.isfinite(L) and abs(L - 0.75 * MAX64) < 1e-12 * MAX64


@pytest.mark.parametrize("disabled", [False, True], ids=["kernels", "portable"])
def test_log_softmax_with_temperature_keeps_the_scaled_shift_when_the_shift_overflows(disabled):
    """Was -inf: (z - max) overflowed before the division by T = 2.5; exactly -2·max/2.5 = -0.8·max."""
    z = np.array([[MAX64, -MAX64]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # z - max overflows: NumPy's warning, kept
        with kernels.disabled() if disabled else _nothing():
            y = gk.LogSoftmax(temperature=2.5)(z)
            L = gk.compose(gk.LogSoftmax(temperature=2.5), gk.NLLLoss())(z, np.array([1]))
    np.testing.assert_allclose(y, [[0.0, -0.8 * MAX64]], rtol=1e-15)
    np.testing.assert_allclose(L, 0.8 * MAX64, rtol=1e-15)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_masked_head_jvp_is_forward_mode_where_the_gradient_overflows(reduction):
    # found by the property tests: log_softmax into MSE with targets at the float maximum under a
    # mask; contracting dL/dz (2(p - t) ≈ -2·max) gave inf or NaN, the exact JVP is about -4e307
    head = gk.compose(gk.LogSoftmax(), gk.MSELoss(reduction=reduction), fused=False)
    big = np.finfo(np.float64).max
    z = np.zeros((1, 4))
    t = np.array([[0.0, big, big, big]])
    v = np.array([[0.36159505, 1.30400005, 0.94708096, -0.70373524]])
    where = np.array([[True, True, True, True]])
    with np.errstate(over="ignore"):  # the loss value itself, (max)², is inf: the JVP is not
        got = head.jvp(z, t, v, where=where)
        got_partly = head.jvp(z, t, v, where=np.array([[True, False, True, True]]))
    dp = v - v.mean()  # log_softmax's JVP at z = 0
    p = -np.log(4.0)
    exact = float(sum(2 * (np.longdouble(p) - np.longdouble(ti)) * np.longdouble(di) for ti, di in zip(t[0], dp[0])))
    exact /= 1 if reduction == "sum" else 4
    assert np.isfinite(got) and got == pytest.approx(exact, rel=1e-12)
    partly = np.array([[True, False, True, True]])  # a masked entry adds exactly nothing
    dp = gk.LogSoftmax().jvp(z, v, where=partly)
    exact = float(sum(2 * (np.longdouble(-np.log(3.0)) - np.longdouble(t[0, i])) * np.longdouble(dp[0, i])
                      for i in (0, 2, 3))) / (1 if reduction == "sum" else 4)
    assert np.isfinite(got_partly) and got_partly == pytest.approx(exact, rel=1e-12)
