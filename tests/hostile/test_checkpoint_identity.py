"""A checkpoint must not load as a different model: each layer's stored identity is checked.

Every hostile thing is generated here and its outcome asserted:

* a ``custom_activation`` named like a built-in (``relu``, ``tanh``, ``identity``, ``sigmoid``,
  ...), a subclass of a built-in activation or of ``Dense``: ``nn.save`` refuses it and writes
  nothing (a file already at the path stays as it was);
* a file whose stored parameters were edited (in the architecture, in the identity, or only
  in their JSON type: ``2`` for ``2.0``): ``nn.load`` refuses it;
* a custom activation saved while registered from one module, then the name registered to
  another function, from another module or of another name in the same one, or taken by a
  built-in: ``nn.load`` refuses it; a model whose custom activation is not the one registered
  under its name: ``nn.save`` refuses it;
* a registered custom activation whose identity matches: it loads and computes the same.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn

HEADER = "__gradkit__"


def cube(x):
    return x**3


def cube_vjp(x, g, y):
    return g * 3 * x**2


def softsign(x):
    return x / (1 + abs(x))


def softsign_vjp(x, g, y):
    return g / (1 + abs(x)) ** 2


@pytest.fixture(autouse=True)
def clean_registry():
    """Every test starts and ends with the built-in activation names only."""
    yield
    for name in set(gk.activations.names()) - set(gk.activations.builtin_names()):
        gk.activations.unregister(name)


def _x():
    return np.random.default_rng(3).standard_normal((7, 3)).astype(np.float32)


def _model(act, *more):
    return nn.Sequential([nn.Dense(3, 4, rng=0), act, nn.Dense(4, 2, rng=1), *more])


def _rewrite(path, edit):
    """Rewrite the checkpoint's JSON header in place: ``edit(header)`` changes the dict; the arrays stay."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays[HEADER].tobytes().decode("utf-8"))
    edit(header)
    arrays[HEADER] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


# --- save refuses a layer that its name would not rebuild ----------------------------------------


@pytest.mark.parametrize(
    ("name", "builtin", "elementwise"),
    [("relu", "ReLU", True), ("tanh", "Tanh", True), ("identity", "Identity", True), ("sigmoid", "Sigmoid", True),
     ("softmax", "Softmax", False), ("leaky_relu", "LeakyReLU", True)],
)
def test_a_custom_activation_named_like_a_builtin_is_refused_and_nothing_is_written(tmp_path, name, builtin,
                                                                                     elementwise):
    act = gk.custom_activation(cube, cube_vjp, name=name, elementwise=elementwise)
    model = _model(act)
    target = tmp_path / "model.npz"
    pattern = (rf"model cannot be checkpointed: layer 1: its activation is named '{name}', the name of gradkit's "
               rf"built-in {builtin}, but it is the custom '{name}' defined by 'cube' in module '{__name__}' .*"
               rf"load would rebuild {builtin}\. Give the custom function a distinct name and register it: .*"
               rf"gk\.activations\.register\('my_{name}', act\)")
    with pytest.raises(ValueError, match=pattern):
        nn.save(model, target)
    assert os.listdir(tmp_path) == []  # no file, no temp file

    nn.save(_model("relu"), target)  # a checkpoint already at the path
    before = target.read_bytes()
    with pytest.raises(ValueError, match=f"its activation is named '{name}'"):
        nn.save(model, target)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]


def test_the_fix_the_message_gives_works(tmp_path):
    act = gk.custom_activation(cube, cube_vjp, name="my_relu", elementwise=True)
    gk.activations.register("my_relu", act)
    model = _model(act)
    nn.save(model, tmp_path / "m.npz")
    np.testing.assert_array_equal(nn.load(tmp_path / "m.npz").forward(_x()), model.forward(_x()))


class LouderReLU(gk.ReLU):
    """A subclass keeps the name "relu" but computes something else."""

    def compute_value(self, xp, x):
        return 2 * super().compute_value(xp, x)


class ShiftedDense(nn.Dense):
    def forward(self, x, *, training=False):
        return super().forward(x, training=training) + 1


def test_subclasses_of_builtins_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"layer 1: its activation is named 'relu', the name of gradkit's built-in "
                                         rf"ReLU, but it is the custom 'relu' defined by 'LouderReLU' in module "
                                         rf"'{__name__}'"):
        nn.save(_model(LouderReLU()), tmp_path / "a.npz")
    model = nn.Sequential([ShiftedDense(3, 4, rng=0), "relu"])
    with pytest.raises(ValueError, match=r"model cannot be checkpointed: layer 0: the model's layer is the custom "
                                         rf"'Dense' defined by 'ShiftedDense' in module '{__name__}' .*but load "
                                         r"would rebuild gradkit's built-in 'Dense'"):
        nn.save(model, tmp_path / "b.npz")
    assert os.listdir(tmp_path) == []


