"""Checking what a user's function returned (:func:`gradkit.custom_activation`, :func:`gradkit.custom_loss`).

A result is taken only as a plain array of the caller's library, of the expected shape and of
``x``'s dtype. Results of another type are converted where that cannot change a number, and
refused with a ``TypeError`` naming the function otherwise:

* ``numpy.matrix``: refused (its ``*`` is the matrix product, it is always 2-D, and its reductions
  keep two dimensions: any arithmetic gradkit did on it would follow other rules);
* a masked array (``numpy.ma.MaskedArray``): refused (its mask would be dropped, and the values
  under it used);
* another subclass of ``numpy.ndarray`` (``numpy.memmap``, a user's subclass), for NumPy ``x``: its
  plain ``numpy.ndarray`` view, the same values (``numpy.asarray``);
* a list or tuple, for NumPy ``x``: ``numpy.asarray(result)``, which must be an array of real numbers
  (no ragged, object, complex or bool result), cast to ``x``'s dtype (for float32 ``x``, Python floats
  are rounded to float32 once, the rounding a float32 result carries anyway); for other libraries,
  refused (return an array of ``x``'s library);
* a Python ``int`` or ``float`` where a 0-d result is due (an elementwise function on 0-d ``x``):
  an array of ``x``'s library and dtype; where an array of another shape is due, refused;
* a NumPy scalar (``numpy.float64(...)``), for NumPy ``x``: its 0-d array, then the shape check.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

__all__ = ["checked_result"]

#: the ndarray subclasses refused, and why
_REFUSED = (
    (np.ma.MaskedArray, "numpy.ma.MaskedArray",
     "its mask would be dropped and the values under it used; fill it first (result.filled(value))"),
    (np.matrix, "numpy.matrix", "a matrix's * is the matrix product and its shape rules differ"),
)


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(out: Any, xp: Any, ref: Any, shape: tuple[int, ...], who: str, fn: str, what: str) -> Any:
    """``out`` as an array where that is exact (see the module docstring); else ``out`` itself or a ``TypeError``."""
    numpy_ref = isinstance(ref, np.ndarray)
    if isinstance(out, np.ndarray) and type(out) is not np.ndarray:
        for cls, label, why in _REFUSED:
            if isinstance(out, cls):
                raise TypeError(f"{who}: {fn} returned {label}; return a plain numpy.ndarray ({why})")
        return np.asarray(out) if numpy_ref else out  # a plain view: the same values, ndarray's rules
    if isinstance(out, np.generic) and numpy_ref:
        return np.asarray(out)  # NumPy turns 0-d results into scalars
    if isinstance(out, (list, tuple)):
        if not numpy_ref:
            raise TypeError(f"{who}: {fn} returned {type(out).__name__}; it must return {what} as an array of x's "
                            f"library ({_type_name(ref)})")
        try:
            arr = np.asarray(out)
        except (TypeError, ValueError):
            arr = np.asarray(None)  # ragged: refused below
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{who}: {fn} returned a {type(out).__name__} that is not an array of real numbers "
                            f"(numpy.asarray gives dtype {arr.dtype}); return {what} as a numpy.ndarray of x's dtype")
        return arr.astype(ref.dtype, copy=False) if tuple(arr.shape) == shape else arr
    if isinstance(out, numbers.Real) and not isinstance(out, bool) and shape == ():
        return xp.asarray(out, dtype=ref.dtype, device=device(ref))
    return out


def checked_result(out: Any, xp: Any, ref: Any, shape: tuple[int, ...], who: str, fn: str, what: str) -> Any:
    """``out`` if it is (or converts exactly to) an array of ``ref``'s library, dtype and ``shape``; else a
    ``TypeError`` (type, dtype) or ``ValueError`` (shape) naming ``who``'s function ``fn``."""
    out = _plain(out, xp, ref, shape, who, fn, what)
    try:
        ns = array_namespace(out)
    except TypeError:
        raise TypeError(f"{who}: {fn} returned {type(out).__name__}, not an array; it must return an array of "
                        f"shape {shape} ({what}) of x's library ({_type_name(ref)})") from None
    if ns is not xp:
        raise TypeError(f"{who}: {fn} returned a {_type_name(out)} for x of type {_type_name(ref)}; return an "
                        "array of x's library")
    if tuple(out.shape) != shape:
        raise ValueError(f"{who}: {fn} returned shape {tuple(out.shape)}; expected {shape} ({what})")
    if out.dtype != ref.dtype:
        raise TypeError(f"{who}: {fn} returned dtype {out.dtype} for x of dtype {ref.dtype}; return x's dtype")
    return out
