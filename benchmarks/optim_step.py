"""Time ``Optimizer.step`` on the 784-256-10 MLP's parameters (float32) for three versions of
src/gradkit/nn/optim.py: before 396b50e (in place, not all-or-nothing), ``main`` and the working tree.

Rounds alternate (pre, main, ours, pre, main, ours, ...) so that the load of a shared machine
falls on every version alike; the minimum over rounds is the headline, the median is printed too.

    PYTHONPATH=src python benchmarks/optim_step.py [--rounds 15] [--steps 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import load_at_revision

from gradkit.nn import optim as ours

REVS = {"pre-396b50e": "396b50e^", "main": "main"}
CONFIGS = {
    "SGD": ("SGD", {"lr": 0.01}),
    "SGD+momentum": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "Adam": ("Adam", {"lr": 1e-3}),
}


def _load(rev: str, tag: str, tmp: Path):  # type: ignore[no-untyped-def]
    return load_at_revision(rev, "src/gradkit/nn/optim.py", f"gradkit.nn._optim_{tag}", tmp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: this thread's CPU time (time.thread_time), less disturbed by other processes")
    ap.add_argument("--shapes", choices=["mlp", "tiny"], default="mlp", help="tiny: 4-8-3 (the per-call overhead)")
    args = ap.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    rng = np.random.default_rng(0)
    shapes = {"0.W": (784, 256), "0.b": (256,), "2.W": (256, 10), "2.b": (10,)}
    if args.shapes == "tiny":
        shapes = {"0.W": (4, 8), "0.b": (8,), "2.W": (8, 3), "2.b": (3,)}
    p0 = {k: (rng.standard_normal(s) * 0.05).astype(np.float32) for k, s in shapes.items()}
    grads = {k: (rng.standard_normal(s) * 1e-3).astype(np.float32) for k, s in shapes.items()}
    with tempfile.TemporaryDirectory() as tmp:
        modules = {tag: _load(rev, tag.replace("-", "_"), Path(tmp)) for tag, rev in REVS.items()}
        modules["ours"] = ours
        for label, (cls, kwargs) in CONFIGS.items():
            runs: dict[str, list[float]] = {tag: [] for tag in modules}
            setups = {}
            for tag, module in modules.items():
                params = {k: v.copy() for k, v in p0.items()}
                opt = getattr(module, cls)(**kwargs)
                for _ in range(3):  # warm: state and buffers exist
                    opt.step(params, grads)
                setups[tag] = (opt, params)
            for _ in range(args.rounds):
                for tag, (opt, params) in setups.items():
                    start = clock()
                    for _ in range(args.steps):
                        opt.step(params, grads)
                    runs[tag].append((clock() - start) / args.steps * 1e6)
            base = min(runs["pre-396b50e"])
            print(f"{label:<13}" + "  ".join(
                f"{tag} min {min(r):6.1f} us (median {statistics.median(r):6.1f}, {min(r) / base:4.2f}x pre)"
                for tag, r in runs.items()))


if __name__ == "__main__":
    main()