def test_a_custom_activation_other_than_the_registered_one_is_refused(tmp_path):
    gk.activations.register("squash", gk.custom_activation(softsign, softsign_vjp, name="squash", elementwise=True))
    mine = gk.custom_activation(cube, cube_vjp, name="squash", elementwise=True)  # same name, not registered
    with pytest.raises(ValueError, match=r"layer 1: the model's layer is the custom 'squash' defined by 'cube' .*"
                                         r"but load would rebuild the custom 'squash' defined by 'softsign'"):
        nn.save(_model(mine), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


# --- load refuses edited parameters --------------------------------------------------------------


def _parametrized(tmp_path):
    model = _model(nn.ActivationLayer("leaky_relu", negative_slope=0.2),
                   nn.ActivationLayer("softplus", beta=2.0), nn.ActivationLayer("softmax", temperature=0.5))
    path = tmp_path / "m.npz"
    nn.save(model, path)
    return model, path


def _set(where, layer, key, value):
    def edit(header):
        entry = header[where][layer]
        (entry["params"] if where == "identity" or "params" in entry else entry)[key] = value
    return edit


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (_set("architecture", 1, "negative_slope", 0.3),
         (r"layer 1 \('leaky_relu'\): the file's identity stores params \{\"axis\": -1, \"negative_slope\": 0\.2\}, "
         r"but its architecture rebuilds params \{\"axis\": -1, \"negative_slope\": 0\.3\}")),
        (_set("identity", 4, "temperature", 2.0), (r"layer 4 \('softmax'\): the file's identity stores params .*"
                                                   r"\"temperature\": 2\.0\}, but its architecture rebuilds .*0\.5\}")),
        (_set("identity", 3, "beta", 2), (r"layer 3 \('softplus'\): .*stores params \{\"axis\": -1, \"beta\": 2\}, "
                                         r"but its architecture rebuilds params \{\"axis\": -1, \"beta\": 2\.0\}")),
        (_set("identity", 2, "in_features", 5), r"layer 2 \('Dense'\): the file's identity stores params"),
        (_set("architecture", 0, "init", "glorot"), r"layer 0 \('Dense'\): the file's identity stores params"),
        (_set("identity", 1, "alpha", 1.0), r"layer 1 \('leaky_relu'\): .*\"alpha\": 1\.0"),
    ],
    ids=["arch-slope", "identity-temperature", "int-for-float", "dense-identity", "dense-arch", "extra-param"],
)
def test_edited_parameters_are_refused(tmp_path, edit, pattern):
    _, path = _parametrized(tmp_path)
    nn.load(path)  # as saved: fine
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=rf"m\.npz: {pattern}"):
        nn.load(path)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda h: h.pop("identity"), r"the header's 'identity' is missing or of the wrong type; got None"),
        (lambda h: h.update(identity={"0": {}}), r"the header's 'identity' is missing or of the wrong type"),
        (lambda h: h["identity"].pop(), r"the header's 'identity' lists 4 layer entries; the architecture has 5"),
        (lambda h: h["identity"].__setitem__(1, "leaky_relu"), r"layer 1: the file says 'leaky_relu', but"),
        (lambda h: h["identity"][1].update(builtin=1), r"layer 1: the file says .*\"builtin\": 1.*, but 'leaky_relu'"),
        (lambda h: h["identity"][1].update(name="relu"), r"layer 1: the file says gradkit's built-in 'relu'"),
        (lambda h: h["identity"][1].update(module="gradkit.activations"), r"layer 1: the file says .*\"module\""),
    ],
    ids=["missing", "not-a-list", "too-short", "not-a-dict", "builtin-int", "other-name", "extra-key"],
)
def test_a_malformed_identity_is_refused(tmp_path, edit, pattern):
    _, path = _parametrized(tmp_path)
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=rf"m\.npz: {pattern}"):
        nn.load(path)


# --- load refuses a name that now resolves to other code -----------------------------------------


