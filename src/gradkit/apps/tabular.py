"""Reading a user's table for the CLI jobs: a CSV (any common delimiter, header or not) or an ``.npz``.

Every decision is made from the content and reported back in :attr:`Table.description`
(the jobs print it before training), never guessed silently:

* the delimiter is sniffed from the first MiB among ``, ; TAB |`` (``csv.Sniffer``);
* the first row is a header when some column is numeric below it but not in it;
* the label column is ``label`` when the header has one, the one named by ``label=``
  (refused when there is no such column), else the last column — and the description says which;
* labels are class names: text or integers. A numeric label column with non-integer values is a
  regression target, which the classification jobs refuse with that reason. Empty or NaN labels
  are refused, as are non-finite or complex features.

CSV values are parsed by ``numpy.loadtxt`` (a C parser: memory in proportion to the result, no
per-field limit); an ``.npz`` is read by the reader checkpoints use (:mod:`gradkit._io.archive`): the
zip directory, every member's flags, compression and declared size are checked before anything is
read, arrays are read with bounded reads and never unpickled, so a crafted file cannot make it
allocate more than :data:`MAX_NPZ_ARRAY_BYTES` an array.
"""

from __future__ import annotations

import csv
import io
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import open_regular
from .._io.archive import (
    MAX_NPY_HEADER,
    ArchiveKind,
    check_directory,
    check_expansion,
    check_signature,
    list_members,
    name_list,
    read_member,
)

__all__ = ["Features", "Table", "read_features", "read_table"]

_SNIFF_BYTES = 1 << 20
_DELIMITERS = ",;\t|"
#: the largest array an ``.npz`` member may declare (bytes); more is refused before reading
MAX_NPZ_ARRAY_BYTES = 8 << 30
#: how the shared archive reader names a table in its messages
TABLE = ArchiveKind(".npz table", "an .npz table", "an .npz table of arrays X and y", ".npz tables")


@dataclass(frozen=True)
class Features:
    """Features ``X`` (float64, 2-d), the labels ``y`` where the file has them (else None) and what was read."""

    X: np.ndarray
    y: np.ndarray | None
    description: str


@dataclass(frozen=True)
class Table:
    """Features ``X`` (float64, 2-d), raw labels ``y`` (1-d) and what was read, in words."""

    X: np.ndarray
    y: np.ndarray
    description: str


def read_table(path: str | os.PathLike[str], label: str | None = None, *, option: str = "--data") -> Table:
    """Read features and labels from a ``.csv`` or ``.npz`` file; errors are ``ValueError`` naming ``option``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` file, or an ``.npz`` with arrays ``X`` (samples × features) and ``y``.
    label : str or None
        The CSV's label column by header name; None means ``label`` if there is such a column,
        else the last one.
    option : str
        How the caller names ``path`` in messages.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.TemporaryDirectory()
    >>> p = os.path.join(d.name, "t.csv")
    >>> _ = open(p, "w").write("a;b;kind\\n1;2;cat\\n3;4;dog\\n5;6;cat\\n")
    >>> t = read_table(p)
    >>> t.X.shape, t.y.tolist()
    ((3, 2), ['cat', 'dog', 'cat'])
    >>> print(t.description)
    t.csv: 3 rows × 2 features, label column 'kind' (the last; no column is named 'label'); delimiter ';', header row, 2 classes
    >>> d.cleanup()
    """
    p = _regular_file(path, option)
    if p.suffix.lower() == ".npz":
        X, y, how = _read_npz(p, option)
    else:
        X, y, how = _read_csv(p, label, option)
    _check(X, y, p, option)
    classes = np.unique(y)
    return Table(X, y, f"{p.name}: {X.shape[0]} rows × {X.shape[1]} features, {how}, {len(classes)} classes")


def read_features(path: str | os.PathLike[str], n_features: int, label: str | None = None, *,
                  option: str = "--data") -> Features:
    """Features for a model of ``n_features`` inputs, and labels where the file has them (to score against).

    A CSV with ``n_features`` columns is all features; with one more, the label column is chosen by
    :func:`read_table`'s rules (``label=``, a column named ``label``, else the last). An ``.npz`` holds
    ``X`` and, optionally, ``y``. Errors are ``ValueError`` naming ``option``.

    >>> import tempfile, os
    >>> d = tempfile.TemporaryDirectory()
    >>> p = os.path.join(d.name, "new.csv")
    >>> _ = open(p, "w").write("a,b\\n1,2\\n3,4\\n")
    >>> f = read_features(p, 2)
    >>> f.X.tolist(), f.y is None, f.description
    ([[1.0, 2.0], [3.0, 4.0]], True, "new.csv: 2 rows × 2 features, no labels; delimiter ',', header row")
    >>> d.cleanup()
    """
    p = _regular_file(path, option)
    if p.suffix.lower() == ".npz":
        X, y, how = _read_npz(p, option, labels=False)
    else:
        sniffed = _sniff(p, option)
        delimiter, first, header = sniffed
        if label is not None or len(first) == n_features + 1:
            X, y, how = _read_csv(p, label, option, sniffed)
        elif len(first) == n_features:
            X, y = _load_features(p, sniffed, list(range(len(first))), option), None
            how = f"no labels; {_layout(delimiter, header)}"
        else:
            raise ValueError(f"{option} {p}: {len(first)} columns; the model takes {n_features} features "
                             f"(and, optionally, a label column)")
    _check_features(X, p, option)
    if X.shape[1] != n_features:
        raise ValueError(f"{option} {p}: {X.shape[1]} features; the model takes {n_features}")
    if y is not None and y.shape[0] != X.shape[0]:
        raise ValueError(f"{option} {p}: X has {X.shape[0]} rows but y has {y.shape[0]}")
    return Features(X, y, f"{p.name}: {X.shape[0]} rows × {X.shape[1]} features, {how}")


