"""Hostile input to training: learning rates and updates that overflow the
parameters' dtype, input that overflows the model's dtype or is complex, degenerate validation and
early-stopping arguments, an n_classes² one-hot matrix, NaN in one Dask block, and a Dask scheduler
address that accepts TCP connections but never speaks."""

from __future__ import annotations

import copy
import socket
import threading
import time
import tracemalloc

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn

OPTIMIZERS = {
    "sgd": lambda lr: nn.SGD(lr),
    "sgd-wd": lambda lr: nn.SGD(lr, weight_decay=0.1),
    "momentum": lambda lr: nn.SGD(lr, momentum=0.9),
    "nesterov-wd": lambda lr: nn.SGD(lr, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda lr: nn.Adam(lr),
    "adam-wd": lambda lr: nn.Adam(lr, weight_decay=0.1),
    "adamw": lambda lr: nn.AdamW(lr, weight_decay=0.1),
}
SOFTMAX_XENT = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())


def _model(dtype=np.float32, d=4, out=3):
    return nn.Sequential([nn.Dense(d, 8, rng=0, dtype=dtype), "tanh", nn.Dense(8, out, rng=1, dtype=dtype)])


def _data(n=64, d=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, classes, n)


def _snapshot(model, opt):
    return ({k: v.copy() for k, v in model.params.items()}, copy.deepcopy(opt.state), opt.steps)


def _assert_unchanged(model, opt, snap):
    params, state, steps = snap
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    assert opt.steps == steps
    assert sorted(opt.state) == sorted(state)
    for name, slot in state.items():
        assert sorted(opt.state[name]) == sorted(slot)
        for key, buf in slot.items():
            np.testing.assert_array_equal(opt.state[name][key], buf, err_msg=f"{name}.{key}")


# -- learning rates and updates that overflow ------------------------------------------------------
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_lr_overflowing_float32_is_refused_before_the_weights_are_touched(name):
    X, y = _data()
    model, opt = _model(np.float32), OPTIMIZERS[name](1e39)
    snap = _snapshot(model, opt)
    with pytest.raises(ValueError, match=r"lr=1e\+39 overflows the parameters' dtype float32"):
        nn.fit(model, X, y, loss=SOFTMAX_XENT, optimizer=opt, epochs=2, batch_size=16)
    _assert_unchanged(model, opt, snap)
    grads = {k: np.random.default_rng(1).standard_normal(v.shape).astype(np.float32) for k, v in model.params.items()}
    with pytest.raises(ValueError, match="lr=1e"):
        opt.step(model.params, grads)
    _assert_unchanged(model, opt, snap)
    # the same learning rate is representable in float64: no refusal up front
    model64 = _model(np.float64)
    OPTIMIZERS[name](1e39).check_lr(model64.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_an_update_that_overflows_changes_neither_params_nor_state(name, dtype):
    rng = np.random.default_rng(7)
    model, opt = _model(dtype), OPTIMIZERS[name](10.0)
    params = model.params
    for _ in range(2):  # build up momentum buffers / moments and a step count
        opt.step(params, {k: rng.standard_normal(v.shape).astype(dtype) * 1e-3 for k, v in params.items()})
    snap = _snapshot(model, opt)
    huge = float(np.finfo(dtype).max) / 4  # finite, but lr·g (SGD) or g·g (Adam's second moment) overflows
    grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
    last = list(params)[-1]  # the last parameter: every earlier update was computed (and, before, applied)
    grads[last][0] = huge
    with pytest.raises(nn.DivergenceError, match=rf"update of parameter '{last}' \({np.dtype(dtype)}\) is not finite"):
        opt.step(params, grads)
    _assert_unchanged(model, opt, snap)
    # the optimizer stays usable: a sane step goes through
    opt.step(params, {k: rng.standard_normal(v.shape).astype(dtype) * 1e-3 for k, v in params.items()})
    assert opt.steps == snap[2] + 1 and all(np.isfinite(v).all() for v in params.values())


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fit_reports_an_overflowing_update_with_the_epoch_and_keeps_everything(name):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((8, 4)) * 1e17  # finite in float32; gradients ~1e35 (finite), lr·g overflows
    y = rng.standard_normal(8)
    model = nn.Sequential([nn.Dense(4, 1, rng=0, dtype=np.float32)])
    opt = OPTIMIZERS[name](1e5) if name.startswith(("sgd", "momentum", "nesterov")) else OPTIMIZERS[name](1e38)
    snap = _snapshot(model, opt)
    with pytest.raises(nn.DivergenceError, match=r"epoch 1, batch 1; training stopped before updating"):
        nn.fit(model, X, y, loss="mse", optimizer=opt, epochs=1, batch_size=8)
    _assert_unchanged(model, opt, snap)


class _StepWithoutChecks(nn.SGD):
    """A user's optimizer whose own step writes whatever it computes (no finite check)."""

    def step(self, params, grads):
        for name, p in params.items():
            p -= self.lr * grads[name]


@pytest.mark.parametrize("make", [lambda: nn.SGD(0.1), lambda: nn.Adam(0.1), _StepWithoutChecks],
                         ids=["sgd", "adam", "own-step"])
def test_fit_names_overflowing_gradients_and_keeps_the_weights(make):
    """Finite loss, gradients that overflow (float32: x·g beyond 3.4e38): reported as such, nothing written. The
    built-in steps find it in their check of the updates; a step of the user's own gets the gradients checked
    first."""
    X = np.full((8, 3), 3e20, dtype=np.float32)
    y = np.zeros(8, dtype=np.float32)
    dense = nn.Dense(3, 1, rng=0, dtype=np.float32)
    dense.params["W"][...] = 1e-3  # z = 9e17, loss 8.1e35 (finite); dL/dW = 8 · 3e20 · 2.25e17 = 5.4e38 > 3.4e38
    dense.params["b"][...] = 0
    model = nn.Sequential([dense])
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(nn.DivergenceError, match=r"^the gradients overflowed at epoch 1, batch 1") as info:
        nn.fit(model, X, y, loss="mse", optimizer=make(), epochs=1, batch_size=8)
    assert info.value.reason == "the gradients overflowed"
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])


