"""The main job, ``gradkit train``: fit an MLP, show progress, report, plot and checkpoint.

With no arguments it trains on scikit-learn's digits data (shipped with the
package, no download). Needs the ``train`` extra (scikit-learn, tqdm, matplotlib).
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import activations, losses
from .._io import atomic_open, save_png, staged_outputs, writable_dir
from .._optional import require
from .._rng import RNGLike, as_generator, check_rng, seed_alias
from ..composition import Composed, compose
from ..losses.classification import ClassLoss
from ..nn import Adam, Dense, Sequential, fit, save
from ..nn.train import predicted_classes
from .tabular import read_table

__all__ = ["DATASETS", "TrainConfig", "build_mlp", "load_data", "load_split", "run", "split_and_scale"]

#: ``--data`` names of datasets with their own train/test split (:mod:`gradkit.datasets`; ``make mnist``)
DATASETS = ("mnist", "fashion-mnist")


@dataclass
class TrainConfig:
    data: str | None = None
    label: str | None = None
    hidden: tuple[int, ...] = (256,)
    activation: str = "relu"
    output: str = "softmax"
    loss: str = "cross_entropy"
    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    out: str = "out"
    quiet: bool = False


def load_data(path: str | None, label: str | None = None) -> tuple[np.ndarray, np.ndarray, str, list[Any]]:
    """Features, integer class indices, what was read, in words, and the class names (index ``i`` is
    ``names[i]``): digits by default, else a ``.csv`` or ``.npz`` file read by
    :func:`gradkit.apps.tabular.read_table` (see there for the rules)."""
    if path is None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X.astype(np.float64), y, "digits (scikit-learn): 1797 rows × 64 features, 10 classes", list(range(10))
    table = read_table(path, label)
    names, y = np.unique(table.y, return_inverse=True)
    return table.X, y, table.description, names.tolist()


def load_split(data: str | None, label: str | None = None, rng: RNGLike = None) -> tuple[Any, ...]:
    """``X_train, X_test, y_train, y_test``, the input scaling ``(mean, scale)`` (``x' = (x - mean) / scale``),
    what was read, in words, and the class names.

    A :data:`DATASETS` name gives its own split with pixels scaled by 1/255, float32; other data are
    split by :func:`split_and_scale` with ``rng``.
    """
    if data in DATASETS:
        if label is not None:
            raise ValueError(f"--label applies to CSV files; {data} has its labels")
        from .. import datasets

        loader = datasets.load_mnist if data == "mnist" else datasets.load_fashion_mnist
        X_train, y_train, X_test, y_test = loader()
        X_train /= 255
        X_test /= 255
        d = X_train.shape[1]
        name = (f"{data}: {len(y_train)} training rows × {d} features (pixels / 255), {len(y_test)} test rows "
                f"(its own split), {int(y_train.max()) + 1} classes")
        return X_train, X_test, y_train, y_test, (np.zeros(d), np.full(d, 255.0)), name, list(range(10))
    X, y, name, classes = load_data(data, label)
    X_train, X_test, y_train, y_test, scaler = split_and_scale(X, y, rng=rng)
    return X_train, X_test, y_train, y_test, (scaler.mean_, scaler.scale_), name, classes


@seed_alias("gradkit.apps.train_job.build_mlp")
def build_mlp(n_in: int, hidden: tuple[int, ...], n_out: int, activation: str, rng: RNGLike = None) -> Sequential:
    """Dense layers with ``activation`` between them (He init), a Glorot output layer.

    ``rng`` (SPEC 7): an int ``r`` seeds layer ``i`` with ``r + i`` (the values ``seed=r`` gave);
    ``None`` (fresh entropy) or a Generator initializes the layers one after the other from one
    generator. ``seed=`` is its deprecated old name.
    """
    rng = check_rng(rng)
    sizes = (n_in, *hidden)
    shared = None if isinstance(rng, int) else as_generator(rng)

    def source(i: int) -> RNGLike:
        return rng + i if isinstance(rng, int) else shared

    layers: list[Any] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [Dense(a, b, rng=source(i)), activation]
    layers.append(Dense(sizes[-1], n_out, init="glorot", rng=source(len(sizes))))
    return Sequential(layers)


@seed_alias("gradkit.apps.train_job.split_and_scale")
def split_and_scale(X: np.ndarray, y: np.ndarray, rng: RNGLike = None) -> tuple[Any, ...]:
    """A stratified 80/20 train/test split, standardized on the training part;
    returns ``X_train, X_test, y_train, y_test`` and the fitted scaler.

    ``rng`` (SPEC 7): an int is scikit-learn's ``random_state`` itself (the split ``seed=`` gave);
    ``None`` (fresh entropy) or a Generator gives one draw that becomes the ``random_state``.
    ``seed=`` is its deprecated old name.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    rng = check_rng(rng)
    state = rng if isinstance(rng, int) else int(as_generator(rng).integers(0, 2**32))
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=state, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test, scaler


def warm_up(model: Sequential, head: Composed, X: np.ndarray, y: np.ndarray, one_hot: int | None,
            batch_size: int) -> float:
    """One short epoch of a copy of ``model`` on a few rows of ``X``, with validation: the kernels that training
    will use are compiled (or loaded from numba's cache) here, outside the timed run. Returns its seconds."""
    start = time.perf_counter()
    rows = min(len(X), 4 * batch_size)
    fit(copy.deepcopy(model), X[:rows], y[:rows], loss=head, one_hot=one_hot, optimizer=Adam(1e-3), epochs=1,
        batch_size=batch_size, validation_data=(X[:batch_size], y[:batch_size]), rng=0)
    return time.perf_counter() - start


def compile_note(seconds: float) -> str | None:
    """A line for the kernels' first-use compilation when it took long enough to notice (None otherwise)."""
    if seconds < 1.0:
        return None
    return (f"compiled the numba kernels in {seconds:.1f} s (first use; numba caches them for later runs, and the "
            f"times below leave it out; `python -m gradkit.kernels --warm` compiles them all ahead)")


def _head(config: TrainConfig) -> Composed:
    try:
        return compose(activations.get(config.output), losses.get(config.loss))
    except ValueError as exc:
        raise ValueError(f"--output {config.output} with --loss {config.loss}: {exc}") from None


def _plot(history: Any, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, history.epochs + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, history["loss"], label="training")
    ax1.plot(epochs, history["val_loss"], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    ax2.plot(epochs, history["accuracy"], label="training")
    ax2.plot(epochs, history["val_accuracy"], label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def run(config: TrainConfig, print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate on a held-out test set, write the plot/history/checkpoint; return a summary.

    The output folder is checked before anything is trained, and the three files are written
    into it together at the end (none of them if anything fails). ``print_fn`` gets one line
    saying what data was read.
    """
    require("gradkit train", "train")
    from tqdm.auto import tqdm

    head = _head(config)
    out = writable_dir(config.out)
    X_train, X_test, y_train, y_test, (mean, scale), name, classes = load_split(config.data, config.label,
                                                                                 rng=config.seed)
    print_fn(f"read {name}")
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    one_hot = None if isinstance(head.loss, ClassLoss) else n_classes  # elementwise losses: one-hot rows per batch

    model = build_mlp(X_train.shape[1], config.hidden, n_classes, config.activation, rng=config.seed)

    bar = tqdm(total=config.epochs, desc="training", unit="epoch", disable=config.quiet, dynamic_ncols=True)

    def progress(epoch: int, logs: dict[str, float]) -> None:
        bar.set_postfix(loss=f"{logs['loss']:.4f}", acc=f"{logs['accuracy']:.3f}", val_acc=f"{logs['val_accuracy']:.3f}")
        bar.update(1)

    note = compile_note(warm_up(model, head, X_train, y_train, one_hot, config.batch_size))
    if note:
        print_fn(note)
    start = time.perf_counter()
    try:
        history = fit(model, X_train, y_train, loss=head, one_hot=one_hot, optimizer=Adam(config.lr), epochs=config.epochs,
                      batch_size=config.batch_size, validation_split=0.1, rng=config.seed, callback=progress)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    logits = model.forward(X_test.astype(model.dtype))
    accuracy = float(np.mean(predicted_classes(head, logits) == y_test))

    title = f"{name.split(':')[0]}: {config.activation} MLP {list(config.hidden)}, {config.output} + {config.loss}"
    summary = {
        "data": name,
        "test_accuracy": accuracy,
        "train_seconds": seconds,
        "epochs": history.epochs,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(config).items()},
        "history": history.records,
    }
    with staged_outputs(out) as stage:
        _plot(history, stage / "training.png", title)
        with atomic_open(stage / "history.json", "w") as handle:
            json.dump(summary, handle, indent=2)
        save(model, stage / "model.npz", metadata={
            "output": config.output, "loss": config.loss, "n_classes": n_classes, "data": name,
            "test_accuracy": accuracy,
            # inputs are standardized: x' = (x - mean) / scale before model.forward (gradkit.nn.load_predictor
            # and `gradkit predict` apply it); the class names in the order of the outputs
            "scaler_mean": mean, "scaler_scale": scale, "classes": classes,
        })
    return summary
