"""gradkit.sklearn as a drop-in scikit-learn MLP: parameters, solvers, schedules, stopping rules,
fitted attributes and the inputs scikit-learn takes.

scikit-learn's own estimators serve as the oracle where the two must agree (same initialization,
shuffling, solvers and stopping rules give the same weights to rounding); the rest is checked
against independent NumPy/SciPy computations written here.
"""

from __future__ import annotations

import inspect
import re
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from sklearn import neural_network as sk_nn
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_sample_weight

import gradkit as gk
from gradkit.sklearn import MLPClassifier, MLPRegressor


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(120, 5, noise=1.0, random_state=0)
    return X, y / y.std()


def _quiet(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit()


def _max_diff(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


# -- scikit-learn as the oracle ----------------------------------------------------------------------------------

SAME_AS_SKLEARN = [
    ("multiclass", {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.1, "max_iter": 30}),
    ("multiclass", {"solver": "sgd", "learning_rate": "adaptive", "learning_rate_init": 0.1, "max_iter": 60,
                    "batch_size": 32}),
    ("multiclass", {"solver": "sgd", "nesterovs_momentum": False, "momentum": 0.5, "max_iter": 20, "batch_size": 16,
                    "learning_rate_init": 0.05, "alpha": 0.01}),
    ("multiclass", {"solver": "adam", "max_iter": 15, "batch_size": 40, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6,
                    "shuffle": False}),
    ("binary", {"solver": "adam", "max_iter": 20, "batch_size": 20, "activation": "logistic", "alpha": 0.1}),
    ("regression", {"solver": "adam", "max_iter": 30, "batch_size": 16, "activation": "tanh"}),
    ("regression", {"solver": "sgd", "max_iter": 30, "learning_rate_init": 0.01, "early_stopping": True}),
    ("regression", {"solver": "sgd", "max_iter": 200, "learning_rate_init": 0.01, "tol": 1e-2, "n_iter_no_change": 3}),
]


@pytest.mark.parametrize("task, params", SAME_AS_SKLEARN, ids=lambda v: v if isinstance(v, str) else
                         ",".join(f"{k}={v}" for k, v in v.items()))
def test_stochastic_solvers_give_scikit_learns_weights(iris, regression, task, params):
    if task == "regression":
        X, y = regression
        ours = _quiet(lambda: MLPRegressor(hidden_layer_sizes=(8,), random_state=0, **params).fit(X, y))
        ref = _quiet(lambda: sk_nn.MLPRegressor(hidden_layer_sizes=(8,), random_state=0, **params).fit(X, y))
    else:
        X, y = iris
        y = y if task == "multiclass" else np.where(y == 1, "b", "a")
        ours = _quiet(lambda: MLPClassifier((8,), random_state=0, **params).fit(X, y))
        ref = _quiet(lambda: sk_nn.MLPClassifier((8,), random_state=0, **params).fit(X, y))
        np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-9)
    assert ours.n_iter_ == ref.n_iter_ and ours.t_ == ref.t_
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9, atol=1e-12)
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-9) and ours.out_activation_ == ref.out_activation_
    assert _max_diff(ours, ref) < 1e-9
    assert ours.best_loss_ == ref.best_loss_ or ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-9)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_, rtol=1e-9)
        assert ours.best_validation_score_ == pytest.approx(ref.best_validation_score_, rel=1e-9)
    else:
        assert ours.validation_scores_ is None and ours.best_validation_score_ is None