def _regular_file(path: str | os.PathLike[str], option: str) -> Path:
    p = Path(path)
    try:
        is_file = p.is_file()
    except OSError as exc:  # a symlink loop, a name too long
        raise ValueError(f"{option} {str(path)!r}: {exc.strerror or exc}") from None
    if not is_file:
        reason = "no such file" if not p.exists() else "not a regular file"
        raise ValueError(f"{option} {str(path)!r}: {reason}")
    if p.suffix.lower() not in (".npz", ".csv", ".txt", ".tsv"):
        raise ValueError(f"{option} must be a .csv or .npz file; got {str(path)!r}")
    return p


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sniff(p: Path, option: str) -> tuple[str, list[str], bool]:
    """The delimiter, the first row's fields and whether it is a header, from the first MiB."""
    with open(p, "rb") as handle:
        raw = handle.read(_SNIFF_BYTES)
    try:
        sample = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if len(raw) < _SNIFF_BYTES or exc.start < len(raw) - 4:  # not a multi-byte character cut at the end
            raise ValueError(f"{option} {p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        sample = raw[: exc.start].decode("utf-8-sig")
    lines = [line for line in sample.splitlines()[:-1 if len(raw) == _SNIFF_BYTES else None] if line.strip()]
    if len(lines) < 1:
        raise ValueError(f"{option} {p}: no complete line in the first {_SNIFF_BYTES // 1024} KiB")
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","  # one column, or no consistent delimiter: the column check below says so
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines[:2])), delimiter=delimiter))
    except csv.Error as exc:  # e.g. a field over csv's 128 KiB limit: no number is that long
        raise ValueError(f"{option} {p}: cannot read the first rows as CSV ({exc})") from None
    first = [f.strip() for f in rows[0]]
    header = len(rows) > 1 and any(not _numeric(a) and _numeric(b) for a, b in zip(first, rows[1]))
    return delimiter, first, header


def _read_csv(p: Path, label: str | None, option: str,
              sniffed: tuple[str, list[str], bool] | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Features and labels of a CSV; ``sniffed`` is :func:`_sniff`'s answer where the caller has it already."""
    delimiter, first, header = sniffed or _sniff(p, option)
    if len(first) < 2:
        raise ValueError(f"{option} {p}: found 1 column (looked for the delimiters , ; TAB |); "
                         "need at least one feature column and a label column")
    if header:
        if label is not None and label not in first:
            raise ValueError(f"--label {label!r} is not a column of {p.name}; its columns: {', '.join(first)}")
        name = label if label is not None else "label" if "label" in first else first[-1]
        col = first.index(name)
        how = f"label column {name!r}" + ("" if label is not None or name == "label"
                                           else " (the last; no column is named 'label')")
    else:
        if label is not None:
            raise ValueError(f"--label {label!r}: {p.name} has no header row (its first row is numbers), so no "
                             "column has a name; leave --label out to use the last column")
        col, how = len(first) - 1, "label in the last column"
    X = _load_features(p, (delimiter, first, header), [i for i in range(len(first)) if i != col], option)
    try:
        y = np.loadtxt(p, delimiter=delimiter, skiprows=int(header), usecols=[col], dtype=str, ndmin=1,
                       encoding="utf-8-sig", comments=None, quotechar='"')
    except ValueError as exc:
        raise ValueError(_fields_message(p, option, len(first), _short(exc))) from None
    y = np.char.strip(y)
    missing = np.isin(np.char.lower(y), ["", "nan", "na", "n/a", "null", "none"])
    if missing.any():
        raise ValueError(f"{option} {p}: {int(missing.sum())} row(s) have no label (empty or NaN), first in data "
                         f"row {int(np.argmax(missing)) + 1}; every row needs a class")
    numeric = all(_numeric(v) for v in y)
    if numeric and len(y):
        values = y.astype(np.float64)
        if np.isnan(values).any():
            raise ValueError(f"{option} {p}: the label column has {int(np.isnan(values).sum())} NaN value(s); "
                             "every row needs a class")
        y = values.astype(np.int64) if np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53) else values
    return X, y, f"{how}; {_layout(delimiter, header)}"


