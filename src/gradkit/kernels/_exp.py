"""A vectorizable ``exp`` for x <= 0 (shifted logits): ``2^k · p(r)``, and a vectorizable ``log``.

LLVM vectorizes it because ``2^k`` is built by a bit cast (``(k + bias) << mantissa bits``)
instead of a libm call. Range reduction with a two-part ln 2 (Cody–Waite); Taylor
polynomials of degree 7 (float32, relative error < 1e-7, i.e. 1 ulp) and 13 (float64, < 2e-16).
Below the smallest normal result it returns exactly 0, as it does at ``-inf``; NaN stays NaN.

``log`` splits ``x = 2^k · m`` by bit casts (``m`` in ``[√2/2, √2)``, subnormals scaled by
``2^25`` / ``2^54`` first), then ``log m = 2 atanh(f/(2 + f))`` with ``f = m - 1`` by fdlibm's
minimax polynomials (``e_logf.c``: degree 4 in ``s²``; ``e_log.c``: degree 7) and a two-part ln 2:
float32 within 1 ulp of ``np.log``, float64 within 2 ulp (tested over the whole exponent range).
IEEE meaning kept: ``log(±0) = -inf``, ``log(inf) = inf``, ``log(x < 0) = NaN``, NaN stays NaN.
"""

from __future__ import annotations

import builtins
import types as pytypes

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from . import _threads
from ._cache import njit

#: fastmath without ``nnan``/``ninf``: inf and NaN keep their IEEE meaning
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: for exp itself, also without ``reassoc``: it would merge the two-part ln 2 of the
#: range reduction back into one constant and cost two digits (float64: 2e-14)
_EXP_FLAGS = {"nsz", "arcp", "contract", "afn"}


@intrinsic
def _i32_as_f32(typingctx, x):  # type: ignore[no-untyped-def]
    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _i64_as_f64(typingctx, x):  # type: ignore[no-untyped-def]
    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


#: compiled on its own (not inlined at numba's level), so a calling kernel's ``reassoc`` does not reach it: that
#: would merge the two-part ln 2 (float32: 3 ulp, float64: 2). LLVM still inlines it, keeping these flags, and
#: vectorizes the caller's loop
_own_flags = njit(fastmath=_EXP_FLAGS, error_model="numpy", inline="never")


@intrinsic
def _f32_bits(typingctx, x):  # type: ignore[no-untyped-def]
    """The exponent field of a float32 as a float32 (biased: 127 for [1, 2)), and the mantissa with the
    exponent of 1, in [1, 2): two int32 operations on the bits, vectorizable (numba's integers are 64-bit)."""
    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        field = builder.and_(builder.lshr(bits, ir.Constant(i32, 23)), ir.Constant(i32, 0xFF))
        expo = builder.sitofp(field, ir.FloatType())
        mbits = builder.or_(builder.and_(bits, ir.Constant(i32, 0x7FFFFF)), ir.Constant(i32, 0x3F800000))
        mant = builder.bitcast(mbits, ir.FloatType())
        return context.make_tuple(builder, sig.return_type, (expo, mant))

    return types.UniTuple(types.float32, 2)(types.float32), codegen


@intrinsic
def _f64_bits(typingctx, x):  # type: ignore[no-untyped-def]
    """:func:`_f32_bits` for float64 (bias 1023)."""
    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        bits = builder.bitcast(args[0], i64)
        field = builder.and_(builder.lshr(bits, ir.Constant(i64, 52)), ir.Constant(i64, 0x7FF))
        expo = builder.sitofp(field, ir.DoubleType())
        mbits = builder.or_(builder.and_(bits, ir.Constant(i64, 0xFFFFFFFFFFFFF)), ir.Constant(i64, 0x3FF0000000000000))
        mant = builder.bitcast(mbits, ir.DoubleType())
        return context.make_tuple(builder, sig.return_type, (expo, mant))

    return types.UniTuple(types.float64, 2)(types.float64), codegen


