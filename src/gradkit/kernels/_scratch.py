"""A per-thread buffer for a kernel's intermediate array that never leaves gradkit.

``act.vjp(x, g)`` without ``y`` computes the forward output only to take its VJP. Allocated afresh, that
intermediate and the result are two arrays of the input's size, both freed when the call returns. glibc then
gives the top of its heap back to the system (its trim threshold follows the largest block it has freed), and
the next call takes a page fault for every 4 KiB page it writes again: 1,248 faults, about 2 ms, for
sparsemax's forward + VJP at 65536x10 float32 on this project's machine, more than the kernels' own 1.5 ms.
Writing the intermediate into one buffer kept per thread leaves a single allocation per call.

Only code that drops the array before it returns may use it, and only one such array at a time per thread.
"""

from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["SCRATCH_MAX", "transient"]

#: intermediates up to this many bytes use the thread's buffer; larger ones are allocated (NumPy backs arrays of
#: 4 MiB and more with huge pages, which take a few faults each, not thousands)
SCRATCH_MAX = 8 << 20

_local = threading.local()


def transient(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized C-contiguous array of ``shape`` and ``dtype``: a view of this thread's buffer (valid until
    the next call in this thread), or a new array above :data:`SCRATCH_MAX` bytes."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > SCRATCH_MAX:
        return np.empty(shape, dtype)
    buf = getattr(_local, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _local.buf = np.empty(max(nbytes, 1 << 16), np.uint8)  # grows to the largest size asked for
    return buf[:nbytes].view(dtype).reshape(shape)
