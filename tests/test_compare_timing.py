"""``gradkit compare`` reports each pair's median epoch time and its ratio to the first pair's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradkit.apps.cli import main


def test_compare_prints_and_writes_median_epoch_time_and_ratio_to_softmax(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    args = ["compare", "--seeds", "2", "--epochs", "2", "--hidden", "8", "--out", str(tmp_path),
            "--pairs", "softmax:cross_entropy,sparsemax:sparsemax_loss,entmax15:entmax15_loss"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch s" in out and "× base" in out
    assert "median seconds per epoch over all seeds; × base: its ratio to softmax + cross_entropy's" in out
    doc = json.loads((tmp_path / "compare.json").read_text())
    rows = doc["results"]
    base = rows[0]["epoch_seconds_median"]
    for r in rows:
        times = [t for run in r["runs"] for t in run["epoch_seconds"]]
        assert len(times) == 2 * 2 and all(t > 0 for t in times)
        assert r["epoch_seconds_median"] == pytest.approx(np.median(times))
        assert r["epoch_time_ratio"] == pytest.approx(r["epoch_seconds_median"] / base)
        assert f"{r['epoch_time_ratio']:.2f}×" in out
    assert rows[0]["epoch_time_ratio"] == pytest.approx(1.0)


@pytest.mark.parametrize("seeds", [1, 2])
def test_one_seed_prints_no_spread(tmp_path, capsys, seeds):
    pytest.importorskip("matplotlib")
    assert main(["compare", "--seeds", str(seeds), "--epochs", "1", "--hidden", "4", "--out", str(tmp_path),
                 "--pairs", "softmax:cross_entropy,sparsemax:sparsemax_loss"]) == 0
    out = capsys.readouterr().out
    assert ("±" in out) == (seeds > 1) and ("(mean ± std)" in out) == (seeds > 1)