def test_schedule_and_grads_are_checked():
    opt = nn.SGD(0.1, schedule=lambda epoch: float("nan"))
    with pytest.raises(ValueError, match=r"schedule\(0\) gave the learning rate"):
        opt.set_epoch(0)
    with pytest.raises(TypeError, match="schedule must be a callable"):
        nn.SGD(0.1, schedule=3)
    model = _model(np.float64)
    params = model.params
    bad = {k: np.zeros((1,)) for k in params}
    with pytest.raises(ValueError, match=r"grads\['0.W'\] must have the shape of its parameter"):
        nn.SGD(0.1).step(params, bad)
    with pytest.raises(ValueError, match="grads has no entry for parameter"):
        nn.SGD(0.1).step(params, {})


# -- X and y: overflow, complex, degenerate validation -----------------------------------------------
def test_input_overflowing_the_models_float32_is_an_input_error_naming_X():
    X, y = _data()
    X[5, 2] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"X has values up to 1e\+39 .* float32") as err:
        nn.fit(_model(np.float32), X, y, loss=SOFTMAX_XENT, epochs=1)
    assert "learning rate" not in str(err.value)
    nn.fit(_model(np.float64), X / 1e39, y, loss=SOFTMAX_XENT, epochs=1)  # float64 model: fine
    Xv, yv = _data(n=8, seed=1)
    Xv[0, 0] = -1e39
    with pytest.raises(ValueError, match="validation_data X has values up to 1e"):
        nn.fit(_model(np.float32), _data()[0], y, loss=SOFTMAX_XENT, validation_data=(Xv, yv))
    with pytest.raises(ValueError, match="y has values up to 1e"):
        nn.fit(_model(np.float32, out=1), _data()[0], np.full(64, 1e39), loss="mse")
    with pytest.raises(ValueError, match="X has values up to 1e"):
        nn.evaluate(_model(np.float32), X, y, loss=SOFTMAX_XENT)


