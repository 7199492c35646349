"""numba Fenchel–Young loss kernels (sparsemax loss, entmax-1.5 loss) == the portable path: shapes, axes, dtypes,
strides, masks, ±inf, NaN, labels (ignore_index, label smoothing) and probability targets, every reduction;
and the compose head takes the kernel."""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels

from .cases import KERNEL_TOL
from .cases import kernel_and_portable as _both
from .cases import logits_with_specials as _inputs

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")

LOSSES = [gk.losses.SparsemaxLoss, gk.losses.Entmax15Loss]
MAPS = {gk.losses.SparsemaxLoss: gk.Sparsemax, gk.losses.Entmax15Loss: gk.Entmax15}


def _check(fast, ref, dtype, scale=1.0):
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(fast) & (fast > 0), np.isinf(ref) & (ref > 0))
    tol = dict(KERNEL_TOL[dtype])
    if dtype == np.float32:
        # the loss is a sum of terms of both signs: float32 sums in different orders agree to the
        # terms' scale (|z| up to ~10 here, 1e4 with the specials), not relative to a small loss
        tol["atol"] = 2e-6 * scale
    np.testing.assert_allclose(fast, ref, **tol)


def _targets(rng, kind, shape, axis, where):
    n = shape[axis]
    item_shape = tuple(s for d, s in enumerate(shape) if d != axis % len(shape))
    if kind == "soft":
        t = rng.random(shape)
        t[rng.random(shape) < 0.3] = 0.0  # some classes with no mass; rows need not sum to 1
        return t
    labels = rng.integers(0, n, size=item_shape)
    if kind == "ignore":
        labels[rng.random(item_shape) < 0.3] = -100
    return labels


def _scale(x):
    finite = np.abs(x[np.isfinite(x)])
    return float(max(1.0, finite.max(initial=1.0)))


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape,axis", [((7,), 0), ((5, 9), -1), ((5, 9), 0), ((3, 4, 6), 1), ((64, 1), -1),
                                        ((2, 300), -1)], ids=str)
@pytest.mark.parametrize("special,masked", [(False, False), (True, False), (True, True)],
                         ids=["finite", "inf", "inf-mask"])
@pytest.mark.parametrize("kind,smoothing", [("labels", 0.0), ("labels", 0.1), ("ignore", 0.2), ("soft", 0.1)], ids=str)
def test_head_kernel_equals_the_portable_path(cls, dtype, shape, axis, special, masked, kind, smoothing):
    rng = np.random.default_rng(0)
    z = _inputs(rng, shape, dtype, special)
    where = rng.random(shape) < 0.7 if masked else None
    target = _targets(rng, kind, shape, axis, where)
    for reduction in ("none", "sum"):
        head = gk.compose(MAPS[cls](axis=axis), cls(axis=axis, label_smoothing=smoothing, reduction=reduction))
        with np.errstate(over="ignore", invalid="ignore"):  # the portable path's inf - inf at the specials
            (v1, g1), (v0, g0) = _both(lambda head=head: head.value_and_grad(z, target, where=where))
        scale = _scale(z) * (np.prod(shape) if reduction == "sum" else 1.0)
        _check(v1, v0, dtype, scale)
        _check(g1, g0, dtype)


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_loss_on_its_own_and_vjp_take_the_kernel_too(cls, dtype):
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((40, 12)) * 3).astype(dtype)
    labels = rng.integers(0, 12, 40)
    g = rng.standard_normal(40).astype(dtype)
    loss = cls(reduction="none")
    for fn in (lambda: loss.value_and_grad(z, labels)[0], lambda: loss.value_and_grad(z, labels)[1],
               lambda: loss.vjp(z, labels, g), lambda: cls()(z, labels)):
        _check(*_both(fn), dtype, _scale(z))


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_wide_and_tall_batches_run_threaded_and_equal_the_portable_path(cls, dtype):
    # 300 x 257 and 8000 x 10 elements are above PARALLEL_MIN: the threaded variant; spreads give
    # few candidates (insertion sort) and many (quicksort)
    rng = np.random.default_rng(3)
    for rows, n in ((300, 257), (8000, 10)):
        for spread in (0.01, 0.3, 5.0):
            z = (rng.standard_normal((rows, n)) * spread).astype(dtype)
            labels = rng.integers(0, n, rows)
            loss = cls(reduction="none", label_smoothing=0.05)
            (v1, g1), (v0, g0) = _both(lambda z=z, labels=labels, loss=loss: loss.value_and_grad(z, labels))
            _check(v1, v0, dtype, _scale(z))
            _check(g1, g0, dtype)


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
def test_strided_inputs_and_targets(cls):
    rng = np.random.default_rng(4)
    z = rng.standard_normal((10, 16))[::2, ::3]
    soft = rng.random((10, 17))[1::2, 1::3]
    labels = rng.integers(0, 6, 10)[::2]
    where = (rng.random((10, 16)) < 0.8)[::2, ::3]
    assert not z.flags.c_contiguous and not soft.flags.c_contiguous and not where.flags.c_contiguous
    for axis, zz, tt, ll, ww in ((-1, z, soft, labels, where), (0, z.T, soft.T, labels, where.T)):
        head = gk.compose(MAPS[cls](axis=axis), cls(axis=axis, reduction="none"))
        for target in (tt, ll):
            for w in (None, ww):
                (v1, g1), (v0, g0) = _both(lambda h=head, z=zz, t=target, w=w: h.value_and_grad(z, t, where=w))
                _check(v1, v0, np.float64)
                _check(g1, g0, np.float64)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the portable path's inf - inf
