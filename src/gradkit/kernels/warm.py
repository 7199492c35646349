"""Compiling the kernels ahead of their first use: ``python -m gradkit.kernels --warm``.

numba compiles a kernel the first time it runs with a new dtype (seconds for the softmax family, once:
the result is kept in numba's on-disk cache, see :mod:`gradkit.kernels._cache`). A fresh install
therefore pays compilation inside the first calls, the first epoch, the first timed run. :func:`warm`
runs every built-in activation (forward, VJP, JVP), every composable head's ``value_and_grad`` and a
``gradkit.nn`` training step on small and threaded-size NumPy inputs of each dtype, so that later runs
only load the kernels from the cache. ``make demo`` runs it first.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import available
from ._cache import DISPATCHERS
from ._exp import PARALLEL_MIN

__all__ = ["warm"]


def _activations(rng: np.random.Generator, shapes: list[tuple[int, int]], dtype: Any) -> None:
    from .. import activations

    for name in activations.builtin_names():
        act = activations.get(name)
        for shape in shapes:
            x, g = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
            act(x)
            act.vjp(x, g)
            act.jvp(x, g)


def _heads(rng: np.random.Generator, shapes: list[tuple[int, int]], dtype: Any) -> None:
    from .. import activations, compose, losses
    from ..check import random_target
    from ..losses.classification import ClassLoss

    for a in activations.builtin_names():
        for name in losses.builtin_names():
            try:
                head = compose(activations.get(a), losses.get(name))
            except ValueError:
                continue
            for shape in shapes:
                z = rng.standard_normal(shape).astype(dtype)
                head.value_and_grad(z, random_target(head.loss, shape, rng).astype(dtype))
                if isinstance(head.loss, ClassLoss):  # integer labels take kernels of their own
                    head.value_and_grad(z, random_target(head.loss, shape, rng, labels=True))


def _training_step(rng: np.random.Generator, dtype: Any) -> None:
    from .. import nn
    from ..composition import compose

    X, y = rng.standard_normal((64, 8)).astype(dtype), rng.integers(0, 3, 64)
    for optimizer in (nn.SGD(0.01, momentum=0.9), nn.Adam(1e-3), nn.AdamW(1e-3)):
        model = nn.Sequential([nn.Dense(8, 16, rng=0, dtype=dtype), "relu", nn.Dense(16, 3, rng=1, dtype=dtype)])
        nn.fit(model, X, y, loss=compose("softmax", "cross_entropy"), optimizer=optimizer, epochs=1, batch_size=32)


def warm(dtypes: tuple[str, ...] = ("float32", "float64")) -> dict[str, Any]:
    """Compile (or load from the cache) the kernels for NumPy input of ``dtypes``.

    Returns
    -------
    dict
        ``seconds`` it took, ``kernels`` (how many there are) and ``compiled`` (how many now hold at least
        one compiled signature); ``kernels`` is 0 where numba is not in use.

    Examples
    --------
    Skipped here: with nothing cached yet it takes a minute or two.

    >>> from gradkit.kernels.warm import warm
    >>> report = warm(("float64",))  # doctest: +SKIP
    >>> sorted(report)  # doctest: +SKIP
    ['compiled', 'kernels', 'seconds']
    """
    start = time.perf_counter()
    if not available():
        return {"seconds": 0.0, "kernels": 0, "compiled": 0}
    rng = np.random.default_rng(0)
    shapes = [(4, 7), (64, PARALLEL_MIN // 64)]  # serial and threaded variants
    for dtype in dtypes:
        _activations(rng, shapes, np.dtype(dtype))
        _heads(rng, shapes, np.dtype(dtype))
        _training_step(rng, np.dtype(dtype))
    compiled = sum(1 for d in DISPATCHERS if d.signatures)
    return {"seconds": time.perf_counter() - start, "kernels": len(DISPATCHERS), "compiled": compiled}
