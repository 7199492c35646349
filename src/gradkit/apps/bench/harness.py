"""Timing without fooling oneself: contenders alternated round by round, minima and medians, peak memory,
what the machine is, the peers loaded when installed."""

from __future__ import annotations

import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gradkit

from ... import kernels

__all__ = ['Case', 'Goal', 'Timed', 'alternate', 'machine_info']


#: seconds of sleep before each timed contender (not in --quick): OpenBLAS's threads spin about 0.1 s
#: after a call, and the pools of PyTorch (OpenMP) and JAX (XLA) spin too; measured on 2 cores, gradkit's
#: Jacobian right after JAX took 44-391 ms without a pause and 28-54 ms with this one
PAUSE = 0.1


@dataclass(frozen=True)
class Timed:
    """A contender of :func:`alternate`: ``fn`` is timed; ``before`` (untimed) runs just ahead of it."""

    fn: Callable[[], Any]
    before: Callable[[], Any] | None = None


def alternate(contenders: dict[str, Callable[[], Any] | Timed], rounds: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter, pause: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call of each contender, over ``rounds`` rounds that run them in turn (A, B, C, A, B, C, ...).

    ``warmup`` untimed rounds first (compilation, caches, thread pools). Alternating spreads the load of a
    shared machine over every contender alike, so that the ratio of their minima compares the code, and
    a contender's median over its minimum shows how steady it is next to the others.

    Parameters
    ----------
    contenders : dict of str to callable or Timed
        Name to a callable taking no argument, or a :class:`Timed` (with an untimed ``before`` step).
    rounds : int
        Timed rounds, at least 1.
    warmup : int, default 1
        Untimed rounds before them, at least 0.
    clock : callable, default time.perf_counter
        Seconds, monotonic.
    pause : float, default 0
        Seconds to sleep before each contender (and its ``before`` step): the thread pools of the one
        before (OpenBLAS, OpenMP, XLA) stop spinning, and do not slow it down.

    Returns
    -------
    dict of str to list of float
        Per contender, its ``rounds`` samples in seconds, in the order they were taken.

    Examples
    --------
    >>> samples = alternate({"a": lambda: sum(range(100)), "b": Timed(lambda: None, before=lambda: 1)}, rounds=3)
    >>> sorted(samples), [len(s) for s in samples.values()]
    (['a', 'b'], [3, 3])
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected an integer >= 1; got {rounds!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected an integer >= 0; got {warmup!r}")
    if not contenders:
        raise ValueError("contenders: expected at least one; got none")
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or not 0 <= pause <= 60:
        raise ValueError(f"pause: expected seconds in [0, 60]; got {pause!r}")
    steps: dict[str, Timed] = {}
    for name, c in contenders.items():
        step = c if isinstance(c, Timed) else Timed(c)
        if not callable(step.fn) or (step.before is not None and not callable(step.before)):
            raise TypeError(f"contenders[{name!r}]: expected a callable or a Timed of callables; got {c!r}")
        steps[name] = step
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, step in steps.items():
            if pause:
                time.sleep(pause)
            if step.before is not None:
                step.before()
            t0 = clock()
            step.fn()
            t1 = clock()
            if r >= warmup:
                samples[name].append(t1 - t0)
    return samples


@dataclass(frozen=True)
class Goal:
    """A target: ``min(subject) / min(against) <= limit``, or (``against=None``) ``median / min <= limit`` of
    every subject (the worst one counts)."""

    limit: float
    against: str | None = None
    subjects: tuple[str, ...] = ("gradkit",)

    def text(self) -> str:
        if self.against is None:
            return f"median/min <= {self.limit:g}"
        return f"{self.subjects[0]} / {self.against} <= {self.limit:g}"


@dataclass
class Case:
    """One operation at one size: samples (ms) per contender, its goal, memory."""

    op: str
    size: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    goal: Goal | None = None
    peak_mb: float | None = None  # gradkit, tracemalloc
    peer_peak_mb: dict[str, float] = field(default_factory=dict)  # peak RSS of a fresh process
    output_mb: float | None = None
    note: str = ""
    judged: bool = True  # False in --quick runs: tiny sizes, nothing to judge

    @property
    def ms(self) -> dict[str, float]:
        """The minimum per contender, in milliseconds."""
        return {k: min(v) for k, v in self.samples.items() if v}

    def median(self, name: str) -> float | None:
        v = self.samples.get(name)
        return statistics.median(v) if v else None

    def ratio(self, a: str, b: str) -> float | None:
        """Ratio of the minima of ``a`` and ``b`` (None where either is missing)."""
        ms = self.ms
        return ms[a] / ms[b] if a in ms and b in ms and ms[b] > 0 else None

    def median_ratio(self, a: str, b: str) -> float | None:
        ma, mb = self.median(a), self.median(b)
        return ma / mb if ma is not None and mb else None

    def goal_value(self) -> float | None:
        """The number the goal is judged by (None: no goal, or a contender was not measured)."""
        if self.goal is None:
            return None
        if self.goal.against is not None:
            return self.ratio(self.goal.subjects[0], self.goal.against)
        ms = self.ms
        values = [statistics.median(self.samples[s]) / ms[s] for s in self.goal.subjects if s in ms and ms[s] > 0]
        return max(values) if values and len(values) == len(self.goal.subjects) else None

    def verdict(self) -> str:
        """``met``, ``missed``, ``not measured`` (a contender is absent), ``no target`` or ``not judged`` (quick)."""
        if self.goal is None:
            return "no target"
        if not self.judged:
            return "not judged"
        value = self.goal_value()
        if value is None:
            return "not measured"
        return "met" if value <= self.goal.limit else "missed"

    def to_json(self) -> dict[str, Any]:
        goal = None if self.goal is None else {"limit": self.goal.limit, "against": self.goal.against,
                                               "subjects": list(self.goal.subjects), "text": self.goal.text()}
        return {"op": self.op, "size": self.size, "goal": goal, "value": self.goal_value(), "verdict": self.verdict(),
                "ms": {k: {"min": min(v), "median": statistics.median(v), "samples": v}
                       for k, v in self.samples.items() if v},
                "peak_mb": self.peak_mb, "peer_peak_mb": self.peer_peak_mb, "output_mb": self.output_mb,
                "note": self.note}


_pause = PAUSE  # run() sets 0 for --quick


def set_pause(seconds: float) -> None:
    """The sleep before each timed contender from now on (0 for ``--quick``)."""
    global _pause
    _pause = seconds


def pause() -> float:
    """The sleep before each timed contender, in seconds."""
    return _pause


def _timed_case(case: Case, contenders: dict[str, Callable[[], Any] | Timed], rounds: int) -> Case:
    for name, seconds in alternate(contenders, rounds, pause=_pause).items():
        case.samples[name] = [1e3 * t for t in seconds]
    return case


def _peak_mb(fn: Callable[[], Any]) -> float:
    """Peak memory traced by tracemalloc during one call of ``fn``, above what was allocated before, in MiB."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return (tracemalloc.get_traced_memory()[1] - base) / 2**20
    finally:
        tracemalloc.stop()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", "rb") as handle:
            text = handle.read(1 << 16).decode("ascii", "replace")
        for line in text.splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch_threads: int | None = None) -> dict[str, Any]:
    """The machine and the software a run measured: CPU model, cores, versions, numba's threading layer."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(), "arch": platform.machine(), "os": platform.platform(terse=True),
        "cores": os.cpu_count(), "available_cores": kernels.available_cores(), "python": platform.python_version(),
        "gradkit": gradkit.__version__, "numpy": np.__version__,
    }
    for name in ("numba", "torch", "jax", "entmax", "scikit-learn", "scipy", "threadpoolctl"):
        info[name] = _version(name)
    info["torch_threads"] = torch_threads
    info["numba_layer"] = info["kernel_threads"] = None
    if kernels.available():
        from ...kernels import _threads

        info["numba_layer"], info["kernel_threads"] = _threads.layer(), _threads.num_threads()
    return info


def _machine_line(info: dict[str, Any]) -> str:
    parts = [f"{info['cpu']} ({info['arch']}), {info['available_cores']} of {info['cores']} cores usable",
             f"NumPy {info['numpy']}"]
    if info.get("numba"):
        parts.append(f"numba {info['numba']} (layer {info['numba_layer']}, {info['kernel_threads']} kernel threads)")
    if info.get("torch"):
        parts.append(f"PyTorch {info['torch']} ({info['torch_threads']} threads)")
    for key, label in (("jax", "JAX"), ("entmax", "entmax")):
        if info.get(key):
            parts.append(f"{label} {info[key]}")
    return ", ".join(parts)


def _torch(threads: int) -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _entmax() -> Any:
    try:
        import entmax  # type: ignore[import-untyped]
    except ImportError:
        return None
    return entmax


def _jax() -> Any:
    try:
        import jax

        jax.config.update("jax_platforms", "cpu")
        return jax
    except Exception:  # noqa: BLE001 - an optional peer
        return None
