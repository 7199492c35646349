"""``numpy.matrix`` and masked arrays given to the public entry points are refused with a ``TypeError``
naming the argument (their arithmetic is not a plain array's: a matrix's ``*`` is the matrix product,
and a mask would be silently dropped), while the plain array of the same values is accepted."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.nn import Predictor

pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")

RNG = np.random.default_rng(11)
X = RNG.standard_normal((12, 3))
G = RNG.standard_normal((12, 3))
LABELS = RNG.integers(0, 3, 12)


def _model():
    return nn.Sequential([nn.Dense(3, 3, rng=0, dtype=np.float64)])


def _predictor():
    head = gk.compose("softmax", "cross_entropy")
    return Predictor(_model(), head, np.array(["a", "b", "c"]), np.zeros(3), np.ones(3))


def _sklearn(kind):
    pytest.importorskip("sklearn")
    from gradkit.sklearn import MLPClassifier, MLPRegressor

    est = (MLPClassifier if kind == "classifier" else MLPRegressor)(hidden_layer_sizes=(4,), max_iter=3,
                                                                    random_state=0)
    return est


def _fitted(kind):
    est = _sklearn(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, LABELS if kind == "classifier" else G[:, 0])


def _sk_fit(kind, X_, y_, w=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return _sklearn(kind).fit(X_, y_, sample_weight=w)


#: entry point -> (argument name, the call with the argument given as ``a``; ``a`` is (12, 3) float64 unless noted)
ENTRIES = {
    "softmax forward x": ("x", lambda a: gk.Softmax()(a)),
    "softmax vjp x": ("x", lambda a: gk.Softmax().vjp(a, G)),
    "softmax vjp g": ("g", lambda a: gk.Softmax().vjp(X, a)),
    "softmax jvp v": ("v", lambda a: gk.Softmax().jvp(X, a)),
    "softmax jacobian x": ("x", lambda a: gk.Softmax().jacobian(a)),
    "tanh derivative x": ("x", lambda a: gk.Tanh().derivative(a)),
    "mse call pred": ("pred", lambda a: gk.MSELoss()(a, G)),
    "mse call target": ("target", lambda a: gk.MSELoss()(X, a)),
    "mse grad pred": ("pred", lambda a: gk.MSELoss().grad(a, G)),
    "mse value_and_grad target": ("target", lambda a: gk.MSELoss().value_and_grad(X, a)),
    "head call z": ("z", lambda a: gk.compose("softmax", "cross_entropy")(a, LABELS)),
    "head grad z": ("z", lambda a: gk.compose("softmax", "cross_entropy").grad(a, LABELS)),
    "head vjp g": ("g", lambda a: gk.compose("tanh", gk.MSELoss(reduction="none")).vjp(X, G, a)),
    "head value_and_grad target": ("target", lambda a: gk.compose("tanh", "mse").value_and_grad(X, a)),
    "gradcheck x": ("x", lambda a: gk.gradcheck(gk.Softmax(), a)),
    "gradcheck target": ("target", lambda a: gk.gradcheck(gk.compose("tanh", "mse"), X, target=a)),
    "nn.fit X": ("X", lambda a: nn.fit(_model(), a, LABELS, loss=gk.compose("softmax", "cross_entropy"), epochs=1)),
    "nn.fit y": ("y", lambda a: nn.fit(_model(), X, a, loss=gk.compose("identity", "mse"), epochs=1)),
    "Sequential.forward x": ("x", lambda a: _model().forward(a)),
    "Predictor.predict X": ("X", lambda a: _predictor().predict(a)),
    "MLPClassifier.fit X": ("X", lambda a: _sk_fit("classifier", a, LABELS)),
    "MLPRegressor.fit y": ("y", lambda a: _sk_fit("regressor", X, a)),
    "MLPClassifier.predict X": ("X", lambda a: _fitted("classifier").predict(a)),
    "MLPRegressor.predict X": ("X", lambda a: _fitted("regressor").predict(a)),
}

FOREIGN = {
    "matrix": (np.asmatrix, "got numpy.matrix"),
    "masked": (lambda a: np.ma.masked_array(a, mask=a > 1.0), "got numpy.ma.MaskedArray"),
    "masked nothing": (np.ma.masked_array, "got numpy.ma.MaskedArray"),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_matrix_and_masked_inputs_are_refused_naming_the_argument(entry, kind):
    name, call = ENTRIES[entry]
    plain = G if name in ("g", "v", "target", "y", "weight") else X
    to, fragment = FOREIGN[kind]
    call(plain)  # the same values as a plain array are taken
    with pytest.raises(TypeError, match=rf"^{name} must be a plain array .*{fragment}"):
        call(to(plain))
