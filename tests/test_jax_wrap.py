"""gradkit.jax.wrap: jax.custom_jvp with gradkit's derivatives, under jit, grad, vmap, jacfwd/jacrev.

float64 tests run inside the ``x64`` fixture, which switches ``jax_enable_x64`` on and restores
the previous setting afterwards (a global flip would leak into the other tests of the process).
Shapes are small and shared so JAX's compilation caches are reused.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import gradkit as gk

# gradkit.jax runs the portable path only (the numba kernels take NumPy arrays): `make test`'s second pass,
# GRADKIT_DISABLE_NUMBA=1, would repeat these tests unchanged, so they run in the first pass only
pytestmark = pytest.mark.skipif(os.environ.get("GRADKIT_DISABLE_NUMBA", "").strip() not in ("", "0"),
                                reason="gradkit.jax never uses the numba kernels: tested in the pass with them")
jax = pytest.importorskip("jax")  # the `jax` extra (in the `test` extra)
jnp = pytest.importorskip("jax.numpy")
from jax.test_util import check_grads

from gradkit.jax import wrap

from .cases import ACTIVATIONS

SHAPE = (3, 4)
MASKABLE = [n for n in gk.activations.names() if gk.activations.get(n).supports_mask]
LOG_FORMS = {"log_softmax", "log_taylor_softmax", "log_spherical_softmax"}


@pytest.fixture
def x64():
    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


@pytest.fixture
def x32():
    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", old)


def _points(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Normal scores at least 0.05 away from every elementwise kink (0, ±3)."""
    x = np.random.default_rng(seed).normal(size=shape)
    for k in (0.0, 3.0, -3.0):
        x = np.where(np.abs(x - k) < 0.05, k + 0.1, x)
    return x


def _call(name: str, f, x, **kw):
    if name == "gumbel_softmax":
        kw.setdefault("key", jax.random.key(7))
    return f(x, **kw)


def _gumbel_noise(x: np.ndarray) -> np.ndarray:
    """The noise wrap(GumbelSoftmax) draws from key 7 (the one _call passes)."""
    return np.asarray(jax.random.gumbel(jax.random.key(7), x.shape, jnp.asarray(x).dtype))


def _gradkit_vjp(act, x: np.ndarray, g: np.ndarray, where=None) -> np.ndarray:
    if act.name == "gumbel_softmax":
        return act.vjp(x, g, where=where, noise=_gumbel_noise(x))
    return act.vjp(x, g, where=where)


def _gradkit_forward(act, x: np.ndarray, where=None) -> np.ndarray:
    if act.name == "gumbel_softmax":
        return act.forward(x, where=where, noise=_gumbel_noise(x))
    return act.forward(x, where=where)


