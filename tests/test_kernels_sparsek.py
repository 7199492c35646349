"""numba sparsemax / entmax-1.5 kernels == the portable reference: shapes, axes, dtypes, strides, masks, ±inf,
NaN, ties, and the VJP/JVP with random upstream vectors."""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels

from .cases import KERNEL_TOL
from .cases import kernel_and_portable as _both
from .cases import logits_with_specials as _inputs

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")

TOL = KERNEL_TOL
CLASSES = [gk.Sparsemax, gk.Entmax15]


def _check(fast, ref, dtype, derivative=False):
    assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    tol = dict(TOL[dtype])
    if derivative and dtype == np.float32:
        # g - mean_S g cancels: float32 sums in different orders agree to the row's scale, not elementwise
        tol["atol"] = 2e-6 * float(np.max(np.abs(ref[np.isfinite(ref)]), initial=1.0))
    np.testing.assert_allclose(fast, ref, **tol)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape,axis", [((7,), 0), ((5, 9), -1), ((5, 9), 0), ((3, 4, 6), 1), ((3, 4, 6), -1),
                                        ((3, 4, 6), 0), ((64, 1), -1), ((2, 300), -1)], ids=str)
@pytest.mark.parametrize("special", [False, True], ids=["finite", "inf"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_kernels_equal_the_portable_path(cls, dtype, shape, axis, special, masked):
    rng = np.random.default_rng(0)
    act = cls(axis=axis)
    x = _inputs(rng, shape, dtype, special)
    g = rng.standard_normal(shape).astype(dtype)
    v = rng.standard_normal(shape).astype(dtype)
    where = rng.random(shape) < 0.7 if masked else None
    _check(*_both(lambda: act(x, where=where)), dtype)
    _check(*_both(lambda: act.vjp(x, g, where=where)), dtype, derivative=True)
    _check(*_both(lambda: act.jvp(x, v, where=where)), dtype, derivative=True)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_wide_rows_take_both_sorts_and_threads(cls, dtype):
    # scores close together put many entries within reach of the max (quicksort of the candidates),
    # spread scores few (insertion sort); 300 x 257 elements run on the threaded variant
    rng = np.random.default_rng(3)
    for spread in (0.01, 0.3, 5.0):
        x = (rng.standard_normal((300, 257)) * spread).astype(dtype)
        g = rng.standard_normal(x.shape).astype(dtype)
        _check(*_both(lambda x=x: cls()(x)), dtype)
        _check(*_both(lambda x=x, g=g: cls().vjp(x, g)), dtype, derivative=True)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_non_contiguous_input(cls):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 16))[::2, ::3]
    g = rng.standard_normal((10, 16))[1::2, ::3]  # strided views
    assert not x.flags.c_contiguous and not g.flags.c_contiguous
    act = cls()
    for fn in (lambda: act(x), lambda: act.vjp(x, g), lambda: act.jvp(x, g), lambda: act(x.T),
               lambda: act.vjp(x.T, g.T), lambda: cls(axis=0)(x), lambda: cls(axis=0).jvp(x, g)):
        _check(*_both(fn), np.float64)


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the portable path's 1e308 - -1e308
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_edge_rows(cls, dtype):
    big = np.finfo(dtype).max
    x = np.array([[np.nan, 1.0, 2.0, 0.0],  # NaN row
                  [-np.inf] * 4,  # no live entry
                  [np.inf, 0.0, np.inf, -np.inf],  # +inf entries share the mass
                  [np.inf, np.nan, 1.0, 0.0],  # NaN wins over +inf
                  [big, -big, 0.0, big],  # a row spanning the float range
                  [1.0, 1.0, 1.0, 1.0],  # ties: all equal
                  [2.0, 2.0, -1.0, 0.0],  # ties at the top
                  [0.5, -0.5, 3.0, 3.0 - 2.0 / cls().scale],  # an entry exactly at the reach from the max
                  [1e30, 1e30 - 1e15, -1e30, 7.0]], dtype=dtype)
    where = np.ones(x.shape, dtype=bool)
    where[0, 0] = False  # the NaN masked away: a live row again
    where[5] = False  # fully masked row
    g = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    g[2, 3] = np.inf  # off the support: contributes nothing
    act = cls()
    for w in (None, where):
        _check(*_both(lambda w=w: act(x, where=w)), dtype)
        _check(*_both(lambda w=w: act.vjp(x, g, where=w)), dtype, derivative=True)
        _check(*_both(lambda w=w: act.jvp(x, g, where=w)), dtype, derivative=True)
    y = act(x, where=where)
    assert np.isnan(y[0]).sum() == 0 and np.all(y[5] == 0) and np.isnan(y[3]).all()
    np.testing.assert_allclose(y[2], [0.5, 0.0, 0.5, 0.0])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_ties_and_nan_at_every_position(cls):
    n = 19
    rng = np.random.default_rng(5)
    for special in (np.nan, 40.0, np.inf, -np.inf):
        x = rng.integers(-2, 3, (n, n)).astype(np.float64)  # many ties
        x[np.arange(n), np.arange(n)] = special  # row i has it at position i
        g = rng.standard_normal(x.shape)
        _check(*_both(lambda x=x: cls()(x)), np.float64)
        _check(*_both(lambda x=x, g=g: cls().vjp(x, g)), np.float64, derivative=True)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_bisect_forward_stays_portable_its_derivatives_use_the_kernel(cls):
    rng = np.random.default_rng(4)
    x, g = rng.standard_normal((6, 11)), rng.standard_normal((6, 11))
    act = cls(method="bisect", n_iter=3)  # few steps: the portable bisection's own (renormalized) answer
    fast, ref = _both(lambda: act(x))
    np.testing.assert_array_equal(fast, ref)
    _check(*_both(lambda: act.vjp(x, g)), np.float64, derivative=True)


