"""Time forward + VJP of Taylor / spherical softmax (and log forms), float32, at 4096×1024 and 65536×10.

Contenders, in alternating rounds (so that the load of a shared machine falls on each alike):

* ``portable``: the Array API path (``kernels.disabled()``), the reference;
* ``main``: the kernels of ``src/gradkit/kernels/spherical.py`` as at git revision ``--rev`` (default ``main``),
  called with the activation's parameters (``--rev`` before 2026-11 has no such module: use a later one);
* ``ours``: the working tree (the fused kernels of :mod:`gradkit.kernels.spherical`, through the activation);
* ``softmax``: the softmax kernel on the raw scores (a floor: the same row passes without ``log φ``).

The minimum over rounds is the headline, the median beside it, the ratio against ``portable``.

    PYTHONPATH=src python benchmarks/spherical_kernels.py [--rounds 7] [--threads 2] [--rev main]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _report import load_at_revision


def _load_main(tmp: Path, rev: str):  # type: ignore[no-untyped-def]
    return load_at_revision(rev, "src/gradkit/kernels/spherical.py", "gradkit.kernels._spherical_main", tmp)


class _AtRevision:
    """The activation ``act`` with the kernels of another revision's module."""

    def __init__(self, act, module):  # type: ignore[no-untyped-def]
        self.act, self.module = act, module

    def __call__(self, x):  # type: ignore[no-untyped-def]
        return self.module.forward(x, -1, None, *self.act._kernel_params(x.dtype), log=self.act._log)

    def vjp(self, x, g, y):  # type: ignore[no-untyped-def]
        return self.module.vjp(x, y, g, -1, None, *self.act._kernel_params(x.dtype), log=self.act._log)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="numba threads (NUMBA_NUM_THREADS is read at import)")
    ap.add_argument("--rev", default="main", help="git revision of the kernels to compare with")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import numpy as np

    import gradkit as gk
    from gradkit import kernels

    with tempfile.TemporaryDirectory() as tmp:
        old = _load_main(Path(tmp), args.rev)
        rng = np.random.default_rng(0)
        for shape in ((4096, 1024), (65536, 10)):
            x = (rng.standard_normal(shape) * 2).astype(np.float32)
            g = rng.standard_normal(shape).astype(np.float32)
            for name, kw in (("TaylorSoftmax", {}), ("TaylorSoftmax", {"order": 4}), ("SphericalSoftmax", {}),
                             ("LogTaylorSoftmax", {}), ("LogSphericalSoftmax", {})):
                ours = getattr(gk, name)(**kw)
                before = _AtRevision(ours, old)
                sm = gk.LogSoftmax() if name.startswith("Log") else gk.Softmax()

                def run(act, x=x, g=g):  # type: ignore[no-untyped-def]
                    def step():  # type: ignore[no-untyped-def]
                        y = act(x)
                        return act.vjp(x, g, y=y)

                    return step

                contenders = {"portable": None, "main": run(before), "ours": run(ours), "softmax": run(sm)}
                times: dict[str, list[float]] = {k: [] for k in contenders}
                for _ in range(2):  # compile and warm
                    for fn in contenders.values():
                        if fn is None:
                            with kernels.disabled():
                                run(ours)()
                        else:
                            fn()
                for _ in range(args.rounds):
                    for tag, fn in contenders.items():
                        start = time.perf_counter()
                        if fn is None:
                            with kernels.disabled():
                                run(ours)()
                        else:
                            fn()
                        times[tag].append((time.perf_counter() - start) * 1e3)
                base = min(times["portable"])
                label = f"{name}{kw or ''} {shape[0]}x{shape[1]}"
                print(f"{label:<34}" + "  ".join(
                    f"{tag} {min(t):7.2f} ms (med {statistics.median(t):7.2f}, {min(t) / base:.2f}x)"
                    for tag, t in times.items()), flush=True)


if __name__ == "__main__":
    main()
