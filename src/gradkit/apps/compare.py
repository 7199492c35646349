"""``gradkit compare``: the same MLP trained with each output normalizer × loss, over seeds.

For every seed the data are split (stratified 80/20, seeded) and standardized
once — ``--data mnist`` / ``fashion-mnist`` keep their own 60,000/10,000 split and
scale pixels by 1/255, so seeds vary the initial weights and the batch order only;
every head then trains the same network from the same initial weights
with the same batches. Reported per head: test accuracy and error (mean ± std
over seeds, and the error's 95% t-interval), the paired difference of each head's
error from the first head's on the same seed (mean and 95% t-interval), test NLL :math:`-\\log p_y` where it is finite — sparse maps give
:math:`p_y = 0` to some test items, and the share of such items is reported
instead — and training time: the total, and the median epoch time (over every epoch of
every seed) with its ratio to the first pair's (softmax + CE by default), so the cost of a
head can be read at a glance. Writes ``compare.json`` and ``compare.png``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import activations, losses
from .._io import atomic_open, save_png, staged_outputs, writable_dir
from .._optional import require
from ..composition import compose
from ..nn import Adam, fit
from ._text import plural
from .train_job import DATASETS, build_mlp, compile_note, load_data, load_split, split_and_scale, warm_up

__all__ = ["PAIRS", "PAPER_PAIRS", "CompareConfig", "run"]

#: (label, output activation, loss): softmax and its alternatives
PAIRS: list[tuple[str, str, str]] = [
    ("softmax + CE", "softmax", "cross_entropy"),
    ("softmax + MSE", "softmax", "mse"),
    ("log-Taylor + NLL", "log_taylor_softmax", "nll"),
    ("log-spherical + NLL", "log_spherical_softmax", "nll"),
    ("sparsemax + sparsemax loss", "sparsemax", "sparsemax_loss"),
    ("entmax-1.5 + entmax loss", "entmax15", "entmax15_loss"),
]

#: the default for ``--data mnist`` / ``fashion-mnist``: de Brébisson & Vincent (ICLR 2016)'s three
#: losses. Their "log-softmax" loss is softmax + cross-entropy (the same function of the logits)
PAPER_PAIRS: list[tuple[str, str, str]] = [
    ("softmax + CE", "softmax", "cross_entropy"),
    ("log-Taylor + NLL", "log_taylor_softmax", "nll"),
    ("log-spherical + NLL", "log_spherical_softmax", "nll"),
]
#: their MNIST test errors (%), by pair label (their Table 1; architecture and training not ours)
PAPER_MNIST_ERROR = {"softmax + CE": 0.812, "log-Taylor + NLL": 0.785, "log-spherical + NLL": 0.828}


@dataclass
class CompareConfig:
    data: str | None = None
    label: str | None = None
    seeds: int = 5
    hidden: tuple[int, ...] = (256,)
    activation: str = "relu"
    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 32
    out: str = "out/compare"
    #: None: :data:`PAPER_PAIRS` for the MNIST datasets, else :data:`PAIRS`
    pairs: list[tuple[str, str, str]] | None = field(default=None)


def _probabilities(head: Any, logits: np.ndarray) -> np.ndarray:
    out = np.asarray(head.forward(logits), dtype=np.float64)
    return np.exp(out) if head.activation.output_range[1] <= 0 else out  # log-probabilities → probabilities


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _ci95(values: list[float]) -> float | None:
    """Half-width of the 95% t-interval of the mean (None for a single value)."""
    if len(values) < 2:
        return None
    from scipy.stats import t

    return float(t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))


def run(config: CompareConfig, print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every pair on every seed; print the table; write ``compare.json`` and ``compare.png``."""
    require("gradkit compare", "train")
    if config.seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {config.seeds}")
    pairs = config.pairs if config.pairs is not None else (PAPER_PAIRS if config.data in DATASETS else PAIRS)
    heads = []
    for label, out_name, loss_name in pairs:
        try:
            heads.append((label, compose(activations.get(out_name), losses.get(loss_name))))
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
    out = writable_dir(config.out)
    fixed: tuple[Any, ...] | None = None
    if config.data in DATASETS:  # its own split, the same for every seed
        X_train, X_test, y_train, y_test, _, name, _ = load_split(config.data, config.label)
        fixed = (X_train, X_test, y_train, y_test)
        y = np.concatenate([y_train, y_test])
    else:
        X, y, name, _ = load_data(config.data, config.label)
    print_fn(f"read {name}")
    n_classes = int(y.max()) + 1
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in heads}
    X_first = fixed[0] if fixed is not None else X
    y_first = fixed[2] if fixed is not None else y
    warm = 0.0
    for _, head in heads:  # each head's kernels compiled before any run is timed
        one_hot = None if isinstance(head.loss, losses.ClassLoss) else n_classes
        model = build_mlp(X_first.shape[1], config.hidden, n_classes, config.activation, rng=0)
        warm += warm_up(model, head, X_first, y_first, one_hot, config.batch_size)
    note = compile_note(warm)
    if note:
        print_fn(note)
    for seed in range(config.seeds):
        X_train, X_test, y_train, y_test = fixed if fixed is not None else split_and_scale(X, y, rng=seed)[:4]
        for label, head in heads:
            one_hot = None if isinstance(head.loss, losses.ClassLoss) else n_classes
            model = build_mlp(X_train.shape[1], config.hidden, n_classes, config.activation, rng=seed)
            start = time.perf_counter()
            history = fit(model, X_train, y_train, loss=head, one_hot=one_hot, optimizer=Adam(config.lr),
                          epochs=config.epochs, batch_size=config.batch_size, rng=seed)
            seconds = time.perf_counter() - start
            p = _probabilities(head, model.forward(X_test.astype(model.dtype)))
            p_true = p[np.arange(len(y_test)), y_test]
            zero = float(np.mean(p_true <= 0))
            nll = float(np.mean(-np.log(p_true))) if zero == 0 else math.inf
            accuracy = float(np.mean(np.argmax(p, axis=1) == y_test))
            runs[label].append({"seed": seed, "accuracy": accuracy, "nll": nll, "zero_prob_share": zero,
                                "seconds": seconds, "epoch_seconds": list(history["time"])})
        print_fn(f"seed {seed + 1}/{config.seeds} done")

    rows = []
    for label, head in heads:
        r = runs[label]
        acc, acc_sd = _mean_std([x["accuracy"] for x in r])
        finite = [x["nll"] for x in r if math.isfinite(x["nll"])]
        nll_stats = _mean_std(finite) if len(finite) == len(r) else None
        rows.append({
            "pair": label, "output": head.activation.name, "loss": head.loss.name,
            "accuracy_mean": acc, "accuracy_std": acc_sd, "error_pct_mean": 100 * (1 - acc),
            "error_pct_ci95": _ci95([100 * (1 - x["accuracy"]) for x in r]),
            "paper_mnist_error_pct": PAPER_MNIST_ERROR.get(label) if config.data == "mnist" else None,
            "nll_mean": None if nll_stats is None else nll_stats[0],
            "nll_std": None if nll_stats is None else nll_stats[1],
            "zero_prob_share_mean": float(np.mean([x["zero_prob_share"] for x in r])),
            "seconds_mean": float(np.mean([x["seconds"] for x in r])),
            "epoch_seconds_median": float(np.median([t for x in r for t in x["epoch_seconds"]])), "runs": r,
        })
    _add_paired_differences(rows)
    _add_epoch_time_ratios(rows)
    _print_table(rows, name, config, print_fn)
    doc = {"data": name, "date": time.strftime("%Y-%m-%d"), "seeds": config.seeds, "epochs": config.epochs,
           "hidden": list(config.hidden), "activation": config.activation, "lr": config.lr,
           "batch_size": config.batch_size, "results": rows}
    with staged_outputs(out) as stage:
        with atomic_open(stage / "compare.json", "w") as handle:
            json.dump(doc, handle, indent=2)
        _plot(rows, stage / "compare.png", f"{name.split(':')[0]}: {plural(config.seeds, 'seed')}, {plural(config.epochs, 'epoch')}")
    print_fn(f"wrote {out / 'compare.json'}, {out / 'compare.png'}")
    return doc


