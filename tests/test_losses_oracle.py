"""Every gradkit loss, and the composed heads, against PyTorch autograd in float64.

PyTorch (``torch.nn.functional`` + ``torch.autograd``) is the independent oracle:

* values agree to rtol 1e-12; gradients w.r.t. ``pred`` (for a composed head,
  w.r.t. the logits ``z``) to rtol 1e-10, atol 1e-12;
* ``reduction="none"``: gradkit's ``vjp(pred, target, g)`` with a *random* upstream
  ``g`` is compared with ``torch.autograd.grad(out, pred, grad_outputs=g)`` -- an
  all-ones upstream would hide an error that scales items the wrong way;
* ``"mean"``/``"sum"``: ``grad`` against torch's gradient, and ``vjp`` with a random
  scalar ``c`` against ``c * grad``;
* ``jvp(pred, target, v)`` against ``torch.func.jvp`` (forward mode) for a random ``v``.

Geometry: shapes ``(n,)``, ``(b, n)``, ``(b, t, n)``; for class losses the class
axis is gradkit's ``axis`` (0 or -1) and is moved with ``torch.movedim`` to where
torch wants it (dim 1 for ``(N, C, ...)``, dim 0 for a 1-d ``(C,)`` input).

Where torch has a function with exactly gradkit's definition it is used directly
(``F.nll_loss`` on ``log p``/``q``, ``F.kl_div``, ``F.binary_cross_entropy[_with_logits]``,
``F.mse_loss``, ``F.l1_loss``, ``F.huber_loss``, ``F.cross_entropy`` on logits for
the softmax head). Cross-entropy/NLL with soft or smoothed targets has no such
function: ``F.cross_entropy`` re-normalises its input by ``log_softmax``, whose
derivative w.r.t. ``p`` differs from gradkit's ``-w t / p`` off the simplex. There
the gradient oracle is the defining formula written in torch ops, and that
formula's value is itself pinned to ``F.cross_entropy`` (on normalised inputs),
so the conventions (label smoothing, class weights, the mean's denominator) are
torch's own.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import scipy.special

import gradkit as gk

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL_VALUE = 1e-12
RTOL_GRAD, ATOL_GRAD = 1e-10, 1e-12
REDUCTIONS = ("mean", "sum", "none")

#: (item shape, number of classes) x gradkit class axis; the pred has the class axis inserted there
#: (a 1-d pred has a single axis, so axis 0 and -1 coincide there and it is listed once)
CLASS_GEOMETRY = [((), 5, -1)] + [(items, n, axis) for items, n in [((4,), 5), ((3, 2), 4)] for axis in (0, -1)]
ELEMENTWISE_SHAPES = [(5,), (4, 5), (3, 2, 4)]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def rng_for(*parts: Any) -> np.random.Generator:
    """A generator seeded from the test's parameters (stable across runs, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def t64(a: Any, requires_grad: bool = False) -> Any:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


def pred_shape(items: tuple[int, ...], n: int, axis: int) -> tuple[int, ...]:
    """``items`` with the class axis (length n) inserted at gradkit's ``axis``."""
    shape = list(items)
    shape.insert(axis % (len(items) + 1), n)
    return tuple(shape)


def torch_layout(x: Any, axis: int) -> Any:
    """Move gradkit's class axis to torch's: dim 1 of (N, C, ...), dim 0 of a 1-d (C,)."""
    return x if x.ndim == 1 else torch.movedim(x, axis % x.ndim, 1)


def class_dim(ndim: int) -> int:
    return 0 if ndim == 1 else 1


def is_labels(target: Any) -> bool:
    return np.issubdtype(np.asarray(target).dtype, np.integer)


def sample_labels(rng: np.random.Generator, items: tuple[int, ...], n: int, ignore: int | None) -> np.ndarray:
    """Random labels in [0, n); with ``ignore``, about a third of them ignored but never all."""
    y = np.asarray(rng.integers(0, n, items), dtype=np.int64)
    if ignore is not None:
        flat = y.reshape(-1)
        if flat[0] == ignore:
            flat[0] = (ignore + 1) % n
        flat[1::3] = ignore
    return y


