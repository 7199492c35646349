"""Layers: ``forward`` caches what ``backward`` needs; ``backward`` is a VJP.

``backward(g)`` takes the gradient w.r.t. the layer's output, stores the
gradients of the parameters in ``grads`` (same names as ``params``) and
returns the gradient w.r.t. the input. Parameters are plain NumPy arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import activations
from .._array import check_choice, check_int, check_positive
from .._rng import RNGLike, as_generator, seed_alias
from ..base import Activation
from ..custom import CustomActivation, CustomElementwiseActivation

__all__ = ["ActivationLayer", "Dense", "Dropout", "Layer", "as_layer", "from_config"]


class Layer:
    """Base class. ``params``/``grads`` map names to arrays (empty when parameterless).

    A layer of your own implements ``forward``, ``backward`` and, to be saved, ``config``.

    Attributes
    ----------
    params, grads : dict of str to ndarray
        The parameters, and the gradients ``backward`` stores for them (same names).
    cache_attrs : tuple of str
        Class attribute: the names of the attributes in which ``forward`` keeps what
        ``backward`` needs (``("_x",)`` for :class:`Dense`). :meth:`clear_cache` sets each to
        None, so that a model neither holds nor pickles the last batch; list yours here.
    """

    #: attributes holding what ``forward`` kept for ``backward`` (set to None by :meth:`clear_cache`)
    cache_attrs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, g: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """Fill ``grads`` and return the gradient w.r.t. the input (None if ``input_grad=False``
        and the layer can skip it)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """A JSON-serializable description that :func:`from_config` rebuilds the layer from."""
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Drop what the last ``forward`` kept for ``backward`` (the attributes named in ``cache_attrs``),
        so it is neither held nor pickled."""
        for attr in self.cache_attrs:
            setattr(self, attr, None)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


def _dense_args(in_features: Any, out_features: Any, init: Any, dtype: Any) -> tuple[int, int, str, np.dtype]:
    """``Dense``'s arguments checked and normalized (shared by ``__init__`` and ``_from_arrays``)."""
    n_in, n_out = check_int(in_features, "in_features"), check_int(out_features, "out_features")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"in_features and out_features must be >= 1; got {in_features}, {out_features}")
    init = check_choice(init, "init", ("he", "glorot"))
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype; got {dtype}")
    return n_in, n_out, init, dtype


