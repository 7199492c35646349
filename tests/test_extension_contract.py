"""The contract a user's own code touches: parameters come from the constructor (``get_params``), layers
name their forward caches in the public ``cache_attrs``, and ``custom_activation`` takes ``vjp(x, g)`` as
well as ``vjp(x, g, y)``."""

from __future__ import annotations

import functools
import inspect
import math
import re

import numpy as np
import pytest
from array_api_compat import array_namespace

import gradkit as gk
from gradkit import nn

pytestmark = pytest.mark.usefixtures("clean_registries")  # tests/conftest.py


# -- a user's activations and loss, each adding a constructor parameter and no other identity code -------------
class ScaledSoftplus(gk.ElementwiseActivation):
    """``y = softplus(beta x) / beta``, written by a user: ``beta`` is only stored under its own name."""

    name = "scaled_softplus_ext"

    def __init__(self, beta: float = 1.0, axis: int = -1) -> None:
        super().__init__(axis)
        self.beta = float(beta)

    def compute_value(self, xp, x):
        return xp.logaddexp(xp.zeros_like(x), self.beta * x) / self.beta

    def compute_derivative(self, xp, x, y):
        return 1.0 / (1.0 + xp.exp(-self.beta * x))


class SharpSoftmax(gk.AxisActivation):
    """``y = softmax(beta x)`` along ``axis``."""

    name = "sharp_softmax_ext"
    output_range = (0.0, 1.0)

    def __init__(self, axis: int = -1, beta: float = 1.0) -> None:
        super().__init__(axis)
        self.beta = float(beta)

    def compute_forward(self, xp, x, axis, mask):
        z = self.beta * x
        e = xp.exp(z - xp.max(z, axis=axis, keepdims=True))
        return e / xp.sum(e, axis=axis, keepdims=True)

    def compute_vjp(self, xp, x, y, g, axis, mask):
        return self.beta * y * (g - xp.sum(g * y, axis=axis, keepdims=True))

    def compute_jvp(self, xp, x, y, v, axis, mask):
        return self.beta * y * (v - xp.sum(v * y, axis=axis, keepdims=True))

    def compute_jacobian(self, xp, x, y, mask):
        eye = xp.eye(x.shape[-1], dtype=x.dtype)
        return self.beta * (y[..., :, None] * eye - y[..., :, None] * y[..., None, :])


