"""What :class:`~gradkit.sklearn.MLPClassifier` and :class:`~gradkit.sklearn.MLPRegressor` share: parameters,
weights, the forward pass through any gradkit head, and the L-BFGS and stochastic fits."""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import scipy.optimize
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import activations, losses, nn
from ..composition import compose
from ..nn.train import cast_finite
from .inputs import (
    _ACTIVATIONS,
    _CLASSIFIER_LOSSES,
    _DTYPES,
    _NONFINITE,
    _OUTPUTS,
    _SKLEARN_NAMES,
    _SPARSE,
    _check_finite_input,
    _host,
    _shuffled,
)
from .solvers import AdamSolver, SGDSolver


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
