"""Is a gradkit kernel steady when torch and OpenBLAS work runs in between? (the steadiness goal)

For each kernel call (softmax fwd+VJP; log_softmax+NLL head value_and_grad; float32 at 4096x1024, 65536x10,
256x32768) and each neighbour (nothing; torch softmax forward+backward of the same shape; torch matmul
1024x1024; NumPy/OpenBLAS matmul 1024x1024), every round runs the neighbour then times the kernel, in
alternation with the other neighbours (A, B, C, D, A, B, ...). Reported per pair: minimum, median and
median/minimum of the kernel's time over the rounds (the goal: median within 1.3x of the minimum), and the
reverse effect: the neighbour's own time after the kernel against after itself. A pause (``--pause``,
0.1 s) before each pair lets the pools of the pair before stop spinning.

Policies are set from outside (so that each run starts numba afresh): the threading layer with
``NUMBA_THREADING_LAYER``, numba's thread count with ``NUMBA_NUM_THREADS``, OpenMP waiting with
``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT``, and from the command line ``--parallel-min`` (elements below which
a kernel runs serially), ``--kernel-threads`` (``gradkit.kernels.threads``, if present) and
``--blas-limit`` (threadpoolctl limits BLAS/OpenMP to 1 thread around each gradkit call).

    PYTHONPATH=src python benchmarks/contention.py [--rounds 15] [--json out/contention.json]
    NUMBA_THREADING_LAYER=omp PYTHONPATH=src python benchmarks/contention.py --label omp
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import gradkit as gk
from gradkit import bench, kernels, losses
from gradkit.kernels import _exp

SHAPES = [(4096, 1024), (65536, 10), (256, 32768)]


def kernel_calls(shape: tuple[int, int]) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, shape[1], shape[0])
    act = gk.Softmax()
    head = gk.compose(gk.LogSoftmax(), losses.NLLLoss())
    return {"softmax fwd+VJP": lambda: act.vjp(x, g, y=act(x)),
            "log_softmax+NLL v+g": lambda: head.value_and_grad(x, labels)}


def neighbours(shape: tuple[int, int], torch: Any) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    b = rng.standard_normal((1024, 1024), dtype=np.float32)
    out: dict[str, Callable[[], object]] = {"alone": lambda: None}
    if torch is not None:
        xt = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
        gt = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
        at, bt = torch.from_numpy(a), torch.from_numpy(b)

        def torch_softmax() -> object:
            v = xt.detach().requires_grad_(True)
            torch.softmax(v, -1).backward(gt)
            return v.grad

        out["torch softmax fwd+bwd"] = torch_softmax
        out["torch matmul 1024"] = lambda: at @ bt
    out["numpy matmul 1024 (OpenBLAS)"] = lambda: a @ b
    return out


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """A thread policy for the calls inside: ``auto`` (as configured), ``serial`` (``kernels.threads(1)``),
    ``static`` (numba's default split: one equal share of the rows per thread), ``chunksN`` (rows in about N
    dynamically taken chunks per thread)."""
    from gradkit.kernels import _threads

    before = _threads.CHUNKS_PER_THREAD
    try:
        if name == "serial":
            with kernels.threads(1):
                yield
            return
        if name == "static":
            _threads.CHUNKS_PER_THREAD = 0
        elif name.startswith("chunks"):
            _threads.CHUNKS_PER_THREAD = int(name[6:])
        elif name != "auto":
            raise ValueError(f"--policies: expected auto, serial, static or chunksN; got {name!r}")
        yield
    finally:
        _threads.CHUNKS_PER_THREAD = before


def measure(rounds: int, blas_limit: bool, torch: Any, policies: list[str] | None = None,
            pause: float = bench.PAUSE) -> list[dict[str, Any]]:
    """Rows of results; with ``policies``, every policy's kernel runs in the same rounds (alternating)."""
    rows = []
    limiter: Callable[[], Any] = contextlib.nullcontext
    if blas_limit:
        from threadpoolctl import threadpool_limits

        def limiter() -> Any:
            return threadpool_limits(1)
    for shape in SHAPES:
        near = neighbours(shape, torch)
        for kname, call in kernel_calls(shape).items():
            # contenders: "<neighbour> -> kernel" (kernel timed after the neighbour) and
            # "kernel -> <neighbour>" (the neighbour timed after the kernel), alternating
            contenders: dict[str, bench.Timed] = {}
            for pname in policies or ["auto"]:
                def timed(fn: Callable[[], object] = call, p: str = pname) -> object:
                    with limiter(), policy(p):
                        return fn()

                tag = f"{pname}: " if policies else ""
                for nname, nfn in near.items():
                    contenders[f"{tag}{nname} -> kernel"] = bench.Timed(timed, before=nfn)
                    if nname != "alone":
                        contenders[f"{tag}kernel -> {nname}"] = bench.Timed(nfn, before=timed)
            for nname, nfn in near.items():
                if nname != "alone":
                    contenders[f"{nname} -> {nname}"] = bench.Timed(nfn, before=nfn)
            samples = bench.alternate(contenders, rounds, pause=pause)
            for name, s in samples.items():
                rows.append({"kernel": kname, "shape": f"{shape[0]}x{shape[1]}", "pair": name,
                             "min_ms": 1e3 * min(s), "median_ms": 1e3 * statistics.median(s),
                             "samples_ms": [1e3 * t for t in s]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--label", default="default")
    ap.add_argument("--parallel-min", type=int, default=None, help="elements below which kernels run serially")
    ap.add_argument("--kernel-threads", type=int, default=None, help="gradkit.kernels.set_num_threads(N)")
    ap.add_argument("--chunksize", type=int, default=None,
                    help="numba.set_parallel_chunksize(N): rows handed out dynamically in chunks of N")
    ap.add_argument("--blas-limit", action="store_true", help="threadpoolctl: BLAS/OpenMP 1 thread in gradkit calls")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--pause", type=float, default=bench.PAUSE,
                    help="seconds of sleep before each pair (the pools of the pair before stop spinning)")
    ap.add_argument("--policies", default=None,
                    help="comma-separated thread policies run side by side in the same rounds: "
                         "auto, serial, static, chunksN (e.g. serial,static,chunks4)")
    ap.add_argument("--json", default=None, help="append the rows to this JSON-lines file")
    args = ap.parse_args(argv)
    if args.parallel_min is not None:
        _exp.PARALLEL_MIN = args.parallel_min
    from gradkit.kernels import _threads

    _threads.layer()  # before any numba call of ours: numba would start its layer without tbb
    if args.chunksize is not None:
        import numba

        numba.set_parallel_chunksize(args.chunksize)
    if args.kernel_threads is not None:
        kernels.set_num_threads(args.kernel_threads)
    try:
        import torch

        torch.set_num_threads(args.torch_threads)
    except ImportError:
        torch = None

    env = {k: os.environ[k] for k in ("NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS", "OMP_WAIT_POLICY",
                                      "GOMP_SPINCOUNT", "OMP_NUM_THREADS") if k in os.environ}
    print(f"# {args.label}: layer {_threads.layer()}, env {env}, PARALLEL_MIN {_exp.PARALLEL_MIN}, "
          f"blas_limit {args.blas_limit}, rounds {args.rounds}", flush=True)
    policies = args.policies.split(",") if args.policies else None
    rows = measure(args.rounds, args.blas_limit, torch, policies, args.pause)
    worst = 0.0
    for r in rows:
        ratio = r["median_ms"] / r["min_ms"]
        flag = ""
        if r["pair"].endswith("-> kernel"):
            worst = max(worst, ratio)
            flag = "  <-- over 1.3" if ratio > 1.3 else ""
        print(f"{r['kernel']:<22}{r['shape']:<11}{r['pair']:<66} min {r['min_ms']:8.2f}  "
              f"median {r['median_ms']:8.2f}  median/min {ratio:5.2f}{flag}")
    print(f"# {args.label}: worst kernel median/min {worst:.2f}", flush=True)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps({"label": args.label, "env": env, "parallel_min": _exp.PARALLEL_MIN,
                                     "blas_limit": args.blas_limit, "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
