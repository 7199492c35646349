"""Data-parallel training on a Dask LocalCluster (2 worker processes, 1 thread each)
equals single-process training; streams from Zarr / .npy; survives a killed worker."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
gd = pytest.importorskip("gradkit.distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _data(n=1200, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    return X, y % classes


def _model(d=6, out=3):
    return nn.Sequential([nn.Dense(d, 12, rng=0, dtype=np.float64), "tanh", nn.Dense(12, out, rng=1, dtype=np.float64)])


def _close(m1, m2, rtol=1e-10):
    for k in m1.params:
        np.testing.assert_allclose(m2.params[k], m1.params[k], rtol=rtol, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("head,kind", [
    (gk.compose(gk.Softmax(), gk.CrossEntropyLoss(label_smoothing=0.1)), "labels"),
    (gk.compose(gk.Softmax(), gk.MSELoss()), "onehot"),
    (gk.compose(gk.Sparsemax(), gk.SparsemaxLoss(ignore_index=2)), "labels"),
    (gk.compose(gk.Identity(), gk.MSELoss(reduction="sum")), "regression"),
], ids=["softmax+ce", "softmax+mse", "sparsemax", "regression-sum"])
def test_full_batch_equals_single_process(client, head, kind):
    X, y = _data()
    target = {"labels": y, "onehot": np.eye(3)[y], "regression": X[:, :3] @ np.array([1.0, -2.0, 0.5])}[kind]
    single, dist = _model(out=1 if kind == "regression" else 3), _model(out=1 if kind == "regression" else 3)
    opt = lambda: nn.Adam(0.05) if kind != "regression" else nn.SGD(1e-4)
    h1 = nn.fit(single, X, target, loss=head, optimizer=opt(), epochs=4, batch_size=len(X), rng=0)
    Xd = da.from_array(X, chunks=(300, 6))
    yd = da.from_array(target, chunks=(250,) + target.shape[1:])  # other row chunks: rechunked to X's
    h2 = gd.fit(dist, Xd, yd, loss=head, optimizer=opt(), epochs=4, client=client)
    np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=1e-10)
    if "accuracy" in h1:
        np.testing.assert_allclose(h2["accuracy"], h1["accuracy"])
    _close(single, dist)


def test_minibatches_equal_the_same_batches_in_one_process(client):
    X, y = _data()
    head = gk.compose(gk.LogSoftmax(), gk.NLLLoss())
    chunks = (400, 500, 300)
    dist = _model()
    gd.fit(dist, da.from_array(X, chunks=(chunks, 6)), da.from_array(y, chunks=(chunks,)), loss=head,
           optimizer=nn.SGD(0.2, momentum=0.9), epochs=2, batch_size=64, rng=7, client=client)
    single, opt = _model(), nn.SGD(0.2, momentum=0.9)
    offsets = np.cumsum((0,) + chunks)
    for epoch in range(2):
        for rows in gd.minibatch_rows(chunks, 64, seed=7, epoch=epoch):
            idx = np.concatenate([offsets[b] + r for b, r in enumerate(rows)])
            logits = single.forward(X[idx], training=True)
            _, grad = head.value_and_grad(logits, y[idx])
            single.backward(grad, input_grad=False)
            opt.step(single.params, single.grads)
    _close(single, dist)


def test_streams_from_zarr_and_npy_without_persisting(client, tmp_path):
    zarr = pytest.importorskip("zarr")
    X, y = _data(n=900)
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    z = zarr.open_array(str(tmp_path / "X.zarr"), mode="w", shape=X.shape, chunks=(200, 6), dtype="f8")
    z[:] = X
    np.save(tmp_path / "y.npy", y)
    for i, part in enumerate(np.array_split(X, 3)):
        np.savez(tmp_path / f"part{i}.npz", X=part)
    ref = _model()
    gd.fit(ref, da.from_array(X, chunks=(200, 6)), y, loss=head, optimizer=nn.SGD(0.3), epochs=3, client=client)
    sources = [(gd.from_zarr(tmp_path / "X.zarr"), gd.from_npy(tmp_path / "y.npy", rows_per_chunk=200)),
               (gd.from_npy(str(tmp_path / "part*.npz"), key="X"), y)]
    for Xs, ys in sources:
        assert Xs.shape == X.shape
        m = _model()
        gd.fit(m, Xs, ys, loss=head, optimizer=nn.SGD(0.3), epochs=3, client=client, persist=False)
        _close(ref, m)


def test_training_survives_a_killed_worker(client):
    X, y = _data(n=1600)
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    ref = _model()
    nn.fit(ref, X, y, loss=head, optimizer=nn.SGD(0.5), epochs=6, batch_size=len(X), rng=0)

    def kill_one(epoch, logs):
        if epoch == 2:  # mid-training: the blocks persisted on that worker are lost with it
            victim = min(client.scheduler_info()["workers"])
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)  # the nanny starts a fresh worker
            killed.append(pid)

    killed: list[int] = []
    m = _model()
    gd.fit(m, da.from_array(X, chunks=(200, 6)), y, loss=head, optimizer=nn.SGD(0.5), epochs=6, client=client,
           persist=True, callback=kill_one)
    assert killed
    _close(ref, m)
    client.wait_for_workers(2, timeout=60)


def test_default_client_address_and_errors(client):
    X, y = _data(n=200)
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    a, b = _model(), _model()
    gd.fit(a, X, y, loss=head, optimizer=nn.SGD(0.1), epochs=1)  # the current default client
    gd.fit(b, X, y, loss=head, optimizer=nn.SGD(0.1), epochs=1, client=client.scheduler.address)
    _close(a, b)
    with pytest.raises(ValueError, match="random layers"):
        gd.fit(nn.Sequential([nn.Dense(6, 3, rng=0), nn.Dropout(0.5)]), X, y, loss=head, client=client)
    with pytest.raises(ValueError, match="same number of samples"):
        gd.fit(_model(), X, y[:100], loss=head, client=client)
    with pytest.raises(ValueError, match="batch_size"):
        gd.fit(_model(), X, y, loss=head, batch_size=0, client=client)
    with pytest.raises(ValueError, match="reduction"):
        gd.fit(_model(), X, y, loss=gk.compose(gk.Softmax(), gk.CrossEntropyLoss(reduction="none")), client=client)
    with pytest.raises(TypeError, match="client"):
        gd.fit(_model(), X, y, loss=head, client=3)
    with pytest.raises(nn.DivergenceError, match="epoch 1"):
        gd.fit(_model(out=1), X, np.full(len(X), 1e200), loss="mse", optimizer=nn.SGD(1.0), client=client)


def test_bench_distributed_quick_runs(tmp_path, capsys):
    from gradkit.apps.cli import main

    assert main(["bench", "--distributed", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "per-step overhead" in out and "crossover" in out
    import json

    doc = json.loads((tmp_path / "distributed.json").read_text())
    assert len(doc["rows"]) == 2 and all(r["dask_2_workers_ms"] > 0 for r in doc["rows"])


def test_errors_inside_training_keep_their_type_with_the_default_client(client):
    X, _ = _data(n=100)
    with pytest.raises(ValueError, match="target labels must be in"):  # not RuntimeError, no new cluster
        gd.fit(_model(), X, np.full(100, 5), loss=gk.compose(gk.Softmax(), gk.CrossEntropyLoss()))
    assert len(client.scheduler_info()["workers"]) == 2


def test_accuracy_only_when_every_block_names_classes(client):
    X, y = _data(n=1500)
    t = np.eye(3)[y]
    t[1200:] = 1 / 3  # soft targets after row 1200: no accuracy, as in nn.fit
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    h = gd.fit(_model(), da.from_array(X, chunks=(500, 6)), t, loss=head, optimizer=nn.SGD(0.1), client=client)
    assert "accuracy" not in h
    h = gd.fit(_model(), da.from_array(X, chunks=(500, 6)), np.eye(3)[y], loss=head, optimizer=nn.SGD(0.1), client=client)
    assert 0 <= h["accuracy"][0] <= 1


def test_input_checks(client, tmp_path):
    X, y = _data(n=100)
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    with pytest.raises(ValueError, match="at least one row"):
        gd.fit(_model(), np.zeros((0, 6)), np.zeros(0, int), loss=head, client=client)
    unknown = da.from_array(X, chunks=(50, 6))
    unknown = unknown[unknown[:, 0] > -10]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        gd.fit(_model(), unknown, y, loss=head, client=client)
    with pytest.raises(ValueError, match="rng must be an int >= 0"):
        gd.fit(_model(), X, y, loss=head, batch_size=10, rng=-1, client=client)
    with pytest.raises(TypeError, match="scalar"):
        gd.fit(_model(), X, 3, loss=head, client=client)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="rows_per_chunk"):
        gd.from_npy(tmp_path / "x.npy", rows_per_chunk=0)
    np.savez(tmp_path / "x.npz", X=X)
    with pytest.raises(ValueError, match="no array 'Z'"):
        gd.from_npy(tmp_path / "x.npz", key="Z")
    model = nn.Sequential([nn.Dense(6, 3, rng=0, dtype=np.float64), nn.Dropout(0.0)])  # no randomness: allowed
    gd.fit(model, X, y, loss=head, optimizer=nn.SGD(0.1), client=client)
