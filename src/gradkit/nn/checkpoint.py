"""Checkpoints: :func:`save` a :class:`Sequential` to one ``.npz`` file, :func:`load` it back.

The file is a plain ``.npz`` archive. Each parameter array is stored under its
model name (``"0.W"``, ``"0.b"``, ``"2.W"``, ...) and one more entry,
``__gradkit__``, holds the UTF-8 bytes of a JSON header as a ``uint8`` array::

    {"format": "gradkit.nn.checkpoint", "format_version": 1, "gradkit_version": "0.1.0",
     "architecture": model.config(), "params": {"0.W": {"shape": [4, 8], "dtype": "float32"}, ...},
     "metadata": {...} or null}

Loading uses ``np.load(..., allow_pickle=False)`` and ``json`` only, so a
checkpoint can never run code. The architecture is rebuilt with
:func:`gradkit.nn.layers.from_config` and every array is checked against what it
builds (name, shape, dtype) before the model is returned. Saving is atomic: the
archive is written to a temp file beside the target, fsynced, then moved over it.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_open
from .layers import from_config
from .model import Sequential

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]

FORMAT = "gradkit.nn.checkpoint"
FORMAT_VERSION = 1
_HEADER = "__gradkit__"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip


def save(model: Sequential, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> None:
    """Write ``model`` (architecture, parameters with their dtypes, ``metadata``) to ``path``.

    Parameters
    ----------
    model : Sequential
        Every layer must be one :func:`load` can rebuild (``Dense``, ``ActivationLayer``,
        ``Dropout``); otherwise this raises ``ValueError`` instead of writing a file that
        cannot be loaded. Dropout's random state is not saved.
    path : str or os.PathLike
        The file to write, used exactly as given (no ``.npz`` is appended). An existing
        file is replaced atomically: a crash mid-write leaves it as it was.
    metadata : dict or None
        Anything JSON can hold, e.g. class labels or the training settings. NumPy scalars
        and arrays are converted with ``.tolist()``. :func:`load` returns what JSON gives
        back: tuples become lists and non-string keys become strings.

    Raises
    ------
    TypeError
        ``model`` is not a ``Sequential``, ``path`` is not a str or path, or ``metadata``
        is not a dict or holds something JSON cannot (a set, an object, ...).
    ValueError
        ``path`` is empty or a directory, or the model cannot be rebuilt from its config.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from gradkit import nn
    >>> model = nn.Sequential([nn.Dense(4, 8, seed=0), "relu", nn.Dense(8, 3, seed=1)])
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "model.npz")
    >>> nn.save(model, path, metadata={"classes": np.array([3, 5, 7])})
    >>> loaded = nn.load(path)
    >>> loaded.metadata
    {'classes': [3, 5, 7]}
    >>> x = np.ones((2, 4), dtype=np.float32)
    >>> bool(np.array_equal(loaded.forward(x), model.forward(x)))
    True
    >>> tmp.cleanup()
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a gradkit.nn.Sequential; got {type(model).__name__}")
    target = _check_path(path)
    if target.is_dir():
        raise ValueError(f"path must name a file; got {str(path)!r}, which is a directory")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"path: the directory {str(target.parent)!r} does not exist")
    metadata = _plain_metadata(metadata)
    architecture = _architecture(model)
    params = model.params
    try:
        rebuilt = _build(architecture)
    except ValueError as exc:
        raise ValueError(f"model cannot be checkpointed: load could not rebuild it ({exc})") from None
    problem = _mismatch(rebuilt.params, params)
    if problem:
        raise ValueError(f"model cannot be checkpointed: {problem}")

    from .. import __version__

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gradkit_version": __version__,
        "architecture": architecture,
        "params": _spec(params),
        "metadata": metadata,
    }
    blob = np.frombuffer(json.dumps(header, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    with atomic_open(target, "wb") as handle:  # a file object: numpy appends no ".npz"
        np.savez(handle, **params, **{_HEADER: blob})


def load(path: str | os.PathLike[str]) -> Sequential:
    """Rebuild the :class:`Sequential` saved by :func:`save`; its metadata is ``model.metadata``.

    Parameters keep their saved dtypes, so the model's outputs are bit-identical to
    the saved model's. Nothing in the file is executed: arrays are read with
    ``allow_pickle=False`` and the header is JSON.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.

    Returns
    -------
    Sequential
        With an attribute ``metadata``: the dict given to :func:`save`, or None.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a gradkit checkpoint, is truncated or corrupt, has another
        ``format_version``, an architecture this gradkit cannot build, or arrays that
        are missing, unexpected, or of another shape or dtype than the architecture's.
        The message names the path and the problem.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from gradkit import nn
    >>> model = nn.Sequential([nn.Dense(2, 2, seed=0, dtype=np.float64), "tanh"])
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "net.ckpt")
    >>> nn.save(model, path)
    >>> loaded = nn.load(path)
    >>> loaded.params["0.W"].dtype, loaded.metadata
    (dtype('float64'), None)
    >>> tmp.cleanup()
    """
    source = _check_path(path)
    with open(source, "rb") as handle:  # a missing file raises FileNotFoundError here
        signature = handle.read(4)
        handle.seek(0)
        if not signature:
            raise ValueError(f"{source}: not a gradkit checkpoint: the file is empty")
        if signature not in _ZIP_SIGNATURES:
            raise ValueError(f"{source}: not a gradkit checkpoint: not an .npz (zip) archive")
        try:
            archive = np.load(handle, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{source}: truncated or corrupt checkpoint: not a readable zip archive ({exc})") from None
        with archive:
            if _HEADER not in archive.files:
                raise ValueError(
                    f"{source}: not a gradkit checkpoint: no {_HEADER!r} entry "
                    f"(it holds {sorted(archive.files)}); write checkpoints with gradkit.nn.save"
                )
            header = _parse_header(_read(archive, _HEADER, source), source)
            arrays = {name: _read(archive, name, source) for name in archive.files if name != _HEADER}

    try:
        model = _build(header["architecture"], arrays)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    problem = _mismatch(model.params, arrays)
    if problem is None:
        table, spec = header["params"], _spec(arrays)
        wrong = [name for name in sorted(set(table) | set(spec)) if table.get(name) != spec.get(name)]
        if wrong:
            problem = (f"the header's params table disagrees with the arrays at {wrong[0]!r}: "
                       f"it says {table.get(wrong[0])}, the array is {spec.get(wrong[0])}")
    if problem:
        raise ValueError(f"{source}: {problem}")
    for name, value in arrays.items():
        index, key = name.split(".", 1)
        model.layers[int(index)].params[key] = value
    model.metadata = header["metadata"]
    return model


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(f"path must be a str or an os.PathLike of str; got {type(path).__name__}")
    if not os.fspath(path):
        raise ValueError("path must not be empty; got ''")
    return Path(path)


def _to_json(value: Any) -> Any:
    """``json.dumps`` hook: NumPy scalars and arrays become Python numbers and lists."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _plain_metadata(metadata: Any) -> dict[str, Any] | None:
    """``metadata`` as :func:`load` will return it (a JSON round trip)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None; got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata, default=_to_json))
    except TypeError as exc:
        raise TypeError(
            f"metadata must be JSON-serializable (dicts, lists, str, numbers, bool, None; "
            f"NumPy scalars and arrays are converted); got a value that is not: {exc}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"metadata must be JSON-serializable; {exc}") from None


def _architecture(model: Sequential) -> list[dict[str, Any]]:
    configs = []
    for i, layer in enumerate(model.layers):
        try:
            configs.append(layer.config())
        except NotImplementedError:
            raise TypeError(f"model: layer {i} ({type(layer).__name__}) has no config(); it cannot be saved") from None
    try:
        return json.loads(json.dumps(configs))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"model: its layers' configs must be JSON-serializable; {exc}") from None


def _build(architecture: Any, arrays: dict[str, np.ndarray] | None = None) -> Sequential:
    """The model an architecture describes; ``ValueError`` saying which layer cannot be built.

    With ``arrays``, a ``Dense`` layer must match its stored weight's shape *before* it is
    built, so a crafted header cannot make us allocate more than the file holds.
    """
    if not isinstance(architecture, list) or not architecture:
        raise ValueError(f"the architecture must be a non-empty list of layer configs; got {architecture!r}")
    layers = []
    for i, config in enumerate(architecture):
        if not isinstance(config, dict):
            raise ValueError(f"layer {i} of the architecture must be a dict; got {config!r}")
        if arrays is not None and config.get("type") == "Dense":
            declared = (config.get("in_features"), config.get("out_features"))
            stored = arrays.get(f"{i}.W")
            if stored is None or tuple(stored.shape) != declared:
                found = "no array" if stored is None else f"shape {tuple(stored.shape)}"
                raise ValueError(f"layer {i} declares Dense{declared} but the file has {found} for '{i}.W'")
        try:
            layers.append(from_config(config))
        except KeyError as exc:
            raise ValueError(f"layer {i} of the architecture ({config!r}) lacks the key {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"layer {i} of the architecture cannot be built: {exc}") from None
        rebuilt = json.loads(json.dumps(layers[-1].config()))
        if rebuilt != config:  # an entry from_config ignores or changes: refuse rather than guess
            raise ValueError(f"layer {i} of the architecture, {config!r}, does not round-trip: it builds {rebuilt!r}")
    return Sequential(layers)


def _spec(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {name: {"shape": list(a.shape), "dtype": a.dtype.name} for name, a in arrays.items()}


def _mismatch(expected: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> str | None:
    """What differs between the parameters an architecture builds and ``found``, or None."""
    missing = [name for name in expected if name not in found]
    if missing:
        return f"parameter array(s) {', '.join(map(repr, missing))} missing; the architecture has {sorted(expected)}"
    extra = [name for name in found if name not in expected]
    if extra:
        return f"unexpected array(s) {', '.join(map(repr, extra))}; the architecture has {sorted(expected)}"
    for name, ref in expected.items():
        got = found[name]
        if got.shape != ref.shape:
            return f"parameter {name!r} has shape {got.shape}; the architecture builds {ref.shape}"
        if got.dtype != ref.dtype:
            return f"parameter {name!r} has dtype {got.dtype}; the architecture builds {ref.dtype}"
    return None


def _read(archive: Any, name: str, source: Path) -> np.ndarray:
    """One array of the archive, never unpickled; ``ValueError`` naming it otherwise."""
    try:
        value = archive[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"{source}: array {name!r} is an object array (pickled Python objects), which a "
                f"checkpoint never holds; refusing to unpickle it ({exc})"
            ) from None
        raise ValueError(f"{source}: truncated or corrupt checkpoint: array {name!r} is unreadable ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ValueError(f"{source}: truncated or corrupt checkpoint: array {name!r} is unreadable ({exc})") from None
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{source}: entry {name!r} is not a .npy array; not a gradkit checkpoint")
    return value


def _parse_header(raw: np.ndarray, source: Path) -> dict[str, Any]:
    """The JSON header, checked for the format, its version and the type of each field."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(
            f"{source}: the {_HEADER!r} entry must be a 1-d uint8 array of JSON bytes; "
            f"got dtype {raw.dtype}, shape {raw.shape}"
        )
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"{source}: the {_HEADER!r} header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{source}: the {_HEADER!r} header must be a JSON object; got {type(header).__name__}")
    if header.get("format") != FORMAT:
        raise ValueError(f"{source}: not a gradkit checkpoint: format is {header.get('format')!r}, expected {FORMAT!r}")
    version = header.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        from .. import __version__

        raise ValueError(
            f"{source}: the file has format_version {version!r}; this gradkit ({__version__}) "
            f"reads format_version {FORMAT_VERSION}"
        )
    for key, kind in (("architecture", list), ("params", dict), ("metadata", (dict, type(None)))):
        if key not in header or not isinstance(header[key], kind):
            raise ValueError(f"{source}: the header's {key!r} is missing or of the wrong type; got {header.get(key)!r}")
    return header
