"""One epoch of ``nn.fit`` (784-256-10, float32, batch 128, 60,000 random rows; SGD and Adam) for
three source trees: before 396b50e, ``main`` and the working tree (``src/``).

Each measurement runs in its own process (the trees are different ``gradkit`` packages); rounds
alternate pre, main, ours, pre, main, ours, ... and the minimum over rounds is the headline.
Inside a process one warm-up epoch runs first (numba compilation, caches), then the timed epoch;
wall time and process CPU time (all threads) are both reported.

    python benchmarks/optim_epoch.py [--rounds 5] [--rows 60000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import print_minima

ROOT = Path(__file__).resolve().parents[1]
REVS = {"pre-396b50e": "396b50e^", "main": "main"}
CHILD = r"""
import sys, time
import numpy as np
import gradkit as gk
from gradkit import nn
rows, which = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(3)
X = rng.standard_normal((rows, 784), dtype=np.float32)
y = rng.integers(0, 10, rows)
head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
def run():
    model = nn.Sequential([nn.Dense(784, 256, rng=0), "relu", nn.Dense(256, 10, rng=1)])
    opt = nn.SGD(0.01) if which == "sgd" else nn.Adam(1e-3)
    start, cpu = time.perf_counter(), time.process_time()
    nn.fit(model, X, y, loss=head, optimizer=opt, epochs=1, batch_size=128, rng=0)
    return time.perf_counter() - start, time.process_time() - cpu
run()
print(*run())
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=60000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for tag, rev in REVS.items():
            dest = Path(tmp) / tag
            dest.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
            trees[tag] = dest / "src"
        trees["ours"] = ROOT / "src"
        for which in ("sgd", "adam"):
            runs: dict[str, list[float]] = {tag: [] for tag in trees}
            cpus: dict[str, list[float]] = {tag: [] for tag in trees}
            for _ in range(args.rounds):
                for tag, src in trees.items():
                    env = dict(os.environ, PYTHONPATH=str(src))
                    out = subprocess.run([sys.executable, "-c", CHILD, str(args.rows), which], env=env, check=True,
                                         capture_output=True, text=True, timeout=600).stdout
                    wall, cpu = out.split()[-2:]
                    runs[tag].append(float(wall))
                    cpus[tag].append(float(cpu))
            print_minima(which, {"wall": runs, "cpu": cpus})


if __name__ == "__main__":
    main()
