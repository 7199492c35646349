r"""Fenchel–Young losses of sparsemax and entmax-1.5 (Blondel, Martins & Niculae, 2020).

For a regularizer :math:`\Omega` whose prediction map is
:math:`y(z) = \arg\max_{p \in \Delta} \langle p, z\rangle - \Omega(p)`:

.. math:: l(z; t) = \langle y - t, z\rangle - \Omega(y) + \Omega(t),
          \qquad \partial l/\partial z = y(z) - t.

* ``sparsemax_loss``: :math:`\Omega(p) = \tfrac12\|p\|^2`, :math:`y` = sparsemax;
* ``entmax15_loss``: :math:`\Omega(p) = \tfrac43\sum_j p_j^{3/2}` (Tsallis, :math:`\alpha = 1.5`), :math:`y` = entmax-1.5.

The loss is :math:`\ge 0`, and 0 exactly when :math:`y(z) = t`. It is defined
for targets on the simplex: a target is normalized to sum 1 over the live
classes (soft targets that do not sum to 1, or mass dropped by a mask), and an
item with no target mass gives loss 0 and gradient 0. It is evaluated on
:math:`z - \max z`, which leaves it unchanged and keeps large offsets exact. It takes the **scores**
:math:`z`, like ``bce_with_logits``: it cannot be written as a function of
:math:`y(z)` (scores below the threshold change the loss but not :math:`y`).
``compose(Sparsemax(), SparsemaxLoss())`` is therefore the standard head: the
loss sees the scores, the head's prediction is sparsemax (see :func:`gradkit.compose`).
Masked classes (``where=``) take no part: their score and target mass are dropped;
an item with no target mass left (``ignore_index``, a label on a masked class without
smoothing) gives 0.
Class weights are not supported.
"""

from __future__ import annotations

import math
from typing import Any

from .._array import is_traced, normalize_axis
from ..activations.sparse import Entmax15, Sparsemax, _Sparse
from .classification import ClassLoss

__all__ = ["Entmax15Loss", "FenchelYoungLoss", "SparsemaxLoss"]


