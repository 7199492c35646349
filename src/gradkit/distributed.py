"""Data-parallel training of :mod:`gradkit.nn` models on Dask (extra ``gradkit[dask]``).

The data are ``dask.array`` arrays chunked by rows; each block of rows is one task.
A step sends the current model to the workers once (as a value in the task graph);
every block computes, in NumPy, the sum of its per-item losses, the gradient of
that sum w.r.t. the parameters and the mean's denominator
(:meth:`gradkit.Composed.partial_sums`); the driver adds the blocks' results in
block order, divides by the total denominator and applies the optimizer. So a
full-batch step is exactly the single-process full-batch step, up to the order
of the additions.

* ``batch_size=None``: full batch, one step per epoch.
* ``batch_size=b``: synchronous mini-batches — at each step every block gives
  ``b`` rows of its own seeded permutation (:func:`minibatch_rows`), a global
  batch of ``b`` × (number of blocks) rows.

Data larger than memory: with ``persist=False`` (the default when the data
exceed half the cluster's memory) nothing is kept between steps: every step
streams the blocks from their source (Zarr, ``.npy`` files, …); the driver never
holds more than one block's results. A worker that dies mid-training loses its
tasks and data; Dask recomputes them from the graph and training goes on.
"""

from __future__ import annotations

import copy
import math
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._array import check_int, check_positive
from ._optional import require
from ._rng import RNGLike, check_rng, root_seed, seed_alias
from .composition import Composed
from .nn._engine import StepResult, Steps, run_epochs
from .nn.layers import ActivationLayer, Dropout
from .nn.model import Sequential
from .nn.optim import Adam, Optimizer
from .nn.train import DivergenceError, History, as_head, cast_finite, class_labels, predicted_classes

require("gradkit.distributed", "dask")

__all__ = ["fit", "from_npy", "from_zarr", "minibatch_rows"]


# -- data -------------------------------------------------------------------------------
def from_zarr(path: str | Path, component: str | None = None, chunks: Any = None) -> Any:
    """A lazy ``dask.array`` over a Zarr array (read block by block on the workers)."""
    import dask.array as da

    arr = da.from_zarr(str(path), component=component)
    return arr if chunks is None else arr.rechunk(chunks)


def _read_rows(path: str, start: int, stop: int, key: str | None) -> np.ndarray:
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            return np.asarray(f[key or f.files[0]])
    return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[start:stop])