PLUGIN = """
import gradkit as gk

def {fn}(x):
    return {body}

def vjp(x, g, y):
    return g * {grad}

gk.activations.register("cubic", gk.custom_activation({fn}, vjp, name="cubic", elementwise=True), replace=True)
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Two modules that register a different "cubic"; ``load_plugin(name)`` imports one afresh."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "plugin_a.py").write_text(textwrap.dedent(PLUGIN.format(fn="forward", body="x**3", grad="3 * x**2")))
    (folder / "plugin_b.py").write_text(textwrap.dedent(PLUGIN.format(fn="forward", body="2 * x**3",
                                                                      grad="6 * x**2")))
    (folder / "plugin_c.py").write_text(textwrap.dedent(PLUGIN.format(fn="forward", body="x**3", grad="3 * x**2")
                                                        + PLUGIN.format(fn="other", body="x**3 - 1",
                                                                        grad="3 * x**2")))
    monkeypatch.syspath_prepend(str(folder))

    def load_plugin(name):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    yield load_plugin
    for name in ("plugin_a", "plugin_b", "plugin_c"):
        sys.modules.pop(name, None)


def test_a_name_registered_again_from_another_module_is_refused(tmp_path, plugins):
    plugins("plugin_a")
    model = _model("cubic")
    path = tmp_path / "m.npz"
    nn.save(model, path)
    np.testing.assert_array_equal(nn.load(path).forward(_x()), model.forward(_x()))  # the same registration: fine

    gk.activations.unregister("cubic")
    plugins("plugin_b")  # another "cubic": 2 x³
    with pytest.raises(ValueError, match=r"m\.npz: layer 1: the file says the custom 'cubic' defined by 'forward' in "
                                         r"module 'plugin_a' with params \{\"axis\": -1\}, but 'cubic' now resolves to "
                                         r"the custom 'cubic' defined by 'forward' in module 'plugin_b' .*Import or "
                                         r"register what the model was saved with under that name"):
        nn.load(path)

    plugins("plugin_a")  # registered again from the module it was saved from: loads, computes the same
    np.testing.assert_array_equal(nn.load(path).forward(_x()), model.forward(_x()))


def test_a_name_registered_again_to_another_function_of_the_same_module_is_refused(tmp_path, plugins):
    plugins("plugin_c")  # registers "cubic" as forward, then replaces it by other
    gk.activations.register("cubic", gk.custom_activation(sys.modules["plugin_c"].forward, sys.modules["plugin_c"].vjp,
                                                          name="cubic", elementwise=True), replace=True)
    path = tmp_path / "m.npz"
    nn.save(_model("cubic"), path)
    plugins("plugin_c")  # importing it afresh registers "other" under the name last
    with pytest.raises(ValueError, match=r"layer 1: the file says the custom 'cubic' defined by 'forward' in module "
                                         r"'plugin_c' .*now resolves to the custom 'cubic' defined by 'other' in "
                                         r"module 'plugin_c'"):
        nn.load(path)


def test_a_name_now_taken_by_a_builtin_is_refused(tmp_path):
    """A custom "tanh" of an older gradkit (or a crafted file) does not load as the built-in tanh."""
    gk.activations.register("squash", gk.custom_activation(softsign, softsign_vjp, name="squash", elementwise=True))
    path = tmp_path / "m.npz"
    nn.save(_model("squash"), path)

    def rename(header):
        header["architecture"][1]["name"] = header["identity"][1]["name"] = "tanh"

    _rewrite(path, rename)
    with pytest.raises(ValueError, match=r"layer 1: the file says the custom 'tanh' defined by 'softsign' in module "
                                         rf"'{__name__}' .*but 'tanh' now resolves to gradkit's built-in 'tanh'"):
        nn.load(path)


# --- what matches loads, and computes exactly the same -------------------------------------------


@pytest.mark.parametrize("register", ["instance", "factory", "class"])
def test_a_registered_custom_function_with_the_same_params_loads_and_computes_the_same(tmp_path, register):
    if register == "instance":
        act = gk.activations.register("squash", gk.custom_activation(softsign, softsign_vjp, name="squash", axis=-1))
    elif register == "factory":  # fresh objects on each call: the same code, so the same identity
        gk.activations.register("squash", lambda axis=-1: gk.custom_activation(softsign, softsign_vjp, name="squash",
                                                                               axis=axis))
        act = gk.activations.get("squash", axis=-1)
    else:
        cls = type("Louder", (LouderReLU,), {"name": "squash", "__module__": __name__})
        gk.activations.register(cls)
        act = cls()
    model = _model(act, nn.ActivationLayer("softplus", beta=0.7), nn.ActivationLayer("entmax_bisect", alpha=1.3))
    path = tmp_path / "m.npz"
    nn.save(model, path)
    loaded = nn.load(path)
    np.testing.assert_array_equal(loaded.forward(_x()), model.forward(_x()))
    assert type(loaded.layers[1].activation) is type(act)
    assert loaded.layers[3].activation.beta == 0.7 and loaded.layers[4].activation.alpha == 1.3
    with np.load(path, allow_pickle=False) as f:
        identity = json.loads(f[HEADER].tobytes())["identity"]
    assert identity[1]["builtin"] is False and identity[1]["module"] == __name__
    assert identity[1]["qualname"] == ("Louder" if register == "class" else "softsign")
    assert identity[3] == {"name": "softplus", "builtin": True, "params": {"beta": 0.7, "axis": -1}}
