"""α-entmax by bisection (EntmaxBisect), its derivative in α, its Fenchel–Young loss, and its numba kernels.

Oracles: the ``entmax`` package's ``entmax_bisect`` / ``EntmaxBisectLoss`` (torch autograd, α with
requires_grad), central differences in α, gk.Sparsemax at α = 2 and gk.Entmax15 at α = 1.5.
"""

from __future__ import annotations

from contextlib import nullcontext as _nothing

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels

from .cases import KERNEL_TOL
from .cases import kernel_and_portable as _both
from .cases import logits_with_specials as _inputs

torch = pytest.importorskip("torch")
entmax = pytest.importorskip("entmax")

ALPHAS = [1.25, 1.5, 2.0, 3.0]
#: gradkit vs the package, per dtype (both bisect the same bracket; the rounding of the sums differs)
PKG_TOL = {np.float64: {"rtol": 1e-9, "atol": 1e-12}, np.float32: {"rtol": 2e-4, "atol": 2e-6}}


def _per_row_alpha(rng: np.random.Generator, rows: int) -> np.ndarray:
    return rng.choice(np.array(ALPHAS), size=(rows, 1))


def _package(x: np.ndarray, alpha, g: np.ndarray, dim: int = -1, n_iter: int = 50):
    """The package's y, dL/dx and dL/dα for L = <g, y>, in x's dtype."""
    xt = torch.tensor(x, requires_grad=True)
    at = torch.tensor(alpha, dtype=xt.dtype, requires_grad=True)
    y = entmax.entmax_bisect(xt, at, dim=dim, n_iter=n_iter)
    (y * torch.tensor(g)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy(), at.grad.numpy()


# -- against the entmax package -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("alpha", [*ALPHAS, "rows"], ids=str)
def test_values_vjp_and_alpha_gradient_equal_the_entmax_package(alpha, dtype):
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((6, 11)) * 2).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)  # a random upstream vector
    a = _per_row_alpha(rng, 6) if alpha == "rows" else alpha
    act = gk.EntmaxBisect(alpha=a)
    y_ref, dx_ref, da_ref = _package(x, a, g)
    for path in (_nothing, kernels.disabled):  # the numba kernels, then the portable code
        with path():
            y = act(x)
            assert y.dtype == dtype and np.count_nonzero(y == 0) > 0  # exact zeros
            np.testing.assert_allclose(y, y_ref, **PKG_TOL[dtype])
            np.testing.assert_allclose(act.vjp(x, g), dx_ref, **PKG_TOL[dtype])
            da = act.vjp_alpha(x, g)
            assert np.shape(da) == np.shape(a)
            np.testing.assert_allclose(da, da_ref, rtol=1e-8 if dtype == np.float64 else 2e-3,
                                       atol=1e-10 if dtype == np.float64 else 1e-4)


def test_other_axis_three_dims_and_few_steps_equal_the_package():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 7, 4)) * 3
    g = rng.standard_normal(x.shape)
    a = rng.uniform(1.1, 3.5, (3, 1, 4))  # per-row α for axis 1
    act = gk.EntmaxBisect(alpha=a, axis=1)
    y_ref, dx_ref, da_ref = _package(x, a, g, dim=1)
    np.testing.assert_allclose(act(x), y_ref, **PKG_TOL[np.float64])
    np.testing.assert_allclose(act.vjp(x, g), dx_ref, **PKG_TOL[np.float64])
    np.testing.assert_allclose(act.vjp_alpha(x, g), da_ref, rtol=1e-8, atol=1e-10)
    # few steps: the package's bracket and midpoints, then gradkit's Newton step (the package stops at the
    # midpoint): closer to the exact answer than the package's, and kernel == portable
    exact = act(x)
    for n_iter in (1, 3, 8):
        y_ref = _package(x, a, g, dim=1, n_iter=n_iter)[0]
        few = gk.EntmaxBisect(a, axis=1, n_iter=n_iter)
        fast, port = _both(lambda few=few: few(x))
        np.testing.assert_allclose(fast, port, rtol=1e-12, atol=1e-14)
        assert np.abs(port - exact).max() <= np.abs(y_ref - exact).max()
        np.testing.assert_allclose(port.sum(axis=1), 1.0, rtol=1e-14)


