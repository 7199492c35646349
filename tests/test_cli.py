"""The gradkit command line and the README's examples, run as written."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradkit.cli import main

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
    out = subprocess.run([sys.executable, "-m", "gradkit.cli", "jacobian", "softmax", "1", "2"],
                         capture_output=True, text=True, check=True).stdout
    assert "-0.19661193" in out


#: every ```python block of the README and of the documentation's Markdown pages (the guides)
_DOC_FILES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]
_README_BLOCKS = [(path.relative_to(ROOT), block) for path in _DOC_FILES
                  for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)]


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


def test_bench_quick_runs_and_writes_json_and_png(tmp_path, capsys):
    import json

    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    ops = {c["op"] for c in doc["cases"]}
    assert {"softmax fwd+VJP", "log_softmax+NLL value+grad", "batched Jacobian", "MLP epoch 784-256-10 SGD"} <= ops
    assert all("gradkit" in c["ms"] for c in doc["cases"])
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert "gradkit/torch" in capsys.readouterr().out


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
