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

from .._optional import require

require("gradkit.sklearn", "train")  # before the imports below, which would blame scipy

from .estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
