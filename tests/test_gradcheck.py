"""gradcheck must catch wrong derivatives, say where, and pass correct ones."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import gradkit as gk


def _elementwise_softmax_bug(x, g):
    s = gk.Softmax()(x)
    return g * s * (1 - s)  # the diagonal of the Jacobian only


def test_catches_the_elementwise_softmax_derivative_and_says_where():
    x = np.random.default_rng(0).standard_normal((4, 6))
    rep = gk.gradcheck(gk.Softmax(), x, vjp=_elementwise_softmax_bug)
    assert not rep.ok
    vjp_row = next(r for r in rep.results if r.check == "vjp")
    assert not vjp_row.ok and vjp_row.max_abs_err > 1e-3
    assert rep.worst_index == vjp_row.worst_index and len(rep.worst_index) == 2
    assert rep.max_abs_err >= vjp_row.max_abs_err and rep.max_rel_err >= vjp_row.max_rel_err
    text = str(rep)
    assert "FAILED" in text and "WRONG" in text and str(rep.worst_index) in text
    # the reported values at the worst index are the numeric and the buggy analytic ones
    assert abs(vjp_row.got - vjp_row.expected) == pytest.approx(vjp_row.max_abs_err)


def test_catches_the_bug_when_multiplied_into_a_loss_gradient():
    """delta = act.delta(z) * loss.delta(p): the classic user code, as a head's VJP."""
    rng = np.random.default_rng(1)
    z, t = rng.standard_normal((3, 5)), np.eye(5)[[1, 3, 0]]
    act, mse = gk.Softmax(), gk.MSELoss()

    def f(z):
        return mse(act(z), t)

    def wrong_vjp(z, g):
        p = act(z)
        return g * p * (1 - p) * mse.grad(p, t)

    bad = gk.gradcheck(f, z, vjp=wrong_vjp)
    assert not bad.ok and bad.max_rel_err > 1e-2
    good = gk.gradcheck(f, z, vjp=lambda z, g: act.vjp(z, g * mse.grad(act(z), t)))
    assert good.ok, str(good)
    assert gk.gradcheck(gk.compose(act, mse), z, target=t).ok


def test_catches_the_p_minus_t_shortcut_on_soft_targets():
    rng = np.random.default_rng(2)
    z, t = rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))  # rows do not sum to 1
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="sum"))
    rep = gk.gradcheck(lambda z: head(z, t), z, vjp=lambda z, g: g * (gk.Softmax()(z) - t))
    assert not rep.ok


def test_correct_derivatives_pass_for_every_kind_of_input():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 5))
    t = rng.integers(0, 5, 2)
    assert gk.gradcheck(gk.LogSoftmax(), z).ok
    assert gk.gradcheck(gk.CrossEntropyLoss(), gk.Softmax()(z), target=t).ok
    assert gk.gradcheck(gk.compose(gk.LogSoftmax(), gk.NLLLoss()), z, target=t).ok
    assert gk.gradcheck(np.sin, z, vjp=lambda x, g: g * np.cos(x), jvp=lambda x, v: v * np.cos(x)).ok


def test_catches_a_wrong_jvp_and_a_wrong_jacobian():
    x = np.random.default_rng(4).standard_normal((3, 4))

    class BadJacobian(gk.Softmax):
        def compute_jacobian(self, xp, x, y, mask):
            return y[..., :, None] * np.eye(y.shape[-1])  # diagonal only

    rep = gk.gradcheck(BadJacobian(), x)
    assert {r.check: r.ok for r in rep.results} == {"vjp": True, "jvp": True, "adjoint": True, "jacobian": False}
    rep = gk.gradcheck(np.tanh, x, jvp=lambda x, v: v * (1 - np.tanh(x)))
    assert not rep.ok and rep.results[0].check == "jvp"


def test_wrong_shapes_are_reported_not_crashed():
    x = np.random.default_rng(5).standard_normal((3, 4))
    rep = gk.gradcheck(np.tanh, x, vjp=lambda x, g: np.sum(g, axis=0))
    assert not rep.ok and "shape" in rep.results[0].note


def test_argument_errors():
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="needs target="):
        gk.gradcheck(gk.MSELoss(), x)
    with pytest.raises(TypeError, match="not an activation"):
        gk.gradcheck(gk.Softmax(), x, target=x)
    with pytest.raises(TypeError, match="vjp="):
        gk.gradcheck(np.tanh, x)
    with pytest.raises(TypeError, match="f must be"):
        gk.gradcheck(42, x)
    with pytest.raises(ValueError, match="finite"):
        gk.gradcheck(gk.Softmax(), np.array([np.inf, 0.0]))


def test_large_inputs_are_sampled():
    x = np.random.default_rng(6).standard_normal((50, 60))
    rep = gk.gradcheck(gk.Softmax(), x, max_points=100)
    assert rep.ok