def test_fitted_attributes(iris):
    X, y = iris
    clf = _quiet(lambda: MLPClassifier((7, 5), max_iter=3, random_state=0).fit(X, y))
    assert [c.shape for c in clf.coefs_] == [(4, 7), (7, 5), (5, 3)]
    assert [b.shape for b in clf.intercepts_] == [(7,), (5,), (3,)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    assert clf.n_iter_ == 3 and clf.t_ == 3 * len(X) and len(clf.loss_curve_) == 3
    assert clf.loss_ == clf.loss_curve_[-1] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.n_features_in_ == 4 and list(clf.classes_) == [0, 1, 2]
    binary = _quiet(lambda: MLPClassifier((3,), max_iter=1, random_state=0).fit(X, y == 2))
    assert binary.n_outputs_ == 1 and binary.out_activation_ == "logistic"
    chosen = _quiet(lambda: MLPClassifier((3,), output_activation="sparsemax", loss="sparsemax_loss", max_iter=1,
                                          random_state=0).fit(X, y))
    assert chosen.out_activation_ == "sparsemax"  # the head gradkit used, by its gradkit name
    reg = _quiet(lambda: MLPRegressor(hidden_layer_sizes=(3,), max_iter=1, random_state=0).fit(X, X[:, :2]))
    assert reg.n_outputs_ == 2 and reg.out_activation_ == "identity"
    lbfgs = _quiet(lambda: MLPClassifier((3,), solver="lbfgs", max_iter=5, random_state=0).fit(X, y))
    assert lbfgs.n_iter_ == 5 and not hasattr(lbfgs, "loss_curve_") and np.isfinite(lbfgs.loss_)


# -- one SGD step, worked out by hand --------------------------------------------------------------------------------

def test_one_sgd_step_with_alpha_is_the_worked_example():
    """The L2 term ``alpha * W / n`` enters the weights' gradient (not the intercepts'), as scikit-learn's
    worked example (logistic hidden layer and output, one sample, eta = alpha = 0.1)."""
    X, y = np.array([[0.6, 0.8, 0.7]]), np.array([0])
    W1, b1 = np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.0]]), np.array([0.1, 0.1])
    W2, b2 = np.array([[0.1], [0.2]]), np.array([1.0])
    mlp = MLPClassifier(hidden_layer_sizes=2, activation="logistic", solver="sgd", learning_rate_init=0.1,
                        alpha=0.1, momentum=0.0, max_iter=1, random_state=1)
    mlp.coefs_, mlp.intercepts_ = [W1.copy(), W2.copy()], [b1.copy(), b2.copy()]
    mlp.partial_fit(X, y, classes=[0, 1])
    # the same step by hand
    sig = lambda t: 1 / (1 + np.exp(-t))
    h = sig(X @ W1 + b1)
    o = sig(h @ W2 + b2)
    d2 = o - 0.0  # target 0
    d1 = (d2 @ W2.T) * h * (1 - h)
    np.testing.assert_allclose(mlp.coefs_[0], W1 - 0.1 * (X.T @ d1 + 0.1 * W1), rtol=1e-12)
    np.testing.assert_allclose(mlp.coefs_[1], W2 - 0.1 * (h.T @ d2 + 0.1 * W2), rtol=1e-12)
    np.testing.assert_allclose(mlp.intercepts_[0], b1 - 0.1 * d1[0], rtol=1e-12)
    np.testing.assert_allclose(mlp.intercepts_[1], b2 - 0.1 * d2[0], rtol=1e-12)
    # and the numbers of the published example, to 3 decimals
    np.testing.assert_almost_equal(mlp.coefs_[0], [[0.098, 0.195756], [0.2956664, 0.096008],
                                                   [0.4939998, -0.002244]], decimal=3)
    np.testing.assert_almost_equal(mlp.coefs_[1], [[0.04706], [0.154089]], decimal=3)
    np.testing.assert_almost_equal(mlp.intercepts_[0], [0.098333, 0.09626], decimal=3)
    np.testing.assert_almost_equal(mlp.intercepts_[1], [0.9235], decimal=3)
    assert mlp.predict_proba(X)[0, 1] == pytest.approx(0.739, abs=1e-3)


# -- lbfgs: scipy's L-BFGS-B on the exact gradient -------------------------------------------------------------------

