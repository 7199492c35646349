"""Activations and losses from your own functions: :func:`custom_activation`, :func:`custom_loss`.

The objects they return are ordinary :class:`~gradkit.Activation` and
:class:`~gradkit.losses.Loss` instances (their ``compute_*`` hooks call your functions), so
they work wherever a built-in does: :func:`gradkit.compose`, :func:`gradkit.gradcheck`,
``gradkit.nn`` layers and training, and, once registered by name
(``gk.activations.register(act.name, act)``), checkpoints, the estimators'
``output_activation=``/``loss=`` and the command line (``gradkit --plugin MODULE``).

The contract of the functions
-----------------------------
They take and return arrays of the caller's library (NumPy arrays for NumPy input, torch
tensors for torch input; ``array_api_compat.array_namespace(x)`` gives the namespace if
you want one function for all), in the computation dtype (float16 input arrives as
float32), and must not modify them. Every result must have the expected shape and
``x``'s dtype: anything else raises ``TypeError``/``ValueError`` naming the function. Results
of another type are converted where no number can change (a list or tuple, another ``ndarray``
subclass, for NumPy ``x``; a Python number where a 0-d result is due) and refused otherwise
(``numpy.matrix``, masked arrays): the table is in the guide "Write your own activation".

For an activation:

* ``forward(x) -> y``
* ``vjp(x, g) -> gᵀJ``, the gradient w.r.t. ``x`` given the upstream gradient ``g`` w.r.t. ``y``
* ``jvp(x, v) -> J v`` (optional)
* ``jacobian(x) -> J`` of shape ``x.shape + (n,)``, ``J[..., i, j] = ∂y_i/∂x_j`` (optional)

with the activation's ``axis`` moved last: the functions always work on the last axis,
whatever ``axis`` the activation was given. Each derivative may also take ``y = forward(x)``
as a last argument, ``vjp(x, g, y)``, ``jvp(x, v, y)``, ``jacobian(x, y)``, so that it need not
recompute it: :func:`custom_activation` reads each function's signature once (with
:func:`inspect.signature`) and calls it with ``y`` only if it can take three arguments (two
for ``jacobian``); a function that takes neither form is a ``TypeError`` there. One that can
take both (``y=None``, ``*args``) and a callable whose signature cannot be read (some built-in
functions) are called with ``y``. With ``elementwise=True`` the functions act entry by entry
on arrays of any shape (0-d included); ``vjp`` is still the VJP (``g * f'(x)``), from which the
derivative is ``vjp(x, ones)``.

What is derived when not given (``n`` = the size of the last axis):

* ``jacobian``: row ``i`` is ``vjp(x, e_i)`` for the basis vector ``e_i``: ``n`` VJP calls
  (elementwise: ``diag(vjp(x, ones))``, one call);
* ``jvp``: from ``jacobian`` if given (``J @ v``, ``O(n²)`` per row); else by transposition,
  ``(Jv)_i = ⟨vjp(x, e_i), v⟩``: ``n`` VJP calls and ``O(n²)`` work per row, but no
  ``n × n`` array (elementwise: ``vjp(x, v)``, since a diagonal ``J`` is symmetric).

Both derivations refuse ``n > DERIVED_MAX_N`` (4096) with ``ValueError``: give
``jvp=``/``jacobian=`` for wider rows. A custom activation takes no ``where=`` masks:
subclass :class:`gradkit.AxisActivation` for that (see the guide "Write your own
activation", docs/guides/custom.md).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from array_api_compat import device

from ._array import check_int, moveaxis
from ._results import checked_result as _checked
from .base import Activation, ElementwiseActivation
from .losses.base import ElementwiseLoss
from .registry import check_name

__all__ = ["DERIVED_MAX_N", "CustomActivation", "CustomElementwiseActivation", "CustomLoss", "custom_activation",
           "custom_loss"]

#: the widest last axis for which a missing ``jvp`` or ``jacobian`` is derived from ``n`` VJP calls
DERIVED_MAX_N = 4096

Interval = tuple[float, float]


def _check_callable(fn: Any, name: str, optional: bool = False) -> Any:
    if fn is None and optional:
        return None
    if not callable(fn):
        raise TypeError(f"{name} must be callable{' or None' if optional else ''}; got {type(fn).__name__}")
    return fn


#: each function's forms: its arguments without ``y``, then with ``y`` (None: ``y`` is never passed)
_FORMS: dict[str, tuple[str, str | None]] = {
    "forward": ("x", None),
    "vjp": ("x, g", "x, g, y"),
    "jvp": ("x, v", "x, v, y"),
    "jacobian": ("x", "x, y"),
}


def _calls_with_y(fn: Callable[..., Any], label: str) -> bool:
    """Whether ``custom_activation`` calls ``fn``, its ``label`` function, with ``y`` as a last argument.

    Read once from :func:`inspect.signature`: True when ``fn`` can be called with the long form's
    positional arguments (``vjp(x, g, y)``), False when only with the short form's (``vjp(x, g)``);
    a callable without a readable signature is taken to take ``y``. Anything else is a ``TypeError``
    naming the function and both forms.
    """
    short, full = _FORMS[label]
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a callable written in C, without a signature
        return full is not None
    for form in (full, short):
        if form is not None:
            try:
                sig.bind(*form.split(", "))
            except TypeError:
                continue
            return form == full
    shown = f"{label}={getattr(fn, '__qualname__', None) or type(fn).__qualname__}{sig}"
    if full is None:
        raise TypeError(f"custom_activation: {shown} cannot be called as {label}({short}); pass a function of x")
    raise TypeError(f"custom_activation: {shown} takes neither {label}({short}) nor {label}({full}), the two "
                    f"signatures accepted (y = forward(x)); pass a function of one of them")


def _check_interval(value: Any, name: str) -> Interval:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a (low, high) pair of numbers; got {value!r}")
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (low, high) pair of numbers; got {value!r}") from None
    if isinstance(value[0], bool) or isinstance(value[1], bool):
        raise TypeError(f"{name} must be a (low, high) pair of numbers; got {value!r}")
    if math.isnan(lo) or math.isnan(hi) or lo > hi or lo == math.inf or hi == -math.inf:
        raise ValueError(f"{name} must be (low, high) with low <= high, not NaN, low < inf and high > -inf; got {value!r}")
    return lo, hi


def _basis(xp: Any, x: Any, i: int) -> Any:
    """The basis vector ``e_i`` along the last axis, broadcast to ``x``'s shape (a fresh array)."""
    n = x.shape[-1]
    return xp.zeros_like(x) + xp.eye(n, dtype=x.dtype, device=device(x))[i, :]