# -- dtype-aware step and tolerances ----------------------------------------------------------------------------
gradcheck_module = importlib.import_module("gradkit.check.checks")


def test_default_step_is_the_cube_root_of_epsilon():
    from gradkit.check import default_step, default_tolerances

    for dtype in (np.float64, np.float32, np.float16):
        assert default_step(dtype) == pytest.approx(float(np.finfo(dtype).eps) ** (1 / 3), rel=1e-12)
    assert default_tolerances(np.float64) == (1e-5, 1e-6)  # the historical float64 defaults
    assert default_tolerances(np.float32) == (1e-2, 1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_float32_checks_pass_with_the_dtype_aware_step_where_the_old_fixed_step_failed(seed):
    x = (np.random.default_rng(seed).standard_normal((4, 6)) * 1.5).astype(np.float32)
    new = gk.gradcheck(gk.Softmax(), x, rng=seed)
    assert new.ok and new.dtype == "float32" and "(float32, h=0.00492*max(1,|x|), rtol=0.01, atol=0.001)" in str(new)
    # the old step 1e-6 is ~8 float32 ulps: the differences divide rounding noise
    old = gk.gradcheck(gk.Softmax(), x, rng=seed, eps=1e-6, rtol=new.rtol, atol=new.atol)
    assert not old.ok and old.max_abs_err > 300 * new.max_abs_err
    assert gk.gradcheck(gk.Softmax(), x.astype(np.float64), rng=seed).dtype == "float64"


def test_float16_and_the_working_dtype_of_the_output():
    x = np.random.default_rng(1).standard_normal((3, 5))
    assert gk.gradcheck(gk.Softmax(), x.astype(np.float16)).dtype == "float16"
    # float64 points into a function that computes in float32: the coarser dtype rules
    rep = gk.gradcheck(lambda x: np.tanh(x.astype(np.float32)), x,
                       vjp=lambda x, g: g * (1 - np.tanh(x.astype(np.float32)) ** 2))
    assert rep.ok and rep.dtype == "float32" and rep.step == pytest.approx(float(np.finfo(np.float32).eps) ** (1 / 3))
    with pytest.raises(ValueError, match=r"eps must be at least 4 machine epsilons of x's dtype float16 .*got 1e-06"):
        gk.gradcheck(gk.Softmax(), x.astype(np.float16), eps=1e-6)


def test_x_must_be_real_and_finite():
    with pytest.raises(TypeError, match="x must be a real floating or integer array.*got dtype bool"):
        gk.gradcheck(gk.ReLU(), np.array([True, False]))
    with pytest.raises(TypeError, match="x must be real.*complex128"):
        gk.gradcheck(gk.ReLU(), np.array([1 + 1j]))
    with pytest.raises(ValueError, match="x must be finite .*got 1 non-finite entry of 3"):
        gk.gradcheck(gk.ReLU(), np.array([1.0, np.nan, 2.0]))
    assert gk.gradcheck(gk.ReLU(), np.array([1, -2, 3])).dtype == "float64"  # integers become float64


# -- fast mode --------------------------------------------------------------------------------------------------
class _Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x):
        self.calls += 1
        return self.f(x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_mode_costs_a_few_evaluations_whatever_the_size_and_catches_the_bug(dtype):
    sm = gk.Softmax()
    x = (np.random.default_rng(7).standard_normal((200, 300)) * 1.5).astype(dtype)
    f = _Counted(sm)
    rep = gk.gradcheck(f, x, vjp=sm.vjp, jvp=sm.jvp, fast=True)
    probes = gradcheck_module.FAST_PROBES
    assert rep.ok and f.calls == 1 + 4 * probes, str(rep)
    assert [r.check for r in rep.results] == ["vjp (fast)", "jvp (fast)", "adjoint"]
    bad = gk.gradcheck(sm, x, vjp=_elementwise_softmax_bug, jvp=sm.jvp, fast=True)
    assert [(r.check, r.ok) for r in bad.results] == [("vjp (fast)", False), ("jvp (fast)", True), ("adjoint", False),
                                                         ("jacobian", True)]
    assert bad.kinks == 0 and "WRONG" in str(bad)


def test_fast_mode_catches_the_bug_for_every_seed():
    sm = gk.Softmax()
    for seed in range(20):
        x = np.random.default_rng(seed).standard_normal((8, 10)).astype(np.float32)
        rep = gk.gradcheck(sm, x, vjp=_elementwise_softmax_bug, fast=True, rng=seed)
        assert not rep.ok and rep.kinks == 0, seed


def test_the_jacobian_check_is_skipped_beyond_its_memory_cap(monkeypatch):
    monkeypatch.setattr(gradcheck_module, "JACOBIAN_MAX_ENTRIES", 100)
    rep = gk.gradcheck(gk.Softmax(), np.random.default_rng(8).standard_normal((3, 6)))
    jac = next(r for r in rep.results if r.check == "jacobian")
    assert rep.ok and jac.note == "skipped: the Jacobian would hold 108 entries (more than 100)"


# -- kinks ------------------------------------------------------------------------------------------------------
def test_relu_kinks_in_the_vjp_and_the_jvp_rows():
    x = np.array([[0.0, 1.2, -0.4], [0.7, 0.0, -2.0]])
    rep = gk.gradcheck(gk.ReLU(), x)
    rows = {r.check: r for r in rep.results}
    assert rep.ok and rows["vjp"].kinks == 2 and rows["jvp"].kinks == 2 and rows["vjp"].kink_index == (0, 0)
    assert rows["vjp"].max_abs_err < 1e-9  # the kinks are left out of the errors
    strict = gk.gradcheck(gk.ReLU(), x, allow_kinks=False)
    assert not strict.ok and strict.kinks == rep.kinks and "allow_kinks=False" in str(strict)


def test_one_kink_seen_by_the_vjp_and_the_jvp_counts_once():
    rep = gk.gradcheck(gk.ReLU(), np.array([-1.0, 0.0, 2.0]))
    rows = {r.check: r for r in rep.results}
    assert rows["vjp"].kinks == 1 and rows["jvp"].kinks == 1
    assert rep.kinks == 1 and "(1 kink: a non-differentiable point, skipped)" in str(rep)


def test_a_kink_inside_the_stencil_but_not_at_the_point():
    h = gk.gradcheck(gk.ReLU(), np.ones(2)).step
    for offset in (0.3, 0.75, -0.5):  # the kink at 0 lies between x - h and x + h
        rep = gk.gradcheck(gk.ReLU(), np.array([offset * h, 1.5, -0.5]))
        assert rep.ok and rep.results[0].kinks == 1, (offset, str(rep))
    rep = gk.gradcheck(gk.ReLU(), np.array([0.3 * h, 1.5]), vjp=lambda x, g: g * 0.5)  # wrong on the right piece
    assert not rep.ok and rep.results[0].worst_index == (1,)


@pytest.mark.parametrize("seed", range(3))
def test_a_wrong_derivative_at_smooth_points_is_never_called_a_kink(seed):
    x = np.random.default_rng(seed).standard_normal((4, 6))
    for dtype in (np.float64, np.float32):
        rep = gk.gradcheck(gk.Softmax(), x.astype(dtype), vjp=_elementwise_softmax_bug, rng=seed)
        assert not rep.ok and rep.kinks == 0


def test_kink_probes_cost_two_evaluations_per_failing_entry_only():
    x = np.random.default_rng(9).standard_normal(50)
    x[[3, 17]] = 0.0
    f = _Counted(gk.ReLU())
    rep = gk.gradcheck(f, x, vjp=gk.ReLU().vjp)
    assert rep.ok and rep.kinks == 2
    assert f.calls == 1 + 2 * 50 + 2 * 2


def test_float32_gradcheck_model_uses_float32_tolerances():
    from gradkit import nn

    X = np.random.default_rng(10).standard_normal((5, 3))
    model = nn.Sequential([nn.Dense(3, 4, rng=0), "tanh", nn.Dense(4, 2, rng=1)])  # float32
    rep = nn.gradcheck_model(model, X, np.array([0, 1, 1, 0, 1]), gk.compose(gk.Softmax(), gk.CrossEntropyLoss()))
    assert rep.ok and rep.dtype == "float32", str(rep)


def test_rows_built_from_the_vjp_say_they_are_no_independent_check():
    sm = gk.Softmax()
    x = np.array([[0.3, -1.2, 2.0, 0.5]])
    wrong = gk.custom_activation(lambda z: sm(z), vjp=lambda z, g, y: g * y * (1 - y), name="diag_softmax")
    rows = {r.check: r for r in gk.gradcheck(wrong, x).results}
    assert not rows["vjp"].ok and not rows["jvp"].ok  # the finite differences catch it
    assert rows["adjoint"].ok and "derived from the VJP: this cannot fail" in rows["adjoint"].note
    assert rows["jacobian"].ok and "not an independent check" in rows["jacobian"].note
    assert wrong.derived_from_vjp == {"jvp", "jacobian"}
    given = gk.custom_activation(lambda z: sm(z), vjp=lambda z, g: sm.vjp(z, g), jvp=lambda z, v: sm.jvp(z, v),
                                 name="given_softmax")
    assert given.derived_from_vjp == {"jacobian"}
    rows = {r.check: r for r in gk.gradcheck(given, x).results}
    assert rows["adjoint"].note == "" and "not an independent check" in rows["jacobian"].note
    assert all(r.note == "" for r in gk.gradcheck(sm, x).results)  # a built-in's rows are independent
