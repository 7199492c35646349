"""Hypothesis fuzzing of logits (huge values, ±inf, masks): no NaN where the answer is finite."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import gradkit as gk

FLOATS = st.one_of(
    st.floats(-1e4, 1e4, allow_nan=False),
    st.sampled_from([-np.inf, np.inf, 1e308, -1e308, 1e8, -1e8, 0.0]),
)
LOGITS = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=FLOATS)
SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def logits_and_masks(draw):
    z = draw(LOGITS)
    mask = draw(arrays(np.bool_, z.shape))
    return z, mask


@pytest.mark.filterwarnings("ignore:overflow encountered")  # (z - max)/T may overflow to -inf: the right answer
@SETTINGS
@given(logits_and_masks(), st.sampled_from([0.3, 1.0, 5.0]))
def test_softmax_family_never_returns_nan(data, temperature):
    z, mask = data
    g = np.random.default_rng(0).standard_normal(z.shape)
    for where in (None, mask):
        sm, lsm = gk.Softmax(temperature=temperature), gk.LogSoftmax(temperature=temperature)
        y = sm(z, where=where)
        assert not np.isnan(y).any()
        live = np.ones(z.shape, bool) if where is None else where
        sums = y.sum(axis=-1)
        dead_rows = ~((z > -np.inf) & live).any(axis=-1)
        np.testing.assert_allclose(sums[~dead_rows], 1.0, rtol=1e-12)
        assert np.all(sums[dead_rows] == 0)
        assert np.all(y[~live] == 0)
        logy = lsm(z, where=where)
        assert not np.isnan(logy).any() and not (logy == np.inf).any()
        for act in (sm, lsm):
            for out in (act.vjp(z, g, where=where), act.jvp(z, g, where=where), act.jacobian(z, where=where)):
                assert np.isfinite(out).all()


@SETTINGS
@given(logits_and_masks())
def test_fused_cross_entropy_is_finite_when_the_label_is_live(data):
    z, mask = data
    z = np.clip(z, -1e300, 1e300)  # finite logits, huge but with a representable loss
    rng = np.random.default_rng(1)
    labels = np.array([rng.choice(np.flatnonzero(row)) if row.any() else -100 for row in mask])
    for head in (gk.compose(gk.Softmax(), gk.CrossEntropyLoss()), gk.compose(gk.LogSoftmax(), gk.NLLLoss())):
        L, dz = head.value_and_grad(z, labels, where=mask)
        assert np.isfinite(L) and np.isfinite(dz).all()
        assert np.all(dz[~mask] == 0)


@SETTINGS
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(-1e300, 1e300, allow_nan=False)))
def test_elementwise_activations_are_finite_on_finite_input(x):
    g = np.random.default_rng(2).standard_normal(x.shape)
    for name in gk.activations.names():
        if name in ("softmax", "log_softmax"):
            continue
        act = gk.activations.get(name)
        assert not np.isnan(act(x)).any(), name
        assert not np.isnan(act.vjp(x, g)).any(), name


@SETTINGS
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(-1e4, 1e4, allow_nan=False)),
       arrays(np.float64, st.integers(1, 8), elements=st.floats(0, 1)))
def test_bce_with_logits_is_finite(z, t):
    n = min(z.size, t.size)
    L, dz = gk.BCEWithLogitsLoss().value_and_grad(z[:n], t[:n])
    assert np.isfinite(L) and np.isfinite(dz).all()
    L2, _dz2 = gk.compose(gk.Sigmoid(), gk.BCELoss()).value_and_grad(z[:n], t[:n])
    np.testing.assert_allclose(L2, L, rtol=1e-12)
