"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

Multi-layer perceptrons trained with :func:`gradkit.nn.fit`, whose output head
is any ``compose(output_activation, loss)`` pair — softmax with MSE included,
trained through the exact softmax Jacobian. They follow scikit-learn's
conventions (``get_params``/``set_params``/``clone``, pipelines, grid search,
``partial_fit``, the standard input validation and error messages) and pass
:func:`sklearn.utils.estimator_checks.check_estimator`.

>>> from sklearn.datasets import load_digits
>>> from gradkit.sklearn import MLPClassifier
>>> X, y = load_digits(return_X_y=True)
>>> clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=0).fit(X / 16, y)
>>> clf.predict_proba(X[:2] / 16).shape
(2, 10)

Design decisions
----------------
* **dtype.** ``float32`` input trains (and predicts) in ``float32``; anything
  else (``float64``, integers, booleans) is converted to ``float64``, as
  scikit-learn's own ``MLPClassifier`` does. The network's dtype is fixed at
  ``fit``; later inputs are cast to it. Predictions and probabilities are
  always returned as ``float64``.
* **batch_size.** An integer (clipped to the number of samples) or ``"auto"``,
  ``min(200, n_samples)`` as in scikit-learn. The default is 32.
* **Output units.** One per class, binary problems included (two units), so
  that every output activation × loss pair means the same thing for 2 or more
  classes. The regressor has one unit per target column.
* **Targets given to the loss.** Class losses (``cross_entropy``, ``nll``,
  ``kl_div``) get integer labels; elementwise losses (``mse``, ``mae``,
  ``huber``, ``bce``, ``bce_with_logits``) get one-hot rows.
* **predict_proba** maps the head's output ``o = output_activation(logits)`` to
  rows summing to 1, by the first rule that applies:

  1. a normalizer (``softmax``, ``taylor_softmax``, ``spherical_softmax``,
     ``sparsemax``, ``entmax15``, ``gumbel_softmax``): ``o`` (already a
     distribution; renormalized against rounding);
  2. a log-normalizer (``log_softmax``, ``log_taylor_softmax``,
     ``log_spherical_softmax``): ``exp(o)``;
  3. loss ``bce_with_logits`` (``o`` read as per-class logits): ``sigmoid(o)``
     divided by its row sum;
  4. a nonnegative output activation (``sigmoid``, ``relu``, ``softplus``,
     ``hard_sigmoid``): ``o`` divided by its row sum;
  5. any other output (``identity``, ``tanh``, ... with a regression-style loss):
     ``max(o, 0)`` divided by its row sum.

  A row whose sum in rule 4 or 5 is 0 falls back to ``softmax(o)``. Every rule is
  increasing within a row, and ``predict`` returns ``classes_[argmax(predict_proba)]``.
* **Divergence.** When the loss or the gradients stop being finite,
  :func:`gradkit.nn.fit` raises :class:`gradkit.nn.DivergenceError` (a
  ``FloatingPointError``); the estimators re-raise the same type with a message
  that names the ``learning_rate`` parameter. After ``fit`` fails this way the
  estimator is left unfitted (or as it was after its previous successful fit);
  after ``partial_fit`` fails the network keeps the updates of the batches of
  that call that came before the diverging one.
* **n_iter_no_change** is only used with ``early_stopping=True``: training stops
  when the validation loss (on a ``validation_fraction`` hold-out, not stratified)
  has not improved for that many epochs, and the best weights are restored.
  ``partial_fit`` never holds data out (as in scikit-learn).
* ``optimizer="sgd"`` is plain :class:`gradkit.nn.SGD` (no momentum);
  ``"adam"``/``"adamw"`` use gradkit's defaults (AdamW: weight decay 0.01).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from ._optional import require

require("gradkit.sklearn", "train")  # before the imports below, which would blame scipy
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import activations, losses, nn
from ._array import from_numpy, is_foreign, to_numpy
from .base import AxisActivation
from .compose import Composed, compose
from .config import get_config
from .losses.classification import ClassLoss
from .nn.train import cast_finite

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = frozenset(activations.names())
_CLASSIFIER_LOSSES = frozenset(losses.names())
_REGRESSOR_LOSSES = frozenset({"mse", "mae", "huber", "bce", "bce_with_logits"})
_OPTIMIZERS = {"sgd": nn.SGD, "adam": nn.Adam, "adamw": nn.AdamW}
# hidden activations that get He initialization; the others (and the output layer) get Glorot
_HE_INIT = frozenset({"relu", "leaky_relu", "elu", "selu", "gelu", "silu", "mish", "softplus"})
_SEED_MAX = np.iinfo(np.int32).max
_DTYPES = (np.float64, np.float32)  # float32 is kept, everything else becomes float64


