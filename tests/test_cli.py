"""The gradkit command line and the README's examples, run as written."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradkit.apps.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_jacobian_of_softmax(capsys):
    assert main(["jacobian", "softmax", "1", "2"]) == 0
    out = capsys.readouterr().out
    values = np.array([float(v) for v in re.findall(r"-?\d+\.\d+", out)]).reshape(2, 2)
    np.testing.assert_allclose(values, [[0.19661193, -0.19661193], [-0.19661193, 0.19661193]], atol=1e-8)
    assert "0.19661193" in out


def test_jacobian_with_options_and_negative_values(capsys):
    assert main(["jacobian", "softmax", "-1", "2", "--set", "temperature=2"]) == 0
    assert main(["jacobian", "tanh", "0", "-2.5"]) == 0
    assert main(["jacobian", "softmaxx", "1"]) == 2
    assert "unknown activation 'softmaxx'" in capsys.readouterr().err


def test_check_all_passes_every_composable_pair(capsys):
    assert main(["check", "all"]) == 0
    out = capsys.readouterr().out
    assert "WRONG" not in out and "all passed" in out
    assert re.search(r"softmax\s+cross_entropy\s+fused .* ok", out)
    assert re.search(r"softmax\s+mse\s+chain .* ok", out)
    assert re.search(r"sparsemax\s+sparsemax_loss\s+paired .* ok", out)
    assert re.search(r"gumbel_softmax\s+cross_entropy\s+chain .* ok", out)
    assert "tanh+bce" in out  # listed as not composable


def test_check_selected_names(capsys):
    assert main(["check", "softmax", "mse"]) == 0
    out = capsys.readouterr().out
    assert "1 pair checked" in out
    assert main(["check", "nope"]) == 2


def test_help_and_list(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("jacobian", "check", "list"):
        assert command in out
    assert main(["list"]) == 0
    assert "log_softmax" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "gradkit.apps.cli", "jacobian", "softmax", "1", "2"],
                         capture_output=True, text=True, check=True).stdout
    assert "-0.19661193" in out


#: every ```python block of the README and of the documentation's Markdown pages (the guides)
_DOC_FILES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]
_README_BLOCKS = [(path.relative_to(ROOT), block) for path in _DOC_FILES
                  for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)]


@pytest.mark.skipif(os.environ.get("GRADKIT_DISABLE_NUMBA", "").strip() not in ("", "0"),
                    reason="the documentation's examples run once, in the pass with the kernels (make test's "
                           "portable pass repeats the library's tests, not its documentation)")
@pytest.mark.parametrize("index", range(len(_README_BLOCKS)))
def test_readme_python_blocks_run_as_standalone_scripts(index, tmp_path):
    """Each block is a file run by a fresh interpreter, as a reader would run it (a Dask block
    without ``if __name__ == "__main__":`` fails there, not inside pytest)."""
    source, block = _README_BLOCKS[index]
    script = tmp_path / f"doc_block_{index}.py"
    script.write_text(block)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          check=False)
    assert proc.returncode == 0, f"{source}: block {index} failed:\n{block}\n{proc.stderr[-3000:]}"


def test_softmax_bug_example_runs(capsys):
    runpy.run_path(str(ROOT / "examples" / "softmax_bug.py"))
    out = capsys.readouterr().out
    assert "WRONG" in out and out.count(": ok") == 1


def test_bench_quick_runs_and_writes_json_markdown_and_png(tmp_path, capsys):
    import json


    md = tmp_path / "docs" / "table.md"
    md.parent.mkdir()
    assert main(["bench", "--quick", "--out", str(tmp_path), "--markdown", str(md)]) == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    cases = {(c["op"], c["size"]): c for c in doc["cases"]}
    ops = {op for op, _ in cases}
    assert {"softmax fwd+VJP", "log_softmax+NLL value+grad", "batched Jacobian", "MLP epoch 784-256-10 SGD",
            "sparsemax fwd+VJP", "entmax15 fwd+VJP", "sparsemax_loss value+grad", "entmax15_loss value+grad",
            "contention: softmax fwd+VJP next to torch/OpenBLAS"} <= ops
    assert "entmax_bisect (alpha 1.5) fwd+VJP" in ops
    for c in doc["cases"]:  # every contender: minimum, median and all samples of the alternating rounds
        rounds = 1 if c["op"].startswith("MLP") else 2  # an epoch, a fit: one round in --quick
        assert c["ms"] and all(set(v) == {"min", "median", "samples"} and len(v["samples"]) == rounds
                               and v["min"] == min(v["samples"]) for v in c["ms"].values()), c["op"]
        assert c["verdict"] in ("not judged", "no target")  # --quick judges nothing
    goals = {op: c["goal"] for (op, _), c in cases.items()}
    assert goals["softmax fwd+VJP"]["against"] == "torch" and goals["softmax fwd+VJP"]["limit"] == 0.8
    assert goals["log_softmax+NLL value+grad"]["limit"] == 0.8
    assert goals["sparsemax fwd+VJP"]["against"] == "entmax" and goals["entmax15 fwd+VJP"]["limit"] == 0.33
    assert goals["batched Jacobian"]["against"] == "np.full output" and goals["batched Jacobian"]["limit"] == 1.0
    assert goals["MLP epoch 784-256-10 SGD"]["against"] == "torch"
    steady = goals["contention: softmax fwd+VJP next to torch/OpenBLAS"]
    assert steady["against"] is None and steady["limit"] == 1.3
    assert "gradkit after OpenBLAS" in steady["subjects"]
    first = doc["cases"][0]
    assert {"gradkit", "gradkit portable", "torch", "copy floor"} <= set(first["ms"])
    assert first["peak_mb"] > 0
    if Path("/proc/self/clear_refs").is_file():  # Linux: a resettable peak RSS
        assert first["peer_peak_mb"]["torch"] >= 0  # quick: the peer's memory of one case
    assert doc["settings"]["pause_s"] == 0  # --quick: no pause between contenders
    try:
        import jax  # noqa: F401
    except ImportError:
        pass
    else:
        assert "jax jit" in first["ms"]
    assert "entmax" in cases[("sparsemax fwd+VJP", "64x32")]["ms"]
    machine = doc["machine"]
    assert {"cpu", "cores", "available_cores", "numpy", "numba", "torch", "numba_layer", "kernel_threads"} <= set(machine)
    assert doc["date"] and doc["settings"]["quick"] is True
    table = (tmp_path / "bench.md").read_text()
    assert md.read_text() == table
    assert doc["date"] in table and machine["cpu"] in table and "| verdict |" in table
    assert table.count("not judged") >= 8 and "sparsemax fwd+VJP | 64×32" in table
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert "gradkit/torch" in out and "median/min" in out and "targets: 0 met, 0 missed" in out


def test_bench_alpha_entmax_case_against_the_entmax_package():
    from gradkit.apps import bench

    torch, entmax = bench._torch(1), bench._entmax()
    if torch is None or entmax is None:
        pytest.skip("torch or the entmax package is not installed")

    case = bench._sparse_case("entmax_bisect", (16, 8), 1, torch, entmax)
    assert case.op == "entmax_bisect (alpha 1.5) fwd+VJP" and {"gradkit", "entmax"} <= set(case.samples)
    assert case.goal is None and case.verdict() == "no target"  # entmax_bisect has no speed target


def test_bench_alternates_rounds_and_leaves_out_the_warm_up(monkeypatch):
    from gradkit.apps.bench import Timed, alternate

    order = []
    ticks = iter(range(1000))
    samples = alternate({"a": lambda: order.append("a"), "b": Timed(lambda: order.append("b"),
                                                                    before=lambda: order.append("before b"))},
                        rounds=3, warmup=2, clock=lambda: float(next(ticks)))
    assert order == ["a", "before b", "b"] * 5  # A, B, A, B, ...: 2 warm-up rounds, then 3 timed
    assert samples == {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0]}  # one tick per call; before is untimed
    with pytest.raises(ValueError, match="rounds: expected an integer >= 1; got 0"):
        alternate({"a": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="warmup: expected an integer >= 0; got -1"):
        alternate({"a": lambda: None}, rounds=1, warmup=-1)
    with pytest.raises(ValueError, match="contenders: expected at least one"):
        alternate({}, rounds=1)
    with pytest.raises(TypeError, match=r"contenders\['x'\]: expected a callable"):
        alternate({"x": 3}, rounds=1)
    with pytest.raises(ValueError, match=r"pause: expected seconds in \[0, 60\]; got -1"):
        alternate({"a": lambda: None}, rounds=1, pause=-1)
    import time

    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    alternate({"a": lambda: None, "b": lambda: None}, rounds=2, warmup=0, pause=0.25)
    assert slept == [0.25] * 4  # before every contender of every round


def test_bench_judges_targets_by_the_ratio_of_minima_and_steadiness_by_median_over_minimum():
    from gradkit.apps.bench import Case, Goal, markdown

    fast = Case("op", "8x8", {"gradkit": [1.0, 9.0, 9.0], "torch": [2.0, 2.0, 2.0]}, goal=Goal(0.8, "torch"))
    assert fast.ratio("gradkit", "torch") == 0.5 and fast.median_ratio("gradkit", "torch") == 4.5
    assert fast.verdict() == "met"  # minima decide; the medians stand beside
    slow = Case("op", "8x8", {"gradkit": [1.7, 1.7], "torch": [2.0, 2.0]}, goal=Goal(0.8, "torch"))
    assert slow.goal_value() == pytest.approx(0.85) and slow.verdict() == "missed"
    assert Case("op", "8x8", {"gradkit": [1.0]}, goal=Goal(0.8, "torch")).verdict() == "not measured"
    assert Case("op", "8x8", {"gradkit": [1.0]}).verdict() == "no target"
    steady = Case("contention", "8x8", {"gradkit after torch": [1.0, 1.2, 1.25], "gradkit after OpenBLAS": [1.0, 1.1, 2.0]},
                  goal=Goal(1.3, None, ("gradkit after torch", "gradkit after OpenBLAS")))
    assert steady.goal_value() == pytest.approx(1.2) and steady.verdict() == "met"  # the worst median / min
    steady.samples["gradkit after torch"] = [1.0, 1.4, 1.5]
    assert steady.goal_value() == pytest.approx(1.4) and steady.verdict() == "missed"
    quick = Case("op", "8x8", {"gradkit": [1.0], "torch": [2.0]}, goal=Goal(0.8, "torch"), judged=False)
    assert quick.verdict() == "not judged"
    machine = {"cpu": "Test CPU", "arch": "x86_64", "cores": 4, "available_cores": 2, "numpy": "2", "numba": None,
               "torch": None}
    doc = {"date": "2026-01-02 03:04 UTC", "machine": machine, "settings": {"rounds": 3},
           "cases": [c.to_json() for c in (fast, slow, steady)]}
    table = markdown(doc)
    assert "2026-01-02 03:04 UTC" in table and "Test CPU (x86_64), 2 of 4 cores usable" in table
    rows = [line for line in table.splitlines() if line.startswith(("| op |", "| contention |"))]
    assert rows[0].endswith("| gradkit / torch <= 0.8 | met |") and "| 0.5 (4.5) |" in rows[0]
    assert rows[1].endswith("| **missed** |") and rows[2].endswith("| median/min <= 1.3 | **missed** |")


def test_compare_trains_every_pair_and_writes_json_and_png(tmp_path, capsys):
    assert main(["compare", "--seeds", "2", "--epochs", "2", "--hidden", "16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for label in ("softmax + CE", "softmax + MSE", "log-Taylor + NLL", "log-spherical + NLL",
                  "sparsemax + sparsemax loss", "entmax-1.5 + entmax loss"):
        assert label in out
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["seeds"] == 2 and len(doc["results"]) == 6
    assert all(len(r["runs"]) == 2 and 0 <= r["accuracy_mean"] <= 1 for r in doc["results"])
    # the README's "vs softmax+CE on the same seed" column comes from here: paired per-seed differences
    base, other = doc["results"][0], doc["results"][3]
    assert base["vs_baseline"] is None and other["vs_baseline"]["baseline"] == "softmax + CE"
    diffs = [100 * (b["accuracy"] - x["accuracy"]) for x, b in zip(other["runs"], base["runs"])]
    assert other["vs_baseline"]["error_diff_pp_mean"] == pytest.approx(np.mean(diffs))
    v = other["vs_baseline"]
    assert v["better"] + v["worse"] + v["ties"] == 2
    assert "error vs softmax + CE on the same seed" in out
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_on_user_data_and_chosen_pairs(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    args = ["compare", "--data", str(tmp_path / "d.npz"), "--seeds", "2", "--epochs", "3", "--hidden", "8",
            "--pairs", "softmax:cross_entropy,taylor_softmax:cross_entropy", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    doc = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert [r["output"] for r in doc["results"]] == ["softmax", "taylor_softmax"]
    assert main(args[:-4] + ["--pairs", "tanh:bce", "--out", str(tmp_path / "o")]) == 2  # not composable
    assert main(args[:-4] + ["--pairs", "softmax", "--out", str(tmp_path / "o")]) == 2
    assert "OUTPUT:LOSS" in capsys.readouterr().err
