"""Custom activations and losses (``gk.custom_activation``, ``gk.custom_loss``, subclasses with the
public hooks, the registries) through every consumer: compose, gradcheck, nn layers and training,
checkpoints, the estimators and the command line."""

from __future__ import annotations

import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from array_api_compat import array_namespace

import gradkit as gk
from gradkit import nn
from gradkit.custom import DERIVED_MAX_N

ROOT = Path(__file__).resolve().parents[1]


# -- the functions: softplus-normalize (a dense softmax cousin) and log-cosh ---------------------------
def sp_forward(x):
    xp = array_namespace(x)
    s = xp.logaddexp(xp.zeros_like(x), x)
    return s / xp.sum(s, axis=-1, keepdims=True)


def sp_vjp(x, g, y):
    xp = array_namespace(x)
    s = xp.logaddexp(xp.zeros_like(x), x)
    return xp.exp(x - s) / xp.sum(s, axis=-1, keepdims=True) * (g - xp.sum(g * y, axis=-1, keepdims=True))


def sp_jacobian(x, y):
    s = np.logaddexp(0.0, x)
    return (np.eye(x.shape[-1]) - y[..., :, None]) * (np.exp(x - s) / s.sum(-1, keepdims=True))[..., None, :]


def softmax_forward(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def softmax_vjp(x, g, y):
    return y * (g - (g * y).sum(-1, keepdims=True))


def log_cosh(p, t):
    d = p - t
    return array_namespace(p).logaddexp(d, -d) - float(np.log(2.0))


def log_cosh_grad(p, t):
    return array_namespace(p).tanh(p - t)


def spnorm(**kwargs):
    return gk.custom_activation(sp_forward, sp_vjp, name="spnorm", output_range=(0.0, 1.0), **kwargs)


def logcosh(**kwargs):
    return gk.custom_loss(log_cosh, log_cosh_grad, name="logcosh", **kwargs)


pytestmark = pytest.mark.usefixtures("clean_registries")  # tests/conftest.py


def numeric_grad(f, x, eps=1e-6):
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        h = eps * max(1.0, abs(x[idx]))
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += h
        xm[idx] -= h
        out[idx] = (f(xp_) - f(xm)) / (2 * h)
    return out


# -- construction ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "exc", "fragment"), [
    ({"forward": 3}, TypeError, "forward must be callable; got int"),
    ({"vjp": None}, TypeError, "vjp must be callable; got NoneType"),
    ({"jvp": "f"}, TypeError, "jvp must be callable or None; got str"),
    ({"jacobian": 1.0}, TypeError, "jacobian must be callable or None; got float"),
    ({"name": ""}, ValueError, "name must be a non-empty identifier-like string"),
    ({"name": "1x"}, ValueError, "got '1x'"),
    ({"name": "my act"}, ValueError, "got 'my act'"),
    ({"name": 5}, TypeError, "name must be a str; got int"),
    ({"axis": "0"}, TypeError, "axis"),
    ({"axis": 1.0}, TypeError, "axis"),
    ({"elementwise": 1}, TypeError, "elementwise must be a bool; got 1"),
    ({"output_range": (1.0, 0.0)}, ValueError, "low <= high"),
    ({"output_range": (0.0, float("nan"))}, ValueError, "not NaN"),
    ({"output_range": (0.0,)}, TypeError, "output_range must be a (low, high) pair"),
    ({"output_range": ("a", 1)}, TypeError, "output_range must be a (low, high) pair"),
])
def test_custom_activation_validates_its_arguments(kwargs, exc, fragment):
    args = {"forward": sp_forward, "vjp": sp_vjp, "name": "spnorm", **kwargs}
    with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        gk.custom_activation(args.pop("forward"), args.pop("vjp"), **args)


@pytest.mark.parametrize(("kwargs", "exc", "fragment"), [
    ({"value": None}, TypeError, "value must be callable; got NoneType"),
    ({"grad": [1]}, TypeError, "grad must be callable; got list"),
    ({"name": "a-b"}, ValueError, "identifier-like"),
    ({"domain": (2.0, 1.0)}, ValueError, "low <= high"),
    ({"domain": 1.0}, TypeError, "domain must be a"),
    ({"reduction": "avg"}, ValueError, "reduction"),
])
def test_custom_loss_validates_its_arguments(kwargs, exc, fragment):
    args = {"value": log_cosh, "grad": log_cosh_grad, "name": "logcosh", **kwargs}
    with pytest.raises(exc, match=fragment):
        gk.custom_loss(args.pop("value"), args.pop("grad"), **args)


