"""numba kernels == the portable reference: shapes, axes, dtypes, strides, masks, temperature, ±inf, NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels

from .cases import KERNEL_TOL
from .cases import kernel_and_portable as _both
from .cases import logits_with_specials as _inputs

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")

TOL = KERNEL_TOL


@pytest.mark.parametrize("cls", [gk.Softmax, gk.LogSoftmax], ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape,axis", [((7,), 0), ((5, 9), -1), ((5, 9), 0), ((3, 4, 6), 1), ((64, 1), -1), ((2, 300), -1)], ids=str)
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("special", [False, True], ids=["finite", "inf"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_kernels_equal_the_portable_path(cls, dtype, shape, axis, temperature, special, masked):
    rng = np.random.default_rng(0)
    act = cls(axis=axis, temperature=temperature)
    x = _inputs(rng, shape, dtype, special)
    g = rng.standard_normal(shape).astype(dtype)
    where = rng.random(shape) < 0.7 if masked else None
    calls = (lambda: act(x, where=where), lambda: act.vjp(x, g, where=where), lambda: act.jvp(x, g, where=where),
             lambda: act.jacobian(x, where=where))
    for k, fn in enumerate(calls):
        fast, ref = _both(fn)
        assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape
        tol = dict(TOL[dtype])
        if k and dtype == np.float32:
            # g - <g, y> cancels: two float32 sums in different orders agree to the row's
            # scale, not elementwise where the result is far smaller than its terms
            tol["atol"] = 2e-6 * float(np.max(np.abs(ref[np.isfinite(ref)]), initial=1.0))
        np.testing.assert_allclose(fast, ref, **tol)
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))


@pytest.mark.parametrize("cls", [gk.Softmax, gk.LogSoftmax], ids=lambda c: c.__name__)
def test_non_contiguous_input(cls):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((10, 16))
    x, g = base[::2, ::3], rng.standard_normal((10, 16))[1::2, ::3]  # strided views
    assert not x.flags.c_contiguous
    act = cls()
    for fn in (lambda: act(x), lambda: act.vjp(x, g), lambda: act(x.T), lambda: act.vjp(x.T, g.T)):
        fast, ref = _both(fn)
        np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.filterwarnings("ignore:overflow encountered")  # the portable path's 1e308 - -1e308 = inf
@pytest.mark.parametrize("cls", [gk.Softmax, gk.LogSoftmax], ids=lambda c: c.__name__)
def test_edge_rows(cls):
    x = np.array([[np.nan, 1.0, 2.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, np.inf], [1e308, -1e308, 0.0]])
    g = np.array([[0.5, -1.0, 2.0]] * 4)
    for fn in (lambda: cls()(x), lambda: cls().vjp(x, g)):
        fast, ref = _both(fn)
        np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
        np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_finds_nan_and_the_maximum_at_every_position(dtype):
    # the max runs over 8 interleaved accumulators plus a tail: put the special value everywhere
    n = 19
    rng = np.random.default_rng(5)
    for special in (np.nan, 40.0, np.inf):
        x = rng.standard_normal((n, n)).astype(dtype)
        x[np.arange(n), np.arange(n)] = special  # row i has it at position i
        for cls in (gk.Softmax, gk.LogSoftmax):
            fast, ref = _both(lambda cls=cls, x=x: cls()(x))
            np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
            np.testing.assert_allclose(fast, ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-14)
            z = rng.integers(0, n, n)
            head = gk.compose(cls(), gk.losses.CrossEntropyLoss() if cls is gk.Softmax else gk.losses.NLLLoss())
            (fv, _), (rv, _) = _both(lambda head=head, x=x, z=z: head.value_and_grad(x, z))
            np.testing.assert_allclose(fv, rv, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_the_kernel_path_is_taken():
    from gradkit.kernels import softmax as fast_softmax

    calls = []
    original = fast_softmax.forward
    fast_softmax.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        gk.Softmax()(np.ones((2, 3)))
        with kernels.disabled():
            gk.Softmax()(np.ones((2, 3)))
    finally:
        fast_softmax.forward = original
    assert calls == [1]


def test_exp_accuracy():
    from gradkit.kernels._exp import exp32, exp64

    z = np.linspace(-700, 0, 20001)
    got = np.array([exp64(v) for v in z])
    # against libm's exp (math.exp): NumPy's own float64 exp is less accurate before 2.0 (NumPy 1.26: 3.02e-16 off)
    np.testing.assert_allclose(got, [math.exp(v) for v in z], rtol=3e-16)
    z32 = np.linspace(-86, 0, 2001).astype(np.float32)
    got32 = np.array([exp32(v) for v in z32])
    np.testing.assert_allclose(got32, np.exp(z32.astype(np.float64)), rtol=2e-7)
    assert exp64(-np.inf) == 0.0 and exp32(np.float32(-np.inf)) == 0.0 and np.isnan(exp64(np.nan))


@pytest.mark.parametrize("pair", [(gk.Softmax, gk.CrossEntropyLoss), (gk.LogSoftmax, gk.NLLLoss)], ids=["softmax+ce", "log_softmax+nll"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape,axis", [((6,), 0), ((8, 5), -1), ((5, 8), 0), ((2, 3, 7), 1)], ids=str)
@pytest.mark.parametrize("smoothing,temperature", [(0.0, 1.0), (0.2, 0.7)])
@pytest.mark.parametrize("extra", ["plain", "ignore", "mask", "neg_inf", "rare_rows"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_head_kernel_equals_the_portable_path(pair, dtype, shape, axis, smoothing, temperature, extra, reduction):
    act_cls, loss_cls = pair
    rng = np.random.default_rng(3)
    z = (rng.standard_normal(shape) * 2).astype(dtype)
    n = shape[axis]
    item_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    labels = rng.integers(0, n, item_shape)
    where = None
    if extra == "ignore":
        labels = np.where(rng.random(item_shape) < 0.4, -100, labels)
    elif extra == "mask":
        where = rng.random(shape) < 0.75  # (with smoothing, both sides take the portable path by design)
    elif extra == "neg_inf":  # unmasked -inf logits, on some labels too
        z = np.where(rng.random(shape) < 0.2, -np.inf, z).astype(dtype)
    elif extra == "rare_rows":  # a +inf entry: the kernel hands the batch back to the portable path
        z.reshape(-1)[0] = np.inf
    head = gk.compose(act_cls(axis=axis, temperature=temperature),
                      loss_cls(axis=axis, label_smoothing=smoothing, reduction=reduction))
    g = rng.standard_normal(item_shape if reduction == "none" else ()).astype(dtype)
    for fn in (lambda: head.value_and_grad(z, labels, where=where), lambda: (head.vjp(z, labels, g, where=where),)):
        fast = fn()
        with kernels.disabled():
            ref = fn()
        for a, b in zip(fast, ref):
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype == dtype
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
            fin = np.isfinite(b)
            tol = dict(TOL[dtype]) if dtype == np.float64 else {"rtol": 1e-5, "atol": 2e-6 * float(np.max(np.abs(b[fin]), initial=1.0))}
            np.testing.assert_allclose(a[fin], b[fin], **tol)


def test_fused_head_kernel_is_taken_for_plain_labels():
    from gradkit.kernels import xent as fast_xent

    calls = []
    original = fast_xent.xent
    fast_xent.xent = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
        head.value_and_grad(np.ones((3, 4)), np.array([0, 1, 2]))
        gk.compose(gk.Softmax(), gk.CrossEntropyLoss(weight=[1.0, 2, 3, 4])).value_and_grad(np.ones((3, 4)), np.array([0, 1, 2]))
    finally:
        fast_xent.xent = original
    assert calls == [1]  # class weights use the portable path


def test_threaded_and_serial_variants_do_not_share_a_cache_entry():
    """numba's disk cache is keyed by qualified name: a shared one made both variants serial. The threaded
    variant (a prange over chunks calling the compiled body) is checked against the body's source file, so an
    edit of the kernel recompiles it too."""
    from gradkit.kernels import entmax_bisect, fenchel_young, log_phi_nll, sparse, spherical, xent
    from gradkit.kernels import softmax as fast_softmax

    for kernel in (fast_softmax._forward_rows, fast_softmax._softmax_project, fast_softmax._log_softmax_project,
                   fast_softmax._jacobian_rows, xent._xent_rows, sparse._forward_rows, sparse._project,
                   fenchel_young._fy_rows, spherical._forward_rows, spherical._project_rows, log_phi_nll._rows,
                   entmax_bisect._forward_rows, entmax_bisect._project):
        threaded, body = kernel.threaded.py_func, kernel.body.py_func
        assert threaded.__qualname__ == body.__qualname__ + "_threaded"
        assert threaded.__module__ == body.__module__
        assert threaded.__code__.co_filename == body.__code__.co_filename
        assert kernel.threaded.targetoptions["parallel"] and not kernel.body.targetoptions.get("parallel", False)


def _variants(kernel, make_args, runs):
    """The returned counts and output arrays of ``kernel``'s variants in ``runs``: "serial", or a thread count of the
    threaded variant (at most numba's pool: a one-core machine has a pool of one)."""
    import numba

    from gradkit.kernels import _threads

    results = []
    for run in runs:
        call = kernel.serial if run == "serial" else _threads._balanced(
            kernel.threaded, min(run, numba.config.NUMBA_NUM_THREADS))
        args = make_args()
        results.append((call(*args), [a.copy() for a in args if isinstance(a, np.ndarray)]))
    return results


def _check_variants(kernel, make_args):
    """1 and 2 threads: the same bits; the serial variant: the same counts, values to the kernels' tolerance (see
    below: a threshold 1 ulp apart moves a small entmax-1.5 output (u - τ)² by a few ulp of its own)."""
    from .cases import KERNEL_TOL

    (serial, serial_arrays), (one, one_arrays), (two, two_arrays) = _variants(kernel, make_args, ["serial", 1, 2])
    assert one == two == serial
    for a, b, c in zip(serial_arrays, one_arrays, two_arrays):
        np.testing.assert_array_equal(b, c)
        np.testing.assert_allclose(a, b, **(KERNEL_TOL[a.dtype.type] if a.dtype.kind == "f" else {"rtol": 0}))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_counts_agree_to_the_last_bit(dtype):
    """The threaded variant runs one compiled code on any number of threads, each on its own chunks of rows: the
    same bits on 1 and 2 threads. The serial variant (inputs below PARALLEL_MIN) calls the body compiled on its
    own; inlined into the threaded variant, LLVM compiles it again and may vectorize it otherwise, so the two agree
    to rounding only (1 ulp in some rows of a float64 softmax, depending on where the input lies)."""
    from gradkit.kernels import softmax as fast_softmax
    from gradkit.kernels import sparse

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((1003, 37)) * 4).astype(dtype)
    x[5, :3] = np.inf
    x[9] = -np.inf
    g = rng.standard_normal(x.shape).astype(dtype)
    y = fast_softmax.forward(x, 1, None, 1.0, False)
    t = x.dtype.type
    for kernel, make_args in [
        (fast_softmax._forward_rows,
         lambda: (x, np.full_like(x, np.nan), t(1 / 3), t(-np.inf), False, fast_softmax.overflow_bound(x.dtype), True)),
        (sparse._forward_rows, lambda: (x, np.full_like(x, np.nan), t(0.5), t(4.0), True)),
        (sparse._project, lambda: (y, g, np.full_like(x, np.nan), t(0.0), t(1.0), False)),
    ]:
        _check_variants(kernel, make_args)