def _add_paired_differences(rows: list[dict[str, Any]]) -> None:
    """Each row's test error minus the first row's (the baseline, softmax + CE by default) on the same
    seed, in percentage points: mean ± std over seeds and how many seeds were better, worse, tied."""
    base = rows[0]
    for r in rows:
        if r is base:
            r["vs_baseline"] = None
            continue
        diff = np.array([100 * (b["accuracy"] - x["accuracy"]) for x, b in zip(r["runs"], base["runs"])])
        mean, std = _mean_std(list(diff))
        r["vs_baseline"] = {
            "baseline": base["pair"], "error_diff_pp_mean": mean, "error_diff_pp_std": std,
            "error_diff_pp_ci95": _ci95(list(diff)),
            "better": int(np.sum(diff < -1e-9)), "worse": int(np.sum(diff > 1e-9)), "ties": int(np.sum(np.abs(diff) <= 1e-9)),
        }


def _add_epoch_time_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's median epoch time over the first row's (the baseline, softmax + CE by default)."""
    base = rows[0]["epoch_seconds_median"]
    for r in rows:
        r["epoch_time_ratio"] = r["epoch_seconds_median"] / base if base > 0 else None


def _ratio(r: dict[str, Any]) -> str:
    return "—" if r["epoch_time_ratio"] is None else f"{r['epoch_time_ratio']:.2f}×"


def _vs_baseline(r: dict[str, Any]) -> str:
    v = r["vs_baseline"]
    if v is None:
        return "—"
    counts = ", ".join(f"{word} on {v[key]}" for key, word in (("better", "better"), ("worse", "worse"), ("ties", "tie"))
                       if v[key])
    ci = "" if v["error_diff_pp_ci95"] is None else f", 95% CI ±{v['error_diff_pp_ci95']:.2f}"
    spread = f" ± {v['error_diff_pp_std']:.3f} sd" if v["better"] + v["worse"] + v["ties"] > 1 else ""  # one seed: none
    return f"{v['error_diff_pp_mean']:+.3f}{spread}{ci} ({counts})"


def _print_table(rows: list[dict[str, Any]], name: str, config: CompareConfig, print_fn: Callable[[str], None]) -> None:
    print_fn(f"\n{name}; MLP {list(config.hidden)} {config.activation}, Adam lr {config.lr:g}, "
             f"{plural(config.epochs, 'epoch')}, batch {config.batch_size}, {plural(config.seeds, 'seed')}"
             + (" (mean ± std)" if config.seeds > 1 else ""))
    paper = any(r["paper_mnist_error_pct"] is not None for r in rows)
    header = (f"{'output + loss':<28} {'test accuracy':>16} {'error % (95% CI)':>18} "
              + (f"{'paper %':>8} " if paper else "")
              + f"{'test NLL':>18} {'train s':>8} {'epoch s':>8} {'× base':>7}  error vs {rows[0]['pair']} on the same seed (points)")
    print_fn(header)
    print_fn("-" * len(header))
    def spread(std: float, digits: int) -> str:  # one seed has no spread: none is printed
        return f" ± {std:.{digits}f}" if config.seeds > 1 else ""

    for r in rows:
        if r["nll_mean"] is not None:
            nll = f"{r['nll_mean']:.4f}{spread(r['nll_std'], 4)}"
        else:
            nll = f"∞ ({100 * r['zero_prob_share_mean']:.1f}% p_y=0)"
        ci = "" if r["error_pct_ci95"] is None else f" ± {r['error_pct_ci95']:.2f}"
        error = f"{r['error_pct_mean']:.2f}{ci}"
        cited = (f"{r['paper_mnist_error_pct']:>8.3f} " if r["paper_mnist_error_pct"] is not None else f"{'':>8} ") if paper else ""
        print_fn(f"{r['pair']:<28} {r['accuracy_mean']:.4f}{spread(r['accuracy_std'], 4):<9} {error:>18} {cited}"
                 f"{nll:>18} {r['seconds_mean']:>8.2f} {r['epoch_seconds_median']:>8.3f} {_ratio(r):>7}  {_vs_baseline(r)}")
    print_fn(f"epoch s: median seconds per epoch over all seeds; × base: its ratio to {rows[0]['pair']}'s")


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ticks = np.arange(len(rows))
    errors = [100 * (1 - np.array([x["accuracy"] for x in r["runs"]])) for r in rows]
    ax1.bar(ticks, [e.mean() for e in errors], color="tab:blue", alpha=0.6)
    for i, e in enumerate(errors):
        ax1.scatter(np.full(e.size, i), e, color="black", s=12, zorder=3)
    ax1.set(ylabel="test error % (bars: mean; dots: seeds)", title="Test error")
    ax2.bar(ticks, [r["seconds_mean"] for r in rows], color="tab:orange", alpha=0.7)
    ax2.set(ylabel="seconds (mean over seeds)", title="Training time")
    for ax in (ax1, ax2):
        ax.set_xticks(ticks, [r["pair"] for r in rows], rotation=25, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)
