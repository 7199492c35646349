"""Checkpoints: :func:`save` a :class:`Sequential` to one ``.npz`` file, :func:`load` it back.

The file is a plain ``.npz`` archive. Each parameter array is stored under its
model name (``"0.W"``, ``"0.b"``, ``"2.W"``, ...) and one more entry,
``__gradkit__``, holds the UTF-8 bytes of a JSON header as a ``uint8`` array::

    {"format": "gradkit.nn.checkpoint", "format_version": 1, "gradkit_version": "0.1.0",
     "architecture": model.config(), "params": {"0.W": {"shape": [4, 8], "dtype": "float32"}, ...},
     "metadata": {...} or null}

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
  bytes of memory per byte, so at most ~100 MiB; 4 MiB holds ~20,000 ``Dense``
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
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.lib.format as npy

from .._io import atomic_open, open_regular, resolve_target
from .layers import Dense, Layer, _dense_args, from_config
from .model import Sequential

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]

FORMAT = "gradkit.nn.checkpoint"
FORMAT_VERSION = 1
_HEADER = "__gradkit__"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip

#: the JSON header's largest size (see the module docstring for why 4 MiB)
_MAX_HEADER_BYTES = 4 << 20
#: bytes a member may hold beyond its array's data: the .npy magic and header (np.save writes 128)
_MAX_NPY_HEADER = 4096
#: a checkpoint has one member per parameter array plus the header; 4 MiB of header describes fewer
_MAX_MEMBERS = 65_535
_MAX_DIRECTORY_BYTES = 8 << 20
#: members may expand to at most this many times the file's size, plus the grace below
_MAX_EXPANSION = 100
_EXPANSION_GRACE = 64 << 20
_CHUNK = 1 << 20
_COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
#: general-purpose flag bits zipfile refuses (encrypted, compressed patched data, strong encryption)
_FLAG_PROBLEMS = {0x1: "is encrypted", 0x20: "is compressed patched data", 0x40: "uses strong encryption"}
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
        its config, or the JSON header (architecture and metadata) is over 4 MiB, which
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
    metadata = _plain_metadata(metadata)
    architecture = _architecture(model)
    params = model.params
    try:
        rebuilt = _build(architecture)  # Dense layers hold placeholders: nothing of the model's size is allocated
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
    if blob.size > _MAX_HEADER_BYTES:
        raise ValueError(
            f"model cannot be checkpointed: its JSON header (architecture, params table and metadata) is "
            f"{blob.size} bytes; load accepts at most {_MAX_HEADER_BYTES} (4 MiB). Keep large metadata "
            f"(arrays, long lists) in a separate file"
        )
    with atomic_open(target, "wb") as handle:  # a file object: numpy appends no ".npz"
        np.savez(handle, **params, **{_HEADER: blob})  # type: ignore[arg-type]


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
        gradkit cannot build, members that are duplicated, encrypted, compressed other than
        stored/deflated, larger than the architecture needs or not called for by it, or
        arrays that are missing or of another shape or dtype than the architecture's. The
        message names the path and the problem.

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
        _check_signature(handle, source)
        _check_directory(handle, size, source)
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, struct.error) as exc:
            raise ValueError(f"{source}: truncated or corrupt checkpoint: not a readable zip archive ({exc})") from None
        with archive:
            members = _members(archive, size, source)
            info = members.pop(_HEADER, None)
            if info is None:
                raise ValueError(
                    f"{source}: not a gradkit checkpoint: no {_HEADER!r} entry "
                    f"(it holds {_names(members)}); write checkpoints with gradkit.nn.save"
                )
            if info.file_size > _MAX_HEADER_BYTES + _MAX_NPY_HEADER:
                raise ValueError(
                    f"{source}: the {_HEADER!r} header member declares {info.file_size} bytes; a checkpoint "
                    f"header holds at most {_MAX_HEADER_BYTES} bytes of JSON (refused unread)"
                )
            raw = _read_member(archive, info, _HEADER, source, header=True)
            header = _parse_header(raw, source)
            del raw
            try:
                model = _build(header["architecture"])
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from None
            expected = model.params  # Dense layers hold placeholders of the right shape and dtype (no memory)
            _check_members(members, expected, size, source)
            arrays = {name: _read_member(archive, members[name], name, source, spec=value)
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


def _check_signature(handle: IO[bytes], source: Path) -> None:
    try:
        signature = handle.read(4)
    except OSError as exc:
        raise ValueError(f"{source}: cannot be read as a checkpoint: {exc.strerror or exc}") from None
    if signature not in _ZIP_SIGNATURES:
        raise ValueError(f"{source}: not a gradkit checkpoint: not an .npz (zip) archive")


def _check_directory(handle: IO[bytes], size: int, source: Path) -> None:
    """Refuse a central directory with too many members or bytes before zipfile parses it.

    zipfile reads the whole directory and makes one object per member; this reads the
    end-of-central-directory record (and its zip64 form) first. Anything it cannot find
    is left to zipfile, which then reports the archive as corrupt.
    """
    try:
        tail = min(size, 22 + 65_535)  # the end record, and a comment of at most 64 KiB
        handle.seek(size - tail)
        data = handle.read(tail)
        at = data.rfind(b"PK\x05\x06")
        if at < 0 or len(data) - at < 22:
            return
        count, directory = struct.unpack("<HL", data[at + 10: at + 16])
        if at >= 20 and data[at - 20: at - 16] == b"PK\x06\x07":  # zip64: the real counts are in its record
            (offset,) = struct.unpack("<Q", data[at - 12: at - 4])
            if offset + 56 <= size:
                handle.seek(offset)
                record = handle.read(56)
                if record[:4] == b"PK\x06\x06":
                    count, directory = struct.unpack("<QQ", record[32:48])
        handle.seek(0)
    except OSError as exc:
        raise ValueError(f"{source}: cannot be read as a checkpoint: {exc.strerror or exc}") from None
    if count > _MAX_MEMBERS or directory > _MAX_DIRECTORY_BYTES:
        raise ValueError(
            f"{source}: not a gradkit checkpoint: its zip directory lists {count} members in {directory} bytes; "
            f"a checkpoint has at most {_MAX_MEMBERS} members and {_MAX_DIRECTORY_BYTES} bytes of directory"
        )


def _members(archive: zipfile.ZipFile, size: int, source: Path) -> dict[str, zipfile.ZipInfo]:
    """Every member by array name (``"0.W.npy"`` -> ``"0.W"``), checked before any is read."""
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise ValueError(f"{source}: not a gradkit checkpoint: {len(infos)} members; at most {_MAX_MEMBERS}")
    twice = [name for name, n in Counter(info.filename for info in infos).items() if n > 1]
    if twice:
        raise ValueError(f"{source}: corrupt checkpoint: the member {twice[0]!r} appears more than once "
                         f"({len(twice)} duplicated name(s)); a checkpoint names each member once")
    members = {}
    for info in infos:
        name = info.filename
        for bit, problem in _FLAG_PROBLEMS.items():
            if info.flag_bits & bit:
                raise ValueError(f"{source}: the member {name!r} {problem}; gradkit checkpoints never are "
                                 f"(refused unread)")
        if info.compress_type not in _COMPRESSIONS:
            raise ValueError(f"{source}: the member {name!r} uses compression method {info.compress_type}; "
                             f"a checkpoint's members are stored (0) or deflated (8) (refused unread)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise ValueError(f"{source}: corrupt checkpoint: the stored member {name!r} declares {info.file_size} "
                             f"bytes but occupies {info.compress_size}")
        if info.header_offset + info.compress_size > size:
            raise ValueError(f"{source}: truncated or corrupt checkpoint: the member {name!r} extends past the end "
                             f"of the file ({size} bytes)")
        if not name.endswith(".npy"):
            raise ValueError(f"{source}: entry {name!r} is not a .npy array; not a gradkit checkpoint")
        members[name[: -len(".npy")]] = info
    return members


def _check_members(members: dict[str, zipfile.ZipInfo], expected: dict[str, np.ndarray], size: int,
                   source: Path) -> None:
    """Names and declared sizes against the architecture, before any parameter is read."""
    missing = [name for name in expected if name not in members]
    if missing:
        raise ValueError(f"{source}: parameter array(s) {_names(missing, sort=False, bare=True)} missing; "
                         f"the architecture has {_names(expected)}")
    extra = [name for name in members if name not in expected]
    if extra:
        raise ValueError(f"{source}: unexpected array(s) {_names(extra, sort=False, bare=True)}; "
                         f"the architecture has {_names(expected)} (refused unread)")
    for name, ref in expected.items():
        declared = members[name].file_size
        if declared > ref.nbytes + _MAX_NPY_HEADER:
            raise ValueError(
                f"{source}: the member for parameter {name!r} declares {declared} bytes; the architecture's "
                f"{ref.dtype} array of shape {ref.shape} needs {ref.nbytes} plus a .npy header of at most "
                f"{_MAX_NPY_HEADER} (refused unread)"
            )
    total = sum(info.file_size for info in members.values())
    if total > _MAX_EXPANSION * size + _EXPANSION_GRACE:
        raise ValueError(
            f"{source}: the members expand to {total} bytes, more than {_MAX_EXPANSION} times the file's {size} "
            f"bytes plus {_EXPANSION_GRACE}: refused as a likely zip bomb (gradkit.nn.save stores arrays "
            f"uncompressed; resave the model with it)"
        )


class _Bounded:
    """A reader that hands out at most ``limit`` bytes of ``stream`` and counts them."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream, self.left, self.used = stream, limit, 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.stream.read(n) if n else b""
        self.left -= len(data)
        self.used += len(data)
        return data


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, source: Path, *,
                 spec: np.ndarray | None = None, header: bool = False) -> np.ndarray:
    """One ``.npy`` member read with bounded reads: exactly its declared size, never unpickled.

    ``spec`` (an array of the expected shape and dtype) is checked against the ``.npy``
    header before any memory is taken for the data.
    """
    try:
        with archive.open(info) as stream:
            reader = _Bounded(stream, info.file_size)
            try:
                version = npy.read_magic(reader)
                if version == (1, 0):
                    shape, fortran, dtype = npy.read_array_header_1_0(reader, max_header_size=_MAX_NPY_HEADER)
                elif version == (2, 0):
                    shape, fortran, dtype = npy.read_array_header_2_0(reader, max_header_size=_MAX_NPY_HEADER)
                else:
                    raise ValueError(f".npy format version {version}; a checkpoint's arrays are version 1.0 or 2.0")
            except ValueError as exc:
                if "magic string" in str(exc):  # wrong, or a member too short to hold one
                    raise _Unreadable(f"entry {name!r} is not a .npy array; not a gradkit checkpoint ({exc})") from None
                raise _Unreadable(f"truncated or corrupt checkpoint: array {name!r} has an unreadable .npy header "
                                  f"({exc})") from None
            if dtype.hasobject:
                raise _Unreadable(f"array {name!r} is an object array (pickled Python objects), which a checkpoint "
                                  f"never holds; refusing to unpickle it")
            if header:
                if dtype != np.uint8 or len(shape) != 1:
                    raise _Unreadable(f"the {_HEADER!r} entry must be a 1-d uint8 array of JSON bytes; "
                                      f"got dtype {dtype}, shape {shape}")
            elif spec is not None:
                _check_array(name, shape, dtype, spec)
            count = 1
            for n in shape:
                count *= n
            nbytes = count * dtype.itemsize
            if reader.used + nbytes != info.file_size:
                raise _Unreadable(
                    f"truncated or corrupt checkpoint: array {name!r} is a {dtype} array of shape {shape} "
                    f"({nbytes} bytes after a {reader.used}-byte .npy header) but its member declares "
                    f"{info.file_size} bytes"
                )
            flat = np.empty(count, dtype=dtype)
            raw = flat.view(np.uint8)
            done = 0
            while done < nbytes:
                chunk = reader.read(min(_CHUNK, nbytes - done))
                if not chunk:
                    raise _Unreadable(f"truncated or corrupt checkpoint: array {name!r} ends after {done} of its "
                                      f"{nbytes} bytes")
                raw[done: done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                done += len(chunk)
            del raw
            if stream.read(1):
                raise _Unreadable(f"truncated or corrupt checkpoint: array {name!r} holds more than its "
                                  f"declared {info.file_size} bytes")
    except _Unreadable as exc:
        raise ValueError(f"{source}: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError,
            struct.error) as exc:
        raise ValueError(f"{source}: truncated or corrupt checkpoint: array {name!r} is unreadable ({exc})") from None
    if fortran and len(shape) > 1:
        return flat.reshape(shape[::-1]).T
    return flat.reshape(shape)


class _Unreadable(Exception):
    """A refusal with its message ready; :func:`_read_member` adds the path."""


def _check_array(name: str, shape: tuple[int, ...], dtype: np.dtype, ref: np.ndarray) -> None:
    if shape != ref.shape:
        index, key = name.split(".", 1)
        if key == "W":
            raise _Unreadable(f"layer {index} declares Dense{ref.shape} but the file has shape {shape} for {name!r}")
        raise _Unreadable(f"parameter {name!r} has shape {shape}; the architecture builds {ref.shape}")
    if dtype != ref.dtype:
        raise _Unreadable(f"parameter {name!r} has dtype {dtype}; the architecture builds {ref.dtype}")


def _names(names: Iterable[str], *, sort: bool = True, bare: bool = False, show: int = 8) -> str:
    """Names for a message, as a list (or ``bare``: comma-separated), cut after ``show``.

    A hostile file may hold tens of thousands of names; a message lists a few and the count.
    """
    names = sorted(names) if sort else list(names)
    text = ", ".join(map(repr, names[:show])) + (f", ... ({len(names)} in all)" if len(names) > show else "")
    return text if bare else f"[{text}]"


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
