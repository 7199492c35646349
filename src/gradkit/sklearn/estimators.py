"""The estimators: :class:`MLPClassifier` and :class:`MLPRegressor`, scikit-learn's, with any gradkit head."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from ..base import AxisActivation
from ..losses.classification import ClassLoss
from ..losses.poisson import PoissonHead
from .base import _BaseMLP
from .inputs import _DTYPES, _REGRESSOR_LOSSES, _SPARSE, _host, _like_input, _sample_weight

__all__ = ['MLPClassifier', 'MLPRegressor']


_PARAMS_DOC = """
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer (``()``: no hidden layer, a linear model).
    activation : str, default="relu"
        Hidden activation: ``"identity"``, ``"logistic"``, ``"tanh"``, ``"relu"`` or any name from
        :func:`gradkit.activations.names`.
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        ``"lbfgs"``: :func:`scipy.optimize.minimize` (L-BFGS-B) on the full-batch loss and its exact
        gradient; ``"sgd"``: minibatch SGD with (Nesterov) momentum; ``"adam"``: Adam.
    alpha : float >= 0, default=1e-4
        L2 penalty ``alpha / (2 * n_samples) * sum ||W||**2`` on the weights (not the intercepts).
    batch_size : int or "auto", default="auto"
        Minibatch size of the stochastic solvers; ``"auto"`` is ``min(200, n_samples)``. Larger
        values are clipped to ``n_samples`` (with a warning).
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule of ``solver="sgd"``: constant; ``learning_rate_init / (t + 1) ** power_t`` with
        ``t`` the samples seen; divided by 5 whenever the stopping criterion fires.
    learning_rate_init : float > 0, default=1e-3
    power_t : float >= 0, default=0.5
    max_iter : int >= 1, default=200
        Epochs (stochastic solvers) or iterations (lbfgs).
    shuffle : bool, default=True
        Shuffle the samples every epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization, the shuffling and the validation split.
    tol : float >= 0, default=1e-4
        Training stops when the training loss (or, with early stopping, the validation score) has
        not improved by ``tol`` for ``n_iter_no_change`` consecutive epochs; lbfgs's ``gtol``.
    verbose : bool or int, default=False
        Print ``Iteration %d, loss = %.8f`` after every epoch.
    warm_start : bool, default=False
        ``fit`` continues from the weights of the previous fit.
    momentum : float in [0, 1], default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for binary classification only, as scikit-learn),
        stop when its score has not improved for ``n_iter_no_change`` epochs, and keep the best
        weights.
    validation_fraction : float in [0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
    epsilon : float > 0, default=1e-8
        Adam's parameters.
    n_iter_no_change : int >= 1 or numpy.inf, default=10
    max_fun : int >= 1, default=15000
        Most loss evaluations of lbfgs.
    output_activation : str or None, default=None
        gradkit's extra: the head's activation (see the module docstring for the defaults).
"""


_ATTRS_DOC = """
    coefs_, intercepts_ : list of ndarray
        The weights and intercepts of each layer (the input's float dtype).
    loss_ : float
        The training loss (regularized) after the last epoch / at lbfgs's solution.
    best_loss_ : float or None
        The lowest training loss (None with early stopping).
    loss_curve_ : list of float
        The training loss of each epoch (stochastic solvers).
    validation_scores_ : list of float or None
        The validation score of each epoch (with early stopping).
    best_validation_score_ : float or None
    n_iter_ : int
    t_ : int
        Samples seen by the stochastic solvers.
    n_layers_, n_outputs_ : int
    out_activation_ : str
        The head's activation: scikit-learn's name (``"logistic"``, ``"softmax"``,
        ``"identity"``) for the default heads, else the gradkit name used.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when X has string column names
    head_ : gradkit.Composed
        ``compose(output_activation, loss)``.
    model_ : gradkit.nn.Sequential
        The network (logits out), sharing ``coefs_`` and ``intercepts_``.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = (
        "Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``, with any gradkit head.\n\n"
        "    Parameters\n    ----------" + _PARAMS_DOC + """    loss : str or None, default=None
        gradkit's extra: a name from :func:`gradkit.losses.names`. With both ``output_activation``
        and ``loss`` None the head is scikit-learn's (logistic for binary and multilabel ``y``,
        softmax otherwise, with cross-entropy); else ``output_activation`` defaults to
        ``"softmax"`` and ``loss`` to ``"cross_entropy"``, with one output unit per class.
    class_weight : dict, "balanced" or None, default=None
        gradkit's extra: weights of the classes, multiplied into ``sample_weight``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)""" + _ATTRS_DOC
    )

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [StrOptions({"balanced"}), dict, None],
    }

    def __init__(
        self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
        alpha: float = 0.0001, batch_size: int | str = "auto", learning_rate: str = "constant",
        learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
        random_state: Any = None, tol: float = 1e-4, verbose: bool | int = False, warm_start: bool = False,
        momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
        validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
        n_iter_no_change: float = 10, max_fun: int = 15000, output_activation: str | None = None,
        loss: str | None = None, class_weight: Any = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.output_activation = output_activation
        self.loss = loss
        self.class_weight = class_weight

    # -- targets ---------------------------------------------------------------
    def _multilabel(self) -> bool:
        return self._binarizer.y_type_ == "multilabel-indicator"

    def _configure_head(self) -> None:
        k = len(self.classes_)
        self._one_hot_k = 0
        if self.output_activation is None and self.loss is None:
            if self._multilabel() or k <= 2:
                self._set_head("logistic", "bce", 1.0)
                self.out_activation_ = "logistic"
                self._units = k if self._multilabel() else 1
            else:
                self._set_head("softmax", "cross_entropy", 1.0)
                self.out_activation_ = "softmax"
                self._units = k
            return
        out = self.output_activation if self.output_activation is not None else "softmax"
        loss = self.loss if self.loss is not None else "cross_entropy"
        self._set_head(out, loss, 1.0)
        self.out_activation_ = out
        self._units = k
        if isinstance(self._head_.loss, ClassLoss):
            if self._multilabel():
                raise ValueError(f"loss={loss!r} takes one class per sample; a multilabel y needs an elementwise "
                                 "loss such as 'bce' or 'bce_with_logits'")
        else:
            self._row_scale = 1.0 / k
            self._one_hot_k = 0 if self._multilabel() else k

    def _n_units(self) -> int:
        return self._units

    def _batch_targets(self, T: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if self._one_hot_k:  # one-hot rows for this batch only (never n_samples × n_classes at once)
            out = np.zeros((T.shape[0], self._one_hot_k), dtype=dtype)
            out[np.arange(T.shape[0]), T] = 1
            return out
        return T if T.dtype.kind == "i" else T.astype(dtype, copy=False)

    def _prepare(self, X: Any, y: Any, sample_weight: Any, *, incremental: bool, reset: bool) -> tuple:
        X, y = validate_data(self, _host(X), _host(y, "y"), reset=reset, accept_sparse=_SPARSE, multi_output=True,
                             dtype=_DTYPES)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if type_of_target(y) not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"Unknown label type: {type_of_target(y)!r}. {type(self).__name__} takes class labels "
                             "or a multilabel indicator matrix as y")
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                    f"Previously got {self.classes_}, `y` has {classes}"
                )
            if len(np.setdiff1d(classes, self.classes_)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        self._configure_head()
        self.n_outputs_ = self._units
        if self._multilabel():
            T = np.asarray(y, dtype=X.dtype)
        elif self._units == 1:
            T = (y == self.classes_[-1]).astype(X.dtype).reshape(-1, 1)  # one class: all ones
        else:
            T = np.searchsorted(self.classes_, y).astype(np.int64)
        w = _sample_weight(sample_weight, X)
        if self.class_weight is not None:
            cw = compute_sample_weight(self.class_weight, y)
            w = cw if w is None else w * cw
        self._y_raw = y
        return X, T, w

    def _stratify_by(self, T: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        # scikit-learn stratifies the validation split only where its binarized y has one column (binary y),
        # by that boolean column; multiclass and multilabel splits are not stratified
        if self._multilabel() or len(self.classes_) > 2:
            return None
        return (y == self.classes_[-1]).reshape(-1, 1)

    def _encoded_targets(self, Y: np.ndarray) -> np.ndarray:
        Y = Y.reshape(Y.shape[0], -1)
        if self._multilabel() or self._units == 1:
            return Y.astype(np.float64)
        labels = np.argmax(Y, axis=1)
        if self._one_hot_k:
            return labels
        return labels

    # -- fit -----------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Fit the network to ``(X, y)`` (array-like or sparse CSR/CSC ``X``; labels or a multilabel
        indicator ``y``; optional per-sample weights)."""
        self._fit_atomically(lambda: self._fit(X, y, sample_weight, incremental=False))
        return self

    def _partial_fit_available(self) -> bool:
        if self.solver == "lbfgs":
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    @available_if(_partial_fit_available)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``, from the current weights and solver state.

        ``classes`` (every class that will ever appear) is required on the first call.
        """
        first = not hasattr(self, "classes_")
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            classes = unique_labels(classes)

            def body() -> None:
                y_ = _host(y, "y")
                if type_of_target(y_) == "multilabel-indicator":  # classes= names the indicator's columns
                    if np.shape(y_)[1] != len(classes):
                        raise ValueError(f"y is a multilabel indicator with {np.shape(y_)[1]} columns, but "
                                         f"classes={classes!r} has {len(classes)}")
                    self._binarizer = LabelBinarizer().fit(y_)
                else:
                    self._binarizer = LabelBinarizer().fit(classes)
                self.classes_ = self._binarizer.classes_
                self._fit(X, y_, sample_weight, incremental=True)

            self._fit_atomically(body)
            return self
        if classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"`classes={unique_labels(classes)!r}` is not the same as on the first call to "
                             f"partial_fit, which was: classes={self.classes_!r}")
        self._fit_atomically(lambda: self._fit(X, y, sample_weight, incremental=True))
        return self

    # -- predict ---------------------------------------------------------------------
    def _proba_raw(self, X: Any) -> np.ndarray:
        out = self._output_raw(X)
        if self._multilabel():
            p = expit(out) if self._head_.loss.name == "bce_with_logits" else np.clip(out, 0, 1)
            return p.astype(out.dtype, copy=False)
        if out.shape[1] == 1:
            return np.ones_like(out) if len(self.classes_) == 1 else np.hstack([1 - out, out])
        return self._normalize(out).astype(out.dtype, copy=False)

    def _normalize(self, out: np.ndarray) -> np.ndarray:
        act, loss = self._head_.activation, self._head_.loss
        normalizer = isinstance(act, AxisActivation)
        if normalizer and act.output_range == (-math.inf, 0.0):  # log-probabilities
            p = np.exp(out)
        elif normalizer and act.output_range == (0.0, 1.0):  # probabilities
            p = out
        elif loss.name == "bce_with_logits":
            p = expit(out)
        elif act.output_range[0] >= 0:
            p = out
        else:
            p = np.maximum(out, 0.0)
        total = p.sum(axis=1, keepdims=True)
        ok = np.isfinite(total) & (total > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(ok, p / np.where(ok, total, 1.0), 0.0)
        if not ok.all():
            p = np.where(ok, p, softmax(np.nan_to_num(out), axis=1))
        return p

    def _predict_raw(self, X: Any) -> np.ndarray:
        proba = self._proba_raw(X)
        if self._multilabel():
            return (proba > 0.5).astype(int)
        return self.classes_[np.argmax(proba, axis=1)]

    def _score_raw(self, X: Any, y: Any, w: Any) -> float:
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self._predict_raw(X), sample_weight=w))

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities (rows summing to 1; per label for multilabel ``y``), in the network's dtype."""
        check_is_fitted(self)
        X_ = validate_data(self, _host(X), reset=False, accept_sparse=_SPARSE, dtype=_DTYPES)
        return _like_input(self._proba_raw(X_), X)

    def predict_log_proba(self, X: Any) -> Any:
        """``log(predict_proba(X))`` (``-inf`` where a probability is 0)."""
        check_is_fitted(self)
        X_ = validate_data(self, _host(X), reset=False, accept_sparse=_SPARSE, dtype=_DTYPES)
        with np.errstate(divide="ignore"):
            return _like_input(np.log(self._proba_raw(X_)), X)

    def predict(self, X: Any) -> Any:
        """``classes_[argmax(predict_proba(X))]`` (an indicator matrix for multilabel ``y``)."""
        check_is_fitted(self)
        X_ = validate_data(self, _host(X), reset=False, accept_sparse=_SPARSE, dtype=_DTYPES)
        return _like_input(self._predict_raw(X_), X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = (
        "Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor``, with any gradkit head.\n\n"
        "    Parameters\n    ----------\n" + """    loss : str, default="squared_error"
        scikit-learn's half squared error ``mean((y - p)**2) / 2``; ``"poisson"``, scikit-learn's
        exponential output with the half Poisson deviance (targets >= 0, ``output_activation`` None);
        or a gradkit loss with gradkit's meaning: ``"mse"``, ``"mae"``, ``"huber"``, ``"bce"``,
        ``"bce_with_logits"``.""" + _PARAMS_DOC
        + "\n    Attributes\n    ----------" + _ATTRS_DOC
    )

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions(_REGRESSOR_LOSSES)],
    }

    def __init__(
        self, loss: str = "squared_error", hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
        solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto", learning_rate: str = "constant",
        learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
        random_state: Any = None, tol: float = 1e-4, verbose: bool | int = False, warm_start: bool = False,
        momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
        validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
        n_iter_no_change: float = 10, max_fun: int = 15000, output_activation: str | None = None,
    ) -> None:
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.output_activation = output_activation

    def _n_units(self) -> int:
        return self.n_outputs_

    def _prepare(self, X: Any, y: Any, sample_weight: Any, *, incremental: bool, reset: bool) -> tuple:
        X, y = validate_data(self, _host(X), _host(y, "y"), reset=reset, accept_sparse=_SPARSE, multi_output=True,
                             y_numeric=True, dtype=_DTYPES)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        k = 1 if y.ndim == 1 else y.shape[1]
        if hasattr(self, "n_outputs_") and not reset and k != self.n_outputs_:
            raise ValueError(f"y has {k} target columns, but {type(self).__name__} was fitted with {self.n_outputs_}")
        self.n_outputs_ = k
        out = self.output_activation if self.output_activation is not None else "identity"
        if self.loss == "poisson":
            if self.output_activation is not None:
                raise ValueError(f"loss='poisson' has its own (exponential) output; got "
                                 f"output_activation={self.output_activation!r}: pass None")
            if np.any(y < 0):
                raise ValueError(f"loss='poisson' needs targets >= 0; y has values down to {float(np.min(y)):g}")
            self.head_ = self._head_ = PoissonHead()
            self._row_scale = 1.0
            out = "exp"
        elif self.loss == "squared_error":
            self._set_head(out, "mse", 0.5 / k)
        else:
            self._set_head(out, self.loss, 1.0 / k)
        self.out_activation_ = out
        T = np.asarray(y, dtype=np.float64).reshape(-1, k)
        w = _sample_weight(sample_weight, X)
        self._y_raw = y
        return X, T, w

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Fit the network to ``(X, y)`` (array-like or sparse CSR/CSC ``X``; 1-d or 2-d ``y``)."""
        self._fit_atomically(lambda: self._fit(X, y, sample_weight, incremental=False))
        return self

    def _partial_fit_available(self) -> bool:
        if self.solver == "lbfgs":
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                                 "stochastic.")
        return True

    @available_if(_partial_fit_available)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``(X, y)``, from the current weights and solver state."""
        self._fit_atomically(lambda: self._fit(X, y, sample_weight, incremental=True))
        return self

    def _predict_raw(self, X: Any) -> np.ndarray:
        out = self._output_raw(X)
        return out.ravel() if self.n_outputs_ == 1 else out

    def _score_raw(self, X: Any, y: Any, w: Any) -> float:
        from sklearn.metrics import r2_score

        return float(r2_score(y, self._predict_raw(X), sample_weight=w))

    def predict(self, X: Any) -> Any:
        """Predictions of shape ``(n,)`` or ``(n, n_outputs_)``, in the network's dtype."""
        check_is_fitted(self)
        X_ = validate_data(self, _host(X), reset=False, accept_sparse=_SPARSE, dtype=_DTYPES)
        return _like_input(self._predict_raw(X_), X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
