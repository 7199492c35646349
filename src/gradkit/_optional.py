"""Optional dependencies: one place that says which extra brings what.

Every feature that needs more than the core (numpy + array-api-compat) calls
:func:`require` before importing, so a bare ``pip install gradkit`` gives one
clear line instead of a ``ModuleNotFoundError`` traceback that blames a module
the user never asked for.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "require"]

#: extra name -> the importable modules it brings (what pyproject.toml installs for it)
EXTRAS: dict[str, tuple[str, ...]] = {
    "scipy": ("scipy",),
    "fast": ("numba",),
    "train": ("sklearn", "scipy", "tqdm", "matplotlib"),
    "dask": ("dask", "distributed"),
    "bench": ("scipy", "sklearn", "matplotlib"),  # PyTorch and JAX are optional peers
    "torch": ("torch",),
    "jax": ("jax",),
}


class MissingExtraError(ImportError):
    """A feature was used whose optional dependencies are not installed."""


def require(feature: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` can be imported.

    Parameters
    ----------
    feature : str
        What the user called, as they would name it (``"gradkit train"``, ``"gradkit.sklearn"``).
    extra : str
        The extra that brings it, a key of :data:`EXTRAS`.

    Examples
    --------
    >>> require("gradkit.sklearn", "train")  # installed here: returns quietly
    >>> require("gradkit.sklearn", "nope")
    Traceback (most recent call last):
    ...
    ValueError: extra must be one of bench, dask, fast, jax, scipy, torch, train; got 'nope'
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {', '.join(sorted(EXTRAS))}; got {extra!r}")
    missing = [m for m in EXTRAS[extra] if not _importable(m)]
    if missing:
        raise MissingExtraError(
            f"{feature} needs the {extra!r} extra: pip install \"gradkit[{extra}]\" (missing: {', '.join(missing)})"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails to import, or a broken __spec__
        return False
