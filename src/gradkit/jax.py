r"""gradkit in JAX: :func:`wrap` turns an activation or a composed head into a JAX function.

The function is a :func:`jax.custom_jvp` whose rule is gradkit's own JVP, so ``jax.jit``,
``jax.grad``, ``jax.vmap``, ``jax.jacfwd``/``jax.jacrev`` and higher derivatives use gradkit's
exact derivatives instead of differentiating through its forward code (a sort, a bisection, a
clipped ``log``). Reverse mode comes from JAX transposing the rule: gradkit's JVPs are linear in
the tangent, written with ``jax.numpy`` operations JAX can transpose. Second derivatives
differentiate the rule itself: the rule's output ``y`` goes through the wrapped function again
(its own rule), the rest through JAX's ordinary rules.

* ``wrap(activation)`` gives ``f(x, *, where=None) -> y``. ``where=`` (a boolean mask that
  broadcasts to ``x``, never differentiated) follows gradkit's semantics: masked entries give
  0 (``-inf`` for the log versions) and zero gradient, and a fully masked row gives zeros and
  an exact zero gradient, also under ``jit`` (no NaN, unlike ``softmax(where(mask, x, -inf))``
  in plain JAX, jax issue #17117).
* ``wrap(GumbelSoftmax(...))`` gives ``f(x, *, key=None, noise=None, where=None)``: the noise
  comes from a JAX PRNG ``key`` (``jax.random.gumbel``), or is given as ``noise=``. The
  object's NumPy ``rng`` is not used: a NumPy draw happens once, while ``jit`` traces, and
  would then be the same constant in every call of the compiled function. The derivatives are
  those of the softmax at ``x + noise`` (``hard=True``: the one-hot forward, the soft sample's
  derivatives -- straight-through), so for a fixed key the function is deterministic.
* ``wrap(compose(activation, loss))`` gives ``f(z, target, *, where=None) -> loss`` with the
  derivative w.r.t. ``z``; ``target`` is data, not a variable: differentiating w.r.t. it
  raises ``TypeError`` (not a silent zero).

Input rules: ``x``/``z`` are JAX or NumPy arrays (or nested lists) of a real floating dtype;
integer input is computed in JAX's default float dtype (float32, or float64 with
``jax_enable_x64``); bool and complex input raise ``TypeError``. Shapes and dtypes are checked
always (they are known while tracing). Checks on *values* need concrete arrays and are made
only outside ``jit``/``vmap``/``grad`` tracing; under tracing they are skipped: a NaN target, a
target probability < 0, a label outside ``[0, n)`` (it becomes a zero one-hot row), a BCE
target outside [0, 1], and a loss input outside the loss's domain (clipped onto it) are not
refused there.

Examples
--------
>>> import jax, jax.numpy as jnp, gradkit as gk
>>> from gradkit.jax import wrap
>>> softmax = wrap(gk.Softmax())
>>> x = jnp.array([[1.0, 2.0, 3.0], [1.0, 5.0, -2.0]])
>>> mask = jnp.array([[True, True, True], [False, False, False]])
>>> y = jax.jit(lambda x: softmax(x, where=mask))(x)
>>> y[1].tolist()
[0.0, 0.0, 0.0]
>>> g = jax.jit(jax.grad(lambda x: jnp.sum(softmax(x, where=mask) * jnp.array([0.5, -1.0, 2.0]))))(x)
>>> bool(jnp.all(jnp.isfinite(g))), g[1].tolist()
(True, [0.0, 0.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._optional import require

require("gradkit.jax", "jax")

import jax  # after the check: a missing extra is one clear line
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from ._array import to_array
from .activations.gumbel import GumbelSoftmax
from .activations.softmax import Softmax
from .base import Activation
from .composition import Composed, _inside
from .losses.base import ElementwiseLoss, Loss

__all__ = ["wrap"]


def wrap(obj: Activation | Composed | str) -> Callable[..., Any]:
    """Return a JAX function computing ``obj`` with gradkit's exact derivatives (a ``jax.custom_jvp``).

    Parameters
    ----------
    obj : Activation, Composed or str
        An activation (or its registry name, e.g. ``"softmax"``) or a head from
        :func:`gradkit.compose`.

    Returns
    -------
    callable
        * activation: ``f(x, *, where=None) -> y``;
        * :class:`~gradkit.GumbelSoftmax`: ``f(x, *, key=None, noise=None, where=None) -> y``
          (exactly one of a JAX PRNG ``key`` and ``noise``);
        * composed head: ``f(z, target, *, where=None) -> loss``, differentiable w.r.t. ``z``.

    Raises
    ------
    TypeError
        If ``obj`` is none of these (a bare loss: wrap ``gk.compose("identity", loss)``).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, gradkit as gk
    >>> from gradkit.jax import wrap
    >>> head = wrap(gk.compose(gk.Softmax(), gk.CrossEntropyLoss()))
    >>> z, labels = jnp.array([[1.0, 2.0, 0.5]]), jnp.array([1])
    >>> g = jax.jit(jax.grad(head))(z, labels)
    >>> bool(jnp.allclose(g, jax.nn.softmax(z) - jax.nn.one_hot(labels, 3), atol=1e-6))
    True
    """
    if isinstance(obj, str):
        from . import activations

        obj = activations.get(obj)
    if isinstance(obj, GumbelSoftmax):
        return _wrap_gumbel(obj)
    if isinstance(obj, Activation):
        return _wrap_activation(obj)
    if isinstance(obj, Composed):
        return _wrap_head(obj)
    if isinstance(obj, Loss):
        raise TypeError(
            f"wrap takes an activation or a composed head, got the loss {obj!r}: "
            f"wrap gk.compose('identity', loss) for a loss of its raw input"
        )
    raise TypeError(
        f"obj must be a gradkit Activation, a head from gradkit.compose or an activation name; got {type(obj).__name__}"
    )


# -- input checks (shapes and dtypes only: they are static under tracing) -----------------------
def _as_input(x: Any, name: str) -> Any:
    """``x`` as a JAX array of a real floating dtype (integers: JAX's default float)."""
    if not isinstance(x, jax.Array):
        x = jnp.asarray(to_array(x, name))
    dt = x.dtype
    if jnp.issubdtype(dt, jnp.bool_):
        raise TypeError(f"{name} must have a real floating or integer dtype, got bool")
    if jnp.issubdtype(dt, jnp.complexfloating):
        raise TypeError(f"{name} must have a real dtype, got {dt}")
    if jnp.issubdtype(dt, jnp.integer):
        return x.astype(jnp.result_type(float))
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"{name} must have a real floating or integer dtype, got {dt}")
    return x


