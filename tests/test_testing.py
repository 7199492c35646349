"""gradkit.testing.assert_gradcheck: raises AssertionError with the gradcheck table on a wrong derivative,
passes correct ones (also at kinks, which it counts), in float64 and float32, per entry and in fast mode."""

from __future__ import annotations

import re

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.testing import assert_gradcheck


class DiagonalSoftmax(gk.Softmax):
    """The bug gradkit exists to fix: softmax's VJP taken as the elementwise y(1 - y) g."""

    def compute_vjp(self, xp, x, y, g, axis, mask):
        return g * y * (1 - y)


class DiagonalSoftmaxJVP(gk.Softmax):
    def compute_jvp(self, xp, x, y, v, axis, mask):
        return v * y * (1 - y)


def _x(dtype, shape=(4, 6), seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 1.5).astype(dtype)


DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fast", [False, True])
def test_the_elementwise_softmax_vjp_fails_with_the_table(dtype, fast):
    x = _x(dtype)
    with pytest.raises(AssertionError) as info:
        assert_gradcheck(DiagonalSoftmax(), x, fast=fast, msg="my softmax layer")
    text = str(info.value)
    assert text.startswith("my softmax layer\ngradcheck DiagonalSoftmax(axis=-1, temperature=1.0) at shape (4, 6) (")
    assert f"({np.dtype(dtype).name}, h=" in text and "FAILED" in text
    row = "vjp (fast)" if fast else "vjp       "
    assert re.search(re.escape(row) + r" .* WRONG", text), text
    # Softmax.compute_jvp is compute_vjp (J is symmetric), so the subclass's JVP is wrong too; the batched
    # Jacobian is the real one, and disagrees with that JVP
    assert re.search(r"jvp( \(fast\))? .* WRONG", text) and re.search(r"jacobian .* WRONG", text), text
    assert "kink" not in text
    assert_gradcheck(gk.Softmax(), x, fast=fast)  # the real one passes at the same point


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fast", [False, True])
def test_a_wrong_jvp_fails_and_the_right_one_passes(dtype, fast):
    x = _x(dtype, seed=1)
    with pytest.raises(AssertionError, match=r"jvp( \(fast\))? .* WRONG"):
        assert_gradcheck(DiagonalSoftmaxJVP(), x, fast=fast)
    report = assert_gradcheck(gk.Softmax(), x, fast=fast)
    assert report.ok and report.kinks == 0 and report.dtype == np.dtype(dtype).name


def test_it_returns_the_report_and_is_silent_when_right():
    x = _x(np.float64, (3, 5), seed=2)
    report = assert_gradcheck(gk.LogSoftmax(), x)
    assert isinstance(report, gk.GradcheckReport) and report.ok
    assert {r.check for r in report.results} == {"vjp", "jvp", "adjoint", "jacobian"}


def test_relu_at_exactly_zero_is_a_kink_that_passes_and_is_counted():
    x = np.array([[-1.3, 0.0, 0.7, 0.0, 2.1]])
    report = assert_gradcheck(gk.ReLU(), x)
    vjp = next(r for r in report.results if r.check == "vjp")
    assert vjp.kinks == 2 and vjp.kink_index == (0, 1) and vjp.ok
    assert report.kinks >= 2 and "kinks: non-differentiable points, skipped" in str(report)
    with pytest.raises(AssertionError, match=r"(?s)FAILED \(\d+ kinks.*WRONG, 2 kinks.*allow_kinks=False"):
        assert_gradcheck(gk.ReLU(), x, allow_kinks=False)
    assert_gradcheck(gk.ReLU(), x.astype(np.float32))


def _sparse_row_at_a_support_change():
    # support {0, 1}: tau = (1 + 0.5 - 1) / 2 = 0.25, and entry 2 sits exactly at tau
    return np.array([[1.0, 0.5, 0.25, -1.0], [0.3, -0.2, 1.1, 0.4]])


