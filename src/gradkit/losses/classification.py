"""Losses over a class axis: cross-entropy, negative log-likelihood, KL divergence.

``target`` is either integer labels, with ``pred``'s shape less the class axis,
or per-class targets (one-hot or soft, not necessarily summing to 1) with
``pred``'s shape. Options shared by all three (PyTorch's conventions):

* ``weight`` (shape ``(n,)``): class :math:`c` counts :math:`w_c` times,
  :math:`l_i = \\sum_c w_c\\,\\ell(p_{ic}, t_{ic})`. With labels, ``"mean"`` divides
  by the sum of the items' weights :math:`\\sum_i w_{y_i}`; with per-class targets,
  by the number of items.
* ``ignore_index`` (labels only): those items contribute 0 and leave the mean's
  denominator; an all-ignored batch gives loss 0 and gradient 0.
* ``label_smoothing`` :math:`\\varepsilon`: :math:`t \\leftarrow (1-\\varepsilon)t + \\varepsilon/n`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import device, is_jax_namespace, is_numpy_namespace

from .._array import (
    ArrayLike,
    cast,
    check_int,
    check_positive,
    check_weight,
    moveaxis,
    normalize_axis,
    to_array,
    values_hidden,
)
from .base import Loss

__all__ = ["ClassLoss", "CrossEntropyLoss", "KLDivLoss", "NLLLoss"]


class PreparedTarget:
    """Per-class targets ``t`` (shape of pred), class weights broadcast along the
    class axis (or None), and the mean's denominator."""

    __slots__ = ("denom", "t", "w")

    def __init__(self, t: Any, w: Any, denom: Any) -> None:
        self.t, self.w, self.denom = t, w, denom

    def weighted(self) -> Any:
        """``w ⊙ t`` (or ``t`` without class weights)."""
        return self.t if self.w is None else self.w * self.t