def sample_soft(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Per-class targets in [0, 1], not summing to 1, with some exact zeros."""
    t = rng.uniform(0.0, 1.0, shape)
    return np.where(rng.uniform(size=shape) < 0.2, 0.0, t)


def assert_close(actual: Any, expected: Any, rtol: float, atol: float = 0.0, what: str = "") -> None:
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert np.shape(actual) == expected.shape, f"{what}: shape {np.shape(actual)} != {expected.shape}"
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol, err_msg=what)


def assert_matches_torch(
    obj: Any,
    pred: np.ndarray,
    target: Any,
    torch_fn: Callable[[Any], Any],
    reduction: str,
    rng: np.random.Generator,
    item_axis: int | None = None,
    separable: bool = True,
    grad_rtol: float = RTOL_GRAD,
) -> None:
    """Check a gradkit loss (or composed head) ``obj`` against ``torch_fn(pred_t)``.

    ``torch_fn`` builds the torch loss from a float64 tensor ``pred_t`` inside the
    graph; ``item_axis`` is the class axis the items sum over (None: elementwise).
    ``separable``: each item depends on its own entries of ``pred`` only (false for
    softmax + mse, where softmax couples the elements each item is made of).
    """
    gtol = {"rtol": grad_rtol, "atol": ATOL_GRAD}
    x = t64(pred, requires_grad=True)
    out = torch_fn(x)
    value, grad = obj.value_and_grad(pred, target)
    assert_close(value, out, RTOL_VALUE, what="value")
    assert np.asarray(value).dtype == np.float64 and np.asarray(grad).dtype == np.float64
    np.testing.assert_array_equal(obj(pred, target), value)
    np.testing.assert_array_equal(obj.grad(pred, target), grad)

    if reduction == "none":
        g = rng.standard_normal(tuple(out.shape))
        (expected,) = torch.autograd.grad(out, x, grad_outputs=t64(g))
        got = obj.vjp(pred, target, g)
        assert_close(got, expected, what="vjp (none) vs torch", **gtol)
        if separable:  # grad of "none" = the items' own gradients side by side: vjp(g) = grad * g
            g_b = g if item_axis is None else np.expand_dims(g, item_axis)
            assert_close(got, grad * g_b, 1e-13, 1e-15, "vjp (none) vs grad * g")
    else:
        assert out.ndim == 0
        (expected,) = torch.autograd.grad(out, x)
        assert_close(grad, expected, what="grad vs torch", **gtol)
        c = rng.standard_normal()
        assert_close(obj.vjp(pred, target, np.float64(c)), c * expected, what="vjp (scalar c)", **gtol)

    v = rng.standard_normal(pred.shape)
    _, tangent = torch.func.jvp(torch_fn, (t64(pred),), (t64(v),))
    assert_close(obj.jvp(pred, target, v), tangent, what="jvp vs torch.func.jvp", **gtol)


# ---------------------------------------------------------------------------
# the torch oracle for class losses
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassOpts:
    """Options of a class loss: per-class ``weight`` (sampled), ``ignore_index``, smoothing."""

    id: str
    weight: bool = False
    ignore_index: int = -100
    ignore_some: bool = False  # labels: set some items to ignore_index
    label_smoothing: float = 0.0
    temperature: float = 1.0  # composed heads only

    def kwargs(self, rng: np.random.Generator, n: int) -> dict[str, Any]:
        kw: dict[str, Any] = {"ignore_index": self.ignore_index, "label_smoothing": self.label_smoothing}
        if self.weight:
            kw["weight"] = rng.uniform(0.2, 2.0, n)
        return kw

    def target(self, rng: np.random.Generator, labels: bool, items: tuple[int, ...], n: int, shape: tuple[int, ...]):
        if labels:
            return sample_labels(rng, items, n, self.ignore_index if self.ignore_some else None)
        return sample_soft(rng, shape)


LABEL_OPTS = [
    ClassOpts("plain"),
    ClassOpts("weight", weight=True),
    ClassOpts("ignore", ignore_some=True),
    ClassOpts("ignore_class2", ignore_index=2, ignore_some=True),
    ClassOpts("smooth", label_smoothing=0.1),
    ClassOpts("weight+ignore1+smooth+T", weight=True, ignore_index=1, ignore_some=True, label_smoothing=0.25, temperature=0.7),
]
# ignore_index has no effect on per-class targets (torch refuses it there; gradkit ignores it)
SOFT_OPTS = [
    ClassOpts("plain"),
    ClassOpts("weight", weight=True),
    ClassOpts("smooth", label_smoothing=0.1),
    ClassOpts("weight+ignore1+smooth+T", weight=True, ignore_index=1, label_smoothing=0.25, temperature=0.7),
]
TARGET_OPTS = [("labels", o) for o in LABEL_OPTS] + [("soft", o) for o in SOFT_OPTS]


def class_oracle(
    kind: str,
    log_input: bool,
    x: Any,
    target: Any,
    *,
    axis: int,
    reduction: str,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> Any:
    """gradkit's ``kind`` (cross_entropy / nll / kl_div) as a torch function of ``x``
    (gradkit layout; probabilities, or log-probabilities for nll and log_input kl_div)."""
    xs = torch_layout(x, axis)
    cdim = class_dim(xs.ndim)
    n = xs.shape[cdim]
    logx = xs if (kind == "nll" or log_input) else torch.log(xs)
    w = None if weight is None else t64(weight)
    eps = label_smoothing
    if is_labels(target) and eps == 0 and kind != "kl_div":
        return F.nll_loss(logx, torch.as_tensor(target), weight=w, ignore_index=ignore_index, reduction=reduction)
    if is_labels(target):
        y = torch.as_tensor(target)
        valid = y != ignore_index
        y_safe = torch.where(valid, y, 0)
        onehot = torch.movedim(F.one_hot(y_safe, n).to(torch.float64), -1, cdim)
        t = ((1.0 - eps) * onehot + eps / n) * valid.unsqueeze(cdim)
        denom = (valid.to(torch.float64) if w is None else valid * w[y_safe]).sum()
    else:
        t = (1.0 - eps) * torch_layout(t64(target), axis) + eps / n
        denom = xs.numel() // n
    wb = 1.0 if w is None else w.reshape([n if d == cdim else 1 for d in range(xs.ndim)])
    elem = F.kl_div(logx, t, reduction="none") if kind == "kl_div" else -t * logx
    items = (wb * elem).sum(cdim)
    if reduction == "none":
        return items
    return items.sum() if reduction == "sum" else items.sum() / denom


def torch_cross_entropy(logits: Any, target: Any, *, axis: int, reduction: str, weight: Any = None,
                        ignore_index: int = -100, label_smoothing: float = 0.0) -> Any:
    """``F.cross_entropy`` on logits in gradkit layout (labels or per-class targets)."""
    zs = torch_layout(logits, axis)
    if is_labels(target):
        tt, kw = torch.as_tensor(target), {"ignore_index": ignore_index}
    else:
        tt, kw = torch_layout(t64(target), axis), {}
    w = None if weight is None else t64(weight)
    return F.cross_entropy(zs, tt, weight=w, reduction=reduction, label_smoothing=label_smoothing, **kw)


@dataclass(frozen=True)
class ClassKind:
    id: str
    name: str
    log_input: bool = False  # pred is log-probabilities (nll, kl_div(log_input=True))
    kwargs: dict = field(default_factory=dict)

    def make(self, axis: int, reduction: str, **kw: Any) -> gk.Loss:
        return gk.losses.get(self.name, axis=axis, reduction=reduction, **self.kwargs, **kw)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...], axis: int, normalized: bool = True) -> np.ndarray:
        """Probabilities / log-probabilities along ``axis`` (or, off the simplex, unnormalised values
        inside the domain: p in (0, 1], q <= 0; outside it the losses refuse, see tests/hostile/test_domains.py)."""
        if not normalized:
            return -np.abs(rng.standard_normal(shape)) - 0.05 if self.log_input else rng.uniform(0.05, 1.0, shape)
        z = 1.5 * rng.standard_normal(shape)
        return scipy.special.log_softmax(z, axis=axis) if self.log_input else scipy.special.softmax(z, axis=axis)


CLASS_KINDS = [
    ClassKind("cross_entropy", "cross_entropy"),
    ClassKind("nll", "nll", log_input=True),
    ClassKind("kl_div", "kl_div"),
    ClassKind("kl_div(log_input)", "kl_div", log_input=True, kwargs={"log_input": True}),
]


def _geometry_id(g: tuple) -> str:
    items, n, axis = g
    return f"{pred_shape(items, n, axis)}-axis{axis}"


GEOMETRY = pytest.mark.parametrize("geometry", CLASS_GEOMETRY, ids=_geometry_id)
REDUCTION = pytest.mark.parametrize("reduction", REDUCTIONS)
TARGETS = pytest.mark.parametrize("target_kind,opts", TARGET_OPTS, ids=[f"{k}-{o.id}" for k, o in TARGET_OPTS])


# ---------------------------------------------------------------------------
# class losses: cross_entropy, nll, kl_div
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CLASS_KINDS, ids=lambda k: k.id)
@TARGETS
@GEOMETRY
@REDUCTION
def test_class_loss_matches_torch(kind, target_kind, opts, geometry, reduction):
    items, n, axis = geometry
    rng = rng_for(kind.id, target_kind, opts.id, items, axis, reduction)
    shape = pred_shape(items, n, axis)
    kw = opts.kwargs(rng, n)
    loss = kind.make(axis, reduction, **kw)
    pred = kind.sample(rng, shape, axis)
    target = opts.target(rng, target_kind == "labels", items, n, shape)

    def torch_fn(x):
        return class_oracle(kind.name, kind.log_input, x, target, axis=axis, reduction=reduction, **kw)

    # where the oracle is a hand formula, pin its value to torch's own F.cross_entropy
    # (valid because pred is normalised: log_softmax(log p) = log p, log_softmax(q) = q)
    if kind.name in ("cross_entropy", "nll") and (target_kind == "soft" or opts.label_smoothing):
        logx = t64(pred) if kind.log_input else torch.log(t64(pred))
        ref = torch_cross_entropy(logx, target, axis=axis, reduction=reduction, **kw)
        assert_close(torch_fn(t64(pred)), ref, 1e-13, what="hand-written oracle vs F.cross_entropy")
        assert_close(loss(pred, target), ref, RTOL_VALUE, what="value vs F.cross_entropy")

    assert_matches_torch(loss, pred, target, torch_fn, reduction, rng, item_axis=axis % len(shape))


@pytest.mark.parametrize("kind", CLASS_KINDS, ids=lambda k: k.id)
@pytest.mark.parametrize("target_kind,opts", [("labels", LABEL_OPTS[-1]), ("soft", SOFT_OPTS[-1]), ("soft", SOFT_OPTS[0])],
                         ids=["labels-all", "soft-all", "soft-plain"])
@GEOMETRY
def test_class_loss_off_the_simplex(kind, target_kind, opts, geometry):
    """pred need not be normalised: cross_entropy's gradient is -w t / p (no softmax
    term), nll's is -w t, for any p in (0, 1] / q <= 0; every reduction."""
    items, n, axis = geometry
    rng = rng_for("off", kind.id, target_kind, opts.id, items, axis)
    shape = pred_shape(items, n, axis)
    kw = opts.kwargs(rng, n)
    pred = kind.sample(rng, shape, axis, normalized=False)
    target = opts.target(rng, target_kind == "labels", items, n, shape)
    for reduction in REDUCTIONS:
        assert_matches_torch(
            kind.make(axis, reduction, **kw), pred, target,
            lambda x, reduction=reduction: class_oracle(kind.name, kind.log_input, x, target, axis=axis, reduction=reduction, **kw),
            reduction, rng, item_axis=axis % len(shape),
        )


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # torch's own "mean" warns
@pytest.mark.parametrize("log_input", [False, True], ids=["probs", "log_input"])
@pytest.mark.parametrize("soft", [False, True], ids=["sums_to_1", "soft"])
def test_kl_div_mean_is_torch_batchmean(log_input, soft):
    """For (b, n) with class axis -1: gradkit "mean" = torch "batchmean" (per item, not
    per element: torch's own "mean" is n times smaller) and "sum" = torch "sum"."""
    rng = np.random.default_rng(17 + 2 * log_input + soft)
    b, n = 4, 6
    z = rng.standard_normal((b, n))
    pred = scipy.special.log_softmax(z, axis=-1) if log_input else scipy.special.softmax(z, axis=-1)
    t = sample_soft(rng, (b, n)) if soft else scipy.special.softmax(rng.standard_normal((b, n)), axis=-1)

    def torch_in(x):
        return x if log_input else torch.log(x)

    for gk_red, torch_red in [("mean", "batchmean"), ("sum", "sum")]:
        loss = gk.KLDivLoss(log_input=log_input, reduction=gk_red)
        assert_matches_torch(loss, pred, t, lambda x, r=torch_red: F.kl_div(torch_in(x), t64(t), reduction=r), gk_red, rng)
    torch_mean = F.kl_div(torch_in(t64(pred)), t64(t), reduction="mean")
    assert_close(gk.KLDivLoss(log_input=log_input)(pred, t), n * torch_mean, RTOL_VALUE)