def _tanh_net_loss_grad(theta, X, y, shapes, alpha):
    """An independent implementation: half squared error + alpha/(2n)·ΣW², one tanh hidden layer."""
    (d, h), n = shapes, X.shape[0]
    W1 = theta[: d * h].reshape(d, h)
    W2 = theta[d * h: d * h + h].reshape(h, 1)
    b1, b2 = theta[d * h + h: d * h + 2 * h], theta[d * h + 2 * h:]
    a = np.tanh(X @ W1 + b1)
    r = (a @ W2 + b2)[:, 0] - y
    loss = 0.5 * np.mean(r**2) + alpha / (2 * n) * (np.sum(W1**2) + np.sum(W2**2))
    g_out = r[:, None] / n
    g_a = g_out @ W2.T * (1 - a**2)
    grad = np.concatenate([(X.T @ g_a + alpha / n * W1).ravel(), (a.T @ g_out + alpha / n * W2).ravel(),
                           g_a.sum(0), g_out.sum(0)])
    return loss, grad


def test_lbfgs_is_scipy_lbfgsb_on_the_exact_gradient(regression):
    X, y = regression
    X, y = X[:60], y[:60]
    rng = np.random.default_rng(5)
    W1, W2 = rng.normal(0, 0.5, (5, 6)), rng.normal(0, 0.5, (6, 1))
    b1, b2 = rng.normal(0, 0.1, 6), rng.normal(0, 0.1, 1)
    reg = MLPRegressor(hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs", alpha=0.3, max_iter=40,
                       tol=1e-9, warm_start=True)
    reg.coefs_, reg.intercepts_ = [W1.copy(), W2.copy()], [b1.copy(), b2.copy()]  # start from these weights
    _quiet(lambda: reg.fit(X, y))
    theta0 = np.concatenate([W1.ravel(), W2.ravel(), b1, b2])
    res = scipy.optimize.minimize(_tanh_net_loss_grad, theta0, args=(X, y, (5, 6), 0.3), jac=True,
                                  method="L-BFGS-B", options={"maxiter": 40, "maxfun": 15000, "gtol": 1e-9})
    ours = np.concatenate([reg.coefs_[0].ravel(), reg.coefs_[1].ravel(), *reg.intercepts_])
    np.testing.assert_allclose(ours, res.x, rtol=1e-6, atol=1e-8)
    assert reg.loss_ == pytest.approx(res.fun, rel=1e-10) and reg.n_iter_ == res.nit


def test_lbfgs_max_fun_and_convergence_warning(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        clf = MLPClassifier((5,), solver="lbfgs", max_fun=10, max_iter=500, random_state=0).fit(X, y)
    assert clf.n_iter_ < 10
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")  # as scikit-learn: stochastic solvers only
    assert hasattr(MLPClassifier(solver="sgd"), "partial_fit")


# -- stopping rules ------------------------------------------------------------------------------------------------

def _epochs_until_stop(curve, tol, patience):
    """scikit-learn's rule on the training loss, replayed: the epoch (1-based) at which it stops, or None."""
    best, count = np.inf, 0
    for epoch, loss in enumerate(curve, 1):
        count = count + 1 if loss > best - tol else 0
        best = min(best, loss)
        if count > patience:
            return epoch
    return None


@pytest.mark.parametrize("tol, patience", [(1e-2, 2), (1e-3, 5)])
def test_tol_and_n_iter_no_change_stop_on_the_training_loss(regression, tol, patience):
    X, y = regression
    reg = MLPRegressor(hidden_layer_sizes=(8,), solver="adam", learning_rate_init=0.01, tol=tol,
                       n_iter_no_change=patience, max_iter=500, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # stopping early is converging: no warning
        reg.fit(X, y)
    assert reg.n_iter_ < 500
    assert _epochs_until_stop(reg.loss_curve_, tol, patience) == reg.n_iter_ == len(reg.loss_curve_)


def test_n_iter_no_change_inf_runs_max_iter_and_warns(regression):
    X, y = regression
    reg = MLPRegressor(hidden_layer_sizes=(4,), learning_rate_init=0.01, tol=1e3, n_iter_no_change=np.inf,
                       max_iter=12, random_state=0)
    with pytest.warns(ConvergenceWarning, match=re.escape("Maximum iterations (12) reached")):
        reg.fit(X, y)
    assert reg.n_iter_ == 12  # tol=1000 never counts as an improvement, but patience is infinite


def test_early_stopping_keeps_the_best_weights_and_stops_on_the_validation_score():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 10)), rng.integers(0, 2, 200)  # noise: the validation score soon stops rising
    clf = MLPClassifier((64,), learning_rate_init=1e-2, early_stopping=True, n_iter_no_change=3,
                        validation_fraction=0.2, random_state=0).fit(X, y)
    scores = clf.validation_scores_
    assert clf.n_iter_ < 200 and len(scores) == clf.n_iter_ and clf.best_loss_ is None
    assert clf.best_validation_score_ == max(scores)
    # scikit-learn's rule on the validation score, replayed: stop after n_iter_no_change + 1 epochs without a
    # score above the best one by tol
    best, count, stop = -np.inf, 0, None
    for epoch, score in enumerate(scores, 1):
        count = count + 1 if score < best + clf.tol else 0
        best = max(best, score)
        if count > 3:
            stop = epoch
            break
    assert stop == clf.n_iter_


