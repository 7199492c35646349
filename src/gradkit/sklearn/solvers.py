"""The stochastic solvers of :mod:`gradkit.sklearn`, with scikit-learn's semantics.

Both update a list of parameter arrays in place from a list of gradients of the same shapes.

* :class:`SGDSolver`: momentum ``mu``, Nesterov's variant or not, and a learning-rate schedule:
  ``"constant"``; ``"invscaling"``: ``eta_t = eta_0 / (t + 1) ** power_t`` after each epoch, where
  ``t`` counts the samples seen (``t_``); ``"adaptive"``: the rate is divided by 5 whenever the
  stopping criterion fires, and training stops once it is at or below ``1e-6``.
* :class:`AdamSolver`: Adam (Kingma & Ba) with bias correction folded into the step size,
  ``eta_t = eta_0 * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)``; it never stops early by itself.

Velocities / moments are kept in the parameters' dtype (float32 stays float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["AdamSolver", "SGDSolver"]

#: the adaptive schedule stops once the learning rate is at or below this
MIN_ADAPTIVE_LR = 1e-6


class SGDSolver:
    """Stochastic gradient descent with (Nesterov) momentum and scikit-learn's schedules."""

    def __init__(self, params: Sequence[np.ndarray], learning_rate_init: float, schedule: str = "constant",
                 momentum: float = 0.9, nesterov: bool = True, power_t: float = 0.5) -> None:
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.schedule = schedule
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.power_t = float(power_t)
        self.velocities = [np.zeros_like(p) for p in params]

    def update(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """One step: ``v <- mu v - eta g``; ``p += v`` (Nesterov: ``p += mu v - eta g``)."""
        lr, mu = self.learning_rate, self.momentum
        for p, g, v in zip(params, grads, self.velocities):
            v *= mu
            v -= lr * g
            if self.nesterov:
                p += mu * v - lr * g
            else:
                p += v

    def iteration_ends(self, t: int) -> None:
        """Called after each epoch with the number of samples seen so far."""
        if self.schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (t + 1) ** self.power_t

    def trigger_stopping(self, message: str, verbose: bool | int) -> bool:
        """The stopping criterion fired: stop (True), or, with the adaptive schedule, lower the rate."""
        if self.schedule != "adaptive":
            if verbose:
                print(message + " Stopping.")
            return True
        if self.learning_rate <= MIN_ADAPTIVE_LR:
            if verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(message + f" Setting learning rate to {self.learning_rate:f}")
        return False


class AdamSolver:
    """Adam with scikit-learn's parametrization (bias correction in the step size)."""

    def __init__(self, params: Sequence[np.ndarray], learning_rate_init: float = 1e-3, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8) -> None:
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.t = 0
        self.ms = [np.zeros_like(p) for p in params]
        self.vs = [np.zeros_like(p) for p in params]

    def update(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """One Adam step on every parameter."""
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        self.learning_rate = self.learning_rate_init * np.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
        for p, g, m, v in zip(params, grads, self.ms, self.vs):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p -= self.learning_rate * m / (np.sqrt(v) + self.epsilon)

    def iteration_ends(self, t: int) -> None:
        """Adam has no schedule."""

    def trigger_stopping(self, message: str, verbose: bool | int) -> bool:
        """Adam stops when the criterion fires."""
        if verbose:
            print(message + " Stopping.")
        return True
