"""gradkit in PyTorch: :func:`wrap` turns an activation or a composed head into a ``torch.nn.Module``.

Install with the ``torch`` extra (any torch >= 2.1, CPU or CUDA). ``wrap(act)(x, where=None)`` is the
activation, ``wrap(head)(z, target, where=None)`` the head's loss with its reduction. Autograd goes
through a ``torch.autograd.Function`` whose backward is gradkit's VJP and whose forward-mode rule
(``torch.func.jvp``, ``torch.autograd.forward_ad``) is gradkit's JVP:

* **What is saved for backward.** Only what the VJP reads: the output ``y`` for softmax,
  log-softmax, sparsemax and entmax-1.5 (their Jacobians are functions of ``y``); the input ``x``
  for elementwise activations (their derivatives are evaluated from ``x``, which is exact where
  ``y(1 - y)`` cancels); both for the Taylor and spherical maps; ``x`` and the noise for
  Gumbel-softmax; the logits ``z`` (and the target) for a head, whose backward recomputes the head.
  Never the intermediates of the forward pass.
* **Double backward** (``create_graph=True``, ``torch.autograd.gradgradcheck``): the backward is
  gradkit's portable code run on torch tensors with autograd recording, so it is itself
  differentiable w.r.t. the upstream gradient and the input (through the saved ``y``).
* **Where it runs.** CPU float32/float64 tensors use gradkit's NumPy path and its numba kernels on
  zero-copy views (``tensor.numpy()``, ``torch.from_numpy``) whenever no graph is being recorded
  (always in forward; in backward unless ``create_graph=True``); every other device, and CPU under
  ``create_graph``, ``torch.compile`` or ``torch.func`` transforms, runs the portable Array API
  code on the tensor's device. Both paths give the same values (tested).
* **torch.compile.** Under tracing gradkit takes its branch-free paths (:func:`gradkit._array.is_traced`),
  so ``torch.compile(wrap(act), fullgraph=True)`` traces forward and backward without a graph break
  (tested for softmax, log-softmax, sparsemax, entmax-1.5 and heads). Each module has a ``forward`` code
  object of its own, hence its own dynamo cache and recompile limit (:func:`_own_forward`).
* **No host reads** on a device: gradkit's portable code does not branch on values (``_array.branch_free``);
  a head's forward checks its target's values once (skipped on ``meta`` and under tracing), its backward not.

Inputs: ``x`` / ``z`` must be a ``torch.Tensor`` of a real dtype (float16/bfloat16 are computed in
float32 and returned, with their gradients, in their dtype; integers are computed in float64 as everywhere
in gradkit); ``where`` a boolean tensor broadcastable to ``x`` (no gradient); ``target`` a tensor of integer
labels or per-class (per-element) targets of any float dtype (cast to the dtype of the computation), which
gets no gradient. Anything else raises ``TypeError`` naming the argument.

Examples
--------
>>> import torch, gradkit as gk, gradkit.torch as gkt
>>> act = gkt.wrap(gk.Entmax15())
>>> act
GradkitActivation(Entmax15(axis=-1, method='sort', n_iter=50))
>>> x = torch.tensor([[-2.0, 0.0, 0.5]], dtype=torch.float64, requires_grad=True)
>>> y = act(x)
>>> y.detach().numpy().round(6)
array([[0.      , 0.326007, 0.673993]])
>>> y.backward(torch.tensor([[1.0, -1.0, 2.0]], dtype=torch.float64))
>>> x.grad.numpy().round(6)
array([[ 0.     , -1.01028,  1.01028]])
"""

from __future__ import annotations

import copy
import types
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ._optional import require

require("gradkit.torch", "torch")

import torch  # after the check: a missing extra is one clear line

from . import kernels
from ._array import is_traced, values_checked
from .activations.elementwise import ElementwiseActivation
from .activations.entmax_bisect import EntmaxBisect
from .activations.gumbel import GumbelSoftmax
from .activations.softmax import LogSoftmax, Softmax
from .activations.sparse import Entmax15, Sparsemax
from .base import Activation
from .composition import Composed

__all__ = ["GradkitActivation", "GradkitHead", "wrap"]

#: activations whose VJP and JVP read the output ``y`` only
_Y_ONLY: tuple[type, ...] = (Softmax, LogSoftmax, Sparsemax, Entmax15, EntmaxBisect)


