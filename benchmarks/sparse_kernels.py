"""Time sparsemax and entmax-1.5 forward + VJP (float32) at 4096x1024 and 65536x10: gradkit's numba kernels,
gradkit's portable path (``kernels.disabled()``), and the ``entmax`` package (torch CPU, 2 threads, forward +
``backward`` with the same random upstream vector).

Rounds alternate (kernel, portable, entmax, kernel, ...) so that the load of a shared machine falls on every
contender alike; the minimum over rounds is the headline, the median is printed beside it, and the ratio is
to the ``entmax`` package's minimum.

    PYTHONPATH=src python benchmarks/sparse_kernels.py [--rounds 9] [--reps 3]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from _report import alternate_and_print

import gradkit as gk
from gradkit import kernels

SHAPES = [(4096, 1024), (65536, 10)]


def _contenders(name: str, x: np.ndarray, g: np.ndarray) -> dict[str, Callable[[], object]]:
    act = gk.Sparsemax() if name == "sparsemax" else gk.Entmax15()

    def ours() -> object:
        return act.vjp(x, g)  # the forward, then the VJP

    def portable() -> object:
        with kernels.disabled():
            return act.vjp(x, g)

    out: dict[str, Callable[[], object]] = {"kernel": ours, "portable": portable}
    try:
        import entmax
        import torch
    except ImportError:
        return out
    torch.set_num_threads(2)
    fn = entmax.sparsemax if name == "sparsemax" else entmax.entmax15
    tg = torch.from_numpy(g)

    def package() -> object:
        tx = torch.from_numpy(x).requires_grad_(True)
        fn(tx, dim=-1).backward(tg)
        return tx.grad

    out["entmax"] = package
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=3, help="calls per timed sample")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for rows, n in SHAPES:
        x = rng.standard_normal((rows, n)).astype(np.float32)
        g = rng.standard_normal((rows, n)).astype(np.float32)
        for name in ("sparsemax", "entmax15"):
            fns = _contenders(name, x, g)
            alternate_and_print(f"{name:<10}{rows}x{n:<6}", fns, args.rounds, args.reps, width=7, ratio=".2f")


if __name__ == "__main__":
    main()
