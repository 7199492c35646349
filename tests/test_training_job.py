"""`gradkit train`, the main job: accuracy on digits, files written atomically, data formats, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradkit._io import atomic_open
from gradkit.apps.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_default_job_reaches_the_target_accuracy_and_writes_its_files(tmp_path, capsys):
    assert main(["train", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "history.json").read_text())
    assert summary["test_accuracy"] >= 0.97, summary["test_accuracy"]
    assert summary["train_seconds"] < 30
    assert f"test accuracy {summary['test_accuracy']:.4f}" in out
    assert (tmp_path / "training.png").read_bytes().startswith(PNG)
    assert len(summary["history"]["val_accuracy"]) == summary["epochs"] == 40
    assert not list(tmp_path.glob(".*.tmp"))
    # the checkpoint reloads and reproduces the reported accuracy on the same split
    from gradkit import nn

    model = nn.load(tmp_path / "model.npz")
    assert model.metadata["test_accuracy"] == summary["test_accuracy"]
    assert len(model.metadata["scaler_mean"]) == 64


def test_softmax_with_mse_trains_from_the_command_line(tmp_path):
    assert main(["train", "--quiet", "--loss", "mse", "--epochs", "15", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "history.json").read_text())
    assert summary["test_accuracy"] > 0.95
    assert "accuracy" in summary["history"]  # one-hot targets still report accuracy


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 4)) + 3 * np.eye(3, 4)[y]
    return X, y


def test_csv_and_npz_data(tmp_path):
    X, y = _blobs()
    names = np.array(["cat", "dog", "owl"])[y]
    csv = tmp_path / "data.csv"
    rows = ["a,b,species,c,d"] + [f"{r[0]},{r[1]},{lab},{r[2]},{r[3]}" for r, lab in zip(X, names)]
    csv.write_text("\n".join(rows) + "\n")
    assert main(["train", "--quiet", "--data", str(csv), "--label", "species", "--epochs", "20", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "history.json").read_text())["test_accuracy"] > 0.9
    npz = tmp_path / "data.npz"
    np.savez(npz, X=X, y=y)
    assert main(["train", "--quiet", "--data", str(npz), "--hidden", "16,8", "--epochs", "20", "--out", str(tmp_path / "n")]) == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "missing.csv"], "no such file"),
        (["--output", "tanh", "--loss", "bce"], "--output tanh with --loss bce"),
        (["--hidden", "12,x"], "argument --hidden: expected comma-separated integers"),
    ],
)
def test_bad_arguments_fail_with_one_clear_line(tmp_path, capsys, args, message):
    assert main(["train", "--quiet", "--out", str(tmp_path), *args]) in (1, 2)
    assert message in capsys.readouterr().err


def test_npz_without_X_and_y_is_refused(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", features=np.ones((4, 2)))
    assert main(["train", "--quiet", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path)]) == 1
    assert "needs arrays 'X' and 'y'" in capsys.readouterr().err


def test_atomic_open_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    target.chmod(0o640)
    with atomic_open(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640  # the old file's mode is kept
    with atomic_open(tmp_path / "fresh.txt", "w") as handle:
        handle.write("x")
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o077 != 0  # not the 0600 of mkstemp


def test_first_use_compilation_is_said_and_left_out_of_the_time(tmp_path, capsys, monkeypatch):
    from gradkit.apps import train_job

    monkeypatch.setattr(train_job, "warm_up", lambda *args: 12.5)  # as a cold numba cache would take
    assert main(["train", "--quiet", "--epochs", "1", "--hidden", "4", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "compiled the numba kernels in 12.5 s (first use; numba caches them for later runs" in out
    assert train_job.compile_note(0.3) is None  # a warm cache says nothing


def test_kernels_module_warms_or_says_why_not(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "GRADKIT_DISABLE_NUMBA": "1"}
    run = [sys.executable, "-m", "gradkit.kernels"]
    proc = subprocess.run([*run, "--warm"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0 and "not in use" in proc.stdout, proc.stderr
    proc = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2 and "nothing to do; pass --warm" in proc.stderr
