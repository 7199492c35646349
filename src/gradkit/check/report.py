"""What a check found: one :class:`CheckResult` per check, gathered in a :class:`GradcheckReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .differences import _numpy

__all__ = ['CheckResult', 'GradcheckReport']


@dataclass(frozen=True)
class CheckResult:
    """One check: its errors, the entry where it is worst, the two values there, and its kinks.

    ``kinks`` counts the entries found at a non-differentiable point (``kink_index`` is the first),
    which are left out of the errors when the report allows kinks.
    """

    check: str
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple[int, ...]
    expected: float
    got: float
    ok: bool
    note: str = ""
    kinks: int = 0
    kink_index: tuple[int, ...] = ()


@dataclass
class GradcheckReport:
    """What :func:`gradcheck` found. ``print(report)`` shows a table."""

    function: str
    shape: tuple[int, ...]
    results: list[CheckResult] = field(default_factory=list)
    rtol: float = 1e-5
    atol: float = 1e-6
    dtype: str = "float64"
    step: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def kinks(self) -> int:
        """How many entries sat at a non-differentiable point (skipped, or failed with ``allow_kinks=False``).

        The most any one check found: the VJP and the JVP rows see the same kink of an elementwise map
        (at an input entry and at its output entry), which is one non-differentiable point, not two.
        """
        return max((r.kinks for r in self.results), default=0)

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
        step = f", h={self.step:.3g}*max(1,|x|)" if self.step else ""
        head = (f"gradcheck {self.function} at shape {self.shape} "
                f"({self.dtype}{step}, rtol={self.rtol:g}, atol={self.atol:g}): ")
        head += "ok" if self.ok else "FAILED"
        if self.kinks:
            head += (f" ({self.kinks} kinks: non-differentiable points" if self.kinks > 1
                     else " (1 kink: a non-differentiable point")
            head += ", skipped)" if self.ok or all(r.ok or not r.kinks for r in self.results) else ")"
        cols = f"{'check':<10} {'max abs err':>12} {'max rel err':>12}  {'worst index':<14} {'expected':>12} {'got':>12}  result"
        lines = [head, cols, "-" * len(cols)]
        for r in self.results:
            idx = str(r.worst_index) if r.worst_index else "()"
            status = ("ok" if r.ok else "WRONG") + (f", {r.kinks} kink{'s' if r.kinks > 1 else ''}" if r.kinks else "")
            lines.append(
                f"{r.check:<10} {r.max_abs_err:>12.3e} {r.max_rel_err:>12.3e}  {idx:<14} {r.expected:>12.5g} {r.got:>12.5g}  {status}"
                + (f"  ({r.note})" if r.note else "")
            )
        return "\n".join(lines)


def _shape_failure(name: str, got: tuple[int, ...], expected: tuple[int, ...]) -> CheckResult:
    return CheckResult(name, np.inf, np.inf, (), np.nan, np.nan, False, f"shape {got}, expected {expected}")


def _compare(name: str, got: Any, expected: np.ndarray, rtol: float, atol: float,
             kink: np.ndarray | None = None, allow_kinks: bool = True, kink_note: str = "") -> CheckResult:
    got = _numpy(got)
    if got.shape != expected.shape:
        return _shape_failure(name, got.shape, expected.shape)
    diff = np.abs(got - expected)
    diff = np.where(np.isnan(diff) & ~(np.isnan(got) & np.isnan(expected)), np.inf, np.nan_to_num(diff))
    n_kinks, kink_index = 0, ()  # type: tuple[int, tuple[int, ...]]
    if kink is not None and kink.any():
        n_kinks = int(kink.sum())
        kink_index = tuple(int(i) for i in np.unravel_index(int(np.argmax(kink)), kink.shape))
        if allow_kinks:
            diff = np.where(kink, 0.0, diff)
    if diff.size == 0:
        return CheckResult(name, 0.0, 0.0, (), 0.0, 0.0, True)
    scale = np.abs(expected)
    violation = diff / (atol + rtol * np.nan_to_num(scale))
    flat = int(np.argmax(violation))
    idx = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    rel = diff / np.maximum(np.nan_to_num(scale), atol)
    ok = bool(violation.max() <= 1.0)
    note = kink_note if n_kinks else ""
    if n_kinks and not allow_kinks:
        ok = False
        note += "; kinks fail: allow_kinks=False"
    return CheckResult(name, float(diff.max()), float(rel.max()), idx, float(expected[idx]), float(got[idx]), ok,
                       note, n_kinks, kink_index)
