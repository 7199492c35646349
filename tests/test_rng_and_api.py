"""SPEC 7 ``rng=`` (and the deprecated ``seed=``), ``nn.evaluate``'s signature, reprs and docstrings.

The pinned numbers below were printed by gradkit before ``rng=`` existed, with ``seed=``: ``rng=`` must give
the same bits (and ``seed=`` still does, with a ``DeprecationWarning``).
"""

from __future__ import annotations

import copy
import inspect
import pickle
import re
import warnings

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.check import random_target
from gradkit.nn.layers import from_config

F64 = np.float64
HEAD = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())

# printed by the code before this change: Dense(3, 2, init=..., seed=0, dtype=float64).params["W"].ravel()
PINNED_W = {
    "he": [0.10265829564204268, -0.10786316920127266, 0.522902904435612, 0.08565058699437483,
           -0.4373722116937453, 0.2952411260139676],
    "glorot": [0.30006802263971943, -0.5043720396356872, -1.0056766217290054, -1.0592348798055353,
               0.6863407064201135, 0.9043021616442999],
}
PINNED_DROPOUT = [2.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0]  # Dropout(0.5, seed=0) on ones((2, 4))
PINNED_GUMBEL = [-0.013159932702447984, 1.1570300134758764, 3.173983808415261, 4.0944001210118826]
# nn.fit(_model(), X, y, ...) below with seed=3, and with no seed at all (the default was seed=0)
PINNED_FIT = {
    3: ([0.7797975805645401, 0.63431829933081, 0.6065323238612021],
        [0.7445342567341515, 0.7519048638218563, 0.7721946121175249]),
    "default": ([0.7426629398606036, 0.6859786675689429, 0.7329188848690759],
                [0.935885285544358, 0.8757191525909498, 0.8540290723236786]),
}

OUR_WARNING = "use rng="


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((20, 3)), rng.integers(0, 2, 20)


def _model(**dropout_rng):
    return nn.Sequential([nn.Dense(3, 4, rng=0, dtype=F64), "tanh", nn.Dropout(0.3, **(dropout_rng or {"rng": 2})),
                          nn.Dense(4, 2, rng=1, dtype=F64)])


def _fit(model=None, **kwargs):
    X, y = _data()
    return nn.fit(model or _model(), X, y, loss=HEAD, optimizer=nn.SGD(0.1), epochs=3, batch_size=6,
                  validation_split=0.25, **kwargs)


# -- the same numbers as seed= gave --------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["he", "glorot"])
def test_dense_rng_int_gives_the_pinned_weights_of_seed(init):
    W = nn.Dense(3, 2, init=init, rng=0, dtype=F64).params["W"]
    assert W.ravel().tolist() == PINNED_W[init]
    with pytest.warns(DeprecationWarning, match=r"^use rng= instead of seed= in gradkit\.nn\.Dense\(\)"):
        old = nn.Dense(3, 2, init=init, seed=0, dtype=F64).params["W"]
    np.testing.assert_array_equal(old, W)


def test_dropout_and_gumbel_rng_int_give_the_pinned_draws():
    assert nn.Dropout(0.5, rng=0).forward(np.ones((2, 4)), training=True).ravel().tolist() == PINNED_DROPOUT
    gs = gk.GumbelSoftmax(rng=0)
    gs(np.zeros(4))
    assert gs.noise.tolist() == PINNED_GUMBEL


@pytest.mark.parametrize("key", [3, "default"])
def test_fit_rng_gives_the_histories_seed_gave(key):
    history = _fit(rng=key) if key != "default" else _fit()
    loss, val = PINNED_FIT[key]
    np.testing.assert_allclose(history["loss"], loss, rtol=1e-9)  # a changed shuffle moves these by ~1e-2
    np.testing.assert_allclose(history["val_loss"], val, rtol=1e-9)
    if key != "default":
        with pytest.warns(DeprecationWarning, match=r"^use rng= instead of seed= in gradkit\.nn\.fit\(\)"):
            old = _fit(seed=key)
        assert old["loss"] == history["loss"] and old["val_loss"] == history["val_loss"]


