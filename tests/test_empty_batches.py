"""Empty batches (0 rows) through every activation, loss and composable head.

One behaviour everywhere, PyTorch's: a loss over no items with ``reduction="mean"`` is NaN
(0/0 has no finite answer), with ``"sum"`` it is 0, with ``"none"`` an empty array; every
gradient, VJP and per-item JVP is an empty array of its usual shape; a ``"mean"`` JVP is NaN
and a ``"sum"`` JVP 0. Activations give empty results of their usual shapes.

Paths: NumPy with the numba kernels, NumPy with the kernels disabled, and two namespaces
that always take the portable code (torch CPU tensors, array-api-strict arrays). Where PyTorch
has the same loss, its own answer on the same empty batch is the reference.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels

torch = pytest.importorskip("torch")
F = torch.nn.functional
xps = pytest.importorskip("array_api_strict")

PATHS = ["numpy", "numpy-portable", "torch", "array_api_strict"]
REDUCTIONS = ["mean", "sum", "none"]
RNG = np.random.default_rng(20240611)


def _to(path: str, a: np.ndarray):
    if path == "torch":
        return torch.asarray(a)
    if path == "array_api_strict":
        return xps.asarray(a)
    return a


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().numpy()
    return np.asarray(a)


def _on(path: str, fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty batch warns about nothing (no 0/0 RuntimeWarning either)
        if path == "numpy-portable":
            with kernels.disabled():
                return fn()
        return fn()


# -- activations ---------------------------------------------------------------------------------

#: (shape, axis): no rows along a leading axis, none in a middle axis, and none across a class axis 0
ACT_SHAPES = [((0, 5), -1), ((2, 0, 5), -1), ((5, 0), 0)]


@pytest.mark.parametrize("name", gk.activations.builtin_names())
@pytest.mark.parametrize("path", PATHS)
def test_activations_on_no_rows_give_empty_results(name, path):
    for shape, axis in ACT_SHAPES:
        act = gk.activations.get(name) if axis == -1 else _with_axis(name, axis)
        if name == "gelu" and path == "array_api_strict":
            act = gk.activations.get(name, approximate="tanh")  # the standard has no erf
        x = _to(path, np.zeros(shape))
        g = _to(path, RNG.standard_normal(shape))
        masks = [None]
        if act.supports_mask:
            masks.append(_to(path, np.ones(shape, dtype=bool)))
        for where in masks:
            kw = {} if where is None else {"where": where}
            y = _on(path, lambda: act.forward(x, **kw))  # noqa: B023
            assert tuple(y.shape) == shape
            assert tuple(_on(path, lambda: act.vjp(x, g, **kw)).shape) == shape  # noqa: B023
            assert tuple(_on(path, lambda: act.jvp(x, g, **kw)).shape) == shape  # noqa: B023
        jac = _on(path, lambda: act.jacobian(x))  # noqa: B023
        assert len(jac.shape) == len(shape) + 1 and 0 in tuple(jac.shape)
        if axis == -1:  # the Jacobian along the last axis: one n×n block per row
            assert tuple(jac.shape) == shape + (shape[-1],)


def _with_axis(name: str, axis: int) -> gk.Activation:
    try:
        return gk.activations.get(name, axis=axis)
    except TypeError:  # elementwise: no axis
        return gk.activations.get(name)


# -- losses and heads ----------------------------------------------------------------------------

SHAPE = (0, 5)


def _targets(loss) -> list[np.ndarray]:
    if isinstance(loss, gk.losses.ClassLoss):
        return [np.zeros(SHAPE[:-1], dtype=np.int64), np.zeros(SHAPE)]
    return [np.zeros(SHAPE)]


def _items_shape(loss) -> tuple[int, ...]:
    return SHAPE[:-1] if isinstance(loss, gk.losses.ClassLoss) else SHAPE


def _torch_reference(loss, t: np.ndarray, reduction: str):
    """PyTorch's own loss on the same empty batch (its value and the gradient's shape), or None."""
    p = torch.zeros(SHAPE, dtype=torch.float64, requires_grad=True)
    tt = torch.asarray(t)
    per_class = t.dtype.kind == "f"
    fns = {
        "mse": lambda: F.mse_loss(p, tt, reduction=reduction),
        "mae": lambda: F.l1_loss(p, tt, reduction=reduction),
        "huber": lambda: F.huber_loss(p, tt, reduction=reduction),
        "bce": lambda: F.binary_cross_entropy(p, tt, reduction=reduction),
        "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(p, tt, reduction=reduction),
        # gradkit's cross_entropy takes probabilities: PyTorch's on their log
        "cross_entropy": lambda: F.cross_entropy(torch.log(p), tt, reduction=reduction),
        "nll": lambda: (F.cross_entropy(p, tt, reduction=reduction) if per_class  # soft targets: -Σ t·p
                        else F.nll_loss(p, tt, reduction=reduction)),
    }
    if loss.name not in fns:
        return None
    out = fns[loss.name]()
    (out if reduction != "none" else (out * torch.randn(out.shape, dtype=out.dtype)).sum()).backward()
    return out.detach().numpy(), tuple(p.grad.shape)


def _check_empty(obj, loss, t: np.ndarray, path: str) -> None:
    z, tt = _to(path, np.zeros(SHAPE)), _to(path, t)
    red = loss.reduction
    value, grad = _on(path, lambda: obj.value_and_grad(z, tt))
    g = _to(path, RNG.standard_normal(_items_shape(loss) if red == "none" else ()))
    vjp = _on(path, lambda: obj.vjp(z, tt, g))
    jvp = _on(path, lambda: obj.jvp(z, tt, _to(path, RNG.standard_normal(SHAPE))))
    for a in (value, grad, vjp, jvp):  # stays in the caller's library
        assert type(a) is type(z) or (path.startswith("numpy") and isinstance(a, np.generic))
    assert tuple(grad.shape) == SHAPE and tuple(vjp.shape) == SHAPE
    expected = {"mean": np.nan, "sum": 0.0}
    if red == "none":
        assert tuple(value.shape) == _items_shape(loss) and tuple(jvp.shape) == _items_shape(loss)
    else:
        assert tuple(value.shape) == () and tuple(jvp.shape) == ()
        np.testing.assert_equal(_np(value), expected[red])
        np.testing.assert_equal(_np(jvp), expected[red])
    ref = _torch_reference(loss, t, red)
    if ref is not None:
        ref_value, ref_grad_shape = ref
        np.testing.assert_equal(_np(value), ref_value)  # NaN, 0, or empty alike
        assert tuple(ref_value.shape) == tuple(value.shape) or loss.name == "kl_div"
        assert ref_grad_shape == tuple(grad.shape)


@pytest.mark.parametrize("name", gk.losses.builtin_names())
@pytest.mark.parametrize("path", PATHS)
def test_losses_on_an_empty_batch_follow_pytorch(name, path):
    for red in REDUCTIONS:
        loss = gk.losses.get(name, reduction=red)
        for t in _targets(loss):
            _check_empty(loss, loss, t, path)


def _pairs() -> list[tuple[str, str]]:
    out = []
    for a in gk.activations.builtin_names():
        for b in gk.losses.builtin_names():
            try:
                gk.compose(a, b)
            except ValueError:
                continue
            out.append((a, b))
    return out


PAIRS = _pairs()


@pytest.mark.parametrize(("act", "loss_name"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
@pytest.mark.parametrize("path", PATHS)
def test_heads_on_an_empty_batch_follow_pytorch(act, loss_name, path):
    for red in REDUCTIONS:
        loss = gk.losses.get(loss_name, reduction=red)
        for fused in (None, False):
            head = gk.compose(act, loss, fused=fused)
            for t in _targets(loss):
                if act == "gelu" and path == "array_api_strict":
                    head = gk.compose(gk.GELU(approximate="tanh"), loss, fused=fused)
                _check_empty(head, loss, t, path)


@pytest.mark.parametrize("path", PATHS)
def test_empty_batches_still_validate_targets_and_masks(path):
    z = _to(path, np.zeros(SHAPE))
    with pytest.raises(ValueError, match=r"target"):
        gk.MSELoss()(z, _to(path, np.zeros((0, 4))))
    with pytest.raises(ValueError, match=r"target"):
        gk.compose(gk.Softmax(), gk.CrossEntropyLoss())(z, _to(path, np.zeros((0, 4))))
    with pytest.raises(ValueError, match=r"at least one class"):
        gk.CrossEntropyLoss()(_to(path, np.zeros((3, 0))), _to(path, np.zeros(3, dtype=np.int64)))
    head = gk.compose(gk.LogSoftmax(), gk.NLLLoss(reduction="sum"))
    mask = _to(path, np.ones(SHAPE, dtype=bool))
    value, grad = head.value_and_grad(z, _to(path, np.zeros(0, dtype=np.int64)), where=mask)
    np.testing.assert_equal(_np(value), 0.0)
    assert tuple(grad.shape) == SHAPE


def test_partial_sums_of_an_empty_block_add_nothing():
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    z = RNG.standard_normal((4, 5))
    y = RNG.integers(0, 5, 4)
    s, ds, d = head.partial_sums(z[:0], y[:0])
    assert float(s) == 0.0 and float(d) == 0.0 and ds.shape == (0, 5)
    s2, _, d2 = head.partial_sums(z, y)
    np.testing.assert_allclose((s + s2) / (d + d2), head(z, y), rtol=1e-14)


def test_torch_wrapped_head_on_an_empty_batch_matches_pytorch():
    from gradkit.torch import wrap

    for red in REDUCTIONS:
        z = torch.zeros(SHAPE, dtype=torch.float64, requires_grad=True)
        zr = torch.zeros(SHAPE, dtype=torch.float64, requires_grad=True)
        y = torch.zeros(0, dtype=torch.long)
        out = wrap(gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction=red)))(z, y)
        ref = F.cross_entropy(zr, y, reduction=red)
        np.testing.assert_equal(out.detach().numpy(), ref.detach().numpy())
        w = torch.randn(out.shape, dtype=torch.float64)
        (dz,) = torch.autograd.grad(out, z, grad_outputs=w)  # a random upstream, as the chain rule receives it
        (dzr,) = torch.autograd.grad(ref, zr, grad_outputs=w)
        assert dz.shape == dzr.shape == SHAPE
