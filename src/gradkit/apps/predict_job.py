"""``gradkit predict``: a checkpoint from ``gradkit train`` applied to new rows, class names out.

The checkpoint carries the input scaling, the head and the class names (:func:`gradkit.nn.load_predictor`);
the rows are read by the table reader of ``gradkit train`` (:func:`gradkit.apps.tabular.read_features`),
with or without a label column. With labels the accuracy against them is reported.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_open
from ..nn.predictor import load_predictor
from .tabular import read_features

__all__ = ["run"]


def _rows(classes: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prediction"] + ([f"p({c})" for c in classes] if proba is not None else []))
    for i, label in enumerate(predicted.tolist()):
        writer.writerow([label] + ([f"{p:.6g}" for p in proba[i]] if proba is not None else []))
    return buffer.getvalue()


def run(model: str, data: str, *, out: str | None = None, proba: bool = False, label: str | None = None,
        print_fn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Predict the class of each row of ``data`` with the checkpoint ``model``; write a CSV to ``out`` (or stdout).

    Returns a summary: what was read, the number of rows, the accuracy where ``data`` has labels (else
    None) and where the predictions went. Problems with either file are ``ValueError`` in one line.
    """
    say = print_fn or (print if out is not None else (lambda line: print(line, file=sys.stderr)))
    predictor = load_predictor(model)
    features = read_features(data, predictor.n_features_in_, label)
    say(f"read {features.description}")
    predicted = predictor.predict(features.X)
    table = _rows(predictor.classes_, predicted, predictor.predict_proba(features.X) if proba else None)
    accuracy = None
    if features.y is not None:
        accuracy = float(np.mean(predicted.astype(str) == features.y.astype(str)))
        unknown = sorted(set(features.y.astype(str).tolist()) - set(predictor.classes_.astype(str).tolist()))
        note = f" ({len(unknown)} label(s) the model never saw, e.g. {unknown[0]!r})" if unknown else ""
        say(f"accuracy {accuracy:.4f} against the file's labels{note}")
    if out is None:
        sys.stdout.write(table)
        where = "stdout"
    else:
        with atomic_open(Path(out), "w") as handle:
            handle.write(table)
        where = str(out)
        say(f"wrote {len(predicted)} predictions to {where}")
    return {"data": features.description, "rows": len(predicted), "accuracy": accuracy, "out": where}
