"""A loss written as a subclass of ElementwiseLoss: the public compute_terms and check_values hooks."""

import math

import numpy as np

import gradkit as gk


@gk.losses.register
class LogCoshLoss(gk.losses.ElementwiseLoss):
    """l = log(cosh(p - t)) per element; dl/dp = tanh(p - t). Targets must be finite."""

    name = "log_cosh_cls"

    def check_values(self, xp, p, t):  # optional: refuse what the loss is not defined on
        if not bool(xp.all(xp.isfinite(t))):
            raise ValueError("target must be finite for log_cosh_cls")

    def compute_terms(self, xp, p, t):  # (per-element values, their derivatives), both p's shape
        d = p - t
        return xp.logaddexp(d, -d) - math.log(2.0), xp.tanh(d)


rng = np.random.default_rng(0)
p, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
loss = gk.losses.get("log_cosh_cls", reduction="sum")  # reductions, vjp, jvp and masks come from the base class
print(loss(p, t), gk.gradcheck(loss, p, target=t).ok)
assert gk.gradcheck(gk.compose("tanh", LogCoshLoss()), p, target=t).ok