class ScaledL1(gk.losses.ElementwiseLoss):
    """``scale · weight · |p - t|`` per element, with an array parameter."""

    name = "scaled_l1_ext"

    def __init__(self, scale: float = 1.0, weight=None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.scale = float(scale)
        self.weight = None if weight is None else np.asarray(weight, dtype=float)

    def compute_terms(self, xp, p, t):
        w = self.scale if self.weight is None else self.scale * self.weight
        return w * xp.abs(p - t), w * xp.sign(p - t)


class Misnamed(gk.ElementwiseActivation):
    """Keeps its constructor parameter under another name: its parameters cannot be read."""

    name = "misnamed_ext"

    def __init__(self, beta: float = 1.0, axis: int = -1) -> None:
        super().__init__(axis)
        self._beta = beta

    def compute_value(self, xp, x):
        return self._beta * x

    def compute_derivative(self, xp, x, y):
        return xp.full_like(x, self._beta)


ACTIVATIONS = [(ScaledSoftplus, "beta"), (SharpSoftmax, "beta")]


@pytest.mark.parametrize("cls, param", ACTIVATIONS)
def test_a_new_constructor_parameter_is_part_of_repr_and_round_trips(cls, param):
    act = cls(**{param: 2.5})
    assert act.get_params() == {"axis": -1, param: 2.5}
    assert f"{param}=2.5" in repr(act)
    assert eval(repr(act), {cls.__name__: cls}) == act


@pytest.mark.parametrize("cls, param", ACTIVATIONS)
def test_instances_with_different_parameters_differ_in_eq_and_hash(cls, param):
    a, b, same = cls(**{param: 2.0}), cls(**{param: 3.0}), cls(**{param: 2.0})
    assert a != b and a == same and hash(a) == hash(same)
    assert len({a, b, same}) == 2
    assert cls(**{param: 2.0}, axis=0) != a  # the inherited parameter counts too


@pytest.mark.parametrize("cls, param", ACTIVATIONS)
def test_the_registry_builds_and_rebuilds_with_the_new_parameter(cls, param):
    gk.activations.register(cls)
    built = gk.activations.get(cls.name, **{param: 3.0})
    assert type(built) is cls and getattr(built, param) == 3.0
    gk.activations.unregister(cls.name)
    gk.activations.register(cls.name, cls(**{param: 4.0}))  # an instance: get(name, axis=0) keeps its beta
    rebuilt = gk.activations.get(cls.name, axis=0)
    assert rebuilt == cls(**{param: 4.0}, axis=0) and getattr(rebuilt, param) == 4.0


@pytest.mark.parametrize("cls, param", ACTIVATIONS)
def test_a_checkpoint_keeps_the_new_parameter(cls, param, tmp_path):
    gk.activations.register(cls)
    act = cls(**{param: 2.5})
    model = nn.Sequential([nn.Dense(4, 5, rng=0, dtype=np.float64), act, nn.Dense(5, 3, rng=1, dtype=np.float64)])
    x = np.random.default_rng(2).standard_normal((6, 4))
    default = nn.Sequential([model.layers[0], cls(), model.layers[2]])
    assert not np.allclose(model.forward(x), default.forward(x))  # the parameter changes the output
    nn.save(model, tmp_path / "m.npz")
    loaded = nn.load(tmp_path / "m.npz")
    assert loaded.layers[1].activation == act and getattr(loaded.layers[1].activation, param) == 2.5
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    assert model.layers[1].config()["params"] == {"axis": -1, param: 2.5}


def test_a_new_parameter_passes_gradcheck_and_trains_through_its_hooks():
    x = np.random.default_rng(3).standard_normal((5, 4))
    assert gk.gradcheck(SharpSoftmax(beta=2.0), x, rng=0).ok
    assert gk.gradcheck(ScaledSoftplus(beta=0.5), x, rng=0).ok
    head = gk.compose(SharpSoftmax(beta=2.0), "cross_entropy")
    assert gk.gradcheck(head, x, target=np.array([0, 1, 2, 3, 0]), rng=0).ok


def test_a_parameter_stored_under_another_name_is_a_type_error_naming_class_and_parameter():
    act = Misnamed(beta=2.0)
    for read in (act.get_params, lambda: repr(act), lambda: hash(act), lambda: act == Misnamed(beta=3.0)):
        with pytest.raises(TypeError, match=r"Misnamed.*'beta'.*self\.beta = beta"):
            read()
    gk.activations.register("misnamed_ext", act)
    with pytest.raises(TypeError, match=r"Misnamed.*'beta'"):
        gk.activations.get("misnamed_ext", axis=0)


def test_a_constructor_taking_star_args_is_refused_at_construction():
    class Star(gk.ElementwiseActivation):
        name = "star_ext"

        def __init__(self, *scales, axis=-1):
            super().__init__(axis)
            self.scales = scales

    with pytest.raises(TypeError, match=r"Star\.__init__ takes \*scales.*named parameters"):
        Star(1.0, 2.0)


def test_get_params_checks_deep_and_follows_the_signature_order():
    with pytest.raises(TypeError, match="deep must be a bool; got 'yes'"):
        gk.Softmax().get_params(deep="yes")
    assert list(gk.BCEWithLogitsLoss().get_params()) == ["weight", "pos_weight", "reduction"]
    assert list(gk.GumbelSoftmax(rng=0).get_params()) == ["axis", "temperature", "hard", "rng"]  # no deprecated seed


def _builtins():
    return [gk.activations.get(n) for n in gk.activations.builtin_names()] + [
        gk.losses.get(n) for n in gk.losses.builtin_names()]


@pytest.mark.parametrize("obj", _builtins(), ids=repr)
def test_every_builtin_rebuilds_equal_from_its_params(obj):
    params = obj.get_params()
    rebuilt = type(obj)(**params)
    assert rebuilt == obj and hash(rebuilt) == hash(obj) and repr(rebuilt) == repr(obj)
    signature = list(inspect.signature(type(obj).__init__).parameters)[1:]
    assert list(params) == [name for name in signature if name != "seed"]  # seed: GumbelSoftmax's deprecated alias


# -- losses ------------------------------------------------------------------------------------------------
def test_a_loss_subclass_parameters_are_in_repr_eq_hash_and_the_registry():
    rng = np.random.default_rng(4)
    w = rng.random(3) + 0.5
    loss = ScaledL1(scale=2.0, weight=w)
    assert repr(loss) == f"ScaledL1(scale=2.0, weight={tuple(w.tolist())!r}, reduction='mean')"
    assert loss == ScaledL1(scale=2.0, weight=w.copy()) and hash(loss) == hash(ScaledL1(scale=2.0, weight=w.copy()))
    assert loss != ScaledL1(scale=3.0, weight=w) and loss != ScaledL1(scale=2.0, weight=w + 1.0)
    assert len({loss, ScaledL1(scale=2.0, weight=w.copy()), ScaledL1(scale=2.0)}) == 2
    p, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    assert not math.isclose(float(loss(p, t)), float(ScaledL1(scale=3.0, weight=w)(p, t)))
    gk.losses.register(ScaledL1)
    assert gk.losses.get("scaled_l1_ext", scale=2.0, weight=w) == loss


def test_builtin_losses_with_array_parameters_compare_by_value():
    w = np.array([1.0, 2.0, 0.5])
    a, b = gk.CrossEntropyLoss(weight=w), gk.CrossEntropyLoss(weight=w.copy())
    assert a == b and hash(a) == hash(b) and a != gk.CrossEntropyLoss(weight=w[::-1].copy())
    assert a != gk.CrossEntropyLoss() and gk.MSELoss() == gk.MSELoss() and gk.MSELoss() != gk.MAELoss()
    assert gk.EntmaxBisect(alpha=[[1.5], [2.0]]) == gk.EntmaxBisect(alpha=np.array([[1.5], [2.0]]))
    assert gk.EntmaxBisect(alpha=[[1.5], [2.0]]) != gk.EntmaxBisect(alpha=[[1.5], [2.5]])


def test_a_torch_weight_compares_by_value():
    torch = pytest.importorskip("torch")
    a = gk.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0]))
    assert a == gk.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0])) != gk.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0]))
    assert hash(a) == hash(gk.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0])))


