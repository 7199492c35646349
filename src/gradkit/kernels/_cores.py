"""How many threads gradkit's kernels may use (no numba needed here: the knobs work, and do nothing, without it).

:func:`requested_threads` is, first to last: the innermost :func:`threads` block of this thread (or
asyncio task), :func:`set_num_threads`, the ``GRADKIT_NUM_THREADS`` environment variable, or the cores
this process may run on (:func:`available_cores`: CPU affinity, capped by a cgroup CPU quota).
:func:`gradkit.kernels._threads.num_threads` caps it by numba's own thread count.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["available_cores", "cgroup_cpu_limit", "get_num_threads", "requested_threads", "set_num_threads",
           "threads"]

#: a cgroup file is a few bytes; more than this is not one (never read an unbounded file)
_CGROUP_READ_MAX = 4096


def _read_small(path: Path) -> str | None:
    """The text of a small regular file, or None (absent, unreadable, not a regular file, too long)."""
    try:
        if not path.is_file():  # not a FIFO or a device: reading one could block or never end
            return None
        with path.open("rb") as handle:
            data = handle.read(_CGROUP_READ_MAX + 1)
    except OSError:
        return None
    if len(data) > _CGROUP_READ_MAX:
        return None
    return data.decode("ascii", "replace")


def _parse_quota(quota: str, period: str) -> float | None:
    """CPUs allowed by a quota and a period in microseconds; None when unlimited or unreadable."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None  # "max" (v2: unlimited) or garbage
    if q <= 0 or p <= 0:  # v1: -1 is unlimited
        return None
    return q / p


def cgroup_cpu_limit(root: str | os.PathLike[str] = "/sys/fs/cgroup",
                     proc_cgroup: str | os.PathLike[str] = "/proc/self/cgroup") -> float | None:
    """CPUs a cgroup CPU quota allows this process (e.g. 1.5), or None where there is none (or it is unreadable).

    cgroup v2 (``cpu.max``: ``"<quota> <period>"`` or ``"max <period>"``) and v1 (``cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us`` of the ``cpu`` controller), at the process's own cgroup and at the mount's root.
    Files are read only if they are small regular files.
    """
    root = Path(root)
    own: dict[str, str] = {}  # controller ("" for v2) -> this process's cgroup path
    text = _read_small(Path(proc_cgroup)) or ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                own[controller] = parts[2].strip().lstrip("/")
    limits = []
    for rel in dict.fromkeys((own.get("", ""), "")):  # v2: the own cgroup, then the root
        v2 = _read_small(root / rel / "cpu.max") if ".." not in rel else None
        if v2 is not None and len(v2.split()) == 2:
            limits.append(_parse_quota(*v2.split()))
    for base in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for rel in dict.fromkeys((own.get("cpu", ""), "")):
            folder = root / base / rel
            if ".." in rel or not folder.is_dir():
                continue
            quota, period = _read_small(folder / "cpu.cfs_quota_us"), _read_small(folder / "cpu.cfs_period_us")
            if quota is not None and period is not None:
                limits.append(_parse_quota(quota.strip(), period.strip()))
    found = [x for x in limits if x is not None]
    return min(found) if found else None


@lru_cache(maxsize=1)
def _cgroup_cores() -> int | None:
    limit = cgroup_cpu_limit()
    return None if limit is None else max(1, math.ceil(limit))


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (or ``os.cpu_count()``), capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cores()
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def _check_count(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name}: expected an integer >= 1; got {n!r} of type {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name}: expected an integer >= 1; got {n}")
    return n


_chosen: int | None = None  # set_num_threads(); None: automatic
_inside: ContextVar[int | None] = ContextVar("gradkit_kernel_threads", default=None)


def _env_threads() -> int | None:
    raw = os.environ.get("GRADKIT_NUM_THREADS", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"GRADKIT_NUM_THREADS: expected an integer >= 1; got {raw!r}") from None
    return _check_count("GRADKIT_NUM_THREADS", n)


def set_num_threads(n: int | None) -> None:
    """Let gradkit's kernels use at most ``n`` threads from now on, in every thread (``None``: automatic).

    ``1`` runs every kernel on one thread (no other is woken): the choice where other libraries' thread
    pools (PyTorch, OpenBLAS, MKL) or other processes keep the cores busy. Automatic is the cores this
    process may run on (CPU affinity, cgroup quota). numba's own limit (``numba.set_num_threads``)
    still caps it.
    """
    global _chosen
    _chosen = None if n is None else _check_count("n", n)


def get_num_threads() -> int | None:
    """What :func:`set_num_threads` set (``None``: automatic)."""
    return _chosen


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Inside the block, in this thread (or asyncio task), kernels use at most ``n`` threads (``1``: one thread)."""
    token = _inside.set(_check_count("n", n))
    try:
        yield
    finally:
        _inside.reset(token)


def requested_threads() -> int:
    """The threads asked for now, in this thread: see the module's text. At least 1."""
    want = _inside.get()
    if want is None:
        want = _chosen
    if want is None:
        want = _env_threads()
    if want is None:
        want = available_cores()
    return want
