r"""The Fenchel–Young loss of α-entmax (Blondel, Martins & Niculae, 2020), with the Tsallis regularizer.

.. math:: l(z; t) = \langle y - t, z\rangle - \Omega_\alpha(y) + \Omega_\alpha(t), \qquad
          \Omega_\alpha(p) = \frac{\sum_j p_j^\alpha - 1}{\alpha(\alpha - 1)}, \qquad
          \partial l/\partial z = y(z) - t,

with :math:`y = \alpha\text{-entmax}(z)` (:class:`~gradkit.EntmaxBisect`). :math:`\Omega_\alpha` is
minus the Tsallis entropy of the ``entmax`` package's ``EntmaxBisectLoss``; at :math:`\alpha = 1.5`
it is ``entmax15_loss``'s regularizer and at :math:`\alpha = 2` ``sparsemax_loss``'s (up to the
constant, which cancels). Targets, masks, ``ignore_index`` and label smoothing as in
:mod:`gradkit.losses.fenchel_young`: the loss takes scores, is :math:`\ge 0`, and 0 exactly
when :math:`y(z) = t` (to the bisection's precision). ``compose(EntmaxBisect(alpha),
EntmaxBisectLoss(alpha))`` pairs them (the loss sees the scores, the map predicts); a pair
whose α differ is refused.
"""

from __future__ import annotations

from typing import Any

from ..activations.entmax_bisect import EntmaxBisect
from .classification import ClassLoss
from .fenchel_young import FenchelYoungLoss

__all__ = ["EntmaxBisectLoss"]


class EntmaxBisectLoss(FenchelYoungLoss):
    r"""α-entmax loss: :math:`l = \langle y - t, z\rangle - \Omega_\alpha(y) + \Omega_\alpha(t)` with
    :math:`\Omega_\alpha(p) = (\sum_j p_j^\alpha - 1)/(\alpha(\alpha - 1))`;
    :math:`\partial l/\partial z = \alpha\text{-entmax}(z) - t`, on scores :math:`z`.

    Parameters
    ----------
    alpha : float or array
        :math:`\alpha > 1`; an array is per-row α (see :class:`~gradkit.EntmaxBisect`).
    axis, ignore_index, label_smoothing, reduction
        As for :class:`~gradkit.losses.SparsemaxLoss`.
    n_iter : int
        Bisection steps of the map.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> z = np.array([[-2.0, 0.0, 0.5]])
    >>> L, dz = gk.losses.EntmaxBisectLoss(alpha=2.0).value_and_grad(z, np.array([2]))
    >>> round(float(L), 6), dz.round(8)  # sparsemax_loss at alpha = 2
    (0.0625, array([[ 0.  ,  0.25, -0.25]]))
    """

    name = "entmax_bisect_loss"
    mapping_cls = EntmaxBisect  # type: ignore[assignment]

    def __init__(
        self,
        alpha: Any = 1.5,
        axis: int = -1,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        n_iter: int = 50,
    ) -> None:
        ClassLoss.__init__(self, axis, None, ignore_index, label_smoothing, reduction)
        self.mapping: EntmaxBisect = EntmaxBisect(alpha, axis=axis, n_iter=n_iter)  # type: ignore[assignment]

    @property
    def alpha(self) -> Any:
        """α (a float, or the per-row array)."""
        return self.mapping.alpha

    @property
    def n_iter(self) -> int:
        """Bisection steps of the map: ``mapping.n_iter``."""
        return self.mapping.n_iter

    def compute_omega(self, xp: Any, p: Any, axis: int) -> Any:
        m = self.mapping
        a = m.alpha_like(xp, p, axis)
        c = m.alpha_like(xp, p, axis, 1.0 / (m.alpha * (m.alpha - 1.0)))
        omega = (xp.sum(xp.pow(xp.clip(p, 0.0, None), a), axis=axis, keepdims=True) - 1.0) * c
        return xp.squeeze(omega, axis=axis)
