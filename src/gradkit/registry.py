"""Registries of functions by name (``gk.activations.get("softmax")``).

A name maps to a *factory*: a class, a configured instance, or any callable returning
an instance. ``get(name, **kwargs)`` builds one:

* a class is called with ``kwargs``;
* an instance is returned as it is, or, with ``kwargs``, rebuilt with those arguments
  changed (``get("my_softmax", axis=0)``): its class called with its ``get_params()``
  updated by ``kwargs``;
* any other callable is called with ``kwargs`` and must return an instance whose
  ``name`` is the registered name.

Names are the keys that checkpoints, the command line and the scikit-learn estimators
use, so an object is registered under its own ``name``: ``register("swish", act)`` with
``act.name == "swish"``. Built-in names cannot be replaced, and a user's name only with
``replace=True``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

__all__ = ["Registry", "check_name"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(name: Any, what: str = "name") -> str:
    """Return ``name`` if it is identifier-like (ASCII letters, digits, ``_``; no leading digit)."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str; got {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} must be a non-empty identifier-like string (ASCII letters, digits and _, "
                         f"not starting with a digit); got {name!r}")
    return name


class Registry(Generic[T]):
    """Maps registry names to factories; ``get`` builds an instance from keyword arguments."""

    def __init__(self, kind: str, base: type[T]) -> None:
        self._kind = kind
        self._base = base
        self._factories: dict[str, Any] = {}
        self._builtin: frozenset[str] = frozenset()

    # -- registering -------------------------------------------------------------
    @overload
    def register(self, name: type[T], factory: None = None, *, replace: bool = False) -> type[T]: ...
    @overload
    def register(self, name: str, factory: None = None, *, replace: bool = False) -> Callable[[Any], Any]: ...
    @overload
    def register(self, name: str, factory: Any, *, replace: bool = False) -> Any: ...

    def register(self, name: Any, factory: Any = None, *, replace: bool = False) -> Any:
        """Make ``factory`` available as ``name``; returns ``factory``.

        Parameters
        ----------
        name : str, or a class
            The registry name: an identifier-like string, the key of checkpoints, the CLI
            (``--output``/``--loss``) and the estimators. A class alone registers it under
            its ``name`` attribute (usable as a class decorator: ``@register``), and a name
            alone returns a decorator (``@register("swish")``).
        factory : class, instance or callable
            A subclass of the registry's base class (called with ``get``'s keyword
            arguments), an instance of it (returned by ``get``), or a callable taking
            keyword arguments and returning an instance. A class or instance must carry
            ``name`` as its ``name``.
        replace : bool, default False
            Allow replacing a name registered before (never a built-in one). Registering
            the same factory again under its name is allowed without it.

        Raises
        ------
        TypeError
            ``factory`` is not callable, or not a class of the right kind.
        ValueError
            ``name`` is not identifier-like, is built in, is taken (without ``replace``),
            or differs from the class's or instance's own ``name``.
        """
        if not isinstance(replace, bool):
            raise TypeError(f"replace must be a bool; got {replace!r}")
        if factory is None:
            if isinstance(name, type):  # @register on a class: its own name
                return self.register(getattr(name, "name", "") or _unnamed(name), name, replace=replace)
            check_name(name)
            return lambda f: self.register(name, f, replace=replace)
        check_name(name)
        if isinstance(factory, self._base):
            own = factory.name  # type: ignore[attr-defined]
        elif isinstance(factory, type):
            if not issubclass(factory, self._base):
                raise TypeError(f"{self._kind} classes must subclass {self._base.__name__}; got {factory.__name__}")
            own = getattr(factory, "name", "")
        elif callable(factory):
            own = name
        else:
            raise TypeError(f"factory must be a subclass or an instance of {self._base.__name__}, or a callable "
                            f"returning one; got {type(factory).__name__}")
        if own != name:
            raise ValueError(f"a {self._kind} is registered under its own name (the key checkpoints and the CLI use): "
                             f"got name {name!r} for {_describe(factory)} named {own!r}")
        if name in self._builtin:
            raise ValueError(f"{name!r} is a built-in {self._kind} and cannot be replaced; pick another name")
        if name in self._factories and self._factories[name] is not factory and not replace:
            raise ValueError(f"a {self._kind} named {name!r} is registered already ({_describe(self._factories[name])}); "
                             "pass replace=True to replace it")
        self._factories[name] = factory
        return factory

    def unregister(self, name: str) -> None:
        """Remove a user-registered ``name`` (built-in names cannot be removed)."""
        check_name(name)
        if name in self._builtin:
            raise ValueError(f"{name!r} is a built-in {self._kind} and cannot be removed")
        if name not in self._factories:
            raise ValueError(f"no {self._kind} named {name!r} is registered")
        del self._factories[name]

    def seal(self) -> None:
        """Mark every name registered so far as built in (done once, by gradkit itself)."""
        self._builtin = frozenset(self._factories)

    # -- looking up ----------------------------------------------------------------
    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def builtin_names(self) -> list[str]:
        """The names gradkit itself registers, sorted."""
        return sorted(self._builtin)

    def live_names(self, *, builtin: bool = True) -> AbstractSet[str]:
        """A set-like view of the names (or only the user-registered ones) that follows later registrations."""
        return _LiveNames(self, builtin)

    def get(self, name: str | T, **kwargs: Any) -> T:
        """Return an instance: ``get("softmax", axis=0)``; an instance passes through."""
        if isinstance(name, self._base):
            if kwargs:
                raise TypeError(f"keyword arguments go with a {self._kind} name, not with an instance; got {kwargs}")
            return name
        if not isinstance(name, str):
            raise TypeError(f"{self._kind} must be a name or an instance of {self._base.__name__}; got {type(name).__name__}")
        try:
            factory = self._factories[name]
        except KeyError:
            module = {"activation": "activations", "loss": "losses"}.get(self._kind, self._kind)
            raise ValueError(
                f"unknown {self._kind} {name!r}; valid names: {', '.join(self.names())} (a custom {self._kind} "
                f"must be registered in this process first, with gk.{module}.register)"
            ) from None
        if isinstance(factory, self._base):
            return _rebuild(factory, kwargs, name) if kwargs else factory
        try:
            made = factory(**kwargs)
        except TypeError:
            accepted = _accepted(factory)
            unknown = sorted(set(kwargs) - set(accepted)) if accepted is not None else []
            if not unknown:
                raise
            raise TypeError(
                f"{name} got unexpected argument(s) {', '.join(unknown)}; it accepts: {', '.join(accepted or []) or 'none'}"
            ) from None
        if not isinstance(made, self._base):
            raise TypeError(f"the factory registered as {self._kind} {name!r} returned {type(made).__name__}, "
                            f"not an instance of {self._base.__name__}")
        if made.name != name:  # type: ignore[attr-defined]
            raise ValueError(f"the factory registered as {self._kind} {name!r} built one named "
                             f"{made.name!r}; it must carry its registry name")  # type: ignore[attr-defined]
        return made

    def __contains__(self, name: object) -> bool:
        return name in self._factories


