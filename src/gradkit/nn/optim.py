"""Optimizers (in-place updates of NumPy parameters) and learning-rate schedules.

Conventions follow PyTorch: ``SGD`` and ``Adam`` add ``weight_decay·p`` to the
gradient (L2); ``AdamW`` decays the weights directly (decoupled).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._array import check_int, check_positive

__all__ = ["SGD", "Adam", "AdamW", "CosineLR", "DivergenceError", "Optimizer", "StepLR", "get"]

Schedule = Callable[[int], float]


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_int(step_size, "step_size")
        if self.step_size < 1:
            raise ValueError(f"step_size must be >= 1; got {step_size}")
        self.gamma = check_positive(gamma, "gamma")

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)


class CosineLR:
    """Cosine annealing from the base rate to ``min_factor``·base over ``epochs`` epochs."""

    def __init__(self, epochs: int, min_factor: float = 0.0) -> None:
        self.epochs = check_int(epochs, "epochs")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {epochs}")
        self.min_factor = check_positive(min_factor, "min_factor", allow_zero=True)

    def __call__(self, epoch: int) -> float:
        t = min(epoch, self.epochs) / self.epochs
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


class DivergenceError(FloatingPointError):
    """The loss, the gradients or an update became NaN or infinite; the weights and the
    optimizer's state are left as they were before that step.

    ``reason`` is the bare cause (without the advice), as the message's first words.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message

    @classmethod
    def at(cls, value: float, epoch: int, where: str, lr: float, what: str | None = None) -> DivergenceError:
        """The error for a non-finite ``value`` (else overflowing gradients, or ``what`` when given)
        at ``epoch`` (0-based), ``where``."""
        if what is None:
            what = f"the loss became {float(value)}" if not np.isfinite(value) else "the gradients overflowed"
        return cls(f"{what} at epoch {epoch + 1}, {where}; training stopped before updating the weights "
                   f"with it. Try a lower learning rate (now {lr:g}).", what)


