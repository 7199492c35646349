"""Chain an activation into a loss: ``L(z) = loss(act(z), target)``.

The generic path is the chain rule, for any pair::

    p = act(z);  L, dp = loss.value_and_grad(p, target);  dz = act.vjp(z, dp, y=p)

Six pairs also have a fused path (``head.fused``; ``compose(..., fused=False)`` turns it off):

* softmax + cross_entropy, softmax + kl_div and log_softmax + nll, computed from the logits, which is
  exact where the generic path is clamped (``p`` underflowing to 0) and cheaper:
  :math:`l = -\\sum_c w_c t_c \\log\\mathrm{softmax}(z)_c` (kl_div adds :math:`\\sum_c w_c t_c \\log t_c`),
  :math:`\\partial l/\\partial z = (p \\sum_c w_c t_c - w \\odot t)/T`;
* sigmoid + bce: the :class:`~gradkit.losses.BCEWithLogitsLoss` formula;
* log_taylor_softmax + nll and log_spherical_softmax + nll: the chain rule itself written out per row in one
  numba kernel (:mod:`gradkit.kernels.log_phi_nll`): with :math:`a = \\log\\varphi(z)`,
  :math:`\\log y = a - \\operatorname{logsumexp}(a)`, :math:`l = -\\sum_c t_c \\log y_c` and
  :math:`\\partial l/\\partial z = q \\odot (y \\sum_c t_c - t)`, :math:`q = \\varphi'/\\varphi`, on the entries
  with :math:`\\log y > -\\infty` (masks, ±inf and NaN scores as the chain rule gives them). It serves NumPy
  float32/float64 with integer labels (``ignore_index``, label smoothing, masks) and no class weights; every
  other input (class weights, per-class targets, other namespaces, traced values, kernels off) takes the
  chain rule.

Tests prove fused == generic (float64, rtol 1e-10), soft targets included.

The generic path clips the activation's output onto the loss's domain (rounding:
a softmax of 1 + 1 ulp into ``bce``). Where ``dL/dp`` overflows but ``dL/dz`` is
finite (``2(p - t)`` at ``p - t`` near the float maximum, then a softmax or sparsemax
Jacobian that removes the common part) the VJP is redone on ``dL/dp / 2^k``. For a head
without a fused path, without a mask or with one in front of an elementwise loss, the JVP is forward mode,
``loss.jvp(p, t, act.jvp(z, v))`` (masked entries then add exactly 0).

float32 heads whose value, gradient, VJP or JVP comes out NaN or infinite at finite scores
(an activation whose output leaves float32, ``selu(max) = 1.05·max``; a row spanning more than
float32's range, whose ``z - max z`` overflows) are redone in float64 and rounded back: the
result is finite wherever the float64 answer fits float32 (eager calls; under tracing, where no
value can be looked at, the float32 answer stands).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from . import kernels
from ._array import (
    Array,
    ArrayLike,
    branch_free,
    cast,
    is_traced,
    like,
    normalize_axis,
    numpy_errstate,
    refuse_array_subclass,
)
from ._params import param_key
from .activations.elementwise import Sigmoid
from .activations.entmax_bisect import EntmaxBisect
from .activations.softmax import LogSoftmax, Softmax, exp_and_sum, shifted_logits
from .activations.sparse import Entmax15, Sparsemax
from .activations.spherical import LogSphericalSoftmax, LogTaylorSoftmax
from .base import Activation
from .losses.base import ElementwiseLoss, Loss
from .losses.binary import BCELoss, BCEWithLogitsLoss
from .losses.classification import ClassLoss, CrossEntropyLoss, KLDivLoss, NLLLoss, xlogy
from .losses.entmax_bisect import EntmaxBisectLoss
from .losses.fenchel_young import Entmax15Loss, SparsemaxLoss

__all__ = ["Composed", "compose"]

#: ``(items, grad, denom)`` of the chain rule, with the activation's output as a 4th where it was computed, or
#: None: the chain rule itself (a fused path that covers only some inputs)
Fused = Callable[["Composed", Any, Any, Any, int, Any], "tuple[Any, ...] | None"]


def _softmax_xent(head: Composed, xp: Any, z: Any, target: Any, axis: int, mask: Any) -> tuple[Any, Any, Any]:
    act: Any = head.activation  # Softmax or LogSoftmax
    loss: Any = head.loss  # CrossEntropyLoss, KLDivLoss or NLLLoss
    kl = isinstance(loss, KLDivLoss)
    fast = None if kl else _fused_kernel(xp, loss, z, target, axis, mask, act.temperature)
    if fast is not None:
        return fast
    tgt = loss.prepare_target(xp, z, target, live=mask)
    s = shifted_logits(xp, z, axis, mask, act.temperature)
    e, total = exp_and_sum(xp, s, axis)
    log_p = s - xp.log(total)
    wt = tgt.weighted()
    if kl:  # KL(t || p) = Σ t log t - Σ t log p: the targets' own term, 0 where t = 0
        log_t = xp.log(xp.where(tgt.t > 0, tgt.t, 1.0))
        items = xp.sum(xlogy(xp, wt, log_t - log_p), axis=axis)
    else:
        items = -xp.sum(xlogy(xp, wt, log_p), axis=axis)
    # a class at -inf (a -inf or masked logit, or a finite one beside +inf) cannot move: its target
    # mass adds to the loss (inf), not to the gradient. A finite logit whose shift z - max merely
    # overflowed (a row spanning more than the float range) still moves: gradient p·Σt - t, finite.
    if branch_free(log_p) or bool(xp.any(log_p == -xp.inf)):
        zl = z if mask is None else xp.where(mask, z, -xp.inf)
        m = xp.max(zl, axis=axis, keepdims=True)
        movable = xp.isfinite(zl) & xp.isfinite(m)
        wt = xp.where((log_p == -xp.inf) & ~movable, 0.0, wt)
    grad = (e / total) * xp.sum(wt, axis=axis, keepdims=True) - wt
    return items, grad if act.temperature == 1.0 else grad / act.temperature, tgt.denom


def _fused_kernel(xp: Any, loss: Any, z: Any, target: Any, axis: int, mask: Any, temperature: float) -> Any:
    """The numba kernel's ``(items, grad, denom)`` for integer labels without class weights
    (and without label smoothing under a mask); None where the portable path is needed."""
    if loss.weight is not None or (mask is not None and loss.label_smoothing) or not kernels.usable(xp, z, mask):
        return None
    xent = _xent_kernel().xent
    if (mask is None and type(target) is np.ndarray and target.dtype == np.int64 and z.ndim == 2 and axis == 1
            and target.shape == z.shape[:1]):
        # a training batch's labels: checked by the kernel on its way (out of range or ignore_index: None, then
        # the checked path below), not by two reductions and a mask first
        result = xent(z, axis, target, None, None, temperature, loss.label_smoothing, loss.ignore_index)
        if result is not None:
            return *result, z.dtype.type(target.shape[0])
    checked = loss.check_labels(xp, z, target)
    if checked is None:
        return None
    labels, valid = checked
    result = xent(z, axis, labels, valid, mask, temperature, loss.label_smoothing)
    if result is None:
        return None
    items, grad = result
    # the mean's denominator as prepare_target sums it: the count of valid items, in the dtype
    return items, grad, z.dtype.type(np.count_nonzero(valid))


def _log_phi_nll(head: Composed, xp: Any, z: Any, target: Any, axis: int, mask: Any) -> tuple[Any, ...] | None:
    """Log-Taylor / log-spherical softmax + NLL by one numba kernel (:mod:`gradkit.kernels.log_phi_nll`):
    ``(items, grad, denom, log y)`` for NumPy float32/64 and integer labels without class weights; None
    (the chain rule, in ``Composed._run``) for anything else, so every other case is the generic path itself."""
    loss: Any = head.loss  # NLLLoss
    if loss.weight is not None or not kernels.usable(xp, z, mask) or is_traced(z):
        return None
    checked = loss.check_labels(xp, z, target)
    if checked is None:  # per-class targets
        return None
    labels, valid = checked
    act: Any = head.activation  # LogTaylorSoftmax or LogSphericalSoftmax
    items, grad, log_y = _log_phi_kernel().log_phi_nll(z, axis, labels, valid, mask, *act._kernel_params(z.dtype),
                                                        loss.label_smoothing)
    # the mean's denominator as prepare_target sums it: the count of valid items, in the dtype
    return items, grad, z.dtype.type(np.count_nonzero(valid)), log_y


@lru_cache(maxsize=1)
def _xent_kernel() -> Any:
    """:mod:`gradkit.kernels.xent`, imported on first use (as :func:`_log_phi_kernel`)."""
    from .kernels import xent

    return xent


@lru_cache(maxsize=1)
def _log_phi_kernel() -> Any:
    """:mod:`gradkit.kernels.log_phi_nll`, imported on first use (it imports numba; per batch an import
    statement costs more than this cached lookup)."""
    from .kernels import log_phi_nll

    return log_phi_nll


def _sigmoid_bce(head: Composed, xp: Any, z: Any, target: Any, axis: int, mask: Any) -> tuple[Any, Any, Any]:
    loss: Any = head.loss  # BCELoss
    return BCEWithLogitsLoss(weight=loss.weight, reduction=loss.reduction).compute_items(xp, z, target)


def _on_scores(head: Composed, xp: Any, z: Any, target: Any, axis: int, mask: Any) -> tuple[Any, Any, Any]:
    loss: Any = head.loss  # a FenchelYoungLoss
    return loss.items_with(head.activation, xp, z, target, live=mask)


#: a Fenchel–Young loss with its own prediction map: the loss takes the scores, the map predicts
_PAIRED: dict[tuple[type, type], Fused] = {
    (Sparsemax, SparsemaxLoss): _on_scores,
    (Entmax15, Entmax15Loss): _on_scores,
    (EntmaxBisect, EntmaxBisectLoss): _on_scores,  # the same α: checked by Composed
}

_FUSED: dict[tuple[type, type], Fused] = {
    (Softmax, CrossEntropyLoss): _softmax_xent,
    (Softmax, KLDivLoss): _softmax_xent,
    (LogSoftmax, NLLLoss): _softmax_xent,
    (Sigmoid, BCELoss): _sigmoid_bce,
    (LogTaylorSoftmax, NLLLoss): _log_phi_nll,
    (LogSphericalSoftmax, NLLLoss): _log_phi_nll,
}


class Composed:
    """``L(z) = loss(activation(z), target)`` with value, gradient, VJP and JVP w.r.t. ``z``.

    Built by :func:`compose`; ``fused`` tells whether the fused path is used.
    ``where=`` is passed to the activation (softmax family).
    """

    def __init__(self, activation: Activation, loss: Loss, fused: bool) -> None:
        self.activation = activation
        self.loss = loss
        self._fused = _FUSED.get((type(activation), type(loss))) if fused else None
        self.paired = (type(activation), type(loss)) in _PAIRED
        if self.paired:  # not an optimization but the meaning of the pair: see compose()
            _check_same_alpha(activation, loss)
            self._fused = _PAIRED[(type(activation), type(loss))]

    @property
    def fused(self) -> bool:
        return self._fused is not None and not self.paired

    def __repr__(self) -> str:
        return f"compose({self.activation!r}, {self.loss!r}, fused={self.fused})"

    def __call__(self, z: ArrayLike, target: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """The loss ``L(z)``."""
        return self.value_and_grad(z, target, where=where)[0]

    def forward(self, z: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """The activation's output (the prediction)."""
        return self.activation(z, where=where)

    def grad(self, z: ArrayLike, target: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """:math:`\\partial L/\\partial z`, the shape of ``z``."""
        return self.value_and_grad(z, target, where=where)[1]

    def value_and_grad(
        self, z: ArrayLike, target: ArrayLike, *, where: ArrayLike | None = None
    ) -> tuple[Array, Array]:
        """Return the loss and :math:`\\partial L/\\partial z`."""
        run = self._run(z, target, where)
        return run.out(run.value), run.out(run.grad)

    def _value_grad_scores(self, z: Any, target: Any) -> tuple[Any, Any, Any]:
        """``value_and_grad``, and scores whose argmax along the class axis is the head's predicted class:
        ``z`` itself where the activation preserves the order, else its output (computed once, for both;
        ``fit`` counts accuracy with it)."""
        run = self._run(z, target, None)
        if self.activation.preserves_order:
            scores = run.z
        else:
            scores = run.prediction if run.prediction is not None else self.activation(z)
        return run.out(run.value), run.out(run.grad), scores

    def vjp(self, z: ArrayLike, target: ArrayLike, g: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """Return :math:`g^\\top \\partial L/\\partial z` for ``g`` shaped like the loss."""
        run = self._run(z, target, where, g)
        return run.out(run.grad)

    def jvp(self, z: ArrayLike, target: ArrayLike, v: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """Return the directional derivative of the loss along ``v`` (the shape of the loss)."""
        out, p = self._jvp(z, target, v, where)
        xp, zc, _, _, mask = self.activation._prepare(z, where)
        wide = None if self.activation.stochastic else _in_float64(xp, zc, mask, xp.asarray(out), p)
        if wide is None:
            return out
        v64 = xp.astype(like(v, zc, xp, "v", "z"), xp.float64)  # float32 overflowed on the way: see _run
        with numpy_errstate(xp, over="ignore"):  # an answer beyond float32 rounds to inf: the first pass warned
            return cast(xp, self._jvp(wide, target, v64, where)[0], out.dtype)

    def _jvp(self, z: Any, target: Any, v: Any, where: Any) -> tuple[Any, Any]:
        """The JVP, and the activation's output where this computed it (else None)."""
        act, loss = self.activation, self.loss
        if where is None and self._fused is None:
            # forward mode: J v first, then the loss's JVP. Exact where contracting the gradient is not:
            # that gradient can overflow (SELU's 1.76 times an MSE gradient near the float maximum)
            # while the directional derivative is finite
            p = act(z)
            return loss.jvp(p, target, act.jvp(z, v, y=p)), p
        if isinstance(loss, ElementwiseLoss) and act.supports_mask:
            # each element's loss depends on its whole row: chain the JVPs in forward mode (contracting
            # the gradient can overflow where the directional derivative is finite, as above)
            p = act(z, where=where)
            dp = act.jvp(z, v, y=p, where=where)
            if where is None:
                return loss.jvp(p, target, dp), p
            xp, _, _, _, live = act._prepare(z, where)  # masked entries take no part (see ElementwiseLoss)
            if loss.reduction == "none":
                return xp.where(live, loss.jvp(xp.where(live, p, 0.0), target, dp), 0.0), p
            # a masked entry becomes a point inside the loss's domain with a zero tangent, so it adds
            # exactly 0 to the sum; the mean's denominator counts every entry, as in ElementwiseLoss.compute_items
            inside = _inside(loss.input_domain)
            t = like(target, p, xp, "target", "z")
            return loss.jvp(xp.where(live, p, inside), xp.where(live, t, inside), xp.where(live, dp, 0.0)), p
        # otherwise each item depends only on its own slice of z: contract the gradient
        run = self._run(z, target, where)
        vc = like(v, run.z, run.xp, "v", "z")
        return run.out(self.loss._contract(run.xp, run.grad * vc, vc.ndim)), run.prediction

    def partial_sums(
        self, z: ArrayLike, target: ArrayLike, *, where: ArrayLike | None = None
    ) -> tuple[Array, Array, Array]:
        """The pieces of the loss that data-parallel training adds up across blocks of rows.

        Returns ``(S, dS/dz, D)``: the sum of the per-item losses, its gradient w.r.t.
        ``z``, and the denominator of ``reduction="mean"``, so that over blocks
        :math:`L = \\sum_b S_b / \\sum_b D_b` and
        :math:`\\partial L/\\partial z = (\\partial S_b/\\partial z) / \\sum_b D_b`.
        For ``reduction="sum"``, ``D`` is 1 and the blocks' ``S`` just add up.

        >>> import numpy as np, gradkit as gk
        >>> head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
        >>> z, y = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]]), np.array([1, 0, 1])
        >>> parts = [head.partial_sums(z[:2], y[:2]), head.partial_sums(z[2:], y[2:])]
        >>> bool(np.isclose(sum(p[0] for p in parts) / sum(p[2] for p in parts), head(z, y)))
        True
        """
        if self.loss.reduction == "none":
            raise ValueError("partial_sums needs a loss with reduction 'mean' or 'sum'; got 'none'")
        run = self._run(z, target, where, sums=True)
        return run.out(run.value), run.out(run.grad), run.denom

    def _run(self, z: Any, target: Any, where: Any, g: Any = None, sums: bool = False) -> _Run:
        act, loss = self.activation, self.loss
        if type(z) is not np.ndarray:
            refuse_array_subclass(z, "z")  # named z here, not the activation's x
        xp, zc, out_dtype, axis, mask = act._prepare(z, where)
        if isinstance(loss, ClassLoss) and act.supports_mask:
            loss_axis = normalize_axis(loss.axis, zc.ndim, "loss axis")
            if loss_axis != axis:
                raise ValueError(f"the activation's axis ({act.axis}) and the loss's class axis ({loss.axis}) differ for x of {zc.ndim} dimensions")
        run = self._compute(xp, zc, target, axis, mask, g, sums, out_dtype)
        # (not for a stochastic activation: a second pass would draw another sample)
        wide = None if act.stochastic else _in_float64(xp, zc, mask, run.value, run.grad, run.prediction)
        if wide is None:
            return run
        # float32 overflowed on the way (selu(max) = 1.05·max, a row spanning more than the range) at
        # finite scores: float64 holds every intermediate, and its answer rounds back to float32
        run64 = self._compute(xp, wide, target, axis, mask, g, sums, out_dtype)
        pred = run64.prediction
        with numpy_errstate(xp, over="ignore"):  # an answer beyond float32 rounds to inf: the first pass warned
            return run64._replace(z=zc, value=cast(xp, run64.value, zc.dtype), grad=cast(xp, run64.grad, zc.dtype),
                                  prediction=None if pred is None else cast(xp, pred, zc.dtype))

    def _compute(self, xp: Any, zc: Any, target: Any, axis: int, mask: Any, g: Any, sums: bool,
                 out_dtype: Any) -> _Run:
        act, loss = self.activation, self.loss
        prediction = None
        fused = None if self._fused is None else self._fused(self, xp, zc, target, axis, mask)
        if fused is not None:
            items, grad, denom, *computed = fused
            prediction = computed[0] if computed else None
            if sums:
                value, gz = loss.sum_items(xp, items), grad
            else:
                upstream = None if g is None else loss._upstream(xp, g, items)
                value, gz = loss._reduce(xp, items, grad, denom, upstream, in_place=True)
        else:
            p = prediction = act.compute_forward(xp, zc, axis, mask)
            # the activation's range is inside the domain (compose checked): this clips rounding
            # (a softmax of 1 + 1 ulp) and never refuses; masked entries are not looked at. Off NumPy
            # it clips without the check (which would read a value back from the device)
            p = loss.clip_to_domain(xp, p) if branch_free(p) else loss.in_domain(xp, p, live=mask)
            items, grad, denom = loss.compute_items(xp, p, target, live=mask)
            upstream = None if sums or g is None else loss._upstream(xp, g, items)

            def backward(raw: Any) -> tuple[Any, Any]:
                if sums:
                    return loss.sum_items(xp, items), act.compute_vjp(xp, zc, p, loss.sum_grad(raw), axis, mask)
                value, gp = loss._reduce(xp, items, raw, denom, upstream)
                return value, act.compute_vjp(xp, zc, p, gp, axis, mask)

            with numpy_errstate(xp, over="ignore", invalid="ignore"):  # a non-finite result is redone below,
                value, gz = backward(grad)  # and that pass warns where the answer itself overflows
            if branch_free(gz) or not bool(xp.all(xp.isfinite(gz))):
                # dL/dp may overflow (2·(p - t) at p - t ~ max) where dL/dz is finite (a softmax or sparsemax
                # Jacobian removes the common part: inf - inf = NaN). The VJP is linear: redo it on dL/dp / F
                # and scale back; keep the first answer wherever it was finite
                big = 2.0 ** min(math.frexp(float(xp.finfo(zc.dtype).max))[1] // 8, 128)  # f32: 2^16, f64: 2^128 (torch.finfo: no maxexp)
                _, gz_small = backward(grad / big)
                gz = xp.where(xp.isfinite(gz), gz, gz_small * big)
        if sums and loss.reduction == "sum":
            denom = 1
        return _Run(xp, zc, value, gz, out_dtype, denom, prediction)


def _in_float64(xp: Any, z: Any, mask: Any, *results: Any) -> Any:
    """``z`` in float64 where a float32 head's ``results`` (None: not computed) came out NaN or infinite
    although its live scores are finite (an intermediate overflowed; masked entries of a prediction are not
    looked at); None otherwise: float64 input (no wider dtype), non-NumPy arrays (looking would read values back
    from the device on every call, and a traced array has none), non-finite scores (their answer is non-finite
    in any dtype), finite results."""
    if z.dtype != xp.float32 or branch_free(z):
        return None
    if all(bool(xp.all(xp.isfinite(r if mask is None or r.shape != z.shape else xp.where(mask, r, 0.0))))
           for r in results if r is not None):
        return None
    live = xp.isfinite(z) if mask is None else (xp.isfinite(z) | ~mask)
    return xp.astype(z, xp.float64) if bool(xp.all(live)) else None


def _check_same_alpha(activation: Any, loss: Any) -> None:
    """α-entmax and its loss pair only with the same α: the loss's gradient ``y - t`` is that of its own
    Ω_α, and the head would otherwise predict with one α and train another's loss."""
    if not isinstance(activation, EntmaxBisect):
        return
    a, b = activation.get_params()["alpha"], loss.mapping.get_params()["alpha"]
    if param_key(a) != param_key(b):  # a float, or arrays compared by shape and values
        raise ValueError(f"alpha of {activation.name} and of {loss.name} must be equal to pair them; got "
                         f"{a!r} and {b!r} (a Fenchel-Young loss trains its own map)")


def _inside(domain: tuple[float, float]) -> float:
    """A point inside ``domain`` where every loss's derivative is finite (0.5 in [0, 1], -1 in (-inf, 0])."""
    lo, hi = domain
    if math.isfinite(lo) and math.isfinite(hi):
        return (lo + hi) / 2
    return hi - 1.0 if math.isfinite(hi) else lo + 1.0 if math.isfinite(lo) else 0.0


class _Run(NamedTuple):
    xp: Any
    z: Any
    value: Any
    grad: Any
    out_dtype: Any
    denom: Any = None
    #: the activation's output, where the chain rule computed it (not on a fused path)
    prediction: Any = None

    def out(self, a: Any) -> Any:
        return cast(self.xp, a, self.out_dtype)


def compose(activation: Activation | str, loss: Loss | str, *, fused: bool | None = None) -> Composed:
    """Chain ``activation`` into ``loss`` by the chain rule.

    Parameters
    ----------
    activation, loss
        Instances (or registry names) from :mod:`gradkit.activations` and :mod:`gradkit.losses`.
    fused : bool or None
        None (default): use a fused path when the pair has one. False: always the
        generic chain rule. True: require a fused path (ValueError if none).

    Raises
    ------
    ValueError
        If the activation's output range lies outside the loss's domain
        (e.g. tanh, which can be negative, into bce, which needs [0, 1]).

    Notes
    -----
    The Fenchel–Young losses (``sparsemax_loss``, ``entmax15_loss``) take scores,
    not probabilities, and cannot be written as a function of the probabilities.
    Composed with their own map — ``compose(Sparsemax(), SparsemaxLoss())``,
    ``compose(Entmax15(), Entmax15Loss())``, ``compose(EntmaxBisect(a), EntmaxBisectLoss(a))``
    (the same α, else ValueError) — the loss sees the scores :math:`z`
    and the map gives the prediction (``head.forward``): the gradient is
    :math:`y(z) - t`, the same value and gradient as ``compose(Identity(), loss)``
    (``head.paired`` is True). With any other activation the chain rule applies
    to ``loss(activation(z))`` as usual.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="sum"))
    >>> L, dz = head.value_and_grad(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.2, 0.0]))
    >>> dz.round(5)  # p·Σt − t: the targets sum to 0.7, so not p − t
    array([-0.43698, -0.02869,  0.46567])
    >>> gk.compose(gk.Softmax(), gk.MSELoss()).fused
    False
    """
    from . import activations, losses

    activation = activations.get(activation)
    loss = losses.get(loss)
    lo, hi = activation.output_range
    dlo, dhi = loss.input_domain
    if lo < dlo or hi > dhi:
        raise ValueError(
            f"{activation.name} outputs values in [{lo}, {hi}] but {loss.name} is defined on [{dlo}, {dhi}]; "
            "pick an activation whose range the loss accepts"
        )
    if fused and (type(activation), type(loss)) not in _FUSED:
        raise ValueError(f"no fused path for {activation.name} + {loss.name}; fused pairs: "
                         + ", ".join(f"{getattr(a, 'name', a)} + {getattr(b, 'name', b)}" for a, b in _FUSED))
    return Composed(activation, loss, fused is not False)