@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_edge_rows(cls, dtype):
    inf, nan = np.inf, np.nan
    z = np.array([
        [nan, 1.0, 2.0, 0.0],  # NaN score: NaN item and row
        [nan, 1.0, 2.0, 0.0],  # NaN score, label ignored: 0
        [-inf, -inf, -inf, -inf],  # no live score, a label: inf
        [inf, 1.0, inf, 0.0],  # +inf scores share the mass
        [inf, 1.0, inf, 0.0],  # label on a finite class beside +inf
        [-inf, 1.0, 2.0, 0.0],  # label on a -inf class: inf
        [1.0, 1.0, 1.0, 1.0],  # ties
        [3.0, -3.0, 0.5, 2.9],  # label right, small loss
        [1e4, -1e4, 0.0, 5.0],
    ], dtype=dtype)
    labels = np.array([1, -100, 2, 0, 1, 0, 3, 0, 2])
    loss = cls(reduction="none")
    (v1, g1), (v0, g0) = _both(lambda: loss.value_and_grad(z, labels))
    _check(v1, v0, dtype, 1e4)
    _check(g1, g0, dtype)
    assert np.isnan(v1[0]) and np.isnan(g1[0]).all() and v1[1] == 0 and (g1[1] == 0).all()
    assert v1[2] == inf and v1[5] == inf and np.isfinite(v1[6:]).all()  # (row 3: inf - inf, NaN on both paths)
    # masks: the label's class masked (no mass left: 0), every class masked (0), smoothing onto live classes
    where = np.array([[True, False, True, True]] * 9)
    for smoothing in (0.0, 0.3):
        head = gk.compose(MAPS[cls](), cls(reduction="none", label_smoothing=smoothing))
        (v1, g1), (v0, g0) = _both(lambda head=head: head.value_and_grad(z, labels, where=where))
        _check(v1, v0, dtype, 1e4)
        _check(g1, g0, dtype)
    none = np.zeros_like(where)
    head = gk.compose(MAPS[cls](), cls(reduction="none"))
    (v1, g1), (v0, g0) = _both(lambda: head.value_and_grad(z, labels, where=none))
    assert (v1 == 0).all() and (g1 == 0).all() and (v0 == 0).all()
    # huge finite scores of both signs: z/2 - max/2 stays finite (the first loss, 2·max, is inf on both paths)
    big = np.finfo(dtype).max
    zb = np.array([[big, -big, 0.0], [big, big, -big]], dtype=dtype)
    with np.errstate(over="ignore"):
        (v1, g1), (v0, g0) = _both(lambda: loss.value_and_grad(zb, np.array([1, 0])))
    assert v1[0] == np.inf and np.isfinite(v1[1])
    _check(v1, v0, dtype, float(big))
    _check(g1, g0, dtype)


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
def test_the_training_head_takes_the_kernel(cls, monkeypatch):
    from gradkit.kernels import fenchel_young

    calls = []
    real = fenchel_young.items

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(fenchel_young, "items", spy)
    rng = np.random.default_rng(5)
    z = rng.standard_normal((8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 8)
    head = gk.compose(MAPS[cls](), cls())
    head.value_and_grad(z, labels)
    assert calls == [(8, 5)]
    # not taken: the portable path (disabled), method="bisect" (the map's own approximation)
    with kernels.disabled():
        head.value_and_grad(z, labels)
    gk.compose(MAPS[cls](method="bisect"), cls(method="bisect")).value_and_grad(z, labels)
    assert calls == [(8, 5)]
    head.value_and_grad(z.astype(np.float16), labels)  # float16 is computed in float32: taken
    assert calls == [(8, 5), (8, 5)]


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
def test_the_kernel_path_keeps_the_errors(cls):
    z = np.zeros((3, 4))
    loss = cls()
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\]"):
        loss(z, np.array([0, 4, 1]))
    with pytest.raises(TypeError, match="target labels must be integers"):
        loss(z, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="target probabilities must be >= 0"):
        loss(z, -np.ones((3, 4)))
    with pytest.raises(ValueError, match="target contains NaN"):
        loss(z, np.full((3, 4), np.nan))


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_subnormal_and_huge_target_mass_is_normalized_exactly(cls, dtype):
    # a target mass of a few subnormals: 1/mass overflows, t/mass must not (found by the hostile property tests)
    info = np.finfo(dtype)
    z = np.array([[0.0, 0.0], [1.0, -1.0], [0.5, 0.25]], dtype=dtype)
    t = np.array([[info.smallest_subnormal] * 2, [info.smallest_subnormal, 0.0], [info.max / 2, info.max / 4]],
                 dtype=dtype)
    loss = cls(reduction="none")
    (v1, g1), (v0, g0) = _both(lambda: loss.value_and_grad(z, t))
    assert np.isfinite(v1).all() and np.isfinite(g1).all()
    _check(v1, v0, dtype)
    _check(g1, g0, dtype)


@pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("m", [1, 3, 10, 16, 17])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_short_rows_with_labels_blocked_sixteen_at_a_time_equal_the_portable_path(cls, dtype, m, smoothing):
    # 53 rows of m classes: blocks of 16 rows, one of them with NaN / all -inf / +inf rows (row by row), ignored
    # labels, ties, and a tail of 5; "none" and "mean"
    rng = np.random.default_rng(m)
    x = (rng.standard_normal((53, m)) * 2).astype(dtype)
    x[1::5, 0] = x[1::5, -1]
    x[3] = 0.5
    x[18, rng.integers(m)] = np.nan
    x[21] = -np.inf
    x[23, rng.integers(m)] = np.inf
    x[9, 0] = -np.inf
    labels = rng.integers(0, m, 53)
    labels[rng.random(53) < 0.2] = -100
    for reduction in ("none", "mean"):
        loss = cls(reduction=reduction, label_smoothing=smoothing)
        (fv, fg), (rv, rg) = _both(lambda loss=loss: loss.value_and_grad(x, labels))
        _check(fv, rv, dtype, scale=_scale(x))
        _check(fg, rg, dtype)
