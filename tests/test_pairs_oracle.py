"""Every composable activation × loss pair against PyTorch autograd (float64).

The torch side is built independently: the activation from the table in
``cases.py`` and the loss from ``torch.nn.functional`` (or its defining formula
where torch has no such function), differentiated by autograd w.r.t. the logits.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import gradkit as gk
from gradkit.check import random_target

from .cases import ACTIVATIONS, entmax

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_LOSSES = {  # reduction="mean", class axis -1, soft targets for class losses
    "mse": lambda p, t: F.mse_loss(p, t),
    "mae": lambda p, t: F.l1_loss(p, t),
    "huber": lambda p, t: F.huber_loss(p, t, delta=1.0),
    "cross_entropy": lambda p, t: (-(t * torch.log(p)).sum(-1)).mean(),
    "nll": lambda p, t: (-(t * p).sum(-1)).mean(),
    "kl_div": lambda p, t: F.kl_div(torch.log(p), t, reduction="batchmean"),
    "bce": lambda p, t: F.binary_cross_entropy(p, t),
    "bce_with_logits": lambda p, t: F.binary_cross_entropy_with_logits(p, t),
    # Fenchel–Young on scores: <y - t, z> - Ω(y) + Ω(t), y from the entmax package
    "sparsemax_loss": lambda z, t: _fenchel_young(z, t, entmax.sparsemax(z, dim=-1), lambda p: 0.5 * (p * p).sum(-1)),
    "entmax15_loss": lambda z, t: _fenchel_young(
        z, t, entmax.entmax15(z, dim=-1), lambda p: (4.0 / 3.0) * (p.clamp_min(0) ** 1.5).sum(-1)),
    "entmax_bisect_loss": lambda z, t: _fenchel_young(  # α = 1.5, Ω = (Σ p^α - 1)/(α(α - 1))
        z, t, entmax.entmax_bisect(z, 1.5, dim=-1), lambda p: ((p.clamp_min(0) ** 1.5).sum(-1) - 1.0) / 0.75),
}


def _fenchel_young(z, t, y, omega):
    t = t / t.sum(-1, keepdim=True)  # gradkit normalizes targets onto the simplex
    return (((y - t) * z).sum(-1) - omega(y) + omega(t)).mean()

#: logits range per activation so that torch's unclamped logs stay finite
#: (relu and hard_sigmoid reach exactly 0, where gradkit clamps and torch gives inf)
LOGIT_RANGE = {"relu": (0.1, 2.5), "hard_sigmoid": (-2.9, 2.9)}


def _pairs():
    for case in ACTIVATIONS:
        for loss_name in gk.losses.names():
            try:
                gk.compose(case.make(), gk.losses.get(loss_name))
            except ValueError:
                continue  # not composable: the range lies outside the loss's domain
            if case.name in ("sparsemax", "entmax15") and loss_name in ("cross_entropy", "kl_div"):
                continue  # exact zeros: torch's log gives inf where gradkit clamps (test_losses covers the clamp)
            yield pytest.param(case, loss_name, id=f"{case.id}-{loss_name}")


@pytest.mark.parametrize("case,loss_name", list(_pairs()))
def test_pair_matches_torch_autograd(case, loss_name):
    rng = np.random.default_rng(zlib.crc32(f"{case.id}-{loss_name}".encode()))
    lo, hi = LOGIT_RANGE.get(case.name, (-2.5, 2.5))
    z = rng.uniform(lo, hi, (4, 5))
    for k in case.kinks:
        z = np.where(np.abs(z - k) < 1e-3, k + 0.1, z)
    loss = gk.losses.get(loss_name)
    target = random_target(loss, z.shape, rng)
    head = gk.compose(case.make(), loss)
    value, grad = head.value_and_grad(z, target)

    zt = torch.tensor(z, requires_grad=True)
    # a Fenchel–Young loss with its own map takes the scores (the map is the prediction)
    pred = zt if head.paired else case.torch_ref(zt, -1)
    lt = TORCH_LOSSES[loss_name](pred, torch.tensor(target))
    (gt,) = torch.autograd.grad(lt, zt)
    np.testing.assert_allclose(value, lt.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, gt.numpy(), rtol=max(1e-10, case.torch_rtol), atol=1e-13)
