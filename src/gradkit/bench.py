"""``gradkit bench``: gradkit against its peers, measured side by side in one process.

Every contender runs in the same process and the same run (the machine is shared
and noisy: compare ratios, not absolute times). Medians of repeats, warm-up
excluded. Peak extra memory of gradkit's NumPy calls is measured with tracemalloc.
Results are printed, written as JSON, and drawn as a bar chart (PNG).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import compose, kernels, losses, nn
from ._io import atomic_open, save_png
from .activations import LogSoftmax, Softmax

__all__ = ["Case", "run"]

SHAPES = [(4096, 1024), (65536, 10), (256, 32768)]


@dataclass
class Case:
    """One operation at one size: milliseconds per contender, gradkit's peak extra memory."""

    op: str
    size: str
    ms: dict[str, float] = field(default_factory=dict)
    peak_mb: float | None = None
    output_mb: float | None = None

    def ratio(self, a: str, b: str) -> float | None:
        if a in self.ms and b in self.ms and self.ms[b] > 0:
            return self.ms[a] / self.ms[b]
        return None


@dataclass(frozen=True)
class Timed:
    """A contender of :func:`alternate`: ``fn`` is timed; ``before`` (untimed) runs just ahead of it."""

    fn: Callable[[], Any]
    before: Callable[[], Any] | None = None


def alternate(contenders: dict[str, Callable[[], Any] | Timed], rounds: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
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
    steps: dict[str, Timed] = {}
    for name, c in contenders.items():
        step = c if isinstance(c, Timed) else Timed(c)
        if not callable(step.fn) or (step.before is not None and not callable(step.before)):
            raise TypeError(f"contenders[{name!r}]: expected a callable or a Timed of callables; got {c!r}")
        steps[name] = step
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, step in steps.items():
            if step.before is not None:
                step.before()
            t0 = clock()
            step.fn()
            t1 = clock()
            if r >= warmup:
                samples[name].append(t1 - t0)
    return samples


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _torch(threads: int) -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _jax() -> Any:
    try:
        import jax

        jax.config.update("jax_platforms", "cpu")
        return jax
    except Exception:  # noqa: BLE001 - an optional peer
        return None


def _softmax_cases(shapes: list[tuple[int, int]], repeats: int, torch: Any, jax: Any) -> list[Case]:
    rng = np.random.default_rng(0)
    return [_softmax_case(shape, rng, repeats, torch, jax) for shape in shapes]


def _softmax_case(shape: tuple[int, int], rng: np.random.Generator, repeats: int, torch: Any, jax: Any) -> Case:
    """One shape (a function of its own, so the timed closures bind this shape's arrays)."""
    from scipy.special import softmax as sp_softmax

    act = Softmax()
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    out = np.empty_like(x)
    case = Case("softmax fwd+VJP", f"{shape[0]}x{shape[1]}", output_mb=x.nbytes / 2**20)

    def naive() -> Any:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
        return y * (g - (g * y).sum(axis=-1, keepdims=True))

    def scipy_() -> Any:
        y = sp_softmax(x, axis=-1)
        return y * (g - (g * y).sum(axis=-1, keepdims=True))

    def gradkit() -> Any:
        return act.vjp(x, g, y=act(x))

    case.ms["copy floor"] = _median_ms(lambda: np.copyto(out, x), repeats)
    case.ms["naive numpy"] = _median_ms(naive, repeats)
    case.ms["scipy.special"] = _median_ms(scipy_, repeats)
    with kernels.disabled():
        case.ms["gradkit portable"] = _median_ms(gradkit, repeats)
    case.ms["gradkit"] = _median_ms(gradkit, repeats)
    case.peak_mb = _peak_mb(gradkit)
    if torch is not None:
        xt, gt = torch.from_numpy(x), torch.from_numpy(g)
        case.ms["torch"] = _median_ms(
            lambda: torch._softmax_backward_data(gt, torch.softmax(xt, -1), -1, torch.float32), repeats
        )
    if jax is not None:
        import jax.numpy as jnp

        f = jax.jit(lambda x, g: jax.vjp(lambda v: jax.nn.softmax(v, axis=-1), x)[1](g)[0])
        xj, gj = jnp.asarray(x), jnp.asarray(g)
        case.ms["jax jit"] = _median_ms(lambda: f(xj, gj).block_until_ready(), repeats)
    return case


def _nll_cases(shapes: list[tuple[int, int]], repeats: int, torch: Any, jax: Any) -> list[Case]:
    rng = np.random.default_rng(1)
    return [_nll_case(shape, rng, repeats, torch, jax) for shape in shapes]


def _nll_case(shape: tuple[int, int], rng: np.random.Generator, repeats: int, torch: Any, jax: Any) -> Case:
    """One shape (a function of its own, so the timed closures bind this shape's arrays)."""
    head = compose(LogSoftmax(), losses.NLLLoss())
    z = rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, shape[1], shape[0])
    case = Case("log_softmax+NLL value+grad", f"{shape[0]}x{shape[1]}", output_mb=z.nbytes / 2**20)

    def naive() -> Any:
        s = z - z.max(axis=-1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=-1, keepdims=True))
        loss = -logp[np.arange(len(labels)), labels].mean()
        grad = np.exp(logp)
        grad[np.arange(len(labels)), labels] -= 1.0
        return loss, grad / len(labels)

    case.ms["naive numpy"] = _median_ms(naive, repeats)
    with kernels.disabled():
        case.ms["gradkit portable"] = _median_ms(lambda: head.value_and_grad(z, labels), repeats)
    case.ms["gradkit"] = _median_ms(lambda: head.value_and_grad(z, labels), repeats)
    case.peak_mb = _peak_mb(lambda: head.value_and_grad(z, labels))
    if torch is not None:
        zt, yt = torch.from_numpy(z), torch.from_numpy(labels)

        def torch_() -> Any:
            zz = zt.detach().requires_grad_(True)
            loss = torch.nn.functional.nll_loss(torch.log_softmax(zz, -1), yt)
            return torch.autograd.grad(loss, zz)

        case.ms["torch"] = _median_ms(torch_, repeats)
    if jax is not None:
        import jax.numpy as jnp

        def nll(v: Any, t: Any) -> Any:
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(v, axis=-1), t[:, None], axis=-1))

        f = jax.jit(jax.value_and_grad(nll))
        zj, tj = jnp.asarray(z), jnp.asarray(labels)
        case.ms["jax jit"] = _median_ms(lambda: jax.block_until_ready(f(zj, tj)), repeats)
    return case


