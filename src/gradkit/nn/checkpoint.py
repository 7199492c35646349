"""Checkpoints: :func:`save` a :class:`Sequential` to one ``.npz`` file, :func:`load` it back.

The file is a plain ``.npz`` archive. Each parameter array is stored under its
model name (``"0.W"``, ``"0.b"``, ``"2.W"``, ...) and one more entry,
``__gradkit__``, holds the UTF-8 bytes of a JSON header as a ``uint8`` array::

    {"format": "gradkit.nn.checkpoint", "format_version": 2, "gradkit_version": "0.1.0",
     "architecture": model.config(), "params": {"0.W": {"shape": [4, 8], "dtype": "float32"}, ...},
     "identity": [{"name": "Dense", "builtin": true, "params": {...}}, ...], "metadata": {...} or null}

``identity`` (new in format version 2) records which code each layer's name stood for
(``gradkit.nn._layer_identity``): its name, whether it is gradkit's built-in, every
constructor parameter, and for a custom one the module and qualified name defining it.
:func:`save` refuses an activation named like a built-in that is not it (load would
rebuild the built-in), and :func:`load` refuses a layer whose name now resolves to other
code or whose rebuilt parameters differ from the stored ones. Files of format version 1
(no ``identity``) still load, with the checks of that version.

Loading reads the zip archive and every ``.npy`` member itself (never
``np.load``): nothing is unpickled, so a checkpoint can never run code, and no
member is decompressed before its declared size has been checked against what
the architecture in the header needs. The architecture is rebuilt with
:func:`gradkit.nn.layers.from_config` (``Dense`` layers from the loaded arrays
themselves, never randomly initialized first) and every array is checked against
it (name, shape, dtype). Saving is atomic: the archive is written to a temp file
beside the target, fsynced, then moved over it.

What :func:`load` refuses, always with ``ValueError`` naming the path and the problem
(only a missing or unreadable-by-permission path raises ``FileNotFoundError`` /
``PermissionError``, as :func:`open` does):

* anything that is not a regular file (directory, FIFO, device, socket, symlink
  loop), checked before the file is opened and again on the opened descriptor;
  an empty file (``/proc/self/mem`` and other pseudo-files report 0 bytes);
* an archive whose central directory lists more than 65,535 members or is over
  8 MiB, duplicate member names, encrypted members, compression other than
  stored or deflated, members that point past the end of the file;
* a header member over 4 MiB of JSON (worst-case JSON parsing costs about 25
  bytes of memory per byte, so at most ~100 MiB; 4 MiB holds ~13,000 ``Dense``
  layers or ~150,000 metadata numbers, and :func:`save` refuses to write more);
* any member the architecture does not call for (read never), a parameter member
  whose declared size differs from its shape and dtype's, a ``.npy`` header over
  4 KiB, and members that together expand to more than 100 times the file's size
  plus 64 MiB (a zip bomb; :func:`save` writes members uncompressed, ratio 1).

A lying size in the central directory lets nothing more through: each member is
read with a bounded read of exactly its declared size, and zipfile checks the
CRC of what was read.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_open, open_regular, resolve_target
from .._io.archive import (
    MAX_NPY_HEADER,
    check_directory,
    check_members,
    check_signature,
    list_members,
    name_list,
    read_member,
)
from ._layer_identity import mismatch, record
from .layers import Dense, Layer, _dense_args, from_config
from .model import Sequential

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]

FORMAT = "gradkit.nn.checkpoint"
FORMAT_VERSION = 2
#: the format versions load reads: 1 (no "identity" in the header) and the current one
_READS = (1, FORMAT_VERSION)
_HEADER = "__gradkit__"
#: the JSON header's largest size (see the module docstring for why 4 MiB)
_MAX_HEADER_BYTES = 4 << 20


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
        file is replaced atomically: a crash mid-write leaves it as it was. A symlink is
        kept: the file it points to is replaced. Temp files that an earlier save killed
        mid-way left beside the target (``.<name>.gradkit-<pid>-<hex>.tmp`` of a process
        that no longer runs) are removed after the write.
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
        ``path`` is empty, a directory or a symlink loop, the model cannot be rebuilt from
        its config, a layer is not what load would rebuild from its name (an activation
        named like a built-in that is not it, such as ``custom_activation(..., name="relu")``;
        a custom activation other than the one registered under its name; a subclass of a
        gradkit layer), or the JSON header (architecture and metadata) is over 4 MiB, which
        :func:`load` refuses.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from gradkit import nn
    >>> model = nn.Sequential([nn.Dense(4, 8, rng=0), "relu", nn.Dense(8, 3, rng=1)])
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
    _check_path(path)
    target = resolve_target(path)  # a symlink's target; ValueError for a loop
    if target.is_dir():
        raise ValueError(f"path must name a file; got {str(path)!r}, which is a directory")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"path: the directory {str(target.parent)!r} does not exist")
    blob = _header_blob(model, _plain_metadata(metadata))
    with atomic_open(target, "wb") as handle:  # a file object: numpy appends no ".npz"
        np.savez(handle, **model.params, **{_HEADER: blob})  # type: ignore[arg-type]


def _header_blob(model: Sequential, metadata: dict[str, Any] | None) -> np.ndarray:
    """The JSON header :func:`save` writes, as ``uint8`` bytes; ``ValueError`` for a model load would not rebuild."""
    architecture = _architecture(model)
    try:
        identity = record(model)  # before the rebuild, whose error for a built-in's name would say less
    except ValueError as exc:
        raise ValueError(f"model cannot be checkpointed: {exc}") from None
    params = model.params
    try:
        rebuilt = _build(architecture)  # Dense layers hold placeholders: nothing of the model's size is allocated
    except ValueError as exc:
        raise ValueError(f"model cannot be checkpointed: load could not rebuild it ({exc})") from None
    problem = _mismatch(rebuilt.params, params) or mismatch(identity, rebuilt, saving=True)
    if problem:
        raise ValueError(f"model cannot be checkpointed: {problem}")

    from .. import __version__

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gradkit_version": __version__,
        "architecture": architecture,
        "params": _spec(params),
        "identity": identity,
        "metadata": metadata,
    }
    blob = np.frombuffer(json.dumps(header, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    if blob.size > _MAX_HEADER_BYTES:
        raise ValueError(
            f"model cannot be checkpointed: its JSON header (architecture, params table, identity, metadata) is "
            f"{blob.size} bytes; load accepts at most {_MAX_HEADER_BYTES} (4 MiB). Keep large metadata "
            f"(arrays, long lists) in a separate file"
        )
    return blob


def load(path: str | os.PathLike[str]) -> Sequential:
    """Rebuild the :class:`Sequential` saved by :func:`save`; its metadata is ``model.metadata``.

    Parameters keep their saved dtypes, so the model's outputs are bit-identical to
    the saved model's. Nothing in the file is executed: arrays are read from their
    ``.npy`` bytes, never unpickled, and the header is JSON. Memory: the parameters
    once plus about 1 MiB of read buffer (the layers are built from the loaded arrays;
    their gradient buffers are allocated at the first ``backward``); no member is
    decompressed before its declared size is checked against the architecture.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save` (a symlink to one is followed).

    Returns
    -------
    Sequential
        With an attribute ``metadata``: the dict given to :func:`save`, or None.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (or is a dangling symlink), as with :func:`open`.
    PermissionError
        ``path`` may not be read, as with :func:`open`.
    ValueError
        Every other unreadable input: ``path`` is not a regular file (a directory, FIFO,
        device, socket or symlink loop) or is empty; the file is not a gradkit checkpoint,
        is truncated or corrupt, has another ``format_version``, an architecture this
        gradkit cannot build, a layer whose stored identity (format version 2) is not what
        its name resolves to now (other code, another module, a built-in where a custom
        activation was saved) or whose rebuilt parameters differ from the stored ones,
        members that are duplicated, encrypted, compressed other than stored/deflated,
        larger than the architecture needs or not called for by it, or arrays that are
        missing or of another shape or dtype than the architecture's. The message names
        the path and the problem.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from gradkit import nn
    >>> model = nn.Sequential([nn.Dense(2, 2, rng=0, dtype=np.float64), "tanh"])
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "net.ckpt")
    >>> nn.save(model, path)
    >>> loaded = nn.load(path)
    >>> loaded.params["0.W"].dtype, loaded.metadata
    (dtype('float64'), None)
    >>> tmp.cleanup()
    """
    source = _check_path(path)
    with open_regular(source, "a gradkit checkpoint") as (handle, size):
        check_signature(handle, source)
        check_directory(handle, size, source)
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, struct.error) as exc:
            raise ValueError(f"{source}: truncated or corrupt checkpoint: not a readable zip archive ({exc})") from None
        with archive:
            members = list_members(archive, size, source)
            header = _read_header(archive, members, source)  # taken out of members
            model = _rebuild(header, source)
            expected = model.params  # Dense layers hold placeholders of the right shape and dtype (no memory)
            check_members(members, expected, size, source)
            arrays = {name: read_member(archive, members[name], name, source, spec=value)
                      for name, value in expected.items()}
            # every array now has the architecture's shape and dtype: the header's table must say the same
            table, spec = header["params"], _spec(arrays)
            wrong = [name for name in sorted(set(table) | set(spec)) if table.get(name) != spec.get(name)]
            if wrong:
                raise ValueError(f"{source}: the header's params table disagrees with the arrays at {wrong[0]!r}: "
                                 f"it says {_short(table.get(wrong[0]))}, the array is {spec.get(wrong[0])}")
    for name, value in arrays.items():
        index, key = name.split(".", 1)
        model.layers[int(index)].params[key] = value  # replaces a placeholder; grads follow at first use
    model.metadata = header["metadata"]
    return model


def _read_header(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], source: Path) -> dict[str, Any]:
    """The archive's JSON header, parsed and checked (:func:`_parse_header`); its member is popped from ``members``."""
    info = members.pop(_HEADER, None)
    if info is None:
        raise ValueError(
            f"{source}: not a gradkit checkpoint: no {_HEADER!r} entry "
            f"(it holds {name_list(members)}); write checkpoints with gradkit.nn.save"
        )
    if info.file_size > _MAX_HEADER_BYTES + MAX_NPY_HEADER:
        raise ValueError(
            f"{source}: the {_HEADER!r} header member declares {info.file_size} bytes; a checkpoint "
            f"header holds at most {_MAX_HEADER_BYTES} bytes of JSON (refused unread)"
        )
    return _parse_header(read_member(archive, info, _HEADER, source, header=True), source)


def _rebuild(header: dict[str, Any], source: Path) -> Sequential:
    """The model the header's architecture builds (placeholder arrays), each layer checked against its identity."""
    try:
        model = _build(header["architecture"])
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    problem = mismatch(header["identity"], model) if header["format_version"] >= 2 else None  # 1 has none
    if problem:
        raise ValueError(f"{source}: {problem}")
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


def _build(architecture: Any) -> Sequential:
    """The model an architecture describes; ``ValueError`` saying which layer cannot be built.

    Its ``Dense`` layers hold zero-stride placeholders of the right shape and dtype (no
    memory, read-only): :func:`load` puts the file's arrays in their place, :func:`save`
    compares the model's arrays with them. So a crafted header cannot make either
    allocate anything of the size it declares.
    """
    if not isinstance(architecture, list) or not architecture:
        raise ValueError(f"the architecture must be a non-empty list of layer configs; got {_short(architecture)}")
    layers: list[Layer] = []
    for i, config in enumerate(architecture):
        if not isinstance(config, dict):
            raise ValueError(f"layer {i} of the architecture must be a dict; got {_short(config)}")  # noqa: TRY004 (file content)
        layer: Layer
        try:
            if config.get("type") == "Dense":
                shape = (config["in_features"], config["out_features"])
                args = _dense_args(*shape, config["init"], config["dtype"])
                if args[0] * args[1] * args[3].itemsize > np.iinfo(np.intp).max:
                    raise ValueError(f"Dense{shape} of {args[3]} would need more bytes than any array can hold")
                zero = np.zeros((), dtype=args[3])
                layer = Dense._from_arrays(np.broadcast_to(zero, args[:2]), np.broadcast_to(zero, args[1:2]),
                                           init=args[2])
            else:
                layer = from_config(config)
        except KeyError as exc:
            raise ValueError(f"layer {i} of the architecture ({_short(config)}) lacks the key {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"layer {i} of the architecture cannot be built: {exc}") from None
        rebuilt = json.loads(json.dumps(layer.config()))
        if rebuilt != config:  # an entry from_config ignores or changes: refuse rather than guess
            raise ValueError(f"layer {i} of the architecture, {_short(config)}, does not round-trip: "
                             f"it builds {rebuilt!r}")
        layers.append(layer)
    return Sequential(layers)


def _short(value: Any, limit: int = 300) -> str:
    """``repr(value)`` cut to ``limit`` characters (a hostile header may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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
        raise ValueError(  # noqa: TRY004 (a file's content: a bad value, not a bad argument type)
            f"{source}: the {_HEADER!r} header must be a JSON object; got {type(header).__name__}"
        )
    if header.get("format") != FORMAT:
        raise ValueError(f"{source}: not a gradkit checkpoint: format is {header.get('format')!r}, expected {FORMAT!r}")
    version = header.get("format_version")
    if isinstance(version, bool) or version not in _READS:
        from .. import __version__

        raise ValueError(
            f"{source}: the file has format_version {version!r}; this gradkit ({__version__}) "
            f"reads format_version {' or '.join(map(str, _READS))}"
        )
    fields: list[tuple[str, Any]] = [("architecture", list), ("params", dict), ("metadata", (dict, type(None)))]
    for key, kind in fields + ([("identity", list)] if version >= 2 else []):
        if key not in header or not isinstance(header[key], kind):
            raise ValueError(f"{source}: the header's {key!r} is missing or of the wrong type; got {header.get(key)!r}")
    return header
