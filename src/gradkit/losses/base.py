"""The loss contract: value, gradient, and their products with upstream/tangent vectors.

A loss maps a prediction ``pred`` and a ``target`` to per-item losses ``l_i``
and reduces them:

* ``reduction="none"``: the items themselves (elementwise losses: shape of
  ``pred``; losses over a class axis: ``pred``'s shape without that axis),
* ``"sum"``: :math:`\\sum_i l_i`,
* ``"mean"``: :math:`\\sum_i l_i / D` with ``D`` the number of items (or, for
  class-weighted labels, the sum of the items' weights, as in PyTorch). When
  ``D = 0`` (every item ignored) the loss and its gradient are 0, not NaN.

Empty batches (no items: ``pred`` with 0 rows) follow PyTorch: ``"mean"`` is NaN
(0/0: a mean over nothing has no finite answer), ``"sum"`` is 0, ``"none"`` an empty
array; the gradient, VJP and ``"none"`` JVP are empty arrays of their usual shapes,
the ``"mean"`` JVP is NaN and the ``"sum"`` JVP 0.

``grad(pred, target)`` is :math:`\\partial L/\\partial\\,\\mathrm{pred}`; with
``reduction="none"`` it is the gradient of :math:`\\sum_i l_i`, i.e. each item's
own gradient, side by side. ``vjp(pred, target, g)`` weights items by an
upstream ``g`` of the loss's output shape; ``jvp(pred, target, v)`` is the
directional derivative.

Domains: each loss declares ``input_domain``, the closed hull of the ``pred`` it
is defined on (probabilities ``[0, 1]`` for ``cross_entropy``, ``kl_div`` and
``bce``; log-probabilities ``<= 0`` for ``nll`` and ``kl_div(log_input=True)``).
Calls refuse ``pred`` outside it with ``ValueError`` (logits passed as
probabilities give a negative loss, not an error, otherwise); values outside by
no more than rounding, ``DOMAIN_ULPS`` = 16 machine epsilons of the caller's
dtype, are clipped onto the bound. :func:`gradkit.compose` uses the same domain
to refuse activations whose range leaves it, and clips the activation's output
(masked entries are not looked at).

Huge finite inputs: the reduction's factors (``1/D``, a scalar upstream ``g``, a
loss's own constant such as MSE's 2) are combined into one scalar before they
touch the gradient, a mean whose sum overflows is redone as a sum of scaled items,
and a JVP whose products overflow is redone on ``v / 2^k``: where the exact answer
fits the dtype the result is finite. A per-item loss beyond the range (MSE's
``(1e200)²``) is ``inf``, and so is its mean.

Writing a loss: subclass :class:`ElementwiseLoss` (one item per element) or
:class:`~gradkit.losses.ClassLoss` (items summed over a class axis) and implement the
public hook ``compute_terms(xp, p, t) -> (values, derivatives)``, optionally
``check_values(xp, p, t)``; set ``name`` and, for a bounded domain, ``input_domain``.
A loss of any other shape subclasses :class:`Loss` and implements ``compute_items``
(and ``item_axis``). ``grad_factor`` lets a hook return a scaled gradient (MSE), and
``item_factor`` scaled items (the Fenchel–Young losses return half of each item).
The hooks get the namespace ``xp`` and validated arrays; the public methods here do
the rest. :func:`gradkit.custom_loss` builds an elementwise one from two functions.
A loss's parameters are its constructor's (:meth:`Loss.get_params`): ``__init__`` stores each
named argument as the attribute of the same name, and ``repr``, ``==`` and ``hash`` read them.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

import numpy as np
from array_api_compat import array_namespace, device

from .._array import (
    Array,
    ArrayLike,
    as_float,
    branch_free,
    cast,
    check_choice,
    check_constructor_kwargs,
    like,
    numpy_errstate,
    scale_fresh,
    to_array,
    values_hidden,
)
from .._params import Parametrized, param_names

__all__ = ["ElementwiseLoss", "Loss"]

REDUCTIONS = ("mean", "sum", "none")

#: how far (in units of the dtype's machine epsilon, relative to max(1, |bound|)) ``pred`` may lie
#: outside a finite bound of ``input_domain`` and still be taken as rounding: a softmax computed as
#: ``e * (1/Σe)`` can exceed 1 by an ulp or two, ``log`` of such a value is ~1e-16 > 0, a
#: sparsemax ``z - τ`` can overshoot by a few ulps. 16 ulps covers these with room; a real logit,
#: even 1.0001, is far outside. Values within the tolerance are clipped onto the bound.
DOMAIN_ULPS = 16


class Loss(Parametrized):
    """Base class for losses; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    #: closed hull of the ``pred`` values on which the loss is defined; calls refuse
    #: ``pred`` outside it (beyond rounding, see ``DOMAIN_ULPS``) and :func:`gradkit.compose`
    #: refuses activations whose ``output_range`` leaves it
    input_domain: tuple[float, float] = (-math.inf, math.inf)
    #: what ``pred`` must be, for the error message (e.g. "probabilities")
    domain_name: ClassVar[str] = "values"
    #: what to do instead, for the error message
    domain_hint: ClassVar[str] = ""
    #: the true gradient is this factor times the one ``compute_terms``/``compute_items`` return
    #: (MSE returns ``(p - t)/2`` for ``2(p - t)``, factor 4): the factor is applied after the division by
    #: the mean's denominator, so a gradient whose mean is finite does not overflow on the way
    grad_factor: ClassVar[float] = 1.0
    #: the true items are this factor times the ones ``compute_items`` returns (the Fenchel–Young
    #: losses return half: an item near the float maximum whose mean is finite does not overflow on the way);
    #: applied after the division by the mean's denominator, like ``grad_factor``
    item_factor: ClassVar[float] = 1.0

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        check_constructor_kwargs(cls, kwargs)
        param_names(cls)  # refuses a constructor taking *args, before it runs
        return super().__new__(cls)

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS)

    # -- public contract -------------------------------------------------
    def __call__(self, pred: ArrayLike, target: ArrayLike) -> Array:
        """Return the loss (a scalar for ``"mean"``/``"sum"``, per item for ``"none"``)."""
        return self.value_and_grad(pred, target)[0]

    def grad(self, pred: ArrayLike, target: ArrayLike) -> Array:
        """Return :math:`\\partial L / \\partial\\,\\mathrm{pred}` (shape of ``pred``)."""
        return self.value_and_grad(pred, target)[1]

    def value_and_grad(self, pred: ArrayLike, target: ArrayLike) -> tuple[Array, Array]:
        """Return the loss and its gradient w.r.t. ``pred`` in one pass."""
        xp, p, out_dtype = self._prepare_pred(pred)
        value, grad = self._reduce(xp, *self.compute_items(xp, p, target), in_place=True)
        return cast(xp, value, out_dtype), cast(xp, grad, out_dtype)

    def vjp(self, pred: ArrayLike, target: ArrayLike, g: ArrayLike) -> Array:
        """Return :math:`g^\\top \\partial L/\\partial\\,\\mathrm{pred}` for ``g`` shaped like the loss."""
        xp, p, out_dtype = self._prepare_pred(pred)
        items, grad, denom = self.compute_items(xp, p, target)
        _, grad = self._reduce(xp, items, grad, denom, self._upstream(xp, g, items), in_place=True)
        return cast(xp, grad, out_dtype)

    def jvp(self, pred: ArrayLike, target: ArrayLike, v: ArrayLike) -> Array:
        """Return the directional derivative of the loss along ``v`` (shape of the loss)."""
        xp, p, out_dtype = self._prepare_pred(pred)
        vc = like(v, p, xp, "v", "pred")
        items, raw, denom = self.compute_items(xp, p, target)
        with numpy_errstate(xp, over="ignore", invalid="ignore"):  # a non-finite result is redone below
            _, gv = self._reduce(xp, items, raw * vc, denom)  # the reduction is linear in the gradient
            out = self._contract(xp, gv, p.ndim)
        if not math.prod(items.shape):  # an empty batch: nothing to redo (a mean's JVP is 0/0, as in PyTorch)
            return cast(xp, out, out_dtype)
        if branch_free(out) or not bool(xp.all(xp.isfinite(out))):
            # a term (2·d·v at d ~ max) or the sum of terms of both signs overflowed, where the
            # directional derivative may be finite: redo it on v / F and scale back, where needed
            big = 2.0 ** min(math.frexp(float(xp.finfo(p.dtype).max))[1] // 8, 128)  # float32: 2^16, float64: 2^128 (torch.finfo has no maxexp)
            _, small = self._reduce(xp, items, raw * (vc / big), denom)
            out = xp.where(xp.isfinite(out), out, self._contract(xp, small, p.ndim) * big)
        return cast(xp, out, out_dtype)

    def _prepare_pred(self, pred: Any) -> tuple[Any, Any, Any]:
        """``as_float`` plus the domain check with the caller's dtype's rounding (float16 input is
        computed in float32, but its probabilities are rounded to float16)."""
        xp, p, out_dtype = as_float(pred, "pred")
        if p.ndim and math.prod(p.shape):  # empty and 0-d input get their own errors later
            p = self.in_domain(xp, p, eps=float(xp.finfo(out_dtype).eps))
        return xp, p, out_dtype

    # -- the domain --------------------------------------------------------
    def in_domain(self, xp: Any, p: Any, live: Any = None, eps: float | None = None) -> Any:
        """Return ``p``, refusing values outside ``input_domain`` with ``ValueError``.

        Values outside by no more than rounding (``DOMAIN_ULPS`` machine epsilons of
        ``eps``'s dtype, relative to the bound) are clipped onto the bound. ``live``: only
        these entries are checked (masked entries of a ``where=`` may hold anything).
        NaN is not refused here (it propagates). One or two reductions when ``p`` is inside.
        """
        lo, hi = self.input_domain
        if (lo == -math.inf and hi == math.inf) or not math.prod(p.shape):  # (an empty p has no min or max)
            return p
        inside = min(max(0.0, lo), hi)  # a stand-in inside the domain
        q = p if live is None else xp.where(live, p, inside)
        if values_hidden(q):  # values out of reach (jit, torch.compile, meta) or checked: clipped, not checked
            return self.clip_to_domain(xp, p)
        # two reductions, no temporaries, one value read (NaN fails them and takes the slow path, which lets it through)
        ok = None if lo == -math.inf else xp.min(q) >= lo
        if hi < math.inf:
            ok = xp.max(q) <= hi if ok is None else ok & (xp.max(q) <= hi)
        if bool(ok):
            return p
        tol = DOMAIN_ULPS * (float(xp.finfo(p.dtype).eps) if eps is None else eps)
        lo_ok, hi_ok = lo - tol * max(1.0, abs(lo)), hi + tol * max(1.0, abs(hi))
        if bool(xp.any((q < lo_ok) | (q > hi_ok))):
            live_q = xp.where(xp.isnan(q), inside, q)
            shown = f"got values in [{float(xp.min(live_q))}, {float(xp.max(live_q))}]"
            bounds = f"in [{lo}, {hi}]" if lo > -math.inf and hi < math.inf else (f"<= {hi}" if hi < math.inf else f">= {lo}")
            raise ValueError(
                f"pred must be {self.domain_name} {bounds} for {self.name}; {shown}"
                + (f". {self.domain_hint}" if self.domain_hint else "")
            )
        return self.clip_to_domain(xp, p)

    def clip_to_domain(self, xp: Any, p: Any) -> Any:
        """``p`` clipped onto ``input_domain`` (NaN stays NaN), without looking at its values."""
        lo, hi = self.input_domain
        if lo == -math.inf and hi == math.inf:
            return p
        return xp.clip(p, lo if lo > -math.inf else None, hi if hi < math.inf else None)

    # -- shared machinery ------------------------------------------------
    def compute_items(self, xp: Any, p: Any, target: Any, live: Any = None) -> tuple[Any, Any, Any]:
        """Hook: return per-item losses, the gradient of their sum w.r.t. ``p`` (divided by
        ``grad_factor``), and the mean's denominator (an int, or a 0-d array that may be 0).

        ``p`` is validated and inside ``input_domain``; ``target`` is as the caller gave it.
        The items may be returned divided by ``item_factor``.
        ``live`` is the mask of a masked activation upstream (class losses drop the
        target mass on masked classes; elementwise losses zero masked entries). Subclasses
        of :class:`ElementwiseLoss` or :class:`~gradkit.losses.ClassLoss` implement
        ``compute_terms`` instead.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement compute_items")

    def item_axis(self, ndim: int) -> int | None:
        """Hook: the axis that items sum over (the class axis), or None for elementwise losses."""
        return None

    def _contract(self, xp: Any, a: Any, ndim: int) -> Any:
        """A JVP from the reduced gradient times the tangent: summed over the items' axes (and over
        nothing, for a mean over no items, NaN as in PyTorch: 0/0)."""
        if self.reduction != "none":
            out = xp.sum(a)
            return out if math.prod(a.shape) or self.reduction == "sum" else out * math.nan
        axis = self.item_axis(ndim)
        return a if axis is None else xp.sum(a, axis=axis)

    def _upstream(self, xp: Any, g: Any, items: Any) -> Any:
        g = to_array(g, "g")
        if array_namespace(g) is not xp or device(g) != device(items):  # (torch.asarray of a tensor that
            g = xp.asarray(g, device=device(items))  # requires grad warns: a recorded backward passes one)
        expected = tuple(items.shape) if self.reduction == "none" else ()
        if tuple(g.shape) != expected:
            raise ValueError(f"g must have the shape of the loss, {expected}; got {tuple(g.shape)}")
        return cast(xp, g, items.dtype)

    def _reduce(self, xp: Any, items: Any, grad: Any, denom: Any, g: Any = None, in_place: bool = False) -> tuple[Any, Any]:
        """Reduce items; scale the gradient by the reduction and the upstream ``g``.

        Every factor (``grad_factor``, ``1/D``, a scalar ``g``) is combined into one scalar
        before it touches the gradient, so a gradient whose exact value is finite does not
        overflow on the way (``2·(p - t)`` for ``p - t`` near the float maximum).
        ``in_place``: the caller uses ``grad`` no further, so a kernel's new gradient may be
        scaled in place (:func:`~gradkit._array.scale_fresh`).
        """
        if self.reduction != "none" and not math.prod(items.shape):
            # no items (an empty batch): as PyTorch, the sum is 0 and the mean 0/0 = NaN (no finite answer);
            # the gradient is empty, and so is the upstream's product with it
            value = xp.sum(items)
            return (value * math.nan if self.reduction == "mean" else value)[()], grad
        if self.reduction == "none":
            items = self.true_items(items)
            if g is None:
                return items, grad if self.grad_factor == 1.0 else grad * self.grad_factor
            axis = self.item_axis(grad.ndim)
            per_item = g * self.grad_factor
            return items, grad * (per_item if axis is None else xp.expand_dims(per_item, axis=axis))
        with numpy_errstate(xp, over="ignore"):  # NumPy: a sum that overflows where the mean does not is redone below
            value = items.sum() if type(items) is np.ndarray else xp.sum(items)  # (NumPy: the method, no wrappers)
        scale: Any = self.grad_factor
        if self.reduction == "mean":
            if isinstance(denom, int):  # elementwise losses: the element count, > 0
                inv: Any = 1.0 / denom
            elif isinstance(denom, np.generic):  # a NumPy scalar (the kernels' count): the same numbers, no 0-d arrays
                d: Any = denom
                inv = d.dtype.type(1.0) / d if d > 0 else d.dtype.type(0.0)
            else:  # an array: the sum of item weights, which may be 0 (all ignored)
                ok = denom > 0
                inv = xp.where(ok, 1.0 / xp.where(ok, denom, 1.0), 0.0)
            # item_factor joins 1/D before either touches the sum (half items: 2/D)
            mean = value * (inv if self.item_factor == 1.0 else inv * self.item_factor)
            if branch_free(mean):  # no branch on a device's (or a tracer's) value: both, selected
                mean = xp.where(xp.isinf(mean) & xp.all(xp.isfinite(items)), self.true_items(xp.sum(items * inv)), mean)
            elif (math.isinf(mean) if isinstance(mean, np.generic) else bool(xp.isinf(mean))) and bool(
                    xp.all(xp.isfinite(items))):  # the sum overflowed, the mean need not
                mean = self.true_items(xp.sum(items * inv))
            value, scale = mean, inv * scale
        else:
            value = self.true_items(value)
        if g is not None:
            scale = scale * g
        if not (isinstance(scale, float) and scale == 1.0):
            grad = scale_fresh(grad, scale) if in_place else grad * scale  # a scalar: one pass over grad
        return value[()], grad  # one scalar type (np.float64 for NumPy) whatever the path

    def true_items(self, items: Any) -> Any:
        """The items from ``compute_items``' (which omit ``item_factor``)."""
        return items if self.item_factor == 1.0 else items * self.item_factor

    def sum_items(self, xp: Any, items: Any) -> Any:
        """The items' sum from ``compute_items``' items (which omit ``item_factor``)."""
        return self.true_items(xp.sum(items))

    def sum_grad(self, grad: Any) -> Any:
        """The gradient of the items' sum from ``compute_items``' gradient (which omits ``grad_factor``)."""
        return grad if self.grad_factor == 1.0 else grad * self.grad_factor

    # -- identity: the constructor's parameters -------------------------------