@_own_flags
def log32(x):  # type: ignore[no-untyped-def]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    sub = x < np.float32(1.17549435e-38)  # subnormal (or 0, negative, -inf: selected away below)
    xs = x * np.float32(33554432.0) if sub else x  # 2^25
    field, m = _f32_bits(xs)
    k = field - (np.float32(152.0) if sub else np.float32(127.0))
    big = m > np.float32(1.41421356)
    m = m * np.float32(0.5) if big else m
    k = k + one if big else k
    f = m - one
    s = f / (np.float32(2.0) + f)
    z = s * s
    w = z * z
    t1 = w * (np.float32(0.40000972152) + w * np.float32(0.24279078841))
    t2 = z * (np.float32(0.66666662693) + w * np.float32(0.28498786688))
    r = t2 + t1
    hfsq = np.float32(0.5) * f * f
    value = k * np.float32(6.9313812256e-01) - ((hfsq - (s * (hfsq + r) + k * np.float32(9.0580006145e-06))) - f)
    value = value if x < np.float32(np.inf) else x  # inf stays inf
    value = -np.float32(np.inf) if x == zero else value
    return value if x >= zero else (x - x) / zero  # negative: NaN, NaN stays NaN


@_own_flags
def log64(x):  # type: ignore[no-untyped-def]
    sub = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if sub else x  # 2^54
    field, m = _f64_bits(xs)
    k = field - (1077.0 if sub else 1023.0)
    big = m > 1.4142135623730951
    m = m * 0.5 if big else m
    k = k + 1.0 if big else k
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01))
    t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01
                                                                              + w * 1.479819860511658591e-01)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    value = k * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + r) + k * 1.90821492927058770002e-10)) - f)
    value = value if x < np.inf else x
    value = -np.inf if x == 0.0 else value
    return value if x >= 0.0 else (x - x) / 0.0


@njit(fastmath=_EXP_FLAGS, error_model="numpy", inline="always")
def exp32(x):  # type: ignore[no-untyped-def]
    lo = np.float32(-87.0)
    xc = max(x, lo)
    k = np.floor(xc * np.float32(1.44269504) + np.float32(0.5))  # stays float: math.floor gives int64
    r = xc - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
    p = np.float32(1 / 5040)
    p = p * r + np.float32(1 / 720)
    p = p * r + np.float32(1 / 120)
    p = p * r + np.float32(1 / 24)
    p = p * r + np.float32(1 / 6)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    value = p * _i32_as_f32((np.int32(k) + np.int32(127)) << np.int32(23))
    return np.float32(0.0) if x < lo else value




@njit(fastmath=_EXP_FLAGS, error_model="numpy", inline="always")
def exp64(x):  # type: ignore[no-untyped-def]
    lo = -708.0
    xc = max(x, lo)
    k = np.floor(xc * 1.4426950408889634 + 0.5)
    r = xc - k * 0.693147180369123816490 - k * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    value = p * _i64_as_f64((np.int64(k) + np.int64(1023)) << np.int64(52))
    return 0.0 if x < lo else value


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _larger(a, b):  # type: ignore[no-untyped-def]
    return a if a > b else b  # noqa: FURB136 - this comparison is row_max's NaN rule; keep it spelled out


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def row_max(x, i, start):  # type: ignore[no-untyped-def]
    """``max(start, x[i, :])`` skipping NaN, with 8 independent accumulators.

    Without ``nnan`` LLVM will not vectorize a one-accumulator max reduction (3.7× slower).
    """
    m = x.shape[1]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = start
    j = 0
    while j + 8 <= m:
        a0 = _larger(x[i, j], a0)
        a1 = _larger(x[i, j + 1], a1)
        a2 = _larger(x[i, j + 2], a2)
        a3 = _larger(x[i, j + 3], a3)
        a4 = _larger(x[i, j + 4], a4)
        a5 = _larger(x[i, j + 5], a5)
        a6 = _larger(x[i, j + 6], a6)
        a7 = _larger(x[i, j + 7], a7)
        j += 8
    mx = _larger(_larger(_larger(a0, a1), _larger(a2, a3)), _larger(_larger(a4, a5), _larger(a6, a7)))
    while j < m:
        mx = _larger(x[i, j], mx)
        j += 1
    return mx


def exp(x):  # type: ignore[no-untyped-def]  # pragma: no cover - replaced inside numba
    """``exp32`` or ``exp64`` by the argument's type (inside numba-compiled code)."""
    raise NotImplementedError


@overload(exp, fastmath=FASTMATH)  # type: ignore[call-arg]  # numba passes the option on through **kwargs
def _exp_overload(x):  # type: ignore[no-untyped-def]
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: exp64(x)


def log(x):  # type: ignore[no-untyped-def]  # pragma: no cover - replaced inside numba
    """``log32`` or ``log64`` by the argument's type (inside numba-compiled code)."""
    raise NotImplementedError


@overload(log, fastmath=FASTMATH)  # type: ignore[call-arg]
def _log_overload(x):  # type: ignore[no-untyped-def]
    if x == types.float32:
        return lambda x: log32(x)
    return lambda x: log64(x)


