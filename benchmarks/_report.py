"""Helpers shared by the benchmarks: the one summary line the optimizer benchmarks print (minima as the headline,
medians beside, ratio to the pre-396b50e step, the in-place step before the all-or-nothing guarantee), and a
module of gradkit loaded as it was at another git revision (to time old and new code in one process)."""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
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
