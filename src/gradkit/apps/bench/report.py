"""The results in words: the headline ratios, the markdown table of the benchmarks page, the plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..._io import atomic_open, save_png
from .harness import Case, _machine_line

__all__ = ['markdown', 'write_markdown']


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def _peer_of(case: dict[str, Any]) -> str | None:
    """The contender a case is compared with: its goal's, else torch / entmax / the first one not gradkit's."""
    goal = case.get("goal")
    if goal and goal.get("against"):
        return str(goal["against"])
    names = [k for k in case["ms"] if not k.startswith("gradkit")]
    for preferred in ("torch", "entmax"):
        if preferred in names:
            return preferred
    return names[0] if names and goal is None else None


def _headline(case: dict[str, Any]) -> tuple[str, str]:
    """(ratio of minima, ratio of medians) as text, for one case of the JSON document."""
    ms = case["ms"]
    goal = case.get("goal")
    if goal and goal.get("against") is None:  # steadiness
        worst = max((ms[s]["median"] / ms[s]["min"] for s in goal["subjects"] if s in ms), default=None)
        return f"median/min {_fmt(worst)}", ""
    peer = _peer_of(case)
    if peer is None or peer not in ms or "gradkit" not in ms:
        return "–", "–"
    return _fmt(ms["gradkit"]["min"] / ms[peer]["min"], 2), _fmt(ms["gradkit"]["median"] / ms[peer]["median"], 2)


def _cell(ms: dict[str, Any], name: str) -> str:
    if name not in ms:
        return "–"
    return f"{_fmt(ms[name]['min'])} ({_fmt(ms[name]['median'])})"


def markdown(doc: dict[str, Any]) -> str:
    """The results table (markdown) of a ``bench.json`` document: date, machine, every target met or missed."""
    lines = [(f"`gradkit bench`, {doc['date']}, {_machine_line(doc['machine'])}; float32, milliseconds: "
              f"minimum over {doc['settings']['rounds']} alternating rounds (median in brackets)."), "",
             ("| operation | size | gradkit | peer | peer time | gradkit / peer: minima (medians) | JAX jit "
              "| gradkit peak memory / output | peer peak memory | target | verdict |"),
             "|---|---|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for c in doc["cases"]:
        ms = c["ms"]
        goal = c.get("goal")
        steady = bool(goal) and goal.get("against") is None
        peer = None if steady else _peer_of(c)
        ratio, medians = _headline(c)
        mem = "–"
        if c.get("peak_mb") is not None:
            mem = f"{c['peak_mb']:.3g} MB" + (f" ({c['peak_mb'] / c['output_mb']:.2f}×)" if c.get("output_mb") else "")
        peer_mem = c.get("peer_peak_mb", {}).get(peer or "", None)
        ours = "gradkit alone" if steady else "gradkit"
        verdict = {"met": "met", "missed": "**missed**"}.get(c["verdict"], c["verdict"])
        lines.append(
            f"| {c['op']} | {c['size'].replace('x', '×')} | {_cell(ms, ours)} | {peer or '–'} | "
            f"{_cell(ms, peer) if peer else '–'} | {ratio}{f' ({medians})' if medians and medians != '–' else ''} | "
            f"{_cell(ms, 'jax jit')} | {mem} | {'–' if peer_mem is None else f'{peer_mem:.3g} MB'} | "
            f"{goal['text'] if goal else '–'} | {verdict} |")
    lines += ["", "All contenders, minimum (median) in ms:", ""]
    for c in doc["cases"]:
        cells = ", ".join(f"{k} {_cell(c['ms'], k)}" for k in c["ms"])
        note = f" — {c['note']}" if c.get("note") else ""
        lines.append(f"- {c['op']} {c['size'].replace('x', '×')}: {cells}{note}")
    return "\n".join(lines) + "\n"


def write_markdown(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`markdown` of ``doc`` to ``path`` (atomically); return the path."""
    target = Path(path)
    with atomic_open(target, "w") as handle:
        handle.write(markdown(doc))
    return target


def _plot(cases: list[Case], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    cases = [c for c in cases if c.ms]
    peers = sorted({k for c in cases for k in c.ms})
    palette = [*plt.get_cmap("tab10")(np.arange(10)), *plt.get_cmap("Dark2")(np.arange(8))]  # 18 distinct colours
    colour = {peer: palette[i % len(palette)] for i, peer in enumerate(peers)}
    fig, ax = plt.subplots(figsize=(max(9, 1.5 * len(cases)), 5.5))
    width = 0.85 / max(len(c.ms) for c in cases)
    for i, c in enumerate(cases):  # each group holds only the contenders it measured, centred on its tick
        present = [p for p in peers if p in c.ms]
        for k, peer in enumerate(present):
            offset = (k - (len(present) - 1) / 2) * width
            ax.bar(i + offset, c.ms[peer], width, color=colour[peer], label=peer)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    labels = ["\n".join(textwrap.wrap(c.op, 16)) + f"\n{c.size}" for c in cases]
    ax.set_xticks(np.arange(len(cases)), labels, fontsize=6)
    ax.set(ylabel="milliseconds (minimum over alternating rounds, log)", yscale="log",
           title="gradkit vs peers, measured in one run")
    ax.legend(unique.values(), unique.keys(), fontsize=6, ncol=3)
    fig.tight_layout()
    save_png(fig, path)