def _npz_header(path: str, key: str | None) -> tuple[tuple[int, ...], np.dtype, str]:
    """Shape, dtype and name of an ``.npz`` member, from its header only (nothing else is read)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        name = key or (names[0] if names else "")
        if name not in names:
            raise ValueError(f"from_npy: {path} has no array {name!r}; found {names}")
        with archive.open(name + ".npy") as member:
            version = np.lib.format.read_magic(member)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(member)
    return shape, dtype, name


def from_npy(paths: str | Path | Sequence[str | Path], rows_per_chunk: int = 100_000, key: str | None = None) -> Any:
    """A lazy ``dask.array`` over ``.npy``/``.npz`` files, read on the workers.

    One ``.npy`` file is read in blocks of ``rows_per_chunk`` rows through a memory map;
    several files (a list, or a glob pattern) are stacked along the rows, one block per
    ``.npz`` file (``key`` names its array; default the first) or per ``rows_per_chunk``
    rows of each ``.npy`` file. Loading uses ``allow_pickle=False``.
    """
    import dask.array as da
    from dask import delayed

    if check_int(rows_per_chunk, "rows_per_chunk") < 1:
        raise ValueError(f"rows_per_chunk must be >= 1; got {rows_per_chunk}")
    if isinstance(paths, (str, Path)):
        text = str(paths)
        files = sorted(str(p) for p in Path(text).parent.glob(Path(text).name)) if any(c in text for c in "*?[") else [text]
    else:
        files = [str(p) for p in paths]
    if not files:
        raise ValueError(f"from_npy: no file matches {paths!r}")
    blocks = []
    for path in files:
        if path.endswith(".npz"):
            shape, dtype, name = _npz_header(path, key)
            blocks.append(da.from_delayed(delayed(_read_rows)(path, 0, shape[0], name), shape, dtype=dtype))
            continue
        if not path.endswith(".npy"):
            raise ValueError(f"from_npy: expected .npy or .npz files; got {path!r}")
        head = np.load(path, mmap_mode="r", allow_pickle=False)
        for start in range(0, head.shape[0], rows_per_chunk):
            stop = min(start + rows_per_chunk, head.shape[0])
            blocks.append(da.from_delayed(delayed(_read_rows)(path, start, stop, None),
                                          (stop - start,) + head.shape[1:], dtype=head.dtype))
    return da.concatenate(blocks, axis=0)


def minibatch_rows(block_rows: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[np.ndarray]]:
    """The rows each block gives at each step of an epoch: ``steps[k][b]`` (indices within block ``b``).

    Block ``b`` shuffles its rows with ``default_rng([seed, epoch, b])`` and gives them
    ``batch_size`` at a time; an epoch has ``ceil(max(block_rows) / batch_size)`` steps
    (a block that runs out gives none).

    ``seed`` is the root of these streams, an int >= 0 (what :func:`fit` makes of its ``rng``),
    not a SPEC 7 ``rng``: one Generator could not give every block and epoch a stream of its
    own that any worker can rebuild.
    """
    if check_int(seed, "seed") < 0:
        raise ValueError(f"seed must be an int >= 0 (the root of the blocks' streams); got {seed!r}")
    perms = [np.random.default_rng([seed, epoch, b]).permutation(n) for b, n in enumerate(block_rows)]
    steps = math.ceil(max(block_rows) / batch_size)
    return [[p[k * batch_size : (k + 1) * batch_size] for p in perms] for k in range(steps)]


# -- the work of one block -------------------------------------------------------------------
def _block_sums(model: Sequential, head: Composed, X: np.ndarray, y: np.ndarray,
                rows: Any, block: int = 0) -> tuple[float, dict[str, np.ndarray], float, int | None, int]:
    """``(Σ loss, {name: ∂Σ/∂param}, denominator, correct or None, items)`` for one block (or its
    ``rows``); ``correct`` is None when the block's targets do not name classes. NaN, infinity or
    values that overflow the model's dtype raise ``ValueError`` naming ``X`` (or ``y``) and ``block``."""
    if rows is not None:
        X, y = X[rows], y[rows]
    n = X.shape[0]
    if n == 0:
        return 0.0, {}, 0.0, 0, 0
    model = copy.deepcopy(model)  # tasks of one worker may share the scattered object: never mutate it
    try:
        X = cast_finite(np.asarray(X), "X", model.dtype)
        if np.issubdtype(y.dtype, np.floating):
            y = cast_finite(np.asarray(y), "y", model.dtype)
    except ValueError as exc:
        raise ValueError(f"{exc} (in block {block} of the row chunks{'' if rows is None else ', of its batch'})") from None
    if y.ndim == 1 and not isinstance(head.loss, _class_loss()):
        y = y[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        logits = model.forward(X, training=True)
        value, grad, denom = head.partial_sums(logits, y)
        model.backward(grad, input_grad=False)
    labels = class_labels(head, y)
    correct = int(np.sum(predicted_classes(head, logits) == labels)) if labels is not None else None
    grads = {name: g.astype(np.float64, copy=True) if g.dtype != np.float64 else g.copy() for name, g in model.grads.items()}
    return float(value), grads, float(denom), correct, n


def _class_loss() -> type:
    from .losses.classification import ClassLoss

    return ClassLoss


# -- the driver ----------------------------------------------------------------------------------
def _probe(address: str, timeout: float) -> None:
    """Connect to ``address`` and complete Dask's handshake within ``timeout`` seconds, else raise
    ``TimeoutError`` (or ``OSError``) naming both. ``distributed.Client(address, timeout=...)`` waits
    forever for the handshake of a server that accepts TCP connections but never answers."""
    import asyncio

    from distributed.comm import connect

    async def handshake() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
        await comm.close()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(handshake())
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread, below
            errors.append(exc)

    thread = threading.Thread(target=run, name="gradkit-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    hint = "is a Dask scheduler listening there (dask scheduler prints its address)?"
    if thread.is_alive() or (errors and isinstance(errors[0], (asyncio.TimeoutError, TimeoutError))):
        raise TimeoutError(f"no Dask scheduler answered at client={address!r} within timeout={timeout:g} s; {hint}")
    if errors:
        raise OSError(f"could not connect to a Dask scheduler at client={address!r} within timeout={timeout:g} s "
                      f"({type(errors[0]).__name__}: {errors[0]}); {hint}") from errors[0]


def _gather(client: Any, futures: list[Any], timeout: float) -> list[Any]:
    """The futures' results. A step may take as long as it needs, but every ``timeout`` seconds that it is not done
    the scheduler must answer a ping within ``timeout``: one that went silent (stopped, cut off) raises
    ``TimeoutError`` naming its address instead of waiting forever."""
    from distributed import wait

    while True:
        try:
            with client.as_current():  # wait() asks the current client; this one need not be the default
                wait(futures, timeout=timeout)
            return list(client.gather(futures))
        except TimeoutError:
            pass
        try:
            client.sync(client.scheduler.identity, callback_timeout=timeout)
        except (TimeoutError, OSError) as exc:
            address = getattr(client.scheduler, "address", None)
            raise TimeoutError(f"the Dask scheduler at client={address!r} stopped answering: no reply within "
                               f"timeout={timeout:g} s while a training step was running") from exc


@contextmanager
def _client(client: Any, timeout: float = 30.0) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if isinstance(client, Client):
        yield client
        return
    if isinstance(client, str):
        _probe(client, timeout)
        try:
            connected = Client(client, timeout=timeout)
        except (TimeoutError, OSError) as exc:  # answered the probe, then not the client's registration
            raise TimeoutError(f"the Dask scheduler at client={client!r} accepted the connection but did not "
                               f"register this client within timeout={timeout:g} s") from exc
        with connected as c:
            yield c
        return
    if client is not None:
        raise TypeError(f"client must be a distributed.Client, a scheduler address or None; got {type(client).__name__}")
    from distributed import default_client

    try:
        current = default_client()
    except ValueError:  # no default client: start one for this call
        current = None
    if current is not None:
        yield current
        return
    with LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def _as_dask(a: Any, chunks: Any) -> Any:
    import dask.array as da

    if isinstance(a, da.Array):
        return a
    a = np.asarray(a)
    return da.from_array(a, chunks=(chunks,) + a.shape[1:])


def _check_model(model: Sequential, head: Composed) -> None:
    for layer in model.layers:
        if (isinstance(layer, Dropout) and layer.rate > 0) or (
                isinstance(layer, ActivationLayer) and layer.activation.stochastic):
            raise ValueError(f"distributed training does not support random layers yet ({layer!r}): "
                             "each block would draw the same random numbers")
    if head.activation.stochastic:
        raise ValueError(f"distributed training does not support a random output activation ({head.activation!r})")
    if head.loss.reduction == "none":
        raise ValueError("the loss must reduce to a scalar (reduction 'mean' or 'sum'); got 'none'")


@seed_alias("gradkit.distributed.fit")
def fit(model: Sequential, X: Any, y: Any, *, loss: Any, optimizer: Optimizer | None = None, epochs: int = 1,
        batch_size: int | None = None, client: Any = None, rng: RNGLike = 0, persist: bool | None = None,
        callback: Callable[[int, dict[str, float]], None] | None = None, timeout: float = 30.0) -> History:
    """Train ``model`` on ``dask.array`` data with a Dask cluster; the driver keeps the weights.

    Parameters
    ----------
    model, loss, optimizer
        As in :func:`gradkit.nn.fit` (``optimizer`` defaults to ``Adam()``); the model is updated in place.
    X, y
        ``dask.array`` arrays chunked by rows (``X`` 2-d; ``y`` with the same row chunks, as the loss expects its
        targets). NumPy arrays are split into blocks of 100,000 rows (they live in the task graph: with
        ``persist=False`` they are sent again every step).
    epochs
        Passes over the data.
    batch_size
        None: full batch (one step per epoch). An int ``b``: each block gives ``b`` rows per step (see
        :func:`minibatch_rows`).
    client
        A ``distributed.Client``, a scheduler address, or None: the current default client, else a
        ``LocalCluster`` started (and closed) for this call.
    rng : None, int or numpy.random.Generator, default 0
        Source of the mini-batches (SPEC 7). The blocks shuffle with ``default_rng([root, epoch, b])``
        (:func:`minibatch_rows`): an int ``rng`` is the ``root`` itself (``rng=7`` gives what ``seed=7`` gave),
        ``None`` draws a fresh root, a Generator gives one draw for it (and is advanced by it). ``seed=`` is its
        deprecated old name.
    persist
        Keep the blocks in the workers' memory between steps. None: when the data take less than half the
        cluster's memory; False streams them from their source every step.
    callback
        ``callback(epoch, logs)`` after every epoch.
    timeout
        Seconds to wait for the scheduler at a ``client`` address to answer (connection, Dask's handshake, the
        client's registration): past it, ``TimeoutError`` naming the address and the timeout. During training a
        step may take as long as it needs, but every ``timeout`` seconds the scheduler must answer a ping within
        ``timeout`` (any client): one that stops answering raises ``TimeoutError`` naming its address.

    Returns
    -------
    History
        ``loss`` (and ``accuracy`` for class labels), ``lr``, ``time`` per epoch.
    """
    head = as_head(loss)
    _check_model(model, head)
    optimizer = optimizer if optimizer is not None else Adam()
    rng, y, timeout = _check_arguments(model, optimizer, epochs, batch_size, rng, y, timeout)
    X, y = _row_blocks(X, y)
    seed = root_seed(rng)  # drawn once the input is checked (a Generator is advanced by one draw)
    with _client(client, timeout) as c:
        steps = _BlockSteps(c, model, head, X, y, batch_size, seed, persist, timeout)
        return run_epochs(model, steps, optimizer, epochs, callback=callback)


def _check_arguments(model: Sequential, optimizer: Optimizer, epochs: Any, batch_size: Any, rng: Any, y: Any,
                     timeout: Any) -> tuple[Any, Any, float]:
    """``fit``'s arguments checked, in order, before the data's blocks: ``(rng, y, timeout)``."""
    if batch_size is not None and check_int(batch_size, "batch_size") < 1:
        raise ValueError(f"batch_size must be a positive int or None; got {batch_size!r}")
    if check_int(epochs, "epochs") < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs!r}")
    rng = check_rng(rng)
    if not hasattr(y, "shape"):
        y = np.asarray(y)
        if y.ndim == 0:
            raise TypeError(f"y must be an array of targets, one per row of X; got a scalar {y!r}")
    timeout = check_positive(timeout, "timeout")
    optimizer.check_lr(model.dtype)  # lr=1e39 on a float32 model: refused before any work
    return rng, y, timeout


def _row_blocks(X: Any, y: Any) -> tuple[Any, Any]:
    """``X`` and ``y`` as ``dask.array`` arrays with the same row chunks and one chunk across the other axes;
    refuses non-numeric data, a non-2-d or empty ``X``, unknown chunk sizes and unequal row counts."""
    X = _as_dask(X, 100_000)
    for name, a in (("X", X), ("y", y)):
        dt = np.dtype(a.dtype)
        if np.issubdtype(dt, np.complexfloating):
            raise TypeError(f"{name} must be real; got complex data ({dt}): complex data is not supported")
        if not (np.issubdtype(dt, np.number) or dt == np.bool_):
            raise TypeError(f"{name} must be a numeric array; got dtype {dt}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d (samples, features); got shape {X.shape}")
    if any(math.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes along the rows: call X.compute_chunk_sizes() first")
    if X.shape[0] == 0:
        raise ValueError("X must have at least one row")
    X = X.rechunk({1: -1})
    if getattr(y, "shape", (len(y),))[0] != X.shape[0]:
        raise ValueError(f"X and y must have the same number of samples; got {X.shape[0]} and {len(y)}")
    y = _as_dask(y, X.chunks[0])
    return X, y.rechunk({0: X.chunks[0], **{axis: -1 for axis in range(1, y.ndim)}})


class _BlockSteps(Steps):
    """``fit``'s data, ``dask.array`` blocks on the cluster: a step sends the model to every block (or to its rows
    of the step, :func:`minibatch_rows`) and adds the blocks' loss and gradient sums on the driver."""

    unit = "step"

    def __init__(self, client: Any, model: Sequential, head: Composed, X: Any, y: Any, batch_size: int | None,
                 seed: int, persist: bool | None, timeout: float) -> None:
        self.timeout = timeout
        if persist is None:
            memory = sum(w.get("memory_limit", 0) or 0 for w in client.scheduler_info()["workers"].values())
            persist = memory > 0 and (X.nbytes + y.nbytes) < 0.5 * memory
        if persist:
            X, y = client.persist([X, y])
        self.client, self.model, self.head, self.batch_size, self.seed = client, model, head, batch_size, seed
        self.X, self.y = X, y  # held for the whole training: persisted, their futures keep the blocks on the workers
        # a persisted array's graph is its futures, nothing to optimize; optimizing it anyway hands the tasks
        # their keys (tuples) in place of the blocks under dask 2024.12.0 to 2025.3.1
        self.x_blocks = X.to_delayed(optimize_graph=not persist).ravel().tolist()
        self.y_blocks = y.to_delayed(optimize_graph=not persist).ravel().tolist()
        self.block_rows = list(X.chunks[0])
        self.n = X.shape[0]

    def batches(self, epoch: int) -> list[list[Any]]:
        """Per step, the rows of each block: one full-batch step (None: all its rows), or the epoch's mini-batches."""
        if self.batch_size is None:
            return [[None] * len(self.x_blocks)]
        return minibatch_rows(self.block_rows, self.batch_size, self.seed, epoch)

    def step(self, rows: list[Any]) -> StepResult:
        import dask

        # the weights travel inside the graph (not scattered): a worker that dies takes no
        # unrecoverable data with it, and the scheduler can send the model again
        shipped = dask.delayed(copy.deepcopy(self.model), name=f"gradkit-model-{uuid.uuid4().hex}")
        tasks = [dask.delayed(_block_sums)(shipped, self.head, xb, yb, r, b)
                 for b, (xb, yb, r) in enumerate(zip(self.x_blocks, self.y_blocks, rows)) if r is None or len(r)]
        return self._reduce(_gather(self.client, self.client.compute(tasks), self.timeout))

    def _reduce(self, results: list[tuple[float, dict[str, np.ndarray], float, int | None, int]]) -> StepResult:
        """The blocks' sums added in block order (deterministic), divided by the total denominator."""
        model = self.model
        value, denom, count = 0.0, 0.0, 0
        correct: int | None = 0  # None once a block's targets do not name classes (as nn.fit decides for all rows)
        grads = {name: np.zeros(p.shape) for name, p in model.params.items()}
        for s, g, d, k, m in results:
            value += s
            denom += d
            correct = None if correct is None or k is None else correct + k
            count += m
            for name, part in g.items():
                grads[name] += part
        if self.head.loss.reduction == "sum":  # a sum over every block: nothing to divide by
            denom = 1.0
        scale = 1.0 / denom if denom > 0 else 0.0
        value *= scale
        if not (math.isfinite(value) and all(np.isfinite(g).all() for g in grads.values())):
            return value, {}, None, count, None
        with np.errstate(over="ignore"):  # a gradient beyond the model's dtype: caught by the optimizer's step
            step_grads = {k: (g * scale).astype(model.dtype) for k, g in grads.items()}
        return value, model.params, step_grads, count, correct

    def update_reason(self, exc: DivergenceError, grads: dict[str, np.ndarray]) -> str | None:
        """The optimizer's own reason, always: the gradients' sums were found finite (in float64) before the step;
        one that overflows the model's dtype when cast is named by the update it makes."""
        return exc.reason
