"""Time the Fenchel–Young losses' value + gradient (float32, integer labels, mean) at 4096x1024 and 65536x10:
gradkit's numba kernel (the training head ``compose(Sparsemax(), SparsemaxLoss()).value_and_grad``), gradkit's
portable path (``kernels.disabled()``), and the ``entmax`` package's ``SparsemaxLoss`` / ``Entmax15Loss`` (torch
CPU, 2 threads, forward + ``backward``; the package's defaults, e.g. ``Entmax15Loss(k=100)``).

Rounds alternate (kernel, portable, entmax, kernel, ...) so that the load of a shared machine falls on every
contender alike; the minimum over rounds is the headline, the median is printed beside it, and the ratio is
to the ``entmax`` package's minimum.

    PYTHONPATH=src python benchmarks/fy_loss_kernels.py [--rounds 9] [--reps 3]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from _report import alternate_and_print

import gradkit as gk
from gradkit import kernels

SHAPES = [(4096, 1024), (65536, 10)]


def _contenders(name: str, z: np.ndarray, labels: np.ndarray) -> dict[str, Callable[[], object]]:
    if name == "sparsemax":
        head = gk.compose(gk.Sparsemax(), gk.losses.SparsemaxLoss())
    else:
        head = gk.compose(gk.Entmax15(), gk.losses.Entmax15Loss())

    def ours() -> object:
        return head.value_and_grad(z, labels)

    def portable() -> object:
        with kernels.disabled():
            return head.value_and_grad(z, labels)

    out: dict[str, Callable[[], object]] = {"kernel": ours, "portable": portable}
    try:
        import entmax
        import torch
    except ImportError:
        return out
    torch.set_num_threads(2)
    loss = entmax.SparsemaxLoss() if name == "sparsemax" else entmax.Entmax15Loss()
    tl = torch.from_numpy(labels)

    def package() -> object:
        tz = torch.from_numpy(z).requires_grad_(True)
        loss(tz, tl).backward()
        return tz.grad

    out["entmax"] = package
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=3, help="calls per timed sample")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for rows, n in SHAPES:
        z = rng.standard_normal((rows, n)).astype(np.float32)
        labels = rng.integers(0, n, rows)
        for name in ("sparsemax", "entmax15"):
            fns = _contenders(name, z, labels)
            alternate_and_print(f"{name:<10}{rows}x{n:<6}", fns, args.rounds, args.reps, width=7, ratio=".2f")


if __name__ == "__main__":
    main()
