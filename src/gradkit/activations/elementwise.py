"""Elementwise activations: ``y_i = f(x_i)``, Jacobian ``diag(f'(x))``.

For every class here: VJP ``= g ⊙ f'(x)``, JVP ``= v ⊙ f'(x)``, and
``derivative(x)`` returns the diagonal ``f'(x)``. At kinks the derivative
follows PyTorch: ``relu'(0) = 0``, ``leaky_relu'(0) = negative_slope``,
``elu'(0) = alpha``, ``hard_sigmoid'(±3) = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import is_cupy_namespace, is_jax_namespace, is_numpy_namespace, is_torch_namespace

from .._array import check_choice, check_positive
from ..base import ElementwiseActivation

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "HardSigmoid",
    "Identity",
    "LeakyReLU",
    "Mish",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softplus",
    "Tanh",
]


def sigmoid(xp: Any, x: Any) -> Any:
    """Overflow-free logistic function ``1 / (1 + exp(-x))``."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(xp: Any, x: Any) -> Any:
    """Overflow-free ``log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))``."""
    return xp.where(x > 0, x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def with_limits(xp: Any, f: Callable[[Any], Any], x: Any, at_pos_inf: float, at_neg_inf: float) -> Any:
    """``f(x)`` on finite entries, the given limits at ``±inf``, NaN where ``x`` is NaN.

    For products such as ``x * sigmoid(x)`` that are ``inf * 0`` at infinity.
    """
    finite = xp.isfinite(x)
    value = f(xp.where(finite, x, 0.0))
    limits = xp.where(x > 0, at_pos_inf, xp.where(x < 0, at_neg_inf, x))
    return xp.where(finite, value, limits)


def normal_cdf(xp: Any, x: Any) -> Any:
    """Standard normal CDF Φ(x) from the library that owns ``x`` (the Array API has none).

    ``ndtr`` keeps full relative precision in the lower tail, where
    ``(1 + erf(x/√2))/2`` cancels to 0 below x ≈ -8.
    """
    if is_numpy_namespace(xp):
        try:
            from scipy.special import ndtr
        except ImportError:  # scipy is optional: exact but slower
            import numpy as np

            return np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2.0)), otypes=[x.dtype])(x)
        return ndtr(x)
    if is_torch_namespace(xp):
        import torch

        return torch.special.ndtr(x)
    if is_jax_namespace(xp):
        import jax.scipy.special

        return jax.scipy.special.ndtr(x)
    if is_cupy_namespace(xp):
        import cupyx.scipy.special

        return cupyx.scipy.special.ndtr(x)
    raise TypeError(
        f"GELU(approximate='none') needs the normal CDF, which {xp.__name__} does not provide; "
        "use GELU(approximate='tanh')"
    )


class Identity(ElementwiseActivation):
    r"""Identity: :math:`y = x`, :math:`J = I`, VJP :math:`= g`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.Identity().vjp(np.array([1.0, -2.0]), np.array([0.5, 3.0]))
    array([0.5, 3. ])
    """

    name = "identity"

    def compute_value(self, xp: Any, x: Any) -> Any:
        return x

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        return xp.ones_like(x)


class Sigmoid(ElementwiseActivation):
    r"""Logistic sigmoid: :math:`y = 1/(1+e^{-x})`, :math:`f'(x) = y(1-y)`.

    VJP :math:`= g \odot y(1-y)`. Evaluated without overflow for any ``x``, and
    :math:`f'` as :math:`e^{-|x|}/(1+e^{-|x|})^2`, which keeps full precision where
    :math:`y \approx 1`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.Sigmoid()(np.array([0.0, 2.0])).round(6)
    array([0.5     , 0.880797])
    >>> gk.Sigmoid().derivative(np.array([0.0]))
    array([0.25])
    """

    name = "sigmoid"
    output_range = (0.0, 1.0)

    def compute_value(self, xp: Any, x: Any) -> Any:
        return sigmoid(xp, x)

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        # y(1 - y) cancels where y ≈ 1; e/(1+e)² with e = exp(-|x|) keeps full precision
        e = xp.exp(-xp.abs(x))
        return e / ((1.0 + e) * (1.0 + e))


class Tanh(ElementwiseActivation):
    r"""Hyperbolic tangent: :math:`y = \tanh x`, :math:`f'(x) = 1 - y^2 = \mathrm{sech}^2 x`
    (evaluated as :math:`4e/(1+e)^2`, :math:`e = e^{-2|x|}`, precise where :math:`|y| \approx 1`).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.Tanh().derivative(np.array([0.0, 1.0])).round(6)
    array([1.      , 0.419974])
    """

    name = "tanh"
    output_range = (-1.0, 1.0)

    def compute_value(self, xp: Any, x: Any) -> Any:
        return xp.tanh(x)

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        # 1 - y² cancels where |y| ≈ 1; sech²x = 4e/(1+e)² with e = exp(-2|x|) does not
        e = xp.exp(-2.0 * xp.abs(x))
        return 4.0 * e / ((1.0 + e) * (1.0 + e))


