"""An activation and a loss from your own functions, used everywhere a built-in is."""

import os
import tempfile

import numpy as np
from array_api_compat import array_namespace

import gradkit as gk


# y = softplus(x) / sum(softplus(x)) along the last axis: a smooth, dense cousin of softmax.
# The functions get arrays with the activation's axis last, of the caller's library.
def forward(x):
    xp = array_namespace(x)
    s = xp.logaddexp(xp.zeros_like(x), x)  # softplus, without overflow
    return s / xp.sum(s, axis=-1, keepdims=True)


def vjp(x, g, y):  # g^T J, with J_ij = (delta_ij - y_i) sigmoid(x_j) / S
    xp = array_namespace(x)
    s = xp.logaddexp(xp.zeros_like(x), x)
    sigmoid = xp.exp(x - s)  # = 1 / (1 + exp(-x)), without overflow
    return sigmoid / xp.sum(s, axis=-1, keepdims=True) * (g - xp.sum(g * y, axis=-1, keepdims=True))


softplus_norm = gk.custom_activation(forward, vjp, name="softplus_norm", output_range=(0.0, 1.0))


# log-cosh loss, elementwise: value and derivative per element
def log_cosh(p, t):
    xp = array_namespace(p)
    d = p - t
    return xp.logaddexp(d, -d) - float(np.log(2.0))


def log_cosh_grad(p, t):
    return array_namespace(p).tanh(p - t)


log_cosh_loss = gk.custom_loss(log_cosh, log_cosh_grad, name="log_cosh")

rng = np.random.default_rng(0)
z = rng.standard_normal((4, 5))
# jvp and jacobian were not given: they are derived from vjp (5 VJPs of basis vectors), and checked too
report = gk.gradcheck(softplus_norm, z, rng=0)
print(report)
assert report.ok

head = gk.compose(softplus_norm, "cross_entropy")  # output_range (0, 1) lets it feed probabilities
assert gk.gradcheck(head, z, target=np.array([0, 1, 2, 3]), rng=0).ok
assert gk.gradcheck(gk.compose("identity", log_cosh_loss), z, target=rng.standard_normal((4, 5)), rng=0).ok

# by name: checkpoints, the estimators and `gradkit --plugin MODULE` find them in the registries
gk.activations.register("softplus_norm", softplus_norm)
gk.losses.register("log_cosh", log_cosh_loss)
model = gk.nn.Sequential([gk.nn.Dense(5, 8, rng=0), "softplus_norm", gk.nn.Dense(8, 3, rng=1)])
X, y = rng.standard_normal((64, 5)), rng.integers(0, 3, 64)
history = gk.nn.fit(model, X, y, loss=gk.compose("softmax", "cross_entropy"), epochs=3, rng=0)
print("losses by epoch:", [round(v, 4) for v in history["loss"]])

with tempfile.TemporaryDirectory() as tmp:  # a checkpoint stores the name; load finds the functions by it
    path = os.path.join(tmp, "model.npz")
    gk.nn.save(model, path)
    assert np.array_equal(gk.nn.load(path).forward(X), model.forward(X))

from gradkit.sklearn import MLPClassifier  # needs the `train` extra

clf = MLPClassifier(hidden_layer_sizes=(16,), output_activation="softplus_norm", loss="log_cosh",
                    solver="lbfgs", max_iter=2000, random_state=0).fit(X, y)
print("training accuracy:", clf.score(X, y))
