"""The top-level registry functions: ``gk.get``, ``gk.names``, ``gk.register``, ``gk.unregister``.

They serve both registries, activations (:mod:`gradkit.activations`) and losses
(:mod:`gradkit.losses`), whose own ``get``/``names``/``register``/``unregister`` are unchanged:

>>> import gradkit as gk
>>> gk.get("softmax", axis=0), gk.get("huber", delta=2.0)
(Softmax(axis=0, temperature=1.0), HuberLoss(delta=2.0, reduction='mean'))
>>> "relu" in gk.names() and "mse" in gk.names()
True

No built-in name is in both registries. A user's name registered in both (an activation
and a loss called ``"swish"``) is refused by :func:`get` and :func:`unregister`, which
then ask for the registry's own function.
"""

from __future__ import annotations

import difflib
from typing import Any

from . import activations, losses
from .base import Activation
from .losses.base import Loss
from .registry import Registry

__all__ = ["get", "names", "register", "unregister"]


def get(name: str | Activation | Loss, **params: Any) -> Activation | Loss:
    """Return the activation or the loss registered as ``name``, built with ``params``.

    Parameters
    ----------
    name : str, Activation or Loss
        A name of either registry (``"softmax"``, ``"cross_entropy"``); an instance passes
        through, as with :func:`gradkit.activations.get` and :func:`gradkit.losses.get`.
    **params
        Constructor arguments (``gk.get("softmax", axis=0)``).

    Returns
    -------
    Activation or Loss

    Raises
    ------
    ValueError
        ``name`` is in neither registry (the message names both and lists close matches),
        or in both (use ``gk.activations.get`` or ``gk.losses.get``).
    TypeError
        ``name`` is not a str, an Activation or a Loss; or ``params`` do not fit its constructor.

    Examples
    --------
    >>> import gradkit as gk
    >>> gk.get("leaky_relu", negative_slope=0.2)
    LeakyReLU(negative_slope=0.2, axis=-1)
    """
    if isinstance(name, Activation):
        return activations.get(name, **params)
    if isinstance(name, Loss):
        return losses.get(name, **params)
    if not isinstance(name, str):
        raise TypeError(f"name must be a registry name (str), an Activation or a Loss; got {type(name).__name__}")
    registry = _owner(name, "get")
    if registry is None:
        close = difflib.get_close_matches(name, names(), n=3, cutoff=0.6)
        hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
        raise ValueError(
            f"unknown name {name!r}: it is neither an activation (gk.activations.names()) nor a loss "
            f"(gk.losses.names()){hint}. A custom one must be registered in this process first, with "
            "gk.activations.register or gk.losses.register"
        )
    return registry.get(name, **params)


def names() -> list[str]:
    """Every name :func:`get` accepts: the activations' and the losses' names in one sorted list.

    Per registry: :func:`gradkit.activations.names` and :func:`gradkit.losses.names`.

    Returns
    -------
    list of str
    """
    return sorted(set(activations.names()) | set(losses.names()))


def register(name: Any, factory: Any = None, *, replace: bool = False) -> Any:
    """Register an activation or a loss: the kind of ``factory`` decides the registry.

    An :class:`~gradkit.Activation` subclass or instance goes to :func:`gradkit.activations.register`,
    a :class:`~gradkit.Loss` subclass or instance to :func:`gradkit.losses.register`, with the same
    arguments and rules (a class alone, ``@gk.register``, registers it under its ``name``;
    ``@gk.register("name")`` decorates). A factory function builds one kind or the other only
    when called, so it goes to the registry's own ``register``.

    Parameters
    ----------
    name : str, or a class
        The registry name, or a class to register under its ``name``.
    factory : class or instance, optional
        What ``get(name)`` builds from.
    replace : bool, default False
        Allow replacing a user's name registered before.

    Returns
    -------
    object
        ``factory`` (or the class), as the registries' ``register`` returns it.

    Raises
    ------
    TypeError
        ``factory`` is neither an activation nor a loss (class or instance).
    ValueError
        As for the registries: the name is built in, taken, or not the object's own ``name``.

    Examples
    --------
    >>> import gradkit as gk
    >>> @gk.register
    ... class Cube(gk.ElementwiseActivation):
    ...     name = "cube_doc"
    ...     def compute_value(self, xp, x):
    ...         return x**3
    ...     def compute_derivative(self, xp, x, y):
    ...         return 3 * x**2
    >>> gk.get("cube_doc")
    Cube(axis=-1)
    >>> gk.unregister("cube_doc")
    """
    if factory is None and not isinstance(name, type):
        if isinstance(name, str):
            return lambda f: register(name, f, replace=replace)
        raise TypeError(f"name must be a str or a class; got {type(name).__name__}")
    target = name if factory is None else factory
    return _kind_of(target).register(name, factory, replace=replace)


def unregister(name: str) -> None:
    """Remove a user-registered ``name`` from the registry that holds it (built-in names stay).

    Raises
    ------
    ValueError
        No user's activation or loss has that name, it is built in, or it is in both
        registries (use ``gk.activations.unregister`` or ``gk.losses.unregister``).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    registry = _owner(name, "unregister")
    if registry is None:
        raise ValueError(f"no activation or loss named {name!r} is registered (looked in gk.activations and gk.losses)")
    registry.unregister(name)


def _owner(name: str, verb: str) -> Registry[Any] | None:
    """The registry holding ``name`` (None if neither does); ``ValueError`` if both do."""
    in_act, in_loss = name in activations.names(), name in losses.names()
    if in_act and in_loss:
        raise ValueError(f"{name!r} is both an activation and a loss: use gk.activations.{verb}({name!r}) or "
                         f"gk.losses.{verb}({name!r})")
    if in_act:
        return _registry(activations)
    return _registry(losses) if in_loss else None


def _kind_of(obj: Any) -> Registry[Any]:
    if isinstance(obj, Activation) or (isinstance(obj, type) and issubclass(obj, Activation)):
        return _registry(activations)
    if isinstance(obj, Loss) or (isinstance(obj, type) and issubclass(obj, Loss)):
        return _registry(losses)
    shown = obj.__name__ if isinstance(obj, type) else getattr(obj, "__qualname__", type(obj).__name__)
    raise TypeError(f"gk.register registers an Activation or a Loss (a subclass or an instance); got {shown}. A "
                    "factory function is registered with gk.activations.register or gk.losses.register")


def _registry(module: Any) -> Registry[Any]:
    return module._registry  # each registry module's own