@pytest.mark.parametrize("kind", CLASS_KINDS, ids=lambda k: k.id)
@pytest.mark.parametrize("weight,smoothing", [(False, 0.0), (True, 0.2)], ids=["plain", "weight+eps0.2"])
@GEOMETRY
def test_all_ignored_batch_is_zero_not_nan(kind, weight, smoothing, geometry):
    """Every label == ignore_index: "mean" gives loss 0.0 and a gradient of exactly 0
    (torch divides 0 by 0 and gives NaN, so gradkit is checked directly); "sum" and
    "none" give zeros as well, and so does the fused softmax head."""
    items, n, axis = geometry
    rng = np.random.default_rng(5)
    shape = pred_shape(items, n, axis)
    kw = {"ignore_index": 3, "label_smoothing": smoothing, **({"weight": rng.uniform(0.5, 2.0, n)} if weight else {})}
    pred = kind.sample(rng, shape, axis)
    target = np.full(items, 3, dtype=np.int64)
    for reduction in REDUCTIONS:
        loss = kind.make(axis, reduction, **kw)
        value, grad = loss.value_and_grad(pred, target)
        np.testing.assert_array_equal(value, np.zeros(items if reduction == "none" else ()))
        np.testing.assert_array_equal(grad, np.zeros(shape))
        g = np.float64(rng.standard_normal()) if reduction != "none" else rng.standard_normal(items)
        np.testing.assert_array_equal(loss.vjp(pred, target, g), np.zeros(shape))
        np.testing.assert_array_equal(loss.jvp(pred, target, rng.standard_normal(shape)), np.zeros(np.shape(value)))
    if kind.name in ("cross_entropy", "nll"):
        act = gk.Softmax(axis=axis) if kind.name == "cross_entropy" else gk.LogSoftmax(axis=axis)
        head = gk.compose(act, kind.make(axis, "mean", **kw))
        value, grad = head.value_and_grad(rng.standard_normal(shape), target)
        assert value == 0.0 and np.array_equal(grad, np.zeros(shape))


