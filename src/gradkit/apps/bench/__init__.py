"""``gradkit bench``: gradkit against its peers, each speed target judged as a ratio to the peers timed in the same run.

Method:

* every case runs its contenders in **alternating rounds** (A, B, C, A, B, C, ...; one untimed warm-up
  round first) in one process, so the load of a shared machine falls on each alike, with a pause of
  :data:`PAUSE` seconds before each, so that the thread pools of the one before (OpenBLAS, OpenMP, XLA
  spin-wait after their work) have gone to sleep;
* per contender the **minimum** and the **median** over the rounds are kept (all samples go to the JSON);
* the headline is the **ratio of minima** gradkit / peer, with the ratio of medians beside it; a case
  with a goal (e.g. ``gradkit / torch <= 0.8``) is marked **met** or **missed** by that ratio of minima;
* the contention cases time a kernel right after PyTorch and after OpenBLAS work, and their goal is
  steadiness: median / minimum <= 1.3;
* memory: gradkit's peak extra memory of one call by ``tracemalloc`` (NumPy arrays and Python objects),
  and the PyTorch-based peer's as the peak resident set size (``ru_maxrss``) of a fresh process during
  one call above its level with the inputs allocated and the operation warmed up on 8 rows -- a coarser
  measure (pages, the allocator's caching), reported as such.

Results are printed, written as ``bench.json`` (samples, date, machine), ``bench.md`` (the table the
README and docs/benchmarks.md embed) and ``bench.png`` (a bar chart of the minima).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._io import atomic_open
from . import harness
from .cases import (
    _PEERS,
    MLP_ROUNDS,
    SHAPES,
    SPARSE_SHAPES,
    _contention_case,
    _fy_case,
    _jacobian_case,
    _mlp_case,
    _nll_case,
    _peer_peak_mb,
    _sklearn_estimator_case,
    _softmax_case,
    _sparse_case,
)
from .harness import PAUSE, Case, Goal, Timed, _entmax, _jax, _machine_line, _torch, alternate, machine_info
from .report import _cell, _headline, _peer_of, _plot, markdown, write_markdown

__all__ = ["Case", "Goal", "Timed", "alternate", "machine_info", "markdown", "run", "write_markdown"]


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer >= {low}; got {value!r} of type {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}; got {value}")
    return value


def run(out: str | os.PathLike[str] = "out/bench", *, quick: bool = False, threads: int = 2, rounds: int = 15,
        markdown_path: str | os.PathLike[str] | None = None, peer_memory: bool = True,
        print_fn: Callable[[str], None] = print) -> list[Case]:
    """Run every benchmark; print the results; write ``bench.json``, ``bench.md`` and ``bench.png`` under ``out``.

    Parameters
    ----------
    out : path, default "out/bench"
        Folder for the results (created).
    quick : bool, default False
        Tiny sizes and 2 rounds: checks that everything runs, measures nothing. The peers' memory is then
        measured for one case only.
    threads : int, default 2
        PyTorch's threads.
    rounds : int, default 15
        Alternating rounds of the fast cases (the slow ones, sparse maps, Jacobian, MLP, take fewer).
    markdown_path : path, optional
        Also write the markdown table there (e.g. for the docs).
    peer_memory : bool, default True
        Measure the PyTorch-based peers' peak memory (a fresh process per case).
    print_fn : callable, default print
        Where the text goes.

    Returns
    -------
    list of Case
    """
    threads = _check_int("threads", threads, 1)
    rounds = _check_int("rounds", rounds, 1)
    if quick:
        rounds = 2
    harness.set_pause(0.0 if quick else PAUSE)
    torch, cases = _measure(quick, rounds, threads, peer_memory, print_fn)

    info = machine_info(threads if torch is not None else None)
    doc: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": info,
           "settings": {"rounds": rounds, "quick": quick, "torch_threads": threads, "pause_s": harness.pause()},
           "cases": [c.to_json() for c in cases]}
    _print_results(doc, cases, print_fn)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    with atomic_open(target / "bench.json", "w") as handle:
        json.dump(doc, handle, indent=1)
    write_markdown(doc, target / "bench.md")
    if markdown_path is not None:
        write_markdown(doc, markdown_path)
    _plot(cases, target / "bench.png")
    met = sum(c.verdict() == "met" for c in cases)
    missed = [f"{c.op} {c.size}" for c in cases if c.verdict() == "missed"]
    print_fn(f"targets: {met} met, {len(missed)} missed" + (f" ({'; '.join(missed)})" if missed else ""))
    print_fn(f"wrote {target / 'bench.json'}, {target / 'bench.md'}, {target / 'bench.png'}"
             + (f", {markdown_path}" if markdown_path is not None else ""))
    return cases


def _measure(quick: bool, rounds: int, threads: int, peer_memory: bool,
             print_fn: Callable[[str], None]) -> tuple[Any, list[Case]]:
    """Every case measured (and the peers' memory, if asked): ``(torch or None, cases)``."""
    torch, jax, entmax = _torch(threads), _jax(), _entmax()
    shapes = [(64, 32), (512, 10), (8, 256)] if quick else SHAPES
    sparse_shapes = [(64, 32), (512, 10)] if quick else SPARSE_SHAPES
    slow = rounds if quick else max(3, rounds // 2)
    cases: list[Case] = []
    measure_peer: list[tuple[Case, str, tuple[int, int]]] = []  # (case, peer key, shape)

    def add(case: Case, key: str | None = None, shape: tuple[int, int] | None = None) -> None:
        cases.append(case)
        if key is not None and shape is not None and torch is not None and (key in ("softmax", "nll", "jacobian")
                                                                          or entmax is not None):
            measure_peer.append((case, key, shape))
        print_fn(f"  measured {case.op} {case.size}")

    for shape in shapes:
        add(_softmax_case(shape, rounds, torch, jax), "softmax", shape)
    for shape in shapes:
        add(_nll_case(shape, rounds, torch, jax), "nll", shape)
    jshape = (32, 16) if quick else (1024, 256)
    add(_jacobian_case(jshape, max(3, rounds // 3) if not quick else rounds, torch, jax), "jacobian", jshape)
    sparse_keys = ["sparsemax", "entmax15"]
    for key in sparse_keys:
        for shape in sparse_shapes:
            add(_sparse_case(key, shape, slow, torch, entmax), key, shape)
    add(_sparse_case("entmax_bisect", sparse_shapes[0], slow, torch, entmax), "entmax_bisect", sparse_shapes[0])
    for key in ("sparsemax_loss", "entmax15_loss"):
        for shape in sparse_shapes:
            add(_fy_case(key, shape, slow, torch, entmax), key, shape)
    # five rounds: with three, one slow stretch of this shared machine decided a minimum (gradkit's three epochs
    # all took 500 ms in one run, 400-420 ms in the runs around it)
    add(_mlp_case(256 if quick else 60000, 1 if quick else MLP_ROUNDS, torch))
    estimator_case = _sklearn_estimator_case(2 if quick else 50, 1 if quick else 3, 1 if quick else 5)
    if estimator_case is not None:
        add(estimator_case)
    for shape in shapes[:1] if quick else shapes:
        add(_contention_case(shape, rounds if quick else max(rounds, 15), torch))
    for case in cases:
        case.judged = not quick
    if peer_memory:
        for case, key, shape in measure_peer[:1] if quick else measure_peer:
            peak = _peer_peak_mb(key, shape, threads)
            if peak is not None:
                case.peer_peak_mb[_PEERS[key]] = peak

    return torch, cases


def _print_results(doc: dict[str, Any], cases: list[Case], print_fn: Callable[[str], None]) -> None:
    """One line per case: the times of every contender, the headline ratio, the memory, the verdict."""
    print_fn(f"gradkit bench — {doc['date']} — {_machine_line(doc['machine'])}")
    print_fn("minimum (median) in ms over alternating rounds; headline: ratio of minima gradkit / peer")
    for c, d in zip(cases, doc["cases"]):
        ratio, medians = _headline(d)
        goal = f"  target {c.goal.text()}: {c.verdict()}" if c.goal else ""
        peer = _peer_of(d)
        head = f"gradkit/{peer} {ratio} (medians {medians})" if peer and not ratio.startswith("median") else ratio
        print_fn(f"{c.op:<34} {c.size:<12} " + "  ".join(f"{k} {_cell(d['ms'], k)}" for k in d["ms"]))
        extras = [head]
        if c.peak_mb is not None:
            extras.append(f"peak {c.peak_mb:.3g} MB" + (f" = {c.peak_mb / c.output_mb:.2f}x output" if c.output_mb
                                                         else ""))
        extras += [f"{k} peak RSS {v:.3g} MB" for k, v in c.peer_peak_mb.items()]
        if c.note:
            extras.append(c.note)
        print_fn("    " + ", ".join(extras) + goal)
