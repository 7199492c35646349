"""Array-namespace helpers and input validation shared by every public function.

Everything here is written against the Array API standard: the namespace ``xp``
comes from the input (``array_api_compat.array_namespace``), nothing is
mutated in place, and NumPy is only used to turn lists and scalars into arrays.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import numbers
import sys
import weakref
from functools import cache
from typing import Any, NamedTuple, TypeAlias

import numpy as np
from array_api_compat import array_namespace, device, is_array_api_obj

__all__ = [
    "Array",
    "ArrayLike",
    "Prepared",
    "as_float",
    "branch_free",
    "cast",
    "check_choice",
    "check_int",
    "check_positive",
    "check_weight",
    "is_traced",
    "like",
    "mask_like",
    "moveaxis",
    "normalize_axis",
    "numpy_errstate",
    "refuse_array_subclass",
    "to_array",
    "values_checked",
    "values_hidden",
]

#: An array of any Array API library: NumPy, PyTorch, CuPy, JAX, array-api-strict... Results come back in the
#: library (and on the device) of the input. ``Any`` to a type checker: no protocol that all of these libraries'
#: arrays satisfy is published, and ``numpy.typing.NDArray`` would refuse every array but NumPy's.
Array: TypeAlias = Any

#: What an array argument takes: an :data:`Array`, or anything :func:`numpy.asarray` turns into a numeric
#: NumPy array (a Python number, nested lists or tuples). Wider than ``numpy.typing.ArrayLike``, which
#: covers NumPy's own inputs only, so ``Any`` to a type checker as well.
ArrayLike: TypeAlias = Any


def refuse_array_subclass(x: Any, name: str) -> None:
    """``TypeError`` naming ``name`` for a ``numpy.matrix`` or a masked array, the NumPy types whose values
    are not what plain-array arithmetic would compute with (a matrix's ``*`` is the matrix product and it is
    always 2-D; a masked array's mask would be dropped)."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} must be a plain array (numpy.ndarray or another Array API array); got "
                        f"numpy.ma.MaskedArray, whose mask would be dropped: pass {name}.filled(value), or the "
                        "unmasked entries alone")
    if isinstance(x, np.matrix):
        raise TypeError(f"{name} must be a plain array (numpy.ndarray or another Array API array); got numpy.matrix "
                        f"(its * is the matrix product and it is always 2-d): pass np.asarray({name})")


def to_array(x: Any, name: str) -> Any:
    """Return ``x`` if it is an Array API array, else ``np.asarray(x)``.

    NumPy arrays of object, string or other non-numeric dtypes raise ``TypeError``
    (their arithmetic would run element by element in Python, or fail later), and so do
    ``numpy.matrix`` and masked arrays (:func:`refuse_array_subclass`).
    """
    if isinstance(x, (np.ndarray, np.generic)):
        if type(x) is not np.ndarray:
            refuse_array_subclass(x, name)
        if x.dtype.kind not in "biuf":  # bool, ints, floats: object, str, bytes, void, datetime, complex refused
            if x.dtype.kind == "c":
                return x  # complex: each caller names what it expects
            raise TypeError(f"{name} must be a numeric array, got dtype {x.dtype}")
        return x
    if is_array_api_obj(x):
        return x
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array or a number, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array or a number, got {type(x).__name__}: {exc}") from exc
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got a ragged or object array")
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr


class Prepared(NamedTuple):
    """An input converted for computation: namespace, array, and the dtype to return."""

    xp: Any
    x: Any
    out_dtype: Any


_NUMPY_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@cache
def _numpy_namespace() -> Any:
    """The namespace ``array_namespace`` gives for a NumPy array."""
    return array_namespace(np.empty(0))


def as_float(x: Any, name: str = "x") -> Prepared:
    """Convert ``x`` for computation.

    Real floating input is kept; float16/bfloat16 is computed in float32 and the
    result returned in the input dtype; integer input is cast to float64 (the
    rule ``np.exp`` follows). Boolean and complex input raise ``TypeError``.
    """
    if type(x) is np.ndarray and x.dtype in _NUMPY_FLOATS:  # the common case, without the namespace lookups
        return Prepared(_numpy_namespace(), x, x.dtype)
    x = to_array(x, name)
    xp = array_namespace(x)
    dt = x.dtype
    if xp.isdtype(dt, "bool"):
        raise TypeError(f"{name} must have a real floating or integer dtype, got bool")
    if xp.isdtype(dt, "complex floating"):
        raise TypeError(f"{name} must have a real dtype, got {dt}")
    if xp.isdtype(dt, "integral"):
        return Prepared(xp, xp.astype(x, xp.float64), xp.float64)
    if not xp.isdtype(dt, "real floating"):
        raise TypeError(f"{name} must have a real floating or integer dtype, got {dt}")
    if xp.finfo(dt).bits < 32:
        return Prepared(xp, xp.astype(x, xp.float32), dt)
    return Prepared(xp, x, dt)