# -- the user's functions' results are checked -----------------------------------------------------------
X = np.random.default_rng(1).standard_normal((3, 4))


@pytest.mark.parametrize(("forward", "vjp", "call", "exc", "fragment"), [
    (lambda x: {"y": x}, sp_vjp, "forward", TypeError, "custom activation 'bad': forward returned dict, not an array"),
    (lambda x: x[..., :2], sp_vjp, "forward", ValueError, r"forward returned shape \(3, 2\); expected \(3, 4\)"),
    (lambda x: x.astype(np.float32), sp_vjp, "forward", TypeError,
     "forward returned dtype float32 for x of dtype float64; return x's dtype"),
    (sp_forward, lambda x, g, y: g.sum(-1), "vjp", ValueError, r"vjp returned shape \(3,\); expected \(3, 4\)"),
    (sp_forward, lambda x, g, y: g > 0, "vjp", TypeError, "vjp returned dtype bool"),
    (sp_forward, lambda x, g, y: 1.0, "vjp", TypeError, "vjp returned float, not an array"),
])
def test_results_of_the_wrong_kind_are_refused_naming_the_function(forward, vjp, call, exc, fragment):
    act = gk.custom_activation(forward, vjp, name="bad")
    with pytest.raises(exc, match=fragment):
        act(X) if call == "forward" else act.vjp(X, X)


def test_results_of_another_library_are_refused():
    torch = pytest.importorskip("torch")
    act = gk.custom_activation(lambda x: torch.from_numpy(np.asarray(x)), sp_vjp, name="bad")
    with pytest.raises(TypeError, match="forward returned a torch.Tensor for x of type numpy.ndarray"):
        act(X)


def test_jacobian_and_jvp_results_are_checked():
    act = gk.custom_activation(sp_forward, sp_vjp, name="bad", jacobian=lambda x, y: np.zeros(x.shape))
    with pytest.raises(ValueError, match=r"jacobian returned shape \(3, 4\); expected \(3, 4, 4\)"):
        act.jacobian(X)
    with pytest.raises(ValueError, match="jacobian returned shape"):
        act.jvp(X, X)  # the JVP is derived from the (wrong) Jacobian
    act = gk.custom_activation(sp_forward, sp_vjp, lambda x, v, y: v[..., 0], name="bad")
    with pytest.raises(ValueError, match=r"jvp returned shape \(3,\)"):
        act.jvp(X, X)


def test_custom_loss_results_are_checked():
    bad_value = gk.custom_loss(lambda p, t: np.sum(p - t), log_cosh_grad, name="bad")
    with pytest.raises(ValueError, match=r"custom loss 'bad': value returned shape \(\); expected \(3, 4\)"):
        bad_value(X, X)
    bad_grad = gk.custom_loss(log_cosh, lambda p, t: (p - t).astype(np.float32), name="bad")
    with pytest.raises(TypeError, match="custom loss 'bad': grad returned dtype float32"):
        bad_grad.grad(X, X)


