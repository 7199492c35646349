r"""Gumbel-softmax (Jang et al., 2017; Maddison et al., 2017): a differentiable sample.

Forward: :math:`y = \mathrm{softmax}((z + G)/T)` with :math:`G_i = -\log(-\log U_i)`
drawn afresh on each forward pass; ``hard=True`` returns the one-hot
:math:`\mathrm{onehot}(\arg\max y)` instead (straight-through).

Derivatives are those of the softmax at the perturbed scores, for the noise of
the calling thread's last forward pass (or the ``noise=`` passed explicitly):
:math:`J = (\mathrm{diag}(y) - y y^\top)/T`, VJP :math:`y \odot (g - \langle g, y\rangle)/T`,
with :math:`y` the *soft* sample also when ``hard=True`` (the straight-through estimator).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from array_api_compat import device

from .._array import as_float, cast, check_positive, like
from .._rng import RNGLike, as_generator, check_rng, seed_alias
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
    rng : None, int or numpy.random.Generator
        Source of the Gumbel noise (drawn with NumPy, then moved to the input's library and device),
        as in SPEC 7: ``None`` draws fresh entropy, an int seeds ``numpy.random.default_rng``,
        a Generator is used as it is (and advanced). ``seed=`` is its deprecated old name.

    Notes
    -----
    ``forward`` draws new noise and keeps it in ``noise``; ``vjp``, ``jvp`` and
    ``jacobian`` use that noise unless given ``noise=``, so a forward pass and
    its backward pass see the same sample. Every method accepts ``noise=`` to
    make a call deterministic.

    One object may be shared by threads: ``noise`` and :meth:`frozen` are kept per
    thread (a backward pass uses the noise of the same thread's forward pass), a call
    with ``noise=`` reads and writes nothing shared but the calling thread's ``noise``,
    and draws from the generator are serialized by a lock, so a single thread draws
    exactly the sequence it drew before. Which thread gets which draw is up to the
    scheduler: for reproducible samples across threads give each thread its own
    ``rng`` (or pass ``noise=``).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gs = gk.GumbelSoftmax(temperature=0.5, rng=0)
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

    @seed_alias("gradkit.GumbelSoftmax")
    def __init__(self, axis: int = -1, temperature: float = 1.0, hard: bool = False, rng: RNGLike = None) -> None:
        super().__init__(axis)
        self.temperature = check_positive(temperature, "temperature")
        if not isinstance(hard, bool):
            raise TypeError(f"hard must be a bool; got {hard!r}")
        self.hard = hard
        #: the ``rng`` given (an int, None, a Generator, ...), as :func:`repr` and the checkpoint config show it
        self.rng = check_rng(rng)
        self._rng = as_generator(self.rng)
        self._softmax = Softmax(axis=axis, temperature=temperature)
        self._draw_lock = threading.Lock()  # a Generator is not meant to be shared by threads unguarded
        self._local = threading.local()  # per thread: the last forward's noise, the frozen() depth

    @property
    def seed(self) -> Any:
        """Deprecated: the ``rng`` given (read :attr:`rng` instead)."""
        warnings.warn("use rng= and the attribute .rng instead of .seed of gradkit.GumbelSoftmax: "
                      ".seed is deprecated and will be removed", DeprecationWarning, stacklevel=2)
        return self.rng

    # -- per-thread state -----------------------------------------------------
    @property
    def noise(self) -> Any:
        """The noise :math:`G` of this thread's last forward pass (None before the first)."""
        return getattr(self._local, "noise", None)

    @noise.setter
    def noise(self, value: Any) -> None:
        self._local.noise = value

    @property
    def _frozen(self) -> bool:
        return getattr(self._local, "frozen", 0) > 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_draw_lock"], state["_local"]  # neither can be pickled; the copy gets its own
        state["noise"] = self.noise  # this thread's noise becomes the unpickling thread's
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        noise = state.pop("noise", None)
        if "seed" in state:  # pickled before ``seed`` became ``rng``
            state.setdefault("rng", state.pop("seed"))
        self.__dict__.update(state)
        self._draw_lock = threading.Lock()
        self._local = threading.local()
        self.noise = noise


    # -- public methods take noise= ---------------------------------------------
    # noise= travels as an argument, never through the object: another thread's call
    # cannot see it, nor replace it between this call's forward and derivative steps
    def forward(self, x: Any, *, where: Any = None, noise: Any = None) -> Any:
        """Return a sample (soft, or one-hot with ``hard=True``); keeps its noise in ``noise`` (per thread)."""
        xp, xc, out_dtype, axis, mask = self._prepare(x, where)
        return cast(xp, self._sample(xp, xc, axis, mask, noise), out_dtype)

    def __call__(self, x: Any, *, where: Any = None, noise: Any = None) -> Any:
        return self.forward(x, where=where, noise=noise)

    def vjp(self, x: Any, g: Any, y: Any = None, *, where: Any = None, noise: Any = None) -> Any:
        """The softmax VJP at the perturbed scores ``x + noise`` (``y`` is not needed)."""
        xp, xc, out_dtype, axis, mask = self._prepare(x, where)
        gc = like(g, xc, xp, "g")
        soft = self._soft(xp, xc, axis, mask, draw=False, given=noise)
        return cast(xp, self._softmax.compute_vjp(xp, xc, soft, gc, axis, mask), out_dtype)

    def jvp(self, x: Any, v: Any, y: Any = None, *, where: Any = None, noise: Any = None) -> Any:
        """The softmax JVP at the perturbed scores ``x + noise``."""
        xp, xc, out_dtype, axis, mask = self._prepare(x, where)
        vc = like(v, xc, xp, "v")
        soft = self._soft(xp, xc, axis, mask, draw=False, given=noise)
        return cast(xp, self._softmax.compute_jvp(xp, xc, soft, vc, axis, mask), out_dtype)

    def jacobian(self, x: Any, y: Any = None, *, where: Any = None, noise: Any = None) -> Any:
        """The softmax Jacobian at the perturbed scores ``x + noise``."""
        xp, xc, out_dtype = as_float(x, "x")
        perturbed = self._perturbed(xp, xc, draw=False, given=noise)
        return cast(xp, self._softmax.jacobian(perturbed, where=where), out_dtype)

    def sample_noise(self, x: Any) -> Any:
        """Standard Gumbel noise shaped like ``x``, in ``x``'s library, device and float dtype."""
        xp, xc, _ = as_float(x, "x")
        with self._draw_lock:
            g = self._rng.gumbel(size=tuple(xc.shape))
        return xp.asarray(g, dtype=xc.dtype, device=device(xc))

    @contextmanager
    def frozen(self) -> Iterator[GumbelSoftmax]:
        """Within this block, forward passes of this thread reuse its last noise (same shape)
        instead of drawing: the sample is a deterministic function of ``x``, as gradient checks need.

        Other threads keep drawing; blocks nest.

        >>> import numpy as np, gradkit as gk
        >>> gs = gk.GumbelSoftmax(rng=1)
        >>> x = np.array([0.5, 1.0, -1.0])
        >>> first = gs(x)
        >>> with gs.frozen():
        ...     bool(np.array_equal(gs(x), first))
        True
        """
        local = self._local
        local.frozen = getattr(local, "frozen", 0) + 1
        try:
            yield self
        finally:
            local.frozen -= 1

    # -- the contract (also called directly by compose) ---------------------------
    def _perturbed(self, xp: Any, x: Any, draw: bool, given: Any = None) -> Any:
        if given is not None:
            g = like(given, x, xp, "noise")
            if draw:  # the derivatives that follow in this thread use this sample
                self.noise = g
            return x + g
        last = self.noise
        if draw and not (self._frozen and last is not None and tuple(last.shape) == tuple(x.shape)):
            g = self.sample_noise(x)
            self.noise = g
        elif last is None or tuple(last.shape) != tuple(x.shape):
            raise ValueError(
                "the derivatives of a Gumbel-softmax sample need its noise: call forward(x) first "
                "in this thread (the noise is kept per thread) "
                f"(last noise: {None if last is None else tuple(last.shape)}, x: {tuple(x.shape)}) "
                "or pass noise="
            )
        else:
            g = like(last, x, xp, "noise")
        return x + g

    def _soft(self, xp: Any, x: Any, axis: int, mask: Any, draw: bool, given: Any = None) -> Any:
        return self._softmax.compute_forward(xp, self._perturbed(xp, x, draw, given), axis, mask)

    def _sample(self, xp: Any, x: Any, axis: int, mask: Any, given: Any) -> Any:
        y = self._soft(xp, x, axis, mask, draw=True, given=given)
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

    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        return self._sample(xp, x, axis, mask, None)

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        return self._softmax.compute_vjp(xp, x, self._soft(xp, x, axis, mask, draw=False), g, axis, mask)

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        return self._softmax.compute_jvp(xp, x, self._soft(xp, x, axis, mask, draw=False), v, axis, mask)

    def _output(self, xp: Any, xc: Any, y: Any, axis: int, mask: Any, transient: bool = False) -> Any:
        return None  # the derivatives recompute the soft sample from the noise
