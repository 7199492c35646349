"""The fused log-Taylor / log-spherical softmax + NLL heads == the generic chain rule.

``compose(LogTaylorSoftmax(), NLLLoss())`` and ``compose(LogSphericalSoftmax(), NLLLoss())`` take one numba kernel
per batch (:mod:`gradkit.kernels.log_phi_nll`) for NumPy float32/64 and integer labels; these tests hold it to
``compose(..., fused=False)`` (the chain rule: forward, NLL, reduction, VJP) over shapes, axes 0 / -1, masks with
fully masked rows, ±inf / NaN scores, ignore_index, label smoothing, the three reductions, VJPs and JVPs with
random vectors, and to the portable path (``kernels.disabled()``). Everything but the spies also runs, and
passes, under ``GRADKIT_DISABLE_NUMBA=1`` (the fused path is then the chain rule itself).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels
from gradkit.composition import _FUSED
from gradkit.kernels import disabled

needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")

ACTIVATIONS = [
    (gk.LogTaylorSoftmax, {}),
    (gk.LogTaylorSoftmax, {"order": 4}),  # the Horner rows (kernel kind TAYLOR)
    (gk.LogSphericalSoftmax, {}),
    (gk.LogSphericalSoftmax, {"eps": 1e-300}),  # root clamped to the dtype's smallest normal: q up to 1/tiny
]
IDS = [f"{c.__name__}{''.join(f'-{k}={v}' for k, v in kw.items())}" for c, kw in ACTIVATIONS]
#: (loss options, share of ignored labels)
OPTIONS = [({}, 0.0), ({"label_smoothing": 0.2}, 0.0), ({"ignore_index": 2}, 0.3),
           ({"ignore_index": -1, "label_smoothing": 0.1}, 0.3)]
SHAPES = [((7,), 0), ((5, 6), -1), ((5, 6), 0), ((3, 4, 5), -1), ((3, 4, 5), 0), ((3, 4, 5), 1)]
DTYPES = [np.float32, np.float64]


def _scores(rng, shape, dtype, special):
    """N(0, 9) scores; with ``special`` a sixth of them ±inf, NaN, ±1e30 or 1e-30, and exact 0 and ±1."""
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    flat = z.reshape(-1)
    idx = rng.choice(flat.size, size=max(1, flat.size // 6), replace=False)
    flat[idx] = rng.choice([0.0, 1.0, -1.0], size=idx.size)
    if special:
        idx = rng.choice(flat.size, size=max(1, flat.size // 6), replace=False)
        flat[idx] = rng.choice([np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-30], size=idx.size)
    return z


def _labels(rng, z, axis, ignore_index, share):
    n = z.shape[axis]
    item_shape = z.shape[:axis % z.ndim] + z.shape[axis % z.ndim + 1:]
    labels = rng.integers(0, n, item_shape)
    return np.where(rng.random(item_shape) < share, ignore_index, labels) if share else labels


def _mask(rng, z, axis):
    """About 70% live; the first row along the class axis fully masked (when there is more than one row)."""
    where = rng.random(z.shape) < 0.7
    if z.ndim > 1:
        first = [slice(None)] * z.ndim
        first[(axis + 1) % z.ndim] = 0
        where[tuple(first)] = False
    return where


def _close(a, b, dtype, what, log=False, scale=None):
    """Same NaN / ±inf pattern; finite entries within rounding (absolute: a few ulps of the largest entry, which
    covers ``y S - t`` cancelling near y = 1 and log y's absolute accuracy; or of ``scale``: a JVP is a sum of
    terms that may cancel)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, what
    assert a.dtype == b.dtype == dtype, what
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
    np.testing.assert_array_equal(np.isposinf(a), np.isposinf(b), err_msg=what)
    np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b), err_msg=what)
    ok = np.isfinite(b)
    scale = float(np.max(np.abs(b[ok]), initial=1.0)) if scale is None else scale
    eps = float(np.finfo(dtype).eps)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(a[ok], b[ok], rtol=rtol, atol=(64 if log else 16) * eps * scale, err_msg=what)


def _outputs(head, z, labels, where, g, v):
    """value_and_grad, the VJP with ``g``, the JVP along ``v``, and the prediction that ``fit`` uses."""
    value, grad = head.value_and_grad(z, labels, where=where)
    out = {"value": value, "grad": grad, "vjp": head.vjp(z, labels, g, where=where),
           "jvp": head.jvp(z, labels, v, where=where)}
    if where is None:
        out["scores"] = head._value_grad_scores(z, labels)[2]
    if head.loss.reduction != "none":
        out.update(zip(("sum", "dsum", "denom"), head.partial_sums(z, labels, where=where), strict=True))
    return out


