"""Softmax and log-softmax: reference values, temperature, masks, infinities, huge logits."""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk

SOFTMAXES = pytest.mark.parametrize("cls", [gk.Softmax, gk.LogSoftmax], ids=lambda c: c.__name__)


def test_reference_values_from_the_math_sheet():
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(gk.Softmax()(x), [0.26894142, 0.73105858], atol=1e-8)
    np.testing.assert_allclose(
        gk.Softmax().jacobian(x), [[0.19661193, -0.19661193], [-0.19661193, 0.19661193]], atol=1e-8
    )


def test_softmax_jacobian_is_not_diagonal_and_rows_sum_to_zero():
    x = np.random.default_rng(0).standard_normal((3, 4))
    jac = gk.Softmax().jacobian(x)
    y = gk.Softmax()(x)
    np.testing.assert_allclose(jac, (np.eye(4) * y[..., None] - y[..., :, None] * y[..., None, :]), rtol=1e-14)
    np.testing.assert_allclose(jac.sum(axis=-1), 0.0, atol=1e-15)


@pytest.mark.parametrize("temperature", [0.25, 3.0])
def test_temperature_scales_the_jacobian(temperature):
    x = np.random.default_rng(1).standard_normal((2, 5))
    hot = gk.Softmax(temperature=temperature)
    np.testing.assert_allclose(hot(x), gk.Softmax()(x / temperature), rtol=1e-14)
    np.testing.assert_allclose(hot.jacobian(x), gk.Softmax().jacobian(x / temperature) / temperature, rtol=1e-13)
    np.testing.assert_allclose(
        gk.LogSoftmax(temperature=temperature).jacobian(x), gk.LogSoftmax().jacobian(x / temperature) / temperature, rtol=1e-13
    )


@SOFTMAXES
@pytest.mark.parametrize("logit", [1e4, -1e4, 1e300])
def test_huge_logits_are_safe(cls, logit):
    x = np.array([[logit, 0.0, 1.0], [logit, logit, logit]])
    y = cls()(x)
    g = np.random.default_rng(2).standard_normal(x.shape)
    assert not np.isnan(y).any() and not np.isnan(cls().vjp(x, g)).any()
    np.testing.assert_allclose(np.exp(y[1]) if cls is gk.LogSoftmax else y[1], 1 / 3, rtol=1e-12)


def test_float32_offset_of_1e8():
    x = np.array([1e8, 1e8], dtype=np.float32)
    np.testing.assert_allclose(gk.LogSoftmax()(x), np.log([0.5, 0.5]), rtol=1e-7)
    np.testing.assert_allclose(gk.Softmax()(x), [0.5, 0.5], rtol=1e-7)


@pytest.mark.parametrize("axis", [0, -1])
def test_mask_normalizes_over_unmasked_entries_only(axis):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6))
    mask = rng.random((4, 6)) < 0.7
    mask[:, 0] = mask[0, :] = True
    y = gk.Softmax(axis=axis)(x, where=mask)
    assert np.all(y[~mask] == 0.0)
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-14)
    # each unmasked row equals plain softmax on the unmasked entries
    xm, ym = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    mm = np.moveaxis(mask, axis, -1)
    for i in range(xm.shape[0]):
        np.testing.assert_allclose(ym[i][mm[i]], gk.Softmax()(xm[i][mm[i]]), rtol=1e-14)
    logy = gk.LogSoftmax(axis=axis)(x, where=mask)
    assert np.all(logy[~mask] == -np.inf)
    np.testing.assert_allclose(np.exp(logy[mask]), y[mask], rtol=1e-14)