class _LiveNames(AbstractSet[str]):
    """The registry's names as a set that follows registrations (scikit-learn's ``StrOptions`` reads it)."""

    def __init__(self, registry: Registry[Any], builtin: bool) -> None:
        self._registry = registry
        self._builtin = builtin

    def _current(self) -> list[str]:
        names = self._registry.names()
        return names if self._builtin else [n for n in names if n not in self._registry._builtin]

    def __contains__(self, name: object) -> bool:
        return name in self._current()

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    @classmethod
    def _from_iterable(cls, it: Iterable[str]) -> frozenset[str]:  # type: ignore[override]  # plain frozensets
        return frozenset(it)


def _unnamed(cls: type) -> str:
    raise ValueError(f"{cls.__name__} has no registry name: give it a class attribute name, or pass one")


def _describe(factory: Any) -> str:
    if isinstance(factory, type):
        return f"class {factory.__name__}"
    return repr(factory) if hasattr(factory, "name") else getattr(factory, "__qualname__", type(factory).__name__)


def _accepted(factory: Any) -> list[str] | None:
    try:  # a class: its __init__ (inspect.signature(cls) may show a base's __new__(*args, **kwargs))
        target = getattr(factory, "__init__") if isinstance(factory, type) else factory  # noqa: B009 (mypy: unsound)
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != "self" and p.kind is not p.VAR_POSITIONAL]


def _rebuild(instance: Any, kwargs: dict[str, Any], name: str) -> Any:
    """``instance`` with some constructor arguments changed (``get("my_act", axis=0)``)."""
    args = instance.get_params(deep=False)
    unknown = sorted(set(kwargs) - set(args))
    if unknown:
        raise TypeError(f"{name} got unexpected argument(s) {', '.join(unknown)}; it accepts: {', '.join(sorted(args))}")
    return type(instance)(**{**args, **kwargs})