def test_sparsemax_at_a_support_change_is_a_kink_not_wrong():
    z = _sparse_row_at_a_support_change()
    y = gk.Sparsemax()(z)
    assert y[0, 2] == 0.0 and y[0, 1] == 0.25  # the threshold is exactly 0.25
    report = assert_gradcheck(gk.Sparsemax(), z)
    assert report.kinks > 0
    vjp = next(r for r in report.results if r.check == "vjp")
    assert vjp.kinks >= 1 and vjp.kink_index[0] == 0  # only the row at the support change
    # without the kink rule these entries are central-difference failures, i.e. the old false WRONG
    with pytest.raises(AssertionError, match="WRONG"):
        assert_gradcheck(gk.Sparsemax(), z, allow_kinks=False)


def test_entmax15_at_a_support_change_passes():
    # entmax-1.5 on z/2: tau = 0, (0.6)^2 + (0.8)^2 = 1, entry 2 at the threshold z/2 = tau
    z = np.array([[1.2, 1.6, 0.0, -1.0], [0.3, -0.2, 1.1, 0.4]])
    y = gk.Entmax15()(z)
    assert abs(y[0, 2]) < 1e-12 and abs(y[0].sum() - 1) < 1e-12
    report = assert_gradcheck(gk.Entmax15(), z)
    assert all(r.ok for r in report.results)
    # a wrong entmax VJP (sparsemax's) at the same point is still caught
    with pytest.raises(AssertionError, match=r"vjp .* WRONG"):
        assert_gradcheck(gk.Entmax15(), z, vjp=lambda x, g: gk.Sparsemax().vjp(x, g))


def test_an_abs_like_custom_function_kink_and_a_wrong_value_there():
    x = np.array([-2.0, -0.5, 0.0, 0.4, 1.5])

    def slope(at_zero, at=0.0):
        return lambda x: np.where(x == at, at_zero, np.sign(x))

    # sign(0) = 0 is what the central difference gives: no failure, no kink
    report = assert_gradcheck(np.abs, x, vjp=lambda x, g: g * np.sign(x))
    assert report.kinks == 0
    # the right derivative 1 (ReLU's convention) or a subgradient in between: a kink, counted, not an error
    for at_zero in (1.0, -1.0, 0.3):
        d = slope(at_zero)
        report = assert_gradcheck(np.abs, x, vjp=lambda x, g, d=d: g * d(x), jvp=lambda x, v, d=d: v * d(x))
        vjp = report.results[0]
        assert vjp.kinks == 1 and vjp.kink_index == (2,)
        assert re.search(r"one-sided derivatives -(\S+) and \1, got", vjp.note), vjp.note  # ∓u_2
    # 2 is no one-sided derivative of |x| at 0: WRONG, not a kink
    with pytest.raises(AssertionError, match=r"vjp .* \(2,\) .* WRONG"):
        assert_gradcheck(np.abs, x, vjp=lambda x, g: g * slope(2.0)(x))
    # a wrong derivative away from the kink stays WRONG
    with pytest.raises(AssertionError, match=r"vjp .* \(1,\) .* WRONG"):
        assert_gradcheck(np.abs, x, vjp=lambda x, g: g * slope(1.0, at=-0.5)(x))


def test_losses_heads_and_plain_functions_with_target():
    rng = np.random.default_rng(3)
    z, labels = rng.standard_normal((3, 4)), np.array([0, 3, 1])
    assert_gradcheck(gk.compose(gk.Softmax(), gk.MSELoss()), z, target=np.eye(4)[labels])
    assert_gradcheck(gk.CrossEntropyLoss(), gk.Softmax()(z), target=labels)
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="sum"))
    t = rng.uniform(0, 1, (3, 4))  # soft targets that do not sum to 1
    with pytest.raises(AssertionError, match="vjp .* WRONG"):  # the p - t shortcut
        assert_gradcheck(head, z, target=t, vjp=lambda z, g: g * (gk.Softmax()(z) - t))
    assert_gradcheck(lambda z, t: head(z, t), z, target=t, vjp=lambda z, g: head.vjp(z, t, g))


