"""``gradkit bench``: gradkit against its peers, each speed target judged as a ratio to the peers timed in the same run.

Method:

* every case runs its contenders in **alternating rounds** (A, B, C, A, B, C, ...; one untimed warm-up
  round first) in one process, so the load of a shared machine falls on each alike, with a pause of
  :data:`PAUSE` seconds before each, so that the thread pools of the one before (OpenBLAS, OpenMP, XLA
  spin-wait after their work) have gone to sleep;
* per contender the **minimum** and the **median** over the rounds are kept (all samples go to the JSON);
* the headline is the **ratio of minima** gradkit / peer, with the ratio of medians beside it; a case
  with a goal (e.g. ``gradkit / torch <= 0.8``) is marked **met** or **missed** by that ratio of minima;
* the contention cases time a kernel right after PyTorch and after OpenBLAS work, and their goal is
  steadiness: median / minimum <= 1.3;
* memory: gradkit's peak extra memory of one call by ``tracemalloc`` (NumPy arrays and Python objects),
  and the PyTorch-based peer's as the peak resident set size (``ru_maxrss``) of a fresh process during
  one call above its level with the inputs allocated and the operation warmed up on 8 rows -- a coarser
  measure (pages, the allocator's caching), reported as such.

Results are printed, written as ``bench.json`` (samples, date, machine), ``bench.md`` (the table the
README and docs/benchmarks.md embed) and ``bench.png`` (a bar chart of the minima).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import gradkit

from . import compose, kernels, losses, nn
from ._io import atomic_open, save_png
from .activations import Entmax15, EntmaxBisect, LogSoftmax, Softmax, Sparsemax

__all__ = ["Case", "Goal", "Timed", "alternate", "machine_info", "run", "write_markdown"]

SHAPES = [(4096, 1024), (65536, 10), (256, 32768)]
SPARSE_SHAPES = [(4096, 1024), (65536, 10)]
#: the steadiness goal: a kernel run right after another library's thread pool worked (torch, OpenBLAS) at most this many times its time alone
STEADY = 1.3
#: seconds of sleep before each timed contender (not in --quick): OpenBLAS's threads spin about 0.1 s
#: after a call, and the pools of PyTorch (OpenMP) and JAX (XLA) spin too; measured on 2 cores, gradkit's
#: Jacobian right after JAX took 44-391 ms without a pause and 28-54 ms with this one
PAUSE = 0.1
#: alternating rounds of the MLP epoch case (about 1.7 s a round with its three contenders)
MLP_ROUNDS = 5


@dataclass(frozen=True)
class Timed:
    """A contender of :func:`alternate`: ``fn`` is timed; ``before`` (untimed) runs just ahead of it."""

    fn: Callable[[], Any]
    before: Callable[[], Any] | None = None


def alternate(contenders: dict[str, Callable[[], Any] | Timed], rounds: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter, pause: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call of each contender, over ``rounds`` rounds that run them in turn (A, B, C, A, B, C, ...).

    ``warmup`` untimed rounds first (compilation, caches, thread pools). Alternating spreads the load of a
    shared machine over every contender alike, so that the ratio of their minima compares the code, and
    a contender's median over its minimum shows how steady it is next to the others.

    Parameters
    ----------
    contenders : dict of str to callable or Timed
        Name to a callable taking no argument, or a :class:`Timed` (with an untimed ``before`` step).
    rounds : int
        Timed rounds, at least 1.
    warmup : int, default 1
        Untimed rounds before them, at least 0.
    clock : callable, default time.perf_counter
        Seconds, monotonic.
    pause : float, default 0
        Seconds to sleep before each contender (and its ``before`` step): the thread pools of the one
        before (OpenBLAS, OpenMP, XLA) stop spinning, and do not slow it down.

    Returns
    -------
    dict of str to list of float
        Per contender, its ``rounds`` samples in seconds, in the order they were taken.

    Examples
    --------
    >>> samples = alternate({"a": lambda: sum(range(100)), "b": Timed(lambda: None, before=lambda: 1)}, rounds=3)
    >>> sorted(samples), [len(s) for s in samples.values()]
    (['a', 'b'], [3, 3])
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected an integer >= 1; got {rounds!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected an integer >= 0; got {warmup!r}")
    if not contenders:
        raise ValueError("contenders: expected at least one; got none")
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or not 0 <= pause <= 60:
        raise ValueError(f"pause: expected seconds in [0, 60]; got {pause!r}")
    steps: dict[str, Timed] = {}
    for name, c in contenders.items():
        step = c if isinstance(c, Timed) else Timed(c)
        if not callable(step.fn) or (step.before is not None and not callable(step.before)):
            raise TypeError(f"contenders[{name!r}]: expected a callable or a Timed of callables; got {c!r}")
        steps[name] = step
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, step in steps.items():
            if pause:
                time.sleep(pause)
            if step.before is not None:
                step.before()
            t0 = clock()
            step.fn()
            t1 = clock()
            if r >= warmup:
                samples[name].append(t1 - t0)
    return samples


@dataclass(frozen=True)
class Goal:
    """A target: ``min(subject) / min(against) <= limit``, or (``against=None``) ``median / min <= limit`` of
    every subject (the worst one counts)."""

    limit: float
    against: str | None = None
    subjects: tuple[str, ...] = ("gradkit",)

    def text(self) -> str:
        if self.against is None:
            return f"median/min <= {self.limit:g}"
        return f"{self.subjects[0]} / {self.against} <= {self.limit:g}"


@dataclass
class Case:
    """One operation at one size: samples (ms) per contender, its goal, memory."""

    op: str
    size: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    goal: Goal | None = None
    peak_mb: float | None = None  # gradkit, tracemalloc
    peer_peak_mb: dict[str, float] = field(default_factory=dict)  # peak RSS of a fresh process
    output_mb: float | None = None
    note: str = ""
    judged: bool = True  # False in --quick runs: tiny sizes, nothing to judge

    @property
    def ms(self) -> dict[str, float]:
        """The minimum per contender, in milliseconds."""
        return {k: min(v) for k, v in self.samples.items() if v}

    def median(self, name: str) -> float | None:
        v = self.samples.get(name)
        return statistics.median(v) if v else None

    def ratio(self, a: str, b: str) -> float | None:
        """Ratio of the minima of ``a`` and ``b`` (None where either is missing)."""
        ms = self.ms
        return ms[a] / ms[b] if a in ms and b in ms and ms[b] > 0 else None

    def median_ratio(self, a: str, b: str) -> float | None:
        ma, mb = self.median(a), self.median(b)
        return ma / mb if ma is not None and mb else None

    def goal_value(self) -> float | None:
        """The number the goal is judged by (None: no goal, or a contender was not measured)."""
        if self.goal is None:
            return None
        if self.goal.against is not None:
            return self.ratio(self.goal.subjects[0], self.goal.against)
        ms = self.ms
        values = [statistics.median(self.samples[s]) / ms[s] for s in self.goal.subjects if s in ms and ms[s] > 0]
        return max(values) if values and len(values) == len(self.goal.subjects) else None

    def verdict(self) -> str:
        """``met``, ``missed``, ``not measured`` (a contender is absent), ``no target`` or ``not judged`` (quick)."""
        if self.goal is None:
            return "no target"
        if not self.judged:
            return "not judged"
        value = self.goal_value()
        if value is None:
            return "not measured"
        return "met" if value <= self.goal.limit else "missed"

    def to_json(self) -> dict[str, Any]:
        goal = None if self.goal is None else {"limit": self.goal.limit, "against": self.goal.against,
                                               "subjects": list(self.goal.subjects), "text": self.goal.text()}
        return {"op": self.op, "size": self.size, "goal": goal, "value": self.goal_value(), "verdict": self.verdict(),
                "ms": {k: {"min": min(v), "median": statistics.median(v), "samples": v}
                       for k, v in self.samples.items() if v},
                "peak_mb": self.peak_mb, "peer_peak_mb": self.peer_peak_mb, "output_mb": self.output_mb,
                "note": self.note}


_pause = PAUSE  # run() sets 0 for --quick


def _timed_case(case: Case, contenders: dict[str, Callable[[], Any] | Timed], rounds: int) -> Case:
    for name, seconds in alternate(contenders, rounds, pause=_pause).items():
        case.samples[name] = [1e3 * t for t in seconds]
    return case


def _peak_mb(fn: Callable[[], Any]) -> float:
    """Peak memory traced by tracemalloc during one call of ``fn``, above what was allocated before, in MiB."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return (tracemalloc.get_traced_memory()[1] - base) / 2**20
    finally:
        tracemalloc.stop()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", "rb") as handle:
            text = handle.read(1 << 16).decode("ascii", "replace")
        for line in text.splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch_threads: int | None = None) -> dict[str, Any]:
    """The machine and the software a run measured: CPU model, cores, versions, numba's threading layer."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(), "arch": platform.machine(), "os": platform.platform(terse=True),
        "cores": os.cpu_count(), "available_cores": kernels.available_cores(), "python": platform.python_version(),
        "gradkit": gradkit.__version__, "numpy": np.__version__,
    }
    for name in ("numba", "torch", "jax", "entmax", "scikit-learn", "scipy", "threadpoolctl"):
        info[name] = _version(name)
    info["torch_threads"] = torch_threads
    info["numba_layer"] = info["kernel_threads"] = None
    if kernels.available():
        from .kernels import _threads

        info["numba_layer"], info["kernel_threads"] = _threads.layer(), _threads.num_threads()
    return info


def _machine_line(info: dict[str, Any]) -> str:
    parts = [f"{info['cpu']} ({info['arch']}), {info['available_cores']} of {info['cores']} cores usable",
             f"NumPy {info['numpy']}"]
    if info.get("numba"):
        parts.append(f"numba {info['numba']} (layer {info['numba_layer']}, {info['kernel_threads']} kernel threads)")
    if info.get("torch"):
        parts.append(f"PyTorch {info['torch']} ({info['torch_threads']} threads)")
    for key, label in (("jax", "JAX"), ("entmax", "entmax")):
        if info.get(key):
            parts.append(f"{label} {info[key]}")
    return ", ".join(parts)


def _torch(threads: int) -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _entmax() -> Any:
    try:
        import entmax  # type: ignore[import-untyped]
    except ImportError:
        return None
    return entmax


def _jax() -> Any:
    try:
        import jax

        jax.config.update("jax_platforms", "cpu")
        return jax
    except Exception:  # noqa: BLE001 - an optional peer
        return None


def _inputs(key: str, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The arrays of one case, the same in this process and in the peer-memory child (seeded by the case)."""
    rng = np.random.default_rng([zlib.crc32(key.encode()), *shape])
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, shape[1], shape[0])
    return {"x": x, "g": g, "labels": labels}


