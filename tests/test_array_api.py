"""Any Array API library in, the same library, device and dtype out, equal to NumPy.

Namespaces: PyTorch (CPU) and array-api-strict always (test extras; array-api-strict
proves that no NumPy-only call leaks into the portable path), JAX when installed
(float64 enabled). Every activation, every loss and every composable pair is run
on each and compared with the NumPy reference at float64 ``rtol 1e-12``; PyTorch
VJPs are compared with ``torch.autograd`` on the same tensors.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import gradkit as gk
from gradkit.check import random_target

from .cases import ACTIVATIONS

torch = pytest.importorskip("torch")
xps = pytest.importorskip("array_api_strict")
try:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
except ImportError:  # pragma: no cover - JAX is in the bench extra only
    jax = None

# array-api-strict's non-default device stands in for an accelerator: mixing devices raises there, so a
# result built from a default-device constant (xp.asarray without device=) fails, and each result's device
# is checked to be the input's
DEVICE1 = xps.Device("device1")
NAMESPACES = {
    "torch": torch.asarray,
    "array_api_strict": xps.asarray,
    "array_api_strict@device1": lambda a: xps.asarray(a, device=DEVICE1),
}
DEVICES = {"array_api_strict@device1": DEVICE1}
if jax is not None:
    NAMESPACES["jax"] = jnp.asarray
ARRAY_TYPES = {
    "torch": torch.Tensor,
    "array_api_strict": type(xps.asarray(0.0)),
    "array_api_strict@device1": type(xps.asarray(0.0)),
}
if jax is not None:
    ARRAY_TYPES["jax"] = jax.Array
NS = pytest.mark.parametrize("ns", list(NAMESPACES))


def _numpy(a):
    if isinstance(a, torch.Tensor):
        return a.detach().numpy()
    if isinstance(a, ARRAY_TYPES["array_api_strict"]) and a.device != xps.Device("CPU_DEVICE"):
        a = xps.asarray(a, device=xps.Device("CPU_DEVICE"))  # np.asarray refuses a non-default device
    return np.asarray(a)


def _check(got, ref, ns, what):
    assert isinstance(got, ARRAY_TYPES[ns]), f"{what}: {type(got)}"
    if ns in DEVICES:
        assert got.device == DEVICES[ns], f"{what}: on {got.device}, not on the input's {DEVICES[ns]}"
    np.testing.assert_allclose(_numpy(got), ref, rtol=1e-12, atol=1e-14, err_msg=what)


def _pair(name, ns):
    """Two equal activations, one for the namespace and one for NumPy (same seed if stochastic)."""
    kwargs = {"rng": 0} if gk.activations.get(name).stochastic else {}
    if name == "gelu" and ns.startswith("array_api_strict"):  # the standard has no erf/ndtr
        kwargs = {"approximate": "tanh"}
    return gk.activations.get(name, **kwargs), gk.activations.get(name, **kwargs)


@NS
@pytest.mark.parametrize("name", gk.activations.names())
def test_activations_keep_the_namespace_and_match_numpy(ns, name):
    conv = NAMESPACES[ns]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    X, G = conv(x), conv(g)
    act, ref = _pair(name, ns)
    _check(act(X), ref(x), ns, "forward")
    _check(act.vjp(X, G), ref.vjp(x, g), ns, "vjp")
    _check(act.jvp(X, G), ref.jvp(x, g), ns, "jvp")
    _check(act.jacobian(X), ref.jacobian(x), ns, "jacobian")
    if act.supports_mask:
        where = rng.random((3, 4)) < 0.7
        where[1] = False  # a fully masked row
        W = conv(where)
        _check(act(X, where=W), ref(x, where=where), ns, "masked forward")
        _check(act.vjp(X, G, where=W), ref.vjp(x, g, where=where), ns, "masked vjp")


@NS
def test_dtype_is_kept(ns):
    conv = NAMESPACES[ns]
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    X = conv(x)
    for name in ("softmax", "relu", "sparsemax", "log_taylor_softmax"):
        y = gk.activations.get(name).vjp(X, X)
        assert y.dtype == X.dtype and y.shape == X.shape, name
    L, dz = gk.compose(gk.Softmax(), gk.CrossEntropyLoss()).value_and_grad(X, conv(np.array([0, 4])))
    assert dz.dtype == X.dtype and L.dtype == X.dtype


def _composable():
    for a in gk.activations.names():
        for name in gk.losses.names():
            try:
                gk.compose(gk.activations.get(a), gk.losses.get(name))
            except ValueError:
                continue
            yield a, name


@NS
def test_every_loss_and_composable_pair_matches_numpy(ns):
    conv = NAMESPACES[ns]
    rng = np.random.default_rng(1)
    z = rng.standard_normal((3, 4))
    for name in gk.losses.names():  # losses alone, on a prediction in their domain
        loss = gk.losses.get(name)
        lo, hi = loss.input_domain
        p = gk.Softmax()(z) if (lo, hi) == (0.0, 1.0) else gk.LogSoftmax()(z) if hi == 0 else z
        t = random_target(loss, z.shape, rng)
        L, dp = loss.value_and_grad(conv(p), conv(t))
        L0, dp0 = loss.value_and_grad(p, t)
        _check(dp, dp0, ns, name)
        np.testing.assert_allclose(float(L), L0, rtol=1e-12, err_msg=name)
    for a, name in _composable():
        act, ref = _pair(a, ns)
        for labels in (True, False):
            loss = gk.losses.get(name)
            t = random_target(loss, z.shape, rng, labels=labels)
            head, head0 = gk.compose(act, loss), gk.compose(ref, loss)
            where = z > -1.0 if act.supports_mask else None
            W = None if where is None else conv(where)
            L, dz = head.value_and_grad(conv(z), conv(t), where=W)
            L0, dz0 = head0.value_and_grad(z, t, where=where)
            _check(dz, dz0, ns, f"{a} + {name}")
            np.testing.assert_allclose(float(L), L0, rtol=1e-12, err_msg=f"{a} + {name}")


@pytest.mark.parametrize("case", [c for c in ACTIVATIONS if c.torch_ref is not None], ids=lambda c: c.id)
@pytest.mark.parametrize("axis", [0, -1])
def test_torch_vjp_equals_autograd_on_the_same_tensors(case, axis):
    gen = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    x = (torch.rand(4, 5, generator=gen, dtype=torch.float64) * 4 - 2).requires_grad_(True)
    with torch.no_grad():
        for k in case.kinks:  # away from kinks
            x[(x - k).abs() < 1e-3] = k + 0.1
    g = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    (ref,) = torch.autograd.grad(case.torch_ref(x, axis), x, grad_outputs=g)
    got = case.make(axis).vjp(x.detach(), g)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=max(1e-12, case.torch_rtol), atol=1e-13)


def test_torch_head_gradient_equals_autograd_on_the_same_tensors():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    ref_loss = torch.nn.functional.cross_entropy(z, labels, label_smoothing=0.1)
    (ref,) = torch.autograd.grad(ref_loss, z)
    L, dz = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(label_smoothing=0.1)).value_and_grad(z.detach(), labels)
    torch.testing.assert_close(dz, ref, rtol=1e-12, atol=1e-14)
    assert abs(float(L) - ref_loss.item()) < 1e-12


@NS
def test_estimators_follow_the_input_namespace_with_array_api_dispatch(ns):
    from sklearn.datasets import load_iris

    from gradkit.sklearn import MLPClassifier, MLPRegressor

    conv = NAMESPACES[ns]
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    ref = MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, random_state=0).fit(X, y)
    with gk.config_context(array_api_dispatch=True):
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, random_state=0).fit(conv(X), conv(y))
        proba, labels = clf.predict_proba(conv(X)), clf.predict(conv(X))
        reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(conv(X), conv(X[:, 0]))
        pred = reg.predict(conv(X))
    _check(proba, ref.predict_proba(X), ns, "predict_proba")
    _check(labels, ref.predict(X), ns, "predict")
    assert isinstance(pred, ARRAY_TYPES[ns]) and tuple(pred.shape) == (150,)
    assert gk.get_config()["array_api_dispatch"] is False  # the context restored it
    with pytest.raises(TypeError, match="array_api_dispatch must be a bool"):
        gk.set_config(array_api_dispatch="yes")


@pytest.mark.parametrize("name", gk.activations.names())
def test_gradcheck_takes_a_point_on_another_device(name):
    """gradcheck copies the point (and a head's target) to the host once and differentiates there."""
    conv = NAMESPACES["array_api_strict@device1"]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal((3, 4))
    act, _ = _pair(name, "array_api_strict@device1")
    assert bool(gk.gradcheck(act, conv(x), allow_kinks=True)) == bool(gk.gradcheck(act, x, allow_kinks=True))
    for loss in (gk.MSELoss(), gk.CrossEntropyLoss()):
        try:
            head = gk.compose(act, loss)
        except ValueError:
            continue
        t = random_target(loss, x.shape, rng, labels=isinstance(loss, gk.CrossEntropyLoss))
        assert gk.gradcheck(head, conv(x), target=conv(t), allow_kinks=True), (name, loss)