def cast(xp: Any, a: Any, dtype: Any) -> Any:
    """Return ``a`` in ``dtype`` (no copy when it already is)."""
    return a if a.dtype == dtype else xp.astype(a, dtype)


def like(a: Any, ref: Any, xp: Any, name: str, ref_name: str = "x") -> Any:
    """Convert ``a`` to ``ref``'s namespace, device and floating dtype; shapes must match."""
    a = to_array(a, name)
    if array_namespace(a) is not xp:
        a = xp.asarray(a, device=device(ref))
    if tuple(a.shape) != tuple(ref.shape):
        raise ValueError(
            f"{name} must have the shape of {ref_name}, {tuple(ref.shape)}; got {tuple(a.shape)}"
        )
    if xp.isdtype(a.dtype, "bool") or xp.isdtype(a.dtype, "complex floating"):
        raise TypeError(f"{name} must have a real dtype, got {a.dtype}")
    return cast(xp, a, ref.dtype)


def mask_like(where: Any, ref: Any, xp: Any) -> Any:
    """Validate a boolean mask and broadcast it to ``ref``'s shape."""
    where = to_array(where, "where")
    if array_namespace(where) is not xp:
        where = xp.asarray(where, device=device(ref))
    if not xp.isdtype(where.dtype, "bool"):
        raise TypeError(f"where must be a boolean mask, got dtype {where.dtype}")
    try:
        return xp.broadcast_to(where, tuple(ref.shape))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(
            f"where must broadcast to the shape of x, {tuple(ref.shape)}; got {tuple(where.shape)}"
        ) from exc


def normalize_axis(axis: int, ndim: int, name: str = "axis", array: str = "x") -> int:
    """Return ``axis`` as a non-negative index into an array of ``ndim`` dimensions."""
    if ndim == 0:
        raise ValueError(f"{array} must have at least one dimension to apply {name}={axis}; got a 0-d array")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for an array of {ndim} dimensions; got {axis}")
    return axis % ndim


def check_int(value: Any, name: str) -> int:
    """Return ``value`` as an ``int``; bools and non-integers raise ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    return int(value)


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite ``float`` that is > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    ok = v >= 0 if allow_zero else v > 0
    if not (ok and np.isfinite(v)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}; got {value!r}")
    return v


def check_weight(w: Any, name: str) -> Any:
    """Validate a weight array: real, finite and >= 0 (checked in its own namespace)."""
    w = to_array(w, name)
    wxp = array_namespace(w)
    if not (wxp.isdtype(w.dtype, "real floating") or wxp.isdtype(w.dtype, "integral")):
        raise TypeError(f"{name} must be a real array of non-negative weights; got dtype {w.dtype}")
    wf = wxp.astype(w, wxp.float64)
    if not bool(wxp.all(wxp.isfinite(wf) & (wf >= 0))):
        raise ValueError(f"{name} must be finite and >= 0")
    return w


def check_choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``options``, else raise ``ValueError`` listing them."""
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def is_traced(*arrays: Any) -> bool:
    """Whether the values of these arrays are out of Python's reach: JAX tracers (``jit``,
    ``grad``, ``vmap``), or torch tensors while ``torch.compile`` traces or under
    ``torch.func`` transforms.

    Code that branches on values (``if bool(xp.any(...))``) takes the branch-free general
    path when this is True, so it traces; validation that needs values is skipped.
    Libraries are looked up in ``sys.modules`` only: nothing is imported here.
    """
    jax = sys.modules.get("jax")
    if jax is not None:
        tracer = getattr(getattr(jax, "core", None), "Tracer", None)
        if tracer is not None and any(isinstance(a, tracer) for a in arrays):
            return True
    torch = sys.modules.get("torch")
    if torch is not None and any(isinstance(a, torch.Tensor) for a in arrays):
        compiler = getattr(torch, "compiler", None)
        if compiler is not None and compiler.is_compiling():
            return True
        functorch = getattr(torch._C, "_functorch", None)
        wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None)
        if wrapped is not None and any(isinstance(a, torch.Tensor) and wrapped(a) for a in arrays):
            return True
        fake = getattr(getattr(torch, "_subclasses", None), "FakeTensor", None)
        if fake is not None and any(isinstance(a, fake) for a in arrays):
            return True
    return False


#: set by :func:`values_checked`: value checks are skipped (the caller ran them on these inputs already)
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("gradkit_values_checked", default=False)


def values_hidden(*arrays: Any) -> bool:
    """Whether value checks (NaN targets, label ranges, domains) are skipped for these arrays: their
    values are out of reach (:func:`is_traced`), they are on PyTorch's ``meta`` device (shapes and dtypes
    only, no data), or the caller checked them already (:func:`values_checked`).

    Only checks that need the values on the host ask this; branches that merely pick a faster
    formulation ask :func:`branch_free`, so that a ``meta`` tensor runs exactly the device code a CUDA
    tensor runs, and a host read added there fails the meta-device tests.
    """
    if is_traced(*arrays) or _CHECKED.get():
        return True
    torch = sys.modules.get("torch")
    return torch is not None and any(isinstance(a, torch.Tensor) and a.is_meta for a in arrays)