def test_alpha_broadcast_over_rows_sums_its_gradient():
    rng = np.random.default_rng(12)
    x, g = rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 3, 5))
    a = np.array([[[1.7]], [[2.4]], [[1.2]], [[3.0]]])  # one α per leading index, shared by the 3 rows of each
    y_ref, _, da_ref = _package(x, a, g)
    act = gk.EntmaxBisect(alpha=a)
    np.testing.assert_allclose(act(x), y_ref, **PKG_TOL[np.float64])
    da = act.vjp_alpha(x, g)
    assert da.shape == (4, 1, 1)
    np.testing.assert_allclose(da, da_ref, rtol=1e-8, atol=1e-10)
    scalar = gk.EntmaxBisect(alpha=1.7).vjp_alpha(x, g)  # a scalar α: the sum over all rows, 0-d
    assert np.ndim(scalar) == 0
    np.testing.assert_allclose(scalar, _package(x, 1.7, g)[2], rtol=1e-8)


@pytest.mark.parametrize("alpha", [1.1, 1.5, 2.0, 2.7, "rows"], ids=str)
def test_alpha_gradient_equals_central_differences(alpha):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((5, 8)) * 2
    g = rng.standard_normal(x.shape)
    a = rng.uniform(1.1, 3.0, (5, 1)) if alpha == "rows" else np.float64(alpha)
    da = gk.EntmaxBisect(alpha=a).vjp_alpha(x, g)
    h = 1e-6
    fd = np.zeros(np.shape(a))
    for idx in np.ndindex(*np.shape(a)):
        up, down = np.array(a, dtype=float), np.array(a, dtype=float)
        up[idx] += h
        down[idx] -= h
        fd[idx] = np.sum(g * (gk.EntmaxBisect(up)(x) - gk.EntmaxBisect(down)(x))) / (2 * h)
    np.testing.assert_allclose(da, fd, rtol=1e-6, atol=1e-8)