def test_gradcheck_and_gradcheck_model_rng_equal_seed():
    x = np.array([[0.3, -1.2, 2.0, 0.1]])
    new = gk.gradcheck(gk.Softmax(), x, rng=5, vjp=lambda x, g: g)  # a wrong VJP: errors depend on the draws
    with pytest.warns(DeprecationWarning, match=r"gradkit\.gradcheck\(\)"):
        old = gk.gradcheck(gk.Softmax(), x, seed=5, vjp=lambda x, g: g)
    assert (new.max_abs_err, new.worst_index) == (old.max_abs_err, old.worst_index)
    assert gk.gradcheck(gk.Softmax(), x, rng=6, vjp=lambda x, g: g).max_abs_err != new.max_abs_err
    model = nn.Sequential([nn.Dense(3, 2, rng=0, dtype=F64)])
    X, y = _data()
    report = nn.gradcheck_model(model, X[:4], y[:4], HEAD, rng=1)
    with pytest.warns(DeprecationWarning, match=r"gradkit\.nn\.gradcheck_model\(\)"):
        assert nn.gradcheck_model(model, X[:4], y[:4], HEAD, seed=1).max_abs_err == report.max_abs_err


def test_build_mlp_int_rng_seeds_layer_i_with_rng_plus_i_and_a_generator_feeds_them_all():
    from gradkit.apps.train_job import build_mlp

    model = build_mlp(5, (4, 3), 2, "relu", rng=10)
    ref = [nn.Dense(5, 4, rng=10), nn.Dense(4, 3, rng=11), nn.Dense(3, 2, init="glorot", rng=13)]
    for layer, expected in zip(model.layers[::2], ref):
        np.testing.assert_array_equal(layer.params["W"], expected.params["W"])
    with pytest.warns(DeprecationWarning, match=r"build_mlp\(\)"):
        old = build_mlp(5, (4, 3), 2, "relu", seed=10)
    np.testing.assert_array_equal(old.params["4.W"], model.params["4.W"])
    np.testing.assert_array_equal(build_mlp(5, (4, 3), 2, "relu", 10).params["0.W"], model.params["0.W"])  # by position
    g, g_ref = np.random.default_rng(4), np.random.default_rng(4)
    shared = build_mlp(5, (4,), 2, "relu", rng=g)
    np.testing.assert_array_equal(shared.params["0.W"], nn.Dense(5, 4, rng=g_ref).params["W"])
    np.testing.assert_array_equal(shared.params["2.W"], nn.Dense(4, 2, init="glorot", rng=g_ref).params["W"])


def test_split_and_scale_int_rng_is_the_random_state():
    pytest.importorskip("sklearn")
    from sklearn.model_selection import train_test_split

    from gradkit.apps.train_job import split_and_scale

    X = np.arange(80.0).reshape(40, 2)
    y = np.repeat([0, 1], 20)
    _, _, y_train, _, _ = split_and_scale(X, y, rng=3)
    np.testing.assert_array_equal(y_train, train_test_split(X, y, test_size=0.2, random_state=3, stratify=y)[2])
    a = split_and_scale(X, y, rng=np.random.default_rng(0))[0]
    assert np.array_equal(a, split_and_scale(X, y, rng=np.random.default_rng(0))[0])


# -- SPEC 7 semantics ------------------------------------------------------------------------------------------
def test_rng_none_is_fresh_entropy_and_ignores_numpy_global_seed():
    state = np.random.get_state()
    try:
        np.random.seed(1)
        a = nn.Dense(8, 8, rng=None).params["W"]
        np.random.seed(1)
        b = nn.Dense(8, 8).params["W"]  # Dense's default is None
    finally:
        np.random.set_state(state)
    assert not np.array_equal(a, b)
    gs1, gs2 = gk.GumbelSoftmax(), gk.GumbelSoftmax(rng=None)
    assert not np.array_equal(gs1(np.zeros(16)), gs2(np.zeros(16)))
    assert _fit(rng=None)["loss"] != _fit(rng=None)["loss"]


def test_a_generator_is_used_as_is_not_copied():
    g, ref = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(nn.Dense(3, 2, rng=g, dtype=F64).params["W"], ref.standard_normal((3, 2)) * np.sqrt(2 / 3))
    assert g.random() == ref.random()  # g advanced exactly by the layer's draws
    drop = nn.Dropout(0.5, rng=g)
    assert drop._rng is g
    gs = gk.GumbelSoftmax(rng=g)
    assert gs.rng is g
    gs(np.zeros(3))
    ref.gumbel(size=3)
    assert g.random() == ref.random()
    # fit draws its permutations from the Generator it is given, and leaves it advanced
    g, ref = np.random.default_rng(3), np.random.default_rng(3)
    history = _fit(rng=g)
    assert history["loss"] == _fit(rng=ref)["loss"]
    np.testing.assert_allclose(history["loss"], PINNED_FIT[3][0], rtol=1e-9)  # what rng=3 (and seed=3) gives
    assert g.random() == ref.random() != np.random.default_rng(3).random()


