"""``fit``: mini-batch training of a :class:`Sequential` with any activation × loss head."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import losses
from .._array import check_int, check_positive
from ..activations import Identity
from ..compose import Composed, compose
from ..losses.classification import ClassLoss
from .model import Sequential
from .optim import Adam, Optimizer

__all__ = ["DivergenceError", "History", "as_head", "class_labels", "evaluate", "fit"]


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite; the weights are left as they were before that step."""

    @classmethod
    def at(cls, value: float, epoch: int, where: str, lr: float) -> DivergenceError:
        """The error for a non-finite ``value`` (else overflowing gradients) at ``epoch`` (0-based), ``where``."""
        what = f"the loss became {float(value)}" if not np.isfinite(value) else "the gradients overflowed"
        return cls(f"{what} at epoch {epoch + 1}, {where}; training stopped before updating the weights "
                   f"with it. Try a lower learning rate (now {lr:g}).")


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


def as_head(loss: Any) -> Composed:
    """A ``compose(...)`` head from a head, a loss, or a loss name (identity output activation)."""
    if isinstance(loss, Composed):
        return loss
    loss = losses.get(loss)
    try:
        return compose(Identity(), loss)
    except ValueError as exc:
        raise ValueError(
            f"loss={loss.name!r} cannot take the model's raw output ({exc}); pass a head such as "
            f"gk.compose(gk.Softmax(), gk.losses.get({loss.name!r}))"
        ) from None


def class_labels(head: Composed, y: np.ndarray) -> np.ndarray | None:
    """The class of each sample when ``y`` names one — integer labels of a class loss, or
    one-hot rows — so that accuracy is defined; else None."""
    if isinstance(head.loss, ClassLoss) and np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
        return y
    if y.ndim == 2 and y.shape[1] > 1 and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
        return np.argmax(y, axis=1)
    return None


def predicted_classes(head: Composed, logits: np.ndarray) -> np.ndarray:
    """``argmax`` of the head's prediction ``head.forward(logits)`` over the class axis (1):
    the logits' own argmax where the output activation preserves the order."""
    scores = logits if head.activation.preserves_order else np.asarray(head.forward(logits))
    return np.argmax(scores, axis=1)


