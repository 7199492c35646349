"""What is checked: an activation, a loss or head with its target, an ``nn`` layer or model, or a function with
its ``vjp``/``jvp``; its point, its parameters and random targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._array import normalize_axis, to_array
from .._rng import RNGLike, as_generator
from ..base import Activation
from ..composition import Composed
from ..losses.base import Loss
from .differences import _count_nonfinite

__all__ = ['random_target']


def random_target(
    loss: Loss, shape: tuple[int, ...], rng: RNGLike, *, labels: bool = False
) -> np.ndarray:
    """A random target valid for ``loss`` and predictions of ``shape``, for checks.

    ``rng`` is a SPEC 7 ``rng``: a Generator (used as is, and advanced), an int seed, or None.

    Class losses get integer labels (``labels=True``) or per-class soft targets
    that do not sum to 1 (the case the ``p - t`` shortcut gets wrong); binary
    losses values in (0.05, 0.95); regression losses standard normal values.
    """
    from ..losses.binary import BCELoss, BCEWithLogitsLoss
    from ..losses.classification import ClassLoss

    rng = as_generator(rng)
    if isinstance(loss, ClassLoss):
        if labels:
            axis = normalize_axis(loss.axis, len(shape))
            return rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1 :])
        return rng.uniform(0.0, 1.0, shape)
    if isinstance(loss, (BCELoss, BCEWithLogitsLoss)):
        return rng.uniform(0.05, 0.95, shape)
    return rng.standard_normal(shape)


def _on_host(x: Any) -> Any:
    """``x`` copied to host memory as a NumPy array, from any library and device (torch, CuPy, JAX, or an Array
    API array on a non-default device, moved to its library's first device: array-api-strict's CPU device).

    The one place where the checker reads values back: it differentiates in NumPy float64 on the host, once per
    check, and the device path is checked equal to NumPy by the Array API suite."""
    if isinstance(x, (np.ndarray, np.generic)):
        return x
    if hasattr(x, "detach"):  # torch, any device
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("cupy"):
        return x.get()
    try:
        return np.asarray(x)
    except (RuntimeError, TypeError, ValueError, BufferError):
        devices = x.__array_namespace__().__array_namespace_info__().devices()
        return np.asarray(x.to_device(devices[0]))


def _point(x: Any, name: str = "x") -> np.ndarray:
    """``x`` as a NumPy array in its own floating dtype (integers become float64)."""
    arr = _on_host(to_array(x, name))
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must be a real floating or integer array to differentiate at; got dtype bool")
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real: gradcheck checks real derivatives; got dtype {arr.dtype}")
    if arr.dtype.kind not in "f":
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite for a finite-difference check; got {_count_nonfinite(arr)}")
    return np.array(arr, copy=True)


# -- what f is -------------------------------------------------------------------------------------------------
def _layer_types() -> tuple[Any, ...]:
    from ..nn.layers import Layer
    from ..nn.model import Sequential

    return (Layer, Sequential)


def _resolve(f: Any, vjp: Any, jvp: Any, target: Any) -> tuple[Callable, Callable | None, Callable | None, Callable | None, int | None, str]:
    if isinstance(f, Activation):
        if target is not None:
            raise TypeError("target= goes with a loss or a composed head, not an activation")
        return f.forward, vjp or f.vjp, jvp or f.jvp, f.jacobian, f.axis, repr(f)
    if isinstance(f, (Loss, Composed)):
        if target is None:
            raise TypeError(f"gradcheck of {type(f).__name__} needs target=")
        return (
            lambda x: f(x, target),
            vjp or (lambda x, g: f.vjp(x, target, g)),
            jvp or (lambda x, v: f.jvp(x, target, v)),
            None,
            None,
            repr(f),
        )
    if isinstance(f, _layer_types()):
        if target is not None:
            raise TypeError("target= goes with a loss or a composed head, not a layer: check the layer alone, "
                            "or compose it into a function of x with its own vjp=")
        if jvp is not None:
            raise TypeError("jvp= does not go with a gradkit.nn layer: its backward() is the VJP under test")
        return (lambda x: f.forward(x), vjp or (lambda x, g: (f.forward(x), f.backward(g))[1]), None, None, None,
                _name(f))
    if callable(f):
        if vjp is None and jvp is None:
            raise TypeError("gradcheck of a plain function needs vjp=(x, g) -> array and/or jvp=(x, v) -> array")
        if target is not None:
            return (lambda x: f(x, target)), vjp, jvp, None, None, getattr(f, "__name__", repr(f))
        return f, vjp, jvp, None, None, getattr(f, "__name__", repr(f))
    raise TypeError("f must be an activation, a loss, a compose() head, a gradkit.nn layer or Sequential, or a "
                    f"callable; got {type(f).__name__}")


def _name(f: Any) -> str:
    """``repr(f)``, or the class name where a user's layer cannot say more (no ``config()``)."""
    try:
        return repr(f)
    except Exception:  # noqa: BLE001 - a repr that fails must not hide the check
        return type(f).__name__ + "()"


def _check_callable(value: Any, name: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable ({name}(x, ...) -> array) or None; got {type(value).__name__}")


def _np_dtypes(dtypes: list[Any]) -> list[np.dtype]:
    out = []
    for d in dtypes:
        try:
            out.append(np.dtype(d))
        except TypeError:  # a torch dtype (torch.float32): by its name
            tail = str(d).rsplit(".", 1)[-1]
            out.append(np.dtype(tail) if tail in ("float16", "float32", "float64") else np.dtype(np.float64))
    return out


def _layer_params(f: Any) -> dict[str, np.ndarray]:
    if isinstance(f, _layer_types()):
        return dict(f.params)
    return {}


def _draw(rng: np.random.Generator, y_shape: tuple[int, ...], x: np.ndarray, out_dtype: np.dtype,
          ) -> tuple[np.ndarray, np.ndarray]:
    """A random upstream ``u`` (representable in the output's dtype) and direction ``v`` (scaled per entry)."""
    u = rng.standard_normal(y_shape).astype(out_dtype).astype(np.float64)
    return u, rng.standard_normal(x.shape) * np.maximum(1.0, np.abs(x))
