"""Bad ``sample_weight`` and degenerate ``y`` in ``fit``: gradkit's estimators accept what scikit-learn's
MLPs accept and refuse what they refuse, with the same exception type (scikit-learn is the oracle,
whichever version is installed); masked weights, whose mask scikit-learn drops, are a TypeError here."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from sklearn import neural_network as sk_nn

from gradkit.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")

N = 24


def _weights(rng):
    """Hostile ``sample_weight`` values, generated: name -> array or scalar."""
    w = rng.uniform(0.5, 2.0, N)
    one_negative = w.copy()
    one_negative[rng.integers(N)] = -rng.uniform(0.1, 3.0)
    with_nan, with_inf = w.copy(), w.copy()
    with_nan[rng.integers(N)], with_inf[rng.integers(N)] = np.nan, np.inf
    return {
        "all negative": -w, "one negative": one_negative, "negative scalar": -float(w[0]),
        "positive scalar": float(w[0]), "zeros": np.zeros(N), "nan": with_nan, "inf": with_inf,
        "letters": np.array([chr(97 + i % 26) for i in range(N)]), "numeric strings": w.astype(str),
        "objects": w.astype(object), "bools": w > 1.0, "complex": w + 1j, "too short": w[:-1],
        "too long": np.r_[w, 1.0], "two-d": w[:, None], "matrix": np.asmatrix(w), "list": w.tolist(),
    }


def _outcome(fit):
    """The exception type ``fit()`` raises, or None when it fits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit()
        except Exception as exc:  # noqa: BLE001 - the type is what is compared
            return type(exc)
    return None


def _needs_weights(sk_estimator):
    if "sample_weight" not in inspect.signature(sk_estimator.fit).parameters:
        pytest.skip(f"scikit-learn's {sk_estimator.__name__} takes sample_weight from 1.7 on")


CASES = sorted(_weights(np.random.default_rng(0)))
PAIRS = {"classifier": (MLPClassifier, sk_nn.MLPClassifier), "regressor": (MLPRegressor, sk_nn.MLPRegressor)}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_sample_weight_is_refused_exactly_as_scikit_learn_refuses_it(kind, case):
    ours, theirs = PAIRS[kind]
    _needs_weights(theirs)
    rng = np.random.default_rng(CASES.index(case))
    X = rng.standard_normal((N, 3))
    y = np.arange(N) % 3 if kind == "classifier" else rng.standard_normal(N)
    w = _weights(rng)[case]
    params = {"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0}
    expected = _outcome(lambda: theirs(**params).fit(X, y, sample_weight=w))
    got = _outcome(lambda: ours(**params).fit(X, y, sample_weight=w))
    assert got is expected, f"sample_weight {case}: scikit-learn {expected}, gradkit {got}"


@pytest.mark.parametrize("labels", [lambda n: np.zeros(n, int), lambda n: np.full(n, "only"),
                                    lambda n: np.full(n, 7.0)])
def test_a_single_class_is_treated_as_scikit_learn_treats_it(labels):
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((N, 3)), labels(N)
    params = {"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0}
    expected = _outcome(lambda: sk_nn.MLPClassifier(**params).fit(X, y))
    assert _outcome(lambda: MLPClassifier(**params).fit(X, y)) is expected
    if expected is None:  # fitted: every prediction is the one class, as scikit-learn's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, theirs = MLPClassifier(**params).fit(X, y), sk_nn.MLPClassifier(**params).fit(X, y)
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_a_masked_sample_weight_is_refused_naming_it(kind):
    ours = PAIRS[kind][0]
    rng = np.random.default_rng(9)
    X = rng.standard_normal((N, 3))
    y = np.arange(N) % 2 if kind == "classifier" else rng.standard_normal(N)
    w = np.ma.masked_array(rng.uniform(0.5, 2.0, N), mask=rng.random(N) < 0.3)
    with pytest.raises(TypeError, match="^sample_weight must be a plain array .*numpy.ma.MaskedArray"):
        ours(max_iter=3).fit(X, y, sample_weight=w)
