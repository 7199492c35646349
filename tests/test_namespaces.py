"""The portable path: PyTorch tensors and array-api-strict arrays in, the same library out,
equal to the NumPy reference. (Smoke coverage; the full matrix is the Array API milestone.)"""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk

torch = pytest.importorskip("torch")
xps = pytest.importorskip("array_api_strict")

NAMESPACES = {"torch": torch.asarray, "array_api_strict": xps.asarray}


def _activations(ns):
    """Pairs of equal activations: one for the namespace's arrays, one for NumPy's."""
    for name in gk.activations.names():
        if name == "gelu" and ns == "array_api_strict":  # the standard has no erf/ndtr
            yield gk.GELU(approximate="tanh"), gk.GELU(approximate="tanh")
        elif gk.activations.get(name).stochastic:  # the same seed draws the same noise
            yield gk.activations.get(name, seed=0), gk.activations.get(name, seed=0)
        else:
            yield gk.activations.get(name), gk.activations.get(name)


@pytest.mark.parametrize("ns", NAMESPACES)
def test_activations_keep_the_namespace_and_match_numpy(ns):
    conv = NAMESPACES[ns]
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    X, G = conv(x), conv(g)
    for act, ref_act in _activations(ns):
        for got, ref in [(act(X), ref_act(x)), (act.vjp(X, G), ref_act.vjp(x, g)), (act.jvp(X, G), ref_act.jvp(x, g)),
                         (act.jacobian(X), ref_act.jacobian(x))]:
            assert type(got) is type(X), act
            np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-12, atol=1e-15, err_msg=repr(act))


@pytest.mark.parametrize("ns", NAMESPACES)
def test_losses_and_compose_keep_the_namespace_and_match_numpy(ns):
    conv = NAMESPACES[ns]
    rng = np.random.default_rng(1)
    z = rng.standard_normal((3, 4))
    p, labels, soft = gk.Softmax()(z), np.array([0, 3, 1]), rng.uniform(0, 1, (3, 4))
    for name in gk.losses.names():
        loss = gk.losses.get(name)
        t = labels if name in ("cross_entropy", "nll", "kl_div") else soft
        L, dp = loss.value_and_grad(conv(p), conv(t))
        L0, dp0 = loss.value_and_grad(p, t)
        assert type(dp) is type(conv(p)), name
        np.testing.assert_allclose(np.asarray(dp), dp0, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(float(L), L0, rtol=1e-12, err_msg=name)
    for head in (gk.compose(gk.Softmax(), gk.CrossEntropyLoss()), gk.compose(gk.Softmax(), gk.MSELoss())):
        t = labels if head.fused else soft
        L, dz = head.value_and_grad(conv(z), conv(t), where=conv(z > -1.0))
        L0, dz0 = head.value_and_grad(z, t, where=z > -1.0)
        np.testing.assert_allclose(np.asarray(dz), dz0, rtol=1e-12)


def test_torch_vjp_equals_autograd_on_the_same_tensors():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 5, dtype=torch.float64)
    (ref,) = torch.autograd.grad(torch.softmax(x, dim=-1), x, grad_outputs=g)
    got = gk.Softmax().vjp(x.detach(), g)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)