def evaluate(model: Sequential, head: Composed, X: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> dict[str, float]:
    """Mean loss (and accuracy when ``y`` names classes) of ``model`` on ``(X, y)``, in evaluation mode."""
    labels = class_labels(head, y)
    total, correct, n = 0.0, 0, X.shape[0]
    for start in range(0, n, batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        logits = model.forward(xb)
        total += float(head(logits, yb)) * xb.shape[0]
        if labels is not None:
            correct += int(np.sum(predicted_classes(head, logits) == labels[start : start + batch_size]))
    out = {"loss": total / n}
    if labels is not None:
        out["accuracy"] = correct / n
    return out


def fit(
    model: Sequential,
    X: Any,
    y: Any,
    *,
    loss: Any,
    optimizer: Optimizer | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    validation_split: float = 0.0,
    validation_data: tuple[Any, Any] | None = None,
    early_stopping: bool | int = False,
    seed: int | None = 0,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> History:
    """Train ``model`` on ``(X, y)`` by mini-batch gradient descent.

    Parameters
    ----------
    model
        A :class:`Sequential` that outputs the pre-activation of the head (logits).
    X, y
        Features ``(n, d)``; targets as the loss expects them (integer labels,
        one-hot/soft targets, or regression values; 1-d targets of an
        elementwise loss are one output column).
    loss
        A ``compose(activation, loss)`` head — e.g. ``compose(Softmax(), MSELoss())`` —
        or a loss / loss name applied to the raw output.
    optimizer
        Default ``Adam(lr=1e-3)``.
    epochs, batch_size
        ``batch_size`` is clipped to the number of samples.
    validation_split, validation_data
        Hold out the last fraction of the (shuffled) data, or give ``(X_val, y_val)``.
    early_stopping
        ``True`` (patience 5) or a patience: stop when the validation loss has not
        improved for that many epochs and restore the best weights.
    seed
        Seeds shuffling and the split: a fixed seed gives identical histories.
    callback
        Called as ``callback(epoch, logs)`` after every epoch (progress bars).

    Raises
    ------
    DivergenceError
        When the loss becomes NaN or infinite; the message names the epoch and
        batch and suggests a lower learning rate. The weights are not updated with it.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-d array (samples, features); got shape {X.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y must have the same number of samples; got {X.shape[0]} and {y.shape[0]}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity")
    epochs = check_int(epochs, "epochs")
    batch_size = check_int(batch_size, "batch_size")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}")
    head = as_head(loss)
    if y.ndim == 1 and not isinstance(head.loss, ClassLoss):
        y = y[:, None]  # one output column (regression, binary bce)
    optimizer = optimizer if optimizer is not None else Adam()
    X = X.astype(model.dtype, copy=False)
    if np.issubdtype(y.dtype, np.floating):
        y = y.astype(model.dtype, copy=False)
    rng = np.random.default_rng(seed)

    if validation_data is not None:
        X_val, y_val = (np.asarray(a) for a in validation_data)
        X_val = X_val.astype(model.dtype, copy=False)
    elif validation_split:
        frac = check_positive(validation_split, "validation_split")
        if frac >= 1:
            raise ValueError(f"validation_split must be in [0, 1); got {validation_split}")
        order = rng.permutation(X.shape[0])
        n_val = max(1, int(round(frac * X.shape[0])))
        X, y, X_val, y_val = X[order[n_val:]], y[order[n_val:]], X[order[:n_val]], y[order[:n_val]]
    else:
        X_val = y_val = None
    patience = 5 if early_stopping is True else int(early_stopping)
    if patience and X_val is None:
        raise ValueError("early_stopping needs validation_split or validation_data")

    labels = class_labels(head, y)
    history = History()
    best, best_params, waiting = math.inf, None, 0
    n = X.shape[0]
    batch_size = min(batch_size, n)
    for epoch in range(epochs):
        start_time = time.perf_counter()
        optimizer.set_epoch(epoch)
        order = rng.permutation(n)
        total, correct = 0.0, 0
        for b, start in enumerate(range(0, n, batch_size)):
            idx = order[start : start + batch_size]
            xb, yb = X[idx], y[idx]
            with np.errstate(over="ignore", invalid="ignore"):  # reported below, with the epoch
                logits = model.forward(xb, training=True)
                value, grad = head.value_and_grad(logits, yb)
                finite = bool(np.isfinite(value))
                if finite:
                    model.backward(grad, input_grad=False)
                    finite = all(np.isfinite(g).all() for g in model.grads.values())
            if not finite:
                raise DivergenceError.at(value, epoch, f"batch {b + 1}", optimizer.lr)
            optimizer.step(model.params, model.grads)
            total += float(value) * len(idx)
            if labels is not None:
                correct += int(np.sum(predicted_classes(head, logits) == labels[idx]))
        logs = {"loss": total / n}
        if labels is not None:
            logs["accuracy"] = correct / n
        if X_val is not None:
            logs.update({f"val_{k}": v for k, v in evaluate(model, head, X_val, y_val).items()})
        logs["lr"] = optimizer.lr
        logs["time"] = time.perf_counter() - start_time
        history.append(**logs)
        if callback is not None:
            callback(epoch, logs)
        if patience:
            if logs["val_loss"] < best:
                best, waiting, history.best_epoch = logs["val_loss"], 0, epoch
                best_params = {k: v.copy() for k, v in model.params.items()}
            else:
                waiting += 1
                if waiting >= patience:
                    history.stopped_early = True
                    break
    if best_params is not None:
        for name, value in model.params.items():
            value[...] = best_params[name]
    return history