def test_the_kernel_path_is_taken(monkeypatch):
    from gradkit.kernels import sparse as fast

    calls: list[str] = []
    for name in ("forward", "vjp"):
        original = getattr(fast, name)
        monkeypatch.setattr(fast, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))
    x, g = np.ones((2, 3)), np.arange(6.0).reshape(2, 3)
    for cls in CLASSES:
        steps = [(lambda cls=cls: cls()(x), ["forward"]),
                 (lambda cls=cls: cls().vjp(x, g), ["forward", "vjp"]),
                 (lambda cls=cls: cls().jvp(x, g), ["forward", "vjp"]),
                 (lambda cls=cls: cls(method="bisect")(x), []),  # the bisection forward stays portable
                 (lambda cls=cls: cls(method="bisect").vjp(x, g), ["vjp"]),
                 (lambda cls=cls: cls()(x.astype(np.float16)), ["forward"])]  # computed in float32
        for fn, expected in steps:
            calls.clear()
            fn()
            assert calls == expected, (steps.index((fn, expected)), calls)
            with kernels.disabled():
                calls.clear()
                fn()
                assert calls == []


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_off_support_derivatives_are_positive_zero_as_on_the_portable_path(cls, dtype):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((40, 12)) * 4).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    for fn in (lambda: cls().vjp(x, g), lambda: cls().jvp(x, -g)):
        fast, ref = _both(fn)
        zeros = ref == 0
        assert zeros.any()
        np.testing.assert_array_equal(np.signbit(fast[zeros]), np.signbit(ref[zeros]))
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))