# -- derivations -------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_derived_jvp_and_jacobian_equal_the_built_in_softmax(axis):
    rng = np.random.default_rng(2)
    x, g, v = (rng.standard_normal((3, 4, 5)) for _ in range(3))
    ref = gk.Softmax(axis=axis)
    for act in (gk.custom_activation(softmax_forward, softmax_vjp, name="my_softmax", axis=axis),
                gk.custom_activation(softmax_forward, softmax_vjp, name="my_softmax", axis=axis,
                                     jacobian=lambda x, y: gk.Softmax().jacobian(x))):
        np.testing.assert_allclose(act(x), ref(x), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(act.vjp(x, g), ref.vjp(x, g), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(act.jvp(x, v), ref.jvp(x, v), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(act.jacobian(x), ref.jacobian(x), rtol=1e-12, atol=1e-15)


def test_derived_jacobian_and_jvp_of_a_non_symmetric_jacobian():
    rng = np.random.default_rng(13)
    x, v = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 5))
    expected = sp_jacobian(x, sp_forward(x))  # J_ij = (δ_ij - y_i) σ(x_j) / S: not symmetric
    assert not np.allclose(expected, np.swapaxes(expected, -1, -2))
    np.testing.assert_allclose(spnorm().jacobian(x), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(spnorm().jvp(x, v), np.einsum("...ij,...j->...i", expected, v), rtol=1e-12, atol=1e-15)
    # along axis 1: the row index sits at axis 1, the column index last
    xt, vt = np.swapaxes(x, 1, 2), np.swapaxes(v, 1, 2)
    np.testing.assert_allclose(spnorm(axis=1).jacobian(xt), np.swapaxes(expected, 1, 2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(spnorm(axis=1).jvp(xt, vt), np.swapaxes(spnorm().jvp(x, v), 1, 2), rtol=1e-12)


def test_elementwise_derivations_equal_the_built_in_tanh():
    rng = np.random.default_rng(3)
    x, g, v = (rng.standard_normal((2, 3)) for _ in range(3))
    act = gk.custom_activation(np.tanh, lambda x, g, y: g * (1 - y * y), name="my_tanh", elementwise=True)
    ref = gk.Tanh()
    np.testing.assert_allclose(act.derivative(x), ref.derivative(x), rtol=1e-14)
    np.testing.assert_allclose(act.vjp(x, g), ref.vjp(x, g), rtol=1e-14)
    np.testing.assert_allclose(act.jvp(x, v), ref.jvp(x, v), rtol=1e-14)
    np.testing.assert_allclose(act.jacobian(x), ref.jacobian(x), rtol=1e-14)
    assert float(act(np.float64(0.5))) == pytest.approx(np.tanh(0.5))  # 0-d input, NumPy scalars back
    np.testing.assert_allclose(act(x.astype(np.float16)), ref(x.astype(np.float16)))


def test_derivations_refuse_wide_rows():
    act = spnorm()
    x = np.zeros((1, DERIVED_MAX_N + 1))
    with pytest.raises(ValueError, match=r"custom activation 'spnorm' has no jvp=: .* n = 4097 .* pass jvp="):
        act.jvp(x, x)
    with pytest.raises(ValueError, match="has no jacobian=.* pass jacobian="):
        act.jacobian(x)
    assert act.vjp(x, x).shape == x.shape  # forward and vjp have no limit


def test_custom_activation_takes_no_mask():
    with pytest.raises(TypeError, match="custom activation 'spnorm' does not take where=; subclass gradkit.AxisActivation"):
        spnorm()(X, where=X > 0)


def test_portable_functions_serve_torch_and_jax_jit():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(12)
    x, g = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    act = spnorm(axis=0)
    ref = (act(x), act.vjp(x, g), act.jvp(x, g), act.jacobian(x))
    got = (act(torch.from_numpy(x)), act.vjp(torch.from_numpy(x), torch.from_numpy(g)),
           act.jvp(torch.from_numpy(x), torch.from_numpy(g)), act.jacobian(torch.from_numpy(x)))
    for a, b in zip(got, ref, strict=True):
        assert isinstance(a, torch.Tensor)
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-6, atol=1e-7)
    jitted = jax.jit(lambda x, g: (act(x), act.vjp(x, g), act.jvp(x, g), act.jacobian(x)))
    for a, b in zip(jitted(x, g), ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6, atol=1e-7)
    head = gk.compose(act, logcosh())
    t = rng.random((4, 3)).astype(np.float32)
    value, grad = jax.jit(head.value_and_grad)(x, t)
    ref_value, ref_grad = head.value_and_grad(x, t)
    np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-5, atol=1e-7)


def test_custom_ones_through_both_framework_wrappers():
    """gradkit.torch.wrap and gradkit.jax.wrap take custom activations and heads like built-ins: torch's
    gradcheck/gradgradcheck, and JAX's jit(grad) equal to the custom VJP with a random upstream."""
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    import gradkit.jax as gkj
    import gradkit.torch as gkt

    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 4))
    act = spnorm(axis=0)
    xt = torch.tensor(x, requires_grad=True)
    assert torch.autograd.gradcheck(gkt.wrap(act), (xt,))
    assert torch.autograd.gradgradcheck(gkt.wrap(act), (xt,))
    head = gk.compose(act, logcosh())
    t = rng.random((3, 4))
    assert torch.autograd.gradcheck(lambda z: gkt.wrap(head)(z, torch.tensor(t)), (xt,))
    r = rng.standard_normal((3, 4))
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        f = gkj.wrap(act)
        g = jax.jit(jax.grad(lambda z: (f(z) * r).sum()))(jax.numpy.asarray(x))
        np.testing.assert_allclose(np.asarray(g), act.vjp(x, r), rtol=1e-12, atol=1e-14)
        hg = jax.jit(jax.grad(gkj.wrap(head)))(jax.numpy.asarray(x), jax.numpy.asarray(t))
        np.testing.assert_allclose(np.asarray(hg), head.grad(x, t), rtol=1e-12, atol=1e-14)
    finally:
        jax.config.update("jax_enable_x64", before)


