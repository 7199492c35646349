"""How far softmax forward + VJP is from the memory floor at 4096×1024 float32, for gradkit and torch.

At 4096×1024 every array is 16 MiB: beyond the L2 caches, and five of them (x, y, g, the VJP,
and y read again) do not stay in a 32 MiB L3. Forward and VJP are then bounded by memory traffic:

* forward: read ``x``, write ``y``;
* VJP: read ``y`` and ``g``, write the result.

The floors are measured with numba loops that move exactly that data on the same threads and do
no arithmetic worth naming: ``copy`` (one read, one write: the forward's traffic) and
``multiply`` (two reads, one write: the VJP's). Rounds alternate (floor, gradkit, torch, ...);
minima are the headline, medians beside.

    PYTHONPATH=src python benchmarks/softmax_floor.py [--rounds 15] [--shape 4096 1024]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numba as nb
import numpy as np

import gradkit as gk


@nb.njit(parallel=True, fastmath=True, cache=True)
def _copy(x, out):  # type: ignore[no-untyped-def]
    n, m = x.shape
    for i in nb.prange(n):
        for j in range(m):
            out[i, j] = x[i, j]


@nb.njit(parallel=True, fastmath=True, cache=True)
def _multiply(a, b, out):  # type: ignore[no-untyped-def]
    n, m = a.shape
    for i in nb.prange(n):
        for j in range(m):
            out[i, j] = a[i, j] * b[i, j]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=5, help="calls per timed sample")
    ap.add_argument("--shape", type=int, nargs=2, default=[4096, 1024])
    args = ap.parse_args()
    shape = tuple(args.shape)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    act = gk.Softmax()
    y = act(x)
    out = np.empty_like(x)
    fns: dict[str, Callable[[], object]] = {
        "floor: copy (forward's traffic)": lambda: _copy(x, np.empty_like(x)),
        "floor: multiply (VJP's traffic)": lambda: _multiply(y, g, np.empty_like(x)),
        "gradkit forward": lambda: act(x),
        "gradkit VJP": lambda: act.vjp(x, g, y=y),
        "gradkit forward + VJP": lambda: act.vjp(x, g, y=act(x)),
    }
    try:
        import torch

        torch.set_num_threads(2)
        xt, gt, yt = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(y)
        fns["torch forward"] = lambda: torch.softmax(xt, -1)
        fns["torch VJP"] = lambda: torch._softmax_backward_data(gt, yt, -1, torch.float32)
        fns["torch forward + VJP"] = lambda: torch._softmax_backward_data(gt, torch.softmax(xt, -1), -1, torch.float32)
    except ImportError:
        pass
    _copy(x, out)
    _multiply(y, g, out)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            fn()
            t0 = time.perf_counter()
            for _ in range(args.reps):
                fn()
            times[name].append((time.perf_counter() - t0) / args.reps)
    mib = x.nbytes / 2**20
    traffic = {"forward": 2 * mib, "VJP": 3 * mib, "forward + VJP": 5 * mib, "copy": 2 * mib, "multiply": 3 * mib}
    print(f"softmax at {shape[0]}x{shape[1]} float32 ({mib:.0f} MiB per array), {args.rounds} alternating rounds; "
          f"numba threads {nb.get_num_threads()}, layer {nb.threading_layer()}")
    for name, t in times.items():
        key = next(k for k in sorted(traffic, key=len, reverse=True) if name.endswith(k) or k in name.split(": ")[-1])
        gbs = traffic[key] * 2**20 / min(t) / 1e9
        print(f"  {name:<34} min {1e3 * min(t):7.3f} ms  median {1e3 * statistics.median(t):7.3f} ms  "
              f"{1e9 * min(t) / x.size:5.3f} ns/element  {gbs:5.1f} GB/s of the minimal traffic ({traffic[key]:.0f} MiB)")
    if "torch forward + VJP" in times:
        print(f"  gradkit / torch, forward + VJP: {min(times['gradkit forward + VJP']) / min(times['torch forward + VJP']):.2f}"
              f" (minima); floors / torch: "
              f"{(min(times[next(iter(fns))]) + min(times[list(fns)[1]])) / min(times['torch forward + VJP']):.2f}")


if __name__ == "__main__":
    main()