class FenchelYoungLoss(ClassLoss):
    """Base: the Fenchel–Young loss of ``mapping`` with regularizer ``compute_omega``."""

    input_domain = (-math.inf, math.inf)  # scores
    #: ``compute_items`` returns half of each item (from half the shifted scores, which cannot overflow)
    item_factor = 2.0
    mapping_cls: type[_Sparse] = Sparsemax

    def __init__(
        self,
        axis: int = -1,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        method: str = "sort",
    ) -> None:
        super().__init__(axis, None, ignore_index, label_smoothing, reduction)
        self.mapping = self.mapping_cls(axis=axis, method=method)

    @property
    def method(self) -> str:
        """How the map finds its threshold (``"sort"`` or ``"bisect"``): ``mapping.method``."""
        return self.mapping.method

    def compute_omega(self, xp: Any, p: Any, axis: int) -> Any:
        """Hook: the regularizer :math:`\\Omega(p)` summed along ``axis`` (``p`` on the simplex)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_omega")

    def compute_items(self, xp: Any, p: Any, target: Any, live: Any = None) -> tuple[Any, Any, Any]:
        return self.items_with(self.mapping, xp, p, target, live)

    def items_with(self, mapping: _Sparse, xp: Any, z: Any, target: Any, live: Any = None) -> tuple[Any, Any, Any]:
        """Per-item losses, their gradient ``y - t`` and the mean's denominator, with ``y = mapping(z)``
        (a compose head passes its own activation, so prediction and gradient use the same method)."""
        axis = normalize_axis(self.axis, z.ndim, array="pred")
        if (fast := self._kernel_items(mapping, xp, z, target, live, axis)) is not None:
            return fast
        tgt = self.prepare_target(xp, z, target, live)
        # the loss lives on the simplex: normalize the target mass left on live classes
        # (smoothing, masks and soft targets may leave less or more than 1); none left: loss 0
        mass = xp.sum(tgt.t, axis=axis, keepdims=True)
        has_mass = mass > 0
        t = tgt.t / xp.where(has_mass, mass, 1.0)
        y = mapping.compute_forward(xp, z, axis, live)
        diff = y - t
        # <y - t, z> = <y - t, z - max z> since both sum to 1: shifted scores keep large offsets exact
        scores = z if live is None else xp.where(live, z, -xp.inf)
        m = xp.max(scores, axis=axis, keepdims=True)
        # halved: z/2 - m/2 cannot overflow where z - m can (a row spanning [-max, max]); halving is exact
        half_shifted = 0.5 * z - 0.5 * xp.where(xp.isfinite(m), m, 0.0)
        # 0 where y = t (masked or -inf classes: their score must not reach the loss)
        half_inner = xp.sum(xp.where(diff != 0, diff * xp.where(diff != 0, half_shifted, 0.0), 0.0), axis=axis)
        # half items (item_factor): an item rounding past the float maximum where the mean is finite stays finite
        items = half_inner - 0.5 * self.compute_omega(xp, y, axis) + 0.5 * self.compute_omega(xp, t, axis)
        items = xp.where(xp.squeeze(has_mass, axis=axis), items, 0.0)
        return items, xp.where(has_mass, diff, 0.0), tgt.denom

    def _kernel_items(self, mapping: _Sparse, xp: Any, z: Any, target: Any, live: Any, axis: int) -> Any:
        """The numba kernel's ``(items, grad, denom)`` (:mod:`gradkit.kernels.fenchel_young`), or None where
        the portable path is needed: no kernels for these arrays, traced input, ``method="bisect"``, or a
        subclass with its own map or regularizer."""
        from .. import kernels

        entmax = type(mapping) is Entmax15 and type(self).compute_omega is Entmax15Loss.compute_omega
        sparsemax = type(mapping) is Sparsemax and type(self).compute_omega is SparsemaxLoss.compute_omega
        if not (entmax or sparsemax) or mapping.method != "sort" or self.weight is not None:
            return None
        if not kernels.usable(xp, z, live) or is_traced(z, live):
            return None
        from ..kernels import fenchel_young as fast

        checked = self.check_labels(xp, z, target)  # validates the labels (None: per-class targets)
        if checked is not None:
            labels, valid = checked
            items, grad = fast.items(z, axis, live, entmax, labels, valid, None, self.label_smoothing)
            return items, grad, xp.sum(xp.astype(valid, z.dtype))
        tgt = self.prepare_target(xp, z, target, live)  # validates and prepares per-class targets
        items, grad = fast.items(z, axis, live, entmax, None, None, tgt.t, 0.0)
        return items, grad, tgt.denom


class SparsemaxLoss(FenchelYoungLoss):
    r"""Sparsemax loss: :math:`l = \langle y - t, z\rangle - \tfrac12\|y\|^2 + \tfrac12\|t\|^2`,
    :math:`\partial l/\partial z = \mathrm{sparsemax}(z) - t`, on scores :math:`z`.

    With a label :math:`k` it equals Martins & Astudillo's
    :math:`-z_k + \tfrac12\sum_{j \in S}(z_j^2 - \tau^2) + \tfrac12`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> z = np.array([[-2.0, 0.0, 0.5]])
    >>> L, dz = gk.losses.SparsemaxLoss().value_and_grad(z, np.array([2]))
    >>> round(float(L), 6), dz
    (0.0625, array([[ 0.  ,  0.25, -0.25]]))
    """

    name = "sparsemax_loss"
    mapping_cls = Sparsemax

    def compute_omega(self, xp: Any, p: Any, axis: int) -> Any:
        return 0.5 * xp.sum(p * p, axis=axis)


class Entmax15Loss(FenchelYoungLoss):
    r"""Entmax-1.5 loss: :math:`l = \langle y - t, z\rangle - \Omega(y) + \Omega(t)` with
    :math:`\Omega(p) = \tfrac43\sum_j p_j^{3/2}`; :math:`\partial l/\partial z = \mathrm{entmax15}(z) - t`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> z = np.array([[-2.0, 0.0, 0.5]])
    >>> L, dz = gk.losses.Entmax15Loss().value_and_grad(z, np.array([2]))
    >>> dz.round(8)
    array([[ 0.        ,  0.32600736, -0.32600736]])
    """

    name = "entmax15_loss"
    mapping_cls = Entmax15

    def compute_omega(self, xp: Any, p: Any, axis: int) -> Any:
        return (4.0 / 3.0) * xp.sum(p * xp.sqrt(xp.clip(p, 0.0, None)), axis=axis)
