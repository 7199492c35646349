"""Shortcuts for the common case must give what the general code gives: NLL on integer labels (NumPy),
the label check of an in-range batch, and the per-batch accuracy ``fit`` counts from the head's own output."""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape,axis", [((5, 4), -1), ((4, 5), 0), ((2, 3, 4), -1), ((3, 4, 2), 1), ((4,), 0)], ids=str)
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_nll_on_numpy_labels_equals_the_general_code(dtype, reduction, shape, axis, ignore_index):
    # the general code is the same loss on torch tensors (no NumPy shortcut there), in float64
    rng = np.random.default_rng(3)
    q = np.log(gk.Softmax(axis=axis)(rng.standard_normal(shape))).astype(dtype)
    n = shape[axis]
    item_shape = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    labels = rng.integers(0, n, item_shape)
    q = np.where(np.arange(n).reshape([-1 if k == axis % len(shape) else 1 for k in range(len(shape))]) == 2,
                 -np.inf, q).astype(dtype)  # a class at -inf: a label there gives inf
    loss = gk.NLLLoss(axis=axis, reduction=reduction, ignore_index=ignore_index)
    value, grad = loss.value_and_grad(q, labels)
    tv, tg = loss.value_and_grad(torch.from_numpy(q.astype(np.float64)), torch.from_numpy(labels))
    np.testing.assert_allclose(value, tv.numpy(), rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(grad, tg.numpy().astype(dtype))
    assert grad.dtype == dtype and np.asarray(value).dtype == dtype


def test_nll_numpy_labels_keep_their_checks():
    loss = gk.NLLLoss()
    q = np.log(np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\]"):
        loss(q, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\]"):
        loss(q, np.array([-1, 2, 1]))
    with pytest.raises(TypeError, match="target labels must be integers"):
        loss(q, np.array([0.0, 1.0, 2.0]))
    # an ignore_index among the labels is ignored, inside the class range too
    assert float(gk.NLLLoss(ignore_index=2)(q, np.array([2, 2, 1]))) == pytest.approx(np.log(4))
    assert float(gk.NLLLoss(ignore_index=2, reduction="sum")(q, np.array([2, 2, 2]))) == 0.0


@pytest.mark.parametrize("output", ["softmax", "log_taylor_softmax", "spherical_softmax", "sparsemax"])
def test_fit_counts_the_accuracy_of_the_heads_prediction(output):
    # lr = 1e-30: the float32 weights never move, so the accuracy fit counts batch by batch is evaluate's
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((70, 5)), rng.integers(0, 4, 70)
    loss = {"softmax": "cross_entropy", "log_taylor_softmax": "nll", "spherical_softmax": "cross_entropy",
            "sparsemax": "sparsemax_loss"}[output]
    head = gk.compose(output, loss)
    model = nn.Sequential([nn.Dense(5, 6, rng=0), "tanh", nn.Dense(6, 4, rng=1)])
    history = nn.fit(model, X, y, loss=head, optimizer=nn.SGD(1e-30), epochs=1, batch_size=16)
    expected = nn.evaluate(model, X.astype(np.float32), y, loss=head)["accuracy"]
    assert history["accuracy"][0] == pytest.approx(expected)
    assert 0.0 < expected < 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,cols", [(7, 5), (128, 784), (300, 1)])
def test_take_rows_kernel_equals_np_take(dtype, rows, cols):
    pytest.importorskip("numba")
    from gradkit import kernels

    if not kernels.enabled():
        pytest.skip("numba kernels disabled")
    from gradkit.kernels.gather import take_rows

    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, cols)).astype(dtype)
    X[3, 0], X[4, -1], X[5, 0] = np.nan, -0.0, -np.inf
    idx = np.concatenate([[3, 4, 5], rng.integers(0, 500, rows - 3)])
    out = np.full((rows, cols), 7, dtype=dtype)
    got = take_rows(X, idx, out)
    assert got is out
    np.testing.assert_array_equal(out.view(np.uint8), np.take(X, idx, axis=0).view(np.uint8))  # bit for bit