def _as_mask(where: Any, x: Any, supports_mask: bool, owner: str) -> Any:
    if where is None:
        return None
    if not supports_mask:
        raise TypeError(f"{owner} does not take where=: it is elementwise")
    if not isinstance(where, jax.Array):
        where = jnp.asarray(to_array(where, "where"))
    if where.dtype != jnp.bool_:
        raise TypeError(f"where must be a boolean mask, got dtype {where.dtype}")
    try:
        return jnp.broadcast_to(where, x.shape)
    except ValueError as exc:
        raise ValueError(f"where must broadcast to the shape of x, {tuple(x.shape)}; got {tuple(where.shape)}") from exc


def _tangent(t: Any, like: Any) -> Any:
    """A tangent as a JAX array of ``like``'s dtype (symbolic zeros instantiated)."""
    if isinstance(t, SymbolicZero):
        return jnp.zeros(like.shape, like.dtype)
    return jnp.asarray(t, dtype=like.dtype)


def _named(f: Callable[..., Any], obj: Any, doc: str) -> Callable[..., Any]:
    f.__name__ = f.__qualname__ = f"wrapped_{getattr(obj, 'name', '') or type(obj).__name__}"
    f.__doc__ = f"{obj!r} as a JAX function with gradkit's derivatives (gradkit.jax.wrap).\n\n{doc}"
    return f


