"""The top-level ``gk.get`` / ``gk.names`` / ``gk.register`` / ``gk.unregister``: both registries,
activations and losses; ``gk.activations.*`` and ``gk.losses.*`` are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk

pytestmark = pytest.mark.usefixtures("clean_registries")  # tests/conftest.py


class Cube(gk.ElementwiseActivation):
    name = "cube_top"

    def compute_value(self, xp, x):
        return x**3

    def compute_derivative(self, xp, x, y):
        return 3 * x**2


class Quartic(gk.losses.ElementwiseLoss):
    name = "quartic_top"

    def compute_terms(self, xp, p, t):
        return (p - t) ** 4, 4 * (p - t) ** 3


def test_get_builds_losses_and_activations_by_name():
    assert gk.get("mse") == gk.MSELoss() and type(gk.get("mse")) is gk.MSELoss
    assert gk.get("huber", delta=2.0) == gk.HuberLoss(delta=2.0) != gk.HuberLoss()
    assert gk.get("softmax", axis=0) == gk.Softmax(axis=0)
    p, t = np.random.default_rng(0).standard_normal((2, 4, 3))
    assert float(gk.get("mse")(p, t)) == pytest.approx(float(np.mean((p - t) ** 2)))


def test_every_name_resolves_in_its_own_registry():
    assert not set(gk.activations.builtin_names()) & set(gk.losses.builtin_names())  # no built-in in both
    for name in gk.activations.names():
        assert gk.get(name) == gk.activations.get(name)
    for name in gk.losses.names():
        assert gk.get(name) == gk.losses.get(name)


def test_names_is_one_sorted_list_of_both_registries():
    assert gk.names() == sorted(gk.activations.names() + gk.losses.names())
    assert "relu" in gk.names() and "cross_entropy" in gk.names()
    gk.losses.register(Quartic)
    assert "quartic_top" in gk.names() and gk.names() == sorted(gk.names())


@pytest.mark.parametrize("typo, match", [("crossentropy", "cross_entropy"), ("sofmax", "softmax"), ("hubr", "huber")])
def test_an_unknown_name_says_where_it_looked_and_what_is_close(typo, match):
    with pytest.raises(ValueError, match=rf"unknown name '{typo}'.*activation.*loss.*close matches: .*'{match}'"):
        gk.get(typo)
    with pytest.raises(ValueError, match=r"unknown name 'zzzzzz'.*gk.activations.register or gk.losses.register"):
        gk.get("zzzzzz")


def test_a_name_in_both_registries_asks_for_the_registry():
    class BothAct(Cube):
        name = "both_top"

    class BothLoss(Quartic):
        name = "both_top"

    gk.activations.register(BothAct)
    gk.losses.register(BothLoss)
    with pytest.raises(ValueError, match=r"'both_top' is both an activation and a loss.*gk.activations.get\('both_top'\)"):
        gk.get("both_top")
    with pytest.raises(ValueError, match=r"both an activation and a loss.*gk.losses.unregister\('both_top'\)"):
        gk.unregister("both_top")
    assert type(gk.activations.get("both_top")) is BothAct and type(gk.losses.get("both_top")) is BothLoss


def test_instances_pass_through_and_other_types_are_refused():
    act, loss = gk.Softmax(axis=0), gk.MSELoss(reduction="sum")
    assert gk.get(act) is act and gk.get(loss) is loss
    with pytest.raises(TypeError, match="name must be a registry name.*got int"):
        gk.get(3)


def test_register_dispatches_by_kind():
    assert gk.register(Cube) is Cube and "cube_top" in gk.activations.names() and "cube_top" not in gk.losses.names()
    quartic = Quartic(reduction="sum")
    gk.register("quartic_top", quartic)
    assert gk.losses.get("quartic_top") is quartic and "quartic_top" not in gk.activations.names()
    gk.unregister("cube_top")
    gk.unregister("quartic_top")
    assert "cube_top" not in gk.names() and "quartic_top" not in gk.names()

    @gk.register("cube_top")
    class Decorated(Cube):
        pass

    assert type(gk.get("cube_top")) is Decorated


def test_register_refuses_what_it_cannot_classify_and_unregister_what_is_not_there():
    with pytest.raises(TypeError, match=r"an Activation or a Loss.*gk.activations.register or gk.losses.register"):
        gk.register("factory_top", lambda **kw: Cube(**kw))
    with pytest.raises(TypeError, match="an Activation or a Loss"):
        gk.register("number_top", 42)
    with pytest.raises(ValueError, match="'relu' is a built-in activation"):
        gk.unregister("relu")
    with pytest.raises(ValueError, match="no activation or loss named 'nothing_top' is registered"):
        gk.unregister("nothing_top")


def test_the_registries_own_functions_are_unchanged():
    with pytest.raises(ValueError, match="unknown activation 'mse'"):
        gk.activations.get("mse")
    with pytest.raises(ValueError, match="unknown loss 'relu'"):
        gk.losses.get("relu")
    assert "mse" not in gk.activations.names() and "relu" not in gk.losses.names()


def test_the_top_level_namespace_is_consistent():
    assert all(hasattr(gk, name) for name in gk.__all__) and len(set(gk.__all__)) == len(gk.__all__)
    assert set(gk.activations.__all__) <= set(gk.__all__)
    namespace: dict = {}
    exec("from gradkit import *", namespace)  # noqa: S102 (a fixed string: what a star import gives)
    assert namespace["get"]("mse") == gk.MSELoss() and namespace["names"] is gk.names
    assert namespace["register"] is gk.register is not gk.activations.register