class ReLU(ElementwiseActivation):
    r"""Rectified linear unit: :math:`y = \max(x, 0)`, :math:`f'(x) = [x > 0]`.

    At the kink :math:`f'(0) = 0` (as in PyTorch). NaN propagates, derivative included.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.ReLU().vjp(np.array([-1.0, 0.0, 2.0]), np.array([5.0, 5.0, 5.0]))
    array([0., 0., 5.])
    """

    name = "relu"
    output_range = (0.0, math.inf)

    def compute_value(self, xp: Any, x: Any) -> Any:
        if is_numpy_namespace(xp):  # one pass instead of two; equal, signed zero and NaN included
            return xp.maximum(x, 0.0)
        return xp.where(x <= 0, 0.0, x)

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        return xp.where(xp.isnan(x), x, xp.astype(x > 0, x.dtype))


class LeakyReLU(ElementwiseActivation):
    r"""Leaky ReLU: :math:`y = x` for :math:`x > 0`, else :math:`a x`; :math:`f' = 1` or :math:`a`.

    ``negative_slope`` :math:`a \ge 0`; :math:`f'(0) = a` (as in PyTorch).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.LeakyReLU(negative_slope=0.1)(np.array([-2.0, 3.0]))
    array([-0.2,  3. ])
    """

    name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, axis: int = -1) -> None:
        super().__init__(axis)
        self.negative_slope = check_positive(negative_slope, "negative_slope", allow_zero=True)


    def compute_value(self, xp: Any, x: Any) -> Any:
        return xp.where(x > 0, x, self.negative_slope * x)

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        d = xp.where(x > 0, xp.ones_like(x), xp.full_like(x, self.negative_slope))
        return xp.where(xp.isnan(x), x, d)


class ELU(ElementwiseActivation):
    r"""Exponential linear unit: :math:`y = x` for :math:`x > 0`, else :math:`\alpha(e^x - 1)`.

    :math:`f'(x) = 1` for :math:`x > 0`, else :math:`\alpha e^x` (so :math:`f'(0) = \alpha`).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.ELU()(np.array([-1.0, 1.0])).round(6)
    array([-0.632121,  1.      ])
    """

    name = "elu"
    _scale = 1.0  # SELU's λ

    def __init__(self, alpha: float = 1.0, axis: int = -1) -> None:
        super().__init__(axis)
        self.alpha = check_positive(alpha, "alpha")
        self.output_range = (-self.alpha * self._scale, math.inf)  # type: ignore[misc]  # depends on alpha


    def compute_value(self, xp: Any, x: Any) -> Any:
        neg = xp.where(x > 0, 0.0, x)
        return self._scale * xp.where(x > 0, x, self.alpha * xp.expm1(neg))

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        neg = xp.where(x > 0, 0.0, x)
        return self._scale * xp.where(x > 0, 1.0, self.alpha * xp.exp(neg))


class SELU(ELU):
    r"""Scaled ELU: :math:`y = \lambda\,\mathrm{elu}_\alpha(x)` with the self-normalizing constants
    :math:`\alpha \approx 1.6733`, :math:`\lambda \approx 1.0507`; :math:`f' = \lambda\,\mathrm{elu}_\alpha'`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.SELU()(np.array([1.0])).round(6)
    array([1.050701])
    """

    name = "selu"
    _scale = 1.0507009873554804934193349852946

    def __init__(self, axis: int = -1) -> None:
        super().__init__(alpha=1.6732632423543772848170429916717, axis=axis)



