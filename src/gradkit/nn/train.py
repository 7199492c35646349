"""``fit``: mini-batch training of a :class:`Sequential` with any activation × loss head."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import losses
from .._array import check_int, check_positive, to_array
from .._rng import RNGLike, as_generator, seed_alias
from ..activations import Identity
from ..composition import Composed, compose
from ..losses.classification import ClassLoss
from ._engine import History, StepResult, Steps, grads_finite, run_epochs
from ._step import BufferedStep
from .model import Sequential
from .optim import Adam, DivergenceError, Optimizer, _all_finite

__all__ = ["DivergenceError", "History", "as_head", "class_labels", "evaluate", "fit"]


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


def _check_real(a: np.ndarray, name: str) -> None:
    """Refuse complex, string, object and other non-numeric arrays (booleans and integers are numbers)."""
    if np.issubdtype(a.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real; got complex data ({a.dtype}): complex data is not supported")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array; got dtype {a.dtype}")


def _asarray(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(to_array(a, name))  # refuses None, str, ragged and object input, naming ``name``
    _check_real(arr, name)
    return arr


def cast_finite(a: np.ndarray, name: str, dtype: Any) -> np.ndarray:
    """``a`` in ``dtype`` (no copy when it already is); ``ValueError`` naming ``name`` when ``a``
    holds NaN or infinity, or values that overflow ``dtype`` (1e39 for a float32 model)."""
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(dtype, copy=False)
    if not np.issubdtype(dtype, np.inexact):
        return out
    # C-contiguous data: one BLAS read, without the n-element mask of isfinite (a view of other
    # layouts would be copied by the flattening)
    if _all_finite(out) if out.flags.c_contiguous else np.isfinite(out).all():
        return out
    if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
        bad = ~np.isfinite(a)
        row = int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1))) if a.ndim else 0
        what = "NaN" if np.isnan(a).any() else "infinity"
        raise ValueError(f"{name} contains NaN or infinity ({what}; first at row {row})")
    with np.errstate(over="ignore", invalid="ignore"):
        big = float(np.max(np.abs(a.astype(np.float64))))
    raise ValueError(
        f"{name} has values up to {big:g} in absolute value, beyond the largest {dtype} "
        f"({float(np.finfo(dtype).max):g}) that the model computes in: scale {name} (e.g. standardize "
        f"the features) or use a float64 model"
    )


def _one_hot(labels: np.ndarray, n_classes: int, dtype: Any) -> np.ndarray:
    """One-hot rows for ``labels`` only (``len(labels) × n_classes``, never ``n_classes²``)."""
    rows = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    rows[np.arange(labels.shape[0]), labels] = 1
    return rows


def _check_targets(y: np.ndarray, name: str, one_hot: int | None, dtype: Any) -> np.ndarray:
    """Targets ready for the loss: float targets in the model's dtype and finite; with ``one_hot``,
    integer labels in ``[0, one_hot)``."""
    if y.ndim == 0:
        raise ValueError(f"{name} must be an array of targets, one per sample; got a scalar")
    if one_hot is not None:
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"with one_hot={one_hot}, {name} must be 1-d integer class labels; "
                             f"got shape {y.shape} and dtype {y.dtype}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= one_hot):
            raise ValueError(f"with one_hot={one_hot}, {name} must hold labels in [0, {one_hot - 1}]; "
                             f"got labels from {int(y.min())} to {int(y.max())}")
        return y
    if np.issubdtype(y.dtype, np.floating):
        return cast_finite(y, name, dtype)
    return y


def _refuse_old_evaluate_order(fn: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
    """``evaluate(model, head, X, y)`` (the old order) fails loudly, showing the new call."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, float]:
        second = args[1] if len(args) > 1 else kwargs.get("X")
        if isinstance(second, (Composed, losses.Loss, str)):
            what = f"a {type(second).__name__} ({second!r}) where X goes"
        elif len(args) > 3:
            what = f"{len(args)} positional arguments; loss, batch_size and one_hot are keyword-only"
        else:
            return fn(*args, **kwargs)
        raise TypeError(
            f"evaluate takes the arguments of fit: evaluate(model, X, y, *, loss, batch_size=1024, one_hot=None); "
            f"got {what}. The old order evaluate(model, head, X, y) is gone: call evaluate(model, X, y, loss=head)")

    return wrapper


