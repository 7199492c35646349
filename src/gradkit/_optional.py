"""Optional dependencies: one place that says which extra brings what.

Every feature that needs more than the core (numpy + array-api-compat) calls
:func:`require` before importing, so a bare ``pip install gradkit`` gives one
clear line instead of a ``ModuleNotFoundError`` traceback that blames a module
the user never asked for.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shlex
from urllib.parse import unquote, urlparse

__all__ = ["EXTRAS", "MissingExtraError", "install_hint", "require"]

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
        raise MissingExtraError(f"{feature} needs the {extra!r} extra: {install_hint(extra)} (missing: {', '.join(missing)})")


def install_hint(extra: str) -> str:
    """The pip command that adds ``extra`` to gradkit as it was installed here.

    From a folder (a clone; ``-e`` where it was editable) or a wheel or sdist file, pip's own record
    (``direct_url.json``) names it; from a package index, or when nothing is recorded, the plain
    ``pip install "gradkit[extra]"``.
    """
    try:
        record = importlib.metadata.distribution("gradkit").read_text("direct_url.json")
        info = json.loads(record) if record else {}
    except (importlib.metadata.PackageNotFoundError, ValueError, OSError):
        info = {}
    url = urlparse(str(info.get("url", ""))) if isinstance(info, dict) else urlparse("")
    if url.scheme != "file":
        return f'pip install "gradkit[{extra}]"'
    target = unquote(url.path)
    editable = isinstance(info.get("dir_info"), dict) and info["dir_info"].get("editable")
    return f"pip install {'-e ' if editable else ''}{shlex.quote(f'{target}[{extra}]')}"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails to import, or a broken __spec__
        return False
