"""Property: finite input -> finite output, or a documented error.

Over every activation (the registry, with the constructor variants of ``tests/cases.py``),
every loss and every composable head (each pair ``compose`` accepts): forward, VJP, JVP
and Jacobian; loss value, gradient, VJP and JVP; float32 and float64; values drawn from
ordinary ones, huge ones near the dtype's maximum, tiny ones (subnormals, signed zeros),
and boolean masks.

What counts as a pass, for each output entry:

* finite; or
* infinite where the exact answer is beyond the dtype's range: the same call in
  ``np.longdouble`` (80-bit on x86-64, exponent range to 1e4932, so nothing there
  overflows on the way) gives a magnitude above the dtype's maximum, or ±inf itself
  (a masked entry of a log-activation is -inf by definition). Examples: SELU(max) =
  1.05·max; MSE's value (1e200)²; log_softmax of a row spanning [-max, max].
* never NaN.

The only errors allowed are ValueError/TypeError, and none is expected here: every input
is drawn inside the function's domain.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import gradkit as gk

from ..cases import ACTIVATIONS

if np.finfo(np.longdouble).max < np.longdouble("1e400"):  # pragma: no cover - e.g. Windows, macOS on arm64
    pytest.skip("np.longdouble has no wider range than float64 here: no oracle for 'beyond the range'",
                allow_module_level=True)

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


def _special(dtype) -> list[float]:
    info = np.finfo(dtype)
    big, tiny = float(info.max), float(info.smallest_subnormal)
    values = [0.0, -0.0, tiny, -tiny, float(info.smallest_normal), -float(info.smallest_normal), 1.0, -1.0,
              big, -big, big / 2, -big / 2, big / 3, float(np.sqrt(big)), -float(np.sqrt(big)), 1e30, -1e30]
    # each rounded to the dtype, as arrays() stores it: NumPy < 2 compares the float64 value with the stored one
    # and hypothesis refuses the inexact (NumPy 2 compares in the dtype)
    return [float(dtype(v)) for v in values]


def values(dtype, lo: float | None = None, hi: float | None = None):
    """Finite values of ``dtype``: ordinary, huge (near max), tiny, clipped to [lo, hi]."""
    width = 32 if dtype == np.float32 else 64
    special = [v for v in _special(dtype) if (lo is None or v >= lo) and (hi is None or v <= hi)]
    ordinary = st.floats(-50.0 if lo is None else max(lo, -50.0), 50.0 if hi is None else min(hi, 50.0),
                         allow_nan=False, allow_infinity=False, width=width)
    return st.one_of(ordinary, st.sampled_from(special))


def grid(dtype, shape, lo=None, hi=None):
    return arrays(dtype, shape, elements=values(dtype, lo, hi))


SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 5))


def _as64(a):
    a = _wide(a)
    return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.longdouble else a


def _wide(a):
    if a is None or isinstance(a, (int, str)):
        return a
    a = np.asarray(a)
    return a.astype(np.longdouble) if a.dtype.kind == "f" else a


def beyond(dtype, a) -> bool:
    """Whether any entry of the long-double array ``a`` is beyond ``dtype``'s range."""
    return bool(np.any(np.abs(np.asarray(a, dtype=np.longdouble)) > float(np.finfo(dtype).max)))


def items_beyond(dtype, loss, p, t) -> bool:
    """Documented limit 1: a per-item loss beyond the range (sparsemax loss ⟨y - t, z⟩ = 2·max) is inf,
    and so is a sum or mean over it, also where the mean itself would fit (the value only: gradients stay
    finite wherever their exact value is)."""
    per_item = type(loss)(**{**loss.get_params(), "reduction": "none"})
    try:
        return beyond(dtype, per_item(_wide(p), _wide(t)))
    except TypeError:  # no long-double path
        return False


def output_beyond(dtype, p_wide) -> bool:
    """Documented limit 2: where the activation's own output is beyond the range (SELU(max) = 1.05·max),
    the loss sees inf and follows its rules for infinite input: the value is inf or NaN (a Fenchel–Young
    loss of +inf scores), and a JVP whose infinite terms have both signs is NaN; the exact answers may
    be finite, but computing them needs a wider range than the dtype's."""
    return beyond(dtype, p_wide)


