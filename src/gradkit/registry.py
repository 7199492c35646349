"""Registries of functions by name (``gk.activations.get("softmax")``)."""

from __future__ import annotations

import inspect
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Maps registry names to classes; ``get`` builds an instance from keyword arguments."""

    def __init__(self, kind: str, base: type[T]) -> None:
        self._kind = kind
        self._base = base
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Add ``cls`` under ``cls.name`` (usable as a class decorator)."""
        name = getattr(cls, "name", "")
        if not name:
            raise ValueError(f"{cls.__name__} has no registry name")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str | T, **kwargs: Any) -> T:
        """Return an instance: ``get("softmax", axis=0)``; an instance passes through."""
        if isinstance(name, self._base):
            if kwargs:
                raise TypeError(f"keyword arguments go with a {self._kind} name, not with an instance; got {kwargs}")
            return name
        if not isinstance(name, str):
            raise TypeError(f"{self._kind} must be a name or an instance of {self._base.__name__}; got {type(name).__name__}")
        try:
            cls = self._classes[name]
        except KeyError:
            raise ValueError(f"unknown {self._kind} {name!r}; valid names: {', '.join(self.names())}") from None
        try:
            return cls(**kwargs)
        except TypeError:
            accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
            unknown = sorted(set(kwargs) - set(accepted))
            if not unknown:
                raise
            raise TypeError(
                f"{name} got unexpected argument(s) {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'none'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._classes