def test_early_stopping_split_is_stratified_and_refuses_tiny_validation_sets():
    X = np.arange(42.0).reshape(21, 2)
    y = np.array([0] * 20 + [1])  # binary y is stratified, as in scikit-learn: one positive cannot be
    with pytest.raises(ValueError, match="least populated class"):
        MLPClassifier((3,), early_stopping=True, max_iter=2).fit(X, y)
    # scikit-learn does not stratify a multiclass split (its binarized y has several columns): nor does gradkit
    y3 = np.array([0] * 10 + [1] * 10 + [2])
    MLPClassifier((3,), early_stopping=True, max_iter=2).fit(X, y3)
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(hidden_layer_sizes=(3,), early_stopping=True, validation_fraction=0.1).fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPRegressor(hidden_layer_sizes=(3,), early_stopping=True).partial_fit(X, y)


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel", "weighted"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_early_stopping_equals_scikit_learns(task, solver):
    from sklearn.datasets import load_breast_cancer, load_digits

    rng = np.random.default_rng(3)
    if task == "multilabel":
        X, y = make_multilabel_classification(300, 10, n_classes=4, random_state=0)
    else:
        X, y = (load_breast_cancer if task == "binary" else load_digits)(return_X_y=True)
    X = X / X.max()
    if task == "weighted" and "sample_weight" not in inspect.signature(sk_nn.MLPClassifier.fit).parameters:
        pytest.skip("this scikit-learn's MLPClassifier.fit takes no sample_weight (new in 1.7) to compare with")
    fit_kw = {"sample_weight": rng.uniform(0.5, 2.0, len(y))} if task == "weighted" else {}
    kw = {"hidden_layer_sizes": (16,), "early_stopping": True, "random_state": 0, "max_iter": 40, "solver": solver,
          "validation_fraction": 0.2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPClassifier(**kw).fit(X, y, **fit_kw), sk_nn.MLPClassifier(**kw).fit(X, y, **fit_kw)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=0, atol=1e-12)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, abs=1e-12)


def test_adaptive_schedule_divides_the_learning_rate_by_five(iris, capsys):
    X, y = iris
    clf = MLPClassifier((8,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.5, tol=0.5,
                        n_iter_no_change=1, max_iter=60, verbose=True, random_state=0).fit(X, y)
    rates = [float(r) for r in re.findall(r"Setting learning rate to ([0-9.]+)", capsys.readouterr().out)]
    assert rates[:3] == pytest.approx([0.1, 0.02, 0.004], abs=1e-6)
    assert clf.n_iter_ < 60  # stops once the rate is at or below 1e-6


def test_verbose_prints_scikit_learns_lines(iris, capsys):
    X, y = iris
    clf = _quiet(lambda: MLPClassifier((4,), max_iter=3, verbose=True, random_state=0).fit(X, y))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"Iteration {i + 1}, loss = {loss:.8f}" for i, loss in enumerate(clf.loss_curve_)]


# -- inputs scikit-learn takes -------------------------------------------------------------------------------------