@pytest.mark.parametrize("entmax", [False, True], ids=["sparsemax", "entmax15"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_rows_take_the_block_code_wherever_they_lie(dtype, entmax):
    """Rows of up to BLOCK_MAX entries go through the sparse maps' block code in blocks of LANES rows; a chunk's
    last block is shorter, and where chunks start depends on the thread count. A row's result must not: each row
    takes the block code (or, with a NaN or no finite max, the row code) wherever it lies."""
    from gradkit.kernels import fenchel_young, sparse

    rng = np.random.default_rng(9)
    x = (rng.standard_normal((70001, 10)) * 2).astype(dtype)  # above PARALLEL_MIN: chunks of 17,501 or 8,751 rows
    x[rng.integers(0, len(x), 40), 3] = np.nan
    x[rng.integers(0, len(x), 40)] = -np.inf
    x[rng.integers(0, len(x), 40), :2] = np.inf
    labels = rng.integers(0, 10, len(x))
    valid = rng.random(len(x)) < 0.9
    t = x.dtype.type
    scale = 0.5 if entmax else 1.0
    for kernel, make_args in [
        (sparse._forward_rows, lambda: (x, np.full_like(x, np.nan), t(scale), t(2 / scale), entmax)),
        (fenchel_young._fy_rows,  # labels, smoothing 0.1, no mask
         lambda: (x, np.zeros((1, 1), dtype), labels, valid, np.zeros((1, 1), bool), False, fenchel_young._LABELS,
                  t(0.9), t(0.01), t(0.1), t(scale), t(2 / scale), entmax, t(0.5), np.full_like(x, np.nan),
                  np.full(len(x), np.nan, dtype))),
    ]:
        _check_variants(kernel, make_args)


# -- threads and forked processes (see also tests/hostile/test_concurrency.py) ---------------
def test_the_variant_follows_the_threading_layer(monkeypatch):
    from gradkit.kernels import _exp, _threads
    from gradkit.kernels import softmax as fast_softmax

    kernel = fast_softmax._forward_rows
    big = _exp.PARALLEL_MIN
    assert kernel(big - 1) is kernel.serial
    monkeypatch.setattr(_threads, "num_threads", lambda: 2)  # as on any machine with two cores or more
    for layer, expected in [("tbb", kernel.threaded), ("omp", kernel.threaded), ("workqueue", kernel.guarded)]:
        monkeypatch.setattr(_threads, "_layer", layer)
        chosen = kernel(big)
        assert getattr(chosen, "inner", chosen) is expected, layer  # inner: run in dynamic chunks of rows
    monkeypatch.setattr(_threads, "_serial_only", True)  # a child forked from a GNU OpenMP parent
    assert kernel(big) is kernel.serial


def test_one_parallel_region_at_a_time_under_workqueue():
    import threading
    import time

    from gradkit.kernels import _threads

    active, most = [0], [0]
    count = threading.Lock()

    def region(i):
        with count:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.002)  # releases the GIL: without the lock other threads enter now
        with count:
            active[0] -= 1
        return i

    guarded = _threads.one_region_at_a_time(region)
    results = []
    threads = [threading.Thread(target=lambda k=k: results.extend(guarded(k) for _ in range(5))) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == sorted(k for k in range(6) for _ in range(5))
    assert most[0] == 1


def test_tbb_is_loaded_only_where_numba_may_choose_it(monkeypatch):
    import os
    from importlib.metadata import PackageNotFoundError, distribution

    import numba

    from gradkit.kernels import _threads

    monkeypatch.setattr(_threads, "_started_layer", lambda: None)  # as before the first parallel call
    for explicit in ("omp", "workqueue", "OMP"):
        monkeypatch.setattr(numba.config, "THREADING_LAYER", explicit)
        assert _threads.prefer_tbb() is None  # the user's choice stays
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "default")
    path = _threads.prefer_tbb()
    try:
        distribution("tbb")
    except PackageNotFoundError:
        assert path is None
    else:  # the fast extra's tbb wheel, in the environment's lib/ where numba does not look
        assert path is not None and os.path.basename(path) == _threads._TBB_LIBRARY
    monkeypatch.setattr(_threads, "_started_layer", lambda: "omp")  # too late to choose
    assert _threads.prefer_tbb() is None


def test_disabled_holds_only_in_its_thread():
    import threading

    seen = []
    inside, checked = threading.Event(), threading.Event()

    def other():
        inside.wait(timeout=30)
        seen.append(kernels.enabled())
        checked.set()

    t = threading.Thread(target=other)
    t.start()
    with kernels.disabled():
        with kernels.disabled():
            assert not kernels.enabled()
        assert not kernels.enabled()  # nested blocks count
        inside.set()
        checked.wait(timeout=30)
    t.join(timeout=30)
    assert seen == [True]  # before: a block in one thread switched every thread to the portable path
    assert kernels.enabled()