#: the PyTorch-based peers: key -> (package, label)
_PEERS = {"softmax": "torch", "nll": "torch", "jacobian": "torch vmap(jacrev)", "sparsemax": "entmax",
          "entmax15": "entmax", "sparsemax_loss": "entmax", "entmax15_loss": "entmax", "entmax_bisect": "entmax"}


def _peer_call(key: str, a: dict[str, np.ndarray], torch: Any) -> Callable[[], Any]:
    """The PyTorch (or ``entmax`` package) call of case ``key`` on the arrays ``a``: forward and backward."""
    x, g = torch.from_numpy(a["x"]), torch.from_numpy(a["g"])
    labels = torch.from_numpy(a["labels"])
    if key == "softmax":
        return lambda: torch._softmax_backward_data(g, torch.softmax(x, -1), -1, torch.float32)
    if key == "nll":
        def nll() -> Any:
            z = x.detach().requires_grad_(True)
            loss = torch.nn.functional.nll_loss(torch.log_softmax(z, -1), labels)
            return loss, torch.autograd.grad(loss, z)

        return nll
    if key == "jacobian":
        jac = torch.func.vmap(torch.func.jacrev(lambda v: torch.softmax(v, -1)))
        return lambda: jac(x)
    import entmax

    if key in ("sparsemax", "entmax15", "entmax_bisect"):
        fn = {"sparsemax": entmax.sparsemax, "entmax15": entmax.entmax15,
              "entmax_bisect": lambda v, dim: entmax.entmax_bisect(v, alpha=1.5, dim=dim)}[key]

        def fwd_bwd() -> Any:
            v = x.detach().requires_grad_(True)
            fn(v, dim=-1).backward(g)
            return v.grad

        return fwd_bwd
    if key in ("sparsemax_loss", "entmax15_loss"):
        module = entmax.SparsemaxLoss() if key == "sparsemax_loss" else entmax.Entmax15Loss()

        def value_grad() -> Any:
            v = x.detach().requires_grad_(True)
            loss = module(v, labels)
            return loss, torch.autograd.grad(loss, v)

        return value_grad
    raise ValueError(f"key: expected one of {sorted(_PEERS)}; got {key!r}")


