"""Optimizers (in-place updates of NumPy parameters) and learning-rate schedules.

Conventions follow PyTorch: ``SGD`` and ``Adam`` add ``weight_decay·p`` to the
gradient (L2); ``AdamW`` decays the weights directly (decoupled).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .._array import check_int, check_positive

__all__ = ["SGD", "Adam", "AdamW", "CosineLR", "Optimizer", "StepLR", "get"]

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


class Optimizer:
    """Base: ``step(params, grads)`` updates ``params`` in place; ``set_epoch`` applies the schedule."""

    def __init__(self, lr: float, weight_decay: float = 0.0, schedule: Schedule | None = None) -> None:
        self.base_lr = check_positive(lr, "lr")
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        self.schedule = schedule
        self.lr = self.base_lr
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0

    def set_epoch(self, epoch: int) -> None:
        self.lr = self.base_lr * (self.schedule(epoch) if self.schedule else 1.0)

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.steps += 1
        for name, p in params.items():
            self._update(name, p, grads[name])

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def _buffer(self, name: str, key: str, like: np.ndarray) -> np.ndarray:
        slot = self.state.setdefault(name, {})
        if key not in slot:
            slot[key] = np.zeros_like(like)
        return slot[key]


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

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            v = self._buffer(name, "v", p)
            v *= self.momentum
            v += g
            g = g + self.momentum * v if self.nesterov else v
        p -= p.dtype.type(self.lr) * g


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

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        b1, b2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                p *= p.dtype.type(1.0 - self.lr * self.weight_decay)
            else:
                g = g + self.weight_decay * p
        m, v = self._buffer(name, "m", p), self._buffer(name, "v", p)
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        t = self.steps
        step = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        p -= p.dtype.type(step) * m / (np.sqrt(v) + p.dtype.type(self.eps * math.sqrt(1 - b2**t)))


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
