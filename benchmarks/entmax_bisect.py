"""Time α-entmax (``EntmaxBisect``) forward + VJP (float32) at 4096x1024 and 65536x10, for α = 1.5 and for a
per-row α drawn from [1.25, 2.5]: gradkit's numba kernels, gradkit's portable path (``kernels.disabled()``), and
the ``entmax`` package's ``entmax_bisect`` (torch CPU, 2 threads, forward + ``backward`` with the same random
upstream vector; α a constant tensor, no gradient asked for it). Both bisect with ``n_iter=50``.

Rounds alternate (kernel, portable, entmax, kernel, ...) so that the load of a shared machine falls on every
contender alike; the minimum over rounds is the headline, the median is printed beside it, and the ratio is
to the ``entmax`` package's minimum.

    PYTHONPATH=src python benchmarks/entmax_bisect.py [--rounds 7] [--reps 1]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from _report import alternate_and_print

import gradkit as gk
from gradkit import kernels

SHAPES = [(4096, 1024), (65536, 10)]


def _contenders(alpha: float | np.ndarray, x: np.ndarray, g: np.ndarray) -> dict[str, Callable[[], object]]:
    act = gk.EntmaxBisect(alpha)

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
    tg = torch.from_numpy(g)
    ta = alpha if isinstance(alpha, float) else torch.from_numpy(alpha.astype(np.float32))

    def package() -> object:
        tx = torch.from_numpy(x).requires_grad_(True)
        entmax.entmax_bisect(tx, ta, dim=-1, n_iter=50).backward(tg)
        return tx.grad

    out["entmax"] = package
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=1, help="calls per timed sample")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for rows, n in SHAPES:
        x = rng.standard_normal((rows, n)).astype(np.float32)
        g = rng.standard_normal((rows, n)).astype(np.float32)
        for label, alpha in (("alpha=1.5", 1.5), ("per-row", rng.uniform(1.25, 2.5, (rows, 1)))):
            fns = _contenders(alpha, x, g)
            alternate_and_print(f"{label:<10}{rows}x{n:<6}", fns, args.rounds, args.reps, width=8, ratio=".3f")


if __name__ == "__main__":
    main()
