"""Epoch time of each output + loss pair of ``gradkit compare`` against softmax + CE, in alternating rounds.

``gradkit compare`` trains the pairs one after the other, so on a shared machine a change of load
between pairs shows up as a ratio. Here every round trains one epoch of every pair (each pair keeps
its own model and optimizer, continuing), so load falls on all alike; the minimum over rounds is the
headline, the median beside it. Also timed: the head alone (``value_and_grad`` plus the class
prediction that ``fit`` makes per batch) over the same batches, so the ratio can be split into head
and the rest (the MLP's forward, backward and Adam step, identical across pairs).

    PYTHONPATH=src python benchmarks/alternatives_epoch.py [--data mnist --rows 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from gradkit import activations, losses
from gradkit.compare import PAIRS
from gradkit.compose import compose
from gradkit.nn import Adam, fit
from gradkit.nn.train import predicted_classes
from gradkit.training_job import build_mlp, load_data, load_split, split_and_scale


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None, help="mnist (needs `make mnist`), else scikit-learn's digits")
    ap.add_argument("--rows", type=int, default=0, help="use the first ROWS training rows (0: all)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if args.data in ("mnist", "fashion-mnist"):
        X, _, y, _, _, name = load_split(args.data)
    else:
        Xa, ya, name = load_data(None)
        X, _, y, _ = split_and_scale(Xa, ya, rng=0)[:4]
    if args.rows:
        X, y = X[: args.rows], y[: args.rows]
    X = X.astype(np.float32)
    n_classes = int(y.max()) + 1
    pairs = []
    for label, out, loss in PAIRS:
        head = compose(activations.get(out), losses.get(loss))
        one_hot = None if isinstance(head.loss, losses.ClassLoss) else n_classes
        model = build_mlp(X.shape[1], (args.hidden,), n_classes, "relu", rng=0)
        pairs.append((label, head, one_hot, model, Adam(1e-3)))
    print(f"{name.split(':')[0]}: {len(X)} rows, MLP [{args.hidden}], batch {args.batch}, {args.rounds} rounds")
    epoch: dict[str, list[float]] = {p[0]: [] for p in pairs}
    head_t: dict[str, list[float]] = {p[0]: [] for p in pairs}
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((args.batch, n_classes)).astype(np.float32)
    labels = rng.integers(0, n_classes, args.batch)
    batches = -(-len(X) // args.batch)
    for r in range(args.rounds + 1):  # round 0 warms (compiles, primes caches) and is not counted
        for label, head, one_hot, model, opt in pairs:
            start = time.perf_counter()
            fit(model, X, y, loss=head, one_hot=one_hot, optimizer=opt, epochs=1, batch_size=args.batch, rng=r)
            took = time.perf_counter() - start
            target = labels if one_hot is None else np.eye(n_classes, dtype=np.float32)[labels]
            start = time.perf_counter()
            for _ in range(batches):
                head.value_and_grad(logits, target)
                predicted_classes(head, logits)
            if r:
                epoch[label].append(took)
                head_t[label].append(time.perf_counter() - start)
    base, base_med = min(epoch[PAIRS[0][0]]), statistics.median(epoch[PAIRS[0][0]])
    hbase = min(head_t[PAIRS[0][0]])
    print(f"{'output + loss':<28}{'epoch min s':>12}{'median':>9}{'× min':>7}{'× med':>7}{'head s/epoch':>14}{'head Δ s':>10}")
    for label, *_ in pairs:
        e, h = epoch[label], head_t[label]
        print(f"{label:<28}{min(e):>12.3f}{statistics.median(e):>9.3f}{min(e) / base:>7.2f}"
              f"{statistics.median(e) / base_med:>7.2f}{min(h):>14.3f}{min(h) - hbase:>+10.3f}", flush=True)


if __name__ == "__main__":
    main()