class Scale(nn.Layer):
    """A user's layer: y = x * w + b elementwise, with a deliberately switchable bug."""

    def __init__(self, n, bug=None):
        super().__init__()
        rng = np.random.default_rng(4)
        self.params = {"w": rng.standard_normal(n), "b": rng.standard_normal(n)}
        self.grads = {k: np.zeros(n) for k in self.params}
        self.bug = bug

    def forward(self, x, *, training=False):
        self._x = x
        return np.tanh(x * self.params["w"] + self.params["b"])

    def backward(self, g, *, input_grad=True):
        y = np.tanh(self._x * self.params["w"] + self.params["b"])
        d = g * (1 - y**2)
        self.grads["w"][...] = (d * self._x).sum(axis=0) * (2 if self.bug == "w" else 1)
        self.grads["b"][...] = d.sum(axis=0) if self.bug != "b" else g.sum(axis=0)
        return d * self.params["w"] if self.bug != "x" else d  # (no config(): the report still names it)


def test_a_users_own_layer_input_and_parameter_gradients():
    x = np.random.default_rng(5).standard_normal((3, 4))
    layer = Scale(4)
    w0 = layer.params["w"].copy()
    report = assert_gradcheck(layer, x)
    assert [r.check for r in report.results] == ["vjp", "vjp w", "vjp b"] and report.function == "Scale()"
    np.testing.assert_array_equal(layer.params["w"], w0)  # parameters restored
    for bug, row in (("x", "vjp       "), ("w", "vjp w     "), ("b", "vjp b     ")):
        with pytest.raises(AssertionError, match=re.escape(row) + ".* WRONG"):
            assert_gradcheck(Scale(4, bug=bug), x)
        with pytest.raises(AssertionError, match="WRONG"):
            assert_gradcheck(Scale(4, bug=bug), x, fast=True)
    np.testing.assert_array_equal(layer.params["w"], w0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradkit_layers_and_sequential_in_their_dtype(dtype):
    x = np.random.default_rng(6).standard_normal((5, 3)).astype(dtype)
    model = nn.Sequential([nn.Dense(3, 4, rng=0, dtype=dtype), "tanh", nn.Dense(4, 2, rng=1, dtype=dtype), "softmax"])
    report = assert_gradcheck(model, x)
    assert report.dtype == np.dtype(dtype).name
    assert [r.check for r in report.results] == ["vjp", "vjp 0.W", "vjp 0.b", "vjp 2.W", "vjp 2.b"]
    assert_gradcheck(nn.ActivationLayer("softmax"), x)
    assert_gradcheck(nn.Dense(3, 2, rng=0, dtype=dtype), x, fast=True)


def test_argument_errors_name_the_argument():
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="msg must be a str; got int"):
        assert_gradcheck(gk.Softmax(), x, msg=3)
    with pytest.raises(TypeError, match="fast must be True or False; got 'yes'"):
        assert_gradcheck(gk.Softmax(), x, fast="yes")
    with pytest.raises(TypeError, match="allow_kinks must be True or False; got 1"):
        assert_gradcheck(gk.Softmax(), x, allow_kinks=1)
    with pytest.raises(TypeError, match="not a layer"):
        assert_gradcheck(nn.Dense(3, 2, rng=0), x, target=x)
    with pytest.raises(TypeError, match="vjp must be a callable"):
        assert_gradcheck(np.tanh, x, vjp=np.ones(3))
    with pytest.raises(TypeError, match="f must be an activation, .*layer.*; got int"):
        assert_gradcheck(3, x)


def test_rng_is_spec7():
    x = _x(np.float64, (2, 5), seed=7)
    with pytest.raises(AssertionError) as a:
        assert_gradcheck(DiagonalSoftmax(), x, rng=3)
    with pytest.raises(AssertionError) as b:
        assert_gradcheck(DiagonalSoftmax(), x, rng=np.random.default_rng(3))
    with pytest.raises(AssertionError) as c:
        assert_gradcheck(DiagonalSoftmax(), x, rng=4)
    assert str(a.value) == str(b.value) != str(c.value)  # an int seeds default_rng; another seed, other draws
    with pytest.raises(TypeError, match="legacy RandomState"):
        assert_gradcheck(gk.Softmax(), x, rng=np.random.RandomState(0))
