"""The one summary line the optimizer benchmarks print: minima as the headline, medians beside, ratio to the
pre-396b50e step (the in-place step before the all-or-nothing guarantee)."""

from __future__ import annotations

import statistics


def print_minima(label: str, tables: dict[str, dict[str, list[float]]], unit: str = "s", fmt: str = ".3f") -> None:
    """One line per table (``{"wall": {tag: times}, "cpu": ...}``), each contender against ``pre-396b50e``."""
    for what, table in tables.items():
        base = min(table["pre-396b50e"])
        print(f"{label:<5}{what:<5}" + "  ".join(
            f"{tag} min {min(t):{fmt}} {unit} (median {statistics.median(t):{fmt}}, {min(t) / base:.3f}x pre)"
            for tag, t in table.items()), flush=True)