# -- every table row: check_grads order 2, jit(grad) == gradkit's VJP -------------------------
@pytest.mark.parametrize("name", gk.activations.names())
def test_check_grads_order_two_every_activation(name, x64):
    f = wrap(name)
    x = jnp.asarray(_points(1))
    check_grads(lambda x: _call(name, f, x), (x,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", gk.activations.names())
def test_jit_value_and_grad_equal_gradkit(name, x64):
    """float64 and float32 in one compiled function (one compilation per row)."""
    act = gk.activations.get(name)
    f = wrap(act)
    x = _points(2)
    r = np.random.default_rng(3).normal(size=SHAPE)  # a random upstream vector

    @jax.jit
    def run(x64_, r64, x32, r32):
        out = []
        for x, r in ((x64_, r64), (x32, r32)):
            y, pull = jax.vjp(lambda x: _call(name, f, x), x)
            out.append((y, pull(r)[0]))
        return out

    results = run(jnp.asarray(x), jnp.asarray(r), jnp.asarray(x, jnp.float32), jnp.asarray(r, jnp.float32))
    for dtype, (y, g), (rtol, atol) in zip((np.float64, np.float32), results, ((1e-12, 1e-13), (2e-5, 1e-6))):
        assert y.dtype == dtype and g.dtype == dtype
        xd, rd = x.astype(dtype), r.astype(dtype)
        np.testing.assert_allclose(np.asarray(y), _gradkit_forward(act, xd), rtol=rtol, atol=atol)
        np.testing.assert_allclose(np.asarray(g), _gradkit_vjp(act, xd, rd), rtol=rtol, atol=atol)


#: the table's rows with parameters (temperature, Taylor order, GELU's tanh form, ...); method="bisect" is left
#: out for time (its 50 bisection steps compile for seconds; checked by hand: equal to gradkit to 1e-16)
PARAMETRIZED = [c for c in ACTIVATIONS if c.kwargs and c.kwargs.get("method") != "bisect"]


@pytest.mark.parametrize("case", PARAMETRIZED, ids=[c.id for c in PARAMETRIZED])
def test_parametrized_rows_along_axis_zero(case, x64):
    """Value, VJP and JVP under jit along axis 0 (not the last axis)."""
    act = case.make(axis=0)
    f = wrap(act)
    x = _points(22)
    r, v = np.random.default_rng(23).normal(size=(2, *SHAPE))

    @jax.jit
    def run(x, r, v):
        y, pull = jax.vjp(f, x)
        return y, pull(r)[0], jax.jvp(f, (x,), (v,))[1]

    y, g, t = (np.asarray(a) for a in run(jnp.asarray(x), jnp.asarray(r), jnp.asarray(v)))
    np.testing.assert_allclose(y, act(x), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(g, act.vjp(x, r), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(t, act.jvp(x, v), rtol=1e-12, atol=1e-13)


def test_jacfwd_jacrev_equal_gradkit_jacobian(x64):
    x = _points(4)
    for name in ("softmax", "entmax15", "log_taylor_softmax", "gelu"):
        act = gk.activations.get(name)
        f = wrap(act)
        row = jnp.asarray(x[0])
        expected = act.jacobian(x[0])
        np.testing.assert_allclose(np.asarray(jax.jit(jax.jacfwd(f))(row)), expected, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(np.asarray(jax.jit(jax.jacrev(f))(row)), expected, rtol=1e-12, atol=1e-13)


# -- vmap -------------------------------------------------------------------------------------
def test_vmap_matches_the_batched_call(x64):
    x = _points(5)
    mask = np.random.default_rng(6).uniform(size=SHAPE) < 0.7
    mask[:, 0] = True
    r = np.random.default_rng(7).normal(size=SHAPE)
    for name in ("softmax", "sparsemax", "log_spherical_softmax"):
        act = gk.activations.get(name)
        f = wrap(act)
        per_row = jax.jit(jax.vmap(lambda x, m, f=f: f(x, where=m)))(jnp.asarray(x), jnp.asarray(mask))
        np.testing.assert_allclose(np.asarray(per_row), act(x, where=mask), rtol=1e-12, atol=1e-13)
        grads = jax.jit(jax.vmap(jax.grad(lambda x, m, r, f=f: jnp.sum(jnp.where(m, f(x, where=m), 0.0) * r))))(
            jnp.asarray(x), jnp.asarray(mask), jnp.asarray(r))
        np.testing.assert_allclose(np.asarray(grads), act.vjp(x, np.where(mask, r, 0.0), where=mask),
                                   rtol=1e-12, atol=1e-13)
    # per-example Gumbel samples: one key per row
    gs = wrap(gk.GumbelSoftmax(temperature=0.5))
    keys = jax.random.split(jax.random.key(0), SHAPE[0])
    rows = jax.jit(jax.vmap(lambda x, k: gs(x, key=k)))(jnp.asarray(x), keys)
    for i in range(SHAPE[0]):
        np.testing.assert_allclose(np.asarray(rows[i]), np.asarray(gs(jnp.asarray(x[i]), key=keys[i])), rtol=1e-12)


# -- where= masks under jit: a fully masked row gives zeros and a zero gradient, never NaN --------
@pytest.mark.parametrize("name", MASKABLE)
def test_masks_under_jit_fully_masked_row(name, x64):
    act = gk.activations.get(name)
    f = wrap(act)
    x = _points(8)
    mask = np.array([[True, False, True, True], [False, False, False, False], [True, True, False, True]])
    r = np.random.default_rng(9).normal(size=SHAPE)
    xj, mj, rj = jnp.asarray(x), jnp.asarray(mask), jnp.asarray(r)

    def loss(x):
        return jnp.sum(jnp.where(mj, _call(name, f, x, where=mj), 0.0) * rj)

    @jax.jit
    def run(x, v):  # value, gradient, and a Hessian-vector product, compiled once
        return _call(name, f, x, where=mj), jax.grad(loss)(x), jax.jvp(jax.grad(loss), (x,), (v,))[1]

    y, g, hvp = (np.asarray(a) for a in run(xj, jnp.asarray(x[::-1])))
    dead = -np.inf if name in LOG_FORMS else 0.0
    assert np.all(y[~mask] == dead)
    np.testing.assert_allclose(y, _gradkit_forward(act, x, where=mask), rtol=1e-12, atol=1e-13)
    assert np.all(np.isfinite(g))
    assert np.all(g[~mask] == 0.0) and np.all(g[1] == 0.0)
    np.testing.assert_allclose(g, _gradkit_vjp(act, x, np.where(mask, r, 0.0), where=mask), rtol=1e-12, atol=1e-13)
    # second derivatives too (jax #17117: NaN from a where()-masked softmax's unselected branch)
    assert np.all(np.isfinite(hvp)) and np.all(hvp[1] == 0.0)


def test_masked_check_grads_order_two(x64):
    mask = jnp.asarray(np.array([[True, False, True, True], [False] * 4, [True, True, False, True]]))
    x = jnp.asarray(_points(10))
    for name in ("softmax", "sparsemax", "entmax15", "taylor_softmax"):
        f = wrap(name)
        check_grads(lambda x, f=f: f(x, where=mask), (x,), order=2, modes=("fwd", "rev"))


# -- composed heads ---------------------------------------------------------------------------
_RNG = np.random.default_rng(11)
_LABELS = np.array([0, 3, 1])
_SOFT = _RNG.dirichlet(np.ones(4), size=3)
_UNIT = _RNG.uniform(size=SHAPE)
#: (activation, loss, target, reduction): each path of Composed -- fused, paired, generic (elementwise and class
#: losses), and reduction="none" with items sharing a row (softmax into mse: its JVP is chained forward)
HEADS = [
    ("softmax", "cross_entropy", _LABELS, "mean"),  # fused
    ("log_softmax", "nll", _LABELS, "none"),  # fused
    ("sigmoid", "bce", _UNIT, "sum"),  # fused
    ("sparsemax", "sparsemax_loss", _LABELS, "mean"),  # paired
    ("entmax15", "entmax15_loss", _SOFT, "none"),  # paired
    ("softmax", "mse", _SOFT, "mean"),  # generic
    ("softmax", "mse", _SOFT, "none"),  # generic, items share a row: chained forward
    ("tanh", "huber", _SOFT, "none"),  # generic, elementwise
    ("taylor_softmax", "kl_div", _SOFT, "mean"),  # generic, class loss
    ("identity", "bce_with_logits", _UNIT, "mean"),
]
#: check_grads order 2 on one head of each path (eager check_grads costs seconds per head)
SECOND_ORDER = {"log_softmax+nll/none", "entmax15+entmax15_loss/none", "softmax+mse/none"}


@pytest.mark.parametrize(("act", "loss", "target", "reduction"), HEADS, ids=[f"{a}+{b}/{r}" for a, b, _, r in HEADS])
def test_heads(act, loss, target, reduction, x64):
    head = gk.compose(act, gk.losses.get(loss, reduction=reduction))
    f = wrap(head)
    z = _points(12)
    zj = jnp.asarray(z)
    shape = np.shape(head(z, target))
    u = np.random.default_rng(13).normal(size=shape)  # a random upstream vector
    v = np.random.default_rng(14).normal(size=SHAPE)  # a random tangent

    @jax.jit
    def run(z, u, v):
        value, pull = jax.vjp(lambda z: f(z, target), z)
        return value, pull(u)[0], jax.jvp(lambda z: f(z, target), (z,), (v,))[1]

    value, g, tangent = (np.asarray(a) for a in run(zj, jnp.asarray(u), jnp.asarray(v)))
    np.testing.assert_allclose(value, head(z, target), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(g, head.vjp(z, target, u), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tangent, head.jvp(z, target, v), rtol=1e-11, atol=1e-12)
    if f"{act}+{loss}/{reduction}" in SECOND_ORDER:
        check_grads(lambda z: f(z, target), (zj,), order=2, modes=("fwd", "rev"))


def test_head_with_mask_and_float32():
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    f = wrap(head)
    z = _points(15).astype(np.float32)
    mask = np.array([[True, False, True, True], [False] * 4, [True, True, False, True]])
    target = np.where(mask, _SOFT, 0.0).astype(np.float32)
    value, g = jax.jit(jax.value_and_grad(lambda z: f(z, target, where=jnp.asarray(mask))))(jnp.asarray(z))
    ref_value, ref_g = head.value_and_grad(z, target, where=mask)
    assert value.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(float(value), ref_value, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(g), ref_g, rtol=2e-5, atol=1e-7)
    assert np.all(np.asarray(g)[1] == 0.0)


def test_head_with_labels_without_x64_warns_nothing(x32):
    """Labels keep their own integer type under JAX: no int64 request (a UserWarning without x64)."""
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    z = _points(21).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, g = jax.value_and_grad(wrap(head))(jnp.asarray(z), jnp.asarray(_LABELS))
    ref_value, ref_g = head.value_and_grad(z, _LABELS)
    np.testing.assert_allclose(float(value), ref_value, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(g), ref_g, rtol=2e-5, atol=1e-7)


def test_head_refuses_derivative_wrt_target(x64):
    f = wrap(gk.compose("softmax", "cross_entropy"))
    z, t = jnp.asarray(_points(16)), jnp.asarray(_SOFT)
    with pytest.raises(TypeError, match="w.r.t. z only"):
        jax.grad(f, argnums=1)(z, t)
    with pytest.raises(TypeError, match="w.r.t. z only"):
        jax.jit(jax.grad(lambda z, t: f(z, t), argnums=(0, 1)))(z, t)
    # stop_gradient on the target is the documented way out
    g = jax.grad(lambda z, t: f(z, jax.lax.stop_gradient(t)), argnums=1)(z, t)
    assert np.all(np.asarray(g) == 0.0)


def test_value_checks_are_eager_only(x64):
    f = wrap(gk.compose("softmax", "cross_entropy"))
    z = jnp.asarray(_points(17))
    nan_target = _SOFT.copy()
    nan_target[0, 1] = np.nan
    with pytest.raises(ValueError, match="target contains NaN"):
        f(z, nan_target)
    with pytest.raises(ValueError, match="target labels must be in"):
        f(z, np.array([0, 9, 1]))
    # under jit there are no values to look at: not refused, and not crashing the trace
    assert np.isnan(float(jax.jit(f)(z, nan_target)))
    assert np.isfinite(float(jax.jit(f)(z, jnp.array([0, 9, 1]))))


# -- Gumbel-softmax: noise from a JAX key ------------------------------------------------------
def test_gumbel_key_noise_and_straight_through(x64):
    x = _points(18)
    xj = jnp.asarray(x)
    soft, hard = wrap(gk.GumbelSoftmax(temperature=0.5)), wrap(gk.GumbelSoftmax(temperature=0.5, hard=True))
    k1, k2 = jax.random.key(1), jax.random.key(2)
    a, b = jax.jit(lambda x, k: soft(x, key=k))(xj, k1), soft(xj, key=k1)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)  # same key, same sample, jit or not
    assert not np.allclose(np.asarray(soft(xj, key=k2)), np.asarray(a))
    noise = np.asarray(jax.random.gumbel(k1, SHAPE, jnp.float64))
    np.testing.assert_allclose(np.asarray(soft(xj, noise=noise)), np.asarray(a), rtol=1e-12)
    h = np.asarray(hard(xj, key=k1))
    assert set(np.unique(h)) == {0.0, 1.0} and np.all(h.sum(axis=-1) == 1.0)
    np.testing.assert_array_equal(h, gk.GumbelSoftmax(temperature=0.5, hard=True)(x, noise=noise))
    r = np.random.default_rng(19).normal(size=SHAPE)
    g_hard = jax.jit(jax.grad(lambda x: jnp.sum(hard(x, key=k1) * r)))(xj)
    g_soft = jax.jit(jax.grad(lambda x: jnp.sum(soft(x, key=k1) * r)))(xj)
    np.testing.assert_allclose(np.asarray(g_hard), np.asarray(g_soft), rtol=1e-12)  # straight-through
    np.testing.assert_allclose(np.asarray(g_soft), gk.GumbelSoftmax(temperature=0.5).vjp(x, r, noise=noise),
                               rtol=1e-12, atol=1e-13)
    # a given noise= is differentiable too: d y / d noise is the softmax Jacobian, as d y / d x
    g_noise = jax.grad(lambda n: jnp.sum(soft(xj, noise=n) * r))(jnp.asarray(noise))
    np.testing.assert_allclose(np.asarray(g_noise), np.asarray(g_soft), rtol=1e-12)


# -- input rules -----------------------------------------------------------------------------
def test_refusals():
    f = wrap("softmax")
    x = jnp.ones(SHAPE)
    with pytest.raises(TypeError, match="x must have a real floating or integer dtype, got bool"):
        f(jnp.ones(SHAPE, dtype=bool))
    with pytest.raises(TypeError, match="x must have a real dtype"):
        f(jnp.ones(SHAPE, dtype=jnp.complex64))
    with pytest.raises(TypeError, match="x must be an array or a number, got str"):
        f("1.0")
    with pytest.raises(TypeError, match="where must be a boolean mask, got dtype"):
        f(x, where=jnp.ones(SHAPE))
    with pytest.raises(ValueError, match=r"where must broadcast to the shape of x, \(3, 4\); got \(2,\)"):
        f(x, where=jnp.ones(2, dtype=bool))
    with pytest.raises(TypeError, match="ReLU does not take where="):
        wrap("relu")(x, where=jnp.ones(SHAPE, dtype=bool))
    gs = wrap(gk.GumbelSoftmax())
    with pytest.raises(TypeError, match="exactly one of key= .* got key=None, noise=None"):
        gs(x)
    with pytest.raises(TypeError, match="exactly one of key="):
        gs(x, key=jax.random.key(0), noise=x)
    with pytest.raises(TypeError, match="key must be a jax.random key"):
        gs(x, key=0)
    with pytest.raises(ValueError, match=r"noise must have the shape of x, \(3, 4\); got \(4,\)"):
        gs(x, noise=jnp.ones(4))
    with pytest.raises(TypeError, match="got the loss"):
        wrap(gk.MSELoss())
    with pytest.raises(TypeError, match="obj must be a gradkit Activation.*got int"):
        wrap(3)
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        wrap("nope")


@pytest.mark.parametrize("enable_x64", [False, True])
def test_integer_input_takes_jax_default_float(enable_x64):
    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", enable_x64)
    try:
        y = jax.jit(wrap("softmax"))(jnp.arange(4))
        assert y.dtype == (jnp.float64 if enable_x64 else jnp.float32)
        np.testing.assert_allclose(np.asarray(y), gk.Softmax()(np.arange(4.0)), rtol=1e-6)
    finally:
        jax.config.update("jax_enable_x64", old)


def test_float16_output_dtype(x32):
    x = jnp.asarray(_points(20), dtype=jnp.float16)
    _, g = jax.jit(jax.value_and_grad(lambda x: jnp.sum(wrap("softmax")(x)[:, 0])))(x)
    assert g.dtype == jnp.float16 and np.all(np.isfinite(np.asarray(g, dtype=np.float32)))