def test_scale_fresh_scales_a_kernels_new_array_in_place_once_and_nothing_else():
    from gradkit._array import mark_fresh, scale_fresh

    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    expected = a * np.float32(0.25)
    marked = mark_fresh(a)
    out = scale_fresh(marked, 0.25)
    assert out is a  # in place: the same array
    np.testing.assert_array_equal(out, expected)
    again = scale_fresh(a, 0.5)  # once only: the mark is used up
    assert again is not a
    np.testing.assert_array_equal(a, expected)
    b = rng.standard_normal((4, 3)).astype(np.float32)  # never marked: a user's array
    kept = b.copy()
    assert scale_fresh(b, 3.0) is not b
    np.testing.assert_array_equal(b, kept)
    c = mark_fresh(rng.standard_normal(5).astype(np.float32))  # a scale that would change the dtype: a new array
    c0 = c.copy()
    out = scale_fresh(c, np.asarray(0.1))  # a float64 0-d array
    assert out is not c and out.dtype == np.float64
    np.testing.assert_array_equal(c, c0)


@pytest.mark.parametrize("head", ["fused", "paired"])
def test_heads_through_kernels_equal_their_portable_path_with_the_mean_scaled_in_place(head):
    # the kernels' gradients are scaled by 1/n in place; the numbers must be the portable path's
    rng = np.random.default_rng(1)
    z = rng.standard_normal((37, 6)).astype(np.float32)
    y = rng.integers(0, 6, 37)
    h = (gk.compose(gk.LogSoftmax(), gk.NLLLoss()) if head == "fused"
         else gk.compose(gk.Sparsemax(), gk.losses.SparsemaxLoss()))
    value, grad = h.value_and_grad(z, y)
    g = rng.standard_normal(())
    vjp = h.vjp(z, y, g)
    with gk.kernels.disabled():
        pv, pg = h.value_and_grad(z, y)
        pvjp = h.vjp(z, y, g)
    np.testing.assert_allclose(value, pv, rtol=1e-6)
    np.testing.assert_allclose(grad, pg, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(vjp, pvjp, rtol=1e-5, atol=1e-7)


def test_a_custom_loss_returning_an_array_it_keeps_gets_it_back_unscaled():
    # a user's compute_items may hand out an array it holds: the mean's scaling must not touch it
    kept = np.arange(6.0).reshape(2, 3)

    class Linear(gk.losses.ElementwiseLoss):
        name = "linear_kept"

        def compute_terms(self, xp, p, t):
            return p * 0.0, kept

    before = kept.copy()
    _, grad = Linear().value_and_grad(np.ones((2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(kept, before)
    np.testing.assert_allclose(grad, before / 6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_xent_batch_labels_checked_in_the_kernel_equal_the_checked_path(dtype, ignore_index, smoothing):
    # a 2-d batch with int64 labels skips the label checks' passes: the kernel checks each label on its way and
    # hands a label out of range or at ignore_index back to the checked path; the numbers are the checked path's
    rng = np.random.default_rng(7)
    z = rng.standard_normal((37, 5)).astype(dtype)
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(ignore_index=ignore_index, label_smoothing=smoothing))
    labels = rng.integers(0, 5, 37)
    labels[labels == ignore_index] = 0
    as_int32 = labels.astype(np.int32)  # not int64: the checked path
    for target in (labels, np.where(np.arange(37) % 6 == 0, ignore_index, labels)):
        fast = head.value_and_grad(z, target)
        checked = head.value_and_grad(z, target.astype(np.int32))
        np.testing.assert_array_equal(fast[0], checked[0])
        np.testing.assert_array_equal(fast[1], checked[1])
    assert head(z, labels) == head(z, as_int32)
    for bad in (5, -1):
        with pytest.raises(ValueError, match=r"target labels must be in \[0, 4\]"):
            head(z, np.where(np.arange(37) == 11, bad, labels))


def test_softmax_xent_batch_labels_skip_the_check_passes(monkeypatch):
    from gradkit import kernels

    if not kernels.available():
        pytest.skip("numba not installed or disabled")
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    z = np.random.default_rng(2).standard_normal((8, 3)).astype(np.float32)
    calls = []
    real = gk.CrossEntropyLoss.check_labels
    monkeypatch.setattr(gk.CrossEntropyLoss, "check_labels", lambda self, *a: calls.append(1) or real(self, *a))
    head.value_and_grad(z, np.array([0, 1, 2, 0, 1, 2, 0, 1]))
    assert calls == []
    head.value_and_grad(z, np.array([0, 1, 2, 0, 1, 2, 0, -100]))  # an ignored label: the checked path
    assert calls == [1]