@pytest.mark.parametrize("where", ["X", "validation_data X"])
def test_complex_input_is_refused(where):
    X, y = _data()
    Xc = X + 1j
    args = {"loss": SOFTMAX_XENT, "epochs": 1}
    if where == "X":
        args.update(X=Xc, y=y)
    else:
        args.update(X=X, y=y, validation_data=(Xc[:8], y[:8]))
    with pytest.raises(TypeError, match=rf"{where} must be real; got complex data"):
        nn.fit(_model(), **args)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    ({"validation_split": 0.5}, ValueError, r"validation_split=0.5 holds out 1 of the 1 samples and leaves none"),
    ({"validation_data": (np.zeros((0, 4)), np.zeros(0, int))}, ValueError, "validation_data X must be a non-empty"),
    ({"validation_data": (np.full((2, 4), np.nan), np.zeros(2, int))}, ValueError, "validation_data X contains NaN"),
    ({"validation_data": (np.zeros((2, 3)), np.zeros(2, int))}, ValueError, "validation_data must have the shape"),
    ({"validation_data": (np.zeros((2, 4)),)}, ValueError, "validation_data must be a pair"),
    ({"validation_data": (np.zeros((2, 4)), np.zeros(2, int)), "validation_split": 0.5}, ValueError, "not both"),
    ({"validation_split": -0.5}, ValueError, "validation_split must be finite and >= 0"),
    ({"validation_split": 0.5, "early_stopping": 0}, ValueError, r"early_stopping must be .*an integer >= 1\); got 0"),
    ({"validation_split": 0.5, "early_stopping": -3}, ValueError, r"early_stopping must be .*; got -3"),
    ({"validation_split": 0.5, "early_stopping": 2.5}, TypeError, r"early_stopping must be .*got 2.5 \(float\)"),
    ({"one_hot": 3}, ValueError, "with one_hot=3, y must be 1-d integer class labels"),
])
def test_degenerate_validation_and_early_stopping(kwargs, exc, pattern):
    X, y = _data(n=1)
    with pytest.raises(exc, match=pattern):
        nn.fit(_model(np.float64), X, y.astype(float) if "one_hot" in kwargs else y, loss=SOFTMAX_XENT, **kwargs)


def test_nan_in_validation_targets_and_float_targets():
    X, y = _data()
    Y = np.eye(3)[y]
    Yv = Y[:4].copy()
    Yv[2, 1] = np.nan
    head = gk.compose(gk.Softmax(), gk.MSELoss())
    with pytest.raises(ValueError, match=r"validation_data y contains NaN or infinity \(NaN; first at row 2\)"):
        nn.fit(_model(np.float64), X, Y, loss=head, validation_data=(X[:4], Yv))
    Y[7, 0] = np.inf
    with pytest.raises(ValueError, match=r"y contains NaN or infinity \(infinity; first at row 7\)"):
        nn.fit(_model(np.float64), X, Y, loss=head)


def test_one_hot_per_batch_equals_the_full_one_hot_matrix():
    X, y = _data(n=50)
    head = gk.compose(gk.Softmax(), gk.MSELoss())
    a, b = _model(np.float64), _model(np.float64)
    ha = nn.fit(a, X, np.eye(3)[y], loss=head, epochs=3, batch_size=8, validation_split=0.2, rng=4)
    hb = nn.fit(b, X, y, loss=head, epochs=3, batch_size=8, validation_split=0.2, rng=4, one_hot=3)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert ha.records == {k: v for k, v in hb.records.items() if k != "time"} | {"time": ha["time"]}
    with pytest.raises(ValueError, match=r"labels in \[0, 2\]; got labels from 0 to 3"):
        nn.fit(_model(np.float64), X, np.r_[y[:-1], 3], loss=head, one_hot=3)


