"""Which variant of a kernel may run now: threaded, or serial, by numba's threading layer.

numba runs ``prange`` loops on one of three threading layers, picked once per process
on the first parallel call (or the first compilation of a parallel function):

``tbb``
    thread- and fork-safe. numba prefers it, but cannot find the library of the ``tbb``
    wheel (the ``fast`` extra installs it) in a virtual environment, whose ``lib/`` is
    not on the loader's path; :func:`prefer_tbb` loads it by its path first.
``omp``
    thread-safe; with GNU OpenMP (Linux) not fork-safe: numba terminates a forked child
    that enters a parallel region after its parent started the layer ("fork() called
    from a process already using GNU OpenMP"). :func:`_after_fork_in_child` switches
    such a child to the serial kernels.
``workqueue``
    fork-safe, not thread-safe: two threads in parallel regions at once abort the
    process. gradkit's kernels enter it one thread at a time (a lock).

A layer named by the user (``NUMBA_THREADING_LAYER`` or ``numba.config.THREADING_LAYER``)
is kept; only the default choice is steered towards ``tbb``.

How many threads (:func:`num_threads`): a kernel large enough to thread runs its threaded code on
that many threads (numba's thread count lowered for the call; on one thread, no other is woken).
The number is, first to last: the innermost
``gradkit.kernels.threads(n)`` block of this thread, ``gradkit.kernels.set_num_threads(n)``,
``GRADKIT_NUM_THREADS``, or automatically the cores this process may run on
(:func:`available_cores`: its CPU affinity, capped by a cgroup CPU quota), never more than
numba's thread count in this thread (``numba.get_num_threads()``). numba sizes its pool once, at
import, by the CPU affinity: a cgroup CPU quota (containers) or an affinity set later would
otherwise oversubscribe the cores. A threaded call hands out its rows in about
:data:`CHUNKS_PER_THREAD` chunks per thread, taken dynamically, so that a thread whose core is busy
(another library's spinning pool, another process) takes fewer rows instead of holding up the call.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import numba as nb

from ._cores import requested_threads

__all__ = ["layer", "num_threads", "one_region_at_a_time", "prefer_tbb", "variant"]

#: layers that take concurrent parallel regions from several threads
_THREADSAFE = frozenset({"tbb", "omp"})
#: layer names under which numba may pick tbb (the others name omp or workqueue)
_MAY_PICK_TBB = frozenset({"default", "tbb", "safe", "threadsafe", "forksafe"})
#: the library numba checks for, by platform (numba.np.ufunc.parallel._check_tbb_version_compatible)
_TBB_LIBRARY = {"win32": "tbb12.dll", "darwin": "libtbb.12.dylib"}.get(sys.platform, "libtbb.so.12")

_layer: str | None = None  # numba's threading layer, once started
_serial_only = False  # a forked child whose parent's layer cannot be used after fork()
_start_lock = threading.Lock()  # starting the layer
_region_lock = threading.Lock()  # workqueue: one parallel region at a time


def _started_layer() -> str | None:
    """numba's threading layer if it has been started, else None (starts nothing)."""
    try:
        return str(nb.threading_layer())
    except ValueError:
        return None


def prefer_tbb() -> str | None:
    """Load the ``tbb`` wheel's library by its path, so that numba finds it; return that path.

    Only while numba's layer is not started and the configured layer may be tbb (the
    default); a user's ``omp`` or ``workqueue`` stays. numba then loads the layer it
    prefers, tbb, if its version check passes, and falls back to omp/workqueue if not.
    """
    if _started_layer() is not None or str(getattr(nb.config, "THREADING_LAYER", "default")).lower() not in _MAY_PICK_TBB:
        return None
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("tbb")
    except (ImportError, PackageNotFoundError):
        return None
    for file in dist.files or ():
        if file.name == _TBB_LIBRARY:
            path = str(dist.locate_file(file))
            if os.path.isfile(path):
                import ctypes

                try:  # global, so that numba's tbbpool module binds to this copy
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    return None
                return path
    return None


