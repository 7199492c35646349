"""The ``rng`` argument, as SPEC 7 (scientific Python) defines it, and the deprecated ``seed=`` alias.

Everything in gradkit that draws random numbers takes ``rng``:

* ``None``: a new :class:`numpy.random.Generator` with fresh, unpredictable entropy from the OS;
* an int (>= 0): ``numpy.random.default_rng(rng)``, so ``rng=0`` gives the values ``seed=0`` gave;
* a :class:`numpy.random.Generator`: used as it is (not copied): drawing advances it;
* a :class:`numpy.random.SeedSequence` or :class:`numpy.random.BitGenerator`, or a sequence of
  ints >= 0: wrapped by ``numpy.random.default_rng``, as SPEC 7 says.

The legacy :class:`numpy.random.RandomState` (and the ``numpy.random`` module, its global state)
is refused with ``TypeError``, as ``numpy.random.default_rng`` refuses it: SPEC 7 moves away from
it and from global seeding. scikit-learn's estimators (:mod:`gradkit.sklearn`) keep their own
``random_state`` convention.

``seed=`` still works where it worked before, as an alias of ``rng=`` that emits a
``DeprecationWarning`` whose message starts with ``"use rng="`` and names the callable; passing both
is a ``TypeError``.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

__all__ = ["RNGLike", "as_generator", "check_rng", "root_seed", "seed_alias"]

#: what an ``rng`` argument may be (see the module docstring)
RNGLike = Any

F = TypeVar("F", bound=Callable[..., Any])

_ACCEPTS = ("None, an int >= 0, a numpy.random.Generator (or a SeedSequence, a BitGenerator, "
            "a sequence of ints >= 0)")


class _Deprecated:
    """The default of the deprecated ``seed`` parameter in the signatures gradkit shows."""

    def __repr__(self) -> str:
        return "<deprecated: use rng=>"


_DEPRECATED = _Deprecated()


def check_rng(rng: RNGLike, name: str = "rng") -> RNGLike:
    """``rng`` itself when it is a valid SPEC 7 ``rng`` value (ints made Python ints); else
    ``TypeError`` / ``ValueError`` naming ``name``, what it accepts and what it got."""
    if rng is None or isinstance(rng, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator)):
        return rng
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"{name} must be {_ACCEPTS}; got the bool {rng!r}")
    if isinstance(rng, numbers.Integral):
        if rng < 0:
            raise ValueError(f"{name} must be an int >= 0 (a seed), None or a numpy.random.Generator; got {rng!r}")
        return int(rng)
    if isinstance(rng, np.random.RandomState) or rng is np.random:
        what = "the numpy.random module (its global RandomState)" if rng is np.random else "a numpy.random.RandomState"
        raise TypeError(f"{name} must be {_ACCEPTS}; got {what}: the legacy RandomState is not accepted "
                        "(SPEC 7, like numpy.random.default_rng); pass np.random.default_rng(seed) or the seed itself")
    if isinstance(rng, (list, tuple)) or (isinstance(rng, np.ndarray) and rng.ndim == 1):
        items = list(rng)
        if items and all(isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_)) for i in items):
            if min(items) < 0:
                raise ValueError(f"{name}: a sequence of seeds must hold ints >= 0; got {rng!r}")
            return tuple(int(i) for i in items)  # hashable: an activation's params are hashed
    raise TypeError(f"{name} must be {_ACCEPTS}; got {type(rng).__name__} {_short(rng)}")


def as_generator(rng: RNGLike, name: str = "rng") -> np.random.Generator:
    """The :class:`numpy.random.Generator` that SPEC 7 makes of ``rng`` (a Generator is returned as is)."""
    rng = check_rng(rng, name)
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def root_seed(rng: RNGLike, name: str = "rng") -> int:
    """An int that seeds several streams at once (``default_rng([root, epoch, block])``): an int
    ``rng`` itself (so ``rng=7`` gives what ``seed=7`` gave), else one draw from
    :func:`as_generator` (``None``: fresh entropy; a Generator: advanced by one draw)."""
    rng = check_rng(rng, name)
    if isinstance(rng, int):
        return rng
    return int(as_generator(rng, name).integers(0, 2**63))


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def seed_alias(owner: str) -> Callable[[F], F]:
    """Decorate a function (or ``__init__``) that takes ``rng`` so that it also takes the deprecated
    ``seed=`` keyword: ``seed=x`` warns (``DeprecationWarning``, "use rng= ...", naming ``owner``)
    and becomes ``rng=x``; ``seed=`` together with ``rng`` (by keyword or position) is a ``TypeError``.

    The signature that :func:`inspect.signature` reports lists ``seed`` (keyword-only, last), so
    code that checks keyword arguments against it (``gradkit.activations.get``) lets it through.
    """

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        if "rng" not in sig.parameters or "seed" in sig.parameters:
            raise TypeError(f"seed_alias: {fn.__qualname__} must take rng and not seed")
        params = list(sig.parameters.values())
        var_kw = [p for p in params if p.kind is p.VAR_KEYWORD]
        seed = inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=_DEPRECATED)
        shown = [p for p in params if p.kind is not p.VAR_KEYWORD] + [seed] + var_kw

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if "seed" in kwargs:
                value = kwargs.pop("seed")
                try:
                    passed_rng = "rng" in sig.bind_partial(*args, **kwargs).arguments
                except TypeError:  # a wrong call: let the function itself say what is wrong
                    passed_rng = "rng" in kwargs
                if passed_rng:
                    raise TypeError(f"{owner}() got both rng= and seed=; seed= is the deprecated name of rng=: "
                                    "pass rng= only")
                warnings.warn(f"use rng= instead of seed= in {owner}(): seed= is deprecated and will be removed "
                              f"(rng={value!r} gives the same results as seed={value!r})",
                              DeprecationWarning, stacklevel=2)
                kwargs["rng"] = value
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=shown)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
