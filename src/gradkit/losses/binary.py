"""Binary cross-entropy on probabilities and on logits (elementwise, targets in [0, 1])."""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from .._array import ArrayLike, check_weight, values_hidden
from .base import ElementwiseLoss

__all__ = ["BCELoss", "BCEWithLogitsLoss"]


def _broadcast(xp: Any, a: Any, ref: Any, name: str) -> Any:
    """Bring an optional weight to ``ref``'s namespace/dtype; it must broadcast to ``ref``'s shape."""
    if a is None:
        return None
    a = xp.asarray(a, device=device(ref))
    try:
        ok = tuple(xp.broadcast_shapes(tuple(a.shape), tuple(ref.shape))) == tuple(ref.shape)
    except (ValueError, RuntimeError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must broadcast to pred's shape {tuple(ref.shape)}; got {tuple(a.shape)}")
    return xp.astype(a, ref.dtype)


class _Binary(ElementwiseLoss):
    def __init__(self, weight: ArrayLike | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = None if weight is None else check_weight(weight, "weight")


    def _check_target(self, xp: Any, t: Any) -> None:
        if not values_hidden(t) and bool(xp.any((t < 0) | (t > 1))):
            raise ValueError(f"target must be in [0, 1] for {self.name}; got values in [{float(xp.min(t))}, {float(xp.max(t))}]")

    def _weighted(self, xp: Any, p: Any, value: Any, grad: Any) -> tuple[Any, Any]:
        w = _broadcast(xp, self.weight, p, "weight")
        return (value, grad) if w is None else (w * value, w * grad)


class BCELoss(_Binary):
    r"""Binary cross-entropy on probabilities :math:`p \in [0, 1]`:
    :math:`l = -[t\log p + (1-t)\log(1-p)]`, :math:`\partial l/\partial p = (p - t)/(p(1-p))`.

    As in PyTorch, each log is clamped at :math:`-100` and :math:`p(1-p)` at
    :math:`10^{-12}`, so ``p`` of exactly 0 or 1 gives a finite loss. Prefer
    :class:`BCEWithLogitsLoss` (or ``compose(Sigmoid(), BCELoss())``, which uses
    it) for exact values at saturated logits. ``weight`` rescales elements.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> round(float(gk.BCELoss()(np.array([0.8]), np.array([1.0]))), 6)
    0.223144
    """

    name = "bce"
    input_domain = (0.0, 1.0)
    domain_name = "probabilities"
    domain_hint = "Logits go through BCEWithLogitsLoss, or compose(Sigmoid(), BCELoss())"

    def check_values(self, xp: Any, p: Any, t: Any) -> None:
        self._check_target(xp, t)

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        # log 0 -> -100 as in PyTorch, without a divide-by-zero warning; NaN stays NaN
        log_p = xp.clip(xp.where(p == 0, -100.0, xp.log(xp.where(p == 0, 1.0, p))), -100.0, None)
        log_q = xp.clip(xp.where(p == 1, -100.0, xp.log1p(-xp.where(p == 1, 0.0, p))), -100.0, None)
        value = -(t * log_p + (1.0 - t) * log_q)
        grad = (p - t) / xp.clip(p * (1.0 - p), 1e-12, None)
        return self._weighted(xp, p, value, grad)


class BCEWithLogitsLoss(_Binary):
    r"""Binary cross-entropy on logits :math:`z`, with ``pos_weight`` :math:`w`:

    :math:`l = (1-t)z + (1 + (w-1)t)\,\mathrm{softplus}(-z)`,
    :math:`\partial l/\partial z = (1-t) - (1 + (w-1)t)\,\sigma(-z)` (:math:`= \sigma(z) - t` for :math:`w = 1`).

    Exact and overflow-free for any :math:`z`, including the limits at :math:`z = \\pm\\infty`:
    at :math:`+\\infty` the loss is :math:`+\\infty` for :math:`t < 1` and 0 for :math:`t = 1`;
    at :math:`-\\infty` it is :math:`+\\infty` for :math:`w t > 0` and 0 for :math:`t = 0`; the
    gradient is the limit of the formula (:math:`1 - t` and :math:`-w t`), as in PyTorch. ``weight`` rescales elements;
    ``pos_weight`` broadcasts against ``pred`` (per class on the last axis).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.BCEWithLogitsLoss(reduction="none")(np.array([-1000.0, 0.0]), np.array([1.0, 1.0])).round(6).tolist()
    [1000.0, 0.693147]
    """

    name = "bce_with_logits"

    def __init__(
        self, weight: ArrayLike | None = None, pos_weight: ArrayLike | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__(weight, reduction)
        self.pos_weight = None if pos_weight is None else check_weight(pos_weight, "pos_weight")


    def check_values(self, xp: Any, p: Any, t: Any) -> None:
        self._check_target(xp, t)

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        w = _broadcast(xp, self.pos_weight, p, "pos_weight")
        coef = 1.0 if w is None else 1.0 + (w - 1.0) * t
        wt = t if w is None else w * t
        # z >= 0: (1-t) z + c·softplus(-z);  z < 0, the same rewritten: -w t z + c·softplus(z).
        # Each form adds two terms of one sign (no cancellation, no overflow where the loss is
        # finite, e.g. z = -1e308), and at z = ±inf gives the limit: +inf, or 0 where the
        # coefficient of z is 0 (t = 1 at +inf, w·t = 0 at -inf), never 0·inf = NaN.
        e = xp.exp(-xp.abs(p))  # in [0, 1]: shared by softplus(-|z|) and σ(-z)
        neg = p < 0
        one_minus_t = 1.0 - t
        slope = xp.where(neg, 0.0 - wt, one_minus_t)
        linear = slope * xp.where(slope != 0, p, 0.0)  # 0 · ±inf is 0 here (NaN z stays NaN through e)
        value = linear + coef * xp.log1p(e)
        grad = one_minus_t - coef * (xp.where(neg, 1.0, e) / (1.0 + e))  # σ(-z)
        return self._weighted(xp, p, value, grad)