def test_multilabel_indicator_y():
    X, Y = make_multilabel_classification(n_samples=80, n_classes=4, random_state=0)
    clf = MLPClassifier((20,), solver="lbfgs", max_iter=300, random_state=0)
    _quiet(lambda: clf.fit(X, Y))
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 4
    pred, proba = clf.predict(X), clf.predict_proba(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1} and clf.score(X, Y) > 0.9
    assert proba.shape == Y.shape and np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    incremental = MLPClassifier((20,), solver="sgd", learning_rate_init=0.2, random_state=0)
    for _ in range(3):
        incremental.partial_fit(X, Y, classes=[0, 1, 2, 3])
    assert incremental.predict(X).shape == Y.shape
    with pytest.raises(ValueError, match="elementwise loss"):
        MLPClassifier((3,), loss="cross_entropy", max_iter=1).fit(X, Y)


def test_multi_output_regression(regression):
    X, _ = regression
    Y = np.c_[np.sin(X[:, 0]), X[:, 1] * X[:, 2], X[:, 3]]
    reg = _quiet(lambda: MLPRegressor(hidden_layer_sizes=(30,), solver="lbfgs", max_iter=300, random_state=0)
                 .fit(X, Y))
    assert reg.n_outputs_ == 3 and reg.predict(X).shape == (120, 3) and reg.score(X, Y) > 0.9


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_integer_sample_weight_equals_repeated_rows(iris, Estimator):
    X, y = iris
    w = np.random.default_rng(0).integers(0, 4, len(X))
    params = {"hidden_layer_sizes": (5,), "solver": "lbfgs", "max_iter": 30, "alpha": 0.01, "random_state": 0}
    target = y if Estimator is MLPClassifier else X[:, 0] * 2 - X[:, 1]
    weighted = _quiet(lambda: Estimator(**params).fit(X, target, sample_weight=w))
    repeated = _quiet(lambda: Estimator(**params).fit(np.repeat(X, w, axis=0), np.repeat(target, w)))
    assert _max_diff(weighted, repeated) < 1e-6 and weighted.loss_ == pytest.approx(repeated.loss_, rel=1e-8)
    with pytest.raises(ValueError, match="sample_weight"):
        Estimator(**params).fit(X, target, sample_weight=w[:-1])


def test_class_weight_is_sample_weight_by_class(iris):
    X, y = iris
    y = np.where(y == 2, 1, y)  # imbalanced: 50 vs 100
    params = {"hidden_layer_sizes": (4,), "solver": "lbfgs", "max_iter": 20, "random_state": 0}
    balanced = _quiet(lambda: MLPClassifier(class_weight="balanced", **params).fit(X, y))
    by_hand = _quiet(lambda: MLPClassifier(**params).fit(X, y, sample_weight=compute_sample_weight("balanced", y)))
    assert _max_diff(balanced, by_hand) < 1e-10
    as_dict = _quiet(lambda: MLPClassifier(class_weight={0: 3.0, 1: 1.0}, **params).fit(X, y))
    assert _max_diff(as_dict, by_hand) > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtype_is_preserved(iris, dtype):
    X, y = iris
    X = X.astype(dtype)
    clf = _quiet(lambda: MLPClassifier((4,), max_iter=3, random_state=0).fit(X, y))
    reg = _quiet(lambda: MLPRegressor(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=3).fit(X, X[:, 0]))
    for est in (clf, reg):
        assert all(p.dtype == dtype for p in est.coefs_ + est.intercepts_)
    assert clf.predict_proba(X).dtype == dtype and reg.predict(X).dtype == dtype


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_sparse_X_gives_the_dense_result(iris, solver):
    X, y = iris
    X = np.where(np.abs(X) < 0.5, 0.0, X)
    params = {"hidden_layer_sizes": (6,), "solver": solver, "max_iter": 10, "random_state": 0}
    dense = _quiet(lambda: MLPClassifier(**params).fit(X, y))
    for fmt in (sp.csr_matrix, sp.csc_matrix):
        sparse = _quiet(lambda fmt=fmt: MLPClassifier(**params).fit(fmt(X), y))
        assert _max_diff(dense, sparse) < 1e-9
        np.testing.assert_allclose(sparse.predict_proba(fmt(X)), dense.predict_proba(X), atol=1e-10)


