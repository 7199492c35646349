"""Optimizers (in-place updates of NumPy parameters) and learning-rate schedules.

Conventions follow PyTorch: ``SGD`` and ``Adam`` add ``weight_decay·p`` to the
gradient (L2); ``AdamW`` decays the weights directly (decoupled).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import kernels as _kernels
from .._array import check_int, check_positive

__all__ = ["SGD", "Adam", "AdamW", "CosineLR", "DivergenceError", "Optimizer", "StepLR", "get"]

Schedule = Callable[[int], float]
#: a compiled update (:mod:`gradkit.kernels.optim`), its arguments but the last (``write``), the new state
Fused = tuple[Callable[..., bool], tuple[Any, ...], dict[str, np.ndarray]]


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_int(step_size, "step_size")
        if self.step_size < 1:
            raise ValueError(f"step_size must be >= 1; got {step_size}")
        self.gamma = check_positive(gamma, "gamma")

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)

    def __repr__(self) -> str:
        return f"StepLR(step_size={self.step_size!r}, gamma={self.gamma!r})"


class CosineLR:
    """Cosine annealing from the base rate to ``min_factor``·base over ``epochs`` epochs."""

    def __init__(self, epochs: int, min_factor: float = 0.0) -> None:
        self.epochs = check_int(epochs, "epochs")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {epochs}")
        self.min_factor = check_positive(min_factor, "min_factor", allow_zero=True)

    def __call__(self, epoch: int) -> float:
        t = min(epoch, self.epochs) / self.epochs
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))

    def __repr__(self) -> str:
        return f"CosineLR(epochs={self.epochs!r}, min_factor={self.min_factor!r})"


class DivergenceError(ValueError, FloatingPointError):
    """The loss, the gradients or an update became NaN or infinite; the weights and the
    optimizer's state are left as they were before that step.

    ``reason`` is the bare cause (without the advice), as the message's first words.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message

    @classmethod
    def at(cls, value: float, epoch: int, where: str, lr: float, what: str | None = None) -> DivergenceError:
        """The error for a non-finite ``value`` (else overflowing gradients, or ``what`` when given)
        at ``epoch`` (0-based), ``where``."""
        if what is None:
            what = f"the loss became {float(value)}" if not np.isfinite(value) else "the gradients overflowed"
        return cls(f"{what} at epoch {epoch + 1}, {where}; training stopped before updating the weights "
                   f"with it. Try a lower learning rate (now {lr:g}).", what)


def _all_finite(a: np.ndarray) -> bool:
    """Whether every element of the floating array ``a`` is finite, in about one read of ``a``.

    ``a·a`` (a BLAS dot product of the flattened array) is finite only when every element
    is: a NaN or an infinity makes the sum NaN or infinite, and the terms are never
    negative, so no ``inf - inf`` can cancel. A finite ``a`` whose squares overflow
    (elements beyond ~1e19 in float32) is decided exactly by ``np.isfinite(a).all()``.
    """
    flat = a.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # float16's dot warns
        if math.isfinite(np.dot(flat, flat)):
            return True
    return bool(np.isfinite(a).all())


@functools.cache
def _compiled() -> Any:
    """:mod:`gradkit.kernels.optim` (imports numba), loaded at the first compiled step."""
    from ..kernels import optim

    return optim