# -- layers: the forward cache -----------------------------------------------------------------------------
def test_a_user_layer_names_its_cache_in_the_public_cache_attrs():
    class Square(nn.Layer):
        cache_attrs = ("_x",)

        def forward(self, x, *, training=False):
            self._x = x
            return x * x

        def backward(self, g, *, input_grad=True):
            return 2.0 * self._x * g

    layer = Square()
    layer.forward(np.random.default_rng(5).standard_normal((2, 3)))
    assert layer._x is not None
    layer.clear_cache()
    assert layer._x is None
    assert nn.Dense.cache_attrs == ("_x",) and nn.ActivationLayer.cache_attrs == ("_x", "_y")
    assert not hasattr(nn.Layer, "_cache_attrs")


# -- custom_activation: vjp(x, g) or vjp(x, g, y), chosen by the signature -----------------------------------
def sm_forward(x):
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def sm_vjp(x, g):  # the two-argument form: y recomputed
    y = sm_forward(x)
    return y * (g - array_namespace(x).sum(g * y, axis=-1, keepdims=True))


def sm_jvp(x, v):  # the softmax Jacobian is symmetric: the same formula
    return sm_vjp(x, v)


def sm_jacobian(x):
    xp = array_namespace(x)
    y = sm_forward(x)
    eye = xp.eye(x.shape[-1], dtype=x.dtype)
    return y[..., :, None] * eye - y[..., :, None] * y[..., None, :]


def two_arg_softmax(**kwargs):
    return gk.custom_activation(sm_forward, vjp=lambda x, g: sm_vjp(x, g), name="sm2", output_range=(0.0, 1.0),
                                **kwargs)


def _z(shape=(5, 4), seed=6):
    return np.random.default_rng(seed).standard_normal(shape)


def test_a_two_argument_vjp_trains_a_composed_head_like_the_builtin():
    z, labels = _z(), np.array([0, 3, 1, 2, 1])
    value, grad = gk.compose(two_arg_softmax(), "cross_entropy").value_and_grad(z, labels)
    ref_value, ref_grad = gk.compose(gk.Softmax(), "cross_entropy").value_and_grad(z, labels)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_two_argument_vjp_jvp_and_one_argument_jacobian_pass_gradcheck():
    z = _z()
    assert gk.gradcheck(two_arg_softmax(), z, rng=0).ok  # jvp and jacobian derived from the vjp
    given = two_arg_softmax(jvp=lambda x, v: sm_jvp(x, v), jacobian=lambda x: sm_jacobian(x))
    assert gk.gradcheck(given, z, rng=0).ok
    np.testing.assert_allclose(given.jacobian(z), gk.Softmax().jacobian(z), atol=1e-12)
    wrong = gk.custom_activation(sm_forward, vjp=lambda x, g: g, name="wrong")  # the check can fail
    assert not gk.gradcheck(wrong, z, rng=0).ok


def test_the_three_argument_form_still_gets_y():
    seen = []

    def vjp(x, g, y):
        seen.append(y)
        return sm_vjp(x, g)

    act = gk.custom_activation(sm_forward, vjp, name="sm3")
    z, g = _z(), _z(seed=7)
    np.testing.assert_allclose(act.vjp(z, g), gk.Softmax().vjp(z, g), atol=1e-12)
    np.testing.assert_allclose(seen[-1], sm_forward(z))