def _saves(act: Activation) -> tuple[bool, bool]:
    """Which of ``(x, y)`` the derivatives of ``act`` read."""
    if isinstance(act, GumbelSoftmax):
        return True, False  # the soft sample is recomputed from x + noise
    if type(act) in _Y_ONLY:  # exact types: a subclass may override the hooks
        return False, True
    if isinstance(act, ElementwiseActivation) and type(act).compute_derivative in _X_ONLY_DERIVATIVES:
        return True, False
    return True, True  # the Taylor and spherical maps (q(x) and y), and activations gradkit does not know


def _x_only_derivatives() -> frozenset[Any]:
    from .activations import elementwise as ew

    classes = (ew.Identity, ew.Sigmoid, ew.Tanh, ew.ReLU, ew.LeakyReLU, ew.ELU, ew.SELU, ew.GELU, ew.Softplus,
               ew.SiLU, ew.Mish, ew.HardSigmoid)
    return frozenset(c.compute_derivative for c in classes)


#: gradkit's elementwise derivatives, all evaluated from ``x`` (``y`` is not read)
_X_ONLY_DERIVATIVES = _x_only_derivatives()

#: the Array API namespaces gradkit's hooks receive (array-api-compat's wrappers, as ``as_float`` gives them)
_XP = array_namespace(torch.zeros(0))
_NP = array_namespace(np.zeros(0))


# -- the NumPy / numba path for CPU tensors ------------------------------------------------------
def _host_ok(*tensors: Any) -> bool:
    """Whether these tensors may go through NumPy (zero-copy views) and gradkit's numba kernels:
    CPU, float32/float64 (others: bool masks, integer labels), nothing traced, no graph recorded."""
    if torch.compiler.is_compiling() or torch.is_grad_enabled() or not kernels.enabled():
        return False
    live = [t for t in tensors if t is not None]
    if is_traced(*live):
        return False
    first = live[0]
    if first.dtype not in (torch.float32, torch.float64):
        return False
    for t in live:
        if t.dtype not in _NUMPY_DTYPES or type(t) is not torch.Tensor or t.device.type != "cpu" or t.is_conj() or t.is_neg() or t.layout != torch.strided:
            return False
    return True


#: the dtypes ``tensor.numpy()`` takes (not bfloat16, which NumPy lacks): others run the portable code
_NUMPY_DTYPES = frozenset({torch.float16, torch.float32, torch.float64, torch.bool, torch.uint8, torch.int8,
                           torch.int16, torch.int32, torch.int64})


def _np(t: Any) -> Any:
    """A NumPy view of a CPU tensor (no copy), or None."""
    return None if t is None else t.detach().numpy()


def _back(a: Any, *inputs: Any) -> Any:
    """A NumPy result as a tensor: shares its memory; copied if it is (a view of) an input's memory."""
    a = np.asarray(a)
    if any(i is not None and np.may_share_memory(a, i) for i in inputs):  # bounds only: never slow
        a = a.copy()
    return torch.from_numpy(a)