# -- the all-or-nothing step is allocation-free and exact (its own buffers, a dot-product check) ---------
def _steady(name, dtype=np.float64, shape=(256, 128), steps=2, seed=11):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal(shape).astype(dtype), "b": rng.standard_normal(shape[1]).astype(dtype)}
    grads = {k: (rng.standard_normal(v.shape) * 1e-2).astype(dtype) for k, v in params.items()}
    opt = OPTIMIZERS[name](1e-2)
    for _ in range(steps):
        opt.step(params, grads)
    return opt, params, grads


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_steady_state_step_allocates_no_parameter_sized_array(name):
    opt, params, grads = _steady(name)
    nbytes = sum(v.nbytes for v in params.values())  # 257 KiB; the old step allocated 2-8 of these per step
    peaks = []
    tracemalloc.start()
    try:
        for _ in range(3):  # steps 3 to 5; the least peak, in case another thread allocated meanwhile
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            opt.step(params, grads)
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()
    assert min(peaks) < 0.05 * nbytes, f"peaks {peaks} B during a step on {nbytes} B of parameters"
    assert opt.steps == 5


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_all_finite_agrees_with_isfinite_on_generated_arrays(dtype):
    rng = np.random.default_rng(5)
    big = float(np.finfo(dtype).max)
    cases = 0
    for trial in range(300):
        a = rng.standard_normal(int(rng.integers(0, 50))).astype(dtype)
        if trial % 3 == 0 and a.size:  # finite values whose squares (and sums) overflow: the exact fallback
            a[rng.integers(0, a.size, 3)] = dtype(big / 2) * rng.choice([-1, 1])
        if trial % 2 == 0 and a.size:
            a[rng.integers(0, a.size)] = rng.choice([np.inf, -np.inf, np.nan])
        shaped = a[: a.size // 2 * 2].reshape(-1, 2)[:, ::-1] if trial % 5 == 0 else a  # 2-d, non-contiguous
        assert nn.optim._all_finite(shaped) == bool(np.isfinite(shaped).all()), shaped
        cases += 1
    assert cases == 300


def test_finite_updates_whose_squares_overflow_are_applied():
    # the cheap check (a dot product) overflows for 1e20 in float32; the exact fallback must accept the step
    params = {"w": np.full((64, 8), 1e20, dtype=np.float32)}
    opt = nn.SGD(0.5, momentum=0.9)
    opt.step(params, {"w": np.full((64, 8), 1e19, dtype=np.float32)})
    np.testing.assert_allclose(params["w"], 1e20 - 0.5e19, rtol=1e-6)
    assert opt.steps == 1


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_nan_in_the_middle_parameter_changes_nothing_and_state_arrays_given_by_the_user_are_not_written(name):
    opt, params, grads = _steady(name, dtype=np.float32)
    params = {"a": params["b"].copy(), **params}
    opt.state = copy.deepcopy(opt.state)  # arrays this optimizer did not allocate: never reused as buffers
    mine = copy.deepcopy(opt.state)
    grads = {"a": np.zeros_like(params["a"]), **grads}
    bad = {k: v.copy() for k, v in grads.items()}
    bad["W"][3, 4] = np.nan
    snap = _snapshot_params(params, opt)
    with pytest.raises(nn.DivergenceError, match=r"update of parameter 'W' \(float32\) is not finite"):
        opt.step(params, bad)
    _assert_same(params, opt, snap)
    held = {name_: dict(slot) for name_, slot in opt.state.items()}
    for _ in range(3):
        opt.step(params, grads)
    for name_, slot in held.items():  # the arrays the user put in opt.state keep their values
        for key, buf in slot.items():
            np.testing.assert_array_equal(buf, mine[name_][key])
            assert all(buf is not other for other in opt.state[name_].values())


def _snapshot_params(params, opt):
    return ({k: v.copy() for k, v in params.items()}, copy.deepcopy(opt.state), opt.steps)


def _assert_same(params, opt, snap):
    before, state, steps = snap
    for k, v in params.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert opt.steps == steps and sorted(opt.state) == sorted(state)
    for name, slot in state.items():
        for key, buf in slot.items():
            np.testing.assert_array_equal(opt.state[name][key], buf, err_msg=f"{name}.{key}")


def test_step_refuses_complex_gradients_foreign_state_and_non_float_parameters():
    params = {"w": np.zeros((3, 2))}
    with pytest.raises(TypeError, match=r"grads\['w'\] must be real numbers; got dtype complex128"):
        nn.SGD(0.1).step(params, {"w": np.zeros((3, 2)) + 1j})
    opt = nn.Adam(0.1)
    opt.step({"w": np.zeros(5)}, {"w": np.ones(5)})  # state for another model's 'w'
    with pytest.raises(ValueError, match=r"state 'm' of parameter 'w' has shape \(5,\), the parameter \(3, 2\)"):
        opt.step(params, {"w": np.ones((3, 2))})
    with pytest.raises(TypeError, match=r"params\['w'\] must be a floating NumPy array; got int64"):
        nn.SGD(0.1).step({"w": np.zeros(3, dtype=np.int64)}, {"w": np.ones(3)})
    assert opt.steps == 1 and params["w"].sum() == 0



@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_read_only_parameter_is_refused_before_any_parameter_is_written(name):
    rng = np.random.default_rng(4)
    params = {"a": rng.standard_normal((4, 3)), "frozen": np.broadcast_to(np.zeros(3), (4, 3))}  # read-only view
    opt = OPTIMIZERS[name](0.1)
    before = params["a"].copy()
    with pytest.raises(ValueError, match=r"params\['frozen'\] is read-only"):
        opt.step(params, {k: rng.standard_normal((4, 3)) for k in params})
    np.testing.assert_array_equal(params["a"], before)  # the old step had already written 'a'
    assert opt.steps == 0 and opt.state == {}

# -- scikit-learn estimators ---------------------------------------------------------------------------
skl = pytest.importorskip("gradkit.sklearn")


@pytest.fixture(scope="module")
def clf32():
    X, y = _data(n=60)
    return skl.MLPClassifier((5,), max_iter=2, random_state=0).fit(X.astype(np.float32), y)


def test_sklearn_predict_proba_refuses_rows_that_overflow_float32(clf32):
    bad = np.zeros((3, 4))
    bad[1, 3] = 1e39
    for method in (clf32.predict_proba, clf32.predict, clf32.predict_log_proba):
        with pytest.raises(ValueError, match=r"X has values up to 1e\+39 .* float32"):
            method(bad)
    huge = np.full((2, 4), 3e38, dtype=np.float32)  # representable, but the network's output overflows
    huge[0] = 0
    with pytest.raises(ValueError, match=r"1 row\(s\) \(first: row 1\) for which the network's output overflows"):
        clf32.predict_proba(huge)
    with pytest.raises(ValueError, match="X has values up to 1e"):
        copy.deepcopy(clf32).partial_fit(bad, [0, 1, 2])


def test_sklearn_refuses_complex_input_and_an_overflowing_learning_rate(clf32):
    X, y = _data(n=20)
    with pytest.raises(ValueError, match="Complex data not supported: X has dtype complex128"):
        clf32.predict_proba(X + 1j)
    with pytest.raises(ValueError, match="Complex data not supported"):
        skl.MLPRegressor(hidden_layer_sizes=(3,), max_iter=1).fit(X, y + 1j)
    with pytest.raises(ValueError, match=r"learning_rate_init=1e\+39 overflows float32"):
        skl.MLPClassifier((3,), learning_rate_init=1e39).fit(X.astype(np.float32), y)
    skl.MLPClassifier((3,), learning_rate_init=1e39, max_iter=1, solver="adam").fit(X, y)  # float64: allowed


def test_sklearn_partial_fit_with_100k_classes_does_not_build_n_classes_squared():
    X, _ = _data(n=16)
    classes = np.arange(100_000)
    tracemalloc.start()
    try:
        clf = skl.MLPClassifier((2,), loss="mse", random_state=0, batch_size=8)
        clf.partial_fit(X, np.arange(16) * 6000, classes=classes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # np.eye(100_000) alone is 74.5 GiB; the output layer, its Adam moments and a batch's rows are ~30 MB
    assert peak < 300 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert clf.predict(X[:2]).shape == (2,) and clf.n_iter_ == 1


# -- gradkit.distributed ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def test_distributed_nan_in_one_block_says_X_contains_NaN(dask_client):
    da = pytest.importorskip("dask.array")
    gd = pytest.importorskip("gradkit.distributed")
    X, y = _data(n=90)
    X[47, 1] = np.nan  # block 1 of three blocks of 30 rows
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(NaN; first at row 17\) \(in block 1"):
        gd.fit(_model(np.float64), da.from_array(X, chunks=(30, 4)), y, loss=SOFTMAX_XENT, client=dask_client)
    X[47, 1] = 1e39
    with pytest.raises(ValueError, match=r"X has values up to 1e\+39 .*float32.* \(in block 1"):
        gd.fit(_model(np.float32), da.from_array(X, chunks=(30, 4)), y, loss=SOFTMAX_XENT, client=dask_client)
    with pytest.raises(TypeError, match="X must be real; got complex data"):
        gd.fit(_model(np.float64), X + 1j, y, loss=SOFTMAX_XENT, client=dask_client)
    model, opt = _model(np.float32), nn.Adam(1e39)
    snap = _snapshot(model, opt)
    with pytest.raises(ValueError, match=r"lr=1e\+39 overflows"):
        gd.fit(model, X, y, loss=SOFTMAX_XENT, optimizer=opt, client=dask_client)
    _assert_unchanged(model, opt, snap)


def test_distributed_overflowing_update_leaves_the_weights(dask_client):
    gd = pytest.importorskip("gradkit.distributed")
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((8, 4)) * 1e17, rng.standard_normal(8)
    model, opt = nn.Sequential([nn.Dense(4, 1, rng=0, dtype=np.float32)]), nn.SGD(1e5, momentum=0.9)
    snap = _snapshot(model, opt)
    with pytest.raises(nn.DivergenceError, match=r"update of parameter .* is not finite at epoch 1, step 1"):
        gd.fit(model, X, y, loss="mse", optimizer=opt, client=dask_client)
    _assert_unchanged(model, opt, snap)


def test_distributed_scheduler_address_that_never_answers_times_out():
    pytest.importorskip("distributed")
    gd = pytest.importorskip("gradkit.distributed")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_stay_silent() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    outcome: list[BaseException | None] = []

    def train() -> None:
        try:
            gd.fit(_model(np.float64), *_data(n=8), loss=SOFTMAX_XENT, client=f"tcp://127.0.0.1:{port}", timeout=2)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    start = time.perf_counter()
    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    worker.join(30)  # the old code waits forever
    elapsed = time.perf_counter() - start
    stop.set()
    for conn in accepted:
        conn.close()
    server.close()
    assert not worker.is_alive(), "gradkit.distributed.fit hung on a silent scheduler address"
    assert accepted, "the client never connected"
    assert isinstance(outcome[0], TimeoutError), outcome
    assert f"tcp://127.0.0.1:{port}" in str(outcome[0]) and "timeout=2 s" in str(outcome[0])
    assert elapsed < 12, elapsed
    with pytest.raises(ValueError, match="timeout must be finite and > 0"):
        gd.fit(_model(np.float64), *_data(n=8), loss=SOFTMAX_XENT, client=f"tcp://127.0.0.1:{port}", timeout=0)



def _silent_after_handshake() -> tuple[str, threading.Event]:
    """A Dask comm listener that completes the handshake, then never answers a message."""
    import asyncio

    from distributed.comm import listen

    address: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async def handler(comm) -> None:
                while not stop.is_set():
                    await asyncio.sleep(0.05)

            listener = listen("tcp://127.0.0.1:0", handler)
            await listener.start()
            address.append(listener.contact_address)
            while not stop.is_set():
                await asyncio.sleep(0.05)
            listener.stop()

        asyncio.run(main())

    threading.Thread(target=serve, daemon=True).start()
    deadline = time.monotonic() + 10
    while not address and time.monotonic() < deadline:
        time.sleep(0.02)
    assert address, "the listener did not start"
    return address[0], stop


def test_distributed_scheduler_that_answers_the_handshake_then_goes_silent_times_out():
    pytest.importorskip("distributed")
    gd = pytest.importorskip("gradkit.distributed")
    address, stop = _silent_after_handshake()
    try:
        with pytest.raises(TimeoutError) as info:
            gd.fit(_model(np.float64), *_data(n=8), loss=SOFTMAX_XENT, client=address, timeout=2)
    finally:
        stop.set()
    assert address in str(info.value) and "timeout=2 s" in str(info.value)
    assert "did not register this client" in str(info.value)


def test_distributed_scheduler_that_stops_during_training_times_out():
    """A real scheduler and worker (processes), the scheduler stopped (SIGSTOP) after the first epoch."""
    pytest.importorskip("distributed")
    gd = pytest.importorskip("gradkit.distributed")
    import os
    import signal
    import subprocess
    import sys

    from distributed import Client

    if not hasattr(signal, "SIGSTOP"):
        pytest.skip("needs POSIX signals")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--dashboard-address", ":0", "--no-show"], **quiet)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                               "--no-dashboard"], **quiet)
    epochs: list[int] = []

    def stop_the_scheduler(epoch: int, logs: dict) -> None:
        epochs.append(epoch)
        os.kill(scheduler.pid, signal.SIGSTOP)

    try:
        with Client(address, timeout=60) as c:
            c.wait_for_workers(1, timeout=60)
        with pytest.raises(TimeoutError) as info:
            gd.fit(_model(np.float64), *_data(n=8), loss=SOFTMAX_XENT, client=address, timeout=2, epochs=3,
                   callback=stop_the_scheduler)
    finally:
        os.kill(scheduler.pid, signal.SIGCONT)
        for p in (scheduler, worker):
            p.kill()
            p.wait(timeout=30)
    assert len(epochs) == 1, epochs  # the first epoch trained, the second found the scheduler stopped
    assert address in str(info.value) and "stopped answering" in str(info.value)
