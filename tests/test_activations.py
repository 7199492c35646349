"""Generic tests over the table of activations × shapes × axes × dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import gradkit as gk

from .cases import ACTIVATIONS, AXES, SHAPES, TOL

try:  # the oracle of the tests marked needs_torch (a test extra); the others run without it
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed (the reference of this test)")

CASES = pytest.mark.parametrize("case", ACTIVATIONS, ids=lambda c: c.id)
GEOMETRY = pytest.mark.parametrize("shape,axis", [(s, a) for s in SHAPES for a in AXES], ids=str)

ISSUE_NAMES = {
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu",
    "softplus", "silu", "mish", "hard_sigmoid", "softmax", "log_softmax",
    # beyond softmax
    "taylor_softmax", "log_taylor_softmax", "spherical_softmax", "log_spherical_softmax",
    "sparsemax", "entmax15", "gumbel_softmax",
}


def test_registry_lists_every_activation_of_the_issue():
    assert ISSUE_NAMES <= set(gk.activations.names())
    # every deterministic activation is in the table (Gumbel-softmax samples: tests/test_alternatives.py)
    assert ISSUE_NAMES - {"gumbel_softmax"} == {c.name for c in ACTIVATIONS}


@CASES
@GEOMETRY
def test_gradcheck_float64(case, shape, axis):
    """VJP and JVP against central differences with random upstream vectors, the
    adjoint identity, and the Jacobian against the JVP."""
    x = case.sample(np.random.default_rng(len(shape)), shape)
    report = gk.gradcheck(case.make(axis), x, rng=3)
    assert report.ok, str(report)
    assert {r.check for r in report.results} == {"vjp", "jvp", "adjoint", "jacobian"}


@CASES
@GEOMETRY
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_adjoint_identity(case, shape, axis, dtype):
    """<J v, u> == <v, Jᵀ u> for random u, v, in each dtype."""
    rng = np.random.default_rng(7)
    act = case.make(axis)
    x = case.sample(rng, shape).astype(dtype)
    u, v = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    lhs = np.sum(act.jvp(x, v).astype(np.float64) * u)
    rhs = np.sum(v * act.vjp(x, u).astype(np.float64))
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(lhs, rhs, rtol=rtol * 10, atol=atol * 10)


@CASES
@GEOMETRY
def test_jacobian_matches_jvp_on_basis_vectors(case, shape, axis):
    """jacobian(x)[..., i (at axis), ..., j] == jvp(x, e_j)[..., i, ...]: shape x.shape + (n,)."""
    rng = np.random.default_rng(11)
    act = case.make(axis)
    x = case.sample(rng, shape)
    jac = act.jacobian(x)
    n = shape[axis]
    assert jac.shape == shape + (n,)
    for j in range(n):
        e = np.zeros(shape)
        np.moveaxis(e, axis, -1)[..., j] = 1.0
        np.testing.assert_allclose(jac[..., j], act.jvp(x, e), rtol=1e-12, atol=1e-14)


@needs_torch
@CASES
@GEOMETRY
def test_matches_torch_autograd(case, shape, axis):
    """Forward and VJP (random upstream) against torch autograd in float64."""
    rng = np.random.default_rng(5)
    act = case.make(axis)
    x = case.sample(rng, shape)
    g = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = case.torch_ref(xt, axis)
    (gt,) = torch.autograd.grad(yt, xt, grad_outputs=torch.tensor(g))
    np.testing.assert_allclose(act(x), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(act.vjp(x, g), gt.numpy(), rtol=case.torch_rtol, atol=1e-13)


@CASES
def test_reusing_forward_output_gives_the_same_derivatives(case):
    rng = np.random.default_rng(2)
    act = case.make()
    x = case.sample(rng, (4, 6))
    g = rng.standard_normal(x.shape)
    y = act(x)
    np.testing.assert_array_equal(act.vjp(x, g, y=y), act.vjp(x, g))
    np.testing.assert_array_equal(act.jvp(x, g, y=y), act.jvp(x, g))
    np.testing.assert_array_equal(act.jacobian(x, y=y), act.jacobian(x))


@CASES
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: d.__name__)
def test_dtype_is_preserved_and_low_precision_computed_in_float32(case, dtype):
    rng = np.random.default_rng(4)
    act = case.make()
    x = case.sample(rng, (3, 5)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    for out in (act(x), act.vjp(x, g), act.jvp(x, g)):
        assert out.dtype == dtype
    assert act.jacobian(x).dtype == dtype
    if dtype == np.float16:  # computed in float32, rounded once at the end
        x32, g32 = x.astype(np.float32), g.astype(np.float32)
        np.testing.assert_array_equal(act(x), act(x32).astype(np.float16))
        np.testing.assert_array_equal(act.vjp(x, g), act.vjp(x32, g32).astype(np.float16))
    else:
        rtol, atol = TOL[np.float32]
        np.testing.assert_allclose(act(x), act(x.astype(np.float64)), rtol=rtol, atol=atol)


@CASES
def test_integer_input_is_cast_to_float64(case):
    act = case.make()
    x = np.array([[-2, 1, 2], [1, 3, 0]])
    out = act(x)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, act(x.astype(np.float64)))


@pytest.mark.parametrize("case", [c for c in ACTIVATIONS if not c.along_axis], ids=lambda c: c.id)
def test_elementwise_derivative_is_the_jacobian_diagonal(case):
    rng = np.random.default_rng(9)
    act = case.make()
    x = case.sample(rng, (3, 4))
    diag = np.diagonal(act.jacobian(x), axis1=-2, axis2=-1)
    np.testing.assert_allclose(act.derivative(x), diag, rtol=1e-15)
    off = act.jacobian(x) * (1 - np.eye(4))
    assert np.all(off == 0)


@needs_torch
@pytest.mark.parametrize(
    "name,kwargs,x,expected",
    [
        ("relu", {}, 0.0, 0.0),
        ("leaky_relu", {"negative_slope": 0.2}, 0.0, 0.2),
        ("elu", {"alpha": 1.5}, 0.0, 1.5),
        ("hard_sigmoid", {}, 3.0, 0.0),
        ("hard_sigmoid", {}, -3.0, 0.0),
    ],
)
def test_derivative_at_kinks_is_defined_like_pytorch(name, kwargs, x, expected):
    act = gk.activations.get(name, **kwargs)
    assert act.derivative(np.array([x]))[0] == expected
    torch_fn = {
        "relu": torch.relu,
        "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, kwargs.get("negative_slope", 0.01)),
        "elu": lambda t: torch.nn.functional.elu(t, kwargs.get("alpha", 1.0)),
        "hard_sigmoid": torch.nn.functional.hardsigmoid,
    }[name]
    xt = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    (gt,) = torch.autograd.grad(torch_fn(xt), xt, grad_outputs=torch.tensor([1.0], dtype=torch.float64))
    assert gt.item() == expected


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("temperature", [1.0, 0.3, 4.0])
def test_softmax_family_matches_scipy(axis, temperature):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 6)) * 3
    np.testing.assert_allclose(
        gk.Softmax(axis=axis, temperature=temperature)(x), scipy.special.softmax(x / temperature, axis=axis), rtol=1e-13
    )
    np.testing.assert_allclose(  # atol: the dominant class's log-probability is a cancellation near 0
        gk.LogSoftmax(axis=axis, temperature=temperature)(x),
        scipy.special.log_softmax(x / temperature, axis=axis),
        rtol=1e-13,
        atol=1e-15,
    )


def test_elementwise_functions_match_scipy():
    x = np.linspace(-30, 30, 601)
    np.testing.assert_allclose(gk.Sigmoid()(x), scipy.special.expit(x), rtol=1e-15)
    np.testing.assert_allclose(gk.Softplus()(x), np.logaddexp(0.0, x), rtol=1e-15)
    np.testing.assert_allclose(gk.GELU()(x), x * scipy.special.ndtr(x), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(gk.Sigmoid().derivative(x), scipy.special.expit(x) * scipy.special.expit(-x), rtol=1e-13)


@pytest.mark.parametrize("x", [-1e4, -800.0, 800.0, 1e4, -np.inf, np.inf])
def test_elementwise_functions_stay_finite_at_extreme_inputs(x):
    for name in ["sigmoid", "tanh", "softplus", "silu", "mish", "elu", "selu", "gelu", "hard_sigmoid"]:
        act = gk.activations.get(name)
        y, d = act(np.array([x])), act.derivative(np.array([x]))
        assert not np.isnan(y).any() and not np.isnan(d).any(), name
        if np.isfinite(x):
            assert np.isfinite(d).all(), name


def test_nan_propagates_through_elementwise_activations():
    for name in ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "hard_sigmoid"]:
        assert np.isnan(gk.activations.get(name)(np.array([np.nan])))[0], name
