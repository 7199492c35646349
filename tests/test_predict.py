"""``gradkit predict`` and ``gradkit.nn.load_predictor``: a trained model used as it was trained.

The checkpoint of ``gradkit train`` carries the input scaling, the head and the class names; predictions
must equal the network applied to the standardized rows, mapped to the names.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from gradkit import nn
from gradkit.apps.cli import main

NAMES = np.array(["ant", "bee", "cat"])


def _blobs(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return rng.standard_normal((n, 4)) * 3 + 10 * np.eye(3, 4)[y] + 50, y  # far from zero mean: scaling matters


def _write_csv(path, X, labels=None):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "c", "d"] + (["kind"] if labels is not None else []))
        for i, row in enumerate(X):
            writer.writerow([f"{v:.6f}" for v in row] + ([labels[i]] if labels is not None else []))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    X, y = _blobs()
    _write_csv(tmp / "train.csv", X, NAMES[y])
    args = ["train", "--quiet", "--data", str(tmp / "train.csv"), "--epochs", "60", "--lr", "0.01", "--hidden", "8",
            "--out", str(tmp / "o")]
    assert main(args) == 0
    return tmp, tmp / "o" / "model.npz"


def _read(path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_predictions_are_the_network_on_scaled_rows_with_the_class_names(trained, capsys):
    tmp, model_path = trained
    X, _ = _blobs(30, seed=1)
    _write_csv(tmp / "new.csv", X)
    assert main(["predict", "--model", str(model_path), "--data", str(tmp / "new.csv"), "--out", str(tmp / "p.csv")]) == 0
    rows = _read(tmp / "p.csv")
    assert rows[0] == ["prediction"] and len(rows) == 31
    model = nn.load(model_path)
    meta = model.metadata
    assert meta["classes"] == ["ant", "bee", "cat"]
    scaled = (np.round(X, 6) - np.asarray(meta["scaler_mean"])) / np.asarray(meta["scaler_scale"])
    expected = NAMES[np.argmax(model.forward(scaled.astype(model.dtype)), axis=1)]
    assert [r[0] for r in rows[1:]] == expected.tolist()
    out = capsys.readouterr().out
    assert "read new.csv: 30 rows × 4 features, no labels; delimiter ',', header row" in out
    assert f"wrote 30 predictions to {tmp / 'p.csv'}" in out


def test_python_predictor_matches_the_command_and_gives_probabilities(trained):
    _, model_path = trained
    X, y = _blobs(30, seed=2)
    clf = nn.load_predictor(model_path)
    assert clf.classes_.tolist() == NAMES.tolist() and clf.n_features_in_ == 4
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert clf.predict(X).tolist() == NAMES[np.argmax(proba, axis=1)].tolist()
    assert np.mean(clf.predict(X) == NAMES[y]) > 0.9  # separated blobs: the scaling was applied
    with pytest.raises(ValueError, match=r"X must have shape \(n_rows, 4\); got \(2, 3\)"):
        clf.predict(np.ones((2, 3)))


def test_labels_in_the_file_give_the_accuracy_and_proba_columns(trained, capsys):
    tmp, model_path = trained
    X, y = _blobs(30, seed=3)
    _write_csv(tmp / "labelled.csv", X, NAMES[y])
    assert main(["predict", "--model", str(model_path), "--data", str(tmp / "labelled.csv"), "--proba"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0] == "prediction,p(ant),p(bee),p(cat)" and len(lines) == 31
    predicted = np.array([line.split(",")[0] for line in lines[1:]])
    probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert f"accuracy {np.mean(predicted == NAMES[y]):.4f} against the file's labels" in captured.err


def test_an_npz_with_X_only(trained, capsys):
    tmp, model_path = trained
    X, _ = _blobs(12, seed=4)
    np.savez(tmp / "new.npz", X=X)
    assert main(["predict", "--model", str(model_path), "--data", str(tmp / "new.npz")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 13


@pytest.mark.parametrize("case,fragment", [
    ("columns", "3 columns; the model takes 4 features (and, optionally, a label column)"),
    ("bare", "the checkpoint's metadata lacks output, loss, classes, scaler_mean, scaler_scale"),
    ("not-a-model", "not a gradkit checkpoint"),
])
def test_problems_are_one_line_and_exit_1(trained, tmp_path, capsys, case, fragment):
    _, model_path = trained
    data = tmp_path / "d.csv"
    _write_csv(data, _blobs(5)[0])
    if case == "columns":
        data.write_text("a,b,c\n1,2,3\n")
    elif case == "bare":
        model_path = tmp_path / "bare.npz"
        nn.save(nn.Sequential([nn.Dense(4, 3, rng=0)]), model_path)
    else:
        model_path = tmp_path / "text.npz"
        model_path.write_text("hello")
    assert main(["predict", "--model", str(model_path), "--data", str(data)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradkit predict: ") and fragment in err[0]


def test_proba_is_refused_for_an_output_that_is_no_distribution(tmp_path, capsys):
    X, y = _blobs()
    _write_csv(tmp_path / "train.csv", X, NAMES[y])
    assert main(["train", "--quiet", "--data", str(tmp_path / "train.csv"), "--epochs", "2", "--hidden", "4",
                 "--output", "sigmoid", "--loss", "bce", "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    args = ["predict", "--model", str(tmp_path / "o" / "model.npz"), "--data", str(tmp_path / "train.csv")]
    assert main(args) == 0
    assert main([*args, "--proba"]) == 1
    assert "the model's output 'sigmoid' gives no probabilities over the classes" in capsys.readouterr().err


def test_metadata_that_disagrees_with_the_network_is_refused(tmp_path):
    model = nn.Sequential([nn.Dense(4, 3, rng=0)])
    meta = {"output": "softmax", "loss": "cross_entropy", "classes": ["a", "b"], "scaler_mean": [0.0] * 4,
            "scaler_scale": [1.0] * 4}
    nn.save(model, tmp_path / "m.npz", metadata=meta)
    with pytest.raises(ValueError, match=r"disagrees with the network \(4 inputs, 3 outputs\): 2 class names"):
        nn.load_predictor(tmp_path / "m.npz")