class Optimizer:
    """Base: ``step(params, grads)`` updates ``params`` in place; ``set_epoch`` applies the schedule.

    A step is all or nothing: the new value of every parameter (and the new optimizer
    state) is computed first and checked to be finite in the parameters' dtype; only
    then are they written. A non-finite update raises :class:`DivergenceError` and
    leaves the parameters, the state (moments, momentum buffers) and ``steps`` as
    they were. A learning rate larger than the parameters' dtype can hold (``lr=1e39``
    for float32) raises ``ValueError`` before anything is computed.

    A step allocates no parameter-sized memory once the first one is done. With numba
    (the ``fast`` extra; ``GRADKIT_DISABLE_NUMBA=1`` turns it off) the update of a
    C-contiguous float32 or float64 parameter is a compiled kernel run twice: the first
    pass computes every new value and checks it without writing anything, the second
    computes the same values again and writes them (:mod:`gradkit.kernels.optim`). Else
    the new values are computed with NumPy into buffers the optimizer keeps (one or two
    per parameter), checked (one dot product, see :func:`_all_finite`) and copied in.
    Either way the new state is computed into a spare buffer that becomes the state when
    the step is applied (the two swap), so the arrays in ``state`` are reused two steps
    later: copy them to keep them. Arrays put into ``state`` from outside are read, never
    written. The buffers are not pickled or copied with the optimizer. Both ways give
    the same bits.
    """

    def __init__(self, lr: float, weight_decay: float = 0.0, schedule: Schedule | None = None) -> None:
        self.base_lr = check_positive(lr, "lr")
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a callable epoch -> factor or None; got {type(schedule).__name__}")
        self.schedule = schedule
        self.lr = self.base_lr
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0
        self._scratch: dict[str, dict[str, np.ndarray]] = {}
        self._lr_checked: dict[np.dtype, float] = {}
        #: per parameter name, the last (parameter, gradient) pair and their flat views (see _flat)
        self._views: dict[str, tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]] = {}

    def _repr_args(self) -> dict[str, Any]:
        """The constructor arguments :func:`repr` shows (besides weight decay and schedule)."""
        return {"lr": self.base_lr}

    def __repr__(self) -> str:
        """``SGD(lr=0.1, momentum=0.9, nesterov=True)``: the constructor's arguments (the base
        learning rate, not the scheduled one); ``weight_decay`` and ``schedule`` when set."""
        args = self._repr_args()
        if self.weight_decay or getattr(self, "decoupled", False):
            args["weight_decay"] = self.weight_decay
        if self.schedule is not None:
            args["schedule"] = self.schedule
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in args.items())})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_scratch"] = {}  # working memory: rebuilt by the next step
        state["_views"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_scratch", {})
        state.setdefault("_views", {})
        state.setdefault("_lr_checked", {})
        self.__dict__.update(state)

    def set_epoch(self, epoch: int) -> None:
        """Set ``lr`` to ``base_lr × schedule(epoch)``; the product must be finite and >= 0."""
        epoch = check_int(epoch, "epoch")
        if self.schedule is None:
            self.lr = self.base_lr
            return
        factor = self.schedule(epoch)
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
            raise TypeError(f"schedule({epoch}) must return a real number; got {factor!r} ({type(factor).__name__})")
        lr = self.base_lr * float(factor)
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"schedule({epoch}) gave the learning rate {self.base_lr:g} × {float(factor)!r} = {lr!r}; "
                             "it must be finite and >= 0")
        self.lr = lr

    def check_lr(self, dtype: Any) -> None:
        """Raise ``ValueError`` when the current ``lr`` overflows ``dtype`` (e.g. ``lr=1e39`` in float32)."""
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.floating):
            largest = float(np.finfo(dtype).max)
            if self.lr > largest:
                raise ValueError(f"lr={self.lr:g} overflows the parameters' dtype {dtype} (largest value "
                                 f"{largest:g}); pass a learning rate below that (a sensible one is below 10)")

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Update ``params`` (in place) with ``grads``, all or nothing (see the class docstring).

        Raises
        ------
        TypeError
            A parameter is not a floating NumPy array, or a gradient is not real.
        ValueError
            A parameter is read-only, a gradient is missing or has another shape than
            its parameter, ``lr`` overflows a parameter's dtype, or the state held for a
            name has another shape than its parameter (one optimizer per model).
        DivergenceError
            An update (or the optimizer state) is not finite; nothing was changed.
        """
        t = self.steps + 1
        lr, lr_checked, fast = self.lr, self._lr_checked, _kernels.enabled()
        staged: list[tuple[np.ndarray, np.ndarray | None, Fused | None, str, dict[str, np.ndarray]]] = []
        for name, p in params.items():  # nothing below changes a parameter or the state until every update is finite
            if type(p) is not np.ndarray and not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"params[{name!r}] must be a floating NumPy array; got "
                                f"{p.dtype if isinstance(p, np.ndarray) else type(p).__name__}")
            if not p.flags.writeable:  # found now, not when half the parameters are written
                raise ValueError(f"params[{name!r}] is read-only (flags.writeable is False); the step updates "
                                 "parameters in place: pass a writeable array (e.g. a copy)")
            if name not in grads:
                raise ValueError(f"grads has no entry for parameter {name!r}; got {sorted(grads)}")
            g = grads[name]
            if type(g) is not np.ndarray:
                g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"grads[{name!r}] must have the shape of its parameter, {p.shape}; got {g.shape}")
            if g.dtype.kind not in "fiub":
                raise TypeError(f"grads[{name!r}] must be real numbers; got dtype {g.dtype}")
            slot = self.state.get(name)
            if slot:
                for key, buf in slot.items():
                    if getattr(buf, "shape", None) != p.shape:
                        raise ValueError(f"the optimizer's state {key!r} of parameter {name!r} has shape "
                                         f"{np.shape(buf)}, the parameter {p.shape}: use one optimizer per model")
            if lr_checked.get(p.dtype) != lr:  # once per learning rate and dtype
                self.check_lr(p.dtype)
                lr_checked[p.dtype] = lr
            fused = self._fused(name, p, g, t) if fast else None
            if fused is not None:  # one compiled pass computes and checks, writing nothing
                kernel, args, state = fused
                new, finite = None, kernel(*args, False)
            else:  # NumPy: into this optimizer's own buffers
                with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                    new, state = self._compute(name, p, g, t)
                    finite = _all_finite(new) and self._state_finite(state)
            if not finite:
                reason = f"the update of parameter {name!r} ({p.dtype}) is not finite"
                raise DivergenceError(
                    f"{reason}: step {t} was not applied (parameters and optimizer state unchanged). "
                    f"Try a lower learning rate (now {lr:g}).", reason)
            staged.append((p, new, fused, name, state))
        for p, new, fused, name, state in staged:  # every update is finite: apply them all
            if new is not None:
                np.copyto(p, new)
            else:  # the same values again, written this time
                fused[0](*fused[1], True)  # type: ignore[index]
            if state:
                self.state[name] = state  # the spare buffers become the state (swap)
        self.steps = t

    def _buffer(self, name: str, key: str, p: np.ndarray) -> np.ndarray:
        """This optimizer's own working array ``key`` for parameter ``name`` (shape and dtype of ``p``)."""
        slot = self._scratch.setdefault(name, {})
        buf = slot.get(key)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype:
            buf = slot[key] = np.empty(p.shape, p.dtype)
        return buf

    def _spare(self, name: str, key: str, p: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The buffer the new state ``key`` of ``name`` is computed into (never the current
        state array, nor any array this optimizer did not allocate) and the current state
        (None before the first step)."""
        current = self.state.get(name, {}).get(key)
        first = self._buffer(name, key + "0", p)
        return (self._buffer(name, key + "1", p) if current is first else first), current

    def _compute(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The new value of ``p`` and its new state at step ``t``, computed into this optimizer's
        buffers (see :meth:`_buffer`, :meth:`_spare`) without changing ``p`` or ``state``."""
        raise NotImplementedError

    def _fused(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> Fused | None:
        """The compiled update of ``p`` at step ``t`` (:mod:`gradkit.kernels.optim`), or None
        where it does not apply (then :meth:`_compute` runs)."""
        return None

    def _flat(self, name: str, p: np.ndarray, g: np.ndarray, *state: np.ndarray | None) -> list[np.ndarray] | None:
        """1-d views of ``p``, ``g`` and the current state arrays for a compiled kernel: all
        C-contiguous, float32 or float64 alike, ``p`` writeable and apart from ``g``; else None.

        The views of ``p`` and ``g`` and their checks are kept for the next step while both are the same
        array objects (a training loop's): only ``p``'s writeable flag can change on the same array. One entry per
        parameter name, as the working buffers."""
        if not p.flags.writeable:
            return None
        hit = self._views.get(name)
        if hit is not None and hit[0] is p and hit[1] is g:
            pair = hit[2]
        else:
            pair = self._flat_pair(p, g)
            self._views[name] = (p, g, pair)
        if pair is None:
            return None
        out = list(pair)
        dtype = p.dtype
        for a in state:
            if a is None:
                out.append(None)  # type: ignore[arg-type]
            elif (a.dtype is not dtype and a.dtype != dtype) or not a.flags.c_contiguous:
                return None
            else:
                out.append(a.reshape(-1))
        return out

    @staticmethod
    def _flat_pair(p: np.ndarray, g: np.ndarray) -> list[np.ndarray] | None:
        dtype, flags = p.dtype, p.flags
        if dtype.char not in "fd" or not dtype.isnative or not flags.c_contiguous or not p.size:
            return None
        if (g.dtype is not dtype and g.dtype != dtype) or not g.flags.c_contiguous or np.may_share_memory(p, g):
            return None
        return [p.reshape(-1), g.reshape(-1)]

    def _state_finite(self, state: dict[str, np.ndarray]) -> bool:
        """Whether the new state is finite where a finite new parameter does not already imply it."""
        return True


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v ← μv + g``; ``p ← p - lr·(g + μv)`` with Nesterov, else ``p ← p - lr·v``.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, schedule: Schedule | None = None) -> None:
        super().__init__(lr, weight_decay, schedule)
        self.momentum = check_positive(momentum, "momentum", allow_zero=True)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    def _repr_args(self) -> dict[str, Any]:
        return {"lr": self.base_lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def _compute(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # a non-finite momentum buffer makes the new parameter non-finite too (lr >= 0): no separate check
        new = self._buffer(name, "new", p)
        if self.weight_decay:  # g + wd·p
            np.multiply(p, self.weight_decay, out=new)
            np.add(g, new, out=new)
            g = new
        state: dict[str, np.ndarray] = {}
        if self.momentum:
            v, old = self._spare(name, "v", p)
            if old is None:
                np.copyto(v, g)
            else:  # μv + g
                np.multiply(old, self.momentum, out=v)
                np.add(v, g, out=v)
            state["v"] = v
            if self.nesterov:  # g + μv
                tmp = self._buffer(name, "tmp", p) if g is new else new
                np.multiply(v, self.momentum, out=tmp)
                np.add(g, tmp, out=new)
                g = new
            else:
                g = v
        np.multiply(g, p.dtype.type(self.lr), out=new)  # p - lr·g
        np.subtract(p, new, out=new)
        return new, state

    def _fused(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> Fused | None:
        state: dict[str, np.ndarray] = {}
        spare, current = self._spare(name, "v", p) if self.momentum else (p, None)
        flat = self._flat(name, p, g, current)
        if flat is None:
            return None
        pf, gf, vf = flat
        if self.momentum:
            state["v"] = spare
        v_new = spare.reshape(-1)  # p itself without momentum: never read or written then
        dt = p.dtype.type
        args = (pf, gf, v_new if vf is None else vf, v_new, dt(self.lr), dt(self.momentum), dt(self.weight_decay),
                bool(self.momentum), self.nesterov, vf is None)
        return _compiled().sgd, args, state


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is L2 added to the gradient."""

    decoupled = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, schedule: Schedule | None = None) -> None:
        super().__init__(lr, weight_decay, schedule)
        b1, b2 = betas
        for name, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0.0 <= check_positive(b, name, allow_zero=True) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {b}")
        self.betas = (float(b1), float(b2))
        self.eps = check_positive(eps, "eps")

    def _repr_args(self) -> dict[str, Any]:
        return {"lr": self.base_lr, "betas": self.betas, "eps": self.eps}

    def _compute(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        b1, b2 = self.betas
        new, tmp = self._buffer(name, "new", p), self._buffer(name, "tmp", p)
        if self.weight_decay and not self.decoupled:  # L2: g + wd·p
            np.multiply(p, self.weight_decay, out=new)
            np.add(g, new, out=new)
            g = new
        m, m_old = self._spare(name, "m", p)
        v, v_old = self._spare(name, "v", p)
        if m_old is None:  # b1·m + (1 - b1)·g
            m.fill(0)
        else:
            np.multiply(m_old, b1, out=m)
        np.multiply(g, 1 - b1, out=tmp)
        np.add(m, tmp, out=m)
        if v_old is None:  # b2·v + (1 - b2)·g²
            v.fill(0)
        else:
            np.multiply(v_old, b2, out=v)
        np.multiply(g, g, out=tmp)
        np.multiply(tmp, 1 - b2, out=tmp)
        np.add(v, tmp, out=v)
        step = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        np.sqrt(v, out=tmp)  # base - step·m / (√v + eps·√(1 - b2^t))
        np.add(tmp, p.dtype.type(self.eps * math.sqrt(1 - b2**t)), out=tmp)
        np.multiply(m, p.dtype.type(step), out=new)
        np.divide(new, tmp, out=new)
        if self.weight_decay and self.decoupled:  # base = p·(1 - lr·wd)
            np.multiply(p, p.dtype.type(1.0 - self.lr * self.weight_decay), out=tmp)
            np.subtract(tmp, new, out=new)
        else:
            np.subtract(p, new, out=new)
        return new, {"m": m, "v": v}

    def _fused(self, name: str, p: np.ndarray, g: np.ndarray, t: int) -> Fused | None:
        m, m_old = self._spare(name, "m", p)
        v, v_old = self._spare(name, "v", p)
        flat = self._flat(name, p, g, m_old, v_old)
        if flat is None or (m_old is None) != (v_old is None):
            return None
        pf, gf, mf, vf = flat
        m_new, v_new = m.reshape(-1), v.reshape(-1)
        first = mf is None
        b1, b2 = self.betas
        dt = p.dtype.type
        decoupled = bool(self.decoupled and self.weight_decay)
        l2 = 0.0 if self.decoupled else self.weight_decay
        step = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        args = (pf, gf, m_new if first else mf, v_new if first else vf, m_new, v_new, dt(b1), dt(1 - b1), dt(b2),
                dt(1 - b2), dt(step), dt(self.eps * math.sqrt(1 - b2**t)), dt(l2),
                dt(1.0 - self.lr * self.weight_decay), decoupled, first)
        return _compiled().adam, args, {"m": m, "v": v}

    def _state_finite(self, state: dict[str, np.ndarray]) -> bool:
        # a finite v means a finite g·g, so a finite g and (with the old m finite) a finite m;
        # an infinite v alone would give a finite (zero) update and freeze the parameter for good
        return _all_finite(state["v"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p ← p(1 - lr·wd)`` then Adam."""

    decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, schedule: Schedule | None = None) -> None:
        super().__init__(lr, betas, eps, weight_decay, schedule)


_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get(name: str | Optimizer, **kwargs: object) -> Optimizer:
    """An optimizer by name ("sgd", "adam", "adamw") or an instance passed through."""
    if isinstance(name, Optimizer):
        return name
    try:
        return _OPTIMIZERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(_OPTIMIZERS)}") from None
