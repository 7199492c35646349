"""Helpers shared by the benchmarks: the one summary line the optimizer benchmarks print (minima as the headline,
medians beside, ratio to the pre-396b50e step, the in-place step before the all-or-nothing guarantee), and a
module of gradkit loaded as it was at another git revision (to time old and new code in one process)."""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_at_revision(rev: str, relpath: str, name: str, tmp: Path) -> ModuleType:
    """The module at ``relpath`` (e.g. ``src/gradkit/nn/optim.py``) as it is at git revision ``rev``, imported
    under ``name`` from a copy in ``tmp`` (a name inside its package, so its relative imports resolve)."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{relpath}"],
                          check=True, capture_output=True, text=True).stdout
    path = tmp / f"{name.rpartition('.')[2]}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def print_minima(label: str, tables: dict[str, dict[str, list[float]]], unit: str = "s", fmt: str = ".3f") -> None:
    """One line per table (``{"wall": {tag: times}, "cpu": ...}``), each contender against ``pre-396b50e``."""
    for what, table in tables.items():
        base = min(table["pre-396b50e"])
        print(f"{label:<5}{what:<5}" + "  ".join(
            f"{tag} min {min(t):{fmt}} {unit} (median {statistics.median(t):{fmt}}, {min(t) / base:.3f}x pre)"
            for tag, t in table.items()), flush=True)


def alternate_and_print(label: str, fns: dict[str, Callable[[], object]], rounds: int, reps: int,
                        width: int = 7, ratio: str = ".2f") -> dict[str, list[float]]:
    """Warm every contender, time them in alternating rounds (``reps`` calls per sample, milliseconds), and
    print one line: each one's minimum, median and ratio of minima to the ``entmax`` package (else to
    ``portable``). Returns the samples."""
    for fn in fns.values():  # warm: compiled, allocator primed
        fn()
    runs: dict[str, list[float]] = {tag: [] for tag in fns}
    for _ in range(rounds):
        for tag, fn in fns.items():
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            runs[tag].append((time.perf_counter() - start) / reps * 1e3)
    ref = "entmax" if "entmax" in runs else "portable"
    base = min(runs[ref])
    print(label + "  ".join(
        f"{tag} min {min(r):{width}.2f} ms (median {statistics.median(r):{width}.2f}, {min(r) / base:5{ratio}}x {ref})"
        for tag, r in runs.items()), flush=True)
    return runs