def _short_rows(rng, n, m, dtype, special_blocks):
    """n rows of m scores (ties included); in the blocks of LANES rows in ``special_blocks``, a row with a NaN, an
    all -inf row and a row with a +inf entry (they take the row code, the block's other rows the block code)."""
    from gradkit.kernels.sparse import LANES

    x = (rng.standard_normal((n, m)) * 2).astype(dtype)
    x[1::5, 0] = x[1::5, -1]  # ties
    x[3] = 0.5  # a row of equal scores
    for b in special_blocks:
        x[LANES * b + 2, rng.integers(m)] = np.nan
        x[LANES * b + 5] = -np.inf
        x[LANES * b + 7, rng.integers(m)] = np.inf
    x[9, 0] = -np.inf  # a -inf entry in a finite row: the block code
    return x


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("m", [1, 2, 3, 10, 16, 17])
def test_short_rows_blocked_equal_the_portable_path(cls, dtype, m):
    from gradkit.kernels.sparse import LANES

    # three blocks of LANES rows (the second with NaN / -inf / +inf rows) and a short one of 5
    rng = np.random.default_rng(m)
    x = _short_rows(rng, 3 * LANES + 5, m, dtype, special_blocks=[1])
    g = rng.standard_normal(x.shape).astype(dtype)
    act = cls()
    fast, ref = _both(lambda: act(x))
    _check(fast, ref, dtype)
    fast, ref = _both(lambda: act.vjp(x, g))
    _check(fast, ref, dtype, derivative=True)
    n = 70_000 // m + 33  # threaded, a short block at the end
    big = _short_rows(rng, n, m, dtype, special_blocks=[2, n // LANES - 1])
    fast, ref = _both(lambda: act(big))
    _check(fast, ref, dtype)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_vjp_without_y_keeps_the_forward_in_the_thread_buffer(cls, dtype, monkeypatch):
    """vjp(x, g) and jvp(x, v) write their forward output into this thread's scratch buffer (one allocation per
    call, not two: see gradkit.kernels._scratch), with the same result as when y is passed."""
    from gradkit.kernels import _scratch

    rng = np.random.default_rng(11)
    x = rng.standard_normal((300, 7)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    act = cls(axis=0)  # along axis 0: the kernels take a transposed copy
    y = act(x)
    calls = []
    real = _scratch.transient
    monkeypatch.setattr(_scratch, "transient", lambda shape, dt: calls.append(shape) or real(shape, dt))
    first, second = act.vjp(x, g), act.jvp(x, -g)
    assert calls == [(7, 300), (7, 300)]
    np.testing.assert_array_equal(first, act.vjp(x, g, y=y))
    np.testing.assert_array_equal(second, act.jvp(x, -g, y=y))
    buffer = _scratch._local.buf
    assert not np.shares_memory(first, buffer) and not np.shares_memory(second, buffer)
    assert not np.shares_memory(first, second)
    calls.clear()
    act.vjp(x, g, y=y)
    act(x)
    assert calls == []  # a y the caller passed or gets back is never the scratch


def test_the_thread_buffer_grows_and_is_per_thread():
    import threading

    from gradkit.kernels import _scratch

    a = _scratch.transient((10, 3), np.float32)
    b = _scratch.transient((4, 2), np.float64)  # the same buffer, as another dtype
    assert a.flags.c_contiguous and b.flags.c_contiguous and b.dtype == np.float64 and b.shape == (4, 2)
    assert np.shares_memory(a, b)
    big = _scratch.transient((_scratch.SCRATCH_MAX // 8 + 1,), np.float64)  # over the limit: a new array
    assert not np.shares_memory(big, _scratch._local.buf)
    grown = _scratch.transient((1 << 15,), np.float64)  # 256 KiB: the buffer grows
    assert np.shares_memory(grown, _scratch._local.buf) and _scratch._local.buf.nbytes >= grown.nbytes
    other = []
    thread = threading.Thread(target=lambda: other.append(_scratch.transient((10, 3), np.float32)))
    thread.start()
    thread.join()
    assert not np.shares_memory(other[0], _scratch.transient((10, 3), np.float32))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_vjp_without_y_from_racing_threads(cls):
    """Each thread has its own scratch buffer: concurrent vjp(x, g) calls give each its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(12)
    inputs = [(rng.standard_normal((200 + 37 * k, 9)).astype(np.float32),
               rng.standard_normal((200 + 37 * k, 9)).astype(np.float32)) for k in range(6)]
    act = cls()
    expected = [act.vjp(x, g, y=act(x)) for x, g in inputs]

    def work(k):
        x, g = inputs[k % len(inputs)]
        return k % len(inputs), [act.vjp(x, g) for _ in range(20)]

    with ThreadPoolExecutor(6) as pool:
        for k, results in pool.map(work, range(36)):
            for r in results:
                np.testing.assert_array_equal(r, expected[k])