class _CustomActivationMixin:
    """What both kinds of custom activation share: the user's functions, checked calls."""

    name: Any
    axis: int
    _init_args: dict[str, Any]

    def __init__(
        self,
        forward: Callable[[Any], Any],
        vjp: Callable[..., Any],
        jvp: Callable[..., Any] | None = None,
        *,
        name: str,
        axis: int = -1,
        jacobian: Callable[..., Any] | None = None,
        output_range: Interval = (-math.inf, math.inf),
    ) -> None:
        super().__init__(axis)  # type: ignore[call-arg]  # Activation.__init__, next in the MRO
        self._setup(forward, vjp, jvp, jacobian, name, output_range)
        self._init_args = {"forward": forward, "vjp": vjp, "jvp": jvp, "name": name, "axis": self.axis,
                           "jacobian": jacobian, "output_range": self.output_range}

    def _setup(self, forward: Any, vjp: Any, jvp: Any, jacobian: Any, name: Any, output_range: Any) -> None:
        self.forward_fn = _check_callable(forward, "forward")
        self.vjp_fn = _check_callable(vjp, "vjp")
        self.jvp_fn = _check_callable(jvp, "jvp", optional=True)
        self.jacobian_fn = _check_callable(jacobian, "jacobian", optional=True)
        #: per function: whether it is called with ``y`` (its signature, read once)
        self._takes_y = {label: _calls_with_y(fn, label) for label, fn in
                         (("forward", forward), ("vjp", vjp), ("jvp", jvp), ("jacobian", jacobian)) if fn is not None}
        self.name = check_name(name)
        self.output_range = _check_interval(output_range, "output_range")

    @property
    def derived_from_vjp(self) -> frozenset[str]:
        """The derivatives built from the VJP because they were not given: ``"jvp"`` (unless ``jvp`` or
        ``jacobian`` was), ``"jacobian"`` (unless ``jacobian`` was). Checks of them against the VJP cannot fail,
        and :func:`gradkit.gradcheck` says so in its report."""
        return frozenset(name for name, derived in (("jvp", self.jvp_fn is None and self.jacobian_fn is None),
                                                    ("jacobian", self.jacobian_fn is None)) if derived)

    def _who(self) -> str:
        return f"custom activation {self.name!r}"

    def _call(self, fn: Any, label: str, what: str, xp: Any, x: Any, shape: tuple[int, ...], *args: Any) -> Any:
        """``fn(*args)``, checked; the last argument, ``y``, only to a derivative that takes it."""
        if label != "forward" and not self._takes_y[label]:
            args = args[:-1]
        return _checked(fn(*args), xp, x, shape, self._who(), label, what)

    def _jacobian_last(self, xp: Any, x: Any, y: Any) -> Any:
        """The Jacobian of rows along the last axis: the user's, or ``n`` VJPs of basis vectors."""
        shape = (*tuple(x.shape), x.shape[-1])
        if self.jacobian_fn is not None:
            return self._call(self.jacobian_fn, "jacobian", "x.shape + (n,), n the size of the last axis",
                              xp, x, shape, x, y)
        n = self._derivable(x, "jacobian")
        rows = [self._call(self.vjp_fn, "vjp", "the shape of x", xp, x, tuple(x.shape), x, _basis(xp, x, i), y)
                for i in range(n)]
        return xp.stack(rows, axis=-2)

    def _derivable(self, x: Any, missing: str) -> int:
        n = int(x.shape[-1])
        if n > DERIVED_MAX_N:
            raise ValueError(f"{self._who()} has no {missing}=: deriving it takes n = {n} VJP calls per batch "
                             f"(the size of its axis), refused above DERIVED_MAX_N = {DERIVED_MAX_N}; pass {missing}= "
                             "to custom_activation")
        return n

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments: the functions (kept as ``forward_fn``, ``vjp_fn``, ...,
        since ``forward`` and ``vjp`` are methods), ``name``, ``axis`` and ``output_range``.

        A checkpoint stores only ``axis``: the functions come back with the instance registered
        under ``name``.
        """
        if not isinstance(deep, bool):
            raise TypeError(f"deep must be a bool; got {deep!r} ({type(deep).__name__})")
        return dict(self._init_args)

    def __repr__(self) -> str:
        kind = ", elementwise=True" if isinstance(self, ElementwiseActivation) else f", axis={self.axis}"
        return f"custom_activation(name={self.name!r}{kind})"

    def _prepare(self, x: Any, where: Any) -> tuple[Any, Any, Any, int, Any]:
        if where is not None:
            raise TypeError(f"{self._who()} does not take where=; subclass gradkit.AxisActivation for masks")
        return super()._prepare(x, None)  # type: ignore[misc]


class CustomActivation(_CustomActivationMixin, Activation):
    """An activation along ``axis`` from user functions; built by :func:`custom_activation`."""

    preserves_order = False  # unknown: predictions take the forward pass

    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        xl = moveaxis(xp, x, axis, -1)
        y = self._call(self.forward_fn, "forward", "the shape of x", xp, xl, tuple(xl.shape), xl)
        return moveaxis(xp, y, -1, axis)

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        xl, yl, gl = (moveaxis(xp, a, axis, -1) for a in (x, y, g))
        out = self._call(self.vjp_fn, "vjp", "the shape of x", xp, xl, tuple(xl.shape), xl, gl, yl)
        return moveaxis(xp, out, -1, axis)

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        xl, yl, vl = (moveaxis(xp, a, axis, -1) for a in (x, y, v))
        if self.jvp_fn is not None:
            out = self._call(self.jvp_fn, "jvp", "the shape of x", xp, xl, tuple(xl.shape), xl, vl, yl)
        elif self.jacobian_fn is not None:
            out = xp.matmul(self._jacobian_last(xp, xl, yl), vl[..., None])[..., 0]
        else:  # by transposition: (Jv)_i = <row i of J, v>, row i = vjp(x, e_i)
            n = self._derivable(xl, "jvp")
            out = xp.stack([xp.sum(self._call(self.vjp_fn, "vjp", "the shape of x", xp, xl, tuple(xl.shape),
                                              xl, _basis(xp, xl, i), yl) * vl, axis=-1) for i in range(n)], axis=-1)
        return moveaxis(xp, out, -1, axis)

    def compute_jacobian(self, xp: Any, x: Any, y: Any, mask: Any) -> Any:
        return self._jacobian_last(xp, x, y)


class CustomElementwiseActivation(_CustomActivationMixin, ElementwiseActivation):
    """An elementwise activation from user functions; built by ``custom_activation(..., elementwise=True)``."""

    preserves_order = False

    def compute_value(self, xp: Any, x: Any) -> Any:
        return self._call(self.forward_fn, "forward", "the shape of x", xp, x, tuple(x.shape), x)

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        return self._call(self.vjp_fn, "vjp", "the shape of x", xp, x, tuple(x.shape), x, xp.ones_like(x), y)

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        return self._call(self.vjp_fn, "vjp", "the shape of x", xp, x, tuple(x.shape), x, g, y)

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        if self.jvp_fn is not None:
            return self._call(self.jvp_fn, "jvp", "the shape of x", xp, x, tuple(x.shape), x, v, y)
        if self.jacobian_fn is not None:
            xl, yl, vl = (moveaxis(xp, a, axis, -1) for a in (x, y, v))
            out = xp.matmul(self._jacobian_last(xp, xl, yl), vl[..., None])[..., 0]
            return moveaxis(xp, out, -1, axis)
        return self._call(self.vjp_fn, "vjp", "the shape of x", xp, x, tuple(x.shape), x, v, y)  # J is diagonal

    def compute_jacobian(self, xp: Any, x: Any, y: Any, mask: Any) -> Any:
        if self.jacobian_fn is not None:
            return self._jacobian_last(xp, x, y)
        return super().compute_jacobian(xp, x, y, mask)


def custom_activation(
    forward: Callable[[Any], Any],
    vjp: Callable[..., Any],
    jvp: Callable[..., Any] | None = None,
    *,
    name: str,
    axis: int = -1,
    jacobian: Callable[..., Any] | None = None,
    elementwise: bool = False,
    output_range: Interval = (-math.inf, math.inf),
) -> CustomActivation | CustomElementwiseActivation:
    """An :class:`~gradkit.Activation` from your functions; see the module docstring for their contract.

    Parameters
    ----------
    forward : callable
        ``forward(x) -> y``, on arrays with the activation's axis last.
    vjp : callable
        ``vjp(x, g) -> gᵀJ`` (shape of ``x``), or ``vjp(x, g, y)`` to be given ``y = forward(x)``
        as well (the signature decides, read once here).
    jvp : callable or None
        ``jvp(x, v) -> J v`` or ``jvp(x, v, y)`` (shape of ``x``); derived when None (see Notes).
    name : str
        Identifier-like; the registry name under which checkpoints and the CLI find it.
    axis : int, default -1
        The axis the activation acts along (the functions see it moved last).
    jacobian : callable or None
        ``jacobian(x) -> J`` or ``jacobian(x, y)``, of shape ``x.shape + (n,)``; derived when None.
    elementwise : bool, default False
        ``y_i = f(x_i)``: the functions act entry by entry on any shape; the Jacobian is
        diagonal, so a missing ``jvp`` is ``vjp`` and the Jacobian is ``diag(vjp(x, 1))``.
    output_range : (float, float), default (-inf, inf)
        The closed hull of the outputs: :func:`gradkit.compose` refuses losses not defined
        on it (give ``(0, 1)`` for probabilities to compose with ``cross_entropy``).

    Returns
    -------
    CustomActivation or CustomElementwiseActivation

    Raises
    ------
    TypeError
        A function is not callable or takes neither of its forms (``vjp(x, g)`` / ``vjp(x, g, y)``,
        ``jvp(x, v)`` / ``jvp(x, v, y)``, ``jacobian(x)`` / ``jacobian(x, y)``, ``forward(x)``),
        ``axis`` is not an int, ``elementwise`` not a bool.
    ValueError
        ``name`` is not identifier-like, ``output_range`` is not ``low <= high``.

    Notes
    -----
    A missing ``jacobian`` takes ``n`` VJP calls (one per basis vector); a missing
    ``jvp`` the Jacobian's product, or, without ``jacobian``, ``n`` VJP calls by
    transposition (``O(n²)`` work per row, ``O(n)`` memory). Both refuse ``n`` above
    ``DERIVED_MAX_N`` = 4096. ``where=`` masks are not taken.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> cube = gk.custom_activation(lambda x: x**3, lambda x, g: g * 3 * x**2, name="cube", elementwise=True)
    >>> cube.derivative(np.array([1.0, 2.0]))
    array([ 3., 12.])
    >>> cube.jacobian(np.array([1.0, 2.0]))  # derived: diag(vjp(x, 1))
    array([[ 3.,  0.],
           [ 0., 12.]])
    """
    if not isinstance(elementwise, bool):
        raise TypeError(f"elementwise must be a bool; got {elementwise!r}")
    check_int(axis, "axis")
    cls = CustomElementwiseActivation if elementwise else CustomActivation
    return cls(forward, vjp, jvp, name=name, axis=axis, jacobian=jacobian, output_range=output_range)


class CustomLoss(ElementwiseLoss):
    """An elementwise loss from user functions; built by :func:`custom_loss`."""

    def __init__(
        self,
        value: Callable[[Any, Any], Any],
        grad: Callable[[Any, Any], Any],
        *,
        name: str,
        domain: Interval | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.value_fn = _check_callable(value, "value")
        self.grad_fn = _check_callable(grad, "grad")
        self.name = check_name(name)  # type: ignore[misc]
        self.domain = None if domain is None else _check_interval(domain, "domain")
        if self.domain is not None:
            self.input_domain = self.domain
        self._init_args = {"value": value, "grad": grad, "name": name, "domain": self.domain,
                           "reduction": self.reduction}

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        who, shape = f"custom loss {self.name!r}", tuple(p.shape)
        value = _checked(self.value_fn(p, t), xp, p, shape, who, "value", "one loss per element, the shape of pred")
        grad = _checked(self.grad_fn(p, t), xp, p, shape, who, "grad", "the shape of pred")
        return value, grad

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments: the functions (kept as ``value_fn`` and ``grad_fn``),
        ``name``, ``domain`` and ``reduction``."""
        if not isinstance(deep, bool):
            raise TypeError(f"deep must be a bool; got {deep!r} ({type(deep).__name__})")
        return dict(self._init_args)

    def __repr__(self) -> str:
        domain = "" if self.domain is None else f", domain={self.domain!r}"
        return f"custom_loss(name={self.name!r}{domain}, reduction={self.reduction!r})"


