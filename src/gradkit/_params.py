"""An object's parameters are the parameters of its constructor, as in scikit-learn's ``get_params``.

Activations and losses take their identity from their ``__init__``: every named parameter of the
class's constructor is stored by it as an attribute of the same name (``self.beta = beta``, after
validation), and ``get_params()`` reads them back, in the signature's order. ``repr``, ``==``,
``hash``, the registries' rebuilds (``gk.activations.get("my_act", beta=2.0)``) and checkpoints use
those parameters, so a subclass that adds a constructor parameter needs no other code for it.

* ``*args`` cannot be parameters (they have no names): a constructor taking them is refused with
  ``TypeError``, as scikit-learn refuses it; ``**kwargs`` is not read.
* A deprecated alias added by :func:`gradkit._rng.seed_alias` (``seed=``) is not a parameter.
* A constructor parameter with no attribute of its name raises ``TypeError`` naming the class and
  the parameter when the parameters are read: never a silent loss. A class that keeps a parameter
  under another name overrides ``get_params`` (as :func:`gradkit.custom_activation`'s class does).
* Values that cannot be hashed are compared and hashed through :func:`param_key`: NumPy arrays (and
  arrays of other libraries that NumPy can read) by their shape and values, lists and tuples item by
  item, dicts and sets by their items; anything else unhashable by identity.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Hashable
from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj

from ._rng import _DEPRECATED

__all__ = ["Parametrized", "identity_key", "param_key", "param_names", "params_repr", "read_params"]


def param_names(cls: type) -> tuple[str, ...]:
    """The names of ``cls``'s constructor parameters, in order (``self``, ``**kwargs`` and deprecated
    aliases left out); ``TypeError`` naming ``cls`` if the constructor takes ``*args``."""
    return _param_names(cls)


@functools.cache
def _param_names(cls: type) -> tuple[str, ...]:
    init = cls.__init__  # type: ignore[misc]  # an unbound function
    if init is object.__init__:
        return ()
    try:
        params = list(inspect.signature(init).parameters.values())[1:]  # without self
    except (TypeError, ValueError):  # a constructor written in C, without a signature
        return ()
    names = []
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            raise TypeError(
                f"{cls.__qualname__}.__init__ takes *{p.name}: gradkit reads an object's parameters from the named "
                "parameters of its constructor (as scikit-learn's get_params does), and *args have no names. "
                "Name each parameter instead"
            )
        if p.kind is not p.VAR_KEYWORD and p.default is not _DEPRECATED:
            names.append(p.name)
    return tuple(names)


def read_params(obj: Any, deep: bool = True) -> dict[str, Any]:
    """``{name: getattr(obj, name)}`` for each of :func:`param_names`; with ``deep``, a value that has
    ``get_params`` itself also gives its parameters as ``name__key`` entries (scikit-learn's convention)."""
    if not isinstance(deep, bool):
        raise TypeError(f"deep must be a bool; got {deep!r} ({type(deep).__name__})")
    cls = type(obj)
    out: dict[str, Any] = {}
    for name in param_names(cls):
        try:
            out[name] = getattr(obj, name)
        except AttributeError:
            raise TypeError(
                f"{cls.__qualname__} takes the constructor parameter {name!r} but has no attribute {name!r}: gradkit "
                f"reads an object's parameters from attributes named like its constructor's parameters (its repr, "
                f"==, hash, registry rebuilds and checkpoints use them). Store it in __init__ as "
                f"self.{name} = {name}, or override get_params()"
            ) from None
    if deep:
        for name, value in list(out.items()):
            if hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", inner) for key, inner in value.get_params().items())
    return out


def param_key(value: Any) -> Hashable:
    """A hashable stand-in for a parameter's value: equal for equal values (see the module docstring)."""
    if value is None or isinstance(value, (str, bytes, bool, int, float, complex)):
        return value
    if isinstance(value, np.ndarray) or is_array_api_obj(value):
        try:
            a = np.asarray(value)
        except (TypeError, ValueError, RuntimeError):  # on a GPU, or part of an autograd graph
            return ("object", id(value))
        return ("array", a.shape, _nested(a.tolist()))
    if isinstance(value, (list, tuple)):
        return ("sequence", tuple(param_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((k, param_key(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(param_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return value


def identity_key(obj: Any) -> tuple[Any, ...]:
    """What ``==`` and ``hash`` compare: the type and :func:`param_key` of every parameter."""
    return (type(obj), tuple((k, param_key(v)) for k, v in obj.get_params(deep=False).items()))


def params_repr(obj: Any) -> str:
    """``ClassName(a=1, b='x')`` from ``obj.get_params(deep=False)``; NumPy arrays as nested tuples."""
    args = ", ".join(f"{k}={_shown(v)}" for k, v in obj.get_params(deep=False).items())
    return f"{type(obj).__name__}({args})"


def _shown(value: Any) -> str:
    return repr(_nested(value.tolist())) if isinstance(value, np.ndarray) else repr(value)


def _nested(value: Any) -> Any:
    """``ndarray.tolist()``'s nested lists as nested tuples (hashable and printable)."""
    return tuple(_nested(v) for v in value) if isinstance(value, list) else value


class Parametrized:
    """Identity from the constructor, for :class:`~gradkit.Activation` and :class:`~gradkit.losses.Loss`:
    :meth:`get_params`, and ``repr``, ``==`` and ``hash`` made of it."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Return the constructor's parameters: ``{name: value}`` in the signature's order.

        Every named parameter of the class's ``__init__`` is read from the attribute of the
        same name, as in scikit-learn: a subclass stores each constructor argument as
        ``self.<name>`` (validated) and needs no other code for it. ``repr``, ``==``, ``hash``,
        the registries' ``get`` (rebuilding a registered instance with some arguments changed)
        and checkpoints (:func:`gradkit.nn.save`) all use these; arrays (a loss's ``weight``)
        compare and hash by their shape and values.

        Parameters
        ----------
        deep : bool, default True
            Also list the parameters of values that have ``get_params`` themselves, as
            ``name__key`` entries (scikit-learn's convention; no built-in has such values).

        Returns
        -------
        dict of str to object

        Raises
        ------
        TypeError
            A constructor parameter has no attribute of its name (store it as
            ``self.<name>``, or override ``get_params``), the constructor takes ``*args``, or
            ``deep`` is not a bool.

        Examples
        --------
        >>> import gradkit as gk
        >>> gk.Softplus(beta=2.0).get_params()
        {'beta': 2.0, 'axis': -1}
        >>> gk.HuberLoss(delta=2.0).get_params()
        {'delta': 2.0, 'reduction': 'mean'}
        """
        return read_params(self, deep)

    def __repr__(self) -> str:
        return params_repr(self)

    def __eq__(self, other: object) -> bool:
        return self is other or (type(self) is type(other) and identity_key(self) == identity_key(other))

    def __hash__(self) -> int:
        return hash(identity_key(self))