def _load_features(p: Path, sniffed: tuple[str, list[str], bool], features: list[int], option: str) -> np.ndarray:
    """The ``features`` columns as float64; a failure says where the first text is (:func:`_text_field`)."""
    delimiter, first, header = sniffed
    try:
        return np.loadtxt(p, delimiter=delimiter, skiprows=int(header), usecols=features, dtype=np.float64, ndmin=2,
                          encoding="utf-8-sig", comments=None, quotechar='"')
    except ValueError as exc:
        hint = _text_field(p, delimiter, int(header), features, first if header else None)
        raise ValueError(_fields_message(p, option, len(first), hint or _short(exc))) from None


def _fields_message(p: Path, option: str, n_fields: int, detail: str) -> str:
    return f"{option} {p}: feature columns must be numeric and every row must have {n_fields} fields ({detail})"


def _layout(delimiter: str, header: bool) -> str:
    """The CSV's layout in words, for the description."""
    sep = {"\t": "TAB"}.get(delimiter, delimiter)
    return f"delimiter {sep!r}, {'header row' if header else 'no header row'}"


def _text_field(p: Path, delimiter: str, skip: int, features: list[int], names: list[str] | None,
                max_rows: int = 100_000) -> str | None:
    """Where the first text sits in a feature column (rows and columns counted from 1), and the fix: the
    label column named with ``--label``, or put last in a file without a header. None if the first
    ``max_rows`` rows hold none (the problem is then a row's field count)."""
    with open(p, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        for number, row in enumerate(reader, start=1 - skip):
            if number < 1:
                continue
            if number > max_rows:
                return None
            for col in features:
                if col < len(row) and row[col].strip() and not _numeric(row[col]):
                    where = f"data row {number}, column {col + 1}"
                    if names is not None:
                        return (f"{where} ({names[col]!r}) holds {row[col].strip()!r}, not a number; if it is the "
                                f"label column, pass --label {names[col]}")
                    return (f"{where} holds {row[col].strip()!r}, not a number; without a header row the label "
                            "must be the last column")
    return None


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "…"


def _read_npz(p: Path, option: str, labels: bool = True) -> tuple[np.ndarray, Any, str]:
    """Arrays ``X`` and ``y`` read with the checkpoints' untrusting reader (:mod:`gradkit._io.archive`)."""
    try:
        with open_regular(p, TABLE.a) as (handle, size):
            check_signature(handle, p, TABLE)
            check_directory(handle, size, p, TABLE)
            try:
                archive = zipfile.ZipFile(handle)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, struct.error) as exc:
                raise ValueError(f"{p}: not a readable .npz archive ({_short(exc)})") from None
            with archive:
                members = list_members(archive, size, p, TABLE)
                names = ("X", "y") if labels or "y" in members else ("X",)
                for name in names:
                    if name not in members:
                        raise ValueError(f"{p}: an .npz needs arrays 'X' and 'y'; found {name_list(members)}")
                    if members[name].file_size > MAX_NPZ_ARRAY_BYTES + MAX_NPY_HEADER:
                        raise ValueError(f"{p}: member {name}.npy declares {members[name].file_size:,} bytes; "
                                         f"at most {MAX_NPZ_ARRAY_BYTES:,} are read")
                check_expansion({k: members[k] for k in names}, size, p)
                X = read_member(archive, members["X"], "X", p, kind=TABLE)
                y = read_member(archive, members["y"], "y", p, kind=TABLE) if "y" in names else None
    except ValueError as exc:
        raise ValueError(f"{option} {exc}") from None
    if X.dtype.kind == "c" or (y is not None and y.dtype.kind == "c"):
        raise ValueError(f"{option} {p}: complex data is not supported (X is {X.dtype}, y is {getattr(y, 'dtype', None)})")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{option} {p}: X must be numeric; got dtype {X.dtype}")
    if y is None:
        return np.asarray(X, dtype=np.float64), None, "array X, no labels"
    if y.ndim != 1:
        raise ValueError(f"{option} {p}: y must be 1-d (one label per row); got shape {y.shape}")
    if y.dtype.kind == "f":
        if np.isnan(y).any():
            raise ValueError(f"{option} {p}: y has {int(np.isnan(y).sum())} NaN value(s); every row needs a class")
        if np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
    return np.asarray(X, dtype=np.float64), y, "arrays X and y"


def _check_features(X: np.ndarray, p: Path, option: str) -> None:
    if X.ndim != 2:
        raise ValueError(f"{option} {p}: X must be 2-d (samples, features); got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{option} {p}: no data (X has shape {X.shape})")
    bad = ~np.isfinite(X)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{option} {p}: X contains NaN or infinity ({int(bad.sum())} value(s), first in row {row})")


def _check(X: np.ndarray, y: np.ndarray, p: Path, option: str) -> None:
    if X.ndim == 2 and X.shape[0] != y.shape[0]:
        raise ValueError(f"{option} {p}: X has {X.shape[0]} rows but y has {y.shape[0]}")
    _check_features(X, p, option)
    if y.dtype.kind == "f":
        raise ValueError(f"{option} {p}: the labels are non-integer numbers ({len(np.unique(y))} distinct values, "
                         "e.g. " + ", ".join(f"{v:g}" for v in y[:3]) + "): a regression target; this job classifies")
    if len(np.unique(y)) < 2:
        raise ValueError(f"{option} {p}: the labels need at least 2 classes; found {len(np.unique(y))}")
