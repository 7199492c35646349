"""The estimators' inputs: the names they accept (scikit-learn's and every registered gradkit one), and arrays
brought to the host, checked finite and cast as scikit-learn does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import _check_sample_weight

from .. import activations, losses
from .._array import from_numpy, is_foreign, refuse_array_subclass, to_numpy
from ..config import get_config

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
    whole array), and so are ``numpy.matrix`` and masked arrays (``TypeError`` naming ``name``)."""
    refuse_array_subclass(a, name)  # scikit-learn refuses np.matrix too (TypeError), but drops a mask
    a = to_numpy(a) if get_config()["array_api_dispatch"] and is_foreign(a) else a
    if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"Complex data not supported: {name} has dtype {a.dtype}; pass real numbers")
    return a


def _sample_weight(sample_weight: Any, X: Any) -> np.ndarray | None:
    """scikit-learn's own check of ``sample_weight`` (``_check_sample_weight``, as its MLPs call it: the same
    exceptions for the same input); a masked array, whose mask scikit-learn drops, is a ``TypeError`` here."""
    if sample_weight is None:
        return None
    refuse_array_subclass(sample_weight, "sample_weight")
    return _check_sample_weight(sample_weight, X, dtype=np.float64)


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


def _shuffled(idx: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """A shuffled copy of ``idx`` (``sklearn.utils.shuffle``'s draw, so that a seed gives
    scikit-learn's order)."""
    out = idx.copy()
    rng.shuffle(out)
    return out
