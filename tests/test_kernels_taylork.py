"""numba kernels of Taylor / spherical softmax and their log forms == the portable reference.

Forward, VJP and JVP over shapes, axes, dtypes, strides, masks (fully masked rows too), ±inf, NaN rows,
ties, scores near the Taylor branch point |z| = 1 and far out; random upstream vectors throughout.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels

from .cases import KERNEL_TOL
from .cases import kernel_and_portable as _both

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")

TOL = KERNEL_TOL

ACTIVATIONS = [
    (gk.TaylorSoftmax, {}),
    (gk.TaylorSoftmax, {"order": 4}),
    (gk.TaylorSoftmax, {"order": 20}),
    (gk.LogTaylorSoftmax, {}),
    (gk.LogTaylorSoftmax, {"order": 6}),
    (gk.SphericalSoftmax, {}),
    (gk.SphericalSoftmax, {"eps": 1e-300}),  # root clamped to the dtype's smallest normal
    (gk.LogSphericalSoftmax, {"eps": 2.0}),
]
IDS = [f"{c.__name__}{''.join(f'-{k}={v}' for k, v in kw.items())}" for c, kw in ACTIVATIONS]


def _inputs(rng, shape, dtype, special):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    flat = x.reshape(-1)
    # the Taylor branch point |z| = 1, ties, zeros (spherical: φ'/φ = 0 there)
    idx = rng.choice(flat.size, size=max(1, flat.size // 5), replace=False)
    flat[idx] = rng.choice([1.0, -1.0, 0.0, 2.5, -2.5, np.nextafter(dtype(1), dtype(2))], size=idx.size)
    if special:
        idx = rng.choice(flat.size, size=max(1, flat.size // 7), replace=False)
        flat[idx] = rng.choice([np.inf, -np.inf, 1e30, -1e30, 1e-30, np.nan], size=idx.size)
    return x


def _check(fast, ref, dtype, grad, log=False):
    assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape
    tol = dict(TOL[dtype])
    scale = float(np.max(np.abs(ref[np.isfinite(ref)]), initial=1.0))
    if grad and dtype == np.float32:
        # g - <g, y> cancels: float32 sums in different orders agree to the row's scale
        tol["atol"] = 2e-6 * scale
    elif log and not grad:
        # log y = (log φ - max) - log S: an absolute accuracy, a few ulps of the largest |log φ - max|
        # (NumPy's log/hypot and numba's may differ by an ulp in log φ)
        tol["atol"] = 8 * float(np.finfo(dtype).eps) * scale
    np.testing.assert_allclose(fast, ref, **tol)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))


def _all_three(act, x, g, where):
    return (lambda: act(x, where=where), lambda: act.vjp(x, g, where=where), lambda: act.jvp(x, g, where=where))


@needs_numba
@pytest.mark.parametrize(("cls", "kw"), ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize(("shape", "axis"), [((7,), 0), ((5, 9), -1), ((5, 9), 0), ((3, 4, 6), -1), ((3, 4, 6), 0)],
                         ids=str)
@pytest.mark.parametrize("special", [False, True], ids=["finite", "special"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_kernels_equal_the_portable_path(cls, kw, dtype, shape, axis, special, masked):
    rng = np.random.default_rng(abs(hash((shape, axis, special, masked))) % 2**32)
    act = cls(axis=axis, **kw)
    x = _inputs(rng, shape, dtype, special)
    g = rng.standard_normal(shape).astype(dtype)
    where = rng.random(shape) < 0.7 if masked else None
    for k, fn in enumerate(_all_three(act, x, g, where)):
        _check(*_both(fn), dtype, grad=k > 0, log=act.name.startswith("log"))


@needs_numba
@pytest.mark.parametrize(("cls", "kw"), ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_edge_rows(cls, kw, dtype):
    """One row per case: fully masked, NaN (live / masked), ±inf alone and tied, all equal, huge, tiny."""
    inf, nan = np.inf, np.nan
    x = np.array([
        [0.5, -1.0, 2.0, 3.0],  # fully masked below
        [nan, 1.0, 2.0, 3.0],  # a live NaN: the row is NaN
        [nan, 1.0, 2.0, 3.0],  # a masked NaN: no effect
        [inf, 1.0, 2.0, 3.0],
        [-inf, 1.0, inf, 3.0],  # both infinities share the mass
        [-inf, 1.0, 2.0, 3.0],
        [inf, 1.0, 2.0, inf],  # a masked +inf: no effect
        [2.0, 2.0, 2.0, 2.0],
        [-2.0, 2.0, -2.0, 2.0],  # ties of φ for even φ
        [1e30, -1e30, 1e-30, 0.0],
        [-1.0, 1.0, -1.0000001, 0.9999999],
    ], dtype=dtype)
    where = np.ones_like(x, dtype=bool)
    where[0] = False
    where[2, 0] = where[6, 3] = False
    g = np.random.default_rng(3).standard_normal(x.shape).astype(dtype)
    g[3, 1] = np.inf  # an infinite upstream value where y == 0
    act = cls(**kw)
    for k, fn in enumerate(_all_three(act, x, g, where)):
        fast, ref = _both(fn)
        _check(fast, ref, dtype, grad=k > 0, log=act.name.startswith("log"))
    y = act(x, where=where)
    assert np.all(np.isnan(y[1])) and not np.any(np.isnan(y[2]))
    np.testing.assert_array_equal(y[0], -np.inf if act.name.startswith("log") else 0.0)


@needs_numba
@pytest.mark.parametrize(("cls", "kw"), ACTIVATIONS[::2], ids=IDS[::2])
def test_non_contiguous_and_given_output(cls, kw):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 10, 8)) * 2
    x = base[::2, 1::2, ::-1]  # strided, reversed
    assert not x.flags.c_contiguous and not x.flags.f_contiguous
    g = rng.standard_normal((12, 5, 8))[::4]
    where = np.broadcast_to(rng.random((1, 5, 8)) < 0.8, x.shape)  # a broadcast view: stride 0
    for axis in (0, 1, -1):
        act = cls(axis=axis, **kw)
        for k, fn in enumerate(_all_three(act, x, g, where)):
            _check(*_both(fn), np.float64, grad=k > 0, log=act.name.startswith("log"))
        y = act(x, where=where)
        _check(*_both(lambda act=act, y=y: act.vjp(x, g, y=y, where=where)), np.float64, grad=True)


@needs_numba
@pytest.mark.parametrize(("cls", "kw"), [ACTIVATIONS[0], ACTIVATIONS[4], ACTIVATIONS[7]], ids=[IDS[0], IDS[4], IDS[7]])
def test_threaded_rows(cls, kw):
    """At least 65,536 elements: the threaded variant."""
    rng = np.random.default_rng(2)
    x = _inputs(rng, (700, 100), np.float32, special=True)
    g = rng.standard_normal(x.shape).astype(np.float32)
    where = rng.random(x.shape) < 0.9
    for k, fn in enumerate(_all_three(cls(**kw), x, g, where)):
        _check(*_both(fn), np.float32, grad=k > 0, log=cls.name.startswith("log"))


@needs_numba
def test_the_kernel_path_is_taken(monkeypatch):
    from gradkit.kernels import spherical as fast

    calls = []
    for name in ("forward", "vjp", "jvp"):
        original = getattr(fast, name)
        monkeypatch.setattr(fast, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))
    x, g = np.ones((2, 3)), np.arange(6.0).reshape(2, 3)
    for act in (gk.TaylorSoftmax(), gk.LogSphericalSoftmax()):
        act(x), act.vjp(x, g), act.jvp(x, g)
    assert calls == ["forward", "forward", "vjp", "forward", "jvp"] * 2
    calls.clear()
    with kernels.disabled():
        gk.TaylorSoftmax()(x), gk.TaylorSoftmax().vjp(x, g)
    assert calls == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_portable_softmax_nan_row_with_large_logits_does_not_warn(dtype):
    """A NaN next to a logit above log(max) used to reach exp unshifted: a spurious overflow RuntimeWarning
    (an error under the test suite's filter) on the portable path, hit by the spherical reference rows."""
    big = {gk.Softmax: 1000.0, gk.LogSoftmax: 1000.0, gk.TaylorSoftmax: 1e30, gk.LogSphericalSoftmax: 1e30}
    with kernels.disabled():
        for cls, b in big.items():  # a = log φ(1e30) ≈ 138: exp(138) overflows float32
            x = np.array([[np.nan, b, -b], [np.nan, np.inf, 1.0], [b, 0.999 * b, 0.0]], dtype=dtype)
            y = cls()(x)
            assert np.all(np.isnan(y[:2])) and not np.any(np.isnan(y[2]))
