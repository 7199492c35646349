"""``gradkit bench --distributed``: data-parallel training on Dask against one process.

For each size, one full-batch training step (forward, backward, update) of a
32 → 64 → 10 MLP with softmax + cross-entropy, float32, is timed in one process
(NumPy, BLAS on every core) and with :func:`gradkit.distributed.fit` on a
``LocalCluster`` of 1 and of 2 worker processes (1 thread each, the data
persisted on the workers, blocks of 100,000 rows). Medians over steps after a
warm-up step. The per-step overhead is the distributed step time on 1,000 rows;
a crossover is claimed only as the bracket between two measured sizes: the
smaller where one process was faster, the larger from which 2 workers were faster
at every larger size measured too.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import losses, nn
from .._io import atomic_open
from ..activations import Softmax
from ..composition import compose

__all__ = ["run"]

FEATURES, HIDDEN, CLASSES = 32, 64, 10


def _model() -> nn.Sequential:
    return nn.Sequential([nn.Dense(FEATURES, HIDDEN, rng=0), "relu", nn.Dense(HIDDEN, CLASSES, rng=1)])


def _labels(X: Any) -> Any:
    return (X[:, 0] > 0).astype(np.int64) + 2 * (X[:, 1] > 0) + 4 * (X[:, 2] > 0)


def _per_step(history: nn.History, warmup: int = 1) -> float:
    return statistics.median(history["time"][warmup:]) * 1e3


def _crossover(rows: list[dict[str, Any]]) -> tuple[list[int] | None, str]:
    """The measured bracket ``[below, above]`` where 2 workers start to beat one process for good, and
    a sentence saying only what was measured."""
    wins = [r["dask_2_workers_ms"] < r["single_ms"] for r in rows]
    sizes = [r["rows"] for r in rows]
    first = next((i for i in range(len(rows)) if all(wins[i:])), None)
    if first is None:
        return None, f"none measured: one process was faster at {sizes[-1]:,} rows, the largest size run"
    if first == 0:
        return None, (f"not measured: 2 workers were faster at every size run, from {sizes[0]:,} rows; "
                      "the crossover lies below that")
    return [sizes[first - 1], sizes[first]], (
        f"between {sizes[first - 1]:,} rows (one process faster) and {sizes[first]:,} rows "
        "(2 workers faster there and at every larger size run)")


def run(out: str = "out/bench", *, quick: bool = False, print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure; print a table; write ``distributed.json`` under ``out``."""
    import dask.array as da
    from distributed import Client, LocalCluster

    from .. import distributed as gd

    head = compose(Softmax(), losses.CrossEntropyLoss())
    sizes = [20_000, 50_000] if quick else [50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000]
    chunk = 10_000 if quick else 100_000
    steps = 2 if quick else 4
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    single: dict[int, float] = {}
    for n in sizes:
        X = rng.standard_normal((n, FEATURES), dtype=np.float32)
        h = nn.fit(_model(), X, _labels(X), loss=head, optimizer=nn.SGD(0.1), epochs=steps + 1, batch_size=n, rng=0)
        single[n] = _per_step(h)
        del X
    overhead: dict[int, float] = {}
    timings: dict[int, dict[int, float]] = {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}) as cluster, \
                Client(cluster) as client:
            tiny = da.random.default_rng(1).standard_normal((1_000, FEATURES), chunks=(500, FEATURES)).astype(np.float32)
            h = gd.fit(_model(), tiny, _labels(tiny), loss=head, optimizer=nn.SGD(0.1), epochs=steps + 1,
                       client=client, persist=True)
            overhead[workers] = _per_step(h)
            timings[workers] = {}
            for n in sizes:
                X = da.random.default_rng(2).standard_normal((n, FEATURES), chunks=(chunk, FEATURES)).astype(np.float32)
                h = gd.fit(_model(), X, _labels(X), loss=head, optimizer=nn.SGD(0.1), epochs=steps + 1,
                           client=client, persist=True)
                timings[workers][n] = _per_step(h)
    for n in sizes:
        rows.append({"rows": n, "single_ms": single[n], "dask_1_worker_ms": timings[1][n],
                     "dask_2_workers_ms": timings[2][n], "speedup_2_vs_1": timings[1][n] / timings[2][n],
                     "dask_2_vs_single": timings[2][n] / single[n]})
    crossover, verdict = _crossover(rows)
    print_fn(f"gradkit bench --distributed — {time.strftime('%Y-%m-%d')} — full-batch step, MLP "
             f"{FEATURES}-{HIDDEN}-{CLASSES}, float32, blocks of {chunk} rows (ms per step, median)")
    print_fn(f"{'rows':>10} {'one process':>12} {'dask 1 worker':>14} {'dask 2 workers':>15} {'2 vs 1 worker':>14} {'2 workers / one process':>24}")
    for r in rows:
        print_fn(f"{r['rows']:>10} {r['single_ms']:>12.1f} {r['dask_1_worker_ms']:>14.1f} {r['dask_2_workers_ms']:>15.1f} "
                 f"{r['speedup_2_vs_1']:>13.2f}x {r['dask_2_vs_single']:>23.2f}x")
    print_fn(f"per-step overhead (1,000 rows): {overhead[1]:.1f} ms with 1 worker, {overhead[2]:.1f} ms with 2")
    print_fn(f"crossover: {verdict}")
    doc = {"date": time.strftime("%Y-%m-%d"), "features": FEATURES, "hidden": HIDDEN, "classes": CLASSES,
           "chunk_rows": chunk, "rows": rows, "overhead_ms": overhead, "crossover_rows": crossover}
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    with atomic_open(target / "distributed.json", "w") as handle:
        json.dump(doc, handle, indent=2)
    print_fn(f"wrote {target / 'distributed.json'}")
    return doc