class ElementwiseLoss(Loss):
    """A loss with one item per element: ``target`` has the shape of ``pred``.

    Behind a masked activation (``compose(..., where=)``) masked entries take no
    part: their items and gradients are 0; ``"mean"`` still divides by the element count.

    Subclasses give ``compute_terms(xp, p, t)`` returning the elementwise values and
    their derivatives w.r.t. ``p``; ``check_values(xp, p, t)`` may validate ranges.
    """

    def compute_items(self, xp: Any, p: Any, target: Any, live: Any = None) -> tuple[Any, Any, Any]:
        t = like(target, p, xp, "target", "pred")
        if not values_hidden(t) and bool(xp.any(xp.isnan(t))):
            raise ValueError("target contains NaN")
        if live is not None:  # masked entries of an activation upstream (e.g. -inf from log_softmax)
            p = xp.where(live, p, 0.0)  # take no part: a stand-in in every domain, then zeroed
        self.check_values(xp, p, t)
        value, grad = self.compute_terms(xp, p, t)
        if live is not None:
            value, grad = xp.where(live, value, 0.0), xp.where(live, grad, 0.0)
        return value, grad, math.prod(p.shape)

    def check_values(self, xp: Any, p: Any, t: Any) -> None:
        """Hook: refuse values of ``p`` or ``t`` the loss is not defined on (``ValueError``); default: none.

        Called before :meth:`compute_terms` with ``p`` already inside ``input_domain`` and ``t``
        of ``p``'s shape and dtype, free of NaN.
        """

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        """Hook: return ``(ℓ(p, t), ∂ℓ/∂p)`` elementwise, both of ``p``'s shape.

        ``∂ℓ/∂p`` may be returned divided by ``grad_factor`` (see :class:`Loss`); use only
        functions of the namespace ``xp``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement compute_terms")