# -- consumers ---------------------------------------------------------------------------------------
def test_gradcheck_passes_custom_ones_and_catches_a_wrong_vjp():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, 6))
    assert gk.gradcheck(spnorm(), z).ok
    assert gk.gradcheck(spnorm(axis=0), z).ok
    assert gk.gradcheck(logcosh(), z, target=rng.standard_normal(z.shape)).ok
    wrong = gk.custom_activation(sp_forward, lambda x, g, y: sp_vjp(x, g, y) * 1.01, name="wrong")
    assert not gk.gradcheck(wrong, z).ok


def test_compose_value_and_grad_against_central_differences():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((4, 5))
    for head, target in ((gk.compose(spnorm(), "cross_entropy"), rng.integers(0, 5, 4)),
                         (gk.compose(spnorm(), logcosh()), rng.random((4, 5))),
                         (gk.compose("softmax", logcosh(reduction="sum")), rng.random((4, 5)))):
        _, grad = head.value_and_grad(z, target)
        numeric = numeric_grad(lambda a, head=head, target=target: float(head(a, target)), z)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
        u = rng.standard_normal()  # a random upstream scalar
        np.testing.assert_allclose(head.vjp(z, target, u), u * grad, rtol=1e-12)
        assert gk.gradcheck(head, z, target=target).ok


def test_compose_refuses_pairs_outside_the_declared_range_and_domain():
    unbounded = gk.custom_activation(sp_forward, sp_vjp, name="spnorm")  # no output_range given
    with pytest.raises(ValueError, match=r"spnorm outputs values in \[-inf, inf\] but cross_entropy"):
        gk.compose(unbounded, "cross_entropy")
    unit = gk.custom_loss(log_cosh, log_cosh_grad, name="unit", domain=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"tanh outputs values in \[-1.0, 1.0\] but unit is defined on \[0.0, 1.0\]"):
        gk.compose("tanh", unit)
    gk.compose("sigmoid", unit)
    with pytest.raises(ValueError, match=r"pred must be values in \[0.0, 1.0\] for unit; got values in \[-1.0, 2.0\]"):
        unit(np.array([-1.0, 2.0]), np.array([0.5, 0.5]))


def test_custom_loss_reductions_vjp_and_jvp_match_the_built_in_mse():
    rng = np.random.default_rng(6)
    p, t, v = (rng.standard_normal((3, 4)) for _ in range(3))
    for reduction in ("mean", "sum", "none"):
        mine = gk.custom_loss(lambda p, t: (p - t) ** 2, lambda p, t: 2 * (p - t), name="my_mse", reduction=reduction)
        ref = gk.MSELoss(reduction=reduction)
        for a, b in zip(mine.value_and_grad(p, t), ref.value_and_grad(p, t), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-14)
        g = rng.standard_normal((3, 4)) if reduction == "none" else rng.standard_normal()
        np.testing.assert_allclose(mine.vjp(p, t, g), ref.vjp(p, t, g), rtol=1e-13)
        np.testing.assert_allclose(mine.jvp(p, t, v), ref.jvp(p, t, v), rtol=1e-13)
    with pytest.raises(ValueError, match="target contains NaN"):
        mine(p, np.full_like(t, np.nan))
    with pytest.raises(ValueError, match="target"):
        mine(p, t[:, :2])


