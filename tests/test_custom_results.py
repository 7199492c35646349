"""What a user's function may return to ``custom_activation``/``custom_loss``: every foreign result type
(matrix, masked array, other ndarray subclasses, lists, tuples, Python and NumPy scalars, 0-d arrays,
complex, object, a wrong shape) in every slot (forward, vjp, jvp, jacobian, value, grad) is either
converted exactly to a plain array (the same numbers as the plain function's) or refused naming the
function, never a different number."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from array_api_compat import array_namespace

import gradkit as gk


def sp_forward(x):
    xp = array_namespace(x)
    s = xp.logaddexp(xp.zeros_like(x), x)
    return s / xp.sum(s, axis=-1, keepdims=True)


def _sp_parts(x):
    s = np.logaddexp(0.0, x)
    return np.exp(x - s).astype(x.dtype), s.sum(-1, keepdims=True)


def sp_vjp(x, g, y):
    sig, total = _sp_parts(x)
    return sig / total * (g - (g * y).sum(-1, keepdims=True))


def sp_jvp(x, v, y):
    sig, total = _sp_parts(x)
    return (sig * v - y * (sig * v).sum(-1, keepdims=True)) / total


def sp_jacobian(x, y):
    sig, total = _sp_parts(x)
    return (np.eye(x.shape[-1], dtype=x.dtype) - y[..., :, None]) * (sig / total)[..., None, :]


def log_cosh(p, t):
    d = p - t
    return np.logaddexp(d, -d) - p.dtype.type(np.log(2.0))


def log_cosh_grad(p, t):
    return np.tanh(p - t)


class PlainSub(np.ndarray):
    """A subclass that changes nothing: converted to its ndarray view."""


def _ragged(out):
    rows = [list(r.ravel()) for r in out]
    rows[0] = rows[0][:-1]
    return rows


pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")

#: result kind -> (how the user's function turns its correct result into it, accepted?, error fragment)
KINDS = {
    "matrix": (lambda o: np.asmatrix(o.reshape(o.shape[0], -1)), False, "returned numpy.matrix; return a plain"),
    "masked": (lambda o: np.ma.masked_array(o, mask=o > o.mean()), False, "returned numpy.ma.MaskedArray"),
    "masked_nothing": (lambda o: np.ma.masked_array(o), False, "returned numpy.ma.MaskedArray"),
    "subclass": (lambda o: o.view(PlainSub), True, None),
    "list": (lambda o: o.tolist(), True, None),
    "tuple": (lambda o: tuple(o), True, None),
    "ragged_list": (_ragged, False, "returned a list that is not an array of real numbers"),
    "complex_list": (lambda o: (o + 1j).tolist(), False, "returned a list that is not an array of real numbers"),
    "python_float": (lambda o: float(o.ravel()[1]), False, "returned float, not an array"),
    "numpy_scalar": (lambda o: o.ravel()[1], False, r"returned shape \(\); expected"),
    "zero_d": (lambda o: np.asarray(o.ravel()[1]), False, r"returned shape \(\); expected"),
    "complex": (lambda o: o.astype(np.complex128), False, "returned dtype complex128 for x of dtype"),
    "object": (lambda o: o.astype(object), False, "returned dtype object for x of dtype"),
    "wrong_shape": (lambda o: o[..., :-1], False, r"returned shape \(3, (3|4, 3)\); expected"),
}


def _wrapping(fn, kind):
    """``fn`` with its result turned into ``kind``; the same signature (``y`` is passed as before)."""
    @functools.wraps(fn)
    def wrapped(*args):
        return KINDS[kind][0](fn(*args))
    return wrapped


def _activation(slot, kind):
    fns = {"forward": sp_forward, "vjp": sp_vjp, "jvp": sp_jvp, "jacobian": sp_jacobian}
    if kind is not None:
        fns[slot] = _wrapping(fns[slot], kind)
    return gk.custom_activation(fns["forward"], fns["vjp"], fns["jvp"], jacobian=fns["jacobian"], name="myact")


def _loss(slot, kind):
    fns = {"value": log_cosh, "grad": log_cosh_grad}
    if kind is not None:
        fns[slot] = _wrapping(fns[slot], kind)
    return gk.custom_loss(fns["value"], fns["grad"], name="myloss", reduction="none")


SLOTS = {  # slot -> (object built with that slot's result changed, the public call that uses it, its who)
    "forward": (_activation, lambda obj, a, b: obj(a), "custom activation 'myact'"),
    "vjp": (_activation, lambda obj, a, b: obj.vjp(a, b), "custom activation 'myact'"),
    "jvp": (_activation, lambda obj, a, b: obj.jvp(a, b), "custom activation 'myact'"),
    "jacobian": (_activation, lambda obj, a, b: obj.jacobian(a), "custom activation 'myact'"),
    "value": (_loss, lambda obj, a, b: obj(a, b), "custom loss 'myloss'"),
    "grad": (_loss, lambda obj, a, b: obj.grad(a, b), "custom loss 'myloss'"),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("slot", sorted(SLOTS))
def test_each_result_type_in_each_slot_is_converted_exactly_or_refused(slot, kind, dtype):
    rng = np.random.default_rng([sorted(SLOTS).index(slot), sorted(KINDS).index(kind)])
    a, b = (rng.standard_normal((3, 4)).astype(dtype) for _ in range(2))
    build, call, who = SLOTS[slot]
    expected = call(build(slot, None), a, b)
    _, accepted, fragment = KINDS[kind]
    if accepted:
        got = call(build(slot, kind), a, b)
        assert type(got) is np.ndarray and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    else:
        exc = ValueError if "shape" in fragment else TypeError
        with pytest.raises(exc, match=f"{who}: {slot} {fragment}"):
            call(build(slot, kind), a, b)


@pytest.mark.parametrize("kind", ["masked", "matrix"])
def test_compose_with_mse_refuses_a_foreign_forward_instead_of_a_wrong_loss(kind):
    rng = np.random.default_rng(7)
    x, t = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    act = gk.custom_activation(_wrapping(lambda z: z, kind), lambda z, g: g, name="myact")
    with pytest.raises(TypeError, match=f"custom activation 'myact': forward returned numpy.{'ma.' * (kind == 'masked')}"):
        gk.compose(act, gk.MSELoss())(x, t)
    plain = gk.custom_activation(lambda z: z, lambda z, g: g, name="plain")
    assert gk.compose(plain, gk.MSELoss())(x, t) == pytest.approx(np.mean((x - t) ** 2), rel=1e-12)


@pytest.mark.parametrize("scalar", [lambda v: float(v), lambda v: round(float(v)), lambda v: v[()]])
def test_a_number_where_a_0d_result_is_due_is_converted(scalar):
    x = np.asarray(np.random.default_rng(3).standard_normal())
    cube = gk.custom_activation(lambda z: scalar(z**3), lambda z, g: scalar(3 * z**2 * g), name="cube",
                                elementwise=True)
    got = cube(x)
    assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == np.float64
    assert got == np.float64(scalar(x**3))
    assert cube.vjp(x, np.asarray(0.7)) == np.float64(scalar(3 * x**2 * 0.7))


def test_a_python_bool_is_not_a_number_here():
    cube = gk.custom_activation(lambda z: True, lambda z, g: g, name="cube", elementwise=True)
    with pytest.raises(TypeError, match="forward returned bool, not an array"):
        cube(np.asarray(0.5))


@pytest.mark.parametrize("kind", ["list", "tuple", "matrix", "masked"])
def test_other_libraries_take_no_list_or_numpy_result(kind):
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    to = KINDS[kind][0]
    act = gk.custom_activation(lambda z: to(z.numpy()), lambda z, g: g, name="myact")
    with pytest.raises(TypeError, match="custom activation 'myact': forward returned"):
        act(x)
