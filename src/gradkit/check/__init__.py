"""Check derivatives against central differences, and say where they are wrong.

``gradcheck`` draws a **random** upstream vector ``u`` and a random direction
``v`` (never all-ones: ``Σ_i J_ij = 0`` for softmax, so all-ones upstream
cannot see its off-diagonal terms) and runs every check it has the pieces for:

* ``vjp``: ``vjp(x, u)`` against ``∂⟨u, f(x)⟩/∂x_i`` by central differences, per input entry;
* ``jvp``: ``jvp(x, v)`` against ``(f(x + h v) - f(x - h v)) / 2h``, per output entry;
* ``adjoint``: ``⟨jvp(x, v), u⟩ == ⟨v, vjp(x, u)⟩``;
* ``jacobian``: the batched Jacobian contracted with ``v`` against ``jvp(x, v)``;
* with ``fast=True``, instead of the two per-entry checks, ``vjp (fast)`` and ``jvp (fast)``:
  the one number ``uᵀJv`` from ``⟨vjp(x, u), v⟩`` and from ``⟨u, jvp(x, v)⟩`` against
  ``(⟨u, f(x + h v)⟩ - ⟨u, f(x - h v)⟩) / 2h`` (two evaluations of ``f`` whatever the size);
* for a :mod:`gradkit.nn` layer or ``Sequential``: ``vjp`` is ``backward``'s input gradient, and
  one ``vjp <name>`` row per parameter checks ``grads[name]``.

The check runs in the precision of ``x`` and of ``f(x)`` (the coarser of the two): the step is
``h = ∛ε · max(1, |x_i|)`` (``ε`` that dtype's machine epsilon: about ``6e-6`` in float64,
``5e-3`` in float32, ``0.1`` in float16), where the truncation error ``h² f'''/6`` and the
rounding error ``ε |f| / h`` of a central difference balance, and the tolerances follow the
dtype (:data:`DEFAULT_TOLERANCES`). An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.

Kinks: where an entry fails, ``f`` is also evaluated at ``± 2h`` and the one-sided derivatives
(quadratic fits on ``[-2h, 0]`` and ``[0, 2h]``) and the segment slopes are compared. If ``f`` is not
smooth there (the one-sided derivatives disagree, or the slopes bend, by more than the tolerance)
and the analytic value lies between the one-sided derivatives (a valid one-sided derivative or
subgradient, e.g. ``relu'(0) = 0``), the entry is a **kink**, counted and reported, not an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from .._array import ArrayLike, check_int, check_positive
from .._rng import RNGLike, as_generator, check_rng, seed_alias
from ..base import Activation
from ..composition import Composed
from ..losses.base import Loss
from .checks import (
    FAST_PROBES,
    JACOBIAN_MAX_ENTRIES,
    _fast,
    _jacobian,
    _jvp_entries,
    _Opts,
    _param_checks,
    _vjp_entries,
)
from .differences import DEFAULT_TOLERANCES, _dtype_name, _numpy, _working_eps, default_step, default_tolerances
from .report import CheckResult, GradcheckReport, _compare
from .subjects import _check_callable, _draw, _layer_params, _np_dtypes, _on_host, _point, _resolve, random_target

__all__ = ["DEFAULT_TOLERANCES", "FAST_PROBES", "JACOBIAN_MAX_ENTRIES", "CheckResult", "GradcheckReport", "default_step",
           "default_tolerances", "gradcheck", "random_target"]


@seed_alias("gradkit.gradcheck")
def gradcheck(
    f: Activation | Loss | Composed | Callable[..., Any], x: ArrayLike, vjp: Callable[[Any, Any], Any] | None = None,
    jvp: Callable[[Any, Any], Any] | None = None, *, target: ArrayLike | None = None, rng: RNGLike = 0,
    eps: float | None = None, rtol: float | None = None, atol: float | None = None, max_points: int = 2000,
    fast: bool = False, allow_kinks: bool = True,
) -> GradcheckReport:
    """Check the derivatives of ``f`` at ``x`` against central differences.

    Parameters
    ----------
    f
        An activation, a loss (with ``target=``), a :func:`~gradkit.compose` head
        (with ``target=``), a :mod:`gradkit.nn` layer or ``Sequential`` (its ``backward``: the
        input gradient and every parameter's gradient), or a plain function ``f(x)`` with
        ``vjp`` and/or ``jvp``.
    x
        The point, a real array. It keeps its floating dtype (integers become float64), and the
        check runs in that precision, or in the output's if that is coarser (a float32 layer).
        Cast ``x`` to float64 for the strictest check.
    vjp, jvp
        ``vjp(x, g)`` and ``jvp(x, v)``; they default to the object's own.
    target
        The target for a loss or a composed head.
    rng : None, int or numpy.random.Generator, default 0
        Source of the random upstream vector, direction and checked entries (SPEC 7): an int
        seeds ``numpy.random.default_rng`` (the default 0 makes the check repeatable), ``None``
        draws fresh entropy, a Generator is used as it is. ``seed=`` is its deprecated old name.
    eps : float, optional
        Relative step of the central differences: entry ``i`` moves by ``eps * max(1, |x_i|)``.
        Default ``∛ε`` of the working dtype (:func:`default_step`: ``6.1e-6`` in float64,
        ``4.9e-3`` in float32, ``0.099`` in float16).
    rtol, atol : float, optional
        Tolerances; an entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
        Default by working dtype (:data:`DEFAULT_TOLERANCES`): ``(1e-5, 1e-6)`` in float64,
        ``(1e-2, 1e-3)`` in float32, ``(0.2, 0.1)`` in float16.
    max_points : int, default 2000
        The VJP is checked on at most this many input entries (chosen at random), each costing
        two evaluations of ``f``.
    fast : bool, default False
        Check only ``uᵀJv`` for the random ``u`` and ``v``, from the VJP and from the JVP, against one
        central difference: two evaluations of ``f`` whatever the size of ``x`` (PyTorch's
        ``fast_mode``). It catches wrong derivatives but cannot say at which entry.
    allow_kinks : bool, default True
        Entries at a non-differentiable point (a kink: the one-sided derivatives differ and the
        analytic value is one of them or lies between) are counted and reported but do not fail
        the check. With ``False`` they fail it.

    Returns
    -------
    GradcheckReport
        ``.ok``, ``.max_abs_err``, ``.max_rel_err``, ``.worst_index``, ``.kinks``, and a table via ``print``.

    Examples
    --------
    The classic bug: softmax's "derivative" taken as its diagonal ``s(1 - s)``.

    >>> import numpy as np, gradkit as gk
    >>> sm = gk.Softmax()
    >>> wrong = lambda x, g: g * sm(x) * (1 - sm(x))
    >>> x = np.array([[0.3, -1.2, 2.0, 0.5]])
    >>> gk.gradcheck(sm, x, vjp=wrong).ok
    False
    >>> gk.gradcheck(sm, x).ok
    True

    ReLU at exactly 0 is a kink, reported and not counted as an error:

    >>> rep = gk.gradcheck(gk.ReLU(), np.array([-1.0, 0.0, 2.0]))
    >>> rep.ok, rep.kinks
    (True, 1)
    """
    rng, step, rtol_, atol_ = _check_options(rng, eps, rtol, atol, max_points, fast, allow_kinks, vjp, jvp)
    args = (f, x, vjp, jvp, target, rng, step, rtol_, atol_, int(max_points), bool(fast), bool(allow_kinks))
    act = f if isinstance(f, Activation) else getattr(f, "activation", None)
    if isinstance(act, Activation) and act.stochastic:  # one sample, held fixed while checking
        with act.frozen():  # type: ignore[attr-defined]
            return _gradcheck(*args)
    return _gradcheck(*args)


def _check_options(rng: RNGLike, eps: float | None, rtol: float | None, atol: float | None, max_points: int,
                   fast: bool, allow_kinks: bool, vjp: Any, jvp: Any) -> tuple[RNGLike, float | None, float | None,
                                                                             float | None]:
    """``gradcheck``'s options checked: ``(rng, step, rtol, atol)``, None where the dtype's default applies."""
    rng = check_rng(rng)
    step = None if eps is None else check_positive(eps, "eps")
    rtol_ = None if rtol is None else check_positive(rtol, "rtol", allow_zero=True)
    atol_ = None if atol is None else check_positive(atol, "atol", allow_zero=True)
    if rtol_ == 0 and atol_ == 0:
        raise ValueError("rtol and atol must not both be 0")
    if check_int(max_points, "max_points") < 1:
        raise ValueError(f"max_points must be >= 1; got {max_points}")
    for flag, flag_name in ((fast, "fast"), (allow_kinks, "allow_kinks")):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{flag_name} must be True or False; got {flag!r} ({type(flag).__name__})")
    _check_callable(vjp, "vjp")
    _check_callable(jvp, "jvp")
    return rng, step, rtol_, atol_


def _gradcheck(f: Any, x: Any, vjp: Any, jvp: Any, target: Any, rng: RNGLike, step: float | None,
               rtol: float | None, atol: float | None, max_points: int, fast: bool, allow_kinks: bool) -> GradcheckReport:
    if target is not None:
        target = _on_host(target)  # with x, differentiated in NumPy on the host
    fn, vjp_fn, jvp_fn, jac_fn, axis, name = _resolve(f, vjp, jvp, target)
    x = _point(x)
    rng = as_generator(rng)
    y0_raw = fn(x)
    y0 = _numpy(y0_raw)
    y_dtype = getattr(y0_raw, "dtype", np.float64)
    params = _layer_params(f)
    dtypes = [x.dtype, y_dtype] + [p.dtype for p in params.values()]
    work_eps = _working_eps(*_np_dtypes(dtypes))
    dtype = _dtype_name(work_eps)
    d_rtol, d_atol = DEFAULT_TOLERANCES[dtype]
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol must not both be 0")
    x_eps = float(np.finfo(x.dtype).eps)
    if step is not None and step < 4 * x_eps:
        raise ValueError(f"eps must be at least 4 machine epsilons of x's dtype {x.dtype} ({4 * x_eps:.3g}), or "
                         f"x ± eps·max(1, |x|) rounds back to x; got {step:g} (the default for {dtype} is "
                         f"{work_eps ** (1.0 / 3.0):.3g})")
    o = _Opts(work_eps ** (1.0 / 3.0) if step is None else step, rtol, atol, max_points, allow_kinks)
    out_dtype = _np_dtypes([y_dtype])[0]
    out_dtype = out_dtype if out_dtype.kind == "f" else np.dtype(np.float64)
    u = rng.standard_normal(y0.shape).astype(out_dtype).astype(np.float64)  # representable in the output's dtype
    v = rng.standard_normal(x.shape)
    report = GradcheckReport(name, tuple(x.shape), rtol=rtol, atol=atol, dtype=dtype, step=o.step)
    phi0 = float(np.sum(u * y0))
    h_dir, v = o.step, v * np.maximum(1.0, np.abs(x))  # each entry moves by about step * max(1, |x_i|)

    if fast:
        probes = [(u, v)] + [_draw(rng, y0.shape, x, out_dtype) for _ in range(FAST_PROBES - 1)]
        results, vjp_val, jvp_val, veff = _fast(fn, x, y0, vjp_fn, jvp_fn, probes, out_dtype, h_dir, o)
        report.results.extend(results)
    else:
        vjp_val = None if vjp_fn is None else _numpy(vjp_fn(x, u.astype(out_dtype)))
        jvp_val, veff = None, v
        if vjp_val is not None:
            report.results.append(_vjp_entries("vjp", fn, vjp_val, x, u, phi0, rng, o))
        if jvp_fn is not None:
            res, jvp_val, veff = _jvp_entries(fn, jvp_fn, x, y0, v, h_dir, o)
            report.results.append(res)

    if vjp_val is not None and jvp_val is not None and vjp_val.shape == x.shape and jvp_val.shape == y0.shape:
        lhs = float(np.sum(jvp_val * u))
        rhs = float(np.sum(veff * vjp_val))
        report.results.append(_compare("adjoint", np.array(rhs), np.array(lhs), rtol, atol))

    if jac_fn is not None and axis is not None and jvp_val is not None and x.ndim > 0:
        report.results.append(_jacobian(jac_fn, x, axis, veff, jvp_val, rtol, atol))

    if params:
        report.results.extend(_param_checks(f, x, u, out_dtype, rng, o, fast))
    if vjp is None and jvp is None:
        _mark_derived(report, getattr(f, "derived_from_vjp", frozenset()))
    return report


def _mark_derived(report: GradcheckReport, derived: frozenset[str]) -> None:
    """Say which rows compare the VJP with derivatives built from it (a custom activation's missing JVP or
    Jacobian): they pass whatever the VJP is, so they are no independent check."""
    notes = {"adjoint": "the JVP is derived from the VJP: this cannot fail" if "jvp" in derived else "",
             "jacobian": "derived from the VJP: not an independent check" if "jacobian" in derived else ""}
    report.results[:] = [dataclasses.replace(r, note="; ".join(filter(None, (r.note, notes.get(r.check, "")))))
                         for r in report.results]
