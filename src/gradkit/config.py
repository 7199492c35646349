"""Global options, in the style of scikit-learn's ``set_config`` / ``config_context``.

``array_api_dispatch`` (default False): the :mod:`gradkit.sklearn` estimators accept
inputs from any Array API library (PyTorch, JAX, CuPy, array-api-strict, ...) and
return ``predict``/``predict_proba`` results in the input's library and on its
device. The functions of the core (activations, losses, ``compose``) always follow
their input's namespace; this switch only concerns the estimators.

>>> import gradkit as gk
>>> gk.get_config()["array_api_dispatch"]
False
>>> with gk.config_context(array_api_dispatch=True):
...     gk.get_config()["array_api_dispatch"]
True
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["config_context", "get_config", "set_config"]

_DEFAULTS: dict[str, Any] = {"array_api_dispatch": False}
_config: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("gradkit_config", default=_DEFAULTS)


def get_config() -> dict[str, Any]:
    """A copy of the current options."""
    return dict(_config.get())


def set_config(array_api_dispatch: bool | None = None) -> None:
    """Set options; ``None`` leaves an option unchanged."""
    new = get_config()
    if array_api_dispatch is not None:
        if not isinstance(array_api_dispatch, bool):
            raise TypeError(f"array_api_dispatch must be a bool; got {array_api_dispatch!r}")
        new["array_api_dispatch"] = array_api_dispatch
    _config.set(new)


@contextmanager
def config_context(*, array_api_dispatch: bool | None = None) -> Iterator[None]:
    """Set options within a ``with`` block, restoring them afterwards."""
    token = _config.set(get_config())
    try:
        set_config(array_api_dispatch=array_api_dispatch)
        yield
    finally:
        _config.reset(token)