# -- activations --------------------------------------------------------------------------------
class _ActFn(torch.autograd.Function):
    """``y = act(x)`` with gradkit's VJP as backward and its JVP as forward-mode rule."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Any, mask: Any, noise: Any, act: Activation, axis: int) -> Any:
        if _host_ok(x, mask, noise):
            xn, mn = _np(x), _np(mask)
            return _back(_forward(act, _NP, xn, axis, mn, _np(noise)), xn)
        y = _forward(act, _XP, x, axis, mask, noise)
        return y.clone() if y is x else y  # (identity) an output must not be its input: autograd refuses it

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, mask, noise, act, axis = inputs
        need_x, need_y = _saves(act)
        ctx.act, ctx.axis, ctx.need_x, ctx.need_y = act, axis, need_x, need_y
        ctx.save_for_backward(x if need_x else None, output if need_y else None, mask, noise)
        ctx.save_for_forward(x if need_x else None, output if need_y else None, mask, noise)

    @staticmethod
    def backward(ctx: Any, g: Any) -> tuple[Any, ...]:
        x, y, mask, noise = ctx.saved_tensors
        return _derivative(ctx, "vjp", x, y, mask, noise, g), None, None, None, None

    @staticmethod
    def jvp(ctx: Any, v: Any, *_: Any) -> Any:
        x, y, mask, noise = ctx.saved_tensors
        return _derivative(ctx, "jvp", x, y, mask, noise, v)


class _ActFnTraced(torch.autograd.Function):
    """:class:`_ActFn` without the forward-mode rule, for ``torch.compile``: dynamo refuses to trace an
    ``autograd.Function`` that defines ``jvp``."""

    generate_vmap_rule = True
    forward = _ActFn.forward
    setup_context = _ActFn.setup_context
    backward = _ActFn.backward


def _forward(act: Activation, xp: Any, x: Any, axis: int, mask: Any, noise: Any) -> Any:
    if isinstance(act, GumbelSoftmax):
        return act._sample(xp, x, axis, mask, noise)
    return act.compute_forward(xp, x, axis, mask)


def _derivative(ctx: Any, kind: str, x: Any, y: Any, mask: Any, noise: Any, g: Any) -> Any:
    act: Any = ctx.act
    axis = ctx.axis
    ref = x if x is not None else y
    g = g.to(ref.dtype)
    if _host_ok(ref, g, mask, noise):
        xn, yn, gn, mn, nn = _np(x), _np(y), _np(g), _np(mask), _np(noise)
        return _back(_hook(act, kind, _NP, xn, yn, gn, axis, mn, nn), xn, yn, gn)
    return _hook(act, kind, _XP, x, y, g, axis, mask, noise)


def _hook(act: Any, kind: str, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any, noise: Any) -> Any:
    if isinstance(act, GumbelSoftmax):
        soft = act._softmax.compute_forward(xp, x + noise, axis, mask)
        inner = act._softmax
        return (inner.compute_vjp if kind == "vjp" else inner.compute_jvp)(xp, x, soft, g, axis, mask)
    if y is None:
        if isinstance(act, ElementwiseActivation):  # derivatives read x only (see _saves)
            d = act.compute_derivative(xp, x, None)
            return g * d
        y = act.compute_forward(xp, x, axis, mask)
    return (act.compute_vjp if kind == "vjp" else act.compute_jvp)(xp, x, y, g, axis, mask)


def _noise(act: Activation, x: Any) -> Any:
    """Gumbel-softmax's noise for ``x``, drawn here (or reused inside ``act.frozen()``) and saved with the graph:
    the backward uses this sample's noise even if it runs in another thread or after other forward passes.
    None for every other activation."""
    if not isinstance(act, GumbelSoftmax):
        return None
    act._perturbed(_XP, x.detach(), draw=True)
    return torch.as_tensor(act.noise, dtype=x.dtype, device=x.device)


def _check_tensor(value: Any, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def _computation_dtype(x: Any, name: str) -> Any:
    """gradkit's rule: real floats kept (float16/bfloat16 computed in float32), integers in float64."""
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must have a real floating or integer dtype, got {x.dtype}")
    if not x.is_floating_point():
        return torch.float64
    if torch.finfo(x.dtype).bits < 32:
        return torch.float32
    return x.dtype


def _mask(where: Any, x: Any) -> Any:
    if where is None:
        return None
    _check_tensor(where, "where")
    if where.dtype != torch.bool:
        raise TypeError(f"where must be a boolean mask, got dtype {where.dtype}")
    if where.device != x.device:
        raise ValueError(f"where must be on the device of x, {x.device}; got {where.device}")
    try:
        return torch.broadcast_to(where, x.shape).detach()
    except RuntimeError as exc:
        raise ValueError(f"where must broadcast to the shape of x, {tuple(x.shape)}; got {tuple(where.shape)}") from exc


def _own_forward(module: torch.nn.Module) -> None:
    """Give ``module`` a ``forward`` with a code object of its own (the class's function, copied).

    ``torch.compile`` keeps its compiled entries, and counts ``torch._dynamo.config.recompile_limit``
    (8), per code object: with one ``forward`` shared by every wrapped module, each activation type
    and input rank took one entry of the same cache, and the 9th compiled in a process failed with
    ``FailOnRecompileLimitHit`` under ``fullgraph=True``. Now each module has its own cache.
    """
    f = type(module).forward
    fresh = types.FunctionType(f.__code__.replace(), f.__globals__, f.__name__, f.__defaults__, f.__closure__)
    fresh.__qualname__, fresh.__doc__, fresh.__annotations__ = f.__qualname__, f.__doc__, f.__annotations__
    object.__setattr__(module, "forward", types.MethodType(fresh, module))


