"""``fit``'s training step on preallocated buffers, for a :class:`Sequential` of ``Dense`` and activation layers.

Per batch the layer-by-layer step (``model.forward``, the head, ``model.backward``) allocates every
activation and gradient afresh and runs each layer's public, validating entry points. This step
computes the same numbers with the batch gathered into a buffer (``np.take(out=)``), every ``Dense``
product written into its own buffer (``np.matmul(out=)``), the bias added and a following ReLU applied
in place, and the backward pass reusing those buffers — bit for bit the arithmetic of the layers'
``forward``/``backward`` (``tests/test_nn.py`` checks that both give identical weights).

Other layers (``Dropout``, a user's own ``Layer``) leave ``fit`` on the layer-by-layer step; other
activation layers run through their own ``forward``/``backward`` inside this one.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from ..activations import ReLU
from .layers import ActivationLayer, Dense, Layer
from .model import Sequential

__all__ = ["BufferedStep"]


def _step_kernels() -> tuple[Any, Any]:
    """:func:`gradkit.kernels.gather.take_rows` and :mod:`gradkit.kernels.dense` (bias + ReLU each way in one
    pass) when the kernels are in use, else ``(None, None)``."""
    from .. import kernels

    if not kernels.enabled():
        return None, None
    from ..kernels import dense
    from ..kernels.gather import take_rows

    return take_rows, dense


class BufferedStep:
    """Forward, head and backward of one batch; parameter gradients land in the layers' ``grads``.

    Build it with :meth:`build` (None when the model has a layer it does not know). Buffers are
    sized for ``batch_size`` rows; a shorter last batch uses their first rows.
    """

    def __init__(self, model: Sequential, batch_size: int, n_features: int) -> None:
        self.layers = model.layers
        self.dtype = model.dtype
        self.x = np.empty((batch_size, n_features), dtype=self.dtype)
        #: per layer: its output buffer (Dense) or None (an activation layer: a fused ReLU or its own arrays)
        self.out: list[np.ndarray | None] = []
        #: per layer: whether it is a ReLU applied in place on the preceding Dense's output
        self.in_place_relu: list[bool] = []
        #: per Dense layer: the buffer of the gradient w.r.t. its input (None for the first layer)
        self.grad_in: list[np.ndarray | None] = []
        previous: Layer | None = None
        for k, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                self.out.append(np.empty((batch_size, layer.out_features), dtype=self.dtype))
                self.in_place_relu.append(False)
                self.grad_in.append(None if k == 0 else np.empty((batch_size, layer.in_features), dtype=self.dtype))
            else:
                self.out.append(None)
                relu = isinstance(layer, ActivationLayer) and type(layer.activation) is ReLU
                self.in_place_relu.append(relu and isinstance(previous, Dense))
                self.grad_in.append(None)
            previous = layer
        self._inputs: list[np.ndarray] = []
        #: the row gather of the numba kernels, on this thread (np.take without them), and their bias + ReLU
        #: kernels (None without numba): a Dense layer followed by an in-place ReLU adds its bias and applies the
        #: ReLU in one pass, and the ReLU's VJP gives that layer's bias gradient in the same pass
        self._take, self._dense = _step_kernels()
        self.relu_after = [self._dense is not None and k + 1 < len(self.layers) and self.in_place_relu[k + 1]
                           for k in range(len(self.layers))]
        #: per Dense layer: its gradients' dict (the property ensures the buffers once, not per batch)
        self.grads: list[dict[str, np.ndarray] | None] = [
            layer.grads if isinstance(layer, Dense) else None for layer in self.layers]

    @classmethod
    def build(cls, model: Sequential, batch_size: int, n_features: int) -> BufferedStep | None:
        """The step for ``model``, or None when one of its layers is neither ``Dense`` (of the model's
        dtype) nor an activation layer, or the model's dtype is not float32/float64."""
        dtype = model.dtype
        if dtype not in (np.float32, np.float64):
            return None
        for layer in model.layers:
            if type(layer) is Dense:
                if layer.params["W"].dtype != dtype or layer.params["b"].dtype != dtype:
                    return None
            elif type(layer) is not ActivationLayer:
                return None
        return cls(model, batch_size, n_features)

    def forward(self, X: np.ndarray, idx: np.ndarray) -> list[np.ndarray]:
        """Every layer's input on rows ``idx`` of ``X`` (training mode), then the model's output."""
        rows = idx.shape[0]
        if self._take is not None and X.flags.c_contiguous and X.dtype == self.dtype:
            x = self._take(X, idx, self.x[:rows])
        else:
            x = np.take(X, idx, axis=0, out=self.x[:rows])
        inputs = []
        for k, layer in enumerate(self.layers):
            inputs.append(x)
            if isinstance(layer, Dense):
                out = self.out[k]
                x = np.matmul(x, layer.params["W"], out=out[:rows])  # type: ignore[index]
                if self.relu_after[k]:  # the bias, then the next layer's ReLU, in one pass
                    self._dense.bias_relu(x, layer.params["b"])
                else:
                    x += layer.params["b"]  # as Dense.forward: the product, then the bias
            elif self.in_place_relu[k]:
                if not self.relu_after[k - 1]:
                    np.maximum(x, 0.0, out=x)  # ReLU.compute_value on NumPy
            else:
                x = layer.forward(x, training=True)
        inputs.append(x)
        return inputs

    def backward(self, g: np.ndarray, inputs: list[np.ndarray]) -> None:
        """Fill every layer's ``grads`` from ``g``, the gradient w.r.t. the model's output."""
        rows = g.shape[0]
        last = len(self.layers) - 1
        bias_done = False  # the bias gradient of the Dense layer next in the loop is already there
        for k in range(last, -1, -1):
            layer = self.layers[k]
            grads = self.grads[k]
            if grads is not None:  # a Dense layer
                np.matmul(inputs[k].T, g, out=grads["W"])  # as Dense.backward
                if not bias_done:
                    np.add.reduce(g, axis=0, out=grads["b"])  # np.sum's reduction, without its wrappers
                bias_done = False
                if k:
                    buf = self.grad_in[k]
                    g = np.matmul(g, layer.params["W"].T, out=buf[:rows])  # type: ignore[index]
            elif self.in_place_relu[k]:
                y = inputs[k + 1]  # the ReLU's output (the next layer's input, or what the head saw)
                # ReLU's VJP, g · [x > 0]; [y > 0] is the same mask (y = max(x, 0); NaN: 0 either way,
                # and a NaN pre-activation has made the loss NaN before any backward)
                gb = self.grads[k - 1]["b"]  # type: ignore[index]
                if self.relu_after[k - 1] and g.dtype == gb.dtype and g.flags.writeable:
                    self._dense.relu_grad_bias(g, y, gb)  # and the Dense layer's bias gradient, Σ_rows g
                    bias_done = True
                else:
                    np.multiply(g, y > 0, out=g)
            else:  # an activation layer: its forward kept its input and output
                g = cast(ActivationLayer, layer).backward(g)

    def run(self, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The forward pass (the logits, kept for :meth:`backward`)."""
        self._inputs = self.forward(X, idx)
        return self._inputs[-1]

    def backprop(self, g: np.ndarray) -> None:
        """The backward pass of the last :meth:`run`."""
        self.backward(g, self._inputs)
