"""One epoch of ``nn.fit`` (784-256-10, float32, batch 128, random rows; SGD and Adam) in one process
and one source tree (``src/``), with three optimizer steps: the one before 396b50e (in place, not
all-or-nothing), the one of ``main`` (fresh arrays, ``np.isfinite``) and this tree's. Everything but
the step is the same code, so the differences are the step's alone.

Rounds alternate pre, main, ours, pre, ...; the minimum over rounds is the headline; wall time and
this thread's CPU time (``time.thread_time``: BLAS threads excluded) are both printed.

    PYTHONPATH=src python benchmarks/optim_epoch_isolated.py [--rounds 7] [--rows 60000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import gradkit as gk
from gradkit import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import print_minima
from optim_step import REVS, _load


def _wrapped(module: Any, cls: str, kwargs: dict[str, Any]) -> nn.Optimizer:
    """An optimizer that ``nn.fit`` takes (an ``nn.Optimizer``) whose step is ``module``'s."""
    inner = getattr(module, cls)(**kwargs)

    class Wrapped(getattr(nn, cls)):  # type: ignore[misc]
        def step(self, params: Any, grads: Any) -> None:
            inner.lr = self.lr
            inner.step(params, grads)

    return Wrapped(**kwargs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rows", type=int, default=60000)
    args = ap.parse_args()
    rng = np.random.default_rng(3)
    X = rng.standard_normal((args.rows, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.rows)
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    with tempfile.TemporaryDirectory() as tmp:
        modules = {tag: _load(rev, tag.replace("-", "_"), Path(tmp)) for tag, rev in REVS.items()}
        for cls, kwargs in (("SGD", {"lr": 0.01}), ("Adam", {"lr": 1e-3})):
            makers = {tag: (lambda m=m, c=cls, k=kwargs: _wrapped(m, c, k)) for tag, m in modules.items()}
            makers["ours"] = lambda c=cls, k=kwargs: getattr(nn, c)(**k)
            wall: dict[str, list[float]] = {tag: [] for tag in makers}
            cpu: dict[str, list[float]] = {tag: [] for tag in makers}
            for r in range(args.rounds + 1):
                for tag, make in makers.items():
                    model = nn.Sequential([nn.Dense(784, 256, rng=0), "relu", nn.Dense(256, 10, rng=1)])
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    nn.fit(model, X, y, loss=head, optimizer=make(), epochs=1, batch_size=128, rng=0)
                    if r:  # round 0 warms up (numba, caches)
                        wall[tag].append(time.perf_counter() - start)
                        cpu[tag].append(time.thread_time() - start_cpu)
            print_minima(cls, {"wall": wall, "cpu": cpu})


if __name__ == "__main__":
    main()
