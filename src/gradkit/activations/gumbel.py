r"""Gumbel-softmax (Jang et al., 2017; Maddison et al., 2017): a differentiable sample.

Forward: :math:`y = \mathrm{softmax}((z + G)/T)` with :math:`G_i = -\log(-\log U_i)`
drawn afresh on each forward pass; ``hard=True`` returns the one-hot
:math:`\mathrm{onehot}(\arg\max y)` instead (straight-through).

Derivatives are those of the softmax at the perturbed scores, for the noise of
the last forward pass (or the ``noise=`` passed explicitly):
:math:`J = (\mathrm{diag}(y) - y y^\top)/T`, VJP :math:`y \odot (g - \langle g, y\rangle)/T`,
with :math:`y` the *soft* sample also when ``hard=True`` (the straight-through estimator).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
from array_api_compat import device

from .._array import as_float, cast, check_positive, like
from ..base import AxisActivation
from .softmax import Softmax

__all__ = ["GumbelSoftmax"]


class GumbelSoftmax(AxisActivation):
    r"""Gumbel-softmax sample along ``axis``: :math:`y = \mathrm{softmax}((z + G)/T)`.

    Parameters
    ----------
    axis : int
        The class axis.
    temperature : float
        :math:`T > 0`; small :math:`T` gives nearly one-hot samples.
    hard : bool
        Return one-hot samples; derivatives stay those of the soft sample.
    seed : int, numpy.random.Generator or None
        Source of the Gumbel noise (drawn with NumPy, then moved to the input's library and device).

    Notes
    -----
    ``forward`` draws new noise and keeps it in ``noise``; ``vjp``, ``jvp`` and
    ``jacobian`` use that noise unless given ``noise=``, so a forward pass and
    its backward pass see the same sample. Every method accepts ``noise=`` to
    make a call deterministic.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gs = gk.GumbelSoftmax(temperature=0.5, seed=0)
    >>> y = gs(np.array([1.0, 2.0, 3.0]))
    >>> bool(np.isclose(y.sum(), 1.0)), gs.noise.shape
    (True, (3,))
    >>> g = np.array([1.0, -2.0, 0.5])
    >>> np.allclose(gs.vjp(np.array([1.0, 2.0, 3.0]), g),
    ...             gk.Softmax(temperature=0.5).vjp(np.array([1.0, 2.0, 3.0]) + gs.noise, g))
    True
    """

    name = "gumbel_softmax"
    output_range = (0.0, 1.0)
    stochastic = True
    preserves_order = False

    def __init__(self, axis: int = -1, temperature: float = 1.0, hard: bool = False, seed: Any = None) -> None:
        super().__init__(axis)
        self.temperature = check_positive(temperature, "temperature")
        if not isinstance(hard, bool):
            raise TypeError(f"hard must be a bool; got {hard!r}")
        self.hard = hard
        if not (seed is None or isinstance(seed, (int, np.integer, np.random.Generator))) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, a numpy.random.Generator or None; got {type(seed).__name__}")
        self.seed = seed
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._softmax = Softmax(axis=axis, temperature=temperature)
        #: the noise :math:`G` of the last forward pass (None before the first)
        self.noise: Any = None
        self._given: Any = None  # noise= of the current call
        self._frozen = False

    def _params(self) -> dict[str, Any]:
        return {"axis": self.axis, "temperature": self.temperature, "hard": self.hard, "seed": self.seed}

    # -- public methods take noise= -------------------------------------------
    def forward(self, x: Any, *, where: Any = None, noise: Any = None) -> Any:
        """Return a sample (soft, or one-hot with ``hard=True``); keeps its noise in ``noise``."""
        return self._with_noise(noise, super().forward, x, where=where)

    def __call__(self, x: Any, *, where: Any = None, noise: Any = None) -> Any:
        return self.forward(x, where=where, noise=noise)

    def vjp(self, x: Any, g: Any, y: Any = None, *, where: Any = None, noise: Any = None) -> Any:
        """The softmax VJP at the perturbed scores ``x + noise`` (``y`` is not needed)."""
        return self._with_noise(noise, super().vjp, x, g, None, where=where)

    def jvp(self, x: Any, v: Any, y: Any = None, *, where: Any = None, noise: Any = None) -> Any:
        """The softmax JVP at the perturbed scores ``x + noise``."""
        return self._with_noise(noise, super().jvp, x, v, None, where=where)

    def jacobian(self, x: Any, y: Any = None, *, where: Any = None, noise: Any = None) -> Any:
        """The softmax Jacobian at the perturbed scores ``x + noise``."""
        xp, xc, out_dtype = as_float(x, "x")
        self._given = noise
        try:
            perturbed = self._perturbed(xp, xc, draw=False)
        finally:
            self._given = None
        return cast(xp, self._softmax.jacobian(perturbed, where=where), out_dtype)

    def sample_noise(self, x: Any) -> Any:
        """Standard Gumbel noise shaped like ``x``, in ``x``'s library, device and float dtype."""
        xp, xc, _ = as_float(x, "x")
        g = self._rng.gumbel(size=tuple(xc.shape))
        return xp.asarray(g, dtype=xc.dtype, device=device(xc))

    @contextmanager
    def frozen(self) -> Iterator[GumbelSoftmax]:
        """Within this block, forward passes reuse the last noise (same shape) instead of
        drawing: the sample is a deterministic function of ``x``, as gradient checks need.

        >>> import numpy as np, gradkit as gk
        >>> gs = gk.GumbelSoftmax(seed=1)
        >>> x = np.array([0.5, 1.0, -1.0])
        >>> first = gs(x)
        >>> with gs.frozen():
        ...     bool(np.array_equal(gs(x), first))
        True
        """
        self._frozen = True
        try:
            yield self
        finally:
            self._frozen = False

    def _with_noise(self, noise: Any, method: Any, *args: Any, **kwargs: Any) -> Any:
        self._given = noise
        try:
            return method(*args, **kwargs)
        finally:
            self._given = None

    # -- the contract (also called directly by compose) ---------------------------
    def _perturbed(self, xp: Any, x: Any, draw: bool) -> Any:
        if self._given is not None:
            g = like(self._given, x, xp, "noise")
            if draw:  # the derivatives that follow use this sample
                self.noise = g
        elif draw and not (self._frozen and self.noise is not None and tuple(self.noise.shape) == tuple(x.shape)):
            g = self.noise = self.sample_noise(x)
        elif self.noise is None or tuple(self.noise.shape) != tuple(x.shape):
            raise ValueError(
                "the derivatives of a Gumbel-softmax sample need its noise: call forward(x) first "
                f"(last noise: {None if self.noise is None else tuple(self.noise.shape)}, x: {tuple(x.shape)}) "
                "or pass noise="
            )
        else:
            g = like(self.noise, x, xp, "noise")
        return x + g

    def _soft(self, xp: Any, x: Any, axis: int, mask: Any, draw: bool) -> Any:
        return self._softmax._forward(xp, self._perturbed(xp, x, draw), axis, mask)

    def _forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        y = self._soft(xp, x, axis, mask, draw=True)
        if not self.hard:
            return y
        idx = xp.argmax(y, axis=axis, keepdims=True)
        n = y.shape[axis]
        shape = [1] * y.ndim
        shape[axis] = n
        positions = xp.reshape(xp.arange(n, device=device(y)), tuple(shape))
        live = xp.sum(y, axis=axis, keepdims=True) > 0  # rows with no live entry stay 0
        hot = xp.astype((positions == idx) & live, y.dtype)
        return xp.where(xp.isnan(y), y, hot)

    def _vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        return self._softmax._vjp(xp, x, self._soft(xp, x, axis, mask, draw=False), g, axis, mask)

    def _jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        return self._softmax._jvp(xp, x, self._soft(xp, x, axis, mask, draw=False), v, axis, mask)

    def _output(self, xp: Any, xc: Any, y: Any, axis: int, mask: Any) -> Any:
        return None  # the derivatives recompute the soft sample from the noise