class Optimizer:
    """Base: ``step(params, grads)`` updates ``params`` in place; ``set_epoch`` applies the schedule.

    A step is all or nothing: the new value of every parameter (and the new optimizer
    state) is computed first and checked to be finite in the parameters' dtype; only
    then are they written. A non-finite update raises :class:`DivergenceError` and
    leaves the parameters, the state (moments, momentum buffers) and ``steps`` as
    they were. A learning rate larger than the parameters' dtype can hold (``lr=1e39``
    for float32) raises ``ValueError`` before anything is computed.
    """

    def __init__(self, lr: float, weight_decay: float = 0.0, schedule: Schedule | None = None) -> None:
        self.base_lr = check_positive(lr, "lr")
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a callable epoch -> factor or None; got {type(schedule).__name__}")
        self.schedule = schedule
        self.lr = self.base_lr
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0

    def set_epoch(self, epoch: int) -> None:
        """Set ``lr`` to ``base_lr × schedule(epoch)``; the product must be finite and >= 0."""
        epoch = check_int(epoch, "epoch")
        if self.schedule is None:
            self.lr = self.base_lr
            return
        factor = self.schedule(epoch)
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
            raise TypeError(f"schedule({epoch}) must return a real number; got {factor!r} ({type(factor).__name__})")
        lr = self.base_lr * float(factor)
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"schedule({epoch}) gave the learning rate {self.base_lr:g} × {float(factor)!r} = {lr!r}; "
                             "it must be finite and >= 0")
        self.lr = lr

    def check_lr(self, dtype: Any) -> None:
        """Raise ``ValueError`` when the current ``lr`` overflows ``dtype`` (e.g. ``lr=1e39`` in float32)."""
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.floating):
            largest = float(np.finfo(dtype).max)
            if self.lr > largest:
                raise ValueError(f"lr={self.lr:g} overflows the parameters' dtype {dtype} (largest value "
                                 f"{largest:g}); pass a learning rate below that (a sensible one is below 10)")

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Update ``params`` (in place) with ``grads``, all or nothing (see the class docstring).

        Raises
        ------
        ValueError
            A gradient is missing or has another shape than its parameter, or ``lr``
            overflows a parameter's dtype.
        DivergenceError
            An update (or the optimizer state) is not finite; nothing was changed.
        """
        for name, p in params.items():
            if name not in grads:
                raise ValueError(f"grads has no entry for parameter {name!r}; got {sorted(grads)}")
            if np.shape(grads[name]) != p.shape:
                raise ValueError(f"grads[{name!r}] must have the shape of its parameter, {p.shape}; "
                                 f"got {np.shape(grads[name])}")
        for dtype in {p.dtype for p in params.values()}:
            self.check_lr(dtype)
        t = self.steps + 1
        staged: list[tuple[np.ndarray, np.ndarray, str, dict[str, np.ndarray]]] = []
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for name, p in params.items():
                new, state = self._compute(name, p, np.asarray(grads[name]), t)
                if new.dtype != p.dtype:
                    new = new.astype(p.dtype)
                if not (np.isfinite(new).all() and self._state_finite(state)):
                    reason = f"the update of parameter {name!r} ({p.dtype}) is not finite"
                    raise DivergenceError(
                        f"{reason}: step {t} was not applied (parameters and optimizer state unchanged). "
                        f"Try a lower learning rate (now {self.lr:g}).", reason)
                staged.append((p, new, name, state))
        for p, new, name, state in staged:  # every update is finite: apply them all
            np.copyto(p, new)
            if state:
                self.state[name] = state
        self.steps = t

    def _compute(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The new value of ``p`` and its new state at step ``t``, without changing anything."""
        raise NotImplementedError

    def _state_finite(self, state: dict[str, np.ndarray]) -> bool:
        """Whether the new state is finite where a finite new parameter does not already imply it."""
        return True


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v ← μv + g``; ``p ← p - lr·(g + μv)`` with Nesterov, else ``p ← p - lr·v``.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, schedule: Schedule | None = None) -> None:
        super().__init__(lr, weight_decay, schedule)
        self.momentum = check_positive(momentum, "momentum", allow_zero=True)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    def _compute(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # a non-finite momentum buffer makes the new parameter non-finite too (lr > 0): no separate check
        if self.weight_decay:
            g = g + self.weight_decay * p
        state: dict[str, np.ndarray] = {}
        if self.momentum:
            old = self.state.get(name, {}).get("v")
            v = g.copy() if old is None else old * self.momentum + g
            state["v"] = v
            g = g + self.momentum * v if self.nesterov else v
        return p - p.dtype.type(self.lr) * g, state


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is L2 added to the gradient."""

    decoupled = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, schedule: Schedule | None = None) -> None:
        super().__init__(lr, weight_decay, schedule)
        b1, b2 = betas
        for name, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0.0 <= check_positive(b, name, allow_zero=True) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {b}")
        self.betas = (float(b1), float(b2))
        self.eps = check_positive(eps, "eps")

    def _compute(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        b1, b2 = self.betas
        base = p
        if self.weight_decay:
            if self.decoupled:
                base = p * p.dtype.type(1.0 - self.lr * self.weight_decay)
            else:
                g = g + self.weight_decay * p
        slot = self.state.get(name, {})
        m = slot["m"] * b1 if "m" in slot else np.zeros_like(p)
        m += (1 - b1) * g
        v = slot["v"] * b2 if "v" in slot else np.zeros_like(p)
        v += (1 - b2) * (g * g)
        step = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        new = base - p.dtype.type(step) * m / (np.sqrt(v) + p.dtype.type(self.eps * math.sqrt(1 - b2**t)))
        return new, {"m": m, "v": v}

    def _state_finite(self, state: dict[str, np.ndarray]) -> bool:
        # a finite v means a finite g·g, so a finite g and (with the old m finite) a finite m;
        # an infinite v alone would give a finite (zero) update and freeze the parameter for good
        return bool(np.isfinite(state["v"]).all())


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p ← p(1 - lr·wd)`` then Adam."""

    decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, schedule: Schedule | None = None) -> None:
        super().__init__(lr, betas, eps, weight_decay, schedule)


_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get(name: str | Optimizer, **kwargs: object) -> Optimizer:
    """An optimizer by name ("sgd", "adam", "adamw") or an instance passed through."""
    if isinstance(name, Optimizer):
        return name
    try:
        return _OPTIMIZERS[name](**kwargs)  # type: ignore[arg-type]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(_OPTIMIZERS)}") from None
