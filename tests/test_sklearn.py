"""scikit-learn estimators: the estimator checks, accuracy, pipelines, partial_fit, heads, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import gradkit as gk
from gradkit.sklearn import MLPClassifier, MLPRegressor

OUTPUTS = ("softmax", "sigmoid", "log_softmax", "identity")
LOSSES = ("cross_entropy", "nll", "mse", "bce", "bce_with_logits", "kl_div")


def _compose_ok(activation: str, loss: str) -> bool:
    try:
        gk.compose(activation, loss)
    except ValueError:
        return False
    return True


# -- scikit-learn's estimator checks ------------------------------------------------

@parametrize_with_checks(
    [
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=1e-2, random_state=0),
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, learning_rate_init=1e-2, random_state=0),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- data ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=150, centers=3, n_features=4, random_state=0)
    return StandardScaler().fit_transform(X), y


# -- classification quality ------------------------------------------------------------

@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_digits_accuracy(digits, loss):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(hidden_layer_sizes=(64,), output_activation="softmax", loss=loss, max_iter=30,
                        learning_rate_init=1e-2, random_state=0)
    clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.95
    assert clf.n_iter_ == 30 and len(clf.loss_curve_) == 30
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.head_.activation.name == "softmax" and clf.head_.loss.name == loss
    assert isinstance(clf.model_, gk.nn.Sequential)
    assert clf.model_.layers[0].params["W"] is clf.coefs_[0]  # the Sequential view shares the weights


def test_defaults_are_softmax_cross_entropy_and_identity_mse(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X, y)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X, X[:, 0])
    assert (clf.head_.activation.name, clf.head_.loss.name) == ("softmax", "cross_entropy")
    assert (reg.head_.activation.name, reg.head_.loss.name) == ("identity", "mse")
    assert clf.get_params()["loss"] is None and clf.get_params()["output_activation"] is None  # stored unchanged


def test_predict_proba_rows_sum_to_one(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, learning_rate_init=1e-2, random_state=0).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (X.shape[0], 3) and proba.dtype == np.float64
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba)


def test_binary_string_labels(blobs):
    X, y = blobs
    labels = np.where(y == 0, "spam", "ham")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, learning_rate_init=1e-2, random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["ham", "spam"]
    assert clf.coefs_[-1].shape[1] == 1 and clf.out_activation_ == "logistic"  # scikit-learn's binary head
    chosen = MLPClassifier(hidden_layer_sizes=(8,), output_activation="softmax", max_iter=2, random_state=0)
    assert chosen.fit(X, labels).coefs_[-1].shape[1] == 2  # a chosen head: one output unit per class
    assert set(clf.predict(X)) <= {"ham", "spam"}
    assert clf.score(X, labels) > 0.9


def test_pipeline_and_grid_search(blobs):
    X, y = blobs
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__learning_rate_init": [1e-2, 1e-1]}, cv=3)
    search.fit(X, y)
    assert search.best_params_["mlpclassifier__learning_rate_init"] in (1e-2, 1e-1)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert search.score(X, y) > 0.8


def test_pandas_dataframe_sets_feature_names(blobs):
    pd = pytest.importorskip("pandas")
    X, y = blobs
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(df, pd.Series(y))
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c", "d"])
    assert clf.n_features_in_ == 4
    assert set(clf.predict(df)) <= set(y)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df.rename(columns={"a": "z"}))
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(df, df["a"] * 2)
    np.testing.assert_array_equal(reg.feature_names_in_, ["a", "b", "c", "d"])
    assert reg.predict(df).shape == (len(df),)


def test_determinism_with_fixed_random_state(blobs):
    X, y = blobs
    make = lambda seed: MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=seed)
    a, b = make(3).fit(X, y), make(3).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.loss_curve_ == b.loss_curve_
    c = make(4).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    clone_ = clone(a).fit(X, y)  # refitting a clone gives the same network
    np.testing.assert_array_equal(a.predict_proba(X), clone_.predict_proba(X))


def test_pickle_roundtrip_does_not_keep_the_last_input(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    size = len(pickle.dumps(clf))
    big = np.repeat(X, 200, axis=0)  # 30 000 rows: 960 kB of float64
    clf.predict(big)
    data = pickle.dumps(clf)
    assert len(data) < size + 1000  # the layers' forward caches are released after predict
    again = pickle.loads(data)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


# -- partial_fit -----------------------------------------------------------------------

def test_partial_fit_improves_the_loss(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=1e-2, batch_size=16, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(10):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 10  # the last call's epochs; the curve keeps all, as scikit-learn
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    seen = clf.t_
    clf.partial_fit(X[:40], y[:40])  # classes optional after the first call; the solver's state carries over
    assert clf.t_ == seen + 40
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, np.where(y == 2, 7, y))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :3], y)
    clf.fit(X, y)  # fit starts over
    assert len(clf.loss_curve_) == clf.n_iter_ <= clf.max_iter


def test_failed_first_partial_fit_leaves_the_estimator_unfitted(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(clf, "n_features_in_") and not hasattr(clf, "coefs_") and not hasattr(clf, "classes_")
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.partial_fit(X[:, :2], y, classes=[0, 1, 2])  # a fresh first call: any number of features
    assert clf.n_features_in_ == 2


def test_partial_fit_with_batches_of_missing_classes(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=1e-2, random_state=0)
    clf.partial_fit(X[y == 0], y[y == 0], classes=np.array([0, 1, 2]))
    clf.partial_fit(X[y != 0], y[y != 0])
    assert clf.predict_proba(X).shape == (len(X), 3)


def test_regressor_partial_fit(blobs):
    X, _ = blobs
    y = X @ np.array([1.0, -2.0, 0.5, 0.0])
    reg = MLPRegressor(hidden_layer_sizes=(8,), learning_rate_init=1e-2, batch_size=16, random_state=0)
    for _ in range(15):
        reg.partial_fit(X, y)
    assert reg.loss_curve_[-1] < 0.2 * reg.loss_curve_[0]
    with pytest.raises(ValueError, match="target columns"):
        reg.partial_fit(X, np.c_[y, y])


# -- every output activation × loss pair ----------------------------------------------------

@pytest.mark.parametrize("output_activation", OUTPUTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_every_head_pair(blobs, output_activation, loss):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), output_activation=output_activation, loss=loss,
                        max_iter=3, learning_rate_init=1e-2, random_state=0)
    if not _compose_ok(output_activation, loss):
        with pytest.raises(ValueError, match="output_activation") as info:
            clf.fit(X, y)
        message = str(info.value)
        assert "loss" in message and repr(output_activation) in message and repr(loss) in message
        assert not hasattr(clf, "coefs_")
        return
    clf.fit(X, y)
    proba = clf.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert np.all(np.isfinite(clf.loss_curve_))


@pytest.mark.parametrize("output_activation, loss", [("softmax", "mse"), ("sigmoid", "bce"), ("log_softmax", "nll"),
                                                     ("identity", "bce_with_logits"), ("identity", "mse")])
def test_sensible_heads_learn(blobs, output_activation, loss):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(16,), output_activation=output_activation, loss=loss,
                        max_iter=40, learning_rate_init=1e-2, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85


def test_regressor_rejects_class_losses_and_invalid_pairs(blobs):
    X, _ = blobs
    with pytest.raises(InvalidParameterError, match="loss"):
        MLPRegressor(loss="cross_entropy").fit(X, X[:, 0])
    with pytest.raises(ValueError, match="output_activation='tanh'.*loss='bce'"):
        MLPRegressor(output_activation="tanh", loss="bce").fit(X, (X[:, 0] > 0).astype(float))
    reg = MLPRegressor(hidden_layer_sizes=(4,), output_activation="sigmoid", loss="bce", max_iter=2, random_state=0)
    pred = reg.fit(X, (X[:, :2] > 0).astype(float)).predict(X)
    assert pred.shape == (len(X), 2) and np.all((pred >= 0) & (pred <= 1))


# -- regression --------------------------------------------------------------------------------

def _smooth(X):
    return np.sin(2.0 * X[:, 0]) + 0.5 * X[:, 1] ** 2


def test_regressor_fits_a_smooth_function():
    rng = np.random.default_rng(0)
    X, X_test = rng.uniform(-1.5, 1.5, (600, 2)), rng.uniform(-1.5, 1.5, (300, 2))
    reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", max_iter=100, learning_rate_init=1e-2,
                       random_state=0)
    reg.fit(X, _smooth(X))
    assert reg.score(X_test, _smooth(X_test)) > 0.9


@pytest.mark.parametrize("shape", [(60,), (60, 1), (60, 3)])
def test_regressor_predict_shape_follows_scikit_learn(shape):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 4))
    y = rng.standard_normal(shape)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    if shape == (60, 1):  # a column is raveled with scikit-learn's DataConversionWarning
        with pytest.warns(DataConversionWarning, match="column-vector y"):
            reg.fit(X, y)
    else:
        reg.fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == ((60,) if shape[1:] in ((), (1,)) else shape)
    assert pred.dtype == np.float64
    assert reg.n_outputs_ == (3 if shape == (60, 3) else 1)


# -- dtypes -----------------------------------------------------------------------------------

def test_dtypes(blobs):
    X, y = blobs
    clf32 = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X.astype(np.float32), y)
    assert clf32.model_.dtype == np.float32  # float32 input trains in float32
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
    assert clf.model_.dtype == np.float64
    Xi = np.round(X * 3).astype(np.int64)
    assert MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(Xi, y).model_.dtype == np.float64
    for model, dtype in ((clf32, np.float32), (clf, np.float64)):
        assert all(c.dtype == dtype for c in model.coefs_ + model.intercepts_)
        for data in (X.astype(np.float32), X, Xi, Xi.astype(np.int32)):
            proba = model.predict_proba(data)
            expected = np.float32 if dtype == np.float32 and data.dtype == np.float32 else np.float64
            assert proba.dtype == expected  # the promotion of the network's and the input's, as scikit-learn
            np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X.astype(np.float32), X[:, 0])
    assert reg.model_.dtype == np.float32 and reg.predict(X).dtype == np.float64
    assert reg.predict(X.astype(np.float32)).dtype == np.float32


# -- options ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_solvers(blobs, solver):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, learning_rate_init=5e-2, batch_size=16,
                        max_iter=20, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85


def test_hidden_layer_sizes_forms(blobs):
    X, y = blobs
    assert len(MLPClassifier(hidden_layer_sizes=5, max_iter=1, random_state=0).fit(X, y).model_.params) == 4
    linear = MLPClassifier(hidden_layer_sizes=(), max_iter=20, learning_rate_init=5e-2, batch_size=16,
                           random_state=0).fit(X, y)
    assert len(linear.model_.layers) == 1 and linear.score(X, y) > 0.85
    deep = MLPClassifier(hidden_layer_sizes=[6, 5, 4], activation="tanh", max_iter=1, random_state=0).fit(X, y)
    assert [layer.out_features for layer in deep.model_.layers[::2]] == [6, 5, 4, 3]


def test_batch_size_auto_and_larger_than_n(blobs):
    X, y = blobs
    for batch_size in ("auto", 10_000):
        clf = MLPClassifier(hidden_layer_sizes=(4,), batch_size=batch_size, solver="adam", max_iter=2, random_state=0)
        if batch_size == "auto":
            clf.fit(X, y)
        else:
            with pytest.warns(UserWarning, match="clipped"):
                clf.fit(X, y)
        assert clf._optimizer.t == 2 and clf.t_ == 300  # one full batch per epoch (n = 150 < 200)


def test_early_stopping():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 10)), rng.integers(0, 2, 200)  # noise: validation loss soon rises
    clf = MLPClassifier(hidden_layer_sizes=(64,), learning_rate_init=1e-2, max_iter=200, early_stopping=True,
                        n_iter_no_change=3, validation_fraction=0.2, random_state=0).fit(X, y)
    assert clf.n_iter_ < 200
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_) and clf.best_loss_ is None
    no_es = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    assert no_es.validation_scores_ is None and no_es.best_validation_score_ is None


def test_verbose_prints_one_line_per_epoch(blobs, capsys):
    X, y = blobs
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, verbose=True, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Iteration 1, loss = ") and lines[2].startswith("Iteration 3,")
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""


# -- errors ---------------------------------------------------------------------------------------------

def test_nan_in_X_raises(blobs):
    X, y = blobs
    bad = X.copy()
    bad[3, 1] = np.nan
    for est in (MLPClassifier(max_iter=1), MLPRegressor(max_iter=1)):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            est.fit(bad, y)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.predict(bad)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.predict(bad)


def test_single_class_predicts_it_with_probability_one(blobs):
    X, _ = blobs  # scikit-learn fits one class (its estimator checks accept either that or an error)
    for est in (MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, np.full(len(X), 7)),
                MLPClassifier(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, np.full(len(X), 7), classes=[7])):
        np.testing.assert_array_equal(est.predict(X), 7)
        np.testing.assert_array_equal(est.predict_proba(X), np.ones((len(X), 1)))


def test_continuous_target_raises_for_the_classifier(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier(max_iter=1).fit(X, X[:, 0])


@pytest.mark.parametrize("params, name", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": -5}, "batch_size"), ({"batch_size": "big"}, "batch_size"),
    ({"learning_rate_init": 0.0}, "learning_rate_init"), ({"max_iter": 0}, "max_iter"),
    ({"solver": "rmsprop"}, "solver"),
    ({"learning_rate": 1e-3}, "learning_rate"), ({"momentum": 1.5}, "momentum"),
    ({"n_iter_no_change": 2.5}, "n_iter_no_change"),
    ({"activation": "swish"}, "activation"), ({"output_activation": "nope"}, "output_activation"),
    ({"loss": "hinge"}, "loss"), ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"n_iter_no_change": 0}, "n_iter_no_change"), ({"hidden_layer_sizes": 0}, "hidden_layer_sizes"),
])
def test_invalid_parameters_raise_at_fit(blobs, params, name):
    X, y = blobs
    est = MLPClassifier(**params)  # __init__ stores, never validates
    with pytest.raises(InvalidParameterError, match=name):
        est.fit(X, y)
    assert isinstance(InvalidParameterError("x"), ValueError)


def test_bad_hidden_layer_sizes_entries(blobs):
    X, y = blobs
    for sizes in [(8, 0), (8, -1), (4.5,), ("a",)]:
        with pytest.raises(ValueError, match="hidden_layer_sizes"):
            MLPClassifier(hidden_layer_sizes=sizes, max_iter=1).fit(X, y)


def test_mismatched_n_features_at_predict(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4 features"):
        clf.predict(X[:, :3])
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="X has 5 features, but MLPRegressor is expecting 4 features"):
        reg.predict(np.c_[X, X[:, :1]])


def test_unfitted_and_bad_shapes(blobs):
    X, y = blobs
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    with pytest.raises(NotFittedError):
        MLPRegressor().predict(X)
    with pytest.raises(ValueError, match="Expected 2D array"):
        MLPClassifier(max_iter=1).fit(X[:, 0], y)
    with pytest.raises(ValueError, match="0 sample"):
        MLPClassifier(max_iter=1).fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPClassifier(max_iter=1).fit(X, y[:-1])


def test_divergence_names_learning_rate_init(blobs):
    X, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=1e6, max_iter=30,
                        n_iter_no_change=np.inf, random_state=0)
    with pytest.raises(gk.nn.DivergenceError, match="non-finite parameter weights.*learning_rate_init"):
        clf.fit(X * 1e3, y)
    with pytest.raises(NotFittedError):  # a failed fit leaves no half-trained model behind
        clf.predict(X)
    assert issubclass(gk.nn.DivergenceError, FloatingPointError) and issubclass(gk.nn.DivergenceError, ValueError)
