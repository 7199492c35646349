r"""Sparse normalizers: sparsemax and entmax-1.5. Outputs have exact zeros.

* sparsemax (Martins & Astudillo, 2016): :math:`y = \max(z - \tau, 0)`, the
  Euclidean projection of :math:`z` onto the simplex;
* entmax-1.5 (Peters, Niculae & Martins, 2019): :math:`y = \max(z/2 - \tau, 0)^2`;

each with :math:`\tau` such that :math:`\sum y = 1`. ``method="sort"`` finds
:math:`\tau` exactly from the sorted scores (:math:`O(n \log n)`);
``method="bisect"`` brackets it by bisection (:math:`O(n)` per step, for large
:math:`n`), then solves for it exactly on the support it found, so both
methods agree to rounding once the bracket (width :math:`2^{-n_{iter}}`) is
narrower than the gap between :math:`\tau` and the nearest score: the default
50 steps reach float64 resolution. With fewer steps an entry that close to the
threshold may be misplaced; the output is then renormalized to sum to 1.

Jacobians (symmetric; support :math:`S = \{y > 0\}`):

* sparsemax: :math:`J = \mathrm{diag}(s) - s s^\top/|S|`, :math:`s = [y > 0]`;
  VJP :math:`s \odot (g - \mathrm{mean}_S\, g)`;
* entmax-1.5: :math:`J = \mathrm{diag}(s) - s s^\top/\sum s`, :math:`s = \sqrt y`;
  VJP :math:`s \odot g - s \langle s, g\rangle/\sum s`.

At a support change (a score exactly at the threshold) the map has a kink; the
derivative used there is the one of the support without that entry.
Masked and ``-inf`` entries are outside the support; a row with no live entry
gives zeros; ``+inf`` entries share the mass equally (the limit); a NaN score
makes its row NaN.

NumPy float32/float64 input runs numba kernels (:mod:`gradkit.kernels.sparse`,
tested equal to this portable code): the forward for ``method="sort"`` (sorting
only the entries within reach of the row's maximum), the VJP and JVP for both
methods (they depend on :math:`y` only). ``method="bisect"``'s forward stays
portable: with few steps its answer (a misplaced entry, renormalized) is its own.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from .._array import branch_free, check_choice, check_int, is_traced
from ..base import AxisActivation

__all__ = ["Entmax15", "Sparsemax"]


def _kernel(xp: Any, *arrays: Any) -> Any:
    """The numba kernels module when they can take these arrays (and are not traced), else None."""
    from .. import kernels

    if not kernels.usable(xp, *arrays) or is_traced(*arrays):
        return None
    from ..kernels import sparse as fast

    return fast


def _prepare_scores(xp: Any, z: Any, axis: int, mask: Any) -> tuple[Any, Any, Any]:
    """Scores with masked entries at ``-inf``; rows with ``+inf`` reduced to their
    ``+inf`` entries (0 there, ``-inf`` elsewhere); and the rows' live flags."""
    if mask is not None:
        z = xp.where(mask, z, -xp.inf)
    m = xp.max(z, axis=axis, keepdims=True)
    live = ~(m == -xp.inf)  # NaN rows count as live: NaN spreads through the arithmetic
    general = branch_free(z)  # no branch on a device's (or a tracer's) values
    if general or not bool(xp.all(live)):
        z = xp.where(live, z, 0.0)  # dead rows: any finite stand-in, zeroed at the end
    if general or bool(xp.any(m == xp.inf)):
        z = xp.where(m == xp.inf, xp.where(z == xp.inf, 0.0, xp.full_like(z, -xp.inf)), z)
    return z, xp.where(live & ~(m == xp.inf), m, 0.0), live


def support_vjp(xp: Any, s: Any, g: Any, axis: int) -> Any:
    """``s ⊙ g_S - s ⟨s, g_S⟩/Σs`` along ``axis``: the VJP (and JVP) of a map whose Jacobian is
    ``diag(s) - s sᵀ/Σs`` (sparsemax, entmax-1.5, α-entmax), ``g_S`` being ``g`` on the support ``s > 0``."""
    total = xp.sum(s, axis=axis, keepdims=True)
    gs = xp.where(s > 0, g, 0.0)  # an entry off the support contributes nothing, even if g is inf
    dot = xp.sum(s * gs, axis=axis, keepdims=True)
    return s * gs - s * (dot / xp.where(total > 0, total, 1.0))


def support_jacobian(xp: Any, s: Any) -> Any:
    """``diag(s) - s sᵀ/Σs`` for ``s`` with its axis last, shape ``s.shape + (n,)``."""
    total = xp.sum(s, axis=-1, keepdims=True)
    eye = xp.eye(s.shape[-1], dtype=s.dtype, device=device(s))
    outer = s[..., :, None] * (s / xp.where(total > 0, total, 1.0))[..., None, :]
    return s[..., :, None] * eye - outer