def _jacobian_case(size: tuple[int, int], repeats: int, torch: Any, jax: Any = None) -> Case:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(size, dtype=np.float32)
    act = Softmax()
    y = act(x)
    n = size[1]
    case = Case("batched Jacobian", f"{size[0]}x{size[1]}", output_mb=size[0] * n * n * 4 / 2**20)
    case.ms["write output floor"] = _median_ms(lambda: np.ones((size[0], n, n), np.float32), repeats)
    case.ms["numpy broadcast"] = _median_ms(lambda: y[..., :, None] * np.eye(n, dtype=np.float32) - y[..., :, None] * y[..., None, :], repeats)
    with kernels.disabled():
        case.ms["gradkit portable"] = _median_ms(lambda: act.jacobian(x, y=y), repeats)
    case.ms["gradkit"] = _median_ms(lambda: act.jacobian(x, y=y), repeats)
    case.peak_mb = _peak_mb(lambda: act.jacobian(x, y=y))
    if torch is not None:
        xt = torch.from_numpy(x)
        jac = torch.func.vmap(torch.func.jacrev(lambda v: torch.softmax(v, -1)))
        case.ms["torch vmap(jacrev)"] = _median_ms(lambda: jac(xt), max(1, repeats // 3))
    if jax is not None:
        import jax.numpy as jnp

        jjac = jax.jit(jax.vmap(jax.jacrev(lambda v: jax.nn.softmax(v, axis=-1))))
        xj = jnp.asarray(x)
        case.ms["jax jit vmap(jacrev)"] = _median_ms(lambda: jjac(xj).block_until_ready(), repeats)
    return case


def _mlp_case(rows: int, repeats: int, torch: Any) -> Case:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((rows, 784), dtype=np.float32)
    y = rng.integers(0, 10, rows)
    case = Case("MLP epoch 784-256-10 SGD", f"{rows} rows, batch 128")
    head = compose(Softmax(), losses.CrossEntropyLoss())

    def gradkit() -> Any:
        model = nn.Sequential([nn.Dense(784, 256, rng=0), "relu", nn.Dense(256, 10, rng=1)])
        return nn.fit(model, X, y, loss=head, optimizer=nn.SGD(0.01), epochs=1, batch_size=128, rng=0)

    case.ms["gradkit"] = _median_ms(gradkit, repeats)
    try:
        import warnings

        from sklearn.neural_network import MLPClassifier

        def sklearn_() -> Any:
            clf = MLPClassifier((256,), solver="sgd", batch_size=128, learning_rate_init=0.01, momentum=0.0, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return clf.partial_fit(X, y, classes=np.arange(10))

        case.ms["scikit-learn"] = _median_ms(sklearn_, repeats)
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

        case.ms["torch"] = _median_ms(torch_, repeats)
    return case


def _sklearn_estimator_case(max_iter: int, repeats: int, seeds: int) -> Case | None:
    """``gradkit.sklearn.MLPClassifier`` against scikit-learn's at equal settings: digits, (64,), adam.

    Times one ``fit`` (median); the size column also gives the mean test accuracy over ``seeds`` seeds.
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        contenders: tuple[tuple[str, Any], ...] = (("gradkit", GkMLP), ("scikit-learn", SkMLP))
        for name, Estimator in contenders:
            def fit(E: Any = Estimator) -> Any:
                return E(random_state=0, **settings).fit(X_train, y_train)

            case.ms[name] = _median_ms(fit, repeats)
            for seed in range(seeds):
                clf = Estimator(random_state=seed, **settings).fit(X_train, y_train)
                accuracy[name].append(float(clf.score(X_test, y_test)))
    mean = {k: 100 * float(np.mean(v)) for k, v in accuracy.items()}
    case.size = (f"digits (64,) adam {max_iter} it, acc {mean['gradkit']:.1f}% vs "
                 f"{mean['scikit-learn']:.1f}% ({seeds} seeds)")
    return case


def _plot(cases: list[Case], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    peers = sorted({k for c in cases for k in c.ms})
    palette = [*plt.get_cmap("tab10")(np.arange(10)), *plt.get_cmap("Dark2")(np.arange(8))]  # 18 distinct colours
    colour = {peer: palette[i % len(palette)] for i, peer in enumerate(peers)}
    fig, ax = plt.subplots(figsize=(max(9, 1.9 * len(cases)), 5.5))
    width = 0.85 / max(len(c.ms) for c in cases)
    for i, c in enumerate(cases):  # each group holds only the contenders it measured, centred on its tick
        present = [p for p in peers if p in c.ms]
        for k, peer in enumerate(present):
            offset = (k - (len(present) - 1) / 2) * width
            ax.bar(i + offset, c.ms[peer], width, color=colour[peer], label=peer)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    labels = ["\n".join(textwrap.wrap(c.op, 16)) + f"\n{c.size}" for c in cases]
    ax.set_xticks(np.arange(len(cases)), labels, fontsize=8)
    ax.set(ylabel="milliseconds (median, log scale)", yscale="log", title="gradkit vs peers, measured in one run")
    ax.legend(unique.values(), unique.keys(), fontsize=7, ncol=3)
    fig.tight_layout()
    save_png(fig, path)


def run(out: str = "out/bench", *, quick: bool = False, threads: int = 2, print_fn: Callable[[str], None] = print) -> list[Case]:
    """Run every benchmark; print a table; write ``bench.json`` and ``bench.png`` under ``out``.

    ``quick`` uses small sizes and few repeats (to check that it runs, not to measure).
    """
    torch, jax = _torch(threads), _jax()
    repeats = 2 if quick else 15
    shapes = [(64, 32), (512, 10), (8, 256)] if quick else SHAPES
    cases = _softmax_cases(shapes, repeats, torch, jax) + _nll_cases(shapes, repeats, torch, jax)
    cases.append(_jacobian_case((32, 16) if quick else (1024, 256), max(1, repeats // 3), torch, jax))
    cases.append(_mlp_case(1024 if quick else 60000, 1 if quick else 3, torch))
    estimator_case = _sklearn_estimator_case(2 if quick else 50, 1 if quick else 5, 1 if quick else 5)
    if estimator_case is not None:
        cases.append(estimator_case)

    machine = f"{platform.machine()}, {threads} threads, numpy {np.__version__}" + (
        f", torch {torch.__version__}" if torch else "") + (f", jax {jax.__version__}" if jax else "") + (", numba kernels" if kernels.available() else ", no numba")
    print_fn(f"gradkit bench — {time.strftime('%Y-%m-%d')} — {machine}")
    for case in cases:
        line = f"{case.op:<28} {case.size:<22} " + "  ".join(f"{k} {v:.2f}" for k, v in case.ms.items())
        extras = []
        for ref in ("torch", "scikit-learn", "copy floor", "write output floor"):
            r = case.ratio("gradkit", ref)
            if r is not None:
                extras.append(f"gradkit/{ref} {r:.2f}")
        if case.peak_mb is not None and case.output_mb:
            extras.append(f"peak {case.peak_mb:.1f} MB = {case.peak_mb / case.output_mb:.2f}x output")
        print_fn(line + ("   |  " + ", ".join(extras) if extras else "") + "   (ms)")
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    doc = {"date": time.strftime("%Y-%m-%d"), "machine": machine,
           "cases": [{"op": c.op, "size": c.size, "ms": c.ms, "peak_mb": c.peak_mb, "output_mb": c.output_mb} for c in cases]}
    with atomic_open(target / "bench.json", "w") as handle:
        json.dump(doc, handle, indent=2)
    _plot(cases, target / "bench.png")
    print_fn(f"wrote {target / 'bench.json'}, {target / 'bench.png'}")
    return cases
