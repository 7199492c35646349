"""The kernels' vectorizable ``log`` (:mod:`gradkit.kernels._exp`) against ``np.log``: special values with their
IEEE meaning, and random bit patterns over the whole exponent range, subnormals included (ulp bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from gradkit import kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")

#: where long double is float64 itself, the float64 reference is np.log with its own half ulp
LIMIT = {np.float32: 1.0, np.float64: 1.0 if np.finfo(np.longdouble).nmant > 52 else 2.0}
UINT = {np.float32: np.uint32, np.float64: np.uint64}
#: above the largest finite value's bit pattern: +inf
TOP = {np.float32: 0x7F800000, np.float64: 0x7FF0000000000000}


@pytest.fixture(scope="module")
def vlog():
    import numba as nb

    from gradkit.kernels._exp import FASTMATH, log

    @nb.njit(fastmath=FASTMATH, error_model="numpy")
    def run(a, out):  # the kernels' flags: the loop LLVM vectorizes
        for i in range(a.size):
            out[i] = log(a[i])

    def call(a):
        out = np.empty_like(a)
        run(a, out)
        return out

    return call


def _ulp_error(ours, x):
    """|ours - log x| in units of the last place of the exact log (float64's log for float32; float64:
    the extended precision of long double where it has one, else np.log with its own half ulp)."""
    dtype = x.dtype.type
    wide = np.float64 if dtype == np.float32 else np.longdouble
    exact = np.log(x.astype(wide))
    return np.abs(ours.astype(wide) - exact) / np.spacing(np.abs(exact).astype(dtype)).astype(wide)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_special_values_keep_their_ieee_meaning(vlog, dtype):
    info = np.finfo(dtype)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, -1.0, -info.tiny, -info.smallest_subnormal,
                  1.0, 2.0, 0.5, info.tiny, info.smallest_subnormal, info.smallest_subnormal * 3, info.max,
                  np.nextafter(dtype(1), dtype(2)), np.nextafter(dtype(1), dtype(0)), np.nextafter(info.tiny, 0)],
                 dtype=dtype)
    ours = vlog(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = np.log(x)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_array_equal(ours[:4], [-np.inf, -np.inf, np.inf, np.nan])
    assert np.isnan(ours[4:9]).all()  # NaN and every negative, -0 excepted
    assert ours[9] == 0.0
    finite = np.isfinite(ref)
    assert (_ulp_error(ours[finite], x[finite]) <= LIMIT[dtype]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_random_values_over_the_whole_exponent_range(vlog, dtype):
    # uniform bit patterns of positive finite numbers: every exponent alike, subnormals included
    rng = np.random.default_rng(7)
    x = rng.integers(1, TOP[dtype], size=400_000, dtype=UINT[dtype]).view(dtype)
    near_one = (1 + rng.uniform(-0.3, 0.5, 100_000)).astype(dtype)  # where log is small and |f| largest
    for values in (x, near_one):
        err = _ulp_error(vlog(values), values)
        assert err.max() <= LIMIT[dtype], f"{err.max():.2f} ulp at x = {values[err.argmax()]!r}"
    wide = np.float64 if dtype == np.float32 else np.longdouble
    ours, exact = vlog(x).astype(wide), np.log(x.astype(wide))
    bound = 1.2e-7 if dtype == np.float32 else 2e-16 * LIMIT[dtype]  # relative: float32 2^-23, float64 2e-16
    assert (np.abs(ours - exact) <= bound * np.abs(exact)).all()


@pytest.mark.parametrize("name,kw", [("LogTaylorSoftmax", {}), ("LogSphericalSoftmax", {}),
                                     ("LogSphericalSoftmax", {"eps": 1e-300})], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_log_forms_vectorized_pass_and_its_fallback_equal_the_portable_path(name, kw, dtype):
    # rows where every φ is a normal finite number take the vectorized log; a huge score (φ overflows),
    # a zero score beside a tiny ε (φ subnormal) or a masked NaN sends its row (alone) to the strict route
    import gradkit as gk

    from .cases import KERNEL_TOL
    from .cases import kernel_and_portable as _both

    rng = np.random.default_rng(11)
    x = (rng.standard_normal((6, 33)) * 4).astype(dtype)
    x[1, 5] = 1e30 if dtype == np.float32 else 1e200
    x[2, 7] = 0.0
    x[3, 2] = np.nan
    where = np.ones(x.shape, dtype=bool)
    where[3, 2] = where[4, :] = False
    g = rng.standard_normal(x.shape).astype(dtype)
    act = getattr(gk, name)(**kw)
    for w in (None, where):
        with np.errstate(over="ignore", invalid="ignore"):
            fast, ref = _both(lambda w=w: act(x, where=w))
            np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
            np.testing.assert_allclose(fast, ref, **KERNEL_TOL[dtype])
            fast, ref = _both(lambda w=w: act.vjp(x, g, where=w))
            np.testing.assert_allclose(fast, ref, rtol=KERNEL_TOL[dtype]["rtol"], atol=1e-5 if dtype == np.float32 else 1e-12)
