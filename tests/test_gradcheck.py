"""gradcheck must catch wrong derivatives, say where, and pass correct ones."""

from __future__ import annotations

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