class Dense(Layer):
    r"""Fully connected (affine) layer: :math:`Y = XW + b` on inputs of shape ``(batch, in_features)``.

    Forward, for a batch :math:`X \in \mathbb{R}^{n \times d}`, weights
    :math:`W \in \mathbb{R}^{d \times m}` and bias :math:`b \in \mathbb{R}^{m}`:

    .. math:: Y = X W + \mathbf{1}_n b^\top, \qquad Y_{ij} = \sum_k X_{ik} W_{kj} + b_j .

    Backward (the VJP): given the upstream gradient :math:`G = \partial L / \partial Y`
    (shape ``(batch, out_features)``), :meth:`backward` stores

    .. math:: \frac{\partial L}{\partial W} = X^\top G, \qquad
              \frac{\partial L}{\partial b} = G^\top \mathbf{1}_n = \sum_{i} G_{i,:},

    in ``grads["W"]`` and ``grads["b"]`` and returns :math:`\partial L / \partial X = G W^\top`
    (skipped with ``input_grad=False``, as for the first layer during training).

    Parameters
    ----------
    in_features, out_features : int
        :math:`d` and :math:`m`, both >= 1.
    init : {"he", "glorot"}
        He normal (:math:`\mathcal N(0, 2/\text{fan\_in})`, for ReLU-like activations) or
        Glorot uniform (:math:`U(\pm\sqrt{6/(\text{fan\_in}+\text{fan\_out})})`); biases start at 0.
    rng : None, int or numpy.random.Generator
        Source of the initial weights, as in SPEC 7: ``None`` draws fresh entropy, an int
        seeds ``numpy.random.default_rng``, a Generator is used as it is (and advanced).
        ``seed=`` is its deprecated old name.
    dtype : numpy dtype
        ``float32`` (default, fast) or ``float64`` (for gradient checks).

    Attributes
    ----------
    params, grads : dict of str to ndarray
        ``"W"`` of shape ``(in_features, out_features)`` and ``"b"`` of shape ``(out_features,)``.

    See Also
    --------
    gradkit.nn.Sequential, gradkit.nn.Dropout

    Examples
    --------
    >>> import numpy as np
    >>> from gradkit.nn import Dense
    >>> layer = Dense(3, 2, rng=0, dtype=np.float64)
    >>> layer
    Dense(3, 2, init='he', dtype=float64)
    >>> x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    >>> y = layer.forward(x)
    >>> y.shape
    (2, 2)
    >>> g = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> dx = layer.backward(g)
    >>> bool(np.allclose(dx, g @ layer.params["W"].T)), bool(np.allclose(layer.grads["W"], x.T @ g))
    (True, True)
    >>> layer.grads["b"]
    array([1., 2.])
    """

    cache_attrs = ("_x",)

    @seed_alias("gradkit.nn.Dense")
    def __init__(
        self, in_features: int, out_features: int, *, init: str = "he", rng: RNGLike = None, dtype: Any = np.float32
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.init, self.dtype = _dense_args(in_features, out_features, init, dtype)
        rng = as_generator(rng)
        fan_in, fan_out = self.in_features, self.out_features
        if init == "he":
            w = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)
        else:
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, (fan_in, fan_out))
        self.params = {"W": w.astype(self.dtype), "b": np.zeros(fan_out, dtype=self.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._x: np.ndarray | None = None

    @classmethod
    def _from_arrays(cls, W: np.ndarray, b: np.ndarray, *, init: str = "he") -> Dense:
        """A layer holding ``W`` and ``b`` themselves: no copy, no random initialization.

        :func:`gradkit.nn.load` builds its layers this way, so a load costs the arrays'
        memory once. The gradient buffers are allocated when ``grads`` is first used.
        """
        if not isinstance(W, np.ndarray) or not isinstance(b, np.ndarray):
            raise TypeError(f"W and b must be NumPy arrays; got {type(W).__name__}, {type(b).__name__}")
        if W.ndim != 2 or b.shape != W.shape[1:]:
            raise ValueError(f"W must be 2-d and b of shape (W.shape[1],); got shapes {W.shape}, {b.shape}")
        if W.dtype != b.dtype:
            raise ValueError(f"W and b must share one dtype; got {W.dtype}, {b.dtype}")
        layer = cls.__new__(cls)
        Layer.__init__(layer)
        layer.in_features, layer.out_features, layer.init, layer.dtype = _dense_args(W.shape[0], W.shape[1], init, W.dtype)
        layer.params = {"W": W, "b": b}
        layer._x = None
        return layer

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradients by parameter name; a zero buffer is made for any parameter that has none yet."""
        state = self.__dict__
        grads = state.get("_grads")
        if grads is None:  # a Dense pickled before grads became a property kept them as "grads"
            grads = state["_grads"] = state.pop("grads", {})
        for name, value in self.params.items():
            if name not in grads:
                grads[name] = np.zeros_like(value)
        return grads

    @grads.setter
    def grads(self, value: dict[str, np.ndarray]) -> None:
        self.__dict__["_grads"] = value

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects input of shape (batch, {self.in_features}); got {x.shape}")
        self._x = x
        out = x @ self.params["W"]
        out += self.params["b"]
        return out

    def backward(self, g: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        if self._x is None:
            raise RuntimeError("backward() called before forward()")
        np.matmul(self._x.T, g, out=self.grads["W"])
        np.sum(g, axis=0, out=self.grads["b"])
        return g @ self.params["W"].T if input_grad else None

    def config(self) -> dict[str, Any]:
        return {"type": "Dense", "in_features": self.in_features, "out_features": self.out_features,
                "init": self.init, "dtype": self.dtype.name}

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, init={self.init!r}, dtype={self.dtype.name})"


class ActivationLayer(Layer):
    """Any :class:`gradkit.Activation` as a layer: backward is its exact VJP.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> layer = gk.nn.ActivationLayer(gk.Softmax())
    >>> y = layer.forward(np.array([[1.0, 2.0]]))
    >>> layer.backward(np.array([[1.0, 0.0]])).round(6)
    array([[ 0.196612, -0.196612]])
    >>> layer, gk.nn.ActivationLayer("softmax", temperature=2.0)
    (ActivationLayer(softmax), ActivationLayer(Softmax(axis=-1, temperature=2.0)))
    """

    cache_attrs = ("_x", "_y")

    def __init__(self, activation: Activation | str, **kwargs: Any) -> None:
        super().__init__()
        self.activation = activations.get(activation, **kwargs)
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        self._x, self._y = x, self.activation(x)
        return self._y

    def backward(self, g: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        if self._x is None:
            raise RuntimeError("backward() called before forward()")
        return self.activation.vjp(self._x, g, y=self._y)

    def config(self) -> dict[str, Any]:
        """``{"type": "Activation", "name": ..., "params": ...}``.

        ``params`` is the activation's ``get_params()`` with NumPy arrays and scalars as lists and
        numbers (a :func:`gradkit.custom_activation`'s only ``axis``: its functions come back with
        the instance registered under its name); a random activation's ``rng`` is stored under the
        key ``"seed"``, its name in checkpoints of format version 1."""
        act = self.activation
        given = {"axis": act.axis} if isinstance(act, _CUSTOM) else act.get_params(deep=False)
        params = {_CONFIG_KEYS.get(k, k): _plain(v) for k, v in given.items()}
        return {"type": "Activation", "name": act.name, "params": params}

    def __repr__(self) -> str:
        act = self.activation
        try:
            default = act == type(act)()
        except (TypeError, ValueError):
            default = False
        return f"ActivationLayer({act.name if default else repr(act)})"


class Dropout(Layer):
    r"""Inverted dropout: zero each entry with probability ``rate`` in training, scale the rest.

    Forward in training (``forward(x, training=True)``), with rate :math:`r \in [0, 1)` and a fresh
    mask :math:`m_{ij} \sim \mathrm{Bernoulli}(1 - r)` drawn independently for every entry:

    .. math:: y = \frac{x \odot m}{1 - r},

    so that :math:`\mathbb{E}[y] = x`; at evaluation (``training=False``, the default) and for
    :math:`r = 0`, :math:`y = x`.

    Backward (the VJP) with the mask of the last forward pass: given :math:`g = \partial L / \partial y`,

    .. math:: \frac{\partial L}{\partial x} = \frac{g \odot m}{1 - r}

    (:math:`g` itself after an evaluation-mode forward). Dropout has no parameters.

    Parameters
    ----------
    rate : float
        :math:`r`, the probability of dropping an entry, in ``[0, 1)``.
    rng : None, int or numpy.random.Generator
        Source of the masks, as in SPEC 7: ``None`` draws fresh entropy, an int seeds
        ``numpy.random.default_rng`` (reproducible masks), a Generator is used as it is
        (and advanced). ``seed=`` is its deprecated old name. The generator's state is not
        saved in checkpoints.

    See Also
    --------
    gradkit.nn.Dense

    Examples
    --------
    >>> import numpy as np
    >>> from gradkit.nn import Dropout
    >>> drop = Dropout(0.5, rng=0)
    >>> drop
    Dropout(rate=0.5)
    >>> x = np.ones((2, 4))
    >>> y = drop.forward(x, training=True)
    >>> sorted(set(y.ravel().tolist()))                  # dropped, or kept and scaled by 1/(1 - 0.5)
    [0.0, 2.0]
    >>> bool(np.array_equal(drop.backward(np.ones((2, 4))), y))  # the same mask, the same scale
    True
    >>> drop.forward(x) is x                             # evaluation: the identity
    True
    """

    cache_attrs = ("_scale",)

    @seed_alias("gradkit.nn.Dropout")
    def __init__(self, rate: float = 0.5, *, rng: RNGLike = None) -> None:
        super().__init__()
        self.rate = check_positive(rate, "rate", allow_zero=True)
        if self.rate >= 1.0:
            raise ValueError(f"rate must be in [0, 1); got {rate}")
        self._rng = as_generator(rng)
        self._scale: np.ndarray | None = None

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        if not training or self.rate == 0.0:
            self._scale = None
            return x
        keep = self._rng.random(x.shape) >= self.rate
        self._scale = keep.astype(x.dtype) / x.dtype.type(1.0 - self.rate)
        return x * self._scale

    def backward(self, g: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        return g if self._scale is None else g * self._scale

    def config(self) -> dict[str, Any]:
        return {"type": "Dropout", "rate": self.rate}

    def __repr__(self) -> str:
        return f"Dropout(rate={self.rate!r})"


def as_layer(item: Any) -> Layer:
    """A layer from a layer, an activation instance, or an activation name."""
    if isinstance(item, Layer):
        return item
    if isinstance(item, (Activation, str)):
        return ActivationLayer(item)
    raise TypeError(f"expected a Layer, an Activation or an activation name; got {type(item).__name__}")


#: an activation's constructor argument → its key in :meth:`ActivationLayer.config` (checkpoint format 1)
_CONFIG_KEYS = {"rng": "seed"}
#: activations whose configs store only ``axis`` (the rest is found by their registry name)
_CUSTOM = (CustomActivation, CustomElementwiseActivation)


def _plain(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars as (nested) lists and Python numbers, for a JSON config."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def from_config(config: dict[str, Any]) -> Layer:
    """Rebuild a layer from :meth:`Layer.config` (used by :func:`gradkit.nn.load`).

    An activation's ``"params"`` may give a random activation's generator seed as ``"seed"``
    (what :meth:`ActivationLayer.config` writes, and every checkpoint so far holds) or as
    ``"rng"`` (its constructor's name); not both.
    """
    kind = config.get("type")
    if kind == "Dense":
        return Dense(config["in_features"], config["out_features"], init=config["init"], dtype=np.dtype(config["dtype"]))
    if kind == "Activation":
        params = config.get("params", {})
        if not isinstance(params, dict):
            raise TypeError(f"an Activation config's params must be a dict; got {type(params).__name__}")
        params = dict(params)
        for arg, key in _CONFIG_KEYS.items():
            if key in params:
                if arg in params:
                    raise ValueError(f"an Activation config's params give both {key!r} and {arg!r} (the same "
                                     f"argument); got {params!r}")
                params[arg] = params.pop(key)
        return ActivationLayer(config["name"], **params)
    if kind == "Dropout":
        return Dropout(config["rate"])
    raise ValueError(f"unknown layer type {kind!r}; known: Dense, Activation, Dropout")
