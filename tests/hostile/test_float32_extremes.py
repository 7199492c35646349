"""float32 heads at the float32 extremes agree with the same head in float64.

Every composable head (``compose(a, l)`` for each pair it accepts), float32 scores built from
±max (3.4028235e38), 0 and 1 (all at max, all at -max, mixes with 0, alternating signs), natural
targets (labels, soft targets, values in [0, 1]). The float64 computation of the same head at the
same (float32-representable) inputs is the reference: wherever it is finite and within float32's
range, float32 must be finite and agree to rtol 1e-4; never NaN where float64 is finite.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradkit as gk

MAX = float(np.finfo(np.float32).max)
N = 5


def _rows() -> dict[str, list[float]]:
    rng = np.random.default_rng(7)
    signs = rng.choice([-1.0, 1.0], N)
    return {
        "max": [MAX] * N,
        "-max": [-MAX] * N,
        "-max,0": [-MAX] * (N - 1) + [0.0],
        "max,0": [MAX] * (N - 1) + [0.0],
        "0,max,0": [0.0, MAX, 0.0, 1.0, 0.0],
        "max,-max": [MAX if k % 2 == 0 else -MAX for k in range(N)],
        "-max,max": [-MAX if k % 2 == 0 else MAX for k in range(N)],
        "random signs": list(signs * MAX),
        "max,-max,0": [MAX, -MAX, 0.0, -MAX, 1.0],
    }


ROWS = _rows()


def _pairs() -> list[tuple[str, str]]:
    out = []
    for a in gk.activations.builtin_names():
        if a == "gumbel_softmax":  # stochastic: float32 and float64 draw different noise
            continue
        for b in gk.losses.builtin_names():
            try:
                gk.compose(a, b)
            except ValueError:
                continue
            out.append((a, b))
    return out


PAIRS = _pairs()


def _targets(loss, rng) -> dict[str, np.ndarray]:
    if isinstance(loss, gk.losses.ClassLoss):
        soft = rng.random((1, N))
        return {"label 0": np.array([0]), "label -1": np.array([N - 1]), "uniform": np.full((1, N), 1.0 / N),
                "soft": soft / soft.sum()}
    return {"t in [0, 1]": rng.random((1, N)), "t = 0": np.zeros((1, N))}


def _agree(name: str, got, ref) -> None:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert not np.isnan(got[~np.isnan(ref)]).any(), f"{name}: NaN where float64 is finite\ngot {got}\nfloat64 {ref}"
    fits = np.isfinite(ref) & (np.abs(ref) <= MAX)
    # entries far below the largest one, and below 1 (a loss's own scale: probabilities, targets), are float32's
    # rounding of the larger ones (a zero gradient computed as 1e-8)
    scale = max(1.0, float(np.max(np.abs(ref[fits]), initial=0.0)))
    np.testing.assert_allclose(got[fits], ref[fits], rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def _clamped(head, z64, t) -> bool:
    """Whether a loss on probabilities clamps its log where float32 must: a probability below float32's
    smallest normal number (cross_entropy, kl_div clamp log p there), or within float32's epsilon of 0 or 1
    (bce clamps its logs at -100, like PyTorch). The exact value is then beyond what a float32
    probability holds; the log-form heads (softmax + cross_entropy / kl_div, sigmoid + bce) are exact."""
    loss = head.loss
    if head.fused or not isinstance(loss, (gk.CrossEntropyLoss, gk.KLDivLoss, gk.BCELoss)):
        return False
    if isinstance(loss, gk.KLDivLoss) and loss.log_input:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = np.asarray(head.forward(z64), dtype=np.float64)
    if isinstance(loss, gk.BCELoss):
        return bool(np.any(np.minimum(p, 1.0 - p) < np.finfo(np.float32).eps))
    return bool(np.any(p < np.finfo(np.float32).smallest_normal))


@pytest.mark.parametrize(("act", "loss_name"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_float32_heads_at_the_extremes_agree_with_float64(act, loss_name, reduction):
    rng = np.random.default_rng(abs(hash((act, loss_name, reduction))) % 2**32)
    head = gk.compose(act, gk.losses.get(loss_name, reduction=reduction))
    for row_name, row in ROWS.items():
        z32 = np.array([row], dtype=np.float32)
        z64 = z32.astype(np.float64)
        for t_name, t in _targets(head.loss, rng).items():
            t32 = t.astype(np.float32) if t.dtype.kind == "f" else t
            t64 = t32.astype(np.float64) if t.dtype.kind == "f" else t
            g = rng.standard_normal((1,) if reduction == "none" and isinstance(head.loss, gk.losses.ClassLoss)
                                    else (1, N) if reduction == "none" else ())
            v = rng.standard_normal((1, N)).astype(np.float32).astype(np.float64)
            label = f"{head!r} at [{row_name}], target {t_name}"
            if _clamped(head, z64, t64):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ref = head.value_and_grad(z64, t64) + (head.vjp(z64, t64, g), head.jvp(z64, t64, v))
                got = head.value_and_grad(z32, t32) + (head.vjp(z32, t32, g.astype(np.float32)),
                                                       head.jvp(z32, t32, v.astype(np.float32)))
            for k, what in enumerate(("value", "grad", "vjp", "jvp")):
                _agree(f"{label}: {what}", got[k], ref[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_softmax_kl_div_is_exact_where_a_probability_underflows(dtype):
    """Was 87.3 in float32 and 708.4 in float64 (log p clamped at the smallest normal number); exactly
    -log softmax(z)_0 = max + log(1 + 4·e^-max) = max, and 0.8·max + Σ t log t for the uniform target."""
    z = np.array([[-MAX] * 4 + [0.0]], dtype=dtype)
    head = gk.compose(gk.Softmax(), gk.KLDivLoss(reduction="sum"))
    assert head.fused
    np.testing.assert_allclose(head(z, np.array([0])), MAX, rtol=1e-6)
    uniform = np.full((1, N), 1.0 / N, dtype=dtype)
    np.testing.assert_allclose(head(z, uniform), 0.8 * MAX + np.log(1.0 / N), rtol=1e-6)
    # and the gradient is the cross-entropy's, p·Σt - t
    np.testing.assert_allclose(head.grad(z, uniform), gk.Softmax()(z) - uniform, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss_name", ["mse", "bce_with_logits", "sparsemax_loss", "entmax15_loss"])
def test_selu_at_the_float32_maximum_is_computed_beyond_its_output_overflow(loss_name):
    """selu(max) = 1.0507·max leaves float32: the head was inf or NaN; the float64 answer is finite."""
    rng = np.random.default_rng(3)
    loss = gk.losses.get(loss_name, reduction="mean")
    t = np.array([2]) if isinstance(loss, gk.losses.ClassLoss) else rng.random((1, N))
    z = np.full((1, N), MAX, dtype=np.float32)
    head = gk.compose(gk.SELU(), loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float32's own pass overflows, and says so
        value, grad = head.value_and_grad(z, t.astype(np.float32) if t.dtype.kind == "f" else t)
    ref_value, ref_grad = head.value_and_grad(z.astype(np.float64), t)
    assert grad.dtype == np.float32 and np.isfinite(grad).all()
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5)
    if abs(ref_value) <= MAX:  # MSE's value, (1.05·max)², is beyond float32 itself: inf is right
        np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    else:
        assert value == np.inf