def _without_forward(state: dict[str, Any]) -> dict[str, Any]:
    """The module's state for pickling, without its own ``forward`` (a function made at run time;
    ``__setstate__`` makes another)."""
    state = dict(state)
    state.pop("forward", None)
    return state


class GradkitActivation(torch.nn.Module):
    """A gradkit activation as a ``torch.nn.Module`` (made by :func:`wrap`): ``module(x, where=None)``.

    The gradkit object is ``module.activation``; its parameters are not torch parameters (gradkit's
    activations have none to learn).
    """

    def __init__(self, activation: Activation) -> None:
        super().__init__()
        self.activation = activation
        _own_forward(self)

    def __getstate__(self) -> dict[str, Any]:
        return _without_forward(super().__getstate__())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        _own_forward(self)

    def forward(self, x: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``activation(x, where=where)``, differentiable w.r.t. ``x`` (to any order)."""
        act = self.activation
        _check_tensor(x, "x")
        dtype = _computation_dtype(x, "x")
        if x.ndim == 0 and not isinstance(act, ElementwiseActivation):
            raise ValueError(f"x must have at least one dimension to apply axis={act.axis}; got a 0-d tensor")
        if x.ndim and not -x.ndim <= act.axis < x.ndim:
            raise ValueError(f"axis must be in [{-x.ndim}, {x.ndim - 1}] for an array of {x.ndim} dimensions; "
                             f"got {act.axis}")
        axis = act.axis % x.ndim if x.ndim else 0
        if isinstance(act, ElementwiseActivation):
            if where is not None:
                raise TypeError(f"{type(act).__name__} does not take where=: it is elementwise")
        elif x.shape[axis] == 0:
            raise ValueError(f"x must have at least one entry along axis={act.axis}; got shape {tuple(x.shape)}")
        mask = _mask(where, x)
        xc = x if x.dtype == dtype else x.to(dtype)
        y = (_ActFnTraced if torch.compiler.is_compiling() else _ActFn).apply(xc, mask, _noise(act, xc), act, axis)
        return y if y.dtype == x.dtype or not x.is_floating_point() else y.to(x.dtype)

    def extra_repr(self) -> str:
        return repr(self.activation)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.activation!r})"


# -- composed heads -----------------------------------------------------------------------------
class _HeadFn(torch.autograd.Function):
    """``L = head(z, target)`` with the head's VJP as backward and its JVP as forward-mode rule."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z: Any, target: Any, mask: Any, head: Composed) -> Any:
        if _host_ok(z, target, mask):
            zn = _np(z)
            return _back(head(zn, _np(target), where=_np(mask)), zn)
        return head(z, target, where=mask)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        z, target, mask, head = inputs
        ctx.head = head
        ctx.save_for_backward(z, target, mask)
        ctx.save_for_forward(z, target, mask)

    @staticmethod
    def backward(ctx: Any, g: Any) -> tuple[Any, ...]:
        z, target, mask = ctx.saved_tensors
        return _head_derivative(ctx.head, "vjp", z, target, mask, g), None, None, None

    @staticmethod
    def jvp(ctx: Any, v: Any, *_: Any) -> Any:
        z, target, mask = ctx.saved_tensors
        return _head_derivative(ctx.head, "jvp", z, target, mask, v)


class _HeadFnTraced(torch.autograd.Function):
    """:class:`_HeadFn` without the forward-mode rule, for ``torch.compile`` (see :class:`_ActFnTraced`)."""

    generate_vmap_rule = True
    forward = _HeadFn.forward
    setup_context = _HeadFn.setup_context
    backward = _HeadFn.backward


def _head_derivative(head: Composed, kind: str, z: Any, target: Any, mask: Any, g: Any) -> Any:
    if torch.compiler.is_compiling():  # traced: no values, so no value checks either
        return _head_pass(head, kind, z, target, mask, g)
    with values_checked():  # the forward pass checked target and z (labels in range, domains): not again
        return _head_pass(head, kind, z, target, mask, g)


def _head_pass(head: Composed, kind: str, z: Any, target: Any, mask: Any, g: Any) -> Any:
    g = g.to(z.dtype)
    if _host_ok(z, g, target, mask):
        zn, gn = _np(z), _np(g)
        method = head.vjp if kind == "vjp" else head.jvp
        return _back(method(zn, _np(target), gn, where=_np(mask)), zn, gn)
    if kind == "vjp" and torch.is_grad_enabled() and not head.fused:
        # create_graph: the backward is recorded. The activation's part goes through _ActFn, whose own
        # backward is gradkit's VJP (differentiable), never through autograd of gradkit's forward code
        # (a bisection, a sort, a sqrt at 0 are not meant to be differentiated); the loss's gradient
        # formulas are smooth expressions that autograd differentiates as they are
        head = _recorded(head)
    method = head.vjp if kind == "vjp" else head.jvp
    return method(z, target, g, where=mask)


class _RecordedActivation:
    """Stands in for a head's activation while a backward is recorded: forward through :class:`_ActFn`,
    VJP through autograd (hence gradkit's VJP, recorded); everything else is the activation's."""

    def __init__(self, act: Activation) -> None:
        self._act = act
        self._out: dict[int, tuple[Any, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._act, name)

    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        y = _ActFn.apply(x, mask, _noise(self._act, x), self._act, axis)
        self._out[id(x)] = (x, y)
        return y

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        x_in, y_out = self._out[id(x)]  # the Function's own output (y may be clipped onto the loss's domain)
        (gx,) = torch.autograd.grad(y_out, x_in, g, create_graph=True, retain_graph=True)
        return gx


def _recorded(head: Composed) -> Composed:
    clone = copy.copy(head)
    clone.activation = _RecordedActivation(head.activation)  # type: ignore[assignment]
    return clone


class GradkitHead(torch.nn.Module):
    """A composed head as a ``torch.nn.Module`` (made by :func:`wrap`): ``module(z, target, where=None)``
    is the loss with the head's reduction; the gradient w.r.t. ``z`` is ``head.grad`` (times the upstream),
    ``target`` gets none."""

    def __init__(self, head: Composed) -> None:
        super().__init__()
        self.head = head
        _own_forward(self)

    def __getstate__(self) -> dict[str, Any]:
        return _without_forward(super().__getstate__())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        _own_forward(self)

    def forward(self, z: torch.Tensor, target: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``head(z, target, where=where)``, differentiable w.r.t. ``z`` (to any order)."""
        _check_tensor(z, "z")
        _check_tensor(target, "target")
        dtype = _computation_dtype(z, "z")
        if target.device != z.device:
            raise ValueError(f"target must be on the device of z, {z.device}; got {target.device}")
        if target.is_complex():
            raise TypeError(f"target must have a real dtype, got {target.dtype}")
        mask = _mask(where, z)
        zc = z if z.dtype == dtype else z.to(dtype)
        tc = target.detach()
        if tc.is_floating_point() and tc.dtype != dtype:  # gradkit computes a target in the dtype of the
            tc = tc.to(dtype)  # computation (float16/bfloat16 in float32), which the NumPy path needs too
        value = (_HeadFnTraced if torch.compiler.is_compiling() else _HeadFn).apply(zc, tc, mask, self.head)
        return value if value.dtype == z.dtype or not z.is_floating_point() else value.to(z.dtype)

    def extra_repr(self) -> str:
        return repr(self.head)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.head!r})"


def wrap(obj: Activation | Composed) -> GradkitActivation | GradkitHead:
    """Return ``obj`` as a ``torch.nn.Module``.

    Parameters
    ----------
    obj : Activation or Composed
        A gradkit activation (``module(x, where=None)``) or a head made by
        :func:`gradkit.compose` (``module(z, target, where=None)``, the loss with the head's reduction).

    Returns
    -------
    GradkitActivation or GradkitHead
        A module whose backward is gradkit's VJP (double backward included) and whose forward-mode
        derivative is gradkit's JVP; see the module notes.

    Raises
    ------
    TypeError
        If ``obj`` is neither an :class:`~gradkit.Activation` nor a :class:`~gradkit.Composed`.

    Examples
    --------
    >>> import torch, gradkit as gk, gradkit.torch as gkt
    >>> loss = gkt.wrap(gk.compose(gk.Softmax(), gk.CrossEntropyLoss()))
    >>> z = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
    >>> value = loss(z, torch.tensor([1]))
    >>> value.backward()
    >>> bool(torch.allclose(z.grad, torch.softmax(z, -1) - torch.tensor([[0.0, 1.0, 0.0]])))
    True
    """
    if isinstance(obj, Activation):
        return GradkitActivation(obj)
    if isinstance(obj, Composed):
        return GradkitHead(obj)
    raise TypeError(f"obj must be a gradkit Activation or a head from gradkit.compose; got {obj!r} "
                    f"({type(obj).__name__})")