class _Sparse(AxisActivation):
    output_range = (0.0, 1.0)
    #: the exponent of ``max(scale·z - τ, 0)``, and ``scale``
    power: int = 1
    scale: float = 1.0

    def __init__(self, axis: int = -1, method: str = "sort", n_iter: int = 50) -> None:
        super().__init__(axis)
        self.method = check_choice(method, "method", ("sort", "bisect"))
        self.n_iter = check_int(n_iter, "n_iter")
        if self.n_iter < 1:
            raise ValueError(f"n_iter must be >= 1; got {n_iter}")


    # -- τ ------------------------------------------------------------------
    def _tau_sorted(self, xp: Any, u: Any, axis: int) -> Any:
        raise NotImplementedError

    def _tau_on_support(self, xp: Any, u: Any, support: Any, axis: int) -> Any:
        raise NotImplementedError

    def _mass(self, xp: Any, u: Any, tau: Any, axis: int) -> Any:
        d = xp.clip(u - tau, 0.0, None)
        return xp.sum(d if self.power == 1 else d * d, axis=axis, keepdims=True)

    def _tau(self, xp: Any, u: Any, umax: Any, axis: int) -> Any:
        if self.method == "sort":
            return self._tau_sorted(xp, u, axis)
        # Σ max(u - τ, 0)^p is 0 at τ = max u and >= 1 at τ = max u - 1: bisect on it
        lo, hi = umax - 1.0, umax
        for _ in range(self.n_iter):
            mid = (lo + hi) / 2.0
            big = self._mass(xp, u, mid, axis) >= 1.0
            lo, hi = xp.where(big, mid, lo), xp.where(big, hi, mid)
        # the support is {u > lo}; τ in closed form on it
        return self._tau_on_support(xp, u, u > lo, axis)

    def compute_forward_transient(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        if self.method == "sort" and (fast := _kernel(xp, x, mask)):  # y only for the VJP / JVP kernel
            return fast.forward(x, axis, mask, self.scale, entmax=self.power == 2, transient=True)
        return self.compute_forward(xp, x, axis, mask)

    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        # the kernel serves method="sort" (exact, without a full sort); "bisect" with few steps may misplace
        # a support entry and renormalize, a documented approximation the kernel does not reproduce
        if self.method == "sort" and (fast := _kernel(xp, x, mask)):
            return fast.forward(x, axis, mask, self.scale, entmax=self.power == 2)
        z, m, live = _prepare_scores(xp, x, axis, mask)
        # shifting by the max changes τ only (these maps are shift-invariant); τ >= max u - 1,
        # so scores more than 2 below the max are never in the support: raising them to that
        # level first keeps z - m (and u²) from overflowing
        near = z >= m - 2.0 / self.scale  # (at |m| ~ 1e300, m - 2 == m: only the max is near)
        u = xp.where(near, self.scale * (xp.where(near, z, m) - m), -2.0) + (m - m)  # + (m - m): NaN rows stay NaN
        tau = self._tau(xp, u, xp.zeros_like(m), axis)
        d = xp.clip(u - tau, 0.0, None)
        y = d if self.power == 1 else d * d
        if self.method == "bisect":  # a support misplaced by too few steps still gives a distribution
            total = xp.sum(y, axis=axis, keepdims=True)
            y = y / xp.where(total > 0, total, 1.0)
        return xp.where(live, y, 0.0)

    # -- derivatives ----------------------------------------------------------
    def _s(self, xp: Any, y: Any) -> Any:
        """The Jacobian's vector: ``[y > 0]`` (sparsemax) or ``sqrt(y)`` (entmax-1.5)."""
        raise NotImplementedError

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        if fast := _kernel(xp, y, g):  # the derivatives depend on y only: both methods
            return fast.vjp(y, g, axis, entmax=self.power == 2)
        return support_vjp(xp, self._s(xp, y), g, axis)

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        return self.compute_vjp(xp, x, y, v, axis, mask)  # J is symmetric

    def compute_jacobian(self, xp: Any, x: Any, y: Any, mask: Any) -> Any:
        return support_jacobian(xp, self._s(xp, y))


def _sqrt_pos(xp: Any, a: Any) -> Any:
    """``sqrt(max(a, 0))`` (NaN stays NaN) whose derivative under autodiff is 0, not ``inf · 0 = NaN``,
    where ``a <= 0``: JAX differentiating a JVP rule (second derivatives) meets the unselected roots."""
    pos = ~(a <= 0)
    return xp.where(pos, xp.sqrt(xp.where(pos, a, 1.0)), 0.0)


def _arange_along(xp: Any, u: Any, axis: int) -> Any:
    """``1, 2, ..., n`` shaped to broadcast along ``axis`` of ``u``."""
    n = u.shape[axis]
    shape = [1] * u.ndim
    shape[axis] = n
    return xp.reshape(xp.arange(1, n + 1, dtype=u.dtype, device=device(u)), tuple(shape))


class Sparsemax(_Sparse):
    r"""Sparsemax: :math:`y = \max(z - \tau, 0)` with :math:`\sum y = 1` — the projection onto the simplex.

    Jacobian :math:`\mathrm{diag}(s) - s s^\top/|S|` with :math:`s = [y > 0]`; VJP
    :math:`s \odot (g - \mathrm{mean}_S\, g)`; JVP the same (symmetric).

    Parameters
    ----------
    axis : int
        The class axis.
    method : {"sort", "bisect"}
        Exact sort-based threshold, or bisection then the exact threshold on the found support.
    n_iter : int
        Bisection steps (``method="bisect"``).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.Sparsemax()(np.array([-2.0, 0.0, 0.5]))
    array([0.  , 0.25, 0.75])
    >>> gk.Sparsemax().vjp(np.array([-2.0, 0.0, 0.5]), np.array([3.0, 1.0, 2.0]))
    array([ 0. , -0.5,  0.5])
    """

    name = "sparsemax"

    def _tau_sorted(self, xp: Any, u: Any, axis: int) -> Any:
        srt = xp.flip(xp.sort(u, axis=axis), axis=axis)  # descending; -inf (masked) last
        k = _arange_along(xp, u, axis)
        cs = xp.cumulative_sum(srt, axis=axis)
        # τ = max_k (Σ_{j≤k} u_(j) - 1)/k: each partial average bounds τ from below, the support's is τ
        finite = srt > -xp.inf
        return xp.max(xp.where(finite, (xp.where(finite, cs, 0.0) - 1.0) / k, -xp.inf), axis=axis, keepdims=True)

    def _tau_on_support(self, xp: Any, u: Any, support: Any, axis: int) -> Any:
        size = xp.sum(xp.astype(support, u.dtype), axis=axis, keepdims=True)
        size = xp.where(size > 0, size, 1.0)  # only NaN rows have no support; NaN spreads anyway
        return (xp.sum(xp.where(support, u, 0.0), axis=axis, keepdims=True) - 1.0) / size

    def _s(self, xp: Any, y: Any) -> Any:
        return xp.where(xp.isnan(y), y, xp.astype(y > 0, y.dtype))  # NaN rows stay NaN


class Entmax15(_Sparse):
    r"""Entmax-1.5: :math:`y = \max(z/2 - \tau, 0)^2` with :math:`\sum y = 1`.

    Jacobian :math:`\mathrm{diag}(s) - s s^\top/\sum s` with :math:`s = \sqrt y`; VJP
    :math:`s \odot g - s\langle s, g\rangle/\sum s`; JVP the same (symmetric).
    See :class:`Sparsemax` for the parameters.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.Entmax15()(np.array([-2.0, 0.0, 0.5])).round(8)
    array([0.        , 0.32600736, 0.67399264])
    """

    name = "entmax15"
    power = 2
    scale = 0.5

    def _tau_sorted(self, xp: Any, u: Any, axis: int) -> Any:
        srt = xp.flip(xp.sort(u, axis=axis), axis=axis)
        k = _arange_along(xp, u, axis)
        finite = srt > -xp.inf
        srt0 = xp.where(finite, srt, 0.0)
        mean = xp.cumulative_sum(srt0, axis=axis) / k
        mean_sq = xp.cumulative_sum(srt0 * srt0, axis=axis) / k
        # with the top k in the support: k τ² - 2 τ Σu + Σu² = 1, the smaller root
        delta = (1.0 - k * (mean_sq - mean * mean)) / k
        tau_k = mean - _sqrt_pos(xp, delta)
        # the support is the largest k with τ_k <= u_(k); it is a prefix, so count it
        in_support = finite & (tau_k <= srt0)
        size = xp.sum(xp.astype(in_support, u.dtype), axis=axis, keepdims=True)
        return xp.sum(xp.where(k == size, tau_k, 0.0), axis=axis, keepdims=True)

    def _tau_on_support(self, xp: Any, u: Any, support: Any, axis: int) -> Any:
        k = xp.sum(xp.astype(support, u.dtype), axis=axis, keepdims=True)
        k = xp.where(k > 0, k, 1.0)  # only NaN rows have no support; NaN spreads anyway
        us = xp.where(support, u, 0.0)
        mean = xp.sum(us, axis=axis, keepdims=True) / k
        mean_sq = xp.sum(us * us, axis=axis, keepdims=True) / k
        return mean - _sqrt_pos(xp, (1.0 - k * (mean_sq - mean * mean)) / k)

    def _s(self, xp: Any, y: Any) -> Any:
        # sqrt(y), its derivative kept finite at y = 0 (off the support) for second derivatives under
        # autodiff (JAX differentiating this VJP): there y itself (equal, signed zero included) is selected
        off = y == 0
        return xp.where(off, y, xp.sqrt(xp.where(off, 1.0, y)))
