"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

Drop-in replacements for scikit-learn's ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor`` (1.9): the same parameters, defaults, solvers (``"lbfgs"``, ``"sgd"``,
``"adam"``), stopping rules and fitted attributes, so that code written for scikit-learn
runs with one import changed. The gradients are gradkit's exact ones: the hidden layers'
VJPs and the head ``compose(output_activation, loss)``. What gradkit adds:

* ``output_activation`` × ``loss``: any pair :func:`gradkit.compose` accepts (softmax with
  MSE, sparsemax, entmax, Taylor softmax, ...), trained through its exact Jacobian;
* ``activation``: scikit-learn's names (``"identity"``, ``"logistic"``, ``"tanh"``,
  ``"relu"``) and every gradkit activation name;
* ``class_weight`` (``"balanced"`` or a dict) for the classifier;
* ``array_api_dispatch``: arrays of other libraries in, results in their library out.

>>> from sklearn.datasets import load_digits
>>> from gradkit.sklearn import MLPClassifier
>>> X, y = load_digits(return_X_y=True)
>>> clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=0).fit(X / 16, y)
>>> clf.predict_proba(X[:2] / 16).shape
(2, 10)

Design decisions
----------------
* **The loss and its scale.** With ``output_activation=None`` and ``loss=None`` the head is
  scikit-learn's: one logistic unit with binary cross-entropy for two classes, one logistic
  unit per label (cross-entropy summed over labels) for a multilabel indicator ``y``, softmax
  with cross-entropy otherwise; the regressor's ``loss="squared_error"`` is scikit-learn's
  half squared error ``mean((y - p)**2) / 2`` with an identity output. ``loss_`` and
  ``loss_curve_`` are then scikit-learn's numbers. A gradkit loss name keeps gradkit's
  meaning (``"mse"``: the mean over every element, not halved). Every loss is averaged over
  the samples (weighted by ``sample_weight`` and ``class_weight``) and
  ``alpha / (2 * sum of the weights) * sum ||W||**2`` (weights only, not the intercepts)
  is added, as in scikit-learn. The gradient is the exact gradient of that number (for
  several regression targets scikit-learn's own gradient is ``n_outputs`` times larger).
* **Output units.** The default binary head has one unit (as scikit-learn); a chosen
  ``output_activation``/``loss`` has one unit per class, binary included, so that every
  pair means the same thing for 2 or more classes. Class losses (``cross_entropy``,
  ``nll``, ``kl_div``, ...) get integer labels; elementwise losses get one-hot rows, built
  batch by batch (never the ``n_samples × n_classes`` matrix at once).
* **dtype.** ``float32`` input trains in ``float32``; anything else becomes ``float64``.
  The weights keep that dtype; later inputs are computed in it (a value that overflows it
  is refused), and ``predict``/``predict_proba`` return the promotion of the network's and
  the input's float dtype, as scikit-learn does (float32 in a float32 network: float32).
* **predict_proba** for a chosen head maps its output ``o`` to rows summing to 1, by the
  first rule that applies: a normalizer (softmax, sparsemax, ...) gives ``o``; a
  log-normalizer ``exp(o)``; loss ``bce_with_logits`` ``sigmoid(o)`` over its row sum; a
  nonnegative output ``o`` over its row sum; any other ``max(o, 0)`` over its row sum. A row
  whose sum is 0 falls back to ``softmax(o)``.
* **Divergence.** When the loss or the weights stop being finite, ``fit`` raises
  :class:`gradkit.nn.DivergenceError` (a ``ValueError``) whose message names
  ``learning_rate_init`` and says, as scikit-learn does, "Solver produced non-finite
  parameter weights". With ``early_stopping=True`` a non-finite validation score is
  recorded (NaN) and the best weights so far are kept, as scikit-learn does.
* **A failed call changes nothing.** When ``fit`` or ``partial_fit`` raises (bad input,
  divergence), the estimator is left as it was before the call: unfitted, or with the
  weights, solver state and curves of its last successful call.
* **n_iter_** counts the epochs of the last call, so it is 1 after each ``partial_fit``,
  and ``t_`` counts all samples seen, as in scikit-learn.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from ._optional import require

require("gradkit.sklearn", "train")  # before the imports below, which would blame scipy

import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit, softmax, xlogy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d, gen_batches
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import activations, losses, nn
from ._array import from_numpy, is_foreign, to_numpy
from ._sklearn_solvers import AdamSolver, SGDSolver
from .base import AxisActivation
from .compose import compose
from .config import get_config
from .losses.classification import ClassLoss
from .nn.train import cast_finite

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's activation names that gradkit spells differently
_SKLEARN_NAMES = {"logistic": "sigmoid"}

class _Names(AbstractSet[str]):
    """Fixed names plus a registry's live view: names registered later (``gk.activations.register``)
    are valid parameter values too (scikit-learn's ``StrOptions`` only asks ``in`` and iterates)."""

    def __init__(self, fixed: set[str], live: AbstractSet[str]) -> None:
        self._fixed, self._live = frozenset(fixed), live

    def __contains__(self, name: object) -> bool:
        return name in self._fixed or name in self._live

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._fixed | set(self._live)))

    def __len__(self) -> int:
        return len(self._fixed | set(self._live))

    @classmethod
    def _from_iterable(cls, it: Iterable[str]) -> frozenset[str]:  # type: ignore[override]  # plain frozensets
        return frozenset(it)