def custom_loss(
    value: Callable[[Any, Any], Any],
    grad: Callable[[Any, Any], Any],
    *,
    name: str,
    domain: Interval | None = None,
    reduction: str = "mean",
) -> CustomLoss:
    """An elementwise :class:`~gradkit.losses.Loss` from your functions.

    Parameters
    ----------
    value : callable
        ``value(pred, target) -> ℓ``, one loss per element (shape of ``pred``); ``target``
        has ``pred``'s shape and dtype (the loss refuses other shapes, and NaN targets).
    grad : callable
        ``grad(pred, target) -> ∂ℓ/∂pred``, elementwise (shape of ``pred``).
    name : str
        Identifier-like; the registry name.
    domain : (float, float) or None
        The closed hull of the ``pred`` the loss is defined on: calls refuse ``pred``
        outside it and :func:`gradkit.compose` refuses activations whose range leaves it.
        None: all reals.
    reduction : {"mean", "sum", "none"}
        As for every loss: the mean over all elements, their sum, or the elements.

    Returns
    -------
    CustomLoss
        Its ``vjp``, ``jvp``, reductions and masks (behind ``compose(..., where=)``) come
        from :class:`~gradkit.losses.ElementwiseLoss`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> quartic = gk.custom_loss(lambda p, t: (p - t) ** 4, lambda p, t: 4 * (p - t) ** 3, name="quartic")
    >>> L, dp = quartic.value_and_grad(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    >>> float(L), dp
    (8.5, array([ 2., 16.]))
    """
    return CustomLoss(value, grad, name=name, domain=domain, reduction=reduction)