_PEER_CHILD = r"""
import json, sys
import torch
from gradkit import bench
key, rows, cols, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
bench._peer_call(key, bench._inputs(key, (8, cols)), torch)()  # imports, lazy initialisation, allocator
call = bench._peer_call(key, bench._inputs(key, (rows, cols)), torch)

def status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB

with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # Linux: the peak RSS (VmHWM) starts again from the current RSS
base = status("VmRSS")
call()
print(json.dumps(status("VmHWM") - base))
"""


def _peer_peak_mb(key: str, shape: tuple[int, int], threads: int) -> float | None:
    """The peer's peak extra resident memory during one call, in a fresh process (None where not measurable)."""
    if not (os.path.isfile("/proc/self/clear_refs") and os.path.isfile("/proc/self/status")):
        return None  # not Linux: no resettable peak RSS
    src = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        done = subprocess.run([sys.executable, "-c", _PEER_CHILD, key, str(shape[0]), str(shape[1]), str(threads)],
                              capture_output=True, text=True, timeout=600, env=env, check=False)
        return float(json.loads(done.stdout.strip().splitlines()[-1])) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError, OSError):
        return None


def _size(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _softmax_case(shape: tuple[int, int], rounds: int, torch: Any, jax: Any) -> Case:
    from scipy.special import softmax as sp_softmax

    act = Softmax()
    a = _inputs("softmax", shape)
    x, g = a["x"], a["g"]
    out = np.empty_like(x)
    case = Case("softmax fwd+VJP", _size(shape), goal=Goal(0.8, "torch"), output_mb=x.nbytes / 2**20)

    def naive() -> Any:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
        return y * (g - (g * y).sum(axis=-1, keepdims=True))

    def scipy_() -> Any:
        y = sp_softmax(x, axis=-1)
        return y * (g - (g * y).sum(axis=-1, keepdims=True))

    def ours() -> Any:
        return act.vjp(x, g, y=act(x))

    def portable() -> Any:
        with kernels.disabled():
            return ours()

    contenders: dict[str, Any] = {"gradkit": ours, "gradkit portable": portable, "copy floor": lambda: np.copyto(out, x),
                                  "naive numpy": naive, "scipy.special": scipy_}
    if torch is not None:
        contenders["torch"] = _peer_call("softmax", a, torch)
    if jax is not None:
        import jax.numpy as jnp

        f = jax.jit(lambda x, g: jax.vjp(lambda v: jax.nn.softmax(v, axis=-1), x)[1](g)[0])
        xj, gj = jnp.asarray(x), jnp.asarray(g)
        contenders["jax jit"] = lambda: f(xj, gj).block_until_ready()
    _timed_case(case, contenders, rounds)
    case.peak_mb = _peak_mb(ours)
    return case


def _nll_case(shape: tuple[int, int], rounds: int, torch: Any, jax: Any) -> Case:
    head = compose(LogSoftmax(), losses.NLLLoss())
    a = _inputs("nll", shape)
    z, labels = a["x"], a["labels"]
    case = Case("log_softmax+NLL value+grad", _size(shape), goal=Goal(0.8, "torch"), output_mb=z.nbytes / 2**20)

    def naive() -> Any:
        s = z - z.max(axis=-1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=-1, keepdims=True))
        loss = -logp[np.arange(len(labels)), labels].mean()
        grad = np.exp(logp)
        grad[np.arange(len(labels)), labels] -= 1.0
        return loss, grad / len(labels)

    def ours() -> Any:
        return head.value_and_grad(z, labels)

    def portable() -> Any:
        with kernels.disabled():
            return ours()

    contenders: dict[str, Any] = {"gradkit": ours, "gradkit portable": portable, "naive numpy": naive}
    if torch is not None:
        contenders["torch"] = _peer_call("nll", a, torch)
    if jax is not None:
        import jax.numpy as jnp

        def nll(v: Any, t: Any) -> Any:
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(v, axis=-1), t[:, None], axis=-1))

        f = jax.jit(jax.value_and_grad(nll))
        zj, tj = jnp.asarray(z), jnp.asarray(labels)
        contenders["jax jit"] = lambda: jax.block_until_ready(f(zj, tj))
    _timed_case(case, contenders, rounds)
    case.peak_mb = _peak_mb(ours)
    return case