_ACTIVATIONS = _Names(set(_SKLEARN_NAMES), activations.live_names())
_OUTPUTS = _Names(set(_SKLEARN_NAMES), activations.live_names())
_CLASSIFIER_LOSSES = _Names(set(), losses.live_names())
#: the regressor's built-in losses, and any loss a user registers
_REGRESSOR_LOSSES = _Names({"squared_error", "poisson", "mse", "mae", "huber", "bce", "bce_with_logits"},
                           losses.live_names(builtin=False))
_DTYPES = (np.float64, np.float32)  # float32 is kept, everything else becomes float64
_SPARSE = ["csr", "csc"]
_NONFINITE = ("Solver produced non-finite parameter weights. The input data may contain large values "
              "and need to be preprocessed.")


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


def _check_finite_input(X: Any, dtype: np.dtype) -> Any:
    """Refuse values that overflow the network's dtype (1e39 in a float32 network) instead of
    computing with ``inf``; returns ``X`` in that dtype."""
    data = X.data if sp.issparse(X) else X
    if data.dtype != dtype and data.size:
        big = float(np.max(np.abs(data)))
        if big > float(np.finfo(dtype).max):
            raise ValueError(
                f"X has values up to {big:g} that overflow {np.dtype(dtype)}, the dtype the network computes "
                f"in (largest value {float(np.finfo(dtype).max):g}): scale X"
            )
    return X.astype(dtype, copy=False)


