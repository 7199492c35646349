"""Check derivatives against float64 central differences, and say where they are wrong.

``gradcheck`` draws a **random** upstream vector ``u`` and a random direction
``v`` (never all-ones: ``Σ_i J_ij = 0`` for softmax, so all-ones upstream
cannot see its off-diagonal terms) and runs every check it has the pieces for:

* ``vjp``: ``vjp(x, u)`` against ``∂⟨u, f(x)⟩/∂x_i`` by central differences, per input entry;
* ``jvp``: ``jvp(x, v)`` against ``(f(x + h v) - f(x - h v)) / 2h``, per output entry;
* ``adjoint``: ``⟨jvp(x, v), u⟩ == ⟨v, vjp(x, u)⟩``;
* ``jacobian``: the batched Jacobian contracted with ``v`` against ``jvp(x, v)``.

An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._array import ArrayLike, check_int, check_positive, normalize_axis, to_array
from ._rng import RNGLike, as_generator, check_rng, seed_alias
from .base import Activation
from .compose import Composed
from .losses.base import Loss

__all__ = ["CheckResult", "GradcheckReport", "gradcheck", "random_target"]


@dataclass(frozen=True)
class CheckResult:
    """One check: its errors, the entry where it is worst, and the two values there."""

    check: str
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple[int, ...]
    expected: float
    got: float
    ok: bool
    note: str = ""


@dataclass
class GradcheckReport:
    """What :func:`gradcheck` found. ``print(report)`` shows a table."""

    function: str
    shape: tuple[int, ...]
    results: list[CheckResult] = field(default_factory=list)
    rtol: float = 1e-5
    atol: float = 1e-6

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def max_abs_err(self) -> float:
        """The largest absolute error over all checks."""
        return max((r.max_abs_err for r in self.results), default=0.0)

    @property
    def max_rel_err(self) -> float:
        """The largest relative error ``|a - n| / max(|n|, atol)`` over all checks."""
        return max((r.max_rel_err for r in self.results), default=0.0)

    @property
    def worst(self) -> CheckResult | None:
        """The failing check with the largest error (or the largest error overall)."""
        pool = [r for r in self.results if not r.ok] or self.results
        return max(pool, key=lambda r: r.max_rel_err, default=None)

    @property
    def worst_index(self) -> tuple[int, ...] | None:
        """Index of the worst entry of the worst check (into ``x`` for vjp, the output for jvp)."""
        worst = self.worst
        return None if worst is None else worst.worst_index

    def __str__(self) -> str:
        head = f"gradcheck {self.function} at shape {self.shape} (float64, rtol={self.rtol:g}, atol={self.atol:g}): "
        head += "ok" if self.ok else "FAILED"
        cols = f"{'check':<10} {'max abs err':>12} {'max rel err':>12}  {'worst index':<14} {'expected':>12} {'got':>12}  result"
        lines = [head, cols, "-" * len(cols)]
        for r in self.results:
            idx = str(r.worst_index) if r.worst_index else "()"
            status = "ok" if r.ok else "WRONG"
            lines.append(
                f"{r.check:<10} {r.max_abs_err:>12.3e} {r.max_rel_err:>12.3e}  {idx:<14} {r.expected:>12.5g} {r.got:>12.5g}  {status}"
                + (f"  ({r.note})" if r.note else "")
            )
        return "\n".join(lines)


def random_target(
    loss: Loss, shape: tuple[int, ...], rng: RNGLike, *, labels: bool = False
) -> np.ndarray:
    """A random target valid for ``loss`` and predictions of ``shape``, for checks.

    ``rng`` is a SPEC 7 ``rng``: a Generator (used as is, and advanced), an int seed, or None.

    Class losses get integer labels (``labels=True``) or per-class soft targets
    that do not sum to 1 (the case the ``p - t`` shortcut gets wrong); binary
    losses values in (0.05, 0.95); regression losses standard normal values.
    """
    from .losses.binary import BCELoss, BCEWithLogitsLoss
    from .losses.classification import ClassLoss

    rng = as_generator(rng)
    if isinstance(loss, ClassLoss):
        if labels:
            axis = normalize_axis(loss.axis, len(shape))
            return rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1 :])
        return rng.uniform(0.0, 1.0, shape)
    if isinstance(loss, (BCELoss, BCEWithLogitsLoss)):
        return rng.uniform(0.05, 0.95, shape)
    return rng.standard_normal(shape)


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensors that require grad
        a = a.detach().cpu()
    return np.asarray(a, dtype=np.float64)


def _compare(name: str, got: Any, expected: np.ndarray, rtol: float, atol: float) -> CheckResult:
    got = _numpy(got)
    if got.shape != expected.shape:
        return CheckResult(name, np.inf, np.inf, (), np.nan, np.nan, False, f"shape {got.shape}, expected {expected.shape}")
    diff = np.abs(got - expected)
    diff = np.where(np.isnan(diff) & ~(np.isnan(got) & np.isnan(expected)), np.inf, np.nan_to_num(diff))
    if diff.size == 0:
        return CheckResult(name, 0.0, 0.0, (), 0.0, 0.0, True)
    scale = np.abs(expected)
    violation = diff / (atol + rtol * np.nan_to_num(scale))
    flat = int(np.argmax(violation))
    idx = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    rel = diff / np.maximum(np.nan_to_num(scale), atol)
    return CheckResult(
        name,
        float(diff.max()),
        float(rel.max()),
        idx,
        float(expected[idx]),
        float(got[idx]),
        bool(violation.max() <= 1.0),
    )


def _resolve(f: Any, vjp: Any, jvp: Any, target: Any) -> tuple[Callable, Callable | None, Callable | None, Callable | None, int | None, str]:
    if isinstance(f, Activation):
        if target is not None:
            raise TypeError("target= goes with a loss or a composed head, not an activation")
        return f.forward, vjp or f.vjp, jvp or f.jvp, f.jacobian, f.axis, repr(f)
    if isinstance(f, (Loss, Composed)):
        if target is None:
            raise TypeError(f"gradcheck of {type(f).__name__} needs target=")
        return (
            lambda x: f(x, target),
            vjp or (lambda x, g: f.vjp(x, target, g)),
            jvp or (lambda x, v: f.jvp(x, target, v)),
            None,
            None,
            repr(f),
        )
    if callable(f):
        if vjp is None and jvp is None:
            raise TypeError("gradcheck of a plain function needs vjp=(x, g) -> array and/or jvp=(x, v) -> array")
        if target is not None:
            return (lambda x: f(x, target)), vjp, jvp, None, None, getattr(f, "__name__", repr(f))
        return f, vjp, jvp, None, None, getattr(f, "__name__", repr(f))
    raise TypeError(f"f must be an activation, a loss, a compose() head or a callable; got {type(f).__name__}")


@seed_alias("gradkit.gradcheck")
def gradcheck(
    f: Activation | Loss | Composed | Callable[..., Any],
    x: ArrayLike,
    vjp: Callable[[Any, Any], Any] | None = None,
    jvp: Callable[[Any, Any], Any] | None = None,
    *,
    target: ArrayLike | None = None,
    rng: RNGLike = 0,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    max_points: int = 2000,
) -> GradcheckReport:
    """Check the derivatives of ``f`` at ``x`` against float64 central differences.

    Parameters
    ----------
    f
        An activation, a loss (with ``target=``), a :func:`~gradkit.compose` head
        (with ``target=``), or a plain function ``f(x)`` with ``vjp`` and/or ``jvp``.
    x
        The point; it is converted to a float64 NumPy array.
    vjp, jvp
        ``vjp(x, g)`` and ``jvp(x, v)``; they default to the object's own.
    target
        The target for a loss or a composed head.
    rng : None, int or numpy.random.Generator, default 0
        Source of the random upstream vector, direction and checked entries (SPEC 7): an int
        seeds ``numpy.random.default_rng`` (the default 0 makes the check repeatable), ``None``
        draws fresh entropy, a Generator is used as it is. ``seed=`` is its deprecated old name.
    eps, rtol, atol
        Step of the central differences (scaled by ``max(1, |x_i|)``), and tolerances.
    max_points
        The VJP is checked on at most this many input entries (chosen at random).

    Returns
    -------
    GradcheckReport
        ``.ok``, ``.max_abs_err``, ``.max_rel_err``, ``.worst_index``, and a table via ``print``.

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
    """
    eps = check_positive(eps, "eps")
    rng = check_rng(rng)
    rtol = check_positive(rtol, "rtol", allow_zero=True)
    atol = check_positive(atol, "atol", allow_zero=True)
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol must not both be 0")
    if check_int(max_points, "max_points") < 1:
        raise ValueError(f"max_points must be >= 1; got {max_points}")
    act = f if isinstance(f, Activation) else getattr(f, "activation", None)
    if isinstance(act, Activation) and act.stochastic:  # one sample, held fixed while checking
        with act.frozen():  # type: ignore[attr-defined]
            return _gradcheck(f, x, vjp, jvp, target, rng, eps, rtol, atol, max_points)
    return _gradcheck(f, x, vjp, jvp, target, rng, eps, rtol, atol, max_points)


def _gradcheck(f: Any, x: Any, vjp: Any, jvp: Any, target: Any, rng: RNGLike, eps: float, rtol: float, atol: float,
               max_points: int) -> GradcheckReport:
    fn, vjp_fn, jvp_fn, jac_fn, axis, name = _resolve(f, vjp, jvp, target)
    x = _numpy(to_array(x, "x"))
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite for a finite-difference check")
    rng = as_generator(rng)
    y0 = _numpy(fn(x))
    u = rng.standard_normal(y0.shape)
    v = rng.standard_normal(x.shape)
    report = GradcheckReport(name, tuple(x.shape), rtol=rtol, atol=atol)

    vjp_val = None
    if vjp_fn is not None:
        vjp_val = _numpy(vjp_fn(x, u))
        flat = np.arange(x.size)
        if x.size > max_points:
            flat = np.sort(rng.choice(x.size, max_points, replace=False))
        numeric = np.zeros(x.shape)
        got = np.zeros(x.shape) if vjp_val.shape == x.shape else vjp_val
        for i in flat:
            idx = np.unravel_index(i, x.shape)
            h = eps * max(1.0, abs(x[idx]))
            xp_, xm = x.copy(), x.copy()
            xp_[idx] += h
            xm[idx] -= h
            numeric[idx] = (np.sum(u * _numpy(fn(xp_))) - np.sum(u * _numpy(fn(xm)))) / (2 * h)
            if vjp_val.shape == x.shape:
                got[idx] = vjp_val[idx]
        report.results.append(_compare("vjp", got, numeric, rtol, atol))

    jvp_val = None
    if jvp_fn is not None:
        jvp_val = _numpy(jvp_fn(x, v))
        h = eps * max(1.0, float(np.max(np.abs(x), initial=0.0)))
        numeric = (_numpy(fn(x + h * v)) - _numpy(fn(x - h * v))) / (2 * h)
        report.results.append(_compare("jvp", jvp_val, numeric, rtol, atol))

    if vjp_val is not None and jvp_val is not None and vjp_val.shape == x.shape and jvp_val.shape == y0.shape:
        lhs = float(np.sum(jvp_val * u))
        rhs = float(np.sum(v * vjp_val))
        report.results.append(_compare("adjoint", np.array(rhs), np.array(lhs), rtol, atol))

    if jac_fn is not None and axis is not None and jvp_val is not None and x.ndim > 0:
        jac = _numpy(jac_fn(x))
        ax = normalize_axis(axis, x.ndim)
        if jac.shape == x.shape + (x.shape[ax],):
            rows = np.moveaxis(jac, ax, -2)
            jv = np.moveaxis(np.einsum("...ij,...j->...i", rows, np.moveaxis(v, ax, -1)), -1, ax)
            report.results.append(_compare("jacobian", jv, jvp_val, rtol, atol))
        else:
            report.results.append(
                CheckResult("jacobian", np.inf, np.inf, (), np.nan, np.nan, False, f"shape {jac.shape}, expected {x.shape + (x.shape[ax],)}")
            )
    return report