def test_nn_layer_and_fit_with_a_custom_activation_and_loss():
    rng = np.random.default_rng(7)
    layer = nn.ActivationLayer(spnorm())
    x, g = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    np.testing.assert_allclose(layer.forward(x), sp_forward(x))
    np.testing.assert_allclose(layer.backward(g), sp_vjp(x, g, sp_forward(x)))
    X_, y = rng.standard_normal((96, 4)), rng.integers(0, 3, 96)
    model = nn.Sequential([nn.Dense(4, 8, rng=0), nn.ActivationLayer(spnorm()), nn.Dense(8, 3, rng=1)])
    history = nn.fit(model, X_, y, loss=gk.compose(spnorm(), logcosh()), one_hot=3, epochs=15, rng=0)
    assert history["loss"][-1] < history["loss"][0]


def test_checkpoints_store_the_name_and_need_the_registration(tmp_path):
    act = spnorm()
    model = nn.Sequential([nn.Dense(3, 4, rng=0), nn.ActivationLayer(act), nn.Dense(4, 2, rng=1)])
    path = tmp_path / "model.npz"
    with pytest.raises(ValueError, match=r"cannot be checkpointed.*unknown activation 'spnorm'.*gk.activations.register"):
        nn.save(model, path)
    assert not path.exists()
    gk.activations.register("spnorm", act)
    nn.save(model, path)
    gk.activations.unregister("spnorm")
    with pytest.raises(ValueError, match="unknown activation 'spnorm'.*must be registered in this process first"):
        nn.load(path)
    gk.activations.register("spnorm", act)
    x = np.random.default_rng(8).standard_normal((5, 3)).astype(np.float32)
    loaded = nn.load(path)
    assert loaded.layers[1].activation == act
    assert np.array_equal(loaded.forward(x), model.forward(x))


def test_loss_hooks_are_public_and_the_private_names_gone():
    for name in gk.losses.names():
        cls = type(gk.losses.get(name))
        for old in ("_items", "_terms", "_check", "_omega", "_grad_factor", "_item_axis"):
            assert not hasattr(cls, old), f"{cls.__name__}.{old}"
        assert callable(cls.compute_items) and isinstance(cls.grad_factor, float) and callable(cls.item_axis)
    assert gk.MSELoss.grad_factor == 4.0 and callable(gk.losses.ElementwiseLoss.compute_terms)
    assert callable(gk.losses.ClassLoss.check_values) and callable(gk.losses.SparsemaxLoss.compute_omega)
    with pytest.raises(NotImplementedError, match="Bare must implement compute_terms"):
        type("Bare", (gk.losses.ElementwiseLoss,), {"name": "bare"})()(X, X)


# -- registries --------------------------------------------------------------------------------------
def test_register_takes_an_instance_a_class_or_a_factory():
    act = gk.activations.register("spnorm", spnorm())
    assert gk.activations.get("spnorm") is act
    assert gk.activations.get("spnorm", axis=0) == spnorm(axis=0)  # rebuilt with the argument changed
    with pytest.raises(TypeError, match="spnorm got unexpected argument.*temperature"):
        gk.activations.get("spnorm", temperature=2.0)
    gk.losses.register("logcosh", logcosh)  # a factory taking keyword arguments
    assert gk.losses.get("logcosh", reduction="sum").reduction == "sum"

    @gk.activations.register
    class Cube(gk.ElementwiseActivation):
        name = "cube"

        def compute_value(self, xp, x):
            return x**3

        def compute_derivative(self, xp, x, y):
            return 3 * x**2

    assert isinstance(gk.activations.get("cube"), Cube)

    @gk.losses.register("my_l1")
    def my_l1(reduction="mean"):
        return gk.custom_loss(lambda p, t: abs(p - t), lambda p, t: np.sign(p - t), name="my_l1", reduction=reduction)

    assert float(gk.losses.get("my_l1")(np.array([1.0, -3.0]), np.zeros(2))) == 2.0
    assert {"spnorm", "cube"} <= set(gk.activations.names()) and "my_l1" in gk.losses.names()


