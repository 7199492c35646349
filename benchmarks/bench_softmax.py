"""Softmax forward + VJP, float32: gradkit (numba kernels and portable path) vs naive NumPy
vs PyTorch, measured in one run.

Usage: python benchmarks/bench_softmax.py   (not a test: prints a table of medians)
The machine is shared and noisy: compare the ratios, measured side by side.
"""

from __future__ import annotations

import platform
import statistics
import time

import numpy as np

import gradkit as gk
from gradkit import kernels

SHAPES = [(4096, 1024), (65536, 10), (256, 32768)]


def median_ms(fn, repeats: int = 15) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def naive(x, g):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


def main() -> None:
    rng = np.random.default_rng(0)
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        torch = None
    act = gk.Softmax()
    print(f"softmax fwd+VJP, float32, median ms — {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}" + (f", torch {torch.__version__} (2 threads)" if torch else ""))
    print(f"{'shape':>12} {'copy floor':>11} {'naive numpy':>12} {'portable':>9} {'gradkit':>9} {'torch':>8} {'gradkit/torch':>14}")
    for shape in SHAPES:
        x = rng.standard_normal(shape, dtype=np.float32)
        g = rng.standard_normal(shape, dtype=np.float32)
        out = np.empty_like(x)
        floor = median_ms(lambda: np.copyto(out, x))
        t_naive = median_ms(lambda: naive(x, g))
        t_gk = median_ms(lambda: act.vjp(x, g, y=act(x)))  # numba kernels when installed
        with kernels.disabled():
            t_portable = median_ms(lambda: act.vjp(x, g, y=act(x)))
        t_torch = float("nan")
        if torch is not None:
            xt, gt = torch.from_numpy(x), torch.from_numpy(g)

            def run_torch():
                y = torch.softmax(xt, dim=-1)
                return torch._softmax_backward_data(gt, y, -1, torch.float32)

            t_torch = median_ms(run_torch)
        print(f"{str(shape):>12} {floor:>11.2f} {t_naive:>12.2f} {t_portable:>9.2f} {t_gk:>9.2f} {t_torch:>8.2f} {t_gk / t_torch:>14.2f}")


if __name__ == "__main__":
    main()
