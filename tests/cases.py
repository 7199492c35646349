"""One table of functions drives the generic tests (in the spirit of PyTorch's OpInfo).

Each activation case names the registry entry, its constructor arguments, an
independent PyTorch reference, and its kinks (where finite differences are
meaningless, so samples keep away from them). Adding a function = adding a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import gradkit as gk

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - torch is a test extra
    torch = None
    F = None
try:  # the reference sparsemax / entmax-1.5 (Peters, Niculae & Martins), a test extra
    import entmax
except ImportError:  # pragma: no cover
    entmax = None


@dataclass(frozen=True)
class ActCase:
    name: str
    kwargs: dict = field(default_factory=dict)
    #: reference forward in torch: f(x_tensor, dim) -> tensor
    torch_ref: Callable[[Any, int], Any] | None = None
    kinks: tuple[float, ...] = ()
    along_axis: bool = False
    #: rtol of the VJP against torch (torch's hardsigmoid backward uses a float32 1/6)
    torch_rtol: float = 1e-10

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}({extra})" if extra else self.name

    def make(self, axis: int = -1) -> gk.Activation:
        return gk.activations.get(self.name, axis=axis, **self.kwargs)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...], scale: float = 2.0) -> np.ndarray:
        """Random points at least 1e-3 away from every kink."""
        x = rng.uniform(-scale, scale, shape)
        for k in self.kinks:
            close = np.abs(x - k) < 1e-3
            x = np.where(close, k + np.sign(x - k + 0.5) * 0.1, x)
        return x


def _t(fn: Callable[..., Any]) -> Callable[[Any, int], Any]:
    return lambda x, dim: fn(x)


ACTIVATIONS: list[ActCase] = [
    ActCase("identity", torch_ref=_t(lambda x: x * 1.0)),
    ActCase("sigmoid", torch_ref=_t(lambda x: torch.sigmoid(x))),
    ActCase("tanh", torch_ref=_t(lambda x: torch.tanh(x))),
    ActCase("relu", torch_ref=_t(lambda x: F.relu(x)), kinks=(0.0,)),
    ActCase("leaky_relu", {"negative_slope": 0.1}, _t(lambda x: F.leaky_relu(x, 0.1)), kinks=(0.0,)),
    ActCase("elu", {"alpha": 1.3}, _t(lambda x: F.elu(x, 1.3)), kinks=(0.0,)),
    ActCase("selu", torch_ref=_t(lambda x: F.selu(x)), kinks=(0.0,)),
    ActCase("gelu", torch_ref=_t(lambda x: F.gelu(x))),
    ActCase("gelu", {"approximate": "tanh"}, _t(lambda x: F.gelu(x, approximate="tanh"))),
    ActCase("softplus", {"beta": 2.0}, _t(lambda x: F.softplus(x, beta=2.0))),
    ActCase("silu", torch_ref=_t(lambda x: F.silu(x))),
    ActCase("mish", torch_ref=_t(lambda x: F.mish(x))),
    ActCase("hard_sigmoid", torch_ref=_t(lambda x: F.hardsigmoid(x)), kinks=(-3.0, 3.0), torch_rtol=5e-8),
    ActCase("softmax", torch_ref=lambda x, d: torch.softmax(x, dim=d), along_axis=True),
    ActCase("softmax", {"temperature": 0.7}, lambda x, d: torch.softmax(x / 0.7, dim=d), along_axis=True),
    ActCase("log_softmax", torch_ref=lambda x, d: torch.log_softmax(x, dim=d), along_axis=True),
    ActCase("log_softmax", {"temperature": 2.5}, lambda x, d: torch.log_softmax(x / 2.5, dim=d), along_axis=True),
    # the spherical family: φ(z)/Σφ(z) written out directly (no max subtraction: torch forms φ)
    ActCase("taylor_softmax", torch_ref=lambda x, d: _phi_norm(_taylor(x, 2), d), along_axis=True),
    ActCase("taylor_softmax", {"order": 4}, lambda x, d: _phi_norm(_taylor(x, 4), d), along_axis=True),
    ActCase("log_taylor_softmax", torch_ref=lambda x, d: _log_phi_norm(_taylor(x, 2), d), along_axis=True),
    ActCase("log_taylor_softmax", {"order": 6}, lambda x, d: _log_phi_norm(_taylor(x, 6), d), along_axis=True),
    ActCase("spherical_softmax", torch_ref=lambda x, d: _phi_norm(x * x + 0.01, d), along_axis=True),
    ActCase("log_spherical_softmax", {"eps": 0.5}, lambda x, d: _log_phi_norm(x * x + 0.5, d), along_axis=True),
    # sparse maps: the entmax package (sort-based, its own backward)
    ActCase("sparsemax", torch_ref=lambda x, d: entmax.sparsemax(x, dim=d), along_axis=True),
    ActCase("sparsemax", {"method": "bisect"}, lambda x, d: entmax.sparsemax(x, dim=d), along_axis=True),
    ActCase("entmax15", torch_ref=lambda x, d: entmax.entmax15(x, dim=d), along_axis=True),
    ActCase("entmax15", {"method": "bisect"}, lambda x, d: entmax.entmax15(x, dim=d), along_axis=True),
]


def _taylor(x: Any, order: int) -> Any:
    return sum(x**i / float(_fact(i)) for i in range(order + 1))


def _fact(i: int) -> int:
    import math

    return math.factorial(i)


def _phi_norm(phi: Any, dim: int) -> Any:
    return phi / phi.sum(dim=dim, keepdim=True)


def _log_phi_norm(phi: Any, dim: int) -> Any:
    return torch.log(phi) - torch.log(phi.sum(dim=dim, keepdim=True))

SHAPES = [(5,), (3, 5), (2, 3, 4)]
AXES = [0, -1]

#: per-dtype tolerances (rtol, atol) for comparing computations, not finite differences
TOL = {np.float64: (1e-12, 1e-13), np.float32: (2e-5, 1e-6), np.float16: (2e-3, 1e-3)}


# -- the numba kernels against the portable reference (tests/test_kernels*.py) -----------------------------
#: kernel == portable, per dtype
KERNEL_TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-7}, np.float64: {"rtol": 1e-12, "atol": 1e-15}}


def kernel_and_portable(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """``fn()`` with the numba kernels, then on the portable path (``kernels.disabled()``)."""
    from gradkit import kernels

    fast = fn()
    with kernels.disabled():
        ref = fn()
    return fast, ref


def logits_with_specials(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, special: bool) -> np.ndarray:
    """Scores ~ N(0, 9); with ``special``, a seventh of the entries ±inf or ±1e4."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if special:
        flat = x.reshape(-1)
        idx = rng.choice(flat.size, size=max(1, flat.size // 7), replace=False)
        flat[idx] = rng.choice([np.inf, -np.inf, 1e4, -1e4], size=idx.size)
    return x