class _PoissonHead:
    """scikit-learn's ``loss="poisson"``: an exponential output ``p = exp(z)`` with the half Poisson
    deviance ``y log(y / p) - y + p`` per element (summed over the outputs), whose gradient in ``z``
    is ``p - y``. Same interface as the per-element heads of :func:`gradkit.compose`."""

    name = "poisson"

    def forward(self, z: np.ndarray) -> np.ndarray:
        return np.exp(z)

    def value_and_grad(self, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.exp(z)
        return xlogy(y, y) - y * z - y + p, p - y

    def __repr__(self) -> str:
        return "PoissonHead(exp output, half Poisson deviance)"


class _BaseMLP(BaseEstimator):
    """Shared machinery; see :class:`MLPClassifier` and :class:`MLPRegressor`."""

    _parameter_constraints: ClassVar[dict] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(_ACTIVATIONS)],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "output_activation": [StrOptions(_OUTPUTS), None],
        "loss": [StrOptions(_CLASSIFIER_LOSSES), None],
    }

    # set by subclasses
    _head_: Any
    head_: Any
    _row_scale: float
    # fitted (None where scikit-learn has None)
    validation_scores_: Any
    best_validation_score_: Any
    best_loss_: Any
    n_outputs_: int

    # -- configuration -------------------------------------------------------
    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(np.ravel(np.asarray(sizes, dtype=object)))
        bad = [s for s in sizes if not isinstance(s, Integral) or isinstance(s, bool) or s < 1]
        if bad:
            raise ValueError(f"hidden_layer_sizes must contain positive integers; got {self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    @staticmethod
    def _gradkit_name(name: str) -> str:
        return _SKLEARN_NAMES.get(name, name)

    def _set_head(self, out: str, loss: str, row_scale: float) -> None:
        """``head_`` (mean over the batch, for users) and the per-element head used in training."""
        try:
            self.head_ = compose(self._gradkit_name(out), loss)
        except ValueError as exc:
            raise ValueError(f"output_activation={out!r} cannot be combined with loss={loss!r}: {exc}") from None
        self._head_ = compose(self._gradkit_name(out), losses.get(loss, reduction="none"))
        self._row_scale = row_scale

    def _init_coef(self, rng: np.random.RandomState, fan_in: int, fan_out: int, dtype: np.dtype) -> tuple:
        # Glorot uniform on weights and intercepts, with factor 2 for the logistic (as scikit-learn)
        factor = 2.0 if self._gradkit_name(self.activation) == "sigmoid" else 6.0
        bound = np.sqrt(factor / (fan_in + fan_out))
        coef = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False)
        intercept = rng.uniform(-bound, bound, fan_out).astype(dtype, copy=False)
        return coef, intercept

    def _initialize(self, n_features: int, n_outputs: int, dtype: np.dtype) -> None:
        units = [n_features, *self._hidden_sizes(), n_outputs]
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(units)
        self.coefs_: list[np.ndarray] = []
        self.intercepts_: list[np.ndarray] = []
        for fan_in, fan_out in itertools.pairwise(units):
            coef, intercept = self._init_coef(self._random_state, fan_in, fan_out, dtype)
            self.coefs_.append(coef)
            self.intercepts_.append(intercept)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        if self.solver != "lbfgs":
            self.loss_curve_: list[float] = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _check_architecture(self, n_features: int, n_outputs: int) -> None:
        """warm_start / partial_fit on weights set before: their shapes must fit the data."""
        units = [n_features, *self._hidden_sizes(), n_outputs]
        shapes = [tuple(np.shape(c)) for c in self.coefs_]
        if shapes != list(itertools.pairwise(units)):
            raise ValueError(
                f"the network's weights have shapes {shapes}, which do not fit {n_features} features, "
                f"hidden_layer_sizes={self.hidden_layer_sizes!r} and {n_outputs} outputs"
            )

    # -- forward / backward -----------------------------------------------------
    def _hidden_activation(self) -> Any:
        return activations.get(self._gradkit_name(self.activation))

    def _forward(self, X: Any) -> tuple[np.ndarray, list[Any], list[np.ndarray]]:
        """The logits, each layer's input, and the hidden pre-activations."""
        act = self._hidden_activation()
        inputs: list[Any] = []
        pre: list[np.ndarray] = []
        a = X
        last = len(self.coefs_) - 1
        z = X
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            inputs.append(a)
            z = safe_sparse_dot(a, W)
            z = np.asarray(z)
            z += b
            if i < last:
                pre.append(z)
                a = act(z)
        return z, inputs, pre

    def _loss_grad(
        self, X: Any, T: np.ndarray, w: np.ndarray | None
    ) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        """The regularized loss and its exact gradient w.r.t. ``coefs_`` and ``intercepts_``."""
        n = X.shape[0]
        z, inputs, pre = self._forward(X)
        values, G = self._head_.value_and_grad(z, self._batch_targets(T, z.dtype))
        values = np.asarray(values, dtype=np.float64)
        row = values if values.ndim == 1 else values.sum(axis=1)
        total = float(n) if w is None else float(w.sum())
        scale = self._row_scale / total
        loss = scale * float(row.sum() if w is None else row @ w)
        G = np.asarray(G)
        G = G * (scale if w is None else (scale * w).astype(G.dtype)[:, None])
        G = G.astype(z.dtype, copy=False)
        sq = sum(float(np.dot(c.ravel().astype(np.float64), c.ravel())) for c in self.coefs_)
        loss += 0.5 * self.alpha * sq / total
        act = self._hidden_activation()
        coef_grads: list[np.ndarray] = [np.empty(0)] * len(self.coefs_)
        intercept_grads: list[np.ndarray] = [np.empty(0)] * len(self.coefs_)
        for i in range(len(self.coefs_) - 1, -1, -1):
            gW = np.asarray(safe_sparse_dot(inputs[i].T, G))
            gW += (self.alpha / total) * self.coefs_[i]
            coef_grads[i] = gW.astype(self.coefs_[i].dtype, copy=False)
            intercept_grads[i] = G.sum(axis=0).astype(self.intercepts_[i].dtype, copy=False)
            if i:
                G = np.asarray(act.vjp(pre[i - 1], G @ self.coefs_[i].T, y=inputs[i]))
        return loss, coef_grads, intercept_grads

    def _batch_targets(self, T: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return T

    def _output(self, X: Any) -> np.ndarray:
        """The head's output ``output_activation(logits)``, in the network's dtype."""
        check_is_fitted(self)
        X = validate_data(self, _host(X), reset=False, accept_sparse=_SPARSE, dtype=_DTYPES)
        return self._output_raw(X)

    def _output_raw(self, X: Any) -> np.ndarray:
        """:meth:`_output` for an ``X`` already validated: computed in the network's dtype, returned in
        the promotion of that and ``X``'s dtype (as scikit-learn: float32 stays float32 only when both are)."""
        dtype = self.coefs_[0].dtype
        result = np.result_type(X.dtype, dtype)
        X = _check_finite_input(X, dtype)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            logits, _, _ = self._forward(X)
            bad = ~np.isfinite(logits).all(axis=1)
            if bad.any():
                rows = np.flatnonzero(bad)
                raise ValueError(
                    f"X has {rows.size} row(s) (first: row {int(rows[0])}) for which the network's output "
                    f"overflows {dtype}: the input is far outside the range seen in training; "
                    "scale X as the training data were scaled"
                )
            out = self._head_.forward(logits)
        return np.asarray(out).astype(result, copy=False)

    # -- training ------------------------------------------------------------
    def _diverged(self, what: str) -> nn.DivergenceError:
        return nn.DivergenceError(
            f"{_NONFINITE} {type(self).__name__}: {what}. Lower learning_rate_init (now "
            f"{self.learning_rate_init!r}) or scale the input features.", what)

    def _fit(self, X: Any, y: Any, sample_weight: Any, *, incremental: bool) -> None:
        if not incremental and not self.warm_start:
            for name in ("coefs_", "intercepts_"):
                self.__dict__.pop(name, None)
        first = not hasattr(self, "coefs_")
        X, T, w = self._prepare(X, y, sample_weight, incremental=incremental, reset=first or not incremental)
        self._random_state = check_random_state(self.random_state)
        n_outputs = self._n_units()
        if first:
            self._initialize(X.shape[1], n_outputs, X.dtype)
        else:
            self._check_architecture(X.shape[1], n_outputs)
            dtype = np.result_type(*[np.asarray(p).dtype for p in (*self.coefs_, *self.intercepts_)])
            dtype = dtype if dtype in _DTYPES else np.dtype(np.float64)  # weights set by hand: a float dtype
            self.coefs_ = [np.asarray(c, dtype=dtype) for c in self.coefs_]
            self.intercepts_ = [np.asarray(b, dtype=dtype) for b in self.intercepts_]
            self.n_layers_ = len(self.coefs_) + 1
            for name, value in (("n_iter_", 0), ("t_", 0), ("_no_improvement_count", 0)):
                if not hasattr(self, name):
                    setattr(self, name, value)
            if self.solver != "lbfgs" and not hasattr(self, "loss_curve_"):
                self.loss_curve_ = []
                self.best_loss_ = np.inf
                self.validation_scores_ = [] if self.early_stopping else None
                self.best_validation_score_ = -np.inf if self.early_stopping else None
        dtype = self.coefs_[0].dtype
        X = _check_finite_input(X, dtype)
        if T.dtype.kind == "f":
            T = cast_finite(T, "y", dtype)
        if self.solver != "lbfgs" and self.learning_rate_init > float(np.finfo(dtype).max):
            raise ValueError(
                f"learning_rate_init={self.learning_rate_init!r} overflows {np.dtype(dtype)}, the dtype the network "
                f"computes in (largest value {float(np.finfo(dtype).max):g}): pass a smaller learning_rate_init"
            )
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, T, w)
            else:
                self._fit_stochastic(X, T, w, incremental=incremental)
        if not all(np.isfinite(p).all() for p in (*self.coefs_, *self.intercepts_)):
            raise self._diverged("the weights are no longer finite")

    def _unpack(self, x: np.ndarray) -> None:
        """Set ``coefs_`` and ``intercepts_`` from one flat vector (weights first, then intercepts)."""
        shapes = [np.shape(c) for c in self.coefs_] + [np.shape(b) for b in self.intercepts_]
        splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
        dtype = np.asarray(self.coefs_[0]).dtype
        parts = [p.reshape(s).astype(dtype, copy=False) for p, s in zip(np.split(x, splits), shapes)]
        n_layers = len(self.coefs_)
        self.coefs_, self.intercepts_ = parts[:n_layers], parts[n_layers:]

    def _flat_loss_grad(self, x: np.ndarray, X: Any, T: np.ndarray, w: np.ndarray | None) -> tuple[float, np.ndarray]:
        """The loss and its flat gradient (float64) at the flat parameters ``x``."""
        self._unpack(x)
        loss, gc, gi = self._loss_grad(X, T, w)
        return loss, np.concatenate([g.ravel() for g in (*gc, *gi)]).astype(np.float64)

    def _loss_grad_lbfgs(self, packed: np.ndarray, X: Any, Y: np.ndarray, sample_weight: Any = None,
                         *buffers: Any) -> tuple[float, np.ndarray]:
        """scikit-learn's private hook, kept for its test suite: the loss and flat gradient at ``packed``
        for targets ``Y`` as scikit-learn encodes them (the buffers are not used)."""
        return self._flat_loss_grad(packed, X, self._encoded_targets(np.asarray(Y)), sample_weight)

    def _encoded_targets(self, Y: np.ndarray) -> np.ndarray:
        return Y.reshape(Y.shape[0], -1)

    def _fit_lbfgs(self, X: Any, T: np.ndarray, w: np.ndarray | None) -> None:
        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            return self._flat_loss_grad(x, X, T, w)

        x0 = np.concatenate([p.ravel() for p in (*self.coefs_, *self.intercepts_)]).astype(np.float64)
        result = scipy.optimize.minimize(
            fun, x0, method="L-BFGS-B", jac=True,
            options={"maxfun": int(self.max_fun), "maxiter": int(self.max_iter), "gtol": float(self.tol)},
        )
        if result.status != 0:
            message = result.message.decode("latin1") if isinstance(result.message, bytes) else result.message
            warnings.warn(
                f"lbfgs failed to converge after {result.nit} iteration(s) (status={result.status}): {message}. "
                "Increase the number of iterations (max_iter) or scale the data.",
                ConvergenceWarning, stacklevel=4,
            )
        self.n_iter_ = min(int(result.nit), int(self.max_iter))
        self.loss_ = float(result.fun)
        if not np.isfinite(self.loss_):
            raise self._diverged(f"the loss became {self.loss_}")
        self._unpack(result.x)

    def _make_optimizer(self) -> Any:
        params = self.coefs_ + self.intercepts_
        if self.solver == "sgd":
            return SGDSolver(params, self.learning_rate_init, self.learning_rate, self.momentum,
                             self.nesterovs_momentum, self.power_t)
        return AdamSolver(params, self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _split(self, X: Any, T: np.ndarray, w: np.ndarray | None, y_raw: np.ndarray) -> tuple:
        stratify = self._stratify_by(T, y_raw)
        arrays = [X, T, y_raw] + ([w] if w is not None else [])
        parts = train_test_split(*arrays, random_state=self._random_state, test_size=self.validation_fraction,
                                 stratify=stratify)
        X_tr, X_val, T_tr, _, _, y_val = parts[:6]
        w_tr, w_val = (parts[6], parts[7]) if w is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError(
                f"The validation set is too small: validation_fraction={self.validation_fraction!r} of "
                f"{X.shape[0]} samples holds out {X_val.shape[0]}, and at least 2 are needed. Increase "
                "'validation_fraction' or the size of your dataset."
            )
        return X_tr, T_tr, w_tr, X_val, y_val, w_val

    def _stratify_by(self, T: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        return None

    def _fit_stochastic(self, X: Any, T: np.ndarray, w: np.ndarray | None, *, incremental: bool) -> None:
        params = self.coefs_ + self.intercepts_
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early = bool(self.early_stopping)
        if early:
            X, T, w, X_val, y_val, w_val = self._split(X, T, w, self._y_raw)
        n = X.shape[0]
        idx = np.arange(n)
        if self.batch_size == "auto":
            batch = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(f"Got batch_size={self.batch_size} larger than the {n} samples: it is clipped to {n}",
                              UserWarning, stacklevel=4)
            batch = int(np.clip(self.batch_size, 1, n))
        self.n_iter_ = 0  # as scikit-learn: each fit, and each partial_fit (then 1 after it), starts at 0
        for _ in range(int(self.max_iter)):
            if self.shuffle:
                idx = _shuffled(idx, self._random_state)
            accumulated = 0.0
            for sl in gen_batches(n, batch):
                rows = idx[sl] if self.shuffle else sl
                Xb = X[rows]
                loss, gc, gi = self._loss_grad(Xb, T[rows], None if w is None else w[rows])
                if not math.isfinite(loss) or not all(np.isfinite(g).all() for g in (*gc, *gi)):
                    if early:  # scikit-learn's behaviour: keep the best weights, record a NaN score
                        accumulated = math.nan
                        break
                    raise self._diverged(f"the loss became {loss} at iteration {self.n_iter_ + 1}")
                accumulated += loss * (sl.stop - sl.start)
                self._optimizer.update(params, gc + gi)
            self.n_iter_ += 1
            self.loss_ = accumulated / n
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            self._update_no_improvement_count(early, X_val if early else None, y_val if early else None,
                                              w_val if early else None)
            self._optimizer.iteration_ends(self.t_)
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if early else "Training loss"
                message = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                if self._optimizer.trigger_stopping(message, self.verbose):
                    break
                self._no_improvement_count = 0
            if incremental:
                break
            if not math.isfinite(self.loss_) and early:
                continue
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                    "hasn't converged yet.", ConvergenceWarning, stacklevel=4,
                )
        if early:
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts

    def _update_no_improvement_count(self, early: bool, X_val: Any, y_val: Any, w_val: Any) -> None:
        if early:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    score = float(self._score_raw(X_val, y_val, w_val))
                except ValueError:  # a diverged network: its output is not finite
                    score = math.nan
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [b.copy() for b in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _fit_atomically(self, fit_body: Callable[[], None]) -> None:
        """Run ``fit_body()``; if it raises, restore the attributes as they were before.

        Training updates the weights and the solver's buffers in place, so when they exist
        (``partial_fit``, ``warm_start``) they are copied first (memory: one more copy of the
        parameters and the solver state); a fresh ``fit`` builds new arrays and needs no copy.
        """
        in_place = hasattr(self, "coefs_") and (self.warm_start or hasattr(self, "_optimizer"))
        previous = copy.deepcopy(self.__dict__) if in_place else dict(self.__dict__)
        try:
            fit_body()
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(previous)
            raise
        finally:
            self.__dict__.pop("_y_raw", None)  # the training labels are not kept

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coefs_") and hasattr(self, "_head_")

    @property
    def model_(self) -> nn.Sequential:
        """The network as a :class:`gradkit.nn.Sequential` sharing ``coefs_`` and ``intercepts_``
        (logits out; the head is ``head_``)."""
        check_is_fitted(self)
        layers: list[Any] = []
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            layers.append(nn.Dense._from_arrays(W, b, init="glorot"))
            if i < len(self.coefs_) - 1:
                layers.append(self._gradkit_name(self.activation))
        return nn.Sequential(layers)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _shuffled(idx: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """A shuffled copy of ``idx`` (``sklearn.utils.shuffle``'s draw, so that a seed gives
    scikit-learn's order)."""
    out = idx.copy()
    rng.shuffle(out)
    return out


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
        Hold out ``validation_fraction`` of the data (stratified for single-label classification),
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
        w = None if sample_weight is None else _check_sample_weight(sample_weight, X, dtype=np.float64)
        if self.class_weight is not None:
            cw = compute_sample_weight(self.class_weight, y)
            w = cw if w is None else w * cw
        self._y_raw = y
        return X, T, w

    def _stratify_by(self, T: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        if self._multilabel():
            return None
        return T.astype(bool) if T.ndim == 2 else y  # binary: the positive-class column, as scikit-learn

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
            self.head_ = self._head_ = _PoissonHead()
            self._row_scale = 1.0
            out = "exp"
        elif self.loss == "squared_error":
            self._set_head(out, "mse", 0.5 / k)
        else:
            self._set_head(out, self.loss, 1.0 / k)
        self.out_activation_ = out
        T = np.asarray(y, dtype=np.float64).reshape(-1, k)
        w = None if sample_weight is None else _check_sample_weight(sample_weight, X, dtype=np.float64)
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
