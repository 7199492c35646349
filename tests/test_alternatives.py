"""Beyond softmax: reference values, sparsity, masks, stability, the entmax package, Gumbel
sampling and the Fenchel–Young losses. (Generic gradchecks, adjoint tests and torch
oracles for these functions come from their rows in ``cases.py``.)"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

import gradkit as gk

torch = pytest.importorskip("torch")
entmax = pytest.importorskip("entmax")

NORMALIZERS = [
    gk.TaylorSoftmax(), gk.TaylorSoftmax(order=4), gk.SphericalSoftmax(), gk.Sparsemax(),
    gk.Sparsemax(method="bisect"), gk.Entmax15(), gk.Entmax15(method="bisect"),
]
LOG_NORMALIZERS = [gk.LogTaylorSoftmax(), gk.LogSphericalSoftmax()]
SPARSE = [gk.Sparsemax(), gk.Sparsemax(method="bisect"), gk.Entmax15(), gk.Entmax15(method="bisect")]


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


# -- reference values (computed independently) ---------------------------------------------
@pytest.mark.parametrize("method", ["sort", "bisect"])
def test_reference_values(method):
    z = np.array([-2.0, 0.0, 0.5])
    np.testing.assert_array_equal(gk.Sparsemax(method=method)(z), [0.0, 0.25, 0.75])
    np.testing.assert_allclose(gk.Entmax15(method=method)(z), [0.0, 0.32600736, 0.67399264], atol=5e-9)
    # φ(-1, 0, 1) = (0.5, 1, 2.5) for Taylor order 2
    np.testing.assert_allclose(gk.TaylorSoftmax()(np.array([-1.0, 0.0, 1.0])), [0.125, 0.25, 0.625], rtol=1e-15)


def test_sparse_jacobians_follow_the_closed_forms():
    rng = _rng("closed forms")
    z, g = rng.standard_normal(7), rng.standard_normal(7)
    y = gk.Sparsemax()(z)
    s = (y > 0).astype(float)
    np.testing.assert_allclose(gk.Sparsemax().vjp(z, g), s * (g - (s * g).sum() / s.sum()), rtol=1e-13)
    y = gk.Entmax15()(z)
    s = np.sqrt(y)
    expected = np.diag(s) - np.outer(s, s) / s.sum()
    np.testing.assert_allclose(gk.Entmax15().jacobian(z), expected, rtol=1e-12, atol=1e-15)


def test_phi_normalizer_jacobian_and_log_taylor_nll_gradient_follow_math_sheet():
    rng = _rng("phi")
    z = rng.standard_normal(6)
    phi, dphi = 1 + z + z**2 / 2, 1 + z
    S = phi.sum()
    y, r = phi / S, dphi / S
    np.testing.assert_allclose(gk.TaylorSoftmax().jacobian(z), np.diag(r) - np.outer(y, r), rtol=1e-12, atol=1e-15)
    # NLL of log-Taylor for class c: dL/dz_j = φ'(z_j)/S - δ_jc φ'(z_c)/φ(z_c)
    c = 2
    head = gk.compose(gk.LogTaylorSoftmax(), gk.NLLLoss(reduction="sum"))
    expected = r.copy()
    expected[c] -= dphi[c] / phi[c]
    np.testing.assert_allclose(head.grad(z[None], np.array([c]))[0], expected, rtol=1e-12)


# -- distributions: sums, exact zeros, masks ------------------------------------------------
@pytest.mark.parametrize("act", NORMALIZERS, ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_are_distributions(act, dtype):
    rng = _rng(repr(act))
    z = (rng.standard_normal((20, 9)) * 3).astype(dtype)
    y = act(z)
    assert y.dtype == dtype and np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("act", SPARSE, ids=repr)
def test_sparsity_is_exact(act):
    z = _rng("sparse").standard_normal((50, 12)) * 3
    y = act(z)
    off = y < 1e-12
    assert off.any() and np.all(y[off] == 0.0)  # zeros are 0.0, not 1e-17
    g = _rng("g").standard_normal(z.shape)
    assert np.all(act.vjp(z, g)[off] == 0.0)  # no gradient flows off the support


@pytest.mark.parametrize("act", NORMALIZERS + LOG_NORMALIZERS, ids=repr)
def test_masks_rows_and_leaks(act):
    z = _rng("mask").standard_normal((4, 6))
    where = np.full(z.shape, True)
    where[0, :2] = False
    where[1, :] = False  # a fully masked row
    z[0, 0], z[0, 1] = 1e300, np.nan  # huge and NaN scores under the mask must not leak
    g = _rng("g").standard_normal(z.shape)
    y, dz = act(z, where=where), act.vjp(z, g, where=where)
    log = act.output_range[1] <= 0
    assert np.all(y[~where] == (-np.inf if log else 0.0))
    assert np.all(dz[~where] == 0.0) and np.all(np.isfinite(dz))
    p = np.exp(y) if log else y
    np.testing.assert_allclose(p[[0, 2, 3]].sum(-1), 1.0, rtol=1e-12)
    # the masked row 0 equals the function on its live entries alone
    np.testing.assert_allclose(y[0, 2:], act(z[0, 2:]), rtol=1e-12)
    np.testing.assert_allclose(dz[0, 2:], act.vjp(z[0, 2:], g[0, 2:]), rtol=1e-10, atol=1e-14)
    assert np.all(act.jacobian(z, where=where)[1] == 0)


@pytest.mark.parametrize("act", [gk.TaylorSoftmax(), gk.TaylorSoftmax(order=6), gk.SphericalSoftmax(),
                                 gk.LogTaylorSoftmax(), gk.LogSphericalSoftmax()], ids=repr)
def test_spherical_family_is_stable_at_huge_scores_without_max_subtraction(act):
    z = np.array([1e200, -3e200, 0.0, 5.0])
    y = act(z)
    assert np.all(np.isfinite(y) | (y == -np.inf))
    p = np.exp(y) if act.output_range[1] <= 0 else y
    np.testing.assert_allclose(p.sum(), 1.0)
    assert np.argmax(p) == 1  # φ grows like |z|^k on both sides
    assert np.all(np.isfinite(act.vjp(z, np.array([0.3, -1.0, 2.0, 0.5]))))


def test_spherical_family_is_not_shift_invariant_and_predicts_argmax_y():
    z = np.array([-5.0, 0.0, 1.0])
    assert not np.allclose(gk.TaylorSoftmax()(z), gk.TaylorSoftmax()(z + 1.0))
    assert np.argmax(gk.TaylorSoftmax()(z)) == 0  # φ(-5) = 8.5 > φ(1) = 2.5
    assert np.argmax(gk.SphericalSoftmax()(z)) == 0  # largest |z|
    assert not gk.TaylorSoftmax.preserves_order and gk.Sparsemax.preserves_order


def test_taylor_order_must_be_even():
    for bad in (1, 3, 0):
        with pytest.raises(ValueError, match="order must be an even integer"):
            gk.TaylorSoftmax(order=bad)


@pytest.mark.parametrize("cls", [gk.Sparsemax, gk.Entmax15])
def test_sort_and_bisect_agree_on_large_rows(cls):
    z = _rng("large").standard_normal((5, 3000)) * 2
    np.testing.assert_allclose(cls(method="bisect")(z), cls()(z), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("cls", [gk.Sparsemax, gk.Entmax15])
def test_edge_rows(cls):
    x = np.array([[np.nan, 1.0, 2.0], [-np.inf] * 3, [np.inf, 0.0, np.inf], [1.0, 1.0, 1.0], [7.0, -1e300, 1e300]])
    y = cls()(x)
    assert np.all(np.isnan(y[0]))
    np.testing.assert_array_equal(y[1], 0.0)
    np.testing.assert_allclose(y[2], [0.5, 0.0, 0.5], rtol=1e-15)
    assert y[2, 1] == 0.0
    np.testing.assert_allclose(y[3], 1 / 3)
    np.testing.assert_array_equal(y[4], [0.0, 0.0, 1.0])


# -- the entmax package as an oracle, on bigger and float32 inputs --------------------------
@pytest.mark.parametrize("name,ref", [("sparsemax", "sparsemax"), ("entmax15", "entmax15")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, -1])
def test_against_the_entmax_package(name, ref, dtype, axis):
    rng = _rng(f"{name}{axis}")
    z = (rng.standard_normal((30, 40)) * 2).astype(dtype)
    g = rng.standard_normal(z.shape).astype(dtype)
    zt = torch.tensor(z, requires_grad=True)
    yt = getattr(entmax, ref)(zt, dim=axis)
    (gt,) = torch.autograd.grad(yt, zt, torch.tensor(g))
    act = gk.activations.get(name, axis=axis)
    tol = {"rtol": 1e-4, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-13}
    np.testing.assert_allclose(act(z), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(act.vjp(z, g), gt.numpy(), **tol)


@pytest.mark.parametrize("loss_name,ref", [("sparsemax_loss", "sparsemax_loss"), ("entmax15_loss", "entmax15_loss")])
def test_fenchel_young_losses_against_the_entmax_package(loss_name, ref):
    rng = _rng(loss_name)
    z, labels = rng.standard_normal((25, 8)) * 2, rng.integers(0, 8, 25)
    zt = torch.tensor(z, requires_grad=True)
    lt = getattr(entmax, ref)(zt, torch.tensor(labels))
    (gt,) = torch.autograd.grad(lt.sum(), zt)
    items, dz = gk.losses.get(loss_name, reduction="none").value_and_grad(z, labels)
    np.testing.assert_allclose(items, lt.detach().numpy(), rtol=1e-10, atol=1e-13)
    _, dz = gk.losses.get(loss_name, reduction="sum").value_and_grad(z, labels)
    np.testing.assert_allclose(dz, gt.numpy(), rtol=1e-10, atol=1e-13)


# -- Fenchel–Young losses -------------------------------------------------------------------
@pytest.mark.parametrize("loss", [gk.SparsemaxLoss(reduction="none"), gk.Entmax15Loss(reduction="none")], ids=repr)
def test_fenchel_young_loss_properties(loss):
    rng = _rng(repr(loss))
    z = rng.standard_normal((10, 5)) * 2
    labels = rng.integers(0, 5, 10)
    soft = rng.dirichlet(np.ones(5), 10)
    for target in (labels, soft):
        items, grad = loss.value_and_grad(z, target)
        assert np.all(items >= -1e-12)
        t = np.eye(5)[labels] if target is labels else soft
        np.testing.assert_allclose(grad, loss.mapping(z) - t, rtol=1e-12, atol=1e-15)  # y(z) - t
    # zero loss where the prediction equals the target
    items, grad = loss.value_and_grad(np.array([[0.0, 10.0, -3.0]]), np.array([1]))
    assert items[0] == pytest.approx(0.0, abs=1e-12) and np.all(grad == 0)
    target = loss.mapping(z)
    np.testing.assert_allclose(loss(z, target), 0.0, atol=1e-12)


def test_sparsemax_loss_equals_martins_formula():
    z, k = np.array([0.3, -1.2, 0.9, 0.1]), 3
    y = gk.Sparsemax()(z)
    support = y > 0
    tau = (z[support].sum() - 1) / support.sum()
    expected = -z[k] + 0.5 * np.sum(z[support] ** 2 - tau**2) + 0.5
    assert gk.SparsemaxLoss(reduction="sum")(z[None], np.array([k])) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("pair", [(gk.Sparsemax, gk.SparsemaxLoss), (gk.Entmax15, gk.Entmax15Loss)])
def test_a_fenchel_young_loss_with_its_own_map_takes_the_scores(pair):
    act_cls, loss_cls = pair
    rng = _rng(act_cls.__name__)
    z, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    head = gk.compose(act_cls(), loss_cls())
    assert head.paired and not head.fused
    on_scores = gk.compose(gk.Identity(), loss_cls())
    for a, b in zip(head.value_and_grad(z, labels), on_scores.value_and_grad(z, labels)):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    np.testing.assert_allclose(head.forward(z), act_cls()(z))
    assert gk.gradcheck(head, z, target=labels, rng=0).ok


def test_fenchel_young_options():
    rng = _rng("options")
    z, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    labels[2] = -100
    items = gk.SparsemaxLoss(reduction="none")(z, labels)
    assert items[2] == 0.0
    _, grad = gk.SparsemaxLoss().value_and_grad(z, labels)
    assert np.all(grad[2] == 0)
    full = gk.SparsemaxLoss(reduction="sum")(np.delete(z, 2, 0), np.delete(labels, 2))
    assert gk.SparsemaxLoss()(z, labels) == pytest.approx(full / 5, rel=1e-13)  # ignored items leave the mean
    # smoothing: target (1 - ε) onehot + ε/n
    smooth = gk.Entmax15Loss(label_smoothing=0.2, reduction="sum")
    t = 0.8 * np.eye(5)[labels[:2]] + 0.2 / 5
    np.testing.assert_allclose(smooth(z[:2], labels[:2]), gk.Entmax15Loss(reduction="sum")(z[:2], t), rtol=1e-13)
    with pytest.raises(TypeError):
        gk.losses.get("sparsemax_loss", weight=np.ones(5))


def test_fenchel_young_head_with_a_mask():
    rng = _rng("fy mask")
    z, labels = rng.standard_normal((4, 6)), np.array([0, 3, 5, 2])
    where = np.full(z.shape, True)
    where[:, 0] = False  # class 0 masked: item 0's label has no mass left
    z[:, 0] = np.inf
    head = gk.compose(gk.Sparsemax(), gk.SparsemaxLoss(reduction="none"))
    items, grad = head.value_and_grad(z, labels, where=where)
    assert items[0] == 0 and np.all(grad[0] == 0) and np.all(grad[:, 0] == 0)
    np.testing.assert_allclose(items[1:], gk.SparsemaxLoss(reduction="none")(z[1:, 1:], labels[1:] - 1), rtol=1e-13)


# -- Gumbel-softmax -------------------------------------------------------------------------
def test_gumbel_samples_are_seeded_and_derivatives_use_the_forward_noise():
    z = _rng("gumbel").standard_normal((3, 5))
    g = _rng("up").standard_normal(z.shape)
    a, b = gk.GumbelSoftmax(temperature=0.7, rng=3), gk.GumbelSoftmax(temperature=0.7, rng=3)
    np.testing.assert_array_equal(a(z), b(z))
    assert not np.array_equal(a(z), a(z))  # each forward draws anew
    y = a(z)
    sm = gk.Softmax(temperature=0.7)
    np.testing.assert_allclose(y, sm(z + a.noise), rtol=1e-15)
    np.testing.assert_allclose(a.vjp(z, g), sm.vjp(z + a.noise, g), rtol=1e-14)
    np.testing.assert_allclose(a.jvp(z, g), sm.jvp(z + a.noise, g), rtol=1e-14)
    np.testing.assert_allclose(a.jacobian(z), sm.jacobian(z + a.noise), rtol=1e-14)
    with a.frozen():
        assert gk.gradcheck(a, z, rng=1).ok


def test_gumbel_hard_is_one_hot_with_the_soft_gradient():
    z = _rng("hard").standard_normal((4, 6))
    g = _rng("up").standard_normal(z.shape)
    hard = gk.GumbelSoftmax(hard=True, rng=0)
    y = hard(z)
    np.testing.assert_array_equal(y.sum(-1), 1.0)
    assert set(np.unique(y)) == {0.0, 1.0}
    soft = gk.Softmax()(z + hard.noise)
    np.testing.assert_array_equal(np.argmax(y, -1), np.argmax(soft, -1))
    np.testing.assert_allclose(hard.vjp(z, g), gk.Softmax().vjp(z + hard.noise, g), rtol=1e-14)  # straight-through


def test_gumbel_max_samples_follow_the_softmax():
    z = np.array([0.5, -1.0, 1.5, 0.0])
    gs = gk.GumbelSoftmax(temperature=0.05, hard=True, rng=11)
    counts = gs(np.broadcast_to(z, (40000, 4)).copy()).mean(axis=0)
    np.testing.assert_allclose(counts, gk.Softmax()(z), atol=0.01)  # argmax(z + G) ~ softmax(z)


def test_gumbel_axis_mask_and_errors():
    z = _rng("axis").standard_normal((5, 3))
    gs = gk.GumbelSoftmax(axis=0, rng=2)
    where = np.full(z.shape, True)
    where[0] = False
    y = gs(z, where=where)
    assert np.all(y[0] == 0) and np.allclose(y.sum(0), 1)
    jac = gs.jacobian(z, where=where)
    np.testing.assert_allclose(jac, gk.Softmax(axis=0).jacobian(z + gs.noise, where=where), rtol=1e-14)
    with pytest.raises(ValueError, match="need its noise"):
        gk.GumbelSoftmax().vjp(z, z)
    with pytest.raises(ValueError, match="need its noise"):
        gs.vjp(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(TypeError, match="rng must be None, an int"):
        gk.GumbelSoftmax(rng=1.5)
    explicit = gk.GumbelSoftmax(rng=0)(z, noise=np.zeros_like(z))
    np.testing.assert_allclose(explicit, gk.Softmax()(z), rtol=1e-15)


# -- training through the estimators --------------------------------------------------------
@pytest.mark.parametrize("output,loss", [("sparsemax", "sparsemax_loss"), ("entmax15", "entmax15_loss"),
                                         ("log_taylor_softmax", "nll"), ("log_spherical_softmax", "nll")])
def test_estimators_train_with_the_alternatives(output, loss):
    from sklearn.datasets import load_iris
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gradkit.sklearn import MLPClassifier

    X, y = load_iris(return_X_y=True)
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), output_activation=output, loss=loss,
                                                        max_iter=60, learning_rate_init=0.01, batch_size=32,
                                                        random_state=0))
    clf.fit(X, y)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert clf.score(X, y) > 0.9
    assert math.isfinite(clf[-1].loss_curve_[-1])


# -- regressions found in review ------------------------------------------------------------
@pytest.mark.parametrize("loss", [gk.SparsemaxLoss(), gk.Entmax15Loss()], ids=repr)
@pytest.mark.parametrize("dtype,offset", [(np.float32, 1e8), (np.float64, 1e15), (np.float64, 1e200)])
def test_fenchel_young_losses_are_exact_at_large_offsets(loss, dtype, offset):
    z = np.array([[0.5, -1.0, 2.0]])
    shifted = (z + offset).astype(dtype)
    if np.array_equal(shifted.astype(np.float64) - offset, z):  # the offset keeps the scores' differences
        np.testing.assert_allclose(loss(shifted, np.array([0])), loss(z, np.array([0])), rtol=1e-6)
    flat = loss(np.full((1, 3), offset, dtype), np.array([0]))
    expected = 1 / 3 if isinstance(loss, gk.SparsemaxLoss) else 4 / 3 * (1 - 3 * (1 / 3) ** 1.5)
    np.testing.assert_allclose(flat, expected, rtol=1e-6)


def test_fenchel_young_head_is_shift_invariant_under_masks_and_smoothing():
    z, where = np.array([[0.5, 1.0, -0.3]]), np.array([[True, True, False]])
    for head, target in [(gk.compose(gk.Sparsemax(), gk.SparsemaxLoss(label_smoothing=0.1)), np.array([2])),
                         (gk.compose(gk.Entmax15(), gk.Entmax15Loss()), np.array([[0.2, 0.3, 0.5]]))]:
        values = [head(z + c, target, where=where) for c in (0.0, 100.0, -100.0)]
        np.testing.assert_allclose(values, values[0], rtol=1e-10)
        assert values[0] >= 0


def test_sparse_maps_take_huge_mixed_scores_without_overflow():
    x = np.array([1.7e308, -1.7e308, 0.0])
    for act in SPARSE:
        np.testing.assert_array_equal(act(x), [1.0, 0.0, 0.0])
    assert np.isfinite(gk.SparsemaxLoss()(np.array([[1e300, -1e300]]), np.array([0])))


def test_gumbel_explicit_noise_is_the_one_the_derivatives_use():
    x, g = np.array([0.2, -0.4, 1.0]), np.array([1.0, 2.0, -1.0])
    noise = np.array([0.5, -2.0, 0.1])
    gs = gk.GumbelSoftmax(rng=0)
    gs(x)
    gs(x, noise=noise)
    np.testing.assert_allclose(gs.vjp(x, g), gk.Softmax().vjp(x + noise, g), rtol=1e-14)
    assert gk.gradcheck(gk.GumbelSoftmax(rng=1), x).ok  # gradcheck holds the sample fixed itself


def test_sparsemax_nan_row_gives_nan_derivatives():
    x, g = np.array([np.nan, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    assert np.all(np.isnan(gk.Sparsemax().vjp(x, g))) and np.all(np.isnan(gk.Sparsemax().jacobian(x)))


def test_spherical_softmax_with_extreme_eps_in_float32():
    for eps in (1e-100, 1e300):
        act = gk.SphericalSoftmax(eps=eps)
        for x in (np.array([0.0, 1.0], np.float32), np.array([0.0, 0.0], np.float32)):
            y = act(x)
            g = np.array([0.7, -1.3], np.float32)  # a random-like upstream, not all ones
            assert np.all(np.isfinite(y)) and np.all(np.isfinite(act.vjp(x, g)))
            np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-6)


def test_bisect_with_few_steps_still_gives_a_distribution_and_compose_uses_the_activations_method():
    z = _rng("few").standard_normal((6, 9))
    for cls in (gk.Sparsemax, gk.Entmax15):
        np.testing.assert_allclose(cls(method="bisect", n_iter=1)(z).sum(-1), 1.0, rtol=1e-12)
    act = gk.Sparsemax(method="bisect", n_iter=3)
    labels = np.arange(6) % 9
    _, grad = gk.compose(act, gk.SparsemaxLoss(reduction="sum")).value_and_grad(z, labels)
    np.testing.assert_allclose(grad, act(z) - np.eye(9)[labels], rtol=1e-12, atol=1e-15)


def test_gumbel_single_thread_draws_are_the_seeded_stream_and_copies_keep_it():
    import copy
    import pickle

    x = np.zeros((3, 4))
    gs, ref = gk.GumbelSoftmax(rng=8), np.random.default_rng(8)
    for _ in range(3):  # the lock and the per-thread state change nothing for one thread
        gs(x)
        np.testing.assert_array_equal(gs.noise, ref.gumbel(size=x.shape))
    following = gk.Softmax()(ref.gumbel(size=x.shape))
    for twin in (copy.deepcopy(gs), pickle.loads(pickle.dumps(gs))):  # a lock and a threading.local do not pickle
        assert twin == gs
        np.testing.assert_array_equal(twin.noise, gs.noise)  # the last forward's noise travels with it
        np.testing.assert_array_equal(twin(x), following)  # and so does the generator's state


def test_gumbel_frozen_blocks_nest():
    gs, x = gk.GumbelSoftmax(rng=9), np.array([0.2, -0.1, 0.4])
    first = gs(x)
    with gs.frozen():
        with gs.frozen():
            pass
        np.testing.assert_array_equal(gs(x), first)  # the inner block's exit did not unfreeze the outer one
    assert not np.array_equal(gs(x), first)