#: below this many elements a kernel runs on one thread: thread start-up and contention
#: with BLAS threads (training loops interleave both) cost more than they save
PARALLEL_MIN = 1 << 16


def _over_chunks(n, chunk, *args):  # type: ignore[no-untyped-def]
    # the threaded variant of a row kernel: its rows in chunks, each chunk one prange iteration (the kernel's
    # body is the global `_body`, bound per kernel by row_kernel)
    for k in nb.prange((n + chunk - 1) // chunk):
        lo = k * chunk
        _body(lo, min(n, lo + chunk), *args)  # noqa: F821


def _over_chunks_counting(n, chunk, *args):  # type: ignore[no-untyped-def]
    # the same for a body that returns three counts: their sums over the chunks
    a = 0
    b = 0
    c = 0
    for k in nb.prange((n + chunk - 1) // chunk):
        lo = k * chunk
        r = _body(lo, min(n, lo + chunk), *args)  # noqa: F821
        a += r[0]
        b += r[1]
        c += r[2]
    return a, b, c


def row_kernel(body=None, *, counts=False):  # type: ignore[no-untyped-def]
    """Compile ``body(lo, hi, *args)``, which computes rows ``lo`` to ``hi - 1`` of its arrays (rows along the
    first of ``args``' first axis), and a threaded variant that runs it on chunks of rows; call the one that
    fits the size. ``counts=True``: ``body`` returns three integer counts, summed over the chunks.

    The body is compiled once; the threaded variant is a ``prange`` over chunks that calls it, so that the row
    code is not compiled a second time inside numba's parallel transform (its compilation is most of a cold
    test run). On one thread or more the threaded variant runs its one compiled code, so results do not depend on
    the thread count. The serial variant is the body compiled on its own: LLVM inlines the body into the threaded
    variant and optimizes it again there, and the two may round differently in the last bit (1 ulp in some rows of
    a float64 softmax, depending on where the input lies: ``tests/test_kernels.py``).

    A body first takes its row arrays' rows ``lo:hi`` as views and loops over them from row 0. With a row index
    that starts at a known 0, LLVM compiles the row code as it did in a whole-array kernel; indexing rows from an
    unknown ``lo`` made softmax at 65536x10 30% slower, and its exp-and-sum loop was then compiled twice and
    picked per call by where the output lay after the input, summing in two orders
    (``tests/test_kernels_placement.py``). Arrays that are not per row (scratch, a dummy (1, 1) mask) may be
    sliced too: a view past their end is empty and never read.

    Above :data:`PARALLEL_MIN` the threaded variant runs where numba's threading layer allows
    it (see :mod:`gradkit.kernels._threads`): always under tbb and omp, one thread at a time
    under workqueue (the others wait), never in a child forked from a process that started
    GNU OpenMP (the serial variant runs there).
    """
    if body is None:
        return lambda fn: row_kernel(fn, counts=counts)
    options = {"fastmath": FASTMATH, "error_model": "numpy"}
    compiled = njit(**options)(body)
    template = (_over_chunks_counting if counts else _over_chunks).__code__
    # numba's on-disk cache is keyed by the qualified name and checked against the stamp of the function's
    # source file: the body's, so that an edit of the kernel's module recompiles its threaded variant too
    code = template.replace(co_name=body.__name__ + "_threaded", co_filename=body.__code__.co_filename,
                            co_firstlineno=body.__code__.co_firstlineno)
    over_chunks = pytypes.FunctionType(code, {"__builtins__": builtins, "nb": nb, "_body": compiled},
                                       body.__name__ + "_threaded")
    over_chunks.__qualname__ = body.__qualname__ + "_threaded"
    over_chunks.__module__ = body.__module__
    threaded = njit(parallel=True, **options)(over_chunks)
    guarded = _threads.one_region_at_a_time(threaded)

    def serial(*args):  # type: ignore[no-untyped-def]
        """All rows on this thread."""
        return compiled(0, args[0].shape[0], *args)

    serial.__name__ = serial.__qualname__ = body.__name__ + "_serial"

    def pick(size: int):  # type: ignore[no-untyped-def]
        """The variant for ``size`` elements that is safe here: in this thread, this (forked?) process."""
        return serial if size < PARALLEL_MIN else _threads.variant(threaded, serial, guarded)

    pick.body, pick.threaded, pick.serial, pick.guarded = compiled, threaded, serial, guarded
    return pick