# -- activations ------------------------------------------------------------------------------
def _activation_core(act: Activation) -> Any:
    """``core(x, mask) -> y``, a ``jax.custom_jvp`` whose rule is ``act.jvp``; ``x`` a floating JAX array."""

    @jax.custom_jvp
    def core(x: Any, mask: Any) -> Any:
        return act.forward(jnp.asarray(x), where=mask)

    @core.defjvp
    def core_jvp(primals: tuple[Any, Any], tangents: tuple[Any, Any]) -> tuple[Any, Any]:
        x, mask = primals
        x = jnp.asarray(x)  # a transform may hand over NumPy values (check_grads does)
        y = core(x, mask)  # through the rule again: second derivatives use gradkit's JVP too
        return y, act.jvp(x, _tangent(tangents[0], x), y=y, where=mask)

    return core


def _wrap_activation(act: Activation) -> Callable[..., Any]:
    core = _activation_core(act)

    def f(x: Any, *, where: Any = None) -> Any:
        x = _as_input(x, "x")
        return core(x, _as_mask(where, x, act.supports_mask, type(act).__name__))

    return _named(f, act, "f(x, *, where=None) -> y; where= is a boolean mask (not differentiated).")


def _wrap_gumbel(act: GumbelSoftmax) -> Callable[..., Any]:
    softmax = Softmax(axis=act.axis, temperature=act.temperature)
    hard = act.hard

    def sample(s: Any, mask: Any) -> Any:
        y = softmax.forward(s, where=mask)
        if not hard:
            return y
        axis = act.axis % y.ndim
        idx = jnp.argmax(y, axis=axis, keepdims=True)
        shape = [1] * y.ndim
        shape[axis] = y.shape[axis]
        positions = jnp.reshape(jnp.arange(y.shape[axis]), shape)
        live = jnp.sum(y, axis=axis, keepdims=True) > 0  # rows with no live entry stay 0 (as gradkit)
        hot = ((positions == idx) & live).astype(y.dtype)
        return jnp.where(jnp.isnan(y), y, hot)

    @jax.custom_jvp
    def core(s: Any, mask: Any) -> Any:
        return sample(jnp.asarray(s), mask)

    @core.defjvp
    def core_jvp(primals: tuple[Any, Any], tangents: tuple[Any, Any]) -> tuple[Any, Any]:
        s, mask = primals
        s = jnp.asarray(s)
        y = core(s, mask)
        soft = y if not hard else wrapped_softmax(s, mask)  # straight-through: the soft sample's derivative
        return y, softmax.jvp(s, _tangent(tangents[0], s), y=soft, where=mask)

    @jax.custom_jvp
    def wrapped_softmax(s: Any, mask: Any) -> Any:
        return softmax.forward(jnp.asarray(s), where=mask)

    @wrapped_softmax.defjvp
    def wrapped_softmax_jvp(primals: tuple[Any, Any], tangents: tuple[Any, Any]) -> tuple[Any, Any]:
        s, mask = primals
        s = jnp.asarray(s)
        y = wrapped_softmax(s, mask)
        return y, softmax.jvp(s, _tangent(tangents[0], s), y=y, where=mask)

    def f(x: Any, *, key: Any = None, noise: Any = None, where: Any = None) -> Any:
        x = _as_input(x, "x")
        mask = _as_mask(where, x, True, "GumbelSoftmax")
        dtype = x.dtype if jnp.finfo(x.dtype).bits >= 32 else jnp.float32  # half precision: computed in float32
        if (key is None) == (noise is None):
            raise TypeError(
                "GumbelSoftmax under JAX needs exactly one of key= (a jax.random key, from which the Gumbel "
                f"noise is drawn) and noise= (the noise itself); got key={'None' if key is None else 'given'}, "
                f"noise={'None' if noise is None else 'given'}"
            )
        if key is not None:
            if not isinstance(key, jax.Array):
                raise TypeError(f"key must be a jax.random key (jax.random.key(0)); got {type(key).__name__}")
            g = jax.lax.stop_gradient(jax.random.gumbel(key, x.shape, dtype))
        else:
            g = _as_input(noise, "noise")
            if tuple(g.shape) != tuple(x.shape):
                raise ValueError(f"noise must have the shape of x, {tuple(x.shape)}; got {tuple(g.shape)}")
            g = g.astype(dtype)
        return core(x.astype(dtype) + g, mask).astype(x.dtype)

    return _named(
        f,
        act,
        "f(x, *, key=None, noise=None, where=None) -> sample; the Gumbel noise from the jax.random key, or noise=.",
    )