@SOFTMAXES
def test_masked_entries_get_zero_gradient_and_huge_masked_logits_do_not_leak(cls):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5))
    mask = np.ones((3, 5), dtype=bool)
    mask[:, 2] = False
    g = rng.standard_normal(x.shape)
    v = rng.standard_normal(x.shape)
    act = cls()
    base_vjp, base_jvp = act.vjp(x, g, where=mask), act.jvp(x, v, where=mask)
    assert np.all(base_vjp[:, 2] == 0) and np.all(base_jvp[:, 2] == 0)
    leaky = x.copy()
    leaky[:, 2] = 1e30  # a huge logit under the mask changes nothing
    np.testing.assert_array_equal(act(leaky, where=mask), act(x, where=mask))
    np.testing.assert_array_equal(act.vjp(leaky, g, where=mask), base_vjp)
    np.testing.assert_array_equal(act.jvp(leaky, v, where=mask), base_jvp)
    # the masked derivatives equal those of the function on the kept entries
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(base_vjp[:, keep], act.vjp(x[:, keep], g[:, keep]), rtol=1e-13)
    jac = act.jacobian(x, where=mask)
    assert np.all(jac[:, 2, :] == 0) and np.all(jac[:, :, 2] == 0)


@SOFTMAXES
def test_fully_masked_row_gives_zeros_and_zero_gradient_never_nan(cls):
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = np.array([[True, False, True], [False, False, False]])
    g = np.array([[0.3, -1.0, 2.0], [1.5, -0.5, 0.7]])
    act = cls()
    y = act(x, where=mask)
    dead = -np.inf if cls is gk.LogSoftmax else 0.0
    assert np.all(y[1] == dead)
    for out in (act.vjp(x, g, where=mask), act.jvp(x, g, where=mask), act.jacobian(x, where=mask)):
        assert not np.isnan(out).any()
        assert np.all(out[1] == 0.0)


@SOFTMAXES
def test_rows_of_minus_inf_behave_like_masked_rows(cls):
    x = np.array([[-np.inf, -np.inf], [-np.inf, 0.5]])
    g = np.array([[1.0, -2.0], [0.5, 3.0]])
    act = cls()
    y = act(x)
    dead = -np.inf if cls is gk.LogSoftmax else 0.0
    np.testing.assert_array_equal(y[0], [dead, dead])
    np.testing.assert_array_equal(y[1], [dead, 1.0 if cls is gk.Softmax else 0.0])
    dx = act.vjp(x, g)
    assert not np.isnan(dx).any()
    np.testing.assert_array_equal(dx, np.zeros_like(dx))


def test_plus_inf_logits_share_the_mass():
    y = gk.Softmax()(np.array([np.inf, 0.0, np.inf, -np.inf]))
    np.testing.assert_array_equal(y, [0.5, 0.0, 0.5, 0.0])
    g = np.array([1.0, 2.0, -1.0, 4.0])
    assert np.isfinite(gk.Softmax().vjp(np.array([np.inf, 0.0, np.inf, -np.inf]), g)).all()


def test_softmax_vjp_ignores_infinite_upstream_where_probability_is_zero():
    """-t/p from a loss is inf where p underflowed; those entries have y = 0 and contribute 0."""
    x = np.array([0.0, -1e4, 1.0])
    g = np.array([-1.0, -np.inf, 0.5])
    dx = gk.Softmax().vjp(x, g)
    np.testing.assert_allclose(dx, gk.Softmax().vjp(x, np.array([-1.0, 0.0, 0.5])))


def test_masked_gradcheck_through_closures():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5))
    mask = rng.random((3, 5)) < 0.6
    mask[:, 0] = True
    for act in (gk.Softmax(temperature=0.8), gk.LogSoftmax()):
        # gradcheck needs finite outputs: compare log_softmax only on live entries
        f = lambda z, a=act: np.where(mask, a(z, where=mask), 0.0)
        rep = gk.gradcheck(
            f,
            x,
            vjp=lambda z, g, a=act: a.vjp(z, np.where(mask, g, 0.0), where=mask),
            jvp=lambda z, v, a=act: np.where(mask, a.jvp(z, v, where=mask), 0.0),
        )
        assert rep.ok, str(rep)


def test_mask_broadcasts_along_the_batch():
    x = np.random.default_rng(7).standard_normal((4, 3))
    mask = np.array([True, False, True])
    y = gk.Softmax()(x, where=mask)
    assert np.all(y[:, 1] == 0)