def _host(a: Any, name: str = "X") -> Any:
    """With ``array_api_dispatch``, arrays of other libraries are copied to host NumPy for training.
    Complex NumPy input is refused here with a short message (scikit-learn's own check prints the
    whole array)."""
    a = to_numpy(a) if get_config()["array_api_dispatch"] and is_foreign(a) else a
    if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"Complex data not supported: {name} has dtype {a.dtype}; pass real numbers")
    return a


def _like_input(result: np.ndarray, X: Any) -> Any:
    """With ``array_api_dispatch``, a result in ``X``'s library and on its device (numeric results;
    class labels that are not numbers stay NumPy)."""
    if not (get_config()["array_api_dispatch"] and is_foreign(X)) or not np.issubdtype(result.dtype, np.number):
        return result
    return from_numpy(np.ascontiguousarray(result), X)


class _BaseMLP(BaseEstimator):
    """Shared machinery; see :class:`MLPClassifier` and :class:`MLPRegressor`."""

    _parameter_constraints: ClassVar[dict] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "output_activation": [StrOptions(set(_ACTIVATIONS)), None],
        "loss": [StrOptions(set(_CLASSIFIER_LOSSES)), None],
        "optimizer": [StrOptions(set(_OPTIMIZERS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
    }

    _default_output_activation = "identity"
    _default_loss = "mse"

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        output_activation: str | None = None,
        loss: str | None = None,
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        max_iter: int = 200,
        batch_size: int | str = 32,
        random_state: Any = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        verbose: bool | int = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.output_activation = output_activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.verbose = verbose

    # -- configuration -------------------------------------------------------
    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(np.ravel(np.asarray(sizes, dtype=object)))
        bad = [s for s in sizes if not isinstance(s, Integral) or isinstance(s, bool) or s < 1]
        if bad:
            raise ValueError(f"hidden_layer_sizes must contain positive integers; got {self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _make_head(self) -> Composed:
        out = self.output_activation if self.output_activation is not None else self._default_output_activation
        loss = self.loss if self.loss is not None else self._default_loss
        try:
            return compose(out, loss)
        except ValueError as exc:
            raise ValueError(
                f"output_activation={out!r} cannot be combined with loss={loss!r}: {exc}"
            ) from None

    def _batch_size(self, n: int) -> int:
        return min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)

    def _seed(self) -> int:
        return int(self._rng.randint(_SEED_MAX))

    def _initialize(self, n_features: int, n_outputs: int, dtype: np.dtype) -> None:
        """Build ``head_``, ``model_`` and ``optimizer_`` (the first ``fit``/``partial_fit`` call)."""
        self._rng = check_random_state(self.random_state)
        self.head_ = self._make_head()
        init = "he" if self.activation in _HE_INIT else "glorot"
        layers: list[Any] = []
        width = n_features
        for size in self._hidden_sizes():
            layers += [nn.Dense(width, size, init=init, rng=self._seed(), dtype=dtype), self.activation]
            width = size
        layers.append(nn.Dense(width, n_outputs, init="glorot", rng=self._seed(), dtype=dtype))
        self.model_ = nn.Sequential(layers)
        self.optimizer_ = _OPTIMIZERS[self.optimizer](lr=float(self.learning_rate))
        try:
            self.optimizer_.check_lr(dtype)
        except ValueError:
            raise ValueError(
                f"learning_rate={self.learning_rate!r} overflows {np.dtype(dtype)}, the dtype the network "
                f"computes in (largest value {float(np.finfo(dtype).max):g}): pass a smaller learning_rate"
            ) from None
        self.loss_curve_: list[float] = []
        self.validation_loss_curve_: list[float] = []
        self.n_iter_ = 0

    # -- training ------------------------------------------------------------
    def _train(self, X: np.ndarray, T: np.ndarray, *, incremental: bool) -> None:
        early = bool(self.early_stopping) and not incremental
        if early and X.shape[0] < 2:
            raise ValueError(f"early_stopping=True needs at least 2 samples to hold some out; got {X.shape[0]}")
        offset = self.n_iter_
        callback = None
        if self.verbose:
            def callback(epoch: int, logs: dict[str, float]) -> None:
                line = f"Iteration {offset + epoch + 1}, loss = {logs['loss']:.8f}"
                if "val_loss" in logs:
                    line += f", validation loss = {logs['val_loss']:.8f}"
                print(line, flush=True)
        try:
            history = nn.fit(
                self.model_,
                X,
                T,
                loss=self.head_,
                optimizer=self.optimizer_,
                epochs=1 if incremental else int(self.max_iter),
                batch_size=self._batch_size(X.shape[0]),
                validation_split=float(self.validation_fraction) if early else 0.0,
                early_stopping=int(self.n_iter_no_change) if early else False,
                rng=self._seed(),
                callback=callback,
                one_hot=self._one_hot(),
            )
        except nn.DivergenceError as exc:
            self._release_caches()
            raise nn.DivergenceError(
                f"{type(self).__name__} diverged: {exc} Lower the estimator's learning_rate "
                f"parameter (now learning_rate={self.learning_rate!r}) or scale the input features."
            ) from exc
        self._release_caches()
        self.loss_curve_ += history["loss"]
        if "val_loss" in history:
            self.validation_loss_curve_ += history["val_loss"]
            self.best_validation_loss_ = min(history["val_loss"])
        self.n_iter_ += history.epochs

    def _one_hot(self) -> int | None:
        """The number of classes when the targets are labels to be one-hot encoded batch by batch."""
        return None

    def _fit_atomically(self, fit_body: Any) -> None:
        """Run ``fit_body()``; if it raises, restore the attributes as they were before."""
        previous = dict(self.__dict__)
        try:
            fit_body()
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(previous)
            raise

    def _release_caches(self) -> None:
        """Drop the inputs/outputs that gradkit's layers keep from their last forward pass
        (for ``backward``), so that a fitted estimator does not hold on to, or pickle,
        the last batch it trained or predicted on."""
        self.model_.clear_cache()

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _output(self, X: Any) -> np.ndarray:
        """The head's output ``output_activation(model(X))`` as float64."""
        check_is_fitted(self)
        X = validate_data(self, _host(X), reset=False, dtype=_DTYPES)
        X = cast_finite(X, "X", self.model_.dtype)  # 1e39 in a float32 network: refused, not inf
        try:
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                logits = self.model_.forward(X)
                bad = ~np.isfinite(logits).all(axis=1)
                if bad.any():
                    rows = np.flatnonzero(bad)
                    raise ValueError(
                        f"X has {rows.size} row(s) (first: row {int(rows[0])}) for which the network's output "
                        f"overflows {self.model_.dtype}: the input is far outside the range seen in training; "
                        "scale X as the training data were scaled"
                    )
                out = self.head_.forward(logits)
        finally:
            self._release_caches()
        return np.asarray(out, dtype=np.float64)

class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier with any gradkit output activation × loss head.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer (``()``: no hidden layer, a linear model).
    activation : str, default="relu"
        Hidden activation, a name from :func:`gradkit.activations.names`.
    output_activation : str or None, default=None
        The head's activation; None means ``"softmax"``.
    loss : str or None, default=None
        A name from :func:`gradkit.losses.names`; None means ``"cross_entropy"``.
        The pair must be accepted by :func:`gradkit.compose` (else ``fit``
        raises ValueError naming both parameters).
    optimizer : {"adam", "adamw", "sgd"}, default="adam"
    learning_rate : float, default=1e-3
    max_iter : int, default=200
        Number of epochs (passes over the data).
    batch_size : int or "auto", default=32
        ``"auto"`` is ``min(200, n_samples)``; larger values are clipped to ``n_samples``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization, the shuffling and the validation split.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data; stop when its loss has not
        improved for ``n_iter_no_change`` epochs and restore the best weights.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int, default=10
    verbose : bool or int, default=False
        Print one line per epoch.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when X has string column names
    model_ : gradkit.nn.Sequential
        The network; it outputs logits, one per class.
    head_ : gradkit.Composed
        ``compose(output_activation, loss)``.
    optimizer_ : gradkit.nn.Optimizer
        Its state (moments) carries over between ``partial_fit`` calls.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_loss_curve_ : list of float
        Validation loss of each epoch (empty without early stopping).
    best_validation_loss_ : float
        With early stopping: the best validation loss (its weights are kept).
    n_iter_ : int
        Epochs run.

    See the module docstring for how ``predict_proba`` turns outputs into
    probabilities, the dtype used, and divergence handling.
    """

    _default_output_activation = "softmax"
    _default_loss = "cross_entropy"

    def _targets(self, y_enc: np.ndarray) -> np.ndarray:
        # integer labels; for an elementwise loss nn.fit one-hot encodes them batch by batch
        # (``one_hot``): neither the n_classes² identity nor the n × n_classes matrix is built
        return y_enc.astype(np.int64, copy=False)

    def _one_hot(self) -> int | None:
        return None if isinstance(self.head_.loss, ClassLoss) else len(self.classes_)

    def _check_two_classes(self, classes: np.ndarray) -> None:
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {classes[0]!r}"
            )

    def _validate_xy(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, _host(X), _host(y, "y"), reset=reset, dtype=_DTYPES)
        check_classification_targets(y)
        return X, y

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train a fresh network on ``(X, y)`` for ``max_iter`` epochs (or until early stopping)."""
        def body() -> None:
            X_, y_ = self._validate_xy(X, y, reset=True)
            encoder = LabelEncoder().fit(y_)
            self._check_two_classes(encoder.classes_)
            self.classes_ = encoder.classes_
            self._initialize(X_.shape[1], len(self.classes_), X_.dtype)
            self._train(X_, self._targets(encoder.transform(y_)), incremental=False)

        self._fit_atomically(body)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer state.

        ``classes`` (every class that will ever appear) is required on the first call,
        and must match ``classes_`` when given later.
        """
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if first:  # a failed first call leaves the estimator unfitted
            self._fit_atomically(lambda: self._partial_fit(X, y, classes, first=True))
        else:
            self._partial_fit(X, y, classes, first=False)
        return self

    def _partial_fit(self, X: Any, y: Any, classes: Any, *, first: bool) -> None:
        X, y = self._validate_xy(X, y, reset=first)
        if classes is not None:
            classes = unique_labels(classes)
            if not first and not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on the first call to partial_fit, "
                    f"which was: classes={self.classes_!r}"
                )
        if first:
            self._check_two_classes(classes)
            self.classes_ = classes
            self._initialize(X.shape[1], len(classes), X.dtype)
        unseen = np.setdiff1d(unique_labels(y), self.classes_)
        if unseen.size:
            raise ValueError(f"y contains labels {unseen!r} that are not in classes_ = {self.classes_!r}")
        y_enc = np.searchsorted(self.classes_, y)
        X = cast_finite(X, "X", self.model_.dtype)
        self._train(X, self._targets(y_enc), incremental=True)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, rows summing to 1 (see the module docstring for the mapping)."""
        return _like_input(self._proba(self._output(X)), X)

    def predict_log_proba(self, X: Any) -> Any:
        """``log(predict_proba(X))`` (``-inf`` where a probability is 0)."""
        with np.errstate(divide="ignore"):
            return _like_input(np.log(self._proba(self._output(X))), X)

    def predict(self, X: Any) -> Any:
        """``classes_[argmax(predict_proba(X))]``."""
        proba = self._proba(self._output(X))
        return _like_input(self.classes_[np.argmax(proba, axis=1)], X)

    def _proba(self, out: np.ndarray) -> np.ndarray:
        act, loss = self.head_.activation, self.head_.loss
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


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor with any gradkit output activation × elementwise loss.

    Parameters are those of :class:`MLPClassifier`, except:

    output_activation : str or None, default=None
        None means ``"identity"``.
    loss : {"mse", "mae", "huber", "bce", "bce_with_logits"} or None, default=None
        None means ``"mse"`` (``bce`` needs targets in [0, 1]).

    Targets may be 1-d ``(n,)`` or 2-d ``(n, k)``; ``predict`` returns the
    shape seen in ``fit`` (a column ``(n, 1)`` stays 2-d), as float64.

    Attributes
    ----------
    n_outputs_ : int
    n_features_in_, feature_names_in_, model_, head_, optimizer_, loss_curve_,
    validation_loss_curve_, best_validation_loss_, n_iter_ : as in :class:`MLPClassifier`.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions(set(_REGRESSOR_LOSSES)), None],
    }

    def _validate_xy(self, X: Any, y: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, _host(X), _host(y, "y"), reset=reset, dtype=_DTYPES, multi_output=True, y_numeric=True)
        return X, y

    def _targets(self, y: np.ndarray) -> np.ndarray:
        T = y.reshape(-1, 1) if y.ndim == 1 else y
        return cast_finite(T, "y", self.model_.dtype)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train a fresh network on ``(X, y)`` for ``max_iter`` epochs (or until early stopping)."""
        def body() -> None:
            X_, y_ = self._validate_xy(X, y, reset=True)
            self._initialize(X_.shape[1], 1 if y_.ndim == 1 else y_.shape[1], X_.dtype)
            self._y_ndim = y_.ndim
            self.n_outputs_ = 1 if y_.ndim == 1 else y_.shape[1]
            self._train(X_, self._targets(y_), incremental=False)

        self._fit_atomically(body)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer state."""
        first = not hasattr(self, "model_")
        if first:  # a failed first call leaves the estimator unfitted
            self._fit_atomically(lambda: self._partial_fit(X, y, first=True))
        else:
            self._partial_fit(X, y, first=False)
        return self

    def _partial_fit(self, X: Any, y: Any, *, first: bool) -> None:
        X, y = self._validate_xy(X, y, reset=first)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if first:
            self._initialize(X.shape[1], n_outputs, X.dtype)
            self._y_ndim = y.ndim
            self.n_outputs_ = n_outputs
        elif n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} target columns, but {type(self).__name__} was fitted with {self.n_outputs_}"
            )
        X = cast_finite(X, "X", self.model_.dtype)
        self._train(X, self._targets(y), incremental=True)

    def predict(self, X: Any) -> Any:
        """Predictions of shape ``(n,)`` or ``(n, n_outputs_)``, as the targets given to ``fit``."""
        out = self._output(X)
        return _like_input(out.ravel() if self._y_ndim == 1 else out, X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