@_refuse_old_evaluate_order
def evaluate(model: Sequential, X: Any, y: Any, *, loss: Any, batch_size: int = 1024,
             one_hot: int | None = None) -> dict[str, float]:
    """Mean loss (and accuracy when ``y`` names classes) of ``model`` on ``(X, y)``, in evaluation mode.

    The arguments are :func:`fit`'s, in the same order and with the same names.

    Parameters
    ----------
    model : Sequential
        The network (its dropout layers are off: evaluation mode).
    X, y
        Features ``(n, d)`` and targets, as :func:`fit` takes them.
    loss
        As in :func:`fit`: a ``compose(activation, loss)`` head, or a loss / loss name.
    batch_size : int
        Rows per forward pass (memory, not the result).
    one_hot : int or None
        As in :func:`fit`.

    Returns
    -------
    dict
        ``{"loss": mean loss}``, plus ``"accuracy"`` when ``y`` names classes.

    Raises
    ------
    TypeError
        Also for the old argument order ``evaluate(model, head, X, y)``: a head, loss or loss
        name where ``X`` goes, or more than three positional arguments.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> from gradkit import nn
    >>> model = nn.Sequential([nn.Dense(4, 3, rng=0)])
    >>> X, y = np.zeros((6, 4)), np.array([0, 1, 2, 0, 1, 2])
    >>> nn.evaluate(model, X, y, loss=gk.compose(gk.Softmax(), gk.CrossEntropyLoss()))["accuracy"]
    0.3333333333333333
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a gradkit.nn.Sequential; got {type(model).__name__}")
    head = as_head(loss)
    if check_int(batch_size, "batch_size") < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if one_hot is not None and check_int(one_hot, "one_hot") < 2:
        raise ValueError(f"one_hot must be the number of classes, >= 2; got {one_hot}")
    X, y = _check_xy(model, head, X, y, "X", "y", one_hot)
    return _evaluate(model, head, X, y, batch_size, one_hot)


def _check_xy(model: Sequential, head: Composed, X: Any, y: Any, x_name: str, y_name: str,
              one_hot: int | None) -> tuple[np.ndarray, np.ndarray]:
    X, y = _asarray(X, x_name), _asarray(y, y_name)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{x_name} must be a non-empty 2-d array (samples, features); got shape {X.shape}")
    y = _check_targets(y, y_name, one_hot, model.dtype)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{x_name} and {y_name} must have the same number of samples; "
                         f"got {X.shape[0]} and {y.shape[0]}")
    if y.ndim == 1 and one_hot is None and not isinstance(head.loss, ClassLoss):
        y = y[:, None]  # one output column (regression, binary bce)
    return cast_finite(X, x_name, model.dtype), y


def _evaluate(model: Sequential, head: Composed, X: np.ndarray, y: np.ndarray, batch_size: int,
              one_hot: int | None) -> dict[str, float]:
    labels = y if one_hot is not None else class_labels(head, y)
    total, correct, n = 0.0, 0, X.shape[0]
    for start in range(0, n, batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        if one_hot is not None:
            yb = _one_hot(yb, one_hot, model.dtype)
        logits = model.forward(xb)
        total += float(head(logits, yb)) * xb.shape[0]
        if labels is not None:
            correct += int(np.sum(predicted_classes(head, logits) == labels[start : start + batch_size]))
    out = {"loss": total / n}
    if labels is not None:
        out["accuracy"] = correct / n
    return out


def _patience(early_stopping: Any) -> int:
    """``early_stopping`` as a patience: False → 0 (off), True → 5, an int >= 1 → itself."""
    if early_stopping is True or early_stopping is False:
        return 5 if early_stopping else 0
    if not isinstance(early_stopping, numbers.Integral):
        raise TypeError(f"early_stopping must be True, False or a patience (an integer >= 1); "
                        f"got {early_stopping!r} ({type(early_stopping).__name__})")
    if early_stopping < 1:
        raise ValueError(f"early_stopping must be True, False or a patience (an integer >= 1); got {early_stopping!r}"
                         " (False turns it off)")
    return int(early_stopping)

@seed_alias("gradkit.nn.fit")
def fit(model: Sequential, X: Any, y: Any, *, loss: Any, optimizer: Optimizer | None = None, epochs: int = 10,
        batch_size: int = 32, validation_split: float = 0.0, validation_data: tuple[Any, Any] | None = None,
        early_stopping: bool | int = False, rng: RNGLike = 0,
        callback: Callable[[int, dict[str, float]], None] | None = None, one_hot: int | None = None) -> History:
    """Train ``model`` on ``(X, y)`` by mini-batch gradient descent.

    Parameters
    ----------
    model
        A :class:`Sequential` that outputs the pre-activation of the head (logits).
    X, y
        Features ``(n, d)``, real and finite (complex input is refused, and so are values that overflow the
        model's dtype, such as 1e39 for a float32 model); targets as the loss expects them (integer labels,
        one-hot/soft targets, or regression values; 1-d targets of an elementwise loss are one output column).
    loss
        A ``compose(activation, loss)`` head — e.g. ``compose(Softmax(), MSELoss())`` — or a loss / loss name
        applied to the raw output.
    optimizer
        Default ``Adam(lr=1e-3)``. Its learning rate must fit the model's dtype.
    epochs, batch_size
        ``batch_size`` is clipped to the number of samples.
    validation_split, validation_data
        Hold out the last fraction of the (shuffled) data, or give ``(X_val, y_val)`` (non-empty, finite);
        not both. The split must leave at least one training sample.
    early_stopping
        ``True`` (patience 5) or a patience (an integer >= 1): stop when the validation loss has not improved
        for that many epochs and restore the best weights.
    rng : None, int or numpy.random.Generator, default 0
        Source of the shuffling and of the ``validation_split`` split, as in SPEC 7: an int seeds
        ``numpy.random.default_rng`` (the default, 0, makes every call with the same arguments give identical
        histories), ``None`` draws fresh entropy, a Generator is used as it is (and advanced). ``seed=`` is its
        deprecated old name. Layers such as :class:`Dropout` have their own ``rng``.
    callback
        Called as ``callback(epoch, logs)`` after every epoch (progress bars).
    one_hot
        The number of classes when ``y`` (and ``y_val``) are integer labels that the loss wants as one-hot rows
        (``compose(Softmax(), MSELoss())``, …): each batch's rows are built for that batch only, so the
        ``n × one_hot`` matrix never exists.

    Raises
    ------
    ValueError, TypeError
        For bad input, naming the argument.
    DivergenceError
        When the loss, the gradients or an update becomes NaN or infinite; the message names the epoch and
        batch and suggests a lower learning rate. The weights and the optimizer's state are not updated with it.
    """
    epochs, batch_size, patience = _check_settings(model, epochs, batch_size, one_hot, optimizer, callback,
                                                   early_stopping)
    head = as_head(loss)
    X, y = _check_xy(model, head, X, y, "X", "y", one_hot)
    optimizer = optimizer if optimizer is not None else Adam()
    optimizer.check_lr(model.dtype)  # lr=1e39 on a float32 model: refused before any work
    rng = as_generator(rng)
    X, y, X_val, y_val = _hold_out(model, head, X, y, validation_split, validation_data, one_hot, rng)
    if patience and X_val is None:
        raise ValueError("early_stopping needs validation_split or validation_data")
    validate = (None if X_val is None or y_val is None
                else functools.partial(_evaluate, model, head, X_val, y_val, 1024, one_hot))
    steps = _InMemorySteps(model, head, X, y, min(batch_size, X.shape[0]), one_hot, optimizer, rng)
    return run_epochs(model, steps, optimizer, epochs, callback=callback, validate=validate, patience=patience)


def _check_settings(model: Sequential, epochs: Any, batch_size: Any, one_hot: Any, optimizer: Any, callback: Any,
                    early_stopping: Any) -> tuple[int, int, int]:
    """``fit``'s arguments other than the data, checked: ``(epochs, batch_size, patience)``."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a gradkit.nn.Sequential; got {type(model).__name__}")
    epochs = check_int(epochs, "epochs")
    batch_size = check_int(batch_size, "batch_size")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}")
    if one_hot is not None and check_int(one_hot, "one_hot") < 2:
        raise ValueError(f"one_hot must be the number of classes, >= 2; got {one_hot}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a gradkit.nn.Optimizer or None; got {type(optimizer).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
    return epochs, batch_size, _patience(early_stopping)


def _hold_out(model: Sequential, head: Composed, X: np.ndarray, y: np.ndarray, validation_split: Any,
              validation_data: Any, one_hot: int | None,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(X, y, X_val, y_val)``: the training rows and the checked ``validation_data``, or the rows that
    ``validation_split`` holds out of a permutation drawn from ``rng``; ``X_val = y_val = None`` without either."""
    frac = check_positive(validation_split, "validation_split", allow_zero=True)
    if frac >= 1:
        raise ValueError(f"validation_split must be in [0, 1); got {validation_split}")
    if validation_data is not None:
        if frac:
            raise ValueError(f"pass validation_split or validation_data, not both; got validation_split="
                             f"{validation_split!r} and validation_data")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(f"validation_data must be a pair (X_val, y_val); got {type(validation_data).__name__}"
                             + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list))
                                else ""))
        X_val, y_val = _check_xy(model, head, validation_data[0], validation_data[1],
                                 "validation_data X", "validation_data y", one_hot)
        if X_val.shape[1] != X.shape[1] or y_val.shape[1:] != y.shape[1:]:
            raise ValueError(f"validation_data must have the shape of (X, y) past the first axis, {X.shape[1:]} "
                             f"and {y.shape[1:]}; got {X_val.shape[1:]} and {y_val.shape[1:]}")
        return X, y, X_val, y_val
    if not frac:
        return X, y, None, None
    n_val = max(1, round(frac * X.shape[0]))
    if n_val >= X.shape[0]:
        raise ValueError(f"validation_split={validation_split} holds out {n_val} of the {X.shape[0]} samples "
                         "and leaves none to train on: pass more samples, or validation_split=0")
    order = rng.permutation(X.shape[0])
    return X[order[n_val:]], y[order[n_val:]], X[order[:n_val]], y[order[:n_val]]


class _InMemorySteps(Steps):
    """``fit``'s data, arrays in memory: each epoch a permutation from ``rng`` cut into ``batch_size`` rows."""

    unit = "batch"

    def __init__(self, model: Sequential, head: Composed, X: np.ndarray, y: np.ndarray, batch_size: int,
                 one_hot: int | None, optimizer: Optimizer, rng: np.random.Generator) -> None:
        self.model, self.head, self.X, self.y, self.one_hot, self.rng = model, head, X, y, one_hot, rng
        self.n, self.batch_size = X.shape[0], batch_size
        self.labels = y if one_hot is not None else class_labels(head, y)
        # preallocated activations and gradients where every layer allows it (the same arithmetic)
        self.buffered = BufferedStep.build(model, batch_size, X.shape[1])
        # Optimizer.step computes every update and checks it before writing any: a non-finite gradient is caught
        # there (its update is not finite), without a pass over the gradients per batch. A subclass with a step of
        # its own may not check: the gradients are checked first for it
        self.checks_updates = type(optimizer).step is Optimizer.step
        self.params: dict[str, np.ndarray] | None = None
        self.grads: dict[str, np.ndarray] | None = None

    def batches(self, epoch: int) -> Iterator[np.ndarray]:
        order, size = self.rng.permutation(self.n), self.batch_size
        # the buffered step writes the layers' own gradient arrays in place: their dicts once an epoch, not per batch
        if self.buffered is not None:
            self.params, self.grads = self.model.params, self.model.grads
        return (order[start : start + size] for start in range(0, self.n, size))

    def step(self, idx: np.ndarray) -> StepResult:
        model, labels, buffered = self.model, self.labels, self.buffered
        yb = self.y[idx]
        batch_labels = yb if labels is self.y else None if labels is None else labels[idx]
        if self.one_hot is not None:
            yb = _one_hot(yb, self.one_hot, model.dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # reported by the engine, with the epoch
            logits = model.forward(self.X[idx], training=True) if buffered is None else buffered.run(self.X, idx)
            value, grad, scores = self.head._value_grad_scores(logits, yb)
            if not np.isfinite(value):
                return value, {}, None, len(idx), None
            if buffered is None:
                model.backward(grad, input_grad=False)
            else:
                buffered.backprop(grad)
            grads = model.grads if self.grads is None else self.grads
            if not self.checks_updates and not grads_finite(grads):
                return value, {}, None, len(idx), None
        params = model.params if self.params is None else self.params
        correct = None if batch_labels is None else int(np.count_nonzero(np.argmax(scores, axis=1) == batch_labels))
        return value, params, grads, len(idx), correct
