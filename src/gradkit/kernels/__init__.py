"""Fast NumPy-only kernels (numba), used automatically for NumPy float32/float64 input.

The portable Array API code is the reference; every kernel here is tested equal
to it (float32 rtol 1e-5, float64 rtol 1e-12) including masks, ±inf and NaN.
Set ``GRADKIT_DISABLE_NUMBA=1`` to use the portable path everywhere (the test
suite runs once that way), or install without the ``fast`` extra.

Threads and processes: inputs of at least :data:`PARALLEL_MIN <gradkit.kernels._exp.PARALLEL_MIN>`
elements run on numba's threads, as many as :func:`set_num_threads` / :func:`threads` /
``GRADKIT_NUM_THREADS`` allow (automatically: the cores this process may run on, by its CPU affinity
and cgroup CPU quota, see :func:`available_cores`; ``threads(1)``: one thread) -- the same compiled
code whatever the count, so results do not depend on it; smaller ones run serially on the calling thread.
The ``fast`` extra installs the ``tbb`` wheel, and gradkit has numba use it (numba
prefers tbb but does not look in a virtual environment's ``lib/``): tbb is thread-
and fork-safe. A layer chosen with ``NUMBA_THREADING_LAYER`` is kept, and made safe:
under ``omp`` (GNU OpenMP, not fork-safe) a child forked after the parent started it
runs the serial kernels; under ``workqueue`` (not thread-safe) threads take turns in
the threaded kernels. Details in :mod:`gradkit.kernels._threads`.

The compiled kernels are cached on disk where numba caches (``__pycache__`` next to the source, or
``NUMBA_CACHE_DIR``), each file with a SHA-256 digest. A cache file that is truncated, corrupted, copied
over from another kernel, unreadable or not a regular file is deleted and its kernel recompiled, with one
``RuntimeWarning`` (``KernelCacheWarning``) naming the cache folder; the next run is clean again. Where no
cache folder is writable the kernels are compiled in memory, with one warning per process. Details in
:mod:`gradkit.kernels._cache`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import numpy as np

from ._cores import available_cores, get_num_threads, set_num_threads, threads

__all__ = ["available", "available_cores", "disabled", "enabled", "get_num_threads", "set_num_threads", "threads",
           "usable"]

#: nesting depth of disabled() in this thread (or asyncio task): a block in one thread
#: leaves the others on the kernels, and concurrent blocks cannot lose a count
_off: ContextVar[int] = ContextVar("gradkit_kernels_off", default=0)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Use the portable path inside the block, in this thread (the tests compare the two this way)."""
    token = _off.set(_off.get() + 1)
    try:
        yield
    finally:
        _off.reset(token)


def enabled() -> bool:
    """Whether the numba kernels are in use now, in this thread."""
    return _off.get() == 0 and available()


@lru_cache(maxsize=1)
def available() -> bool:
    """numba is importable and ``GRADKIT_DISABLE_NUMBA`` is unset (or 0)."""
    if os.environ.get("GRADKIT_DISABLE_NUMBA", "").strip() not in ("", "0"):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def usable(xp: Any, *arrays: Any) -> bool:
    """True when the kernels can take these arrays: NumPy, float32 or float64, same dtype, non-empty."""
    # the namespace first: torch code under torch.compile never reaches enabled() (dynamo cannot trace ContextVar)
    if not xp.__name__.endswith("numpy") or not enabled():
        return False
    first = arrays[0]
    if not isinstance(first, np.ndarray) or first.dtype not in (np.float32, np.float64) or first.size == 0:
        return False
    return all(a is None or (isinstance(a, np.ndarray) and a.dtype in (first.dtype, np.bool_)) for a in arrays[1:])