@contextlib.contextmanager
def values_checked() -> Any:
    """Within this block :func:`values_hidden` is True: for a second pass over inputs the first pass has
    validated (the torch wrapper's backward re-runs a head on the tensors its forward checked), so a GPU
    tensor is read back to the host for its checks once per call, not once per pass."""
    token = _CHECKED.set(True)
    try:
        yield
    finally:
        _CHECKED.reset(token)


def branch_free(*arrays: Any) -> bool:
    """Whether code must not branch on the values of these arrays: True unless all are NumPy arrays.

    A branch on a value of a GPU tensor (``if bool(xp.any(...))``) copies it to the host and waits for
    the device; a traced array has no value to branch on. Code that would pick a faster formulation by
    such a test takes the general, branch-free one (``xp.where``) instead, which is exact for every input.
    """
    return not all(isinstance(a, (np.ndarray, np.generic)) for a in arrays)


def numpy_errstate(xp: Any, **kwargs: Any) -> contextlib.AbstractContextManager[Any]:
    """``np.errstate(**kwargs)`` for NumPy's namespace, a no-op for other libraries (whose arithmetic does
    not warn), so the code it guards also traces under ``torch.compile``, which cannot trace ``np.errstate``."""
    return np.errstate(**kwargs) if xp.__name__.endswith("numpy") else contextlib.nullcontext()


def moveaxis(xp: Any, a: Any, source: int, destination: int) -> Any:
    """``moveaxis`` through ``permute_dims`` (part of every Array API version)."""
    nd = a.ndim
    source, destination = source % nd, destination % nd
    if source == destination:
        return a
    order = [i for i in range(nd) if i != source]
    order.insert(destination, source)
    return xp.permute_dims(a, tuple(order))


def is_foreign(x: Any) -> bool:
    """Whether ``x`` is an Array API array of a library other than NumPy."""
    return is_array_api_obj(x) and not isinstance(x, (np.ndarray, np.generic))


def to_numpy(x: Any) -> Any:
    """A host NumPy copy of an array from any Array API library (GPU arrays are copied to the host);
    anything else is returned unchanged (lists, NumPy arrays, pandas frames)."""
    if not is_foreign(x):
        return x
    from array_api_compat import is_cupy_array, is_torch_array

    if is_torch_array(x):
        return x.detach().cpu().numpy()
    if is_cupy_array(x):
        return x.get()
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(x)


def from_numpy(a: np.ndarray, like: Any) -> Any:
    """``a`` in the library and on the device of ``like`` (a NumPy array stays as it is)."""
    if not is_foreign(like):
        return a
    xp = array_namespace(like)
    return xp.asarray(a, device=device(like))


#: what users of other libraries type, and gradkit's name for it
_OTHER_NAMES = {"dim": "axis", "beta": "temperature (1/beta)", "size_average": "reduction", "reduce": "reduction"}


@cache
def _init_parameters(cls: type[object]) -> tuple[frozenset[str], bool]:
    params = inspect.signature(cls.__init__).parameters
    return frozenset(params) - {"self"}, any(p.kind is p.VAR_KEYWORD for p in params.values())


def check_constructor_kwargs(cls: type, kwargs: dict[str, Any]) -> None:
    """Refuse keyword arguments ``cls`` does not take, naming ``cls`` (not a private base class
    whose ``__init__`` it inherits) and what gradkit calls the thing (``dim`` → ``axis``)."""
    accepted, open_ended = _init_parameters(cls)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown and not open_ended:
        hints = [f"{k!r} is called {_OTHER_NAMES[k]} here" for k in unknown if k in _OTHER_NAMES]
        raise TypeError(f"{cls.__name__}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"it accepts: {', '.join(sorted(accepted)) or 'none'}" + (f" ({'; '.join(hints)})" if hints else ""))


#: arrays a kernel has just allocated and nothing else holds yet: id -> array (gone with the array)
_FRESH: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


def mark_fresh(a: np.ndarray) -> np.ndarray:
    """Return ``a``, noted as a kernel's new output that :func:`scale_fresh` may scale in place once."""
    _FRESH[id(a)] = a
    return a


def scale_fresh(a: Any, scale: Any) -> Any:
    """``a * scale``: in place (no new array, no page faults on a large gradient) where ``a`` is a
    kernel's new output (:func:`mark_fresh`) seen here for the first time and the product keeps its
    dtype, so that the numbers are the same either way; else a new array."""
    if type(a) is np.ndarray and _FRESH.pop(id(a), None) is a and np.result_type(a, scale) == a.dtype:
        return np.multiply(a, scale, out=a)
    return a * scale