def test_register_refuses_bad_and_clashing_names():
    act = spnorm()
    with pytest.raises(ValueError, match="'softmax' is a built-in activation and cannot be replaced"):
        gk.activations.register("softmax", gk.custom_activation(sp_forward, sp_vjp, name="softmax"), replace=True)
    with pytest.raises(ValueError, match="registered under its own name.*got name 'other' for .* named 'spnorm'"):
        gk.activations.register("other", act)
    with pytest.raises(ValueError, match="registered under its own name.*got name 'alias' for class ReLU named 'relu'"):
        gk.activations.register("alias", gk.ReLU)
    with pytest.raises(TypeError, match="factory must be a subclass or an instance of Activation, or a callable returning one; got int"):
        gk.activations.register("spnorm", 42)
    with pytest.raises(TypeError, match="activation classes must subclass Activation; got MSELoss"):
        gk.activations.register("mse", gk.MSELoss)
    with pytest.raises(ValueError, match="identifier-like"):
        gk.losses.register("my loss", logcosh)
    gk.activations.register("spnorm", act)
    gk.activations.register("spnorm", act)  # the same object again: fine (a module imported twice)
    with pytest.raises(ValueError, match="named 'spnorm' is registered already.*replace=True"):
        gk.activations.register("spnorm", spnorm())
    other = spnorm(axis=0)
    gk.activations.register("spnorm", other, replace=True)
    assert gk.activations.get("spnorm") is other
    with pytest.raises(ValueError, match="'relu' is a built-in activation and cannot be removed"):
        gk.activations.unregister("relu")
    with pytest.raises(ValueError, match="no loss named 'nope' is registered"):
        gk.losses.unregister("nope")


def test_factories_must_build_the_right_thing():
    gk.activations.register("not_an_activation", lambda **kw: 3)
    with pytest.raises(TypeError, match="registered as activation 'not_an_activation' returned int, not an instance"):
        gk.activations.get("not_an_activation")
    gk.activations.register("misnamed", lambda **kw: spnorm())
    with pytest.raises(ValueError, match="registered as activation 'misnamed' built one named 'spnorm'"):
        gk.activations.get("misnamed")


# -- estimators --------------------------------------------------------------------------------------
def test_estimators_take_registered_names():
    sk = pytest.importorskip("gradkit.sklearn")
    rng = np.random.default_rng(9)
    X_ = rng.standard_normal((80, 4))
    y = (X_[:, 0] > 0).astype(int) + (X_[:, 1] > 0)
    with pytest.raises(ValueError, match="output_activation"):
        sk.MLPClassifier(output_activation="spnorm").fit(X_, y)
    gk.activations.register("spnorm", spnorm())
    gk.losses.register("logcosh", logcosh())
    for loss in ("cross_entropy", "logcosh"):
        clf = sk.MLPClassifier(hidden_layer_sizes=(8,), output_activation="spnorm", loss=loss, solver="lbfgs",
                               max_iter=300, random_state=0).fit(X_, y)
        proba = clf.predict_proba(X_)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        assert clf.score(X_, y) > 0.8
    reg = sk.MLPRegressor(hidden_layer_sizes=(8,), loss="logcosh", solver="lbfgs", max_iter=200,
                          random_state=0).fit(X_, X_[:, 0] - X_[:, 1])
    assert reg.score(X_, X_[:, 0] - X_[:, 1]) > 0.9


# -- the README's examples, run as written -----------------------------------------------------------------
@pytest.mark.parametrize(("script", "printed"), [("custom_activation.py", ": ok"), ("subclass_activation.py", ": ok"),
                                                 ("subclass_loss.py", "True")])
def test_examples_run(script, printed, capsys):
    runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    assert printed in capsys.readouterr().out


def test_subclass_example_matches_custom_activation_and_masks_exactly():
    ns = runpy.run_path(str(ROOT / "examples" / "subclass_activation.py"))
    rng = np.random.default_rng(10)
    act, custom = ns["SoftplusNorm"](), spnorm(jacobian=sp_jacobian)
    x, g, v = (rng.standard_normal((3, 5)) for _ in range(3))
    for name in ("forward", "vjp", "jvp", "jacobian"):
        args = {"forward": (x,), "vjp": (x, g), "jvp": (x, v), "jacobian": (x,)}[name]
        np.testing.assert_allclose(getattr(act, name)(*args), getattr(custom, name)(*args), rtol=1e-12, atol=1e-15)
    # masked: the VJP against central differences of <g, y> over the live entries, 0 on masked ones
    where = np.array([[True, False, True, True, False]] * 3)
    got = act.vjp(x, g, where=where)
    expected = numeric_grad(lambda a: float(np.sum(g * act(a, where=where))), x)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert np.all(got[~where] == 0)


