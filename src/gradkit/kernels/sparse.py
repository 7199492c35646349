"""numba kernels for sparsemax and entmax-1.5 along an axis: forward (``method="sort"``), VJP and JVP.

Forward without a full sort: the threshold :math:`\\tau` of both maps lies in
``[max u - 1, max u]`` (``u`` the shifted, scaled scores), so only the entries with
``u >= max u - 1`` can be in the support. One pass collects those candidates, only
they are sorted (insertion sort for a few, quicksort otherwise), and the exact
sort-based formula of the portable path runs on them: its prefix sums are the same
numbers in the same order, so the result equals the portable ``method="sort"``.
A row whose entries are all candidates (e.g. all equal) costs one full sort.

Short rows (up to :data:`BLOCK_MAX` entries) go :data:`LANES` at a time through :func:`forward_block`, one vector
operation per column and no branch per row: entmax-1.5's threshold by ranking all the row's entries, sparsemax's
by Michelot's projection. Their thresholds are the portable formula's up to the order of the sums.

Semantics equal the portable path (:mod:`gradkit.activations.sparse`): masked
entries arrive as ``-inf``; a row with no live entry gives zeros; ``+inf`` entries
share the mass equally; a NaN score makes its row NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _scratch
from ._cache import njit
from ._exp import FASTMATH, _larger, row_kernel, row_max
from .softmax import rows, unrows

__all__ = ["BLOCK_MAX", "LANES", "block_scratch", "forward", "forward_block", "forward_row", "jvp", "vjp"]

#: candidates up to this many are sorted by insertion, more by numba's quicksort
_INSERTION_MAX = 24


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _sort_prefix(buf, c):  # type: ignore[no-untyped-def]
    """Sort ``buf[:c]`` ascending, in place."""
    if c <= _INSERTION_MAX:
        for a in range(1, c):
            v = buf[a]
            b = a - 1
            while b >= 0 and buf[b] > v:
                buf[b + 1] = buf[b]
                b -= 1
            buf[b + 1] = v
    else:
        buf[:c].sort()


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _tau_sparsemax(buf, c, one):  # type: ignore[no-untyped-def]
    # τ = max_k (Σ_{j≤k} u_(j) - 1)/k over the candidates in descending order (the portable formula)
    cs = one - one
    best = -one / (one - one)  # -inf
    kf = one - one  # k as a float of the row's type: float32 / int64 would give float64
    for k in range(1, c + 1):
        kf += one
        cs += buf[c - k]
        t = (cs - one) / kf
        best = max(best, t)
    return best


#: up to this many candidates sparsemax's threshold is found by ranking (c² compare-and-adds, no branch)
_RANKED_MAX = 16


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _tau_sparsemax_ranked(buf, c, one):  # type: ignore[no-untyped-def]
    # τ = max over candidates a of (Σ_{u_b >= u_a} u_b - 1)/#{u_b >= u_a}: the sorted formula's prefixes at the
    # end of each group of ties, where its maximum lies (within a group of value u the prefix average moves
    # monotonically towards u), so the same τ up to the order of the sums
    zero = one - one
    best = -one / zero  # -inf
    for a in range(c):
        ua = buf[a]
        total = zero
        count = zero
        for b in range(c):
            ge = buf[b] >= ua
            total += buf[b] if ge else zero
            count += one if ge else zero
        best = max(best, (total - one) / count)
    return best


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _tau_entmax_ranked(buf, c, one):  # type: ignore[no-untyped-def]
    # the sorted formula's τ_k at the end of each group of ties: for candidate a, the top k are the
    # u_b >= u_a; the support is the largest such k with τ_k <= u_a (within a group the prefix
    # condition holds for all of it or none, and an entry at u = τ leaves τ unchanged), so the same
    # τ up to the order of the sums, by c² compare-and-adds and no branch
    zero = one - one
    tau = zero
    best = zero
    for a in range(c):
        ua = buf[a]
        s1 = zero
        s2 = zero
        kf = zero
        for b in range(c):
            ub = buf[b]
            ge = ub >= ua
            s1 += ub if ge else zero
            s2 += ub * ub if ge else zero
            kf += one if ge else zero
        mean = s1 / kf
        mean_sq = s2 / kf
        delta = (one - kf * (mean_sq - mean * mean)) / kf
        tk = mean - np.sqrt(max(delta, zero))
        take = (tk <= ua) & (kf > best)
        tau = tk if take else tau
        best = kf if take else best
    return tau


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _tau_entmax(buf, c, one):  # type: ignore[no-untyped-def]
    # with the top k in the support: k τ² - 2 τ Σu + Σu² = 1, the smaller root; the support is
    # the count of k with τ_k <= u_(k) (a prefix); τ is τ_k at that count (the portable formula)
    zero = one - one
    s1 = zero
    s2 = zero
    size = 0
    kf = zero  # k as a float of the row's type: float32 / int64 would give float64
    for k in range(1, c + 1):
        kf += one
        u = buf[c - k]
        s1 += u
        s2 += u * u
        mean = s1 / kf
        mean_sq = s2 / kf
        delta = (one - kf * (mean_sq - mean * mean)) / kf
        tk = mean - (np.sqrt(delta) if delta > zero else zero)
        size += tk <= u
    s1 = zero
    s2 = zero
    tau = zero
    kf = zero
    for k in range(1, size + 1):
        kf += one
        u = buf[c - k]
        s1 += u
        s2 += u * u
        if k == size:
            mean = s1 / kf
            mean_sq = s2 / kf
            delta = (one - kf * (mean_sq - mean * mean)) / kf
            tau = mean - (np.sqrt(delta) if delta > zero else zero)
    return tau


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def forward_row(x, i, out, buf, scale, reach, entmax):  # type: ignore[no-untyped-def]
    """The map of row ``i`` of ``x`` into ``out[i]`` (``buf``: scratch of the row's length); returns the
    row's max (NaN skipped) and whether the row holds a NaN (then ``out[i]`` is NaN).

    reach = 2/scale: scores below max - reach are never in the support (the portable path sets u = -2 there).
    The Fenchel–Young loss kernels (:mod:`gradkit.kernels.fenchel_young`) call it too.
    """
    m = x.shape[1]
    one = scale / scale
    zero = one - one
    neg_inf = -one / zero
    far = -(one + one)
    bad = False
    if m <= _RANKED_MAX:  # a short row: its max (NaN skipped) and its NaN test in one pass
        mx = neg_inf
        for j in range(m):
            v = x[i, j]
            mx = _larger(v, mx)
            bad |= v != v  # noqa: PLR0124
    else:
        mx = row_max(x, i, neg_inf)  # skips NaN
        for j in range(m):
            bad |= x[i, j] != x[i, j]
    if bad:  # a NaN score makes its row NaN
        for j in range(m):
            out[i, j] = zero / zero
        return mx, bad
    if mx == neg_inf:  # no live entry
        for j in range(m):
            out[i, j] = zero
        return mx, bad
    c = 0
    if mx == -neg_inf:  # +inf entries at u = 0, the rest far
        for j in range(m):
            if x[i, j] == mx:
                buf[c] = zero
                c += 1
        for j in range(m):
            out[i, j] = zero if x[i, j] == mx else far
    else:
        lo = mx - reach
        for j in range(m):
            xj = x[i, j]
            u = scale * (xj - mx) if xj >= lo else far
            out[i, j] = u
            buf[c] = u  # written always, kept by the count: no branch per entry (mispredicted on short rows)
            c += u >= -one
    if c <= _RANKED_MAX:  # short: the prefix sums by ranking, branch-free, without a sort
        tau = _tau_entmax_ranked(buf, c, one) if entmax else _tau_sparsemax_ranked(buf, c, one)
    else:
        _sort_prefix(buf, c)
        tau = _tau_entmax(buf, c, one) if entmax else _tau_sparsemax(buf, c, one)
    if entmax:
        for j in range(m):
            d = out[i, j] - tau
            d = max(zero, d)
            out[i, j] = d * d
    else:
        for j in range(m):
            d = out[i, j] - tau
            out[i, j] = max(zero, d)
    return mx, bad


#: rows of up to this many entries take the blocked forward (:func:`forward_block`), LANES rows at a time, with no
#: branch per row: at 65536x10, entmax-1.5 2x and sparsemax 3x faster than row by row
BLOCK_MAX = 16
#: rows per block: the scratch holds one block transposed, so that each column is one vector of LANES rows. The
#: loops over a block's rows take their count from the scratch's shape, not from this constant: over a count
#: known at compile time numba unrolls them and LLVM keeps them scalar, over one read at run time it vectorizes
#: them (sparsemax at 65536x10: 3.2 against 1.2 ms a thread). LLVM's vector loop takes 16 float32 four times
#: (interleaved) per step, 64 rows: blocks of 32 ran most loops in their scalar remainder (at 65536x10, one
#: thread: the sparsemax loss 2.4 ms with 32 lanes, 1.7 with 128; entmax-1.5 2.2 and 1.6 ms; 256 no faster)
LANES = 128


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _tau_block_sparsemax(ut, m, tau, total, count, size, one):  # type: ignore[no-untyped-def]
    """Sparsemax's threshold of each row of a transposed block ``ut`` (far entries at -2) into ``tau``, by
    Michelot's projection: from every entry within reach (``u > -2``), a superset of the support,
    τ = (Σ_S u - 1)/|S| and S = {u > τ} until no row's S changes size. τ rises and S shrinks to the support, whose
    τ is the sorted formula's (the same numbers summed in another order); each step drops an entry from a row or
    ends it."""
    zero = one - one
    lanes = tau.shape[0]
    for r in range(lanes):
        tau[r] = -(one + one)  # far: S is every entry within reach
        size[r] = -one  # (the first step always goes on)
    for _ in range(m + 1):
        for r in range(lanes):
            total[r] = zero
            count[r] = zero
        for j in range(m):
            for r in range(lanes):
                u = ut[j, r]
                inside = u > tau[r]
                total[r] += u if inside else zero
                count[r] += one if inside else zero
        changed = 0
        for r in range(lanes):
            tau[r] = (total[r] - one) / count[r]  # the max stays inside: τ <= -1/|S| < 0
            changed += count[r] != size[r]
            size[r] = count[r]
        if changed == 0:
            break


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _tau_block_entmax(ut, m, tau, s1, s2, kf, best, one):  # type: ignore[no-untyped-def]
    """:func:`_tau_entmax_ranked` of each row of a transposed block ``ut`` into ``tau``."""
    zero = one - one
    lanes = tau.shape[0]
    for r in range(lanes):
        tau[r] = zero
        best[r] = zero
    for a in range(m):
        for r in range(lanes):
            s1[r] = zero
            s2[r] = zero
            kf[r] = zero
        for b in range(m):
            for r in range(lanes):
                ub = ut[b, r]
                ge = ub >= ut[a, r]
                s1[r] += ub if ge else zero
                s2[r] += ub * ub if ge else zero
                kf[r] += one if ge else zero
        for r in range(lanes):
            mean = s1[r] / kf[r]
            mean_sq = s2[r] / kf[r]
            delta = (one - kf[r] * (mean_sq - mean * mean)) / kf[r]
            tk = mean - np.sqrt(max(delta, zero))
            take = (tk <= ut[a, r]) & (kf[r] > best[r])
            tau[r] = tk if take else tau[r]
            best[r] = kf[r] if take else best[r]


@njit(fastmath=FASTMATH, error_model="numpy", inline="never")
def forward_block(x, i0, rows, xt, ut, vec, scale, reach, entmax):  # type: ignore[no-untyped-def]
    """The map of rows ``i0`` to ``i0 + rows`` of ``x`` (short rows, ``rows`` at most the block's ``lanes``, the
    columns of ``xt``), transposed: ``xt[j, r] = x[i0 + r, j]``, ``ut[j, r]`` the output, ``vec[0]`` the rows' max.
    Rows that need :func:`forward_row` instead (a NaN, no finite max) are marked by ``vec[7][r] != 0``; ``ut``
    means nothing for them, nor for the lanes past ``rows`` (zeros, computed and dropped).

    Every other row takes this code wherever it lies (in a full block or a chunk's last, short one), so that its
    result does not depend on how the rows are split among threads. Each step is a loop over the block's lanes
    inside a loop over columns, one vector operation per column. The threshold: entmax-1.5's is the ranked one of
    :func:`forward_row` over all the row's entries (an entry below the candidates never gives a valid prefix);
    sparsemax's is found by Michelot's projection (:func:`_tau_block_sparsemax`), whose few passes over the block
    have no branch per row.
    """
    m = x.shape[1]
    lanes = xt.shape[1]  # a count read at run time (see LANES)
    one = scale / scale
    zero = one - one
    neg_inf = -one / zero
    far = -(one + one)
    mx, nan, tau, s1, s2, kf, best, bad = vec[0], vec[1], vec[2], vec[3], vec[4], vec[5], vec[6], vec[7]
    for r in range(rows):
        for j in range(m):
            xt[j, r] = x[i0 + r, j]
    for r in range(rows, lanes):
        for j in range(m):
            xt[j, r] = zero
    for r in range(lanes):
        mx[r] = neg_inf
        nan[r] = zero
    for j in range(m):
        for r in range(lanes):
            v = xt[j, r]
            mx[r] = _larger(v, mx[r])
            nan[r] += one if v != v else zero  # noqa: PLR0124
    n_bad = 0
    for r in range(lanes):
        b = (nan[r] != zero) | ((mx[r] - mx[r]) != zero)
        bad[r] = one if b else zero
        n_bad += b
    if n_bad:  # such a lane computes a row of zeros instead, its result dropped
        for j in range(m):
            for r in range(lanes):
                xt[j, r] = zero if bad[r] != zero else xt[j, r]
        for r in range(lanes):
            mx[r] = zero if bad[r] != zero else mx[r]
    for j in range(m):
        for r in range(lanes):
            xj = xt[j, r]
            ut[j, r] = scale * (xj - mx[r]) if xj >= mx[r] - reach else far
    if entmax:
        _tau_block_entmax(ut, m, tau, s1, s2, kf, best, one)
        for j in range(m):
            for r in range(lanes):
                d = max(zero, ut[j, r] - tau[r])
                ut[j, r] = d * d
    else:
        _tau_block_sparsemax(ut, m, tau, s1, s2, kf, one)
        for j in range(m):
            for r in range(lanes):
                ut[j, r] = max(zero, ut[j, r] - tau[r])


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def block_scratch(x):  # type: ignore[no-untyped-def]
    """One chunk's scratch for rows of ``x``: a row (:func:`forward_row`), a block transposed in and out and the
    block's vectors (:func:`forward_block`; the Fenchel-Young loss's block uses them too)."""
    m = x.shape[1]
    return (np.empty(m, dtype=x.dtype), np.empty((m, LANES), dtype=x.dtype), np.empty((m, LANES), dtype=x.dtype),
            np.empty((9, LANES), dtype=x.dtype))


@row_kernel
def _forward_rows(lo, hi, x, out, scale, reach, entmax):  # type: ignore[no-untyped-def]
    x, out = x[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    m = x.shape[1]
    blocked = m <= BLOCK_MAX
    buf, xt, ut, vec = block_scratch(x)
    lanes = xt.shape[1] if blocked else 1
    bad = vec[7]
    n = x.shape[0]
    for i0 in range(0, n, lanes):
        rows = min(lanes, n - i0)
        if blocked:
            forward_block(x, i0, rows, xt, ut, vec, scale, reach, entmax)
            for r in range(rows):
                for j in range(m):
                    out[i0 + r, j] = ut[j, r]
        for r in range(rows):  # one call site of the inlined row code: each copy costs seconds of compilation
            if not blocked or bad[r] != 0:
                forward_row(x, i0 + r, out, buf, scale, reach, entmax)


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _s(yj, zero, one, entmax):  # type: ignore[no-untyped-def]
    """The Jacobian's vector at one entry: sqrt(y) (entmax-1.5) or [y > 0] (sparsemax); NaN stays NaN."""
    if entmax:
        return np.sqrt(yj) if yj != zero else yj
    if yj != yj:  # noqa: PLR0124
        return yj
    return one if yj > zero else zero


@row_kernel
def _project(lo, hi, y, g, out, zero, one, entmax):  # type: ignore[no-untyped-def]
    # s ⊙ g_S - s <s, g_S>/Σs with g_S = g on the support only (an entry off it contributes nothing, even if g is inf)
    y, g, out = y[lo:hi], g[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    m = y.shape[1]
    for i in range(y.shape[0]):
        total = zero
        dot = zero
        nan = 0
        for j in range(m):
            nan += y[i, j] != y[i, j]
        if nan == 0:
            # a row without NaN: s = [y > 0] (sparsemax) or sqrt(y) (entmax-1.5) by selects. The general loop
            # below branches per entry on _s's NaN test, a mispredicted branch per entry on short rows (5x
            # slower at 65536x10)
            if entmax:
                for j in range(m):
                    s = np.sqrt(y[i, j])
                    total += s
                    dot += s * g[i, j] if y[i, j] > zero else zero
            else:
                for j in range(m):
                    total += one if y[i, j] > zero else zero
                    dot += g[i, j] if y[i, j] > zero else zero
            inv = dot / total if total > zero else dot
            off = inv - inv
            off = zero if off == zero else off
            if entmax:
                for j in range(m):
                    s = np.sqrt(y[i, j])
                    out[i, j] = s * g[i, j] - s * inv if y[i, j] > zero else off
            else:
                for j in range(m):
                    out[i, j] = g[i, j] - inv if y[i, j] > zero else off
            continue
        for j in range(m):
            s = _s(y[i, j], zero, one, entmax)
            total += s
            if s > zero:
                dot += s * g[i, j]
        inv = dot / total if total > zero else dot
        off = inv - inv  # off the support the portable 0·g_S - 0·inv: +0, or NaN where inv is not finite
        off = zero if off == zero else off  # (spelled out: fastmath's nsz would give -0 for 0 - 0·inv)
        for j in range(m):
            s = _s(y[i, j], zero, one, entmax)
            out[i, j] = s * g[i, j] - s * inv if s > zero else (off if s == zero else s)


def forward(x: np.ndarray, axis: int, mask: Any, scale: float, entmax: bool, transient: bool = False) -> np.ndarray:
    """Sparsemax (``entmax=False``, ``scale=1``) or entmax-1.5 (``scale=0.5``) of ``x`` along ``axis``,
    equal to the portable ``method="sort"``; masked entries excluded. ``transient``: the result is written into
    this thread's scratch buffer (:func:`~gradkit.kernels._scratch.transient`), for a caller that drops it."""
    if mask is not None:
        x = np.where(mask, x, x.dtype.type(-np.inf))
    xr = rows(x, axis)
    out = _scratch.transient(xr.shape, xr.dtype) if transient else np.empty_like(xr)
    t = xr.dtype.type
    _forward_rows(xr.size)(xr, out, t(scale), t(2.0 / scale), entmax)
    return unrows(out, x, axis)


def vjp(y: np.ndarray, g: np.ndarray, axis: int, entmax: bool) -> np.ndarray:
    """The VJP (and JVP: the Jacobian is symmetric) given the forward output ``y``."""
    yr, gr = rows(y, axis), rows(g, axis)
    out = np.empty_like(yr)
    t = yr.dtype.type
    _project(yr.size)(yr, gr, out, t(0.0), t(1.0), entmax)
    return unrows(out, y, axis)


jvp = vjp