def _jacobian_case(shape: tuple[int, int], rounds: int, torch: Any, jax: Any) -> Case:
    act = Softmax()
    a = _inputs("jacobian", shape)
    x = a["x"]
    y = act(x)
    rows, n = shape
    case = Case("batched Jacobian", _size(shape), goal=Goal(1.0, "np.full output"), output_mb=rows * n * n * 4 / 2**20)
    eye = np.eye(n, dtype=np.float32)

    def portable() -> Any:
        with kernels.disabled():
            return act.jacobian(x, y=y)

    contenders: dict[str, Any] = {
        "gradkit": lambda: act.jacobian(x, y=y), "gradkit portable": portable,
        "np.full output": lambda: np.full((rows, n, n), 0.5, np.float32),
        "numpy broadcast": lambda: y[..., :, None] * eye - y[..., :, None] * y[..., None, :],
    }
    if torch is not None:
        contenders["torch vmap(jacrev)"] = _peer_call("jacobian", a, torch)
    if jax is not None:
        import jax.numpy as jnp

        jjac = jax.jit(jax.vmap(jax.jacrev(lambda v: jax.nn.softmax(v, axis=-1))))
        xj = jnp.asarray(x)
        contenders["jax jit"] = lambda: jjac(xj).block_until_ready()
    _timed_case(case, contenders, rounds)
    case.peak_mb = _peak_mb(lambda: act.jacobian(x, y=y))
    return case


