"""gradkit.nn: backprop through whole networks, optimizers vs torch.optim, fit's contract."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.check import random_target

try:  # the oracle of the tests marked needs_torch (a test extra); the others run without it
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed (the reference of this test)")

F64 = np.float64


def _model(d_in=4, hidden=6, d_out=3, act="tanh", seed=0):
    return nn.Sequential([nn.Dense(d_in, hidden, rng=seed, dtype=F64), act, nn.Dense(hidden, d_out, rng=seed + 1, dtype=F64)])


def _heads():
    """Every loss in the registry, each behind an output activation whose range it accepts."""
    for loss_name in gk.losses.names():
        for out in ("softmax", "sigmoid", "identity", "log_softmax"):
            try:
                yield pytest.param(gk.compose(gk.activations.get(out), gk.losses.get(loss_name)), id=f"{out}-{loss_name}")
                break
            except ValueError:
                continue


@pytest.mark.parametrize("head", list(_heads()))
@pytest.mark.parametrize("hidden_act", ["tanh", "softplus", "gelu"])
def test_whole_network_gradcheck_for_every_loss(head, hidden_act):
    rng = np.random.default_rng(0)
    model = _model(act=hidden_act)
    X = rng.standard_normal((7, 4))
    y = random_target(head.loss, (7, 3), rng, labels=isinstance(head.loss, gk.losses.ClassLoss))
    rep = nn.gradcheck_model(model, X, y, head)
    assert rep.ok, str(rep)


def test_softmax_mse_network_gradcheck_and_the_elementwise_shortcut_fails():
    rng = np.random.default_rng(1)
    model = _model(act="relu")
    X, Y = rng.standard_normal((6, 4)), np.eye(3)[rng.integers(0, 3, 6)]
    head = gk.compose(gk.Softmax(), gk.MSELoss())
    assert nn.gradcheck_model(model, X, Y, head).ok
    def wrong_vjp(theta, g):  # delta = softmax'(z) * mse'(p) with the diagonal only
        z = model.forward(X)
        p = gk.Softmax()(z)
        model.backward(g * p * (1 - p) * gk.MSELoss().grad(p, Y))
        return np.concatenate([v.ravel() for v in model.grads.values()])

    theta = np.concatenate([v.ravel() for v in model.params.values()])
    rep = gk.gradcheck(lambda th: head(model.forward(X), Y), theta, vjp=wrong_vjp)
    assert not rep.ok


@pytest.mark.parametrize("layer", [nn.Dense(5, 3, rng=0, dtype=F64), nn.ActivationLayer("softmax"), nn.Dropout(0.0)])
def test_layer_backward_is_the_vjp(layer):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5))
    rep = gk.gradcheck(lambda x: layer.forward(x), x, vjp=lambda x, g: (layer.forward(x), layer.backward(g))[1])
    assert rep.ok, str(rep)


@needs_torch
def test_dense_parameter_gradients_match_torch():
    rng = np.random.default_rng(3)
    layer = nn.Dense(5, 3, rng=0, dtype=F64)
    x, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    layer.forward(x)
    dx = layer.backward(g)
    W = torch.tensor(layer.params["W"], requires_grad=True)
    b = torch.tensor(layer.params["b"], requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    gW, gb, gx = torch.autograd.grad(xt @ W + b, (W, b, xt), grad_outputs=torch.tensor(g))
    np.testing.assert_allclose(layer.grads["W"], gW.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], gb.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, gx.numpy(), rtol=1e-12)


def test_dense_init_statistics():
    he = nn.Dense(400, 300, rng=0, init="he").params["W"]
    glorot = nn.Dense(400, 300, rng=0, init="glorot").params["W"]
    assert he.dtype == np.float32
    assert abs(he.std() - np.sqrt(2 / 400)) < 0.01 * np.sqrt(2 / 400) * 5
    limit = np.sqrt(6 / 700)
    assert glorot.max() <= limit and glorot.min() >= -limit and abs(glorot.std() - limit / np.sqrt(3)) < 1e-3
    np.testing.assert_array_equal(nn.Dense(4, 3, rng=7).params["W"], nn.Dense(4, 3, rng=7).params["W"])


OPTIMIZERS = [
    (lambda: nn.SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (lambda: nn.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    (lambda: nn.SGD(lr=0.05, momentum=0.8, nesterov=True), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    (lambda: nn.Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    (lambda: nn.Adam(lr=0.01, weight_decay=0.1), lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1)),
    (lambda: nn.AdamW(lr=0.01, weight_decay=0.1), lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
]


@needs_torch
@pytest.mark.parametrize("ours,theirs", OPTIMIZERS, ids=["sgd", "sgd-momentum-wd", "nesterov", "adam", "adam-l2", "adamw"])
def test_optimizers_match_torch_optim(ours, theirs):
    rng = np.random.default_rng(4)
    p0 = rng.standard_normal((3, 4))
    params = {"w": p0.copy()}
    pt = torch.tensor(p0.copy(), requires_grad=True)
    opt, topt = ours(), theirs([pt])
    for _ in range(5):
        g = rng.standard_normal((3, 4))
        opt.step(params, {"w": g})
        pt.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(params["w"], pt.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_schedules():
    assert [nn.StepLR(2, 0.5)(e) for e in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    cos = nn.CosineLR(10, min_factor=0.1)
    assert cos(0) == 1.0 and abs(cos(10) - 0.1) < 1e-12 and abs(cos(5) - 0.55) < 1e-12
    opt = nn.SGD(lr=0.2, schedule=nn.StepLR(1, 0.5))
    opt.set_epoch(2)
    assert opt.lr == pytest.approx(0.05)


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def test_fit_is_deterministic_for_a_fixed_seed():
    X, y = _digits()
    runs = []
    for _ in range(2):
        model = nn.Sequential([nn.Dense(64, 32, rng=0), "relu", nn.Dropout(0.2, rng=1), nn.Dense(32, 10, rng=2)])
        h = nn.fit(model, X[:500], y[:500], loss=gk.compose(gk.Softmax(), gk.CrossEntropyLoss()), epochs=3,
                   batch_size=50, validation_split=0.2, rng=3)
        runs.append((h["loss"], h["val_loss"], model.params["0.W"].copy()))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


@pytest.mark.parametrize("head", [gk.compose(gk.Softmax(), gk.CrossEntropyLoss()), gk.compose(gk.Softmax(), gk.MSELoss()),
                                  gk.compose(gk.LogSoftmax(), gk.NLLLoss()), gk.compose(gk.Sigmoid(), gk.BCELoss())],
                         ids=lambda h: f"{h.activation.name}+{h.loss.name}")
def test_fit_learns_digits_with_any_valid_head(head):
    X, y = _digits()
    target = y if isinstance(head.loss, gk.losses.ClassLoss) else np.eye(10)[y]
    model = nn.Sequential([nn.Dense(64, 64, rng=0), "relu", nn.Dense(64, 10, rng=1, init="glorot")])
    h = nn.fit(model, X[:1400], target[:1400], loss=head, optimizer=nn.Adam(3e-3), epochs=25, batch_size=32, rng=0)
    assert h["loss"][-1] < h["loss"][0]
    acc = np.mean(model.forward(X[1400:].astype(np.float32)).argmax(1) == y[1400:])
    assert acc > 0.9, acc


def test_divergence_stops_with_the_epoch_and_keeps_finite_weights():
    X, y = _digits()
    model = nn.Sequential([nn.Dense(64, 32, rng=0), "relu", nn.Dense(32, 1, rng=1)])
    with pytest.raises(nn.DivergenceError, match=r"epoch \d+, batch \d+.*lower learning rate"):
        nn.fit(model, X * 1e3, y * 1e3, loss="mse", optimizer=nn.SGD(lr=10.0), epochs=20, batch_size=64)
    assert all(np.isfinite(v).all() for v in model.params.values())


def test_early_stopping_restores_the_best_weights():
    X, y = _digits()
    model = nn.Sequential([nn.Dense(64, 128, rng=0), "relu", nn.Dense(128, 10, rng=1)])
    h = nn.fit(model, X[:300], y[:300], loss=gk.compose(gk.Softmax(), gk.CrossEntropyLoss()),
               optimizer=nn.Adam(1e-2), epochs=200, batch_size=16, validation_split=0.3, early_stopping=3, rng=0)
    assert h.stopped_early and h.epochs < 200
    best = min(h["val_loss"])
    assert h["val_loss"][h.best_epoch] == best


def test_dropout_is_identity_at_evaluation_and_scaled_in_training():
    x = np.ones((2000, 10), dtype=np.float32)
    d = nn.Dropout(0.25, rng=0)
    assert d.forward(x) is x
    y = d.forward(x, training=True)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(y.mean() - 1.0) < 0.02


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda m: nn.fit(m, np.ones((0, 4)), np.ones(0), loss="mse"), ValueError, "X must be a non-empty 2-d array"),
        (lambda m: nn.fit(m, np.ones((5, 4)), np.ones(4), loss="mse"), ValueError, "same number of samples"),
        (lambda m: nn.fit(m, np.full((5, 4), np.nan), np.ones(5), loss="mse"), ValueError, "NaN or infinity"),
        (lambda m: nn.fit(m, np.ones((5, 4)), np.ones((5, 3)), loss="mse", batch_size=0), ValueError, "batch_size must be >= 1"),
        (lambda m: nn.fit(m, np.ones((5, 4)), np.ones((5, 3)), loss="mse", early_stopping=True), ValueError, "needs validation"),
        (lambda m: m.forward(np.ones((5, 3))), ValueError, r"Dense expects input of shape \(batch, 4\)"),
        (lambda m: nn.Dense(0, 3), ValueError, "in_features and out_features must be >= 1"),
        (lambda m: nn.Dropout(1.0), ValueError, r"rate must be in \[0, 1\)"),
        (lambda m: nn.SGD(lr=-1), ValueError, "lr must be finite and > 0"),
        (lambda m: nn.SGD(nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
        (lambda m: nn.Sequential([]), ValueError, "at least one layer"),
        (lambda m: nn.Sequential([3]), TypeError, "expected a Layer"),
        (lambda m: nn.fit(m, np.ones((5, 4)), np.zeros(5, int), loss="cross_entropy"), ValueError,
         r"cannot take the model's raw output .* gk.compose\(gk.Softmax\(\), gk.losses.get\('cross_entropy'\)\)"),
    ],
)
def test_bad_input(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(_model())


def test_clear_cache_drops_the_forward_data():
    import pickle

    model = nn.Sequential([nn.Dense(4, 8, rng=0), "relu", nn.Dropout(0.5, rng=0), nn.Dense(8, 2, rng=1)])
    small = len(pickle.dumps(model))
    model.forward(np.zeros((20_000, 4), np.float32), training=True)
    assert len(pickle.dumps(model)) > small + 100_000
    model.clear_cache()
    assert len(pickle.dumps(model)) <= small + 1_000


def _reference_step(kind, kw, p, g, state, t):
    """The optimizers' formulas written with fresh arrays (as before the step used its own buffers)."""
    lr, wd = kw["lr"], kw.get("weight_decay", 0.0)
    if kind == "SGD":
        mu = kw.get("momentum", 0.0)
        if wd:
            g = g + wd * p
        if mu:
            state["v"] = g.copy() if "v" not in state else state["v"] * mu + g
            g = g + mu * state["v"] if kw.get("nesterov") else state["v"]
        return p - p.dtype.type(lr) * g
    b1, b2, eps = 0.9, 0.999, 1e-8
    base = p
    if wd and kind == "AdamW":
        base = p * p.dtype.type(1.0 - lr * wd)
    elif wd:
        g = g + wd * p
    m = state["m"] * b1 if "m" in state else np.zeros_like(p)
    m += (1 - b1) * g
    v = state["v"] * b2 if "v" in state else np.zeros_like(p)
    v += (1 - b2) * (g * g)
    state["m"], state["v"] = m, v
    step = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    return base - p.dtype.type(step) * m / (np.sqrt(v) + p.dtype.type(eps * np.sqrt(1 - b2**t)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,kw", [
    ("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.1, "weight_decay": 0.1}), ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01}), ("Adam", {"lr": 0.01, "weight_decay": 0.1}), ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
], ids=["sgd", "sgd-wd", "momentum", "nesterov", "nesterov-wd", "adam", "adam-l2", "adamw"])
def test_buffered_steps_are_bitwise_the_formulas(kind, kw, dtype):
    rng = np.random.default_rng(8)
    p0 = {"W": rng.standard_normal((6, 5)).astype(dtype), "b": rng.standard_normal(5).astype(dtype)}
    params, ref = {k: v.copy() for k, v in p0.items()}, {k: v.copy() for k, v in p0.items()}
    ref_state: dict = {k: {} for k in p0}
    opt = getattr(nn, kind)(**kw)
    for t in range(1, 7):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in p0.items()}
        opt.step(params, grads)
        for k in p0:
            ref[k] = _reference_step(kind, kw, ref[k], grads[k], ref_state[k], t)
            np.testing.assert_array_equal(params[k], ref[k], err_msg=f"{k} at step {t}")
            for key, buf in ref_state[k].items():
                np.testing.assert_array_equal(opt.state[k][key], buf, err_msg=f"{k}.{key} at step {t}")
        if t == 3:  # a pickled (or deep-copied) optimizer goes on identically; its buffers are not carried
            blob = pickle.dumps(opt)
            assert len(blob) < 3 * sum(v.nbytes for v in p0.values()) + 2000
            opt = pickle.loads(blob)
            params = {k: v.copy() for k, v in params.items()}