# -- special cases: sparsemax and entmax-1.5 ------------------------------------------------------------
@pytest.mark.parametrize(("alpha", "cls"), [(2.0, gk.Sparsemax), (1.5, gk.Entmax15)], ids=["sparsemax", "entmax15"])
def test_alpha_two_is_sparsemax_and_one_and_a_half_entmax15(alpha, cls):
    rng = np.random.default_rng(14)
    x = _inputs(rng, (6, 9), np.float64, special=False)
    x[1, 2] = x[1, 5] = np.inf
    x[2] = -np.inf
    g, v = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    where = rng.random(x.shape) < 0.7
    where[3] = False
    for w in (None, where):
        for axis in (0, -1):
            mine, ref = gk.EntmaxBisect(alpha, axis=axis), cls(axis=axis)
            np.testing.assert_allclose(mine(x, where=w), ref(x, where=w), rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(mine.vjp(x, g, where=w), ref.vjp(x, g, where=w), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(mine.jvp(x, v, where=w), ref.jvp(x, v, where=w), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(mine.jacobian(x, where=w), ref.jacobian(x, where=w), rtol=1e-10, atol=1e-12)


# -- the map's own checks ---------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.3, 2.5, "rows"], ids=str)
def test_gradcheck_and_jacobian(alpha):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((3, 4, 5))
    a = rng.uniform(1.2, 3.0, (3, 1, 5)) if alpha == "rows" else alpha
    act = gk.EntmaxBisect(alpha=a, axis=1)  # per-row α along a middle axis: the Jacobian moves α's axis too
    gk.testing.assert_gradcheck(act, x)
    jac = act.jacobian(x)  # J[..., i, ..., j] with i at axis 1, j last
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(np.einsum("bitj,bit->btj", jac, g), np.moveaxis(act.vjp(x, g), 1, -1), rtol=1e-10,
                               atol=1e-12)


def test_edge_rows_masks_and_sum():
    x = np.array([[np.nan, 1.0, 2.0, 0.0],  # NaN row
                  [-np.inf] * 4,  # no live entry
                  [np.inf, 0.0, np.inf, -np.inf],  # +inf entries share the mass
                  [1e300, -1e300, 0.0, 1e300],  # a row spanning (almost) the float range
                  [3.0, 3.0, 3.0, 3.0]])
    where = np.ones(x.shape, dtype=bool)
    where[4] = False  # fully masked
    g = np.random.default_rng(16).standard_normal(x.shape)
    for path in (_nothing, kernels.disabled):
        with path():
            for a in (1.2, 3.0):
                act = gk.EntmaxBisect(a)
                y = act(x, where=where)
                assert np.isnan(y[0]).all() and np.all(y[1] == 0) and np.all(y[4] == 0)
                np.testing.assert_allclose(y[2], [0.5, 0.0, 0.5, 0.0], rtol=1e-14)
                np.testing.assert_allclose(y[3], [0.5, 0.0, 0.0, 0.5], rtol=1e-14)
                da = act.vjp_alpha(x[1:], g[1:], where=where[1:])
                assert np.isfinite(da) and da == 0.0  # uniform rows and empty rows do not move with α
                dx = act.vjp(x, g, where=where)
                assert np.isnan(dx[0]).all() and np.all(dx[[1, 4]] == 0) and np.isfinite(dx[1:]).all()
    # without renormalization 50 steps still sum to 1 in float64
    y = gk.EntmaxBisect(1.7, ensure_sum_one=False)(np.random.default_rng(17).standard_normal((20, 30)) * 3)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=0, atol=1e-13)


def test_validation_errors_name_alpha():
    x = np.zeros((2, 3))
    for bad, exc, frag in [(1.0, ValueError, "alpha must be finite and > 1; got 1.0"),
                           (0.5, ValueError, "> 1"), (float("nan"), ValueError, "nan"),
                           (float("inf"), ValueError, "inf"), (True, TypeError, "bool"),
                           ("1.5", TypeError, "str"), (None, TypeError, "NoneType"),
                           (np.array([[1.5], [1.0]]), ValueError, "got 1.0 at index (1, 0)"),
                           (np.array([[1.5], [np.nan]]), ValueError, "everywhere"),
                           (np.array([1 + 1j]), TypeError, "complex"), (np.array([]), ValueError, "empty"),
                           (torch.tensor([1.5], requires_grad=True), TypeError, "Tensor")]:
        with pytest.raises(exc, match="alpha") as info:
            gk.EntmaxBisect(alpha=bad)
        assert frag in str(info.value), (bad, str(info.value))
    for shape, frag in [((2, 3), "size 1 along axis=-1"), ((3, 1), "broadcast against x of shape (2, 3)"),
                        ((1, 2, 1), "at most as many dimensions as x (2)")]:
        act = gk.EntmaxBisect(alpha=np.full(shape, 1.5))
        for call in (lambda act=act: act(x), lambda act=act: act.vjp_alpha(x, x),
                     lambda act=act: act.jacobian(x), lambda act=act: act.vjp(x, x)):
            with pytest.raises(ValueError, match="alpha") as info:
                call()
            assert frag in str(info.value), str(info.value)
    with pytest.raises(ValueError, match="n_iter must be >= 1; got 0"):
        gk.EntmaxBisect(n_iter=0)
    with pytest.raises(TypeError, match="ensure_sum_one must be a bool; got 'yes'"):
        gk.EntmaxBisect(ensure_sum_one="yes")
    with pytest.raises(ValueError, match="g must have the shape of x"):
        gk.EntmaxBisect().vjp_alpha(x, np.zeros(3))


def test_alpha_is_copied_and_the_object_is_a_value():
    a = np.array([[1.5], [2.0]])
    act = gk.EntmaxBisect(alpha=a)
    a[0, 0] = 5.0  # the caller's array changing later does not reach the activation
    assert act.alpha[0, 0] == 1.5 and not act.alpha.flags.writeable
    assert act == gk.EntmaxBisect(alpha=[[1.5], [2.0]]) and hash(act) == hash(gk.EntmaxBisect(alpha=[[1.5], [2.0]]))
    assert repr(act) == "EntmaxBisect(alpha=((1.5,), (2.0,)), axis=-1, n_iter=50, ensure_sum_one=True)"
    rebuilt = gk.activations.get("entmax_bisect", alpha=2.0, axis=0)
    assert rebuilt == gk.EntmaxBisect(2.0, axis=0) and gk.activations.get("entmax_bisect") == gk.EntmaxBisect()
    layer = gk.nn.ActivationLayer(act)  # a checkpointed layer keeps per-row α (as nested lists after JSON)
    params = layer.config()["params"]
    assert gk.EntmaxBisect(**{**params, "alpha": [list(r) for r in params["alpha"]]}) == act


# -- the Fenchel–Young loss -------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [*ALPHAS, 1.8], ids=str)
def test_loss_equals_the_entmax_package(alpha):
    rng = np.random.default_rng(18)
    z = rng.standard_normal((7, 6)) * 2
    labels = rng.integers(0, 6, 7)
    zt = torch.tensor(z, requires_grad=True)
    ref = entmax.EntmaxBisectLoss(alpha=alpha, reduction="none")(zt, torch.tensor(labels))
    r = rng.standard_normal(7)  # a random upstream vector over the items
    (ref * torch.tensor(r)).sum().backward()
    loss = gk.losses.EntmaxBisectLoss(alpha=alpha, reduction="none")
    items = loss(z, labels)
    np.testing.assert_allclose(items, ref.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(loss.vjp(z, labels, r), zt.grad.numpy(), rtol=1e-9, atol=1e-12)
    head = gk.compose(gk.EntmaxBisect(alpha), gk.losses.EntmaxBisectLoss(alpha, reduction="none"))
    assert head.paired and not head.fused
    np.testing.assert_allclose(head.vjp(z, labels, r), zt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_loss_is_nonnegative_zero_at_its_prediction_and_matches_the_special_cases():
    rng = np.random.default_rng(19)
    z = rng.standard_normal((9, 5)) * 3
    a = rng.uniform(1.1, 3.0, (9, 1))
    loss = gk.losses.EntmaxBisectLoss(alpha=a, reduction="none")
    soft = rng.dirichlet(np.ones(5), size=9)
    assert np.all(loss(z, soft) >= 0)
    y = gk.EntmaxBisect(alpha=a)(z)
    labels = rng.integers(0, 5, 9)
    items, hit = loss(z, labels), np.all(np.abs(y - np.eye(5)[labels]) < 1e-12, axis=-1)
    assert hit.any() and not hit.all()  # a sparse map can be one-hot: then the loss is 0 there, else > 0
    assert np.all(np.abs(items[hit]) < 1e-12) and np.all(items[~hit] > 1e-6)
    L, dz = loss.value_and_grad(z, y)
    np.testing.assert_allclose(L, 0.0, atol=1e-12)
    np.testing.assert_allclose(dz, 0.0, atol=1e-12)
    for alpha, ref in ((2.0, gk.SparsemaxLoss()), (1.5, gk.Entmax15Loss())):
        mine = gk.losses.EntmaxBisectLoss(alpha=alpha)
        np.testing.assert_allclose(mine.value_and_grad(z, labels)[0], ref.value_and_grad(z, labels)[0], rtol=1e-12)
        np.testing.assert_allclose(mine.grad(z, labels), ref.grad(z, labels), rtol=1e-10, atol=1e-13)
    gk.testing.assert_gradcheck(loss, z, target=labels)


def test_compose_pairs_only_the_same_alpha():
    rng = np.random.default_rng(20)
    z, labels = rng.standard_normal((4, 6)), rng.integers(0, 6, 4)
    a = np.array([[1.3], [1.9], [2.2], [3.0]])
    head = gk.compose(gk.EntmaxBisect(a), gk.losses.EntmaxBisectLoss(a))
    assert head.paired
    L, dz = head.value_and_grad(z, labels)
    L2, dz2 = gk.losses.EntmaxBisectLoss(a).value_and_grad(z, labels)
    np.testing.assert_allclose([L, *dz.ravel()], [L2, *dz2.ravel()], rtol=1e-12)
    np.testing.assert_allclose(head.forward(z), gk.EntmaxBisect(a)(z))
    for act, lo in [(gk.EntmaxBisect(1.5), gk.losses.EntmaxBisectLoss(2.0)),
                    (gk.EntmaxBisect(a), gk.losses.EntmaxBisectLoss(1.5)),
                    (gk.EntmaxBisect(a), gk.losses.EntmaxBisectLoss(a[::-1].copy()))]:
        with pytest.raises(ValueError, match="alpha of entmax_bisect and of entmax_bisect_loss must be equal"):
            gk.compose(act, lo)
    named = gk.compose("entmax_bisect", "entmax_bisect_loss")  # both defaults: α = 1.5
    assert named.paired
    np.testing.assert_allclose(named.grad(z, labels), gk.compose(gk.Entmax15(), gk.Entmax15Loss()).grad(z, labels),
                               rtol=1e-10, atol=1e-13)


def test_loss_validation_and_repr():
    with pytest.raises(ValueError, match="alpha must be finite and > 1"):
        gk.losses.EntmaxBisectLoss(alpha=0.9)
    loss = gk.losses.get("entmax_bisect_loss", alpha=2.5, reduction="sum")
    assert repr(loss) == ("EntmaxBisectLoss(alpha=2.5, axis=-1, ignore_index=-100, label_smoothing=0.0, "
                          "reduction='sum', n_iter=50)")
    with pytest.raises(ValueError, match="alpha must have size 1 along axis=-1"):
        gk.losses.EntmaxBisectLoss(alpha=np.full((2, 3), 1.5))(np.zeros((2, 3)), np.array([0, 1]))


# -- the numba kernels == the portable path ---------------------------------------------------------------
needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")


def _check(fast, ref, dtype, derivative=False, act=None):
    """Kernel == portable. Both bisect the same bracket, but their sums of the mass round in different
    orders, so τ agrees to the rounding of the mass, not bit for bit. An entry at distance d above the
    threshold is y = d^{1/(α-1)}: for α > 2 (exponent < 1) that is ill-conditioned near d = 0 (in float32,
    d = 1e-7 carries an error of about 1e-7 itself), so the forward is compared where it is well
    conditioned, in d = y^(α-1), and y itself where α <= 2; the derivatives s = y^(2-α) inherit it."""
    assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    tol = dict(KERNEL_TOL[dtype])
    a = None
    if act is not None:  # α per entry
        axis = act.axis % fast.ndim
        a = np.broadcast_to(np.reshape(act.alpha, act.alpha_shape(fast.shape, axis)), fast.shape)
    if derivative and dtype == np.float32:
        # s⊙g - s<s,g>/Σs cancels: float32 sums in different orders agree to the row's scale, not elementwise
        tol["atol"] = 2e-6 * float(np.max(np.abs(ref[np.isfinite(ref)]), initial=1.0))
    if a is not None and derivative and np.any(a > 2):
        tol["rtol"] = 1e-9 if dtype == np.float64 else 2e-3  # s = y^(2-α) -> inf at the threshold
    if a is not None and not derivative:
        live = ~np.isnan(ref)
        d_fast, d_ref = fast[live] ** (a[live] - 1), ref[live] ** (a[live] - 1)
        np.testing.assert_allclose(d_fast, d_ref, rtol=tol["rtol"], atol=8 * np.finfo(dtype).eps)
        if dtype == np.float32:
            tol["atol"] = 1e-6
        np.testing.assert_allclose(fast[a <= 2], ref[a <= 2], **tol)
        return
    np.testing.assert_allclose(fast, ref, **tol)


def _alpha_for(kind, rng, shape, axis):
    if kind != "rows":
        return kind
    ashape = list(shape)
    ashape[axis] = 1
    return rng.uniform(1.1, 3.5, ashape)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape,axis", [((7,), 0), ((5, 9), -1), ((5, 9), 0), ((3, 4, 6), 1), ((3, 4, 6), -1),
                                        ((3, 4, 6), 0), ((64, 1), -1), ((2, 300), -1)], ids=str)
@pytest.mark.parametrize("alpha", [1.25, 1.5, 2.0, 3.0, "rows"], ids=str)
def test_kernels_equal_the_portable_path(alpha, dtype, shape, axis):
    rng = np.random.default_rng(21)
    act = gk.EntmaxBisect(_alpha_for(alpha, rng, shape, axis), axis=axis)
    g = rng.standard_normal(shape).astype(dtype)
    for special, masked in ((False, False), (True, True), (True, False)):
        x = _inputs(rng, shape, dtype, special)
        where = rng.random(shape) < 0.7 if masked else None
        _check(*_both(lambda x=x, w=where: act(x, where=w)), dtype, act=act)
        _check(*_both(lambda x=x, w=where: act.vjp(x, g, where=w)), dtype, derivative=True, act=act)
        _check(*_both(lambda x=x, w=where: act.jvp(x, -g, where=w)), dtype, derivative=True, act=act)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_kernel_wide_rows_threads_few_steps_and_no_renormalization(dtype):
    # 300 x 257 elements run on the threaded variant; scores close together put every entry in reach
    rng = np.random.default_rng(22)
    for spread in (0.01, 0.3, 5.0):
        x = (rng.standard_normal((300, 257)) * spread).astype(dtype)
        g = rng.standard_normal(x.shape).astype(dtype)
        for act in (gk.EntmaxBisect(1.2), gk.EntmaxBisect(rng.uniform(1.05, 4.0, (300, 1))),
                    gk.EntmaxBisect(2.5, n_iter=4), gk.EntmaxBisect(1.7, ensure_sum_one=False)):
            fast, ref = _both(lambda x=x, act=act: act(x))
            _check(fast, ref, dtype, act=act)
            # the VJP from the same y (for α near 4 an entry just above the threshold has s = y^(2-α) ~ 1e10,
            # and float32 forwards that differ by a rounding give rows of different derivatives: see _check)
            _check(*_both(lambda x=x, g=g, act=act, y=ref: act.vjp(x, g, y=y)), dtype, derivative=True, act=act)


@needs_numba
def test_kernel_strided_input_and_edge_rows():
    rng = np.random.default_rng(23)
    x = rng.standard_normal((10, 16))[::2, ::3]
    g = rng.standard_normal((10, 16))[1::2, ::3]  # strided views
    assert not x.flags.c_contiguous and not g.flags.c_contiguous
    act, act0 = gk.EntmaxBisect(rng.uniform(1.1, 3, (5, 1))), gk.EntmaxBisect(2.2, axis=0)
    for fn in (lambda: act(x), lambda: act.vjp(x, g), lambda: act.jvp(x, g), lambda: act0(x),
               lambda: act0.vjp(x, g), lambda: act0(x.T[:, :5].T)):
        _check(*_both(fn), np.float64)
    for dtype in (np.float32, np.float64):
        big = np.finfo(dtype).max
        e = np.array([[np.nan, 1.0, 2.0, 0.0], [-np.inf] * 4, [np.inf, 0.0, np.inf, -np.inf],
                      [np.inf, np.nan, 1.0, 0.0], [big, -big, 0.0, big], [1.0, 1.0, 1.0, 1.0],
                      [2.0, 2.0, -1.0, 0.0], [1e30, 1e30 - 1e15, -1e30, 7.0]], dtype=dtype)
        where = np.ones(e.shape, dtype=bool)
        where[0, 0] = False
        where[5] = False
        ge = rng.standard_normal(e.shape).astype(dtype)
        ge[2, 3] = np.inf  # off the support: contributes nothing
        for a in (1.5, 2.7, 1.01):
            act = gk.EntmaxBisect(a)
            for w in (None, where):
                with np.errstate(over="ignore"):  # the portable path's big - -big
                    _check(*_both(lambda w=w, act=act, e=e: act(e, where=w)), dtype, act=act)
                    _check(*_both(lambda w=w, act=act, e=e, ge=ge: act.vjp(e, ge, where=w)), dtype, derivative=True,
                           act=act)


@needs_numba
def test_the_kernel_path_is_taken(monkeypatch):
    from gradkit.kernels import entmax_bisect as fast

    calls: list[str] = []
    for name in ("forward", "vjp"):
        original = getattr(fast, name)
        monkeypatch.setattr(fast, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))
    x, g = np.ones((2, 3)), np.arange(6.0).reshape(2, 3)
    act = gk.EntmaxBisect(np.array([[1.5], [2.5]]))
    for fn, expected in [(lambda: act(x), ["forward"]), (lambda: act.vjp(x, g), ["forward", "vjp"]),
                         (lambda: act.jvp(x, g, y=act(x)), ["forward", "vjp"]),
                         (lambda: act(x.astype(np.float16)), ["forward"])]:
        calls.clear()
        fn()
        assert calls == expected
        with kernels.disabled():
            calls.clear()
            fn()
            assert calls == []


# -- the framework wrappers (α a constant there: its gradient is vjp_alpha) --------------------------------
def test_torch_wrap_gradcheck():
    gkt = pytest.importorskip("gradkit.torch")
    rng = np.random.default_rng(24)
    for act in (gk.EntmaxBisect(1.3), gk.EntmaxBisect(rng.uniform(1.2, 3.0, (3, 1)))):
        module = gkt.wrap(act)
        x = torch.tensor(rng.standard_normal((3, 6)), requires_grad=True)
        assert torch.autograd.gradcheck(module, (x,))


def test_jax_wrap_jit_grad_equals_vjp():
    jax = pytest.importorskip("jax")
    from gradkit.jax import wrap

    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        rng = np.random.default_rng(25)
        x, r = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
        act = gk.EntmaxBisect(rng.uniform(1.2, 3.0, (3, 1)), n_iter=20)
        f = wrap(act)
        grad = jax.jit(jax.grad(lambda x: (f(x) * r).sum()))(x)
        np.testing.assert_allclose(np.asarray(grad), act.vjp(x, r), rtol=1e-10, atol=1e-12)
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_autodiff_through_the_portable_forward_is_exact(dtype):
    # torch autograd recording the portable code itself (as a Fenchel–Young loss's second derivative does):
    # the final Newton step carries the implicit derivative of τ, so it equals the VJP
    rng = np.random.default_rng(26)
    x = rng.standard_normal((6, 9)) * 2
    g = rng.standard_normal(x.shape)
    for a in (1.25, 2.0, 3.0, rng.uniform(1.1, 3.5, (6, 1))):
        act = gk.EntmaxBisect(a)
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        (gx,) = torch.autograd.grad(act(xt), xt, torch.tensor(g, dtype=dtype))
        tol = {"rtol": 1e-9, "atol": 1e-11} if dtype == torch.float64 else {"rtol": 1e-3, "atol": 1e-5}
        np.testing.assert_allclose(gx.numpy(), act.vjp(x, g), **tol)