class ClassLoss(Loss):
    """Base for losses summed over a class axis: :math:`l_i = \\sum_c w_c\\,\\ell(p_{ic}, t_{ic})`.

    Subclasses implement the hook ``compute_terms(xp, p, t)`` (and may implement
    ``check_values(xp, p, t)``); targets (labels or per-class), ``weight``,
    ``ignore_index``, ``label_smoothing``, masks and the reduction are handled here.
    """

    def __init__(
        self,
        axis: int = -1,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.axis = check_int(axis, "axis")
        self.ignore_index = check_int(ignore_index, "ignore_index")
        self.label_smoothing = check_positive(label_smoothing, "label_smoothing", allow_zero=True)
        if self.label_smoothing > 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1]; got {label_smoothing!r}")
        self.weight = None if weight is None else check_weight(weight, "weight")
        if self.weight is not None and self.weight.ndim != 1:
            raise ValueError(f"weight must be a 1-d array of per-class weights; got shape {tuple(self.weight.shape)}")


    def item_axis(self, ndim: int) -> int:
        return normalize_axis(self.axis, ndim)

    def prepare_target(self, xp: Any, p: Any, target: Any, live: Any = None) -> PreparedTarget:
        """Validate ``target`` against ``p`` and return per-class targets and weights.

        ``live`` (a boolean mask of ``p``'s shape, from a masked activation) drops the
        target mass on masked classes and spreads label smoothing over live ones only.
        """
        axis = normalize_axis(self.axis, p.ndim, array="pred")
        n = p.shape[axis]
        if n == 0:
            raise ValueError(f"pred must have at least one class along axis={self.axis}; got shape {tuple(p.shape)}")
        target = xp.asarray(to_array(target, "target"), device=device(p))
        item_shape = tuple(p.shape[:axis]) + tuple(p.shape[axis + 1 :])
        w = None
        if self.weight is not None:
            if tuple(self.weight.shape) != (n,):
                raise ValueError(f"weight must have shape ({n},), one per class; got {tuple(self.weight.shape)}")
            w = xp.astype(xp.asarray(self.weight, device=device(p)), p.dtype)
        checked = self.check_labels(xp, p, target)
        if checked is not None:
            labels, valid = checked
            onehot = cast(xp, labels[..., None] == xp.arange(n, device=device(p)), p.dtype)
            validf = xp.expand_dims(cast(xp, valid, p.dtype), axis=axis)
            t = self._smooth(xp, moveaxis(xp, onehot, -1, axis), axis, live) * validf
            item_w = validf
            if w is not None:  # each item counts with its label's weight
                label_w = xp.reshape(xp.take(w, xp.reshape(labels, (-1,))), tuple(labels.shape))
                item_w = validf * xp.expand_dims(label_w, axis=axis)
            denom = xp.sum(item_w)
        elif tuple(target.shape) == tuple(p.shape):
            if xp.isdtype(target.dtype, "bool") or xp.isdtype(target.dtype, "complex floating"):
                raise TypeError(f"target must be real probabilities or integer labels; got dtype {target.dtype}")
            t = cast(xp, target, p.dtype)
            if not values_hidden(t) and bool(xp.any(xp.isnan(t))):
                raise ValueError("target contains NaN")
            if not values_hidden(t) and bool(xp.any(t < 0)):
                raise ValueError(f"target probabilities must be >= 0; got a minimum of {float(xp.min(t))}")
            t = self._smooth(xp, t, axis, live)
            denom = math.prod(item_shape)
        else:
            raise ValueError(
                f"target must be integer labels of shape {item_shape} or per-class targets of shape "
                f"{tuple(p.shape)} (class axis {self.axis}); got shape {tuple(target.shape)}"
            )
        if w is not None:
            shape = [1] * p.ndim
            shape[axis] = n
            w = xp.reshape(w, tuple(shape))
        return PreparedTarget(t, w, denom)

    def check_labels(self, xp: Any, p: Any, target: Any) -> tuple[Any, Any] | None:
        """For integer-label targets: ``(labels, valid)`` with ignored labels set to 0 and
        ``valid`` marking the others; None when ``target`` has ``p``'s shape (per-class targets)."""
        axis = normalize_axis(self.axis, p.ndim, array="pred")
        n = p.shape[axis]
        if (type(target) is np.ndarray and target.dtype.kind in "iu" and target.size and type(p) is np.ndarray
                and target.shape == p.shape[:axis] + p.shape[axis + 1 :]):
            # NumPy labels all in range, none ignored (a training batch): two reductions instead of the masks
            lo, hi = int(target.min()), int(target.max())
            if 0 <= lo and hi < n and not lo <= self.ignore_index <= hi:
                return target.astype(np.int64, copy=False), np.ones(target.shape, dtype=bool)
        target = xp.asarray(to_array(target, "target"), device=device(p))
        item_shape = tuple(p.shape[:axis]) + tuple(p.shape[axis + 1 :])
        if not (tuple(target.shape) == item_shape and target.ndim == p.ndim - 1):
            return None
        if not xp.isdtype(target.dtype, "integral"):
            raise TypeError(f"target labels must be integers; got dtype {target.dtype} (for probabilities pass shape {tuple(p.shape)})")
        valid = target != self.ignore_index
        bad = valid & ((target < 0) | (target >= n))
        if not values_hidden(bad) and bool(xp.any(bad)):
            raise ValueError(f"target labels must be in [0, {n - 1}] or ignore_index={self.ignore_index}; got {int(xp.min(target))}..{int(xp.max(target))}")
        labels = xp.where(valid, target, 0)
        # JAX keeps the labels' own integer type: int64 exists there only with jax_enable_x64 (else a warning)
        return (labels if is_jax_namespace(xp) else xp.astype(labels, xp.int64)), valid

    def _smooth(self, xp: Any, t: Any, axis: int, live: Any) -> Any:
        """``(1 - ε) t + ε / n``; with a mask, over the ``n`` live classes only."""
        eps = self.label_smoothing
        if live is None:
            return (1.0 - eps) * t + eps / t.shape[axis] if eps else t
        livef = cast(xp, live, t.dtype)
        t = t * livef
        if eps:
            n_live = xp.sum(livef, axis=axis, keepdims=True)
            t = (1.0 - eps) * t + eps * livef / xp.where(n_live > 0, n_live, 1.0)
        return t

    def compute_items(self, xp: Any, p: Any, target: Any, live: Any = None) -> tuple[Any, Any, Any]:
        tgt = self.prepare_target(xp, p, target, live)
        self.check_values(xp, p, tgt.t)
        value, grad = self.compute_terms(xp, p, tgt.t)
        if tgt.w is not None:
            value, grad = tgt.w * value, tgt.w * grad
        return xp.sum(value, axis=normalize_axis(self.axis, p.ndim)), grad, tgt.denom

    def check_values(self, xp: Any, p: Any, t: Any) -> None:
        """Hook: refuse values of ``p`` or ``t`` the loss is not defined on (``ValueError``); default: none.

        ``p`` is in the loss's ``input_domain`` already; ``t`` holds per-class targets (labels
        one-hot encoded, smoothing applied) with ``p``'s shape.
        """

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        """Hook: return ``(ℓ(p, t), ∂ℓ/∂p)`` per entry, both of ``p``'s shape.

        The items are the sums of ``ℓ`` over the class axis (after class weights); the
        reduction, upstream vectors and JVPs are done by the base class.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement compute_terms")


def xlogy(xp: Any, t: Any, a: Any) -> Any:
    """``t * a`` with 0 wherever ``t == 0`` (so 0 · log 0 = 0 and 0 · -inf = 0)."""
    return xp.where(t != 0, t * xp.where(t != 0, a, 0.0), 0.0)


def _clamped_log(xp: Any, p: Any) -> tuple[Any, Any]:
    """``log(max(p, tiny))`` and ``max(p, tiny)``: finite even at p = 0."""
    safe = xp.clip(p, xp.finfo(p.dtype).smallest_normal, None)
    return xp.log(safe), safe


class _ProbabilityInput(ClassLoss):
    input_domain = (0.0, 1.0)  # probabilities: an unnormalized p >= 0 makes -log p unbounded below
    domain_name = "probabilities"
    domain_hint = (
        "Logits (what PyTorch's CrossEntropyLoss takes) go through compose(Softmax(), CrossEntropyLoss()), "
        "or NLLLoss on log_softmax(z)"
    )


class CrossEntropyLoss(_ProbabilityInput):
    r"""Cross-entropy on probabilities :math:`p` (e.g. a softmax output):
    :math:`l = -\sum_c w_c t_c \log p_c`, :math:`\partial l/\partial p_c = -w_c t_c / p_c`.

    :math:`\log p` is clamped at the smallest normal number, so :math:`p = 0`
    gives a finite loss. Composed with :class:`~gradkit.Softmax`, the gradient
    w.r.t. the logits is :math:`p\sum_c t_c - t` (:math:`= p - t` only when
    :math:`\sum_c t_c = 1`); ``compose`` computes it from the logits, exactly.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> p = np.array([[0.25, 0.75], [0.5, 0.5]])
    >>> L, dp = gk.CrossEntropyLoss().value_and_grad(p, np.array([1, 0]))
    >>> round(float(L), 6), dp
    (0.490415, array([[ 0.        , -0.66666667],
           [-1.        ,  0.        ]]))
    """

    name = "cross_entropy"

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        log_p, safe = _clamped_log(xp, p)
        return -xlogy(xp, t, log_p), (0.0 - t) / safe


class NLLLoss(ClassLoss):
    r"""Negative log-likelihood on log-probabilities :math:`q` (e.g. a log-softmax output):
    :math:`l = -\sum_c w_c t_c q_c`, :math:`\partial l/\partial q_c = -w_c t_c`.

    Entries with :math:`t_c = 0` contribute 0 even where :math:`q_c = -\infty` (masked classes).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.NLLLoss(reduction="sum").grad(np.log([[0.25, 0.75]]), np.array([1]))
    array([[ 0., -1.]])
    """

    name = "nll"
    input_domain = (-math.inf, 0.0)  # log-probabilities: on any real q, -t·q is unbounded below
    domain_name = "log-probabilities"
    domain_hint = "Logits go through compose(LogSoftmax(), NLLLoss()), or pass log_softmax(z)"

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        return -xlogy(xp, t, p), 0.0 - t

    def compute_items(self, xp: Any, p: Any, target: Any, live: Any = None) -> tuple[Any, Any, Any]:
        # NumPy, integer labels, no class weights, smoothing or mask: -q[label] picked, and the gradient
        # -[c = label] written, instead of the one-hot target and its terms (the same numbers; per-batch
        # overhead of a training step). Everything else, and every check, as for any class loss.
        if self.weight is None and not self.label_smoothing and live is None and is_numpy_namespace(xp) and p.size:
            checked = self.check_labels(xp, p, target)
            if checked is not None:
                return _picked_nll(p, normalize_axis(self.axis, p.ndim, array="pred"), *checked)
        return super().compute_items(xp, p, target, live)


def _picked_nll(q: Any, axis: int, labels: Any, valid: Any) -> tuple[Any, Any, Any]:
    """NLL's items, gradient of their sum and denominator for integer ``labels`` (``valid``: not ignored)."""
    last = q.ndim - 1
    rows = (q if axis == last else np.moveaxis(q, axis, -1)).reshape(-1, q.shape[axis])
    flat, ok = labels.reshape(-1), valid.reshape(-1)
    at = np.arange(flat.shape[0])
    zero = q.dtype.type(0.0)
    items = np.where(ok, -rows[at, flat], zero)
    grad = np.zeros(rows.shape, dtype=q.dtype)
    grad[at, flat] = np.where(ok, q.dtype.type(-1.0), zero)
    grad = grad.reshape(q.shape if axis == last else np.moveaxis(q, axis, -1).shape)
    return items.reshape(labels.shape), grad if axis == last else np.moveaxis(grad, -1, axis), np.sum(ok, dtype=q.dtype)


