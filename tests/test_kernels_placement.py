"""A kernel's numbers do not depend on where NumPy put its arrays.

LLVM compiles a loop that reads one array and writes another twice, vectorized and not, and picks one per call
by a runtime check of the two addresses (a write within a few vectors after the read falls back to the scalar
loop). A sum in such a loop is then added in two different orders, and the same call can differ in the last
bit from one call to the next, depending on what the allocator handed out (found by
``tests/hostile/test_concurrency.py``'s Gumbel-softmax test, a softmax of 3x5 differing in its last row).
Here every output a kernel allocates is placed right after its input, at gaps from 0 to far away, and each
result must be the same to the last bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels, losses

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")

#: elements between the input's end and each output's start (0: adjacent; 1000: beyond any vector check)
GAPS = (0, 1, 2, 3, 5, 8, 13, 21, 30, 40, 64, 1000)

ACTIVATIONS = [gk.Softmax(), gk.Softmax(temperature=0.7), gk.LogSoftmax(), gk.Sparsemax(), gk.Entmax15(),
               gk.EntmaxBisect(alpha=1.3), gk.TaylorSoftmax(), gk.TaylorSoftmax(order=4), gk.SphericalSoftmax(),
               gk.LogTaylorSoftmax(), gk.LogSphericalSoftmax()]
HEADS = [gk.compose(gk.Softmax(), losses.CrossEntropyLoss()),
         gk.compose(gk.Softmax(), losses.CrossEntropyLoss(label_smoothing=0.1)),
         gk.compose(gk.LogSoftmax(), losses.NLLLoss()), gk.compose(gk.LogTaylorSoftmax(), losses.NLLLoss()),
         gk.compose(gk.LogSphericalSoftmax(), losses.NLLLoss()), losses.SparsemaxLoss(), losses.Entmax15Loss(),
         losses.EntmaxBisectLoss(alpha=1.3)]


def _calls(g: np.ndarray, labels: np.ndarray) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    for act in ACTIVATIONS:
        calls += [(f"{act!r}", lambda x, a=act: a(x)), (f"{act!r}.vjp", lambda x, a=act: a.vjp(x, g)),
                  (f"{act!r}.jvp", lambda x, a=act: a.jvp(x, g))]
    for head in HEADS:
        calls.append((f"{head!r}.value_and_grad", lambda x, h=head: h.value_and_grad(x, labels)))
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", [(3, 5), (4, 7), (3, 10), (2, 33), (5, 16), (3, 64)], ids=str)
def test_results_do_not_depend_on_where_the_outputs_lie(monkeypatch, dtype, shape):
    rng = np.random.default_rng(11)
    x0 = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    n = x0.size
    empty_like = np.empty_like
    place: dict[str, Any] = {}

    def placed(a: Any, dtype: Any = None, *args: Any, **kwargs: Any) -> Any:
        buf = place.get("buf")
        if (buf is None or args or kwargs or type(a) is not np.ndarray or a.dtype != buf.dtype
                or dtype not in (None, a.dtype)):
            return empty_like(a, dtype, *args, **kwargs)
        start = place["next"]
        place["next"] = start + a.size + place["gap"]
        return buf[start:start + a.size].reshape(a.shape)

    monkeypatch.setattr(np, "empty_like", placed)
    differ = []
    for name, call in _calls(g, labels):
        results: dict[bytes, list[int]] = {}
        for gap in GAPS:
            buf = empty_like(x0, shape=(8 * (n + gap) + n,)).reshape(-1)
            x = buf[:n].reshape(shape)
            x[...] = x0
            place.update(buf=buf, next=n + gap, gap=gap)
            out = call(x)
            place["buf"] = None
            key = b"".join(np.array(part, copy=True).tobytes() for part in (out if isinstance(out, tuple) else (out,)))
            results.setdefault(key, []).append(gap)
        if len(results) > 1:
            differ.append(f"{name}: gaps {list(results.values())}")
    assert place.get("next", 0) > n, "no kernel output was placed: the test checks nothing"
    assert not differ, differ