def test_seed_sequence_bit_generator_and_int_sequences_go_through_default_rng():
    W = nn.Dense(3, 2, rng=0, dtype=F64).params["W"]
    for rng in (np.random.SeedSequence(0), np.random.PCG64(0), np.int64(0)):
        np.testing.assert_array_equal(nn.Dense(3, 2, rng=rng, dtype=F64).params["W"], W)
    np.testing.assert_array_equal(nn.Dense(3, 2, rng=[1, 2], dtype=F64).params["W"],
                                  nn.Dense(3, 2, rng=np.random.default_rng([1, 2]), dtype=F64).params["W"])
    gs = gk.GumbelSoftmax(rng=np.array([1, 2]))
    assert hash(gs) == hash(gk.GumbelSoftmax(rng=[1, 2])) and gs == gk.GumbelSoftmax(rng=(1, 2))


def _entry_points():
    X, y = _data()
    gd = pytest.importorskip("gradkit.distributed")
    return {
        "Dense": lambda rng: nn.Dense(3, 2, rng=rng),
        "Dropout": lambda rng: nn.Dropout(0.5, rng=rng),
        "GumbelSoftmax": lambda rng: gk.GumbelSoftmax(rng=rng),
        "fit": lambda rng: nn.fit(_model(), X, y, loss=HEAD, epochs=1, rng=rng),
        "gradcheck": lambda rng: gk.gradcheck(gk.Softmax(), X[:2], rng=rng),
        "gradcheck_model": lambda rng: nn.gradcheck_model(_model(), X[:2], y[:2], HEAD, rng=rng),
        "distributed.fit": lambda rng: gd.fit(nn.Sequential([nn.Dense(3, 2, rng=0)]), X, y, loss=HEAD, rng=rng,
                                              client="tcp://127.0.0.1:1"),  # refused before any connection
        "random_target": lambda rng: random_target(gk.MSELoss(), (2, 2), rng),
    }


@pytest.mark.parametrize("name", ["Dense", "Dropout", "GumbelSoftmax", "fit", "gradcheck", "gradcheck_model",
                                  "distributed.fit", "random_target"])
@pytest.mark.parametrize("bad, error, fragment", [
    (np.random.RandomState(0), TypeError, (r"rng must be None, an int >= 0, a numpy\.random\.Generator.*got a "
                                           r"numpy\.random\.RandomState: the legacy RandomState is not accepted")),
    (np.random, TypeError, r"got the numpy\.random module"),
    (True, TypeError, r"rng must be .*; got the bool True"),
    (0.5, TypeError, r"rng must be .*; got float 0\.5"),
    ("0", TypeError, r"rng must be .*; got str '0'"),
    (-1, ValueError, r"rng must be an int >= 0 .*; got -1"),
    ([1, -2], ValueError, r"rng: a sequence of seeds must hold ints >= 0; got \[1, -2\]"),
])
def test_every_entry_point_refuses_what_spec7_refuses(name, bad, error, fragment):
    with pytest.raises(error, match=fragment):
        _entry_points()[name](bad)


def test_root_seed_for_the_distributed_streams():
    from gradkit._rng import as_generator, check_rng, root_seed

    assert root_seed(7) == 7 and root_seed(np.int32(7)) == 7
    g, ref = np.random.default_rng(1), np.random.default_rng(1)
    assert root_seed(g) == int(ref.integers(0, 2**63)) and g.random() == ref.random()
    assert root_seed(None) != root_seed(None)
    assert check_rng(None) is None and isinstance(as_generator(None), np.random.Generator)


# -- the deprecated seed= ------------------------------------------------------------------------------------
DEPRECATED = {
    "gradkit.nn.Dense": lambda **kw: nn.Dense(3, 2, **kw),
    "gradkit.nn.Dropout": lambda **kw: nn.Dropout(0.5, **kw),
    "gradkit.GumbelSoftmax": lambda **kw: gk.GumbelSoftmax(**kw),
    "gradkit.nn.fit": lambda **kw: nn.fit(_model(), *_data(), loss=HEAD, epochs=1, **kw),
    "gradkit.gradcheck": lambda **kw: gk.gradcheck(gk.Softmax(), _data()[0][:2], **kw),
}