@pytest.mark.parametrize(("cls", "kw"), ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize(("shape", "axis"), SHAPES, ids=str)
@pytest.mark.parametrize("special", [False, True], ids=["finite", "special"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_fused_equals_the_chain_rule(cls, kw, dtype, shape, axis, special, masked):
    """fused (kernel) == generic (kernel) == generic (portable); under kernels.disabled() fused IS the generic path
    (bit for bit)."""
    rng = np.random.default_rng(zlib.crc32(repr((cls.__name__, kw, dtype.__name__, shape, axis, special, masked)).encode()))
    act = cls(axis=axis, **kw)
    z = _scores(rng, shape, dtype, special)
    where = _mask(rng, z, axis) if masked else None
    v = rng.standard_normal(shape).astype(dtype)
    for k, (opts, share) in enumerate(OPTIONS):
        labels = _labels(rng, z, axis, opts.get("ignore_index", -100), share)
        for reduction in ("none", "mean", "sum"):
            loss = gk.NLLLoss(axis=axis, reduction=reduction, **opts)
            fused, generic = gk.compose(act, loss), gk.compose(act, loss, fused=False)
            assert fused.fused and not generic.fused
            g = rng.standard_normal(np.shape(generic(z, labels, where=where))).astype(dtype)
            f_out = _outputs(fused, z, labels, where, g, v)
            g_out = _outputs(generic, z, labels, where, g, v)
            assert f_out.pop("denom", None) == g_out.pop("denom", None)
            terms = np.abs(g_out["grad"] * v)  # the JVP's terms: it is their sum (along the class axis)
            jvp_scale = max(float(np.sum(np.where(np.isfinite(terms), terms, 0.0), dtype=np.float64)), 1.0)
            for key in g_out:
                scale = jvp_scale if key == "jvp" else None
                _close(f_out[key], g_out[key], dtype, f"{key} {opts} {reduction}", log=key == "scores", scale=scale)
            if reduction != ("none", "mean", "sum")[k % 3]:
                continue  # the portable path (slow) once per option, the reductions in turn: they are not the kernel's
            with disabled():
                p_out = _outputs(fused, z, labels, where, g, v)
                p_gen = _outputs(generic, z, labels, where, g, v)
            assert p_out.pop("denom", None) == p_gen.pop("denom", None)
            for key in p_out:
                what = f"{key} {opts} {reduction}"
                scale = jvp_scale if key == "jvp" else None
                _close(f_out[key], p_out[key], dtype, what + " (portable)", log=True, scale=scale)
                if key == "jvp":  # a fused head contracts its gradient; the chain rule's JVP is forward mode
                    _close(p_out[key], p_gen[key], dtype, what, scale=scale)
                else:
                    np.testing.assert_array_equal(p_out[key], p_gen[key], err_msg=what + " (disabled: the chain rule)")


@pytest.mark.parametrize(("cls", "kw"), ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("smoothing", [0.0, 0.3], ids=["plain", "smooth"])
def test_edge_rows(cls, kw, dtype, smoothing):
    """One row per case, each with its meaning spelled out, and == the chain rule."""
    inf, nan = np.inf, np.nan
    big, tiny = float(np.finfo(dtype).max), float(np.finfo(dtype).smallest_normal)
    z = np.array([
        [0.5, -1.0, 2.0, 3.0],  # 0 fully masked: loss 0, gradient 0
        [nan, 1.0, 2.0, 3.0],  # 1 a live NaN: loss and gradient NaN
        [nan, 1.0, 2.0, 3.0],  # 2 a masked NaN: no effect
        [inf, 1.0, 2.0, 3.0],  # 3 +inf takes the mass, label on it: loss 0, gradient 0
        [-inf, 1.0, inf, 3.0],  # 4 both infinities share the mass, label on -inf: loss log 2
        [-inf, 1.0, 2.0, 3.0],  # 5 label elsewhere than the infinity: loss inf, gradient 0
        [inf, 1.0, 2.0, inf],  # 6 a masked +inf: no effect (the live one takes the mass)
        [big, -big, tiny, 0.0],  # 7 the float range
        [2.0, 2.0, 2.0, 2.0],  # 8 ties
        [nan, 1.0, 2.0, 3.0],  # 9 a live NaN in an ignored item
        [1.0, -1.0, 0.0, 1e-30],  # 10 the Taylor branch point, 0 (spherical: q = 0)
    ], dtype=dtype)
    labels = np.array([1, 2, 2, 0, 0, 1, 0, 0, 3, -100, 2])
    where = np.ones(z.shape, dtype=bool)
    where[0] = False
    where[2, 0] = where[6, 3] = False
    act = cls(**kw)
    for reduction in ("none", "sum"):
        loss = gk.NLLLoss(reduction=reduction, label_smoothing=smoothing)
        fused, generic = gk.compose(act, loss), gk.compose(act, loss, fused=False)
        fv, fg = fused.value_and_grad(z, labels, where=where)
        gv, gg = generic.value_and_grad(z, labels, where=where)
        _close(fv, gv, dtype, f"value {reduction}")
        _close(fg, gg, dtype, f"grad {reduction}")
        if reduction == "none":
            assert fv[0] == 0 and not fg[0].any()
            assert np.isnan(fv[1]) and np.isnan(fg[1]).all()
            assert np.isfinite(fv[2]) and np.isfinite(fg[2]).all() and fg[2, 0] == 0
            assert not fg[3].any() and not fg[4].any() and not fg[5].any()
            if not smoothing:
                assert fv[3] == 0 and np.isclose(fv[4], np.log(2.0)) and fv[5] == np.inf
            else:  # the smoothing mass on classes outside the infinities' support: inf
                assert fv[3] == fv[4] == fv[5] == np.inf
            assert fv[6] == (np.inf if smoothing else 0.0) and not fg[6].any()
            assert np.isfinite(fv[7:9]).all() and np.isfinite(fg[7:9]).all() and np.isfinite(fg[10]).all()
            assert fv[9] == 0 and np.isnan(fg[9]).all()  # the chain rule's q ⊙ (g - y Σg): NaN · 0


@needs_numba
def test_the_kernel_is_taken_on_numpy_input_only(monkeypatch):
    """A spy on the kernel: NumPy float32/64 with integer labels (masked too) take it; class weights, per-class
    targets, fused=False and kernels.disabled() do not, and give the chain rule."""
    from gradkit.kernels import log_phi_nll as module

    calls = []
    original = module.log_phi_nll
    monkeypatch.setattr(module, "log_phi_nll", lambda *a, **k: calls.append(a[0].dtype) or original(*a, **k))
    rng = np.random.default_rng(5)
    z = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    for act in (gk.LogTaylorSoftmax(), gk.LogSphericalSoftmax()):
        head = gk.compose(act, gk.NLLLoss())
        for dtype in (np.float32, np.float64):
            calls.clear()
            head.value_and_grad(z.astype(dtype), labels)
            head.value_and_grad(z.astype(dtype), labels, where=z > -1.0)
            head.vjp(z.astype(dtype), labels, np.float64(0.5))
            assert calls == [np.dtype(dtype)] * 3
        calls.clear()
        weighted = gk.compose(act, gk.NLLLoss(weight=np.array([1.0, 2.0, 0.5, 1.0])))
        weighted.value_and_grad(z, labels)
        head.value_and_grad(z, np.eye(4)[labels])  # per-class targets
        gk.compose(act, gk.NLLLoss(), fused=False).value_and_grad(z, labels)
        with disabled():
            head.value_and_grad(z, labels)
        assert calls == []
        # the fallbacks are the chain rule itself
        generic = gk.compose(act, gk.NLLLoss(weight=np.array([1.0, 2.0, 0.5, 1.0])), fused=False)
        for a, b in zip(weighted.value_and_grad(z, labels), generic.value_and_grad(z, labels), strict=True):
            np.testing.assert_array_equal(a, b)


def test_other_namespaces_take_the_chain_rule():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    z, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    for act in (gk.LogTaylorSoftmax(), gk.LogSphericalSoftmax()):
        fused, generic = gk.compose(act, gk.NLLLoss()), gk.compose(act, gk.NLLLoss(), fused=False)
        for a, b in zip(fused.value_and_grad(torch.as_tensor(z), torch.as_tensor(labels)),
                        generic.value_and_grad(z, labels), strict=True):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-12, atol=1e-15)


def test_torch_wrapped_heads_double_backward():
    """head.fused is True now, so gradkit.torch records a create_graph backward through the head's own code (the
    chain rule on torch tensors) instead of its _RecordedActivation: gradcheck and gradgradcheck still hold."""
    torch = pytest.importorskip("torch")
    import gradkit.torch as gkt

    rng = np.random.default_rng(11)
    for act in (gk.LogTaylorSoftmax(), gk.LogTaylorSoftmax(order=4), gk.LogSphericalSoftmax()):
        module = gkt.wrap(gk.compose(act, gk.NLLLoss(label_smoothing=0.1)))
        z = torch.tensor(rng.standard_normal((3, 5)), requires_grad=True)
        labels = torch.as_tensor(rng.integers(0, 5, 3))
        assert torch.autograd.gradcheck(lambda z, m=module, t=labels: m(z, t), (z,))
        assert torch.autograd.gradgradcheck(lambda z, m=module, t=labels: m(z, t), (z,))


def test_large_batches_take_the_threaded_kernel():
    """300 × 257 float32 scores (above PARALLEL_MIN): the threaded variant, on both kernel kinds, == the chain rule,
    which runs on halves below PARALLEL_MIN (its serial kernels: the threaded ones would compile for this alone)."""
    from gradkit.kernels._exp import PARALLEL_MIN

    rng = np.random.default_rng(7)
    z = (rng.standard_normal((300, 257)) * 2).astype(np.float32)
    assert z.size >= PARALLEL_MIN > z[:150].size
    labels = np.where(rng.random(300) < 0.1, -100, rng.integers(0, 257, 300))
    where = rng.random(z.shape) < 0.9
    for act in (gk.LogTaylorSoftmax(order=4), gk.LogSphericalSoftmax()):
        loss = gk.NLLLoss(label_smoothing=0.1, reduction="none")
        fused, generic = gk.compose(act, loss), gk.compose(act, loss, fused=False)
        for mask in (None, where):
            halves = [generic.value_and_grad(z[k:k + 150], labels[k:k + 150],
                                             where=None if mask is None else mask[k:k + 150]) for k in (0, 150)]
            expected = [np.concatenate([h[i] for h in halves]) for i in (0, 1)]
            for key, a, b in zip(("value", "grad"), fused.value_and_grad(z, labels, where=mask), expected,
                                 strict=True):
                _close(a, b, np.float32, key)


def test_strided_and_list_inputs():
    rng = np.random.default_rng(8)
    z = rng.standard_normal((10, 12))[::2, ::3]  # a strided view
    labels = rng.integers(0, 4, 10)[::2]
    assert not z.flags.c_contiguous and not labels.flags.c_contiguous
    for act in (gk.LogTaylorSoftmax(), gk.LogSphericalSoftmax(axis=0)):
        loss = gk.NLLLoss(axis=act.axis)
        target = labels if act.axis == -1 else rng.integers(0, 5, 4)
        fused, generic = gk.compose(act, loss), gk.compose(act, loss, fused=False)
        for t in (target, target.tolist()):
            for a, b in zip(fused.value_and_grad(z, t), generic.value_and_grad(z, t), strict=True):
                _close(a, b, np.float64, "strided")


@pytest.mark.parametrize(("target", "error", "fragment"), [
    (np.array([0, 4, 1]), ValueError, "target labels must be in [0, 3]"),
    (np.array([0, -3, 1]), ValueError, "target labels must be in [0, 3]"),
    (np.array([0.0, 1.0, 2.0]), TypeError, "target labels must be integers"),
    (np.array([0, 1]), ValueError, "target must be integer labels of shape (3,)"),
])
def test_bad_labels_are_refused_as_by_the_chain_rule(target, error, fragment):
    z = np.random.default_rng(9).standard_normal((3, 4))
    messages = []
    for fused in (None, False):
        head = gk.compose(gk.LogTaylorSoftmax(), gk.NLLLoss(), fused=fused)
        with pytest.raises(error) as info:
            head.value_and_grad(z, target)
        messages.append(str(info.value))
    assert fragment in messages[0] and messages[0] == messages[1]


def test_heads_say_the_truth():
    for act in (gk.LogTaylorSoftmax(), gk.LogSphericalSoftmax()):
        assert (type(act), gk.NLLLoss) in _FUSED
        assert gk.compose(act, gk.NLLLoss()).fused
        assert gk.compose(act, gk.NLLLoss(), fused=True).fused
        head = gk.compose(act, gk.NLLLoss(), fused=False)
        assert not head.fused and "fused=False" in repr(head)
    # not fused: the probability forms into cross-entropy keep the chain rule (its log p is clamped at the
    # smallest normal number, which a fused log form would not reproduce)
    assert not gk.compose(gk.TaylorSoftmax(), gk.CrossEntropyLoss()).fused
    with pytest.raises(ValueError, match="no fused path for spherical_softmax"):
        gk.compose(gk.SphericalSoftmax(), gk.CrossEntropyLoss(), fused=True)


def test_training_is_the_chain_rules():
    """fit with the fused head gives the parameters the chain rule gives (float64, three epochs)."""
    from gradkit.nn import SGD, Dense, Sequential, fit

    rng = np.random.default_rng(10)
    X = rng.standard_normal((96, 8))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + 2 * (X[:, 2] > 0.5)
    for act in (gk.LogTaylorSoftmax(), gk.LogSphericalSoftmax()):
        params = []
        for fused in (None, False):
            model = Sequential([Dense(8, 16, rng=0, dtype=np.float64), "relu",
                                Dense(16, 4, init="glorot", rng=1, dtype=np.float64)])
            history = fit(model, X, y, loss=gk.compose(act, gk.NLLLoss(), fused=fused), optimizer=SGD(0.1),
                          epochs=3, batch_size=32, rng=0)
            params.append((model.params, history))
        (a, ha), (b, hb) = params
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-10, atol=1e-13, err_msg=name)
        for key in ("loss", "accuracy"):
            np.testing.assert_allclose(ha[key], hb[key], rtol=1e-10, err_msg=key)
