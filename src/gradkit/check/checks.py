"""The checks: VJP entries, JVP entries, the fast ``uᵀJv`` probes, the batched Jacobian, parameter gradients."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._array import normalize_axis
from .differences import _direction_phis, _five_point, _numpy, _shift
from .kinks import _failing, _kink_note, _kinks
from .report import CheckResult, _compare, _shape_failure
from .subjects import _draw

__all__ = ['FAST_PROBES', 'JACOBIAN_MAX_ENTRIES']


#: the batched Jacobian is checked only when it holds at most this many entries (128 MiB in float64)
JACOBIAN_MAX_ENTRIES = 2**24


# -- the checks -------------------------------------------------------------------------------------------------
@dataclass
class _Opts:
    step: float
    rtol: float
    atol: float
    max_points: int
    allow_kinks: bool


def _vjp_entries(name: str, fn: Callable, vjp_val: np.ndarray, x: np.ndarray, u: np.ndarray, phi0: float,
                 rng: np.random.Generator, o: _Opts) -> CheckResult:
    """``vjp_val`` against central differences of ``⟨u, fn(x)⟩``, entry by entry (at most ``max_points``)."""
    if vjp_val.shape != x.shape:
        return _shape_failure(name, vjp_val.shape, x.shape)
    flat = np.arange(x.size)
    if x.size > o.max_points:
        flat = np.sort(rng.choice(x.size, o.max_points, replace=False))

    def phi(point: np.ndarray) -> float:
        return float(np.sum(u * _numpy(fn(point))))

    n = flat.size
    p1p, p1m, t1p, t1m = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for k, i in enumerate(flat):
        idx = np.unravel_index(i, x.shape)
        h = o.step * max(1.0, abs(float(x[idx])))
        xp, t1p[k] = _shift(x, idx, h)
        xm, t1m[k] = _shift(x, idx, -h)
        p1p[k], p1m[k] = phi(xp), phi(xm)
    with np.errstate(all="ignore"):
        central = (p1p - p1m) / (t1p - t1m)
    analytic = vjp_val.ravel()[flat]
    kink = np.zeros(n, dtype=bool)
    left, right = np.zeros(n), np.zeros(n)
    candidates = np.flatnonzero(_failing(analytic, central, o.rtol, o.atol) & np.isfinite(central))
    if candidates.size:
        p2p, p2m, t2p, t2m = (np.full(candidates.size, np.nan) for _ in range(4))
        for j, k in enumerate(candidates.tolist()):
            idx = np.unravel_index(flat[k], x.shape)
            xp, t2p[j] = _shift(x, idx, 2 * t1p[k])
            xm, t2m[j] = _shift(x, idx, 2 * t1m[k])
            p2p[j], p2m[j] = phi(xp), phi(xm)
        c = candidates
        kink[c], left[c], right[c] = _kinks(analytic[c], central[c], (p2m, p1m[c], phi0, p1p[c], p2p),
                                            (t2m, t1m[c], 0.0, t1p[c], t2p), o.rtol, o.atol)
    numeric, got, kink_full = np.zeros(x.shape), np.zeros(x.shape), np.zeros(x.shape, dtype=bool)
    numeric.ravel()[flat], got.ravel()[flat], kink_full.ravel()[flat] = central, analytic, kink
    note = ""
    if kink.any():
        lf, rf = np.zeros(x.shape), np.zeros(x.shape)
        lf.ravel()[flat], rf.ravel()[flat] = left, right
        note = _kink_note(kink_full, lf, rf, got)
    return _compare(name, got, numeric, o.rtol, o.atol, kink_full, o.allow_kinks, note)


#: how many random pairs ``(u, v)`` the fast mode checks (each: two evaluations of ``f``, one VJP, one JVP)
FAST_PROBES = 4


def _fast(fn: Callable, x: np.ndarray, y0: np.ndarray, vjp_fn: Callable | None, jvp_fn: Callable | None,
          probes: list[tuple[np.ndarray, np.ndarray]], out_dtype: np.dtype, h: float, o: _Opts, label: str = "",
          ) -> tuple[list[CheckResult], np.ndarray | None, np.ndarray | None, np.ndarray]:
    """The ``uᵀJv`` checks for each pair ``(u, v)``: a central difference of ``⟨u, f(x + t v)⟩`` against
    ``⟨vjp(x, u), v⟩`` and ``⟨u, jvp(x, v)⟩``; each row keeps its worst pair.

    Returns the rows, and the VJP, JVP and realized direction of the first pair (for the adjoint check).
    """
    rows: dict[str, list[CheckResult]] = {}
    first: tuple[Any, Any, Any] = (None, None, None)
    for k, (u, v) in enumerate(probes):
        fp, fm, dp, dm = _direction_phis(fn, x, v, h, 1.0)
        f2p, f2m, _, _ = _direction_phis(fn, x, v, h, 2.0)
        veff = (dp - dm) / 2  # the direction the rounded points realize
        phis = tuple(float(np.sum(u * f)) for f in (f2m, fm, y0, fp, f2p))
        central = _five_point(phis[0], phis[1], phis[2], phis[3], phis[4], h)
        vjp_val = None if vjp_fn is None else _numpy(vjp_fn(x, u.astype(out_dtype)))
        jvp_val = None if jvp_fn is None else _numpy(jvp_fn(x, veff.astype(x.dtype)))
        if k == 0:
            first = (vjp_val, jvp_val, veff)
        # an error of atol in each entry of the VJP (of the JVP) moves the number by about atol·|v| (atol·|u|)
        checks: list[tuple[str, Any, Any, float]] = []
        if vjp_val is not None:
            a = float(np.sum(vjp_val * veff)) if vjp_val.shape == x.shape else None
            checks.append((f"vjp{label} (fast)", a, (vjp_val.shape, x.shape), o.atol * float(np.linalg.norm(veff))))
        if jvp_val is not None:
            a = float(np.sum(u * jvp_val)) if jvp_val.shape == y0.shape else None
            checks.append((f"jvp{label} (fast)", a, (jvp_val.shape, y0.shape), o.atol * float(np.linalg.norm(u))))
        for name, a, shapes, atol in checks:
            if a is None:
                rows.setdefault(name, []).append(_shape_failure(name, *shapes))
                continue
            kink = np.zeros((), dtype=bool)
            note = ""
            if np.isfinite(central) and _failing(np.array(a), np.array(central), o.rtol, atol):
                kink, left, right = _kinks(np.array(a), np.array(central), phis, (-2 * h, -h, 0.0, h, 2 * h),
                                           o.rtol, atol)
                kink = np.asarray(kink, dtype=bool).reshape(())
                note = _kink_note(kink, np.asarray(left).reshape(()), np.asarray(right).reshape(()), np.array(a))
            res = _compare(name, np.array(a), np.array(central), o.rtol, atol, kink, o.allow_kinks, note)
            rows.setdefault(name, []).append(res)
    results = []
    for name, found in rows.items():
        pool = [r for r in found if not r.ok] or found
        worst = max(pool, key=lambda r: r.max_rel_err)
        n_kinks = sum(r.kinks for r in found)
        note = worst.note or next((r.note for r in found if r.kinks), "")
        note = (note + "; " if note else "") + f"worst of {len(found)} random (u, v)"
        results.append(CheckResult(name, worst.max_abs_err, worst.max_rel_err, worst.worst_index, worst.expected,
                                   worst.got, all(r.ok for r in found), note, n_kinks, worst.kink_index))
    return results, first[0], first[1], first[2]


def _jvp_entries(fn: Callable, jvp_fn: Callable, x: np.ndarray, y0: np.ndarray, v: np.ndarray, h: float, o: _Opts,
                 ) -> tuple[CheckResult, np.ndarray, np.ndarray]:
    fp, fm, dp, dm = _direction_phis(fn, x, v, h, 1.0)
    f2p, f2m, _, _ = _direction_phis(fn, x, v, h, 2.0)
    veff = (dp - dm) / 2
    jvp_val = _numpy(jvp_fn(x, veff.astype(x.dtype)))
    numeric = _five_point(f2m, fm, y0, fp, f2p, h)
    if jvp_val.shape != numeric.shape:
        return _shape_failure("jvp", jvp_val.shape, numeric.shape), jvp_val, veff
    kink = np.zeros(numeric.shape, dtype=bool)
    note = ""
    fail = _failing(jvp_val, numeric, o.rtol, o.atol) & np.isfinite(numeric)
    if fail.any():
        kink, left, right = _kinks(jvp_val, numeric, (f2m, fm, y0, fp, f2p), (-2 * h, -h, 0.0, h, 2 * h),
                                   o.rtol, o.atol)
        kink = kink & fail
        note = _kink_note(kink, left, right, jvp_val)
    return _compare("jvp", jvp_val, numeric, o.rtol, o.atol, kink, o.allow_kinks, note), jvp_val, veff


def _jacobian(jac_fn: Callable, x: np.ndarray, axis: int, v: np.ndarray, jvp_val: np.ndarray, rtol: float,
              atol: float) -> CheckResult:
    ax = normalize_axis(axis, x.ndim)
    n = x.shape[ax]
    if x.size * n > JACOBIAN_MAX_ENTRIES:
        return CheckResult("jacobian", 0.0, 0.0, (), 0.0, 0.0, True,
                           f"skipped: the Jacobian would hold {x.size * n:,} entries (more than {JACOBIAN_MAX_ENTRIES:,})")
    jac = _numpy(jac_fn(x))
    if jac.shape != x.shape + (n,):
        return _shape_failure("jacobian", jac.shape, x.shape + (n,))
    rows = np.moveaxis(jac, ax, -2)
    jv = np.moveaxis(np.einsum("...ij,...j->...i", rows, np.moveaxis(v, ax, -1)), -1, ax)
    return _compare("jacobian", jv, jvp_val, rtol, atol)


def _param_checks(layer: Any, x: np.ndarray, u: np.ndarray, out_dtype: np.dtype, rng: np.random.Generator, o: _Opts,
                  fast: bool) -> list[CheckResult]:
    """One ``vjp <name>`` check per parameter of a layer: ``backward``'s ``grads[name]`` against differences."""
    results = []
    for pname, param in layer.params.items():
        saved = param.copy()

        def fn(theta: np.ndarray, param: np.ndarray = param) -> Any:
            param[...] = theta
            return layer.forward(x)

        def grad(theta: np.ndarray, g: Any, param: np.ndarray = param, pname: str = pname) -> np.ndarray:
            param[...] = theta
            layer.forward(x)
            layer.backward(g)
            return np.array(layer.grads[pname], dtype=np.float64)

        try:
            theta0 = saved.copy()
            y0 = _numpy(fn(theta0))
            if fast:
                probes = [_draw(rng, y0.shape, theta0, out_dtype) for _ in range(FAST_PROBES)]
                results.extend(_fast(fn, theta0, y0, grad, None, probes, out_dtype, o.step, o, f" {pname}")[0])
            else:
                got = grad(theta0, u.astype(out_dtype))
                results.append(_vjp_entries(f"vjp {pname}", fn, got, theta0, u, float(np.sum(u * y0)), rng, o))
        finally:
            param[...] = saved
            layer.forward(x)
    return results
