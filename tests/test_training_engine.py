"""gradkit.nn._engine: the one epoch loop of nn.fit and distributed.fit, driven by a Steps strategy."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.nn import _engine


class _Steps(_engine.Steps):
    """Batches of the given values; each step's gradient is ``grad`` for every parameter."""

    unit = "chunk"

    def __init__(self, model, values, grad=0.5, correct=(1, 1), n=4):
        self.model, self.values, self.grad, self.correct, self.n = model, values, grad, correct, n
        self.epochs_drawn: list[int] = []

    def batches(self, epoch):
        self.epochs_drawn.append(epoch)
        return range(len(self.correct))

    def step(self, b):
        value = self.values[len(self.epochs_drawn) - 1]
        grads = {k: np.full_like(p, self.grad) for k, p in self.model.params.items()}
        finite = np.isfinite(value) and np.isfinite(self.grad)
        return value, self.model.params, grads if finite else None, 2, self.correct[b]


def _model():
    return nn.Sequential([nn.Dense(2, 1, rng=0, dtype=np.float64)])


def test_logs_loss_accuracy_lr_and_time_per_epoch_and_calls_back():
    model, seen = _model(), []
    steps = _Steps(model, [1.0, 3.0])
    h = _engine.run_epochs(model, steps, nn.SGD(0.1), 2, callback=lambda e, logs: seen.append((e, dict(logs))))
    assert steps.epochs_drawn == [0, 1]
    assert h["loss"] == [1.0, 3.0] and h["accuracy"] == [0.5, 0.5] and h["lr"] == [0.1, 0.1]
    assert list(h.records) == ["loss", "accuracy", "lr", "time"] and [e for e, _ in seen] == [0, 1]
    assert seen[1][1]["loss"] == 3.0


def test_accuracy_only_when_every_batch_names_classes():
    model = _model()
    h = _engine.run_epochs(model, _Steps(model, [1.0], correct=(1, None)), nn.SGD(0.1), 1)
    assert "accuracy" not in h and h["loss"] == [1.0]


@pytest.mark.parametrize("values,grad,pattern", [
    ([float("nan")], 0.5, r"^the loss became nan at epoch 1, chunk 1"),
    ([1.0], float("inf"), r"^the gradients overflowed at epoch 1, chunk 1"),
    ([1.0], 1e308, r"^the update of parameter '0.W' \(float64\) is not finite at epoch 1, chunk 1"),
])
def test_divergence_names_the_epoch_and_the_strategys_unit_and_keeps_the_weights(values, grad, pattern):
    model = _model()
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(nn.DivergenceError, match=pattern):
        _engine.run_epochs(model, _Steps(model, values, grad=grad), nn.SGD(1e10), 1)
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])


def test_update_reason_names_overflowing_gradients_unless_the_strategy_says_otherwise():
    exc = nn.DivergenceError("message", "the update is not finite")
    steps = _Steps(_model(), [1.0])
    assert steps.update_reason(exc, {"w": np.ones(3)}) == "the update is not finite"
    assert steps.update_reason(exc, {"w": np.array([1.0, np.inf])}) is None


def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    model = _model()
    val = iter([3.0, 1.0, 2.0, 2.0, 0.5])
    snapshots = []
    h = _engine.run_epochs(model, _Steps(model, [1.0] * 5), nn.SGD(0.1), 5, patience=2,
                           validate=lambda: {"loss": next(val)},
                           callback=lambda e, logs: snapshots.append({k: v.copy() for k, v in model.params.items()}))
    assert h.stopped_early and h.best_epoch == 1 and h.epochs == 4
    assert list(h.records) == ["loss", "accuracy", "val_loss", "lr", "time"] and h["val_loss"] == [3.0, 1.0, 2.0, 2.0]
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, snapshots[1][k])


def test_both_fits_run_the_engine(monkeypatch):
    calls = []
    real = _engine.run_epochs

    def spy(model, steps, *args, **kwargs):
        calls.append(type(steps).__name__)
        return real(model, steps, *args, **kwargs)

    from gradkit.nn import train

    monkeypatch.setattr(train, "run_epochs", spy)
    X, y = np.random.default_rng(0).standard_normal((10, 2)), np.arange(10) % 2
    h = nn.fit(nn.Sequential([nn.Dense(2, 2, rng=0)]), X, y, loss=gk.compose(gk.Softmax(), gk.CrossEntropyLoss()),
               epochs=2, batch_size=4)
    assert calls == ["_InMemorySteps"] and h.epochs == 2
    gd = pytest.importorskip("gradkit.distributed")
    monkeypatch.setattr(gd, "run_epochs", spy)
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        gd.fit(nn.Sequential([nn.Dense(2, 2, rng=0)]), X, y, loss=gk.compose(gk.Softmax(), gk.CrossEntropyLoss()),
               client=client)
    assert calls == ["_InMemorySteps", "_BlockSteps"]


def test_history_keeps_its_public_home():
    assert nn.History is _engine.History is nn.train.History
    h = nn.History()
    h.append(loss=1.0)
    assert nn.History.__module__ == "gradkit.nn.train"
    assert pickle.loads(pickle.dumps(h)) == h
