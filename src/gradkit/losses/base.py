"""The loss contract: value, gradient, and their products with upstream/tangent vectors.

A loss maps a prediction ``pred`` and a ``target`` to per-item losses ``l_i``
and reduces them:

* ``reduction="none"``: the items themselves (elementwise losses: shape of
  ``pred``; losses over a class axis: ``pred``'s shape without that axis),
* ``"sum"``: :math:`\\sum_i l_i`,
* ``"mean"``: :math:`\\sum_i l_i / D` with ``D`` the number of items (or, for
  class-weighted labels, the sum of the items' weights, as in PyTorch). When
  ``D = 0`` (every item ignored) the loss and its gradient are 0, not NaN.

``grad(pred, target)`` is :math:`\\partial L/\\partial\\,\\mathrm{pred}`; with
``reduction="none"`` it is the gradient of :math:`\\sum_i l_i`, i.e. each item's
own gradient, side by side. ``vjp(pred, target, g)`` weights items by an
upstream ``g`` of the loss's output shape; ``jvp(pred, target, v)`` is the
directional derivative.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from array_api_compat import device

from .._array import as_float, cast, check_choice, like, to_array

__all__ = ["Loss", "ElementwiseLoss"]

REDUCTIONS = ("mean", "sum", "none")


class Loss:
    """Base class for losses; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    #: closed hull of the ``pred`` values on which the loss is defined
    input_domain: tuple[float, float] = (-math.inf, math.inf)

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    # -- public contract -------------------------------------------------
    def __call__(self, pred: Any, target: Any) -> Any:
        """Return the loss (a scalar for ``"mean"``/``"sum"``, per item for ``"none"``)."""
        return self.value_and_grad(pred, target)[0]

    def grad(self, pred: Any, target: Any) -> Any:
        """Return :math:`\\partial L / \\partial\\,\\mathrm{pred}` (shape of ``pred``)."""
        return self.value_and_grad(pred, target)[1]

    def value_and_grad(self, pred: Any, target: Any) -> tuple[Any, Any]:
        """Return the loss and its gradient w.r.t. ``pred`` in one pass."""
        xp, p, out_dtype = as_float(pred, "pred")
        value, grad = self._reduce(xp, *self._items(xp, p, target))
        return cast(xp, value, out_dtype), cast(xp, grad, out_dtype)

    def vjp(self, pred: Any, target: Any, g: Any) -> Any:
        """Return :math:`g^\\top \\partial L/\\partial\\,\\mathrm{pred}` for ``g`` shaped like the loss."""
        xp, p, out_dtype = as_float(pred, "pred")
        items, grad, denom = self._items(xp, p, target)
        _, grad = self._reduce(xp, items, grad, denom, self._upstream(xp, g, items))
        return cast(xp, grad, out_dtype)

    def jvp(self, pred: Any, target: Any, v: Any) -> Any:
        """Return the directional derivative of the loss along ``v`` (shape of the loss)."""
        xp, p, out_dtype = as_float(pred, "pred")
        vc = like(v, p, xp, "v", "pred")
        _, grad = self._reduce(xp, *self._items(xp, p, target))
        return cast(xp, self._contract(xp, grad * vc, p.ndim), out_dtype)

    # -- shared machinery ------------------------------------------------
    def _items(self, xp: Any, p: Any, target: Any, live: Any = None) -> tuple[Any, Any, Any]:
        """Return per-item losses, the gradient of their sum w.r.t. ``p``, and the mean's denominator.

        ``live`` is the mask of a masked activation upstream (class losses drop the
        target mass on masked classes; elementwise losses ignore it).
        """
        raise NotImplementedError

    def _item_axis(self, ndim: int) -> int | None:
        """The axis that items sum over (the class axis), or None for elementwise losses."""
        return None

    def _contract(self, xp: Any, a: Any, ndim: int) -> Any:
        if self.reduction != "none":
            return xp.sum(a)
        axis = self._item_axis(ndim)
        return a if axis is None else xp.sum(a, axis=axis)

    def _upstream(self, xp: Any, g: Any, items: Any) -> Any:
        g = xp.asarray(to_array(g, "g"), device=device(items))
        expected = tuple(items.shape) if self.reduction == "none" else ()
        if tuple(g.shape) != expected:
            raise ValueError(f"g must have the shape of the loss, {expected}; got {tuple(g.shape)}")
        return cast(xp, g, items.dtype)

    def _reduce(self, xp: Any, items: Any, grad: Any, denom: Any, g: Any = None) -> tuple[Any, Any]:
        """Reduce items; scale the gradient by the reduction and the upstream ``g``."""
        if self.reduction == "none":
            if g is not None:
                axis = self._item_axis(grad.ndim)
                grad = grad * (g if axis is None else xp.expand_dims(g, axis=axis))
            return items, grad
        value = xp.sum(items)
        if self.reduction == "mean":
            if isinstance(denom, int):  # elementwise losses: the element count, > 0
                value, grad = value / denom, grad / denom
            else:  # an array: the sum of item weights, which may be 0 (all ignored)
                ok = denom > 0
                scale = xp.where(ok, 1.0 / xp.where(ok, denom, 1.0), 0.0)  # a scalar: one pass over grad
                value, grad = value * scale, grad * scale
        if g is not None:
            grad = grad * g
        return value[()], grad  # one scalar type (np.float64 for NumPy) whatever the path

    def _params(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


class ElementwiseLoss(Loss):
    """A loss with one item per element: ``target`` has the shape of ``pred``.

    Behind a masked activation (``compose(..., where=)``) masked entries take no
    part: their items and gradients are 0; ``"mean"`` still divides by the element count.

    Subclasses give ``_terms(xp, p, t)`` returning the elementwise values and
    their derivatives w.r.t. ``p``; ``_check(xp, p, t)`` may validate ranges.
    """

    def _items(self, xp: Any, p: Any, target: Any, live: Any = None) -> tuple[Any, Any, Any]:
        t = like(target, p, xp, "target", "pred")
        if xp.any(xp.isnan(t)):
            raise ValueError("target contains NaN")
        if math.prod(p.shape) == 0:
            raise ValueError(f"pred must not be empty; got shape {tuple(p.shape)}")
        if live is not None:  # masked entries of an activation upstream (e.g. -inf from log_softmax)
            p = xp.where(live, p, 0.0)  # take no part: a stand-in in every domain, then zeroed
        self._check(xp, p, t)
        value, grad = self._terms(xp, p, t)
        if live is not None:
            value, grad = xp.where(live, value, 0.0), xp.where(live, grad, 0.0)
        return value, grad, math.prod(p.shape)

    def _check(self, xp: Any, p: Any, t: Any) -> None:
        pass

    def _terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        raise NotImplementedError