def _sparse_case(key: str, shape: tuple[int, int], rounds: int, torch: Any, entmax: Any) -> Case:
    """sparsemax / entmax-1.5 / alpha-entmax (bisection) forward + VJP with a random upstream vector."""
    act: Any
    if key == "entmax_bisect":
        act = EntmaxBisect(alpha=1.5)
        op = "entmax_bisect (alpha 1.5) fwd+VJP"
    else:
        act = Sparsemax() if key == "sparsemax" else Entmax15()
        op = f"{key} fwd+VJP"
    a = _inputs(key, shape)
    x, g = a["x"], a["g"]
    goal = Goal(0.33, "entmax") if key != "entmax_bisect" else None
    case = Case(op, _size(shape), goal=goal, output_mb=x.nbytes / 2**20)

    def ours() -> Any:
        return act.vjp(x, g)  # the forward, then the VJP

    return _against_entmax(case, key, a, ours, rounds, torch, entmax)


def _against_entmax(case: Case, key: str, a: dict[str, Any], ours: Callable[[], Any], rounds: int, torch: Any,
                    entmax: Any) -> Case:
    """Time ``ours`` (kernels), its portable path and the ``entmax`` package's ``key`` on the inputs ``a`` into
    ``case``, with gradkit's peak memory (the sparse maps and the Fenchel-Young losses)."""

    def portable() -> Any:
        with kernels.disabled():
            return ours()

    contenders: dict[str, Any] = {"gradkit": ours, "gradkit portable": portable}
    if torch is not None and entmax is not None:
        contenders["entmax"] = _peer_call(key, a, torch)
    _timed_case(case, contenders, rounds)
    case.peak_mb = _peak_mb(ours)
    return case


def _fy_case(key: str, shape: tuple[int, int], rounds: int, torch: Any, entmax: Any) -> Case:
    """A Fenchel-Young loss with integer labels, value and gradient."""
    loss = losses.SparsemaxLoss() if key == "sparsemax_loss" else losses.Entmax15Loss()
    a = _inputs(key, shape)
    z, labels = a["x"], a["labels"]
    # the issue's goal for the kernels of the alternatives covers the Fenchel-Young losses' value+grad too
    case = Case(f"{key} value+grad", _size(shape), goal=Goal(0.33, "entmax"), output_mb=z.nbytes / 2**20)

    def ours() -> Any:
        return loss.value_and_grad(z, labels)

    return _against_entmax(case, key, a, ours, rounds, torch, entmax)


