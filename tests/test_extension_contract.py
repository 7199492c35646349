"""The contract a user's own code touches: parameters come from the constructor (``get_params``),
and layers name their forward caches in the public ``cache_attrs``."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn


@pytest.fixture(autouse=True)
def clean_registries():
    """Every test starts and ends with the built-in names only."""
    yield
    for registry in (gk.activations, gk.losses):
        for name in set(registry.names()) - set(registry.builtin_names()):
            registry.unregister(name)


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