def test_warm_start_continues_and_checks_the_classes(iris):
    X, y = iris
    clf = MLPClassifier((6,), solver="sgd", learning_rate_init=0.05, max_iter=5, warm_start=True, random_state=0)
    _quiet(lambda: clf.fit(X, y))
    first = [c.copy() for c in clf.coefs_]
    _quiet(lambda: clf.fit(X, y))
    cold = _quiet(lambda: MLPClassifier((6,), solver="sgd", learning_rate_init=0.05, max_iter=5,
                                        random_state=0).fit(X, y))
    assert _max_diff(cold, clf) > 1e-6 and not np.allclose(first[0], clf.coefs_[0])
    assert clf.t_ == 10 * len(X)
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the same classes"):
        clf.fit(X[y < 2], y[y < 2])


# -- non-finite results ----------------------------------------------------------------------------------------------

def test_non_finite_weights_raise_a_value_error():
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(10)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights") as info:
        MLPRegressor(hidden_layer_sizes=(4,), random_state=0).fit(X, y)  # seeded: 1 global seed in 30 keeps every unit dead
    assert isinstance(info.value, gk.nn.DivergenceError) and "learning_rate_init" in str(info.value)


def test_a_diverging_run_with_early_stopping_records_nan_and_keeps_the_best_weights(iris):
    X, y = iris
    reg = MLPRegressor(hidden_layer_sizes=(50,), activation="identity", solver="sgd", learning_rate_init=1.0,
                       max_iter=20, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    assert np.isnan(reg.validation_scores_[-1]) and isinstance(reg.validation_scores_[-1], float)
    assert all(np.isfinite(c).all() for c in reg.coefs_)


# -- loss="poisson" (scikit-learn's exponential output with the half Poisson deviance) -------------------------------

#: scikit-learn's MLPRegressor takes loss= (and "poisson") from 1.7 on; gradkit's works with any supported version
SK_POISSON = "loss" in sk_nn.MLPRegressor().get_params()


@pytest.mark.skipif(not SK_POISSON, reason="this scikit-learn's MLPRegressor has no loss='poisson' to compare with")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_poisson_loss_gives_scikit_learns_weights(solver):
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, (80, 3))
    y = rng.poisson(np.exp(X @ [1.0, -0.5, 0.3] + 0.5)).astype(float)
    params = {"loss": "poisson", "hidden_layer_sizes": (4,), "activation": "tanh", "solver": solver, "max_iter": 25,
              "batch_size": 20, "alpha": 0.01, "random_state": 0}
    ours = _quiet(lambda: MLPRegressor(**params).fit(X, y))
    ref = _quiet(lambda: sk_nn.MLPRegressor(**params).fit(X, y))
    assert ours.out_activation_ == ref.out_activation_ == "exp" and ours.n_iter_ == ref.n_iter_
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-6)
    assert _max_diff(ours, ref) < (1e-9 if solver == "adam" else 1e-5)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-5)
    assert np.all(ours.predict(X) > 0)