def _mlp_case(rows: int, rounds: int, torch: Any) -> Case:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((rows, 784), dtype=np.float32)
    y = rng.integers(0, 10, rows)
    case = Case("MLP epoch 784-256-10 SGD", f"{rows} rows, batch 128", goal=Goal(0.8, "torch"))
    head = compose(Softmax(), losses.CrossEntropyLoss())

    def ours() -> Any:
        model = nn.Sequential([nn.Dense(784, 256, rng=0), "relu", nn.Dense(256, 10, rng=1)])
        return nn.fit(model, X, y, loss=head, optimizer=nn.SGD(0.01), epochs=1, batch_size=128, rng=0)

    contenders: dict[str, Any] = {"gradkit": ours}
    try:
        import warnings

        from sklearn.neural_network import MLPClassifier

        def sklearn_() -> Any:
            clf = MLPClassifier((256,), solver="sgd", batch_size=128, learning_rate_init=0.01, momentum=0.0,
                                random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return clf.partial_fit(X, y, classes=np.arange(10))

        contenders["scikit-learn"] = sklearn_
    except ImportError:
        pass
    if torch is not None:
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def torch_() -> Any:
            m = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
            opt = torch.optim.SGD(m.parameters(), lr=0.01)
            perm = torch.randperm(rows)
            for s in range(0, rows, 128):
                idx = perm[s : s + 128]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(m(Xt[idx]), yt[idx]).backward()
                opt.step()

        contenders["torch"] = torch_
    return _timed_case(case, contenders, rounds)


def _sklearn_estimator_case(max_iter: int, rounds: int, seeds: int) -> Case | None:
    """``gradkit.sklearn.MLPClassifier`` against scikit-learn's at equal settings: digits, (64,), adam.

    Times one ``fit``; the size column also gives the mean test accuracy over ``seeds`` seeds.
    """
    try:
        import warnings

        from sklearn.datasets import load_digits
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.model_selection import train_test_split
        from sklearn.neural_network import MLPClassifier as SkMLP

        from .sklearn import MLPClassifier as GkMLP
    except ImportError:
        return None
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    settings: dict[str, Any] = {"hidden_layer_sizes": (64,), "solver": "adam", "max_iter": max_iter}
    accuracy: dict[str, list[float]] = {"gradkit": [], "scikit-learn": []}
    case = Case("MLPClassifier fit", "")
    estimators: dict[str, Any] = {"gradkit": GkMLP, "scikit-learn": SkMLP}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        def fit(Estimator: Any) -> Callable[[], Any]:
            return lambda: Estimator(random_state=0, **settings).fit(X_train, y_train)

        contenders: dict[str, Callable[[], Any] | Timed] = {name: fit(E) for name, E in estimators.items()}
        _timed_case(case, contenders, rounds)
        for name, Estimator in estimators.items():
            for seed in range(seeds):
                clf = Estimator(random_state=seed, **settings).fit(X_train, y_train)
                accuracy[name].append(float(clf.score(X_test, y_test)))
    mean = {k: 100 * float(np.mean(v)) for k, v in accuracy.items()}
    case.size = (f"digits (64,) adam {max_iter} it, acc {mean['gradkit']:.1f}% vs "
                 f"{mean['scikit-learn']:.1f}% ({seeds} seeds)")
    return case


def _contention_case(shape: tuple[int, int], rounds: int, torch: Any) -> Case:
    """softmax fwd+VJP timed right after PyTorch work and right after OpenBLAS work; steadiness is the goal."""
    act = Softmax()
    a = _inputs("contention", shape)
    x, g = a["x"], a["g"]
    rng = np.random.default_rng(5)
    m1, m2 = (rng.standard_normal((1024, 1024), dtype=np.float32) for _ in range(2))

    def ours() -> Any:
        return act.vjp(x, g, y=act(x))

    def blas() -> Any:
        return m1 @ m2

    contenders: dict[str, Any] = {"gradkit alone": ours, "gradkit after OpenBLAS": Timed(ours, before=blas)}
    subjects = ["gradkit after OpenBLAS"]
    if torch is not None:
        xt, gt, t1, t2 = (torch.from_numpy(v) for v in (x, g, m1, m2))

        def torch_work() -> Any:
            v = xt.detach().requires_grad_(True)
            torch.softmax(v, -1).backward(gt)
            return t1 @ t2

        contenders["gradkit after torch"] = Timed(ours, before=torch_work)
        contenders["torch alone"] = torch_work
        contenders["torch after gradkit"] = Timed(torch_work, before=ours)
        subjects.insert(0, "gradkit after torch")
    case = Case("contention: softmax fwd+VJP next to torch/OpenBLAS", _size(shape),
                goal=Goal(STEADY, None, tuple(subjects)), output_mb=x.nbytes / 2**20)
    _timed_case(case, contenders, rounds)
    if torch is not None:
        r = case.median_ratio("torch after gradkit", "torch alone")
        case.note = f"torch's median after gradkit / alone: {r:.2f}" if r is not None else ""
    return case


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def _peer_of(case: dict[str, Any]) -> str | None:
    """The contender a case is compared with: its goal's, else torch / entmax / the first one not gradkit's."""
    goal = case.get("goal")
    if goal and goal.get("against"):
        return str(goal["against"])
    names = [k for k in case["ms"] if not k.startswith("gradkit")]
    for preferred in ("torch", "entmax"):
        if preferred in names:
            return preferred
    return names[0] if names and goal is None else None


def _headline(case: dict[str, Any]) -> tuple[str, str]:
    """(ratio of minima, ratio of medians) as text, for one case of the JSON document."""
    ms = case["ms"]
    goal = case.get("goal")
    if goal and goal.get("against") is None:  # steadiness
        worst = max((ms[s]["median"] / ms[s]["min"] for s in goal["subjects"] if s in ms), default=None)
        return f"median/min {_fmt(worst)}", ""
    peer = _peer_of(case)
    if peer is None or peer not in ms or "gradkit" not in ms:
        return "–", "–"
    return _fmt(ms["gradkit"]["min"] / ms[peer]["min"], 2), _fmt(ms["gradkit"]["median"] / ms[peer]["median"], 2)


def _cell(ms: dict[str, Any], name: str) -> str:
    if name not in ms:
        return "–"
    return f"{_fmt(ms[name]['min'])} ({_fmt(ms[name]['median'])})"


def markdown(doc: dict[str, Any]) -> str:
    """The results table (markdown) of a ``bench.json`` document: date, machine, every target met or missed."""
    lines = [(f"`gradkit bench`, {doc['date']}, {_machine_line(doc['machine'])}; float32, milliseconds: "
              f"minimum over {doc['settings']['rounds']} alternating rounds (median in brackets)."), "",
             ("| operation | size | gradkit | peer | peer time | gradkit / peer: minima (medians) | JAX jit "
              "| gradkit peak memory / output | peer peak memory | target | verdict |"),
             "|---|---|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for c in doc["cases"]:
        ms = c["ms"]
        goal = c.get("goal")
        steady = bool(goal) and goal.get("against") is None
        peer = None if steady else _peer_of(c)
        ratio, medians = _headline(c)
        mem = "–"
        if c.get("peak_mb") is not None:
            mem = f"{c['peak_mb']:.3g} MB" + (f" ({c['peak_mb'] / c['output_mb']:.2f}×)" if c.get("output_mb") else "")
        peer_mem = c.get("peer_peak_mb", {}).get(peer or "", None)
        ours = "gradkit alone" if steady else "gradkit"
        verdict = {"met": "met", "missed": "**missed**"}.get(c["verdict"], c["verdict"])
        lines.append(
            f"| {c['op']} | {c['size'].replace('x', '×')} | {_cell(ms, ours)} | {peer or '–'} | "
            f"{_cell(ms, peer) if peer else '–'} | {ratio}{f' ({medians})' if medians and medians != '–' else ''} | "
            f"{_cell(ms, 'jax jit')} | {mem} | {'–' if peer_mem is None else f'{peer_mem:.3g} MB'} | "
            f"{goal['text'] if goal else '–'} | {verdict} |")
    lines += ["", "All contenders, minimum (median) in ms:", ""]
    for c in doc["cases"]:
        cells = ", ".join(f"{k} {_cell(c['ms'], k)}" for k in c["ms"])
        note = f" — {c['note']}" if c.get("note") else ""
        lines.append(f"- {c['op']} {c['size'].replace('x', '×')}: {cells}{note}")
    return "\n".join(lines) + "\n"


def write_markdown(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`markdown` of ``doc`` to ``path`` (atomically); return the path."""
    target = Path(path)
    with atomic_open(target, "w") as handle:
        handle.write(markdown(doc))
    return target


def _plot(cases: list[Case], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    cases = [c for c in cases if c.ms]
    peers = sorted({k for c in cases for k in c.ms})
    palette = [*plt.get_cmap("tab10")(np.arange(10)), *plt.get_cmap("Dark2")(np.arange(8))]  # 18 distinct colours
    colour = {peer: palette[i % len(palette)] for i, peer in enumerate(peers)}
    fig, ax = plt.subplots(figsize=(max(9, 1.5 * len(cases)), 5.5))
    width = 0.85 / max(len(c.ms) for c in cases)
    for i, c in enumerate(cases):  # each group holds only the contenders it measured, centred on its tick
        present = [p for p in peers if p in c.ms]
        for k, peer in enumerate(present):
            offset = (k - (len(present) - 1) / 2) * width
            ax.bar(i + offset, c.ms[peer], width, color=colour[peer], label=peer)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    labels = ["\n".join(textwrap.wrap(c.op, 16)) + f"\n{c.size}" for c in cases]
    ax.set_xticks(np.arange(len(cases)), labels, fontsize=6)
    ax.set(ylabel="milliseconds (minimum over alternating rounds, log)", yscale="log",
           title="gradkit vs peers, measured in one run")
    ax.legend(unique.values(), unique.keys(), fontsize=6, ncol=3)
    fig.tight_layout()
    save_png(fig, path)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer >= {low}; got {value!r} of type {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}; got {value}")
    return value


def run(out: str | os.PathLike[str] = "out/bench", *, quick: bool = False, threads: int = 2, rounds: int = 15,
        markdown_path: str | os.PathLike[str] | None = None, peer_memory: bool = True,
        print_fn: Callable[[str], None] = print) -> list[Case]:
    """Run every benchmark; print the results; write ``bench.json``, ``bench.md`` and ``bench.png`` under ``out``.

    Parameters
    ----------
    out : path, default "out/bench"
        Folder for the results (created).
    quick : bool, default False
        Tiny sizes and 2 rounds: checks that everything runs, measures nothing. The peers' memory is then
        measured for one case only.
    threads : int, default 2
        PyTorch's threads.
    rounds : int, default 15
        Alternating rounds of the fast cases (the slow ones, sparse maps, Jacobian, MLP, take fewer).
    markdown_path : path, optional
        Also write the markdown table there (e.g. for the docs).
    peer_memory : bool, default True
        Measure the PyTorch-based peers' peak memory (a fresh process per case).
    print_fn : callable, default print
        Where the text goes.

    Returns
    -------
    list of Case
    """
    global _pause
    threads = _check_int("threads", threads, 1)
    rounds = _check_int("rounds", rounds, 1)
    if quick:
        rounds = 2
    _pause = 0.0 if quick else PAUSE
    torch, jax, entmax = _torch(threads), _jax(), _entmax()
    shapes = [(64, 32), (512, 10), (8, 256)] if quick else SHAPES
    sparse_shapes = [(64, 32), (512, 10)] if quick else SPARSE_SHAPES
    slow = rounds if quick else max(3, rounds // 2)
    cases: list[Case] = []
    measure_peer: list[tuple[Case, str, tuple[int, int]]] = []  # (case, peer key, shape)

    def add(case: Case, key: str | None = None, shape: tuple[int, int] | None = None) -> None:
        cases.append(case)
        if key is not None and shape is not None and torch is not None and (key in ("softmax", "nll", "jacobian")
                                                                          or entmax is not None):
            measure_peer.append((case, key, shape))
        print_fn(f"  measured {case.op} {case.size}")

    for shape in shapes:
        add(_softmax_case(shape, rounds, torch, jax), "softmax", shape)
    for shape in shapes:
        add(_nll_case(shape, rounds, torch, jax), "nll", shape)
    jshape = (32, 16) if quick else (1024, 256)
    add(_jacobian_case(jshape, max(3, rounds // 3) if not quick else rounds, torch, jax), "jacobian", jshape)
    sparse_keys = ["sparsemax", "entmax15"]
    for key in sparse_keys:
        for shape in sparse_shapes:
            add(_sparse_case(key, shape, slow, torch, entmax), key, shape)
    add(_sparse_case("entmax_bisect", sparse_shapes[0], slow, torch, entmax), "entmax_bisect", sparse_shapes[0])
    for key in ("sparsemax_loss", "entmax15_loss"):
        for shape in sparse_shapes:
            add(_fy_case(key, shape, slow, torch, entmax), key, shape)
    # five rounds: with three, one slow stretch of this shared machine decided a minimum (gradkit's three epochs
    # all took 500 ms in one run, 400-420 ms in the runs around it)
    add(_mlp_case(256 if quick else 60000, 1 if quick else MLP_ROUNDS, torch))
    estimator_case = _sklearn_estimator_case(2 if quick else 50, 1 if quick else 3, 1 if quick else 5)
    if estimator_case is not None:
        add(estimator_case)
    for shape in shapes[:1] if quick else shapes:
        add(_contention_case(shape, rounds if quick else max(rounds, 15), torch))
    for case in cases:
        case.judged = not quick
    if peer_memory:
        for case, key, shape in measure_peer[:1] if quick else measure_peer:
            peak = _peer_peak_mb(key, shape, threads)
            if peak is not None:
                case.peer_peak_mb[_PEERS[key]] = peak

    info = machine_info(threads if torch is not None else None)
    doc: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": info,
           "settings": {"rounds": rounds, "quick": quick, "torch_threads": threads, "pause_s": _pause},
           "cases": [c.to_json() for c in cases]}
    print_fn(f"gradkit bench — {doc['date']} — {_machine_line(info)}")
    print_fn("minimum (median) in ms over alternating rounds; headline: ratio of minima gradkit / peer")
    for c, d in zip(cases, doc["cases"]):
        ratio, medians = _headline(d)
        goal = f"  target {c.goal.text()}: {c.verdict()}" if c.goal else ""
        peer = _peer_of(d)
        head = f"gradkit/{peer} {ratio} (medians {medians})" if peer and not ratio.startswith("median") else ratio
        print_fn(f"{c.op:<34} {c.size:<12} " + "  ".join(f"{k} {_cell(d['ms'], k)}" for k in d["ms"]))
        extras = [head]
        if c.peak_mb is not None:
            extras.append(f"peak {c.peak_mb:.3g} MB" + (f" = {c.peak_mb / c.output_mb:.2f}x output" if c.output_mb
                                                         else ""))
        extras += [f"{k} peak RSS {v:.3g} MB" for k, v in c.peer_peak_mb.items()]
        if c.note:
            extras.append(c.note)
        print_fn("    " + ", ".join(extras) + goal)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    with atomic_open(target / "bench.json", "w") as handle:
        json.dump(doc, handle, indent=1)
    write_markdown(doc, target / "bench.md")
    if markdown_path is not None:
        write_markdown(doc, markdown_path)
    _plot(cases, target / "bench.png")
    met = sum(c.verdict() == "met" for c in cases)
    missed = [f"{c.op} {c.size}" for c in cases if c.verdict() == "missed"]
    print_fn(f"targets: {met} met, {len(missed)} missed" + (f" ({'; '.join(missed)})" if missed else ""))
    print_fn(f"wrote {target / 'bench.json'}, {target / 'bench.md'}, {target / 'bench.png'}"
             + (f", {markdown_path}" if markdown_path is not None else ""))
    return cases
