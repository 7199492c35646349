"""Masked log maps (log_softmax, log-Taylor, log-spherical under ``where=``): the derivative is right.

Masked outputs are -inf by definition, with derivative 0: central differences there are
``-inf - (-inf) = NaN``, which is what a plain ``torch.autograd.gradcheck`` of the whole output reports
as a Jacobian mismatch. The convention, not the derivative: with the masked outputs excluded both
gradchecks pass, and on the live entries the VJP equals torch autograd of the same masked formula.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk

torch = pytest.importorskip("torch")
from gradkit.torch import wrap

MAPS = {
    "log_softmax": (gk.LogSoftmax(), lambda x: x),
    "log_taylor_softmax": (gk.LogTaylorSoftmax(), lambda x: torch.log(1 + x + x * x / 2)),
    "log_spherical_softmax": (gk.LogSphericalSoftmax(eps=0.5), lambda x: torch.log(x * x + 0.5)),
}


def _inputs(seed: int, shape=(3, 5)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    mask = rng.random(shape) < 0.6
    mask[:, rng.integers(0, shape[1])] = True  # each row keeps a live entry
    return x, mask


def _masked_reference(log_phi, x, mask):
    """log y = a - logsumexp(a) over the live entries, a = log φ(x); -inf on the masked ones."""
    a = torch.where(mask, log_phi(x), torch.tensor(-torch.inf, dtype=x.dtype))
    return a - torch.logsumexp(a, dim=-1, keepdim=True)


@pytest.mark.parametrize("name", list(MAPS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_log_map_gradchecks_with_the_masked_outputs_excluded(name, seed):
    act, log_phi = MAPS[name]
    x, mask = _inputs(seed)
    xt = torch.tensor(x, requires_grad=True)
    mt = torch.tensor(mask)
    f = wrap(act)
    y = f(xt, where=mt)
    assert torch.all(y[~mt] == -torch.inf)  # the convention: -inf, derivative 0
    assert torch.autograd.gradcheck(lambda x: f(x, where=mt)[mt], (xt,))
    # the masked outputs' derivative is 0, whatever the upstream holds there
    g = torch.tensor(np.random.default_rng(seed + 10).standard_normal(x.shape))
    (gx,) = torch.autograd.grad(y, xt, torch.where(mt, g, 0.0))
    (gx_all,) = torch.autograd.grad(f(xt, where=mt), xt, g)
    torch.testing.assert_close(gx, gx_all, rtol=0, atol=0)
    # live entries: torch autograd of the same masked formula
    ref = _masked_reference(log_phi, xt, mt)
    torch.testing.assert_close(y[mt], ref[mt], rtol=1e-12, atol=1e-12)
    (gref,) = torch.autograd.grad(ref[mt], xt, g[mt])
    (got,) = torch.autograd.grad(f(xt, where=mt)[mt], xt, g[mt])
    torch.testing.assert_close(got, gref, rtol=1e-10, atol=1e-12)
    assert torch.all(got[~mt] == 0)


@pytest.mark.parametrize("name", list(MAPS))
def test_gradkit_gradcheck_of_a_masked_log_map_on_its_live_outputs(name):
    act, _ = MAPS[name]
    x, mask = _inputs(5)
    report = gk.gradcheck(
        lambda x: np.where(mask, act(x, where=mask), 0.0), x,
        vjp=lambda x, g: act.vjp(x, np.where(mask, g, 0.0), where=mask),
        jvp=lambda x, v: np.where(mask, act.jvp(x, v, where=mask), 0.0),
    )
    assert report.ok, report
