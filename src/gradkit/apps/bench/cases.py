"""The cases: each kernel, head and training loop against its peers on the same inputs, results checked
equal before timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ... import compose, kernels, losses, nn
from ...activations import Entmax15, EntmaxBisect, LogSoftmax, Softmax, Sparsemax
from .harness import Case, Goal, Timed, _peak_mb, _timed_case

SHAPES = [(4096, 1024), (65536, 10), (256, 32768)]


SPARSE_SHAPES = [(4096, 1024), (65536, 10)]


#: the steadiness goal: a kernel run right after another library's thread pool worked (torch, OpenBLAS) at most this many times its time alone
STEADY = 1.3


#: alternating rounds of the MLP epoch case (about 1.7 s a round with its three contenders)
MLP_ROUNDS = 5


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
    import entmax  # type: ignore[import-untyped]

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
from gradkit.apps.bench import cases as bench
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
    # the alternatives' kernel goal (≤ 0.33× the entmax package) covers the Fenchel-Young losses' value+grad too
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

        from ...sklearn import MLPClassifier as GkMLP
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
