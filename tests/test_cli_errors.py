"""The CLI's front door: usage errors exit 2, failed runs exit 1, one line each, no traceback;
what was read from a user's file is said; outputs appear together or not at all."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradkit import _optional
from gradkit.apps.cli import main


def _err_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("args,fragment", [
    (["train", "--epochs", "-1"], "argument --epochs: expected an integer >= 1; got -1"),
    (["train", "--epochs", "two"], "argument --epochs: expected an integer >= 1; got 'two'"),
    (["train", "--hidden", "0"], "argument --hidden: every layer size must be >= 1"),
    (["train", "--hidden", ""], "argument --hidden: expected comma-separated layer sizes"),
    (["train", "--hidden", "32,,16"], "argument --hidden: expected comma-separated layer sizes"),
    (["train", "--lr", "0"], "argument --lr: expected a finite number > 0; got '0'"),
    (["train", "--lr", "nan"], "argument --lr: expected a finite number > 0"),
    (["train", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1; got 0"),
    (["train", "--seed", "-1"], "argument --seed: expected an integer >= 0; got -1"),
    (["train", "--activation", "relux"], "unknown activation 'relux'; valid names: elu,"),
    (["train", "--output", "softmaxx"], "unknown output activation 'softmaxx'"),
    (["train", "--loss", "xent"], "unknown loss 'xent'; valid names: bce,"),
    (["train", "--output", "tanh", "--loss", "bce"], "--output tanh with --loss bce"),
    (["compare", "--seeds", "0"], "argument --seeds: expected an integer >= 1; got 0"),
    (["compare", "--pairs", "softmax"], "expected OUTPUT:LOSS items"),
    (["compare", "--pairs", "tanh:bce"], "tanh:bce is not composable"),
    (["compare", "--pairs", "softmax:nope"], "unknown loss 'nope'"),
    (["bench", "--threads", "0"], "argument --threads: expected an integer >= 1; got 0"),
    (["bench", "--rounds", "0"], "argument --rounds: expected an integer >= 1; got 0"),
    (["check", "--seed", "-3"], "argument --seed: expected an integer >= 0"),
    (["jacobian", "softmax", "1", "--set", "temperature"], "--set takes KEY=VALUE"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_usage_errors_exit_2_with_one_line_before_any_work(args, fragment, capsys, tmp_path):
    assert main([*args, *(["--out", str(tmp_path / "o")] if args[0] in ("train", "compare") else [])]) == 2
    lines = _err_lines(capsys)
    assert fragment in lines[-1]
    assert not (tmp_path / "o").exists()  # nothing was started


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "usage: gradkit" in err and "train" in err


@pytest.mark.parametrize("command", ["train", "compare", "bench", "jacobian", "check"])
def test_help_shows_defaults_and_valid_names(command, capsys):
    assert main([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    if command in ("train", "compare"):
        assert "(default: 40)" in out and "(default: relu)" in out and "log_taylor_softmax" in out
    if command == "train":
        assert "(default: cross_entropy)" in out and "sparsemax_loss" in out and "(default: softmax)" in out
    if command == "compare":
        assert "OUTPUT:LOSS" in out and "(default: 5)" in out
    if command == "bench":
        assert "(default: 2)" in out


def test_jacobian_takes_exponent_negatives_and_infinities(capsys):
    assert main(["jacobian", "softmax", "-1e308", "2"]) == 0
    assert main(["jacobian", "tanh", "-inf", "-.5", "-2e-3"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out


def test_jacobian_of_a_random_activation_says_how_to_repeat_it(capsys):
    assert main(["jacobian", "gumbel_softmax", "1", "2", "--set", "rng=3"]) == 0
    first = capsys.readouterr()
    assert "--set rng=3" in first.err
    assert main(["jacobian", "gumbel_softmax", "1", "2", "--set", "rng=3"]) == 0
    assert capsys.readouterr().out == first.out  # the same sample
    with pytest.warns(DeprecationWarning, match="use rng= instead of seed= in gradkit.GumbelSoftmax"):
        assert main(["jacobian", "gumbel_softmax", "1", "2", "--set", "seed=3"]) == 0  # the old name still works
    assert capsys.readouterr().out == first.out
    assert main(["jacobian", "gumbel_softmax", "1", "2"]) == 0
    assert "add --set rng=0 to repeat it" in capsys.readouterr().err


def test_check_of_a_non_composable_pair_prints_no_empty_table(capsys):
    assert main(["check", "tanh", "bce"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no composable pair among tanh+bce" in captured.err


def test_plurals(capsys, tmp_path):
    assert main(["check", "softmax", "mse"]) == 0
    assert "1 pair checked" in capsys.readouterr().out
    assert main(["compare", "--seeds", "1", "--epochs", "1", "--hidden", "4", "--pairs", "softmax:cross_entropy",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 epoch, batch 32, 1 seed\n" in out and "1 seeds" not in out and "1 epochs" not in out


# -- runtime failures: exit 1, one line naming the path ------------------------------------------------
def test_out_that_is_a_file_fails_before_training(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    assert main(["train", "--quiet", "--out", str(target), "--data", str(tmp_path / "missing.csv")]) == 1
    line = _err_lines(capsys)[-1]
    assert "--out" in line and "is not a folder" in line  # checked before the data were even read


def test_out_that_cannot_be_created_fails_before_training(capsys):
    assert main(["train", "--quiet", "--out", "/proc/gradkit-cannot-be-here"]) == 1
    line = _err_lines(capsys)[-1]
    assert line.startswith("gradkit train: --out '/proc/gradkit-cannot-be-here': cannot write there")


def test_a_failed_run_leaves_no_partial_outputs(tmp_path, capsys, monkeypatch):
    from gradkit.apps import train_job as training_job

    def broken_save(*args, **kwargs):
        raise OSError(28, "No space left on device", "model.npz")

    monkeypatch.setattr(training_job, "save", broken_save)
    out = tmp_path / "o"
    assert main(["train", "--quiet", "--epochs", "1", "--hidden", "8", "--out", str(out)]) == 1
    assert _err_lines(capsys)[-1] == "gradkit train: model.npz: No space left on device"
    assert list(out.iterdir()) == []  # neither training.png nor history.json, no staging folder


def test_missing_extra_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(_optional, "_importable", lambda module: module != "sklearn")
    assert main(["train", "--quiet", "--out", str(tmp_path)]) == 1
    assert _err_lines(capsys) == [
        f"gradkit train needs the 'train' extra: {_optional.install_hint('train')} (missing: sklearn)"]
    assert main(["compare", "--out", str(tmp_path)]) == 1
    assert "gradkit compare needs the 'train' extra" in _err_lines(capsys)[-1]


def test_broken_pipe_ends_quietly():
    proc = subprocess.run(f"{sys.executable} -m gradkit.apps.cli check all | head -1", shell=True,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout.startswith("activation")
    assert proc.stderr == ""


# -- reading user data: every decision said, hostile files refused in one line ----------------------
def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 3)) + 3 * np.eye(3)[y], y


def _train(tmp_path, data, *extra):
    return main(["train", "--quiet", "--epochs", "1", "--hidden", "4", "--data", str(data),
                 "--out", str(tmp_path / "o"), *extra])


def test_semicolon_csv_with_header_is_sniffed_and_reported(tmp_path, capsys):
    X, y = _blobs()
    path = tmp_path / "semi.csv"
    path.write_text("a;b;c;kind\n" + "".join(f"{r[0]};{r[1]};{r[2]};k{v}\n" for r, v in zip(X, y)))
    assert _train(tmp_path, path) == 0
    out = capsys.readouterr().out
    assert "read semi.csv: 60 rows × 3 features, label column 'kind' (the last; no column is named 'label'); " \
           "delimiter ';', header row, 3 classes" in out


def test_headerless_csv_keeps_its_first_row(tmp_path, capsys):
    X, y = _blobs()
    path = tmp_path / "plain.csv"
    path.write_text("".join(f"{r[0]},{r[1]},{r[2]},{v}\n" for r, v in zip(X, y)))
    assert _train(tmp_path, path) == 0
    assert "60 rows × 3 features, label in the last column; delimiter ',', no header row" in capsys.readouterr().out


@pytest.mark.parametrize("content,extra,fragment", [
    ("a,b,y\n1,2,0\n3,4,1\n", ["--label", "nope"], "--label 'nope' is not a column of bad.csv; its columns: a, b, y"),
    ("1,2,0\n3,4,1\n", ["--label", "y"], "has no header row"),
    ("a,b,label\n1,2,0\n3,4,nan\n5,6,1\n", [], "1 row(s) have no label (empty or NaN), first in data row 2"),
    ("a,b,label\n1,2,0\n3,4,\n5,6,1\n", [], "have no label"),
    ("a,b,t\n" + "".join(f"{i},{i % 3},{i * 0.37}\n" for i in range(50)), [],
     "the labels are non-integer numbers (50 distinct values"),
    ("a,b,label\n1,x,0\n3,4,1\n", [], "feature columns must be numeric"),
    ("kind,a,b\ncat,1,2\ndog,3,4\n", [], ("data row 1, column 1 ('kind') holds 'cat', not a number; if it is the label "
                                          "column, pass --label kind")),
    ("cat,1,2\ndog,3,4\n", [], ("data row 1, column 1 holds 'cat', not a number; without a header row the label must "
                              "be the last column")),
    ("a,b,label\n1,2,0\n3,4\n", [], "every row must have 3 fields"),
    ("a,b,label\n1,nan,0\n3,4,1\n", [], "X contains NaN or infinity (1 value(s), first in row 0)"),
    ("a\n1\n2\n", [], "found 1 column"),
    ("a,b\n" + "1" * 200_000 + ",2\n3,4\n", [], "cannot read the first rows as CSV"),
])
def test_bad_csv_is_refused_in_one_line(tmp_path, capsys, content, extra, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert _train(tmp_path, path, *extra) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and fragment in lines[0], lines


def test_a_fifo_is_refused_without_hanging(tmp_path, capsys):
    import os

    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    assert _train(tmp_path, fifo) == 1
    assert "not a regular file" in _err_lines(capsys)[-1]


def _npz_claiming(path: Path, shape: tuple[int, ...]) -> None:
    """An .npz whose X.npy header declares ``shape`` but holds a few bytes."""
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(b"\0" * 64)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", buf.getvalue())
        ybuf = io.BytesIO()
        np.save(ybuf, np.array([0, 1]))
        zf.writestr("y.npy", ybuf.getvalue())


def test_npz_claiming_80_terabytes_is_refused_before_allocating(tmp_path, capsys):
    path = tmp_path / "huge.npz"
    _npz_claiming(path, (10**7, 10**6))
    assert _train(tmp_path, path) == 1
    assert "is a float64 array of shape (10000000, 1000000) (80000000000000 bytes after a 128-byte .npy header) " \
        "but its member declares 192 bytes" in _err_lines(capsys)[-1]


@pytest.mark.parametrize("make,fragment", [
    (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not a readable .npz archive"),
    (lambda p: np.savez(p, X=np.ones((4, 2)) + 1j, y=np.arange(4) % 2), "complex data is not supported"),
    (lambda p: np.savez(p, X=np.ones((4, 2)), y=np.array([0, 1, np.nan, 1])), "y has 1 NaN value(s)"),
    (lambda p: np.savez(p, X=np.ones((4, 2)), y=np.linspace(0, 1, 4)), "non-integer numbers"),
    (lambda p: np.savez(p, features=np.ones((4, 2))), "needs arrays 'X' and 'y'"),
])
def test_bad_npz_is_refused_in_one_line(tmp_path, capsys, make, fragment):
    path = tmp_path / "bad.npz"
    make(path)
    assert _train(tmp_path, path) == 1
    lines = _err_lines(capsys)
    assert len(lines) == 1 and fragment in lines[0], lines


def test_history_records_what_was_read(tmp_path):
    X, y = _blobs()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert _train(tmp_path, tmp_path / "d.npz") == 0
    summary = json.loads((tmp_path / "o" / "history.json").read_text())
    assert summary["data"] == "d.npz: 60 rows × 3 features, arrays X and y, 3 classes"


def test_bench_distributed_claims_only_a_measured_crossover():
    pytest.importorskip("distributed")
    from gradkit.apps.bench_distributed import _crossover

    def rows(*measured):
        return [{"rows": n, "dask_2_workers_ms": d, "single_ms": s} for n, d, s in measured]

    assert _crossover(rows((50_000, 58, 39), (200_000, 108, 161), (2_000_000, 939, 1802)))[0] == [50_000, 200_000]
    # a win at one size followed by a loss is no crossover
    assert _crossover(rows((50_000, 38, 39), (200_000, 208, 161), (2_000_000, 939, 1802)))[0] == [200_000, 2_000_000]
    bracket, verdict = _crossover(rows((50_000, 58, 39), (200_000, 208, 161)))
    assert bracket is None and verdict.startswith("none measured")
    bracket, verdict = _crossover(rows((50_000, 38, 39), (200_000, 108, 161)))
    assert bracket is None and "lies below that" in verdict


@pytest.mark.parametrize("record,hint", [
    (None, 'pip install "gradkit[train]"'),  # from a package index: pip writes no direct_url.json
    ({"url": "https://example.org/gradkit-0.1.0.tar.gz", "archive_info": {}}, 'pip install "gradkit[train]"'),
    ({"url": "file:///home/u/gradkit", "dir_info": {"editable": True}}, "pip install -e '/home/u/gradkit[train]'"),
    ({"url": "file:///home/u/gradkit", "dir_info": {}}, "pip install '/home/u/gradkit[train]'"),
    ({"url": "file:///tmp/my%20dir/gradkit-0.1.0-py3-none-any.whl", "archive_info": {}},
     "pip install '/tmp/my dir/gradkit-0.1.0-py3-none-any.whl[train]'"),
])
def test_the_install_hint_follows_how_gradkit_was_installed(monkeypatch, record, hint):
    import importlib.metadata
    import json

    class Dist:
        def read_text(self, name):
            return None if record is None else json.dumps(record)

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
    assert _optional.install_hint("train") == hint


def test_bench_without_its_extra_names_it(monkeypatch, capsys):
    monkeypatch.setattr(_optional, "_importable", lambda module: module != "matplotlib")
    assert main(["bench", "--quick"]) == 1
    assert _err_lines(capsys) == [
        f"gradkit bench needs the 'bench' extra: {_optional.install_hint('bench')} (missing: matplotlib)"
    ]


_BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("blocked,code,message", [
    ({"scipy"}, "from gradkit.sklearn import MLPClassifier",
     f"ImportError: gradkit.sklearn needs the 'train' extra: {_optional.install_hint('train')} (missing: scipy)"),
    ({"dask", "distributed"}, "import gradkit.distributed",
     (f"ImportError: gradkit.distributed needs the 'dask' extra: {_optional.install_hint('dask')} "
     "(missing: dask, distributed)")),
    ({"sklearn", "scipy", "tqdm", "matplotlib", "numba", "dask", "distributed"},
     "import gradkit as gk, numpy as np; print(gk.Softmax()(np.array([1.0, 2.0])).round(3))", None),
])
def test_optional_modules_name_their_extra_in_a_process_without_them(blocked, code, message):
    """As after a bare ``pip install gradkit``: the core imports and works; extras name themselves."""
    script = _BLOCK.format(blocked=sorted(blocked)) + code
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    if message is None:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[0.269 0.731]"
    else:
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1].endswith(message.split(": ", 1)[1])
        assert "MissingExtraError" in proc.stderr.strip().splitlines()[-1]


def test_outputs_that_are_symlinks_stay_symlinks(tmp_path):
    from gradkit._io import staged_outputs

    out, elsewhere = tmp_path / "out", tmp_path / "kept"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "history.json").write_text("old")
    (out / "history.json").symlink_to(elsewhere / "history.json")
    with staged_outputs(out) as stage:
        (stage / "history.json").write_text("new")
        (stage / "training.png").write_text("png")
    assert (out / "history.json").is_symlink() and (elsewhere / "history.json").read_text() == "new"
    assert (out / "training.png").read_text() == "png" and not (out / "training.png").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "training.png"]