# -- composed heads ---------------------------------------------------------------------------
def _wrap_head(head: Composed) -> Callable[..., Any]:
    loss, act = head.loss, head.activation
    # reduction="none": an elementwise loss behind a row-wise activation (softmax into mse) has items
    # that each depend on the whole row, so its JVP is chained forward, J v first, as Composed.jvp does
    # (whose overflow guard selects on the tangent's values, which JAX cannot transpose)
    chained = loss.reduction == "none" and isinstance(loss, ElementwiseLoss) and act.supports_mask
    chained = chained and not head.fused and not head.paired
    act_core = _activation_core(act)

    def per_item_jvp(z: Any, target: Any, v: Any, mask: Any) -> Any:
        if not chained:  # each item depends on its own slice of z only: contract its gradient with v
            gz = head.grad(z, target, where=mask)  # reduction="none": the items' gradients side by side
            item_axis = loss.item_axis(z.ndim)
            return gz * v if item_axis is None else jnp.sum(gz * v, axis=item_axis)
        p = act_core(z, mask)
        dp = act.jvp(z, v, y=p, where=mask)
        t = jnp.asarray(target, dtype=p.dtype)
        if mask is None:
            return loss.grad(p, t) * dp
        inside = _inside(loss.input_domain)  # masked entries take no part: a stand-in, then 0
        gp = loss.grad(jnp.where(mask, p, inside), jnp.where(mask, t, inside))
        return jnp.where(mask, gp * dp, 0.0)

    @jax.custom_jvp
    def core(z: Any, target: Any, mask: Any) -> Any:
        return head(jnp.asarray(z), target, where=mask)

    def core_jvp(primals: tuple[Any, Any, Any], tangents: tuple[Any, Any, Any]) -> tuple[Any, Any]:
        z, target, mask = primals
        z = jnp.asarray(z)
        if not isinstance(tangents[1], SymbolicZero):
            raise TypeError(
                "a wrapped head is differentiable w.r.t. z only, not w.r.t. target (its derivative there "
                "is not gradkit's): pass jax.lax.stop_gradient(target), or differentiate w.r.t. z"
            )
        v = _tangent(tangents[0], z)
        value = core(z, target, mask)
        if loss.reduction != "none":  # a scalar loss: <dL/dz, v>
            return value, jnp.sum(head.grad(z, target, where=mask) * v)
        return value, per_item_jvp(z, target, v, mask)

    core.defjvp(core_jvp, symbolic_zeros=True)

    def f(z: Any, target: Any, *, where: Any = None) -> Any:
        z = _as_input(z, "z")
        if not isinstance(target, jax.Array):
            target = jnp.asarray(to_array(target, "target"))
        return core(z, target, _as_mask(where, z, head.activation.supports_mask, type(head.activation).__name__))

    return _named(f, head, "f(z, target, *, where=None) -> loss; differentiable w.r.t. z.")
