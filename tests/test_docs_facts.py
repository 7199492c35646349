"""The figures the README and the guides state are what the code computes: a test fails when they drift.

Counts (activations, losses, composable pairs, fused pairs) come from the registries and ``compose``; the
README's accuracy claims are retrained with the seeds they name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import gradkit as gk
from gradkit import activations, kernels, losses

ROOT = Path(__file__).resolve().parents[1]


def _text(name: str) -> str:
    return " ".join((ROOT / name).read_text(encoding="utf-8").split())  # line breaks folded


def _heads() -> tuple[int, list[tuple[str, str]]]:
    composable, fused = 0, []
    for a in activations.names():
        for name in losses.names():
            try:
                head = gk.compose(activations.get(a), losses.get(name))
            except ValueError:
                continue
            composable += 1
            if head.fused:
                fused.append((a, name))
    return composable, fused


def test_pair_counts_in_the_guides():
    n_act, n_loss = len(activations.names()), len(losses.names())
    composable, _ = _heads()
    functions = _text("docs/guides/functions.md")
    assert (f"{composable} of the {n_act * n_loss} activation × loss pairs ({n_act} activations × {n_loss} losses) "
            f"are composable, and all {composable} pass") in functions
    assert f"composable pair ({composable})" in _text("docs/guides/arrays.md")
    assert f"all {composable} composable pairs" in _text("docs/guides/testing.md")


def test_the_fused_pairs_listed_are_the_fused_pairs():
    _, fused = _heads()
    functions = _text("docs/guides/functions.md")
    sentence = re.search(r"uses a \*\*fused path\*\* for (\d+) pairs: (.*?), and the generic chain rule", functions)
    assert sentence, "the functions guide no longer lists the fused pairs"
    listed = set(re.findall(r"`(\w+) \+ (\w+)`", sentence.group(2)))
    assert int(sentence.group(1)) == len(fused) and listed == set(fused)
    words = ["No", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten"]
    assert f"{words[len(fused)]} pairs also have a fused path" in _text("src/gradkit/composition.py")


def test_cli_check_all_prints_the_same_counts(capsys):
    from gradkit.apps.cli import main

    composable, _ = _heads()
    n_pairs = len(activations.names()) * len(losses.names())
    assert main(["check", "all"]) == 0
    out = capsys.readouterr().out
    assert f"{composable} pairs checked, all passed" in out
    assert f"{n_pairs - composable} pairs not composable" in out


@pytest.mark.skipif(not kernels.enabled(), reason="the README's figures are for the numba kernels (make demo's "
                    "install); the portable path rounds differently and can change a prediction or two")
def test_readme_accuracy_over_its_seeds(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    from gradkit.apps.train_job import TrainConfig, run

    def accuracies(loss: str) -> np.ndarray:
        return np.array([run(TrainConfig(seed=s, quiet=True, loss=loss, out=str(tmp_path / f"{loss}{s}")),
                             print_fn=lambda _: None)["test_accuracy"] for s in range(8)])

    ce, mse = accuracies("cross_entropy"), accuracies("mse")
    readme = _text("README.md")
    assert (f"Over 8 seeds (`--seed 0` to `7`, each with its own split) the defaults give {100 * ce.mean():.1f} % mean "
            f"and {100 * ce.min():.1f} % minimum test accuracy") in readme
    assert f"gives {100 * mse.mean():.1f} % mean and {100 * mse.min():.1f} % minimum" in readme