def test_partials_callable_objects_and_unreadable_signatures():
    class Vjp:
        def __call__(self, x, g):
            return sm_vjp(x, g)

    class Opaque:  # no signature inspect can read: taken to take y
        __signature__ = "unreadable"

        def __call__(self, x, g, y):
            return y * (g - (g * y).sum(-1, keepdims=True))

    z, g = _z(), _z(seed=8)
    ref = gk.Softmax().vjp(z, g)
    for vjp in (Vjp(), functools.partial(lambda scale, x, g: scale * sm_vjp(x, g), 1.0), Opaque()):
        np.testing.assert_allclose(gk.custom_activation(sm_forward, vjp, name="sm").vjp(z, g), ref, atol=1e-12)


@pytest.mark.parametrize("kwargs, label", [
    ({"vjp": lambda x: x}, "vjp"),
    ({"vjp": lambda x, g, y, extra: g}, "vjp"),
    ({"vjp": lambda x, *, g: g}, "vjp"),
    ({"vjp": sm_vjp, "jvp": lambda x: x}, "jvp"),
    ({"vjp": sm_vjp, "jacobian": lambda: None}, "jacobian"),
])
def test_a_wrong_signature_is_a_type_error_naming_both_forms(kwargs, label):
    short, full = {"vjp": ("x, g", "x, g, y"), "jvp": ("x, v", "x, v, y"), "jacobian": ("x", "x, y")}[label]
    pattern = rf"custom_activation: {label}=.*<lambda>.*{re.escape(f'{label}({short})')}.*{re.escape(f'{label}({full})')}"
    with pytest.raises(TypeError, match=pattern):
        gk.custom_activation(sm_forward, name="bad", **kwargs)
    with pytest.raises(TypeError, match=r"forward=.*<lambda>\(x, g\) cannot be called as forward\(x\)"):
        gk.custom_activation(lambda x, g: x, sm_vjp, name="bad")


def _tanh_models(elementwise_tanh):
    return nn.Sequential([nn.Dense(4, 6, rng=0, dtype=np.float64), elementwise_tanh,
                          nn.Dense(6, 3, rng=1, dtype=np.float64)])


def test_a_two_argument_vjp_in_a_layer_backpropagates_and_trains_like_the_builtin():
    tanh = gk.custom_activation(lambda x: np.tanh(x), vjp=lambda x, g: g * (1.0 - np.tanh(x) ** 2), name="tanh2",
                                elementwise=True)
    x, g = _z((8, 4)), _z((8, 3), seed=9)
    mine, ref = _tanh_models(tanh), _tanh_models(gk.Tanh())
    np.testing.assert_allclose(mine.forward(x), ref.forward(x), rtol=1e-12)
    np.testing.assert_allclose(mine.backward(g), ref.backward(g), rtol=1e-10, atol=1e-12)
    for name in ref.grads:
        np.testing.assert_allclose(mine.grads[name], ref.grads[name], rtol=1e-10, atol=1e-12)
    y = np.random.default_rng(10).integers(0, 3, 8)
    head = gk.compose("softmax", "cross_entropy")
    h_mine = nn.fit(mine, x, y, loss=head, epochs=2, batch_size=4, rng=0)
    h_ref = nn.fit(ref, x, y, loss=head, epochs=2, batch_size=4, rng=0)
    np.testing.assert_allclose(h_mine["loss"], h_ref["loss"], rtol=1e-10)
    for name in ref.params:
        np.testing.assert_allclose(mine.params[name], ref.params[name], rtol=1e-10, atol=1e-12)


def test_a_two_argument_vjp_under_torch_autograd():
    torch = pytest.importorskip("torch")
    gkt = pytest.importorskip("gradkit.torch")
    z, w = _z(), _z(seed=11)
    x = torch.tensor(z, requires_grad=True)
    (gkt.wrap(two_arg_softmax())(x) * torch.tensor(w)).sum().backward()
    x_ref = torch.tensor(z, requires_grad=True)
    (torch.softmax(x_ref, dim=-1) * torch.tensor(w)).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


def test_a_two_argument_vjp_and_jvp_under_jax_grad():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    gkj = pytest.importorskip("gradkit.jax")
    z, w = _z().astype(np.float32), _z(seed=12).astype(np.float32)
    f = gkj.wrap(two_arg_softmax(jvp=lambda x, v: sm_jvp(x, v)))
    grad = jax.grad(lambda x: jnp.sum(f(x) * w))(jnp.asarray(z))
    ref = jax.grad(lambda x: jnp.sum(jax.nn.softmax(x, axis=-1) * w))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ref), rtol=1e-5, atol=1e-6)