def layer() -> str:
    """The threading layer in use, starting it (with tbb preferred) if it is not started yet."""
    global _layer
    if _layer is None:
        with _start_lock:
            if _layer is None:
                if _started_layer() is None:
                    prefer_tbb()
                    nb.get_num_threads()  # starts the layer, as numba's first parallel call would
                _layer = _started_layer()
    return _layer  # type: ignore[return-value]


def _fork_unsafe(name: str | None) -> bool:
    """Whether a forked child must not enter a parallel region of the parent's layer ``name``."""
    if name != "omp":
        return False  # not started (the child starts its own), tbb and workqueue handle fork
    omppool = sys.modules.get("numba.np.ufunc.omppool")
    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"  # Intel's OpenMP is fork-safe


def _after_fork_in_child() -> None:
    global _serial_only, _start_lock, _region_lock
    _start_lock, _region_lock = threading.Lock(), threading.Lock()  # another thread may have held one at fork()
    if _fork_unsafe(_started_layer()):
        _serial_only = True


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def one_region_at_a_time(threaded: Callable[..., Any]) -> Callable[..., Any]:
    """``threaded`` behind a lock shared by all kernels: workqueue takes one parallel region at a time.

    Waiting costs little: the region in progress already keeps every numba thread busy
    (measured on 2 cores: 6 threads took as long as with a serial fallback for the
    blocked calls), and the result does not depend on contention (the serial variant
    may differ from the threaded one in the last bit of float32 softmax).
    """

    def guarded(*args: Any) -> Any:
        with _region_lock:
            return threaded(*args)

    guarded.__name__ = guarded.__qualname__ = getattr(threaded, "__name__", "kernel") + "_guarded"
    return guarded


def num_threads() -> int:
    """The threads a kernel call may use now, in this thread (1: serial), starting the layer if need be.

    :func:`gradkit.kernels._cores.requested_threads`, capped by numba's thread count in this thread.
    """
    layer()  # before numba's first call, which would start a layer without tbb
    return max(1, min(requested_threads(), nb.get_num_threads()))


#: rows handed out in about this many chunks per thread, taken dynamically: a thread whose core is busy
#: (another library's spinning pool, another process) takes fewer, and the call is not held up by it;
#: 1 (or less) gives one equal share per thread (the slowest decides)
CHUNKS_PER_THREAD = 4


def _balanced(fn: Callable[..., Any], n: int) -> Callable[..., Any]:
    """``fn(rows, chunk, *args)``, a threaded row kernel (rows along the first of ``args``' first axis), on ``n``
    threads, its rows in chunks of ``chunk`` rows that the threads take one at a time.

    numba's thread count and chunk size are per calling thread; both are put back after the call.
    """
    per = max(CHUNKS_PER_THREAD, 1)

    def call(*args: Any) -> Any:
        rows = args[0].shape[0]
        chunk = max(1, -(-rows // (n * per)))
        before = nb.get_num_threads()
        if n != before:
            nb.set_num_threads(n)
        old_chunk = nb.set_parallel_chunksize(1)  # each chunk of rows is one loop iteration, taken when free
        try:
            return fn(rows, chunk, *args)
        finally:
            nb.set_parallel_chunksize(old_chunk)
            if n != before:
                nb.set_num_threads(before)

    call.__name__ = call.__qualname__ = getattr(fn, "__name__", "kernel") + "_balanced"
    call.inner, call.threads = fn, n  # type: ignore[attr-defined]
    return call


def variant(threaded: Callable[..., Any], serial: Callable[..., Any], guarded: Callable[..., Any]) -> Callable[..., Any]:
    """The variant of a kernel large enough to thread that is safe in this process and thread now.

    The threaded code on :func:`num_threads` threads, one included (see :func:`_balanced`); its one compiled row
    code runs on each chunk, so that results do not depend on the thread count. The serial variant alone where the
    parent's layer cannot be used after ``fork()``.
    """
    if _serial_only:
        return serial
    chosen = threaded if layer() in _THREADSAFE else guarded
    return _balanced(chosen, num_threads())
