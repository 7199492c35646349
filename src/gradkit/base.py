"""The contract every activation and loss follows.

An activation is a map ``y = f(x)`` applied along ``axis``. It exposes

* ``forward(x)``            the value ``y`` (``act(x)`` is the same),
* ``vjp(x, g, y=None)``     the vector-Jacobian product ``gᵀ J`` (backpropagation),
* ``jvp(x, v, y=None)``     the Jacobian-vector product ``J v`` (forward mode),
* ``jacobian(x, y=None)``   the batched Jacobian, shape ``x.shape + (n,)``:
  ``J[..., i, ..., j] = ∂y_i/∂x_j`` with ``i`` at ``axis`` and ``j`` last,
  so for ``axis=-1`` it is the familiar ``(..., n, n)``.

``y`` lets a caller pass the forward output it already has, so backward does not
recompute it. Subclasses implement the public hooks ``compute_forward``, ``compute_vjp``,
``compute_jvp`` and ``compute_jacobian`` (elementwise ones just ``compute_value`` and
``compute_derivative``) on validated arrays in the computation dtype; the public
methods here validate, convert dtypes and move axes once for all of them. The hooks
receive the array namespace ``xp`` and must use only its functions (the Array API), so
one implementation serves NumPy, PyTorch, JAX and CuPy and traces under ``jax.jit`` and
``torch.compile``; see the guide "Write your own activation" (docs/guides/custom.md).

An activation's parameters are its constructor's, as in scikit-learn: ``__init__`` stores each
of its named arguments as the attribute of the same name (``self.beta = beta``, validated), and
:meth:`Activation.get_params` reads them back for ``repr``, ``==``, ``hash``, the registry and
checkpoints; a parameter stored under another name is a ``TypeError`` when they are read.

Losses are in :mod:`gradkit.losses.base`; composition is in :mod:`gradkit.composition`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

from array_api_compat import device

from ._array import (
    Array,
    ArrayLike,
    as_float,
    cast,
    check_constructor_kwargs,
    check_int,
    like,
    mask_like,
    moveaxis,
    normalize_axis,
)
from ._params import Parametrized, param_names

__all__ = ["Activation", "AxisActivation", "ElementwiseActivation"]

Interval = tuple[float, float]


class Activation(Parametrized):
    """Base class: an activation with exact VJP, JVP and Jacobian along ``axis``."""

    #: registry name
    name: ClassVar[str] = ""
    #: closed hull of the output values, used by :func:`gradkit.compose` to refuse
    #: pairs whose loss is undefined on this range (e.g. tanh into bce)
    output_range: ClassVar[Interval] = (-math.inf, math.inf)
    #: whether ``where=`` masks are accepted
    supports_mask: ClassVar[bool] = False
    #: whether the forward pass draws random numbers (Gumbel-softmax): a check of its
    #: derivatives must hold the noise fixed (``with act.frozen():``)
    stochastic: ClassVar[bool] = False
    #: whether ``argmax`` of the output along ``axis`` is ``argmax`` of the input, so a
    #: prediction can skip the forward pass (False for Taylor/spherical softmax, Gumbel)
    preserves_order: ClassVar[bool] = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        check_constructor_kwargs(cls, kwargs)
        param_names(cls)  # refuses a constructor taking *args, before it runs
        return super().__new__(cls)

    def __init__(self, axis: int = -1) -> None:
        self.axis = check_int(axis, "axis")

    # -- public contract -------------------------------------------------
    def __call__(self, x: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """Same as :meth:`forward`."""
        return self.forward(x, where=where)

    def forward(self, x: ArrayLike, *, where: ArrayLike | None = None) -> Array:
        """Return ``y = f(x)``."""
        xp, xc, out_dtype, axis, mask = self._prepare(x, where)
        return cast(xp, self.compute_forward(xp, xc, axis, mask), out_dtype)

    def vjp(
        self, x: ArrayLike, g: ArrayLike, y: ArrayLike | None = None, *, where: ArrayLike | None = None
    ) -> Array:
        """Return ``gᵀ J``: the gradient w.r.t. ``x`` given the upstream gradient ``g`` w.r.t. ``y``."""
        xp, xc, out_dtype, axis, mask = self._prepare(x, where)
        gc = like(g, xc, xp, "g")
        yc = self._output(xp, xc, y, axis, mask, transient=True)
        return cast(xp, self.compute_vjp(xp, xc, yc, gc, axis, mask), out_dtype)

    def jvp(
        self, x: ArrayLike, v: ArrayLike, y: ArrayLike | None = None, *, where: ArrayLike | None = None
    ) -> Array:
        """Return ``J v``: the change of ``y`` along the direction ``v`` in ``x``."""
        xp, xc, out_dtype, axis, mask = self._prepare(x, where)
        vc = like(v, xc, xp, "v")
        yc = self._output(xp, xc, y, axis, mask, transient=True)
        return cast(xp, self.compute_jvp(xp, xc, yc, vc, axis, mask), out_dtype)

    def jacobian(self, x: ArrayLike, y: ArrayLike | None = None, *, where: ArrayLike | None = None) -> Array:
        """Return the batched Jacobian, shape ``x.shape + (n,)`` with ``n = x.shape[axis]``."""
        xp, xc, out_dtype, axis, mask = self._prepare(x, where)
        if xc.ndim == 0:
            raise ValueError("x must have at least one dimension for jacobian(); got a 0-d array")
        yc = self._output(xp, xc, y, axis, mask)

        def last(a: Any) -> Any:
            return None if a is None else moveaxis(xp, a, axis, -1)

        jac = self.compute_jacobian(xp, last(xc), last(yc), last(mask))
        return cast(xp, moveaxis(xp, jac, -2, axis), out_dtype)

    # -- helpers ---------------------------------------------------------
    def _prepare(self, x: Any, where: Any) -> tuple[Any, Any, Any, int, Any]:
        xp, xc, out_dtype = as_float(x, "x")
        axis = normalize_axis(self.axis, xc.ndim)
        if xc.shape[axis] == 0:
            raise ValueError(f"x must have at least one entry along axis={self.axis}; got shape {tuple(xc.shape)}")
        mask = None
        if where is not None:
            if not self.supports_mask:
                raise TypeError(f"{type(self).__name__} does not take where=: it is elementwise")
            mask = mask_like(where, xc, xp)
        return xp, xc, out_dtype, axis, mask

    def _output(self, xp: Any, xc: Any, y: Any, axis: int, mask: Any, transient: bool = False) -> Any:
        if y is None:
            if transient:  # only the VJP or JVP uses it
                return self.compute_forward_transient(xp, xc, axis, mask)
            return self.compute_forward(xp, xc, axis, mask)
        return like(y, xc, xp, "y")

    # -- hooks a subclass implements -----------------------------------------
    # Each receives the namespace ``xp`` and validated arrays of one floating dtype: ``x``
    # (the input), ``y`` (the output, given or computed), ``g``/``v`` (same shape as ``x``),
    # ``axis`` (non-negative) and ``mask`` (boolean, broadcast to ``x``'s shape, or None).
    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        """Return ``y = f(x)`` along ``axis``."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_forward")

    def compute_forward_transient(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        """Return ``y = f(x)`` for :meth:`vjp` or :meth:`jvp` called without ``y``: their ``compute_vjp`` /
        ``compute_jvp`` is its only use, and it must not return ``y`` or a view of it. The default is
        :meth:`compute_forward`; a kernel may write ``y`` into reusable memory instead
        (:mod:`gradkit.kernels._scratch`)."""
        return self.compute_forward(xp, x, axis, mask)

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        """Return ``gᵀ J`` (shape of ``x``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_vjp")

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        """Return ``J v`` (shape of ``x``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_jvp")

    def compute_jacobian(self, xp: Any, x: Any, y: Any, mask: Any) -> Any:
        """Return the Jacobian with ``axis`` moved last: shape ``(..., n, n)``, ``J[..., i, j] = ∂y_i/∂x_j``."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_jacobian")


class ElementwiseActivation(Activation):
    """``y_i = f(x_i)``: the Jacobian is diagonal, ``J = diag(f'(x))``.

    VJP: ``g ⊙ f'(x)``; JVP: ``v ⊙ f'(x)``. Subclasses give ``compute_value(xp, x)`` and
    ``compute_derivative(xp, x, y)``; :meth:`derivative` exposes the diagonal ``f'(x)``.
    ``axis`` only decides where the row index of :meth:`jacobian` sits.
    """

    def derivative(self, x: ArrayLike, y: ArrayLike | None = None) -> Array:
        """Return the diagonal of the Jacobian, ``f'(x)``, with the shape of ``x``."""
        xp, xc, out_dtype = as_float(x, "x")
        yc = self.compute_value(xp, xc) if y is None else like(y, xc, xp, "y")
        return cast(xp, self.compute_derivative(xp, xc, yc), out_dtype)

    def _prepare(self, x: Any, where: Any) -> tuple[Any, Any, Any, int, Any]:
        if where is not None:
            raise TypeError(f"{type(self).__name__} does not take where=: it is elementwise")
        xp, xc, out_dtype = as_float(x, "x")
        axis = normalize_axis(self.axis, xc.ndim) if xc.ndim else 0
        return xp, xc, out_dtype, axis, None

    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        return self.compute_value(xp, x)

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        return g * self.compute_derivative(xp, x, y)

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        return v * self.compute_derivative(xp, x, y)

    def compute_jacobian(self, xp: Any, x: Any, y: Any, mask: Any) -> Any:
        d = self.compute_derivative(xp, x, y)
        eye = xp.eye(x.shape[-1], dtype=x.dtype, device=device(x))
        return d[..., None] * eye

    def compute_value(self, xp: Any, x: Any) -> Any:
        """Return ``f(x)`` elementwise."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_value")

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        """Return ``f'(x)`` elementwise; ``y = f(x)`` is given."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_derivative")


class AxisActivation(Activation):
    """An activation whose every output along ``axis`` depends on every input there
    (softmax and its relatives). Accepts a boolean ``where=`` mask: masked entries
    take no part in the normalization, give output 0 (``-inf`` for log versions)
    and receive zero gradient."""

    supports_mask = True