@pytest.mark.parametrize("owner", sorted(DEPRECATED))
def test_seed_warns_naming_the_callable_and_seed_with_rng_is_a_type_error(owner):
    call = DEPRECATED[owner]
    with pytest.warns(DeprecationWarning) as record:
        call(seed=1)
    messages = [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]
    assert messages == [(f"use rng= instead of seed= in {owner}(): seed= is deprecated and will be removed "
                         "(rng=1 gives the same results as seed=1)")]
    assert record[0].filename == __file__  # points at the caller's line, not into gradkit
    with pytest.raises(TypeError, match=re.escape(f"{owner}() got both rng= and seed=; seed= is the deprecated "
                                                  "name of rng=: pass rng= only")):
        call(seed=1, rng=1)
    with pytest.raises(TypeError, match="got both rng= and seed="):
        call(seed=1, rng=None)  # an explicit rng=None counts too


def test_seed_with_a_positional_rng_is_a_type_error_and_signatures_show_both():
    with pytest.raises(TypeError, match=r"gradkit\.GumbelSoftmax\(\) got both rng= and seed="):
        gk.GumbelSoftmax(-1, 1.0, False, 0, seed=1)
    for fn in (nn.Dense, nn.Dropout, gk.GumbelSoftmax, nn.fit, gk.gradcheck, nn.gradcheck_model):
        params = inspect.signature(fn).parameters
        assert "rng" in params and params["seed"].kind is inspect.Parameter.KEYWORD_ONLY
        assert "deprecated" in repr(params["seed"].default)
    assert inspect.signature(nn.fit).parameters["rng"].default == 0  # fit stays deterministic by default
    assert inspect.signature(nn.Dense).parameters["rng"].default is None


def test_gumbel_by_name_and_its_old_attribute_still_work():
    with pytest.warns(DeprecationWarning, match=r"gradkit\.GumbelSoftmax"):
        gs = gk.activations.get("gumbel_softmax", seed=0)
    assert gs == gk.GumbelSoftmax(rng=0) and gs.rng == 0
    with pytest.warns(DeprecationWarning, match=r"^use rng= and the attribute \.rng instead of \.seed"):
        assert gs.seed == 0
    assert repr(gs) == "GumbelSoftmax(axis=-1, temperature=1.0, hard=False, rng=0)"


def test_gradkit_itself_never_emits_the_deprecation_warning():
    pytest.importorskip("sklearn")
    from gradkit.apps.train_job import build_mlp, split_and_scale
    from gradkit.sklearn import MLPClassifier

    X, y = _data()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=OUR_WARNING, category=DeprecationWarning)
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
        build_mlp(3, (4,), 2, "relu", rng=0)
        split_and_scale(np.vstack([X, X]), np.concatenate([y, y]), rng=0)
        nn.gradcheck_model(_model(), X[:3], y[:3], HEAD)


# -- checkpoints: the config keeps the key "seed" -------------------------------------------------------------
def test_a_random_activation_round_trips_through_a_checkpoint_under_the_key_seed(tmp_path):
    model = nn.Sequential([nn.Dense(3, 2, rng=0, dtype=F64), nn.ActivationLayer("gumbel_softmax", rng=3)])
    config = model.config()[1]
    assert config["params"]["seed"] == 3 and "rng" not in config["params"]  # format 1, as older files have it
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=OUR_WARNING, category=DeprecationWarning)
        nn.save(model, tmp_path / "m.npz")
        loaded = nn.load(tmp_path / "m.npz")  # an old checkpoint reads the same: its key is "seed" too
    assert loaded.layers[1].activation == gk.GumbelSoftmax(rng=3)
    assert from_config({"type": "Activation", "name": "gumbel_softmax", "params": {"rng": 4}}).activation.rng == 4
    with pytest.raises(ValueError, match=r"params give both 'seed' and 'rng'"):
        from_config({"type": "Activation", "name": "gumbel_softmax", "params": {"seed": 1, "rng": 1}})


def test_a_gumbel_pickled_before_the_rename_unpickles_with_rng():
    gs = gk.GumbelSoftmax(rng=5)
    state = gs.__getstate__()
    state["seed"] = state.pop("rng")  # what an object pickled by the old code holds
    old = gk.GumbelSoftmax.__new__(gk.GumbelSoftmax)
    old.__setstate__(state)
    assert old.rng == 5 and old == gs
    assert pickle.loads(pickle.dumps(gs)).rng == 5 and copy.deepcopy(gs).rng == 5