def check(name: str, dtype, fn, *args, allow_inf=False, allow_nan: bool = False, **kwargs):
    """Run ``fn(*args)``; its outputs must be finite, or inf where the long-double answer is beyond ``dtype``
    (or anywhere in the outputs ``allow_inf`` names — True: all — a documented limit); never NaN (but with
    ``allow_nan``, limit 2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow warnings go with a right inf
        out = fn(*args, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        bad = [np.asarray(o) for o in outs]
        if all(np.isfinite(o).all() for o in bad):
            return
        try:
            ref = fn(*[_wide(a) for a in args], **{k: _wide(v) for k, v in kwargs.items()})
        except TypeError:  # no long-double path (GELU's scipy ndtr): float64 decides for float32 input;
            # for float64 input there is no wider oracle, and inf is accepted (never NaN)
            if dtype == np.float32:
                ref = fn(*[_as64(a) for a in args], **{k: _as64(v) for k, v in kwargs.items()})
            else:
                ref, allow_inf = None, True
    refs = ref if isinstance(ref, tuple) else (ref,)
    fmax = float(np.finfo(dtype).max)
    for k, o in enumerate(bad):
        assert allow_nan or not np.isnan(o).any(), f"{name}: NaN in output {k} for finite input\n{args}\n{o}"
        inf = np.isinf(o)
        if inf.any() and not (allow_inf is True or (allow_inf and k in allow_inf)):
            assert ref is not None, f"{name}: inf in output {k} and no long-double oracle\n{args}\n{o}"
            r = np.broadcast_to(np.asarray(refs[k]), o.shape)
            beyond = np.abs(r) > fmax * (1 - 1e-6)
            same_sign = np.sign(r) == np.sign(o)
            ok = ~inf | (beyond & same_sign)
            assert ok.all(), f"{name}: inf in output {k} where the exact answer is finite\n{args}\ngot {o}\nexact {r}"


# -- activations ----------------------------------------------------------------------------

ACT_VARIANTS = sorted({(c.name, tuple(sorted(c.kwargs.items()))) for c in ACTIVATIONS}
                      | {(n, ()) for n in gk.activations.names()})


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@SETTINGS
@given(data=st.data())
def test_activations_finite_in_finite_out(dtype, data):
    name, kw = data.draw(st.sampled_from(ACT_VARIANTS), label="activation")
    act = gk.activations.get(name, **dict(kw))
    x = data.draw(SHAPES.flatmap(lambda s: grid(dtype, s)), label="x")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    g = rng.standard_normal(x.shape).astype(dtype)
    extra: dict = {}
    if act.supports_mask and data.draw(st.booleans(), label="masked"):
        extra["where"] = rng.random(x.shape) < 0.7
    if act.stochastic:  # hold the Gumbel noise fixed, the same for the long-double oracle
        extra["noise"] = rng.gumbel(size=x.shape).astype(dtype)
    label = f"{act!r} {dtype.__name__}"
    check(f"{label}.forward", dtype, act.forward, x, **extra)
    check(f"{label}.vjp", dtype, act.vjp, x, g, **extra)
    check(f"{label}.jvp", dtype, act.jvp, x, g, **extra)
    check(f"{label}.jacobian", dtype, act.jacobian, x, **extra)


# -- losses ---------------------------------------------------------------------------------


def _pred(dtype, loss, shape):
    lo, hi = loss.input_domain
    return grid(dtype, shape, None if lo == -np.inf else lo, None if hi == np.inf else hi)


def _target(data, loss, dtype, shape, rng):
    if isinstance(loss, gk.losses.ClassLoss):
        if data.draw(st.booleans(), label="labels"):
            return rng.integers(0, shape[-1], shape[:-1])
        return data.draw(grid(dtype, shape, 0.0, 1.0), label="soft target")
    if isinstance(loss, (gk.BCELoss, gk.BCEWithLogitsLoss)):
        return data.draw(grid(dtype, shape, 0.0, 1.0), label="target")
    return data.draw(grid(dtype, shape), label="target")


def _upstream(loss, items_shape, rng, dtype):
    shape = items_shape if loss.reduction == "none" else ()
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@SETTINGS
@given(data=st.data())
def test_losses_finite_in_finite_out(dtype, data):
    name = data.draw(st.sampled_from(gk.losses.names()), label="loss")
    loss = gk.losses.get(name, reduction=data.draw(st.sampled_from(REDUCTIONS), label="reduction"))
    shape = data.draw(SHAPES, label="shape")
    p = data.draw(_pred(dtype, loss, shape), label="pred")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    t = _target(data, loss, dtype, shape, rng)
    items_shape = shape[:-1] if isinstance(loss, gk.losses.ClassLoss) else shape
    label = f"{loss!r} {dtype.__name__}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        limit = items_beyond(dtype, loss, p, t)
    check(f"{label}.value_and_grad", dtype, loss.value_and_grad, p, t, allow_inf={0} if limit else False)
    check(f"{label}.vjp", dtype, loss.vjp, p, t, _upstream(loss, items_shape, rng, dtype))
    v = rng.standard_normal(shape).astype(dtype)
    check(f"{label}.jvp", dtype, loss.jvp, p, t, v)


# -- composed heads -------------------------------------------------------------------------


def _pairs():
    out = []
    for a in gk.activations.names():
        for b in gk.losses.names():
            try:
                gk.compose(a, b)
            except ValueError:
                continue
            out.append((a, b))
    return out


PAIRS = _pairs()


def test_the_pairs_cover_every_activation_and_loss():
    assert {a for a, _ in PAIRS} == set(gk.activations.names())
    assert {b for _, b in PAIRS} == set(gk.losses.names())


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@SETTINGS
@given(data=st.data())
def test_composed_heads_finite_in_finite_out(dtype, data):
    a, b = data.draw(st.sampled_from(PAIRS), label="pair")
    act = gk.activations.get(a)
    loss = gk.losses.get(b, reduction=data.draw(st.sampled_from(REDUCTIONS), label="reduction"))
    head = gk.compose(act, loss, fused=data.draw(st.sampled_from([None, False]), label="fused"))
    shape = data.draw(SHAPES, label="shape")
    z = data.draw(grid(dtype, shape), label="z")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    t = _target(data, loss, dtype, shape, rng)
    where = None
    if act.supports_mask and data.draw(st.booleans(), label="masked"):
        where = rng.random(shape) < 0.7
    if act.stochastic:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a row spanning the range warns (rightly)
            act.forward(z)  # its noise: the head's calls below reuse it (frozen)
    items_shape = shape[:-1] if isinstance(loss, gk.losses.ClassLoss) else shape
    label = f"{head!r} {dtype.__name__}"
    ctx = act.frozen() if act.stochastic else _nullcontext()
    with ctx:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                p_wide = act(_wide(z), where=where)
            except TypeError:  # GELU has no long-double path: the dtype's own output
                p_wide = act(z, where=where)
            p_wide = np.where(where, p_wide, 0) if where is not None else p_wide  # masked entries take no part
            limit = False
            if where is None:  # (under a mask the loss's items are those of the live classes only)
                limit = items_beyond(dtype, loss, z if head.paired else p_wide, t)
        act_beyond = output_beyond(dtype, p_wide)
        value_inf = True if act_beyond else ({0} if limit else False)
        check(f"{label}.value_and_grad", dtype, head.value_and_grad, z, t, where=where, allow_inf=value_inf,
              allow_nan=act_beyond)
        check(f"{label}.vjp", dtype, head.vjp, z, t, _upstream(loss, items_shape, rng, dtype), where=where,
              allow_inf=act_beyond, allow_nan=act_beyond)
        v = rng.standard_normal(shape).astype(dtype)
        check(f"{label}.jvp", dtype, head.jvp, z, t, v, where=where, allow_inf=act_beyond, allow_nan=act_beyond)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