# -- the command line: a plugin reaches a fresh process -----------------------------------------------------
PLUGIN = textwrap.dedent('''
    import numpy as np
    import gradkit as gk
    from array_api_compat import array_namespace

    def forward(x):
        xp = array_namespace(x)
        s = xp.logaddexp(xp.zeros_like(x), x)
        return s / xp.sum(s, axis=-1, keepdims=True)

    def vjp(x, g, y):
        xp = array_namespace(x)
        s = xp.logaddexp(xp.zeros_like(x), x)
        return xp.exp(x - s) / xp.sum(s, axis=-1, keepdims=True) * (g - xp.sum(g * y, axis=-1, keepdims=True))

    gk.activations.register("spnorm", gk.custom_activation(forward, vjp, name="spnorm", output_range=(0.0, 1.0)))
    gk.losses.register("quartic", gk.custom_loss(lambda p, t: (p - t) ** 4, lambda p, t: 4 * (p - t) ** 3,
                                                 name="quartic"))
''')


def _cli(args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "gradkit.apps.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, check=False)


def test_cli_train_by_name_with_a_plugin(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    rng = np.random.default_rng(11)
    X_ = rng.standard_normal((60, 4))
    np.savez(tmp_path / "tiny.npz", X=X_, y=(X_[:, 0] > 0).astype(int) + (X_[:, 1] > 0))
    args = ["train", "--data", "tiny.npz", "--epochs", "2", "--hidden", "4", "--activation", "spnorm",
            "--output", "spnorm", "--loss", "quartic", "--out", "out", "--quiet"]
    proc = _cli(["--plugin", "my_plugin.py", *args], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "model.npz").is_file()
    # the saved model holds the custom hidden activation by name: loading needs the plugin imported
    load = ("import sys, gradkit as gk; sys.path.insert(0, '.'); import my_plugin; "
            "print(gk.nn.load('out/model.npz').layers[1].activation)")
    out = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         check=False)
    assert "custom_activation(name='spnorm', axis=-1)" in out.stdout, out.stderr
    # without the plugin the name is a usage error that says how to load one
    proc = _cli(["train", "--output", "spnorm"], tmp_path)
    assert proc.returncode == 2
    assert "unknown output activation 'spnorm'" in proc.stderr and "--plugin MODULE" in proc.stderr


def test_cli_plugin_by_module_name_from_the_current_folder(tmp_path):
    """The console script does not put the current folder on sys.path (``python -m`` does): ``--plugin
    my_plugin`` beside ``my_plugin.py`` must still find it. ``-I`` runs the CLI as the script runs."""
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    script = "import sys; from gradkit.apps.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-I", "-c", script, "--plugin", "my_plugin", "list"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "spnorm" in proc.stdout and "quartic" in proc.stdout
    proc = subprocess.run([sys.executable, "-I", "-c", script, "--plugin", "not_here", "list"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 2 and "--plugin not_here: ModuleNotFoundError" in proc.stderr


def test_cli_plugin_after_the_command_and_plugin_errors(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    proc = _cli(["check", "spnorm", "quartic", "--plugin", "my_plugin.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "spnorm" in proc.stdout and "all passed" in proc.stdout
    proc = _cli(["--plugin=no_such_module_xyz", "list"], tmp_path)
    assert proc.returncode == 2
    assert "--plugin no_such_module_xyz: ModuleNotFoundError" in proc.stderr
    proc = _cli(["--plugin", "broken.py", "list"], tmp_path)
    assert proc.returncode == 2 and "--plugin broken.py: RuntimeError: boom" in proc.stderr
    proc = _cli(["--plugin", "missing.py", "list"], tmp_path)
    assert proc.returncode == 2 and "no such file" in proc.stderr
