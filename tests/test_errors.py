"""Bad input raises ValueError/TypeError naming the argument, the expected and the received value.

One table of (call, exception, message pattern), as PyTorch's OpInfo error inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradkit as gk

X = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
P = gk.Softmax()(X)

ERRORS = [
    # activations
    ("g shape", lambda: gk.Softmax().vjp(X, np.ones((2, 2))), ValueError, r"g must have the shape of x, \(2, 3\); got \(2, 2\)"),
    ("v shape", lambda: gk.Tanh().jvp(X, np.ones(3)), ValueError, r"v must have the shape of x"),
    ("y shape", lambda: gk.Softmax().vjp(X, X, y=np.ones(3)), ValueError, r"y must have the shape of x"),
    ("temperature 0", lambda: gk.Softmax(temperature=0), ValueError, r"temperature must be finite and > 0; got 0"),
    ("temperature <0", lambda: gk.LogSoftmax(temperature=-1.0), ValueError, r"temperature must be finite and > 0"),
    ("temperature str", lambda: gk.Softmax(temperature="2"), TypeError, r"temperature must be a real number"),
    ("axis range", lambda: gk.Softmax(axis=2)(X), ValueError, r"axis must be in \[-2, 1\] .* got 2"),
    ("axis type", lambda: gk.Softmax(axis=1.5), TypeError, r"axis must be an integer, got 1.5"),
    ("empty class axis", lambda: gk.Softmax()(np.zeros((3, 0))), ValueError, r"at least one entry along axis=-1; got shape \(3, 0\)"),
    ("0-d softmax", lambda: gk.Softmax()(np.float64(1.0)), ValueError, r"at least one dimension"),
    ("bool input", lambda: gk.Sigmoid()(np.array([True])), TypeError, r"x must have a real floating or integer dtype, got bool"),
    ("complex input", lambda: gk.Tanh()(np.array([1j])), TypeError, r"x must have a real dtype, got complex"),
    ("string input", lambda: gk.ReLU()("abc"), TypeError, r"x must be an array or a number, got str"),
    ("ragged input", lambda: gk.ReLU()([[1.0], [1.0, 2.0]]), TypeError, r"x must be"),
    ("mask dtype", lambda: gk.Softmax()(X, where=np.ones((2, 3))), TypeError, r"where must be a boolean mask"),
    ("mask shape", lambda: gk.Softmax()(X, where=np.ones((3, 3), bool)), ValueError, r"where must broadcast to the shape of x, \(2, 3\); got \(3, 3\)"),
    ("mask on elementwise", lambda: gk.Tanh()(X, where=np.ones((2, 3), bool)), TypeError, r"Tanh does not take where="),
    ("negative slope", lambda: gk.LeakyReLU(negative_slope=-0.1), ValueError, r"negative_slope must be finite and >= 0"),
    ("gelu approximate", lambda: gk.GELU(approximate="fast"), ValueError, r"approximate must be one of 'none', 'tanh'; got 'fast'"),
    ("unknown activation", lambda: gk.activations.get("softmaxx"), ValueError, r"unknown activation 'softmaxx'; valid names: .*softmax"),
    ("registry type", lambda: gk.activations.get(3), TypeError, r"activation must be a name"),
    # losses
    ("pred/target shape", lambda: gk.MSELoss()(X, np.ones(3)), ValueError, r"target must have the shape of pred, \(2, 3\); got \(3,\)"),
    ("class target shape", lambda: gk.CrossEntropyLoss()(P, np.ones((3, 3))), ValueError, r"target must be integer labels of shape \(2,\) or per-class targets of shape \(2, 3\)"),
    ("label out of range", lambda: gk.CrossEntropyLoss()(P, np.array([0, 3])), ValueError, r"target labels must be in \[0, 2\] or ignore_index=-100; got 0..3"),
    ("negative label", lambda: gk.NLLLoss()(np.log(P), np.array([-1, 0])), ValueError, r"target labels must be in \[0, 2\]"),
    ("float labels", lambda: gk.CrossEntropyLoss()(P, np.array([0.0, 1.0])), TypeError, r"target labels must be integers; got dtype float64"),
    ("nan soft target", lambda: gk.CrossEntropyLoss()(P, np.array([[np.nan, 0, 1], [1, 0, 0]])), ValueError, r"target contains NaN"),
    ("nan regression target", lambda: gk.MSELoss()(X, np.full((2, 3), np.nan)), ValueError, r"target contains NaN"),
    ("negative soft target", lambda: gk.CrossEntropyLoss()(P, -P), ValueError, r"target probabilities must be >= 0"),
    ("negative probability", lambda: gk.CrossEntropyLoss()(-P, np.array([0, 1])), ValueError, r"pred must be probabilities in \[0.0, 1.0\] for cross_entropy; got values in \[-0\.[0-9]+, -0\.[0-9]+\]\. Logits .* compose\(Softmax\(\), CrossEntropyLoss\(\)\)"),
    ("bce pred range", lambda: gk.BCELoss()(X, np.zeros((2, 3))), ValueError, r"pred must be probabilities in \[0.0, 1.0\] for bce; got values in \[-1.0, 3.0\]\. Logits go through BCEWithLogitsLoss"),
    ("bce target range", lambda: gk.BCEWithLogitsLoss()(X, X), ValueError, r"target must be in \[0, 1\] for bce_with_logits"),
    ("reduction", lambda: gk.MSELoss(reduction="avg"), ValueError, r"reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
    ("label smoothing", lambda: gk.CrossEntropyLoss(label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0, 1\]; got 1.5"),
    ("weight shape", lambda: gk.CrossEntropyLoss(weight=np.ones(4))(P, np.array([0, 1])), ValueError, r"weight must have shape \(3,\), one per class; got \(4,\)"),
    ("weight negative", lambda: gk.NLLLoss(weight=np.array([1.0, -1.0])), ValueError, r"weight must be finite and >= 0"),
    ("huber delta", lambda: gk.HuberLoss(delta=0), ValueError, r"delta must be finite and > 0; got 0"),
    ("loss axis", lambda: gk.CrossEntropyLoss(axis=3)(P, np.array([0, 1])), ValueError, r"axis must be in \[-2, 1\]"),
    ("empty batch target shape", lambda: gk.MSELoss()(np.zeros((0, 3)), np.zeros((0, 4))), ValueError, r"target"),
    ("loss vjp g shape", lambda: gk.MSELoss().vjp(X, X, np.ones(2)), ValueError, r"g must have the shape of the loss, \(\); got \(2,\)"),
    ("unknown loss", lambda: gk.losses.get("hinge"), ValueError, r"unknown loss 'hinge'; valid names: bce, bce_with_logits, cross_entropy"),
    ("kwargs on instance", lambda: gk.losses.get(gk.MSELoss(), reduction="sum"), TypeError, r"keyword arguments go with a loss name"),
]


@pytest.mark.parametrize("call,exc,pattern", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_raises_a_clear_error(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_integer_input_is_cast_not_rejected():
    """Documented choice: integers are cast to float64 (NumPy's rule for np.exp)."""
    assert gk.Softmax()(np.array([1, 2])).dtype == np.float64
    assert gk.MSELoss()(np.array([1, 2]), np.array([0, 0])) == 2.5


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sparsemax", "entmax15", "taylor_softmax", "relu"])
def test_unknown_constructor_arguments_name_the_public_class_and_suggest_axis(name):
    cls = type(gk.activations.get(name))
    with pytest.raises(TypeError, match=rf"^{cls.__name__}\(\) got unexpected keyword argument\(s\) 'dim'; "
                                        r"it accepts: .*axis.*\('dim' is called axis here\)"):
        cls(dim=1)


def test_unknown_loss_arguments_name_the_loss():
    with pytest.raises(TypeError, match=r"^CrossEntropyLoss\(\) got unexpected keyword argument\(s\) 'size_average'"):
        gk.CrossEntropyLoss(size_average=True)
