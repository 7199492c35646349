"""The training engine: the epoch loop of :func:`gradkit.nn.fit` and :func:`gradkit.distributed.fit`.

:func:`run_epochs` owns everything the two fronts share — the epochs, the optimizer's schedule, the
divergence checks around every update (:class:`DivergenceError` naming the epoch and the batch or step),
the epoch's mean loss and accuracy, validation, early stopping with the best weights restored, the
callback and the :class:`History`. Where the data live is a :class:`Steps` strategy: how an epoch's
batches are drawn and how one batch's loss and gradients are computed (in-memory arrays in
:mod:`gradkit.nn.train`, ``dask.array`` blocks across a cluster in :mod:`gradkit.distributed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .model import Sequential
from .optim import DivergenceError, Optimizer, _all_finite

__all__ = ["History", "StepResult", "Steps", "grads_finite", "run_epochs"]

#: ``(mean loss, parameters, gradients, rows, correct)`` of one batch: the gradients are None when the loss
#: or the gradients are not finite (the engine raises, naming the batch); ``correct`` (the rows whose
#: predicted class is their label) is None when the batch's targets do not name classes
StepResult = tuple[float, dict[str, np.ndarray], "dict[str, np.ndarray] | None", int, "int | None"]


@dataclass
class History:
    """Per-epoch records: ``history["loss"]``, ``"val_loss"``, ``"accuracy"``, ``"val_accuracy"``, ``"lr"``, ``"time"``."""

    records: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_early: bool = False

    def append(self, **values: float) -> None:
        for key, value in values.items():
            self.records.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        return self.records[key]

    def __contains__(self, key: object) -> bool:
        return key in self.records

    @property
    def epochs(self) -> int:
        return len(self.records.get("loss", []))


History.__module__ = "gradkit.nn.train"  # where it was defined before the engine: pickles and docs keep its name


def grads_finite(grads: dict[str, np.ndarray]) -> bool:
    """Whether every gradient is finite: one dot product per array (``_all_finite``)."""
    return all(_all_finite(g) for g in grads.values())


class Steps:
    """Where the training data live: the batches of an epoch and the gradient of one batch.

    Subclasses set ``unit`` (the word :class:`DivergenceError` names a batch by: ``"batch"``, ``"step"``)
    and ``n`` (the training rows: an epoch's loss is ``Σ mean loss × rows / n``), and implement
    :meth:`batches` and :meth:`step`.
    """

    unit = "batch"
    n = 0

    def batches(self, epoch: int) -> Iterable[Any]:
        """The batches of ``epoch`` (0-based), each what :meth:`step` takes; drawn when called."""
        raise NotImplementedError

    def step(self, batch: Any) -> StepResult:
        """The loss and gradients of ``batch`` (see :data:`StepResult`); the parameters are not updated."""
        raise NotImplementedError

    def update_reason(self, exc: DivergenceError, grads: dict[str, np.ndarray]) -> str | None:
        """What the error names when the optimizer refuses a non-finite update: its own reason, or None
        (``DivergenceError.at``'s "the gradients overflowed") when ``grads`` themselves are not finite."""
        return exc.reason if grads_finite(grads) else None


class _BestWeights:
    """Early stopping: the best validation loss so far, the epochs since, and a copy of its weights."""

    def __init__(self, model: Sequential, patience: int) -> None:
        self.model, self.patience = model, patience
        self.best, self.waiting = math.inf, 0
        self.params: dict[str, np.ndarray] | None = None

    def stop(self, epoch: int, val_loss: float, history: History) -> bool:
        """Record ``epoch``'s validation loss; True once it has not improved for ``patience`` epochs."""
        if val_loss < self.best:
            self.best, self.waiting, history.best_epoch = val_loss, 0, epoch
            self.params = {k: v.copy() for k, v in self.model.params.items()}
            return False
        self.waiting += 1
        return self.waiting >= self.patience

    def restore(self) -> None:
        if self.params is not None:
            for name, value in self.model.params.items():
                value[...] = self.params[name]


def _run_epoch(steps: Steps, optimizer: Optimizer, epoch: int) -> tuple[float, int | None]:
    """One pass over ``steps.batches(epoch)``: ``(Σ mean loss × rows, Σ correct or None)``."""
    total = 0.0
    correct: int | None = 0  # None once a batch's targets do not name classes
    for b, batch in enumerate(steps.batches(epoch)):
        value, params, grads, rows, right = steps.step(batch)
        if grads is None:
            raise DivergenceError.at(value, epoch, f"{steps.unit} {b + 1}", optimizer.lr)
        try:  # computes every update, checks it is finite, then applies them all
            optimizer.step(params, grads)
        except DivergenceError as exc:
            raise DivergenceError.at(value, epoch, f"{steps.unit} {b + 1}", optimizer.lr,
                                     steps.update_reason(exc, grads)) from None
        total += float(value) * rows
        correct = None if correct is None or right is None else correct + right
    return total, correct


def run_epochs(model: Sequential, steps: Steps, optimizer: Optimizer, epochs: int, *,
               callback: Callable[[int, dict[str, float]], None] | None = None,
               validate: Callable[[], dict[str, float]] | None = None, patience: int = 0) -> History:
    """Train ``model`` for ``epochs`` passes of ``steps`` with ``optimizer``; the arguments are checked.

    Each epoch sets the optimizer's epoch, runs every batch (a non-finite loss, gradient or update raises
    :class:`DivergenceError` before any weight changes), then logs ``loss`` (and ``accuracy`` when every
    batch names classes), ``validate()``'s entries as ``val_*``, ``lr`` and ``time``, calls
    ``callback(epoch, logs)`` and, with ``patience`` (which needs ``validate``), stops once ``val_loss``
    has not improved for that many epochs; the best epoch's weights are restored at the end.
    """
    history = History()
    best = _BestWeights(model, patience) if patience else None
    for epoch in range(epochs):
        start = time.perf_counter()
        optimizer.set_epoch(epoch)
        total, correct = _run_epoch(steps, optimizer, epoch)
        logs = {"loss": total / steps.n}
        if correct is not None:
            logs["accuracy"] = correct / steps.n
        if validate is not None:
            logs.update({f"val_{k}": v for k, v in validate().items()})
        logs["lr"] = optimizer.lr
        logs["time"] = time.perf_counter() - start
        history.append(**logs)
        if callback is not None:
            callback(epoch, logs)
        if best is not None and best.stop(epoch, logs["val_loss"], history):
            history.stopped_early = True
            break
    if best is not None:
        best.restore()
    return history