class KLDivLoss(_ProbabilityInput):
    r"""Kullback–Leibler divergence :math:`\mathrm{KL}(t\,\|\,p) = \sum_c w_c t_c(\log t_c - \log p_c)`.

    Convention (stated because libraries differ): ``pred`` is the model's
    distribution :math:`p` — probabilities, or log-probabilities with
    ``log_input=True`` — and ``target`` is the reference distribution :math:`t`
    ``"mean"`` averages over items (every position but the class axis), not
    elements: for 2-d input it is PyTorch's ``F.kl_div(log p, t, reduction="batchmean")``;
    for ``(b, t, n)`` input it divides by ``b·t`` where ``batchmean`` divides by ``b``.
    :math:`\partial l/\partial p_c = -w_c t_c/p_c` (log input: :math:`-w_c t_c`).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> round(float(gk.KLDivLoss()(np.array([0.5, 0.5]), np.array([0.9, 0.1]))), 6)
    0.368064
    """

    name = "kl_div"

    def __init__(
        self,
        axis: int = -1,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        log_input: bool = False,
    ) -> None:
        super().__init__(axis, weight, ignore_index, label_smoothing, reduction)
        if not isinstance(log_input, bool):
            raise TypeError(f"log_input must be a bool; got {log_input!r}")
        self.log_input = log_input
        self.input_domain = (-math.inf, 0.0) if log_input else (0.0, 1.0)
        if log_input:
            self.domain_name = "log-probabilities"  # type: ignore[misc]
            self.domain_hint = "Logits go through compose(LogSoftmax(), KLDivLoss(log_input=True))"  # type: ignore[misc]
        else:
            self.domain_hint = "Logits go through compose(Softmax(), KLDivLoss())"  # type: ignore[misc]


    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        log_t = xp.log(xp.where(t > 0, t, 1.0))
        if self.log_input:
            return xlogy(xp, t, log_t - p), 0.0 - t
        log_p, safe = _clamped_log(xp, p)
        return xlogy(xp, t, log_t - log_p), (0.0 - t) / safe