class GELU(ElementwiseActivation):
    r"""Gaussian error linear unit.

    ``approximate="none"``: :math:`y = x\Phi(x)`, :math:`f'(x) = \Phi(x) + x\varphi(x)`
    with :math:`\Phi` the normal CDF and :math:`\varphi` its density.

    ``approximate="tanh"``: :math:`y = \tfrac12 x(1 + \tanh u)`,
    :math:`u = \sqrt{2/\pi}(x + 0.044715x^3)`,
    :math:`f'(x) = \tfrac12(1 + \tanh u) + \tfrac12 x(1 - \tanh^2 u)\sqrt{2/\pi}(1 + 3\cdot 0.044715x^2)`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.GELU()(np.array([1.0])).round(6)
    array([0.841345])
    >>> gk.GELU(approximate="tanh")(np.array([1.0])).round(6)
    array([0.841192])
    """

    name = "gelu"
    output_range = (-0.17, math.inf)
    _C = math.sqrt(2.0 / math.pi)

    def __init__(self, approximate: str = "none", axis: int = -1) -> None:
        super().__init__(axis)
        self.approximate = check_choice(approximate, "approximate", ("none", "tanh"))


    def compute_value(self, xp: Any, x: Any) -> Any:
        if self.approximate == "tanh":  # ½(1 + tanh u) = σ(2u): no cancellation in the lower tail
            return with_limits(xp, lambda x: x * sigmoid(xp, 2.0 * self._u(xp, x)), x, math.inf, 0.0)
        return with_limits(xp, lambda x: x * normal_cdf(xp, x), x, math.inf, 0.0)

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        return with_limits(xp, lambda x: self._df_finite(xp, x), x, 1.0, 0.0)

    def _u(self, xp: Any, x: Any) -> Any:
        x = xp.clip(x, -50.0, 50.0)  # σ(2u) is exactly 0 or 1 beyond; avoids x³ overflowing
        return self._C * (x + 0.044715 * x**3)

    def _df_finite(self, xp: Any, x: Any) -> Any:
        # beyond |x| = 50 the second terms are exactly 0 (and would be 0 · inf unclipped)
        xc = xp.clip(x, -50.0, 50.0)
        if self.approximate == "tanh":
            u2 = 2.0 * self._u(xp, x)
            s, sm = sigmoid(xp, u2), sigmoid(xp, -u2)  # ½(1 - tanh²u) = 2 σ(2u) σ(-2u)
            return s + 2.0 * xc * s * sm * self._C * (1.0 + 3 * 0.044715 * xc * xc)
        return normal_cdf(xp, x) + xc * xp.exp(-0.5 * xc * xc) / math.sqrt(2.0 * math.pi)


class Softplus(ElementwiseActivation):
    r"""Softplus: :math:`y = \tfrac1\beta\log(1 + e^{\beta x})`, :math:`f'(x) = \sigma(\beta x)`.

    Computed exactly and without overflow for every ``x`` (no linear cut-off
    at ``βx > 20`` as in PyTorch, which differs by less than ``2e-9``).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.Softplus()(np.array([0.0, 1000.0])).round(6).tolist()
    [0.693147, 1000.0]
    """

    name = "softplus"
    output_range = (0.0, math.inf)

    def __init__(self, beta: float = 1.0, axis: int = -1) -> None:
        super().__init__(axis)
        self.beta = check_positive(beta, "beta")


    def compute_value(self, xp: Any, x: Any) -> Any:
        return softplus(xp, self.beta * x) / self.beta

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        return sigmoid(xp, self.beta * x)


class SiLU(ElementwiseActivation):
    r"""SiLU / swish: :math:`y = x\sigma(x)`, :math:`f'(x) = \sigma(x)(1 + x(1 - \sigma(x)))`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.SiLU()(np.array([1.0])).round(6)
    array([0.731059])
    """

    name = "silu"
    output_range = (-0.2785, math.inf)

    def compute_value(self, xp: Any, x: Any) -> Any:
        return with_limits(xp, lambda x: x * sigmoid(xp, x), x, math.inf, 0.0)

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        def finite(x: Any) -> Any:
            s = sigmoid(xp, x)
            return s * (1.0 + x * (1.0 - s))

        return with_limits(xp, finite, x, 1.0, 0.0)


class Mish(ElementwiseActivation):
    r"""Mish: :math:`y = x\tanh(\mathrm{softplus}(x))`,
    :math:`f'(x) = \tanh(\mathrm{sp}(x)) + x\,\sigma(x)\,(1 - \tanh^2(\mathrm{sp}(x)))`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.Mish()(np.array([1.0])).round(6)
    array([0.865098])
    """

    name = "mish"
    output_range = (-0.3089, math.inf)

    def compute_value(self, xp: Any, x: Any) -> Any:
        return with_limits(xp, lambda x: x * xp.tanh(softplus(xp, x)), x, math.inf, 0.0)

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        def finite(x: Any) -> Any:
            t = xp.tanh(softplus(xp, x))
            return t + x * sigmoid(xp, x) * (1.0 - t * t)

        return with_limits(xp, finite, x, 1.0, 0.0)


class HardSigmoid(ElementwiseActivation):
    r"""Hard sigmoid (PyTorch's): :math:`y = \min(\max(x/6 + 1/2, 0), 1)`.

    :math:`f'(x) = 1/6` for :math:`-3 < x < 3`, else 0 (so :math:`f'(\pm 3) = 0`).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.HardSigmoid()(np.array([-4.0, 0.0, 1.5, 4.0]))
    array([0.  , 0.5 , 0.75, 1.  ])
    """

    name = "hard_sigmoid"
    output_range = (0.0, 1.0)

    def compute_value(self, xp: Any, x: Any) -> Any:
        return xp.where(x <= -3.0, 0.0, xp.where(x >= 3.0, 1.0, x / 6.0 + 0.5))

    def compute_derivative(self, xp: Any, x: Any, y: Any) -> Any:
        d = xp.where((x > -3.0) & (x < 3.0), xp.full_like(x, 1.0 / 6.0), 0.0)
        return xp.where(xp.isnan(x), x, d)
