"""Peak autograd memory of ``gradkit.torch.wrap(gk.Entmax15())`` against the ``entmax`` package's ``Entmax15``
on a (4096, 1024) float32 batch, loss ``(y * r).sum()`` for a random ``r``, CPU.

Three numbers per contender:

* **saved**: the bytes autograd keeps between forward and backward (``saved_tensors_hooks``, each storage
  counted once) -- what a deep network multiplies by its depth;
* **peak**: the peak resident set size of a fresh process during forward + backward, above what it held
  with its inputs allocated (``ru_maxrss``), i.e. saved tensors plus the temporaries of both passes;
* **time**: forward + backward wall time in that process (after one warm-up call on a small batch).

``gradkit`` is the CPU path (NumPy views, numba where gradkit has kernels); ``gradkit-torch`` the portable
path on torch tensors (``GRADKIT_DISABLE_NUMBA=1``), which is what runs on a GPU.

Each measurement runs in its own subprocess (a peak RSS cannot be reset inside one); rounds alternate between
the contenders so the load of a shared machine falls on both alike; the minimum over rounds is the headline,
the median is printed beside it.

    PYTHONPATH=src python benchmarks/torch_memory.py [--rounds 5] [--rows 4096] [--cols 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import torch

which, rows, cols = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
if which.startswith("gradkit"):
    import gradkit as gk, gradkit.torch as gkt
    module = gkt.wrap(gk.Entmax15())
else:
    import entmax
    module = entmax.Entmax15(dim=-1)

def run(x, r, hooks=False):
    saved = {}
    def pack(t):
        s = t.untyped_storage()
        saved[s.data_ptr()] = s.nbytes()
        return t
    if hooks:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = module(x)
    else:
        y = module(x)
    (y * r).sum().backward()
    return sum(saved.values())

gen = torch.Generator().manual_seed(0)
small = torch.randn(8, cols, generator=gen, requires_grad=True)
run(small, torch.randn(8, cols, generator=gen))  # imports, numba compilation, allocator warm-up
x = torch.randn(rows, cols, generator=gen, requires_grad=True)
r = torch.randn(rows, cols, generator=gen)
x.grad = torch.zeros_like(x)  # the gradient buffer is part of the inputs, not of the pass
kib = 1024  # ru_maxrss is in KiB on Linux
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib
start = time.perf_counter()
run(x, r)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib - base
saved = run(x, r, hooks=True)
print(json.dumps({"saved": saved, "peak": peak, "time": elapsed}))
"""


def measure(which: str, rows: int, cols: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if which == "gradkit-torch":  # the portable path on torch tensors (as on a GPU), not NumPy/numba
        env["GRADKIT_DISABLE_NUMBA"] = "1"
    out = subprocess.run([sys.executable, "-c", CHILD, which, str(rows), str(cols)], check=True,
                         capture_output=True, text=True, env=env, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=1024)
    args = ap.parse_args()
    contenders = ("gradkit", "gradkit-torch", "entmax")
    results: dict[str, dict[str, list[float]]] = {c: {"saved": [], "peak": [], "time": []} for c in contenders}
    for _ in range(args.rounds):
        for c in contenders:
            for k, v in measure(c, args.rows, args.cols).items():
                results[c][k].append(v)
    mib = 2.0**20
    print(f"Entmax15 forward+backward, ({args.rows}, {args.cols}) float32 CPU, {args.rounds} alternating rounds "
          f"(input itself: {args.rows * args.cols * 4 / mib:.1f} MiB); minimum (median)")
    for what, unit, scale in (("saved", "MiB", mib), ("peak", "MiB", mib), ("time", "s", 1.0)):
        row = {c: results[c][what] for c in contenders}
        base = min(row["entmax"]) or float("nan")
        print(f"{what:<6}" + "  ".join(
            f"{c} {min(v) / scale:8.2f} {unit} ({statistics.median(v) / scale:.2f})" for c, v in row.items())
            + "  " + "  ".join(f"{c}/entmax {min(row[c]) / base:.3f}" for c in contenders[:-1]))


if __name__ == "__main__":
    main()