def test_float64_gradients_for_float32_parameters():
    rng = np.random.default_rng(2)
    p32 = {"w": rng.standard_normal((4, 3)).astype(np.float32)}
    p64 = {"w": p32["w"].astype(np.float64)}
    a, b = nn.Adam(0.01, weight_decay=0.1), nn.Adam(0.01, weight_decay=0.1)
    for _ in range(4):
        g = {"w": rng.standard_normal((4, 3))}
        a.step(p32, g)
        b.step(p64, g)
    assert p32["w"].dtype == np.float32 and a.state["w"]["m"].dtype == np.float32
    np.testing.assert_allclose(p32["w"], p64["w"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["C", "F", "float16"])
@pytest.mark.parametrize("make", [
    lambda: nn.SGD(0.1, weight_decay=0.05), lambda: nn.SGD(0.1, momentum=0.9, weight_decay=0.01),
    lambda: nn.SGD(0.1, momentum=0.9, nesterov=True), lambda: nn.Adam(0.01, weight_decay=0.1),
    lambda: nn.AdamW(0.01, weight_decay=0.1),
], ids=["sgd-wd", "momentum-wd", "nesterov", "adam-l2", "adamw"])
def test_compiled_and_numpy_steps_agree_bitwise(make, layout):
    from gradkit import kernels

    rng = np.random.default_rng(9)
    dtype = np.float16 if layout == "float16" else np.float32
    p0 = np.asarray(rng.standard_normal((5, 7)).astype(dtype), order="F" if layout == "F" else "C")
    fast, slow = {"w": p0.copy(order="A")}, {"w": p0.copy(order="A")}
    a, b = make(), make()
    for _ in range(5):
        g = {"w": rng.standard_normal(p0.shape).astype(dtype)}
        a.step(fast, g)
        with kernels.disabled():
            b.step(slow, g)
        np.testing.assert_array_equal(fast["w"], slow["w"])
        for key in b.state.get("w", {}):
            np.testing.assert_array_equal(a.state["w"][key], b.state["w"][key])
    assert fast["w"].dtype == dtype and fast["w"].flags.f_contiguous == (layout == "F")


def test_compiled_step_reuses_its_views_only_for_the_same_arrays():
    # a training loop passes the same parameter and gradient arrays every step: the compiled step keeps their flat
    # views; a new gradient array, or one that is the parameter itself, is looked at afresh
    from gradkit import kernels

    rng = np.random.default_rng(4)
    p0 = rng.standard_normal((6, 5)).astype(np.float32)
    fast, slow = {"w": p0.copy()}, {"w": p0.copy()}
    g = {"w": np.empty_like(p0)}
    a, b = nn.SGD(0.1), nn.SGD(0.1)
    for _ in range(3):  # the same gradient array, new values in place
        g["w"][...] = rng.standard_normal(p0.shape)
        a.step(fast, g)
        with kernels.disabled():
            b.step(slow, g)
        np.testing.assert_array_equal(fast["w"], slow["w"])
    for grads in ({"w": rng.standard_normal(p0.shape).astype(np.float32)}, None):  # a new array; the parameter
        a.step(fast, grads if grads is not None else {"w": fast["w"]})
        with kernels.disabled():
            b.step(slow, grads if grads is not None else {"w": slow["w"]})
        np.testing.assert_array_equal(fast["w"], slow["w"])
    assert ("w" in a._views) == kernels.enabled()  # (without numba there is no compiled step)
    assert pickle.loads(pickle.dumps(a))._views == {}


_STEP_MODELS = {
    "relu": lambda dt: [nn.Dense(6, 9, rng=0, dtype=dt), "relu", nn.Dense(9, 4, rng=1, dtype=dt)],
    "two relu": lambda dt: [nn.Dense(6, 9, rng=0, dtype=dt), "relu", nn.Dense(9, 7, rng=2, dtype=dt), gk.ReLU(),
                            nn.Dense(7, 4, rng=1, dtype=dt)],
    "tanh then relu": lambda dt: [nn.Dense(6, 9, rng=0, dtype=dt), "tanh", nn.Dense(9, 7, rng=2, dtype=dt), "relu",
                                  nn.Dense(7, 4, rng=1, dtype=dt)],
    "relu last": lambda dt: [nn.Dense(6, 4, rng=0, dtype=dt), "relu"],
    "relu first": lambda dt: ["relu", nn.Dense(6, 4, rng=0, dtype=dt)],
    "softmax inside": lambda dt: [nn.Dense(6, 5, rng=0, dtype=dt), "softmax", nn.Dense(5, 4, rng=1, dtype=dt)],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layers", sorted(_STEP_MODELS))
@pytest.mark.parametrize("head", ["ce", "mse one-hot", "sparsemax"])
def test_buffered_step_trains_exactly_as_the_layer_by_layer_step(monkeypatch, layers, dtype, head):
    # fit's step on preallocated buffers must be the layers' own arithmetic: identical weights and histories
    from gradkit.nn import _step

    rng = np.random.default_rng(5)
    X = rng.standard_normal((53, 6))  # 53 = 4 batches of 12 and a short one of 5
    y = rng.integers(0, 4, 53)
    loss = {"ce": gk.compose(gk.Softmax(), gk.CrossEntropyLoss()), "mse one-hot": gk.compose(gk.Softmax(), gk.MSELoss()),
            "sparsemax": gk.compose(gk.Sparsemax(), gk.losses.SparsemaxLoss())}[head]
    one_hot = 4 if head == "mse one-hot" else None
    runs = []
    for buffered in (True, False):
        if not buffered:
            monkeypatch.setattr(_step.BufferedStep, "build", classmethod(lambda cls, *a: None))
        model = nn.Sequential(_STEP_MODELS[layers](dtype))
        history = nn.fit(model, X, y, loss=loss, optimizer=nn.SGD(0.3, momentum=0.9), epochs=3, batch_size=12,
                         rng=1, one_hot=one_hot)
        runs.append((model, history))
    (fast, h_fast), (slow, h_slow) = runs
    assert h_fast["loss"] == h_slow["loss"] and h_fast["accuracy"] == h_slow["accuracy"]
    assert sorted(fast.params) == sorted(slow.params)
    for name, value in fast.params.items():
        assert value.dtype == dtype
        np.testing.assert_array_equal(value, slow.params[name], err_msg=name)
    assert not np.array_equal(fast.params["0.W" if "0.W" in fast.params else "1.W"],
                              nn.Sequential(_STEP_MODELS[layers](dtype)).params["0.W" if "0.W" in fast.params else "1.W"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_relu_kernels_are_numpys_arithmetic(dtype):
    # the buffered step's fused bias + ReLU (forward) and ReLU VJP + bias gradient (backward) against the NumPy
    # they replace, bit for bit, with NaN, ±inf and zeros of both signs among the entries
    from gradkit import kernels

    if not kernels.available():
        pytest.skip("numba not installed or disabled")
    from gradkit.kernels import dense

    rng = np.random.default_rng(11)
    h = rng.standard_normal((37, 23)).astype(dtype)
    h[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    h[1:3] = 0.0  # ties at the ReLU's kink
    b = rng.standard_normal(23).astype(dtype)
    b[4:6] = [-0.0, 0.0]
    ref = h + b
    np.maximum(ref, 0.0, out=ref)
    out = h.copy()
    dense.bias_relu(out, b)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(ref))
    g = rng.standard_normal(h.shape).astype(dtype)
    g[5, :2] = [np.inf, np.nan]
    ref_g = g.copy()
    with np.errstate(invalid="ignore"):  # inf · 0
        np.multiply(ref_g, ref > 0, out=ref_g)
    ref_b = np.sum(ref_g, axis=0)
    gb = np.full(23, 7.0, dtype)
    dense.relu_grad_bias(g, ref, gb)
    np.testing.assert_array_equal(g, ref_g)
    np.testing.assert_array_equal(gb, ref_b)


def test_buffered_step_is_used_for_dense_and_activation_layers_only(monkeypatch):
    from gradkit.nn import _step

    built = []
    real = _step.BufferedStep.build.__func__  # type: ignore[attr-defined]

    def spy(cls, *args):  # type: ignore[no-untyped-def]
        step = real(cls, *args)
        built.append(step is not None)
        return step

    monkeypatch.setattr(_step.BufferedStep, "build", classmethod(spy))
    X, y = np.random.default_rng(0).standard_normal((20, 3)), np.arange(20) % 2
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    nn.fit(nn.Sequential([nn.Dense(3, 4, rng=0), "relu", nn.Dense(4, 2, rng=1)]), X, y, loss=head, epochs=1)
    nn.fit(nn.Sequential([nn.Dense(3, 4, rng=0), nn.Dropout(0.5, rng=0), nn.Dense(4, 2, rng=1)]), X, y, loss=head,
           epochs=1)
    nn.fit(nn.Sequential([nn.Dense(3, 4, rng=0, dtype=np.float64), nn.Dense(4, 2, rng=1)]), X, y, loss=head, epochs=1)
    assert built == [True, False, False]  # Dropout: the layer-by-layer step; mixed dtypes: too