def test_poisson_loss_refuses_negative_targets_and_another_output():
    X = np.arange(20.0).reshape(10, 2)
    with pytest.raises(ValueError, match=r"loss='poisson' needs targets >= 0; y has values down to -1"):
        MLPRegressor(loss="poisson", max_iter=1).fit(X, np.r_[-1.0, np.ones(9)])
    with pytest.raises(ValueError, match="output_activation='softplus'"):
        MLPRegressor(loss="poisson", output_activation="softplus", max_iter=1).fit(X, np.ones(10))


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_a_failed_partial_fit_changes_nothing(iris, Estimator):
    X, y = iris
    target = y if Estimator is MLPClassifier else X[:, 0]
    est = Estimator(hidden_layer_sizes=(5,), solver="sgd", batch_size=10, learning_rate_init=0.05, random_state=0)
    kwargs = {"classes": [0, 1, 2]} if Estimator is MLPClassifier else {}
    est.partial_fit(X, target, **kwargs)
    before = ([c.copy() for c in est.coefs_ + est.intercepts_], list(est.loss_curve_), est.n_iter_, est.t_,
              [v.copy() for v in est._optimizer.velocities])
    hostile = X.copy()
    hostile[-3:] = np.finfo(np.float64).max  # three rows: the first batches train, a later one overflows
    with pytest.raises(gk.nn.DivergenceError, match="non-finite"):
        est.partial_fit(hostile, target)
    after = ([c.copy() for c in est.coefs_ + est.intercepts_], list(est.loss_curve_), est.n_iter_, est.t_,
             [v.copy() for v in est._optimizer.velocities])
    for a, b in zip(before[0] + before[4], after[0] + after[4]):
        np.testing.assert_array_equal(a, b)
    assert before[1:4] == after[1:4]
    est.partial_fit(X, target)  # and it goes on from there
    assert est.n_iter_ == 1 and est.t_ == 2 * len(X) and not hasattr(est, "_y_raw")  # as scikit-learn


def test_partial_fit_sample_weight_zero_drops_the_rows(iris):
    X, y = iris  # one batch (n <= 200): the step depends only on the rows with nonzero weight
    w = (np.arange(len(X)) % 3 != 0).astype(float)
    a = MLPClassifier((5,), random_state=0).partial_fit(X, y, sample_weight=w, classes=[0, 1, 2])
    b = MLPClassifier((5,), random_state=0).partial_fit(X[w > 0], y[w > 0], classes=[0, 1, 2])
    assert _max_diff(a, b) < 1e-12 and a.loss_ == pytest.approx(b.loss_, rel=1e-12)


@pytest.mark.parametrize("fit_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("predict_dtype", [np.float32, np.float64])
def test_output_dtype_is_scikit_learns_promotion(iris, fit_dtype, predict_dtype):
    X, y = iris
    ours = _quiet(lambda: MLPRegressor(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
                  .fit(X.astype(fit_dtype), X[:, 0]))
    ref = _quiet(lambda: sk_nn.MLPRegressor(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
                 .fit(X.astype(fit_dtype), X[:, 0]))
    assert ours.predict(X.astype(predict_dtype)).dtype == ref.predict(X.astype(predict_dtype)).dtype
    clf = _quiet(lambda: MLPClassifier((3,), max_iter=2, random_state=0).fit(X.astype(fit_dtype), y))
    assert clf.predict_proba(X.astype(predict_dtype)).dtype == np.result_type(fit_dtype, predict_dtype)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_X_is_never_densified(solver):
    import tracemalloc

    n, d = 20_000, 200_000  # dense: 32 GB of float64; CSR with one entry a row: under 1 MB
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.standard_normal(n), (np.arange(n), rng.integers(0, d, n))), shape=(n, d))
    y = rng.integers(0, 2, n)
    tracemalloc.start()
    try:
        clf = _quiet(lambda: MLPClassifier((4,), solver=solver, max_iter=2, random_state=0).fit(X, y))
        proba = clf.predict_proba(X[:5])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the first layer's weights (200 000 x 4 float64: 6.4 MB) dominate: with their gradient and Adam's two moments
    # (measured: 43 MiB), or L-BFGS-B's history of 10 pairs of parameter-sized vectors and its workspace (250 MiB)
    ceiling = {"adam": 100, "lbfgs": 400}[solver]
    assert peak < ceiling * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert proba.shape == (5, 2) and clf.n_iter_ >= 1


def test_partial_fit_counts_iterations_as_scikit_learn():
    from sklearn.neural_network import MLPClassifier as SkMLP

    from gradkit.sklearn import MLPClassifier as GkMLP

    X = np.random.default_rng(0).standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(int)
    for cls in (SkMLP, GkMLP):
        clf = cls(hidden_layer_sizes=(4,), random_state=0)
        for _ in range(3):
            clf.partial_fit(X, y, classes=[0, 1])
        assert clf.n_iter_ == 1 and clf.t_ == 120, cls