@pytest.mark.parametrize("name", ["cross_entropy", "nll", "softmax+cross_entropy"])
def test_zero_weight_sum_with_smoothing_gives_zero_gradient(name):
    """weight=[0, 1, 1], every label 0, label_smoothing=0.1, reduction="mean": the mean's
    denominator sum_i w_{y_i} is 0 for every pred, so gradkit returns loss 0.0 -- a
    constant -- and its gradient must then be 0 as well (torch gives NaN here).
    (Regression: the gradient used to keep the label-smoothing part.)"""
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    kw = {"weight": np.array([0.0, 1.0, 1.0]), "label_smoothing": 0.1}
    if name == "softmax+cross_entropy":
        obj, pred = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(**kw)), np.log(p)
    else:
        obj, pred = gk.losses.get(name, **kw), (p if name == "cross_entropy" else np.log(p))
    value, grad = obj.value_and_grad(pred, np.array([0, 0]))
    assert value == 0.0
    np.testing.assert_array_equal(grad, np.zeros_like(pred))


# ---------------------------------------------------------------------------
# elementwise losses: mse, mae, huber, bce, bce_with_logits
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ElemCase:
    id: str
    name: str
    kwargs: dict = field(default_factory=dict)
    weight: str | None = None  # None, "last" (shape (n,)) or "full" (pred's shape)
    pos_weight: bool = False  # bce_with_logits: shape (n,), along the last axis

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if self.name == "bce":
            return rng.uniform(0.02, 0.98, shape), self._binary_target(rng, shape)
        if self.name == "bce_with_logits":
            return 3.0 * rng.standard_normal(shape), self._binary_target(rng, shape)
        return 2.0 * rng.standard_normal(shape), 2.0 * rng.standard_normal(shape)

    @staticmethod
    def _binary_target(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Soft targets in [0, 1] with some hard 0s and 1s."""
        t = rng.uniform(0.0, 1.0, shape)
        u = rng.uniform(size=shape)
        return np.where(u < 0.2, 0.0, np.where(u > 0.8, 1.0, t))


def torch_elementwise(case: ElemCase, x: Any, t: np.ndarray, reduction: str, kw: dict) -> Any:
    tt = t64(t)
    w = None if kw.get("weight") is None else t64(kw["weight"])
    if case.name == "mse":
        return F.mse_loss(x, tt, reduction=reduction)
    if case.name == "mae":
        return F.l1_loss(x, tt, reduction=reduction)
    if case.name == "huber":
        return F.huber_loss(x, tt, reduction=reduction, delta=kw["delta"])
    if case.name == "bce":
        return F.binary_cross_entropy(x, tt, weight=w, reduction=reduction)
    pw = None if kw.get("pos_weight") is None else t64(kw["pos_weight"])
    return F.binary_cross_entropy_with_logits(x, tt, weight=w, pos_weight=pw, reduction=reduction)


ELEMENTWISE = [
    ElemCase("mse", "mse"),
    ElemCase("mae", "mae"),
    ElemCase("huber(delta=1)", "huber", {"delta": 1.0}),
    ElemCase("huber(delta=0.3)", "huber", {"delta": 0.3}),
    ElemCase("bce", "bce"),
    ElemCase("bce(weight=last)", "bce", weight="last"),
    ElemCase("bce(weight=full)", "bce", weight="full"),
    ElemCase("bce_with_logits", "bce_with_logits"),
    ElemCase("bce_with_logits(weight=last)", "bce_with_logits", weight="last"),
    ElemCase("bce_with_logits(pos_weight)", "bce_with_logits", pos_weight=True),
    ElemCase("bce_with_logits(weight=full,pos_weight)", "bce_with_logits", weight="full", pos_weight=True),
]


def _elem_kwargs(case: ElemCase, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    kw = dict(case.kwargs)
    if case.weight:
        kw["weight"] = rng.uniform(0.2, 2.0, shape[-1:] if case.weight == "last" else shape)
    if case.pos_weight:
        kw["pos_weight"] = rng.uniform(0.3, 3.0, shape[-1:])
    return kw


@pytest.mark.parametrize("case", ELEMENTWISE, ids=lambda c: c.id)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@REDUCTION
def test_elementwise_loss_matches_torch(case, shape, reduction):
    rng = rng_for(case.id, shape, reduction)
    kw = _elem_kwargs(case, rng, shape)
    loss = gk.losses.get(case.name, reduction=reduction, **kw)
    pred, target = case.sample(rng, shape)
    assert_matches_torch(loss, pred, target, lambda x: torch_elementwise(case, x, target, reduction, kw), reduction, rng)


EDGES = [
    # p at 0 and 1 exactly: both libraries clamp each log at -100 and p(1-p) at 1e-12 -- torch's
    # 1e-12 is a float32 constant (9.9999999600e-13), so the clamped gradients differ by 4e-9 relative
    pytest.param("bce", {}, [0.0, 1.0, 0.0, 1.0, 0.5, 1e-30], [0.0, 1.0, 1.0, 0.0, 0.3, 1.0], id="bce-p_at_0_and_1"),
    pytest.param("bce", {"weight": [2.0, 0.5, 1.0, 3.0, 0.0, 1.0]}, [0.0, 1.0, 0.0, 1.0, 0.5, 1e-30],
                 [0.0, 1.0, 1.0, 0.0, 0.3, 1.0], id="bce(weight)-p_at_0_and_1"),
    # saturated logits: exact, no overflow
    pytest.param("bce_with_logits", {"pos_weight": [0.5, 2.0, 3.0, 1.0, 0.7, 4.0]}, [-1000.0, 1000.0, -50.0, 50.0, 0.0, 1e-3],
                 [1.0, 0.0, 0.5, 0.5, 1.0, 0.0], id="bce_with_logits-saturated"),
    # kinks: mae at d = 0 (derivative 0, as torch), huber at |d| = delta exactly
    pytest.param("mae", {}, [1.0, 2.0, 3.0, -1.5], [1.0, 2.5, 3.0, -1.5], id="mae-d0"),
    pytest.param("huber", {"delta": 0.5}, [0.5, -0.5, 0.25, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], id="huber-at_delta"),
]


@pytest.mark.parametrize("name,kwargs,pred,target", EDGES)
@REDUCTION
def test_elementwise_edges_match_torch(name, kwargs, pred, target, reduction):
    rng = rng_for("edge", name, pred, reduction)
    pred, target = np.array(pred), np.array(target)
    case = ElemCase(name, name)
    kw = {k: (np.array(v) if isinstance(v, list) else v) for k, v in kwargs.items()}
    loss = gk.losses.get(name, reduction=reduction, **kw)
    assert_matches_torch(loss, pred, target, lambda x: torch_elementwise(case, x, target, reduction, kw), reduction, rng,
                         grad_rtol=1e-8 if name == "bce" else RTOL_GRAD)


def test_registry_names_map_to_the_classes():
    expected = {
        "mse": gk.MSELoss, "mae": gk.MAELoss, "huber": gk.HuberLoss, "cross_entropy": gk.CrossEntropyLoss,
        "nll": gk.NLLLoss, "bce": gk.BCELoss, "bce_with_logits": gk.BCEWithLogitsLoss, "kl_div": gk.KLDivLoss,
    }
    for name, cls in expected.items():
        assert type(gk.losses.get(name)) is cls
        assert gk.losses.get(name, reduction="sum").reduction == "sum"


# ---------------------------------------------------------------------------
# composed heads: gradient w.r.t. the logits z
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassHead:
    id: str
    act: str  # "softmax" or "log_softmax"
    kind: ClassKind
    fused: bool | None = None
    #: the target options to run (ids from TARGET_OPTS); None: all of them
    only: tuple[str, ...] | None = None

    def build(self, axis: int, reduction: str, temperature: float, kw: dict) -> gk.Composed:
        act = gk.activations.get(self.act, axis=axis, temperature=temperature)
        return gk.compose(act, self.kind.make(axis, reduction, **kw), fused=self.fused)

    def oracle(self, z: Any, target: Any, axis: int, reduction: str, temperature: float, kw: dict) -> Any:
        d = axis % z.ndim
        if self.act == "softmax" and self.kind.name == "cross_entropy":  # torch's own fused loss on logits
            return torch_cross_entropy(z / temperature, target, axis=axis, reduction=reduction, **kw)
        x = (torch.softmax if self.act == "softmax" else torch.log_softmax)(z / temperature, dim=d)
        return class_oracle(self.kind.name, self.kind.log_input, x, target, axis=axis, reduction=reduction, **kw)


CE, NLL, KL, KL_LOG = CLASS_KINDS
_SOME = ("labels-plain", "labels-weight+ignore1+smooth+T", "soft-plain", "soft-weight+ignore1+smooth+T")
CLASS_HEADS = [
    ClassHead("softmax+cross_entropy", "softmax", CE),
    ClassHead("softmax+cross_entropy(unfused)", "softmax", CE, fused=False, only=_SOME),
    ClassHead("log_softmax+nll", "log_softmax", NLL),
    ClassHead("log_softmax+nll(unfused)", "log_softmax", NLL, fused=False, only=_SOME),
    ClassHead("softmax+kl_div", "softmax", KL, only=_SOME),
    ClassHead("log_softmax+kl_div(log_input)", "log_softmax", KL_LOG, only=_SOME),
]
HEAD_PARAMS = [
    pytest.param(h, k, o, id=f"{h.id}-{k}-{o.id}")
    for h in CLASS_HEADS for k, o in TARGET_OPTS if h.only is None or f"{k}-{o.id}" in h.only
]


@pytest.mark.parametrize("head_case,target_kind,opts", HEAD_PARAMS)
@GEOMETRY
@REDUCTION
def test_class_head_matches_torch(head_case, target_kind, opts, geometry, reduction):
    items, n, axis = geometry
    rng = rng_for(head_case.id, target_kind, opts.id, items, axis, reduction)
    shape = pred_shape(items, n, axis)
    kw = opts.kwargs(rng, n)
    temperature = opts.temperature
    head = head_case.build(axis, reduction, temperature, kw)
    if head_case.fused is None:
        # softmax fuses with every class loss (kl_div from the logits too); log_softmax + kl_div takes the chain rule
        assert head.fused == (head_case.act != "log_softmax" or head_case.kind.name != "kl_div")
    z = 2.0 * rng.standard_normal(shape)
    target = opts.target(rng, target_kind == "labels", items, n, shape)
    assert_matches_torch(
        head, z, target,
        lambda x: head_case.oracle(x, target, axis, reduction, temperature, kw),
        reduction, rng, item_axis=axis % len(shape),
    )


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("weight", [None, "last", "full"])
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@REDUCTION
def test_sigmoid_bce_head_matches_torch(fused, weight, shape, reduction):
    rng = rng_for("sigmoid+bce", fused, weight, shape, reduction)
    case = ElemCase("bce", "bce", weight=weight)
    kw = _elem_kwargs(case, rng, shape)
    head = gk.compose(gk.Sigmoid(), gk.BCELoss(reduction=reduction, **kw), fused=fused)
    assert head.fused == (fused is None)
    z = 2.0 * rng.standard_normal(shape)
    target = ElemCase._binary_target(rng, shape)
    assert_matches_torch(
        head, z, target, lambda x: torch_elementwise(case, torch.sigmoid(x), target, reduction, kw), reduction, rng
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7], ids=["T1", "T0.7"])
@pytest.mark.parametrize("axis", [0, -1], ids=["axis0", "axis-1"])
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@REDUCTION
def test_softmax_mse_head_matches_torch(temperature, axis, shape, reduction):
    rng = rng_for("softmax+mse", temperature, axis, shape, reduction)
    head = gk.compose(gk.Softmax(axis=axis, temperature=temperature), gk.MSELoss(reduction=reduction))
    assert not head.fused
    z = 2.0 * rng.standard_normal(shape)
    target = sample_soft(rng, shape)
    assert_matches_torch(
        head, z, target,
        lambda x: F.mse_loss(torch.softmax(x / temperature, dim=axis % x.ndim), t64(target), reduction=reduction),
        reduction, rng, separable=False,
    )


# ---------------------------------------------------------------------------
# the math reference values
# ---------------------------------------------------------------------------
#: p * sum(t) - t with p = softmax([1, 2, 3]) = [0.0900306, 0.2447285, 0.6652410] and sum(t) = 0.7.
#: (The value [-0.43699, -0.02872, 0.46571] once quoted for this example is off by up to 4e-5.)
SOFTMAX_XENT_REFERENCE = [-0.4369786, -0.0286901, 0.4656687]


def test_softmax_cross_entropy_reference_gradient():
    """z = [1, 2, 3], t = [.5, .2, 0] (sums to 0.7): dL/dz = p * sum(t) - t, not p - t."""
    z, t = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.2, 0.0])
    for fused in (None, False):
        head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="sum"), fused=fused)
        value, dz = head.value_and_grad(z, t)
        np.testing.assert_allclose(dz, SOFTMAX_XENT_REFERENCE, atol=1e-7)
        np.testing.assert_allclose(value, 1.4853241751110664, rtol=1e-12)
        zt = t64(z, requires_grad=True)
        loss_t = -(t64(t) * torch.log(torch.softmax(zt, dim=0))).sum()
        (expected,) = torch.autograd.grad(loss_t, zt)
        assert_close(value, loss_t, RTOL_VALUE)
        assert_close(dz, expected, RTOL_GRAD, ATOL_GRAD)
        p = scipy.special.softmax(z)
        np.testing.assert_allclose(dz, p * t.sum() - t, rtol=1e-12)
        assert not np.allclose(dz, p - t, atol=1e-3)


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("pair", ["softmax+cross_entropy", "log_softmax+nll"])
def test_float32_huge_equal_logits_give_log2(pair, fused):
    """Logits [1e8, 1e8] in float32, label 0: loss log 2 in float32, gradient [-1/2, 1/2]."""
    z = np.array([1e8, 1e8], dtype=np.float32)
    act, loss = (gk.Softmax(), gk.CrossEntropyLoss()) if pair.startswith("softmax") else (gk.LogSoftmax(), gk.NLLLoss())
    head = gk.compose(act, loss, fused=fused)
    value, dz = head.value_and_grad(z, np.array(0))
    assert np.asarray(value).dtype == np.float32 and dz.dtype == np.float32
    np.testing.assert_allclose(value, math.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(dz, [-0.5, 0.5], rtol=1e-6)