# -- nn.evaluate(model, X, y, *, loss) ------------------------------------------------------------------------
def test_evaluate_takes_fits_arguments():
    X, y = _data()
    model = _model()
    out = nn.evaluate(model, X, y, loss=HEAD, batch_size=7)
    assert out["loss"] == pytest.approx(float(HEAD(model.forward(X), y)), rel=1e-12)
    assert out["accuracy"] == np.mean(np.argmax(model.forward(X), axis=1) == y)
    onehot = nn.evaluate(model, X, y, loss=gk.compose(gk.Softmax(), gk.MSELoss()), one_hot=2)
    assert onehot["loss"] == pytest.approx(float(gk.compose(gk.Softmax(), gk.MSELoss())(model.forward(X), np.eye(2)[y])))
    names = list(inspect.signature(nn.evaluate).parameters)
    assert names == ["model", "X", "y", "loss", "batch_size", "one_hot"]
    assert names[:4] == list(inspect.signature(nn.fit).parameters)[:4]


@pytest.mark.parametrize("head", [HEAD, "cross_entropy", gk.CrossEntropyLoss()])
def test_evaluate_in_the_old_order_fails_loudly_showing_the_new_call(head):
    X, y = _data()
    expected = re.escape("call evaluate(model, X, y, loss=head)")
    with pytest.raises(TypeError, match=r"evaluate takes the arguments of fit: evaluate\(model, X, y, \*, loss.*"
                                        + expected):
        nn.evaluate(_model(), head, X, y)
    with pytest.raises(TypeError, match=expected):
        nn.evaluate(_model(), head, X, y, 256)
    with pytest.raises(TypeError, match=expected):
        nn.evaluate(_model(), head, X, loss=head)


def test_evaluate_checks_its_arguments():
    X, y = _data()
    with pytest.raises(TypeError, match="loss"):
        nn.evaluate(_model(), X, y)
    with pytest.raises(TypeError, match="model must be a gradkit.nn.Sequential; got Dense"):
        nn.evaluate(nn.Dense(3, 2), X, y, loss=HEAD)
    with pytest.raises(TypeError, match=r"got 4 positional arguments; loss, batch_size and one_hot are keyword-only"):
        nn.evaluate(_model(), X, y, 1024)


# -- reprs and docstrings -------------------------------------------------------------------------------------
def test_layer_and_model_reprs():
    assert repr(nn.Dense(784, 256)) == "Dense(784, 256, init='he', dtype=float32)"
    assert repr(nn.Dense(4, 3, init="glorot", dtype=F64)) == "Dense(4, 3, init='glorot', dtype=float64)"
    assert repr(nn.Dropout(0.5)) == "Dropout(rate=0.5)"
    assert repr(nn.ActivationLayer("relu")) == "ActivationLayer(relu)"
    assert repr(nn.ActivationLayer(gk.Softmax(axis=1))) == "ActivationLayer(Softmax(axis=1, temperature=1.0))"
    model = nn.Sequential([nn.Dense(4, 8), "relu", nn.Dropout(0.25), nn.Dense(8, 3, init="glorot")])
    assert repr(model) == ("Sequential([\n  Dense(4, 8, init='he', dtype=float32),\n  ActivationLayer(relu),\n"
                           "  Dropout(rate=0.25),\n  Dense(8, 3, init='glorot', dtype=float32)\n])")


def test_optimizer_reprs_show_the_constructor_arguments():
    assert repr(nn.SGD(lr=0.1, momentum=0.9, nesterov=True)) == "SGD(lr=0.1, momentum=0.9, nesterov=True)"
    assert repr(nn.Adam()) == "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08)"
    assert repr(nn.AdamW()) == "AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01)"
    opt = nn.SGD(0.5, weight_decay=1e-4, schedule=nn.StepLR(10, gamma=0.5))
    opt.set_epoch(20)  # the scheduled lr changes; the repr shows the constructor's lr
    assert repr(opt) == ("SGD(lr=0.5, momentum=0.0, nesterov=False, weight_decay=0.0001, "
                         "schedule=StepLR(step_size=10, gamma=0.5))")
    assert repr(nn.CosineLR(5)) == "CosineLR(epochs=5, min_factor=0.0)"


@pytest.mark.parametrize("cls, fragments", [
    (nn.Dense, ["Y = X W", r"X^\top G", r"G W^\top", "Parameters", "rng", "Examples", ">>> layer.grads"]),
    (nn.Dropout, [r"\frac{x \odot m}{1 - r}", r"\frac{g \odot m}{1 - r}", "Parameters", "rng", "Examples", ">>>"]),
])
def test_dense_and_dropout_have_numpy_docstrings_with_the_math_and_an_example(cls, fragments):
    doc = cls.__doc__
    assert doc is not None  # it used to sit after cache_attrs, where Python does not take it as the docstring
    for fragment in fragments:
        assert fragment in doc
