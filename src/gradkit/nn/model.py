"""``Sequential``: layers applied in order; backward runs them in reverse."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .._array import refuse_array_subclass
from .layers import Layer, as_layer

__all__ = ["Sequential"]


class Sequential:
    """A chain of layers. Parameters are reachable by name, ``"<index>.<name>"``.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> from gradkit.nn import Dense, Sequential
    >>> model = Sequential([Dense(4, 8, rng=0), "relu", Dense(8, 3, rng=1)])
    >>> sorted(model.params)
    ['0.W', '0.b', '2.W', '2.b']
    >>> model.forward(np.zeros((5, 4), dtype=np.float32)).shape
    (5, 3)
    >>> model
    Sequential([
      Dense(4, 8, init='he', dtype=float32),
      ActivationLayer(relu),
      Dense(8, 3, init='he', dtype=float32)
    ])
    """

    def __init__(self, layers: Iterable[Any]) -> None:
        self.layers: list[Layer] = [as_layer(layer) for layer in layers]
        if not self.layers:
            raise ValueError("Sequential needs at least one layer")
        #: what :func:`gradkit.nn.load` read beside the weights (None for a new model)
        self.metadata: dict[str, Any] | None = None

    def forward(self, x: np.ndarray, *, training: bool = False) -> np.ndarray:
        """The output of the layers applied in order to ``x`` (a ``numpy.matrix`` or masked array is a
        ``TypeError``: their arithmetic is not the plain array's)."""
        if type(x) is not np.ndarray:
            refuse_array_subclass(x, "x")
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    __call__ = forward

    def backward(self, g: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``g`` (gradient w.r.t. the output); fills every layer's ``grads``.

        Returns the gradient w.r.t. the input; ``input_grad=False`` (training) lets the
        first layer skip computing it.
        """
        last = len(self.layers) - 1
        out: Any = g  # None only after the first layer, with input_grad=False
        for k, layer in enumerate(reversed(self.layers)):
            out = layer.backward(out, input_grad=input_grad or k != last)
        return out

    def clear_cache(self) -> None:
        """Drop every layer's cached forward data (done by the estimators after fit/predict)."""
        for layer in self.layers:
            layer.clear_cache()

    def _named(self, attr: str) -> Iterator[tuple[str, np.ndarray]]:
        for i, layer in enumerate(self.layers):
            for name, value in getattr(layer, attr).items():
                yield f"{i}.{name}", value

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Parameter arrays by name (the layers' own arrays: updating them updates the model)."""
        return dict(self._named("params"))

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradients from the last :meth:`backward`, by the same names as :attr:`params`."""
        return dict(self._named("grads"))

    @property
    def dtype(self) -> np.dtype:
        for layer in self.layers:
            if layer.params:
                return next(iter(layer.params.values())).dtype
        return np.dtype(np.float64)

    def config(self) -> list[dict[str, Any]]:
        return [layer.config() for layer in self.layers]

    def __repr__(self) -> str:
        """One layer a line, as PyTorch prints a module: ``Sequential([Dense(4, 8, ...), ...])``."""
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"
