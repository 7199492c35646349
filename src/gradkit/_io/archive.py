"""An ``.npz`` (zip) archive of arrays, read without trusting it: every size is checked before anything is read.

:func:`gradkit.nn.load` (:mod:`gradkit.nn.checkpoint`) and the command line's table reader
(:mod:`gradkit.apps.tabular`) read ``.npz`` files with these helpers instead of ``np.load``: the end-of-central-directory record is read before zipfile
parses the directory (:func:`check_directory`), every member's flags, compression and
extent are checked (:func:`list_members`), declared sizes are compared with what the
architecture needs (:func:`check_members`), and each ``.npy`` member is read with bounded
reads of exactly its declared size, never unpickled (:func:`read_member`). Each refusal is
a ``ValueError`` naming the path and the problem.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.lib.format as npy

__all__ = [
    "CHECKPOINT",
    "MAX_NPY_HEADER",
    "ArchiveKind",
    "check_directory",
    "check_expansion",
    "check_members",
    "check_signature",
    "list_members",
    "name_list",
    "read_member",
]

_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip

#: bytes a member may hold beyond its array's data: the .npy magic and header (np.save writes 128)
MAX_NPY_HEADER = 4096
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


@dataclass(frozen=True)
class ArchiveKind:
    """How messages name the archive: ``noun`` ("checkpoint"), with its article (``a``), as the format
    (``full``: "a gradkit checkpoint") and in the plural (``plural``)."""

    noun: str
    a: str
    full: str
    plural: str


#: the archives :func:`gradkit.nn.save` writes
CHECKPOINT = ArchiveKind("checkpoint", "a checkpoint", "a gradkit checkpoint", "gradkit checkpoints")


def check_signature(handle: IO[bytes], source: Path, kind: ArchiveKind = CHECKPOINT) -> None:
    """Refuse a file whose first bytes are not a zip's (an entry, or an empty archive)."""
    try:
        signature = handle.read(4)
    except OSError as exc:
        raise ValueError(f"{source}: cannot be read as {kind.a}: {exc.strerror or exc}") from None
    if signature not in _ZIP_SIGNATURES:
        raise ValueError(f"{source}: not {kind.full}: not an .npz (zip) archive")


def check_directory(handle: IO[bytes], size: int, source: Path, kind: ArchiveKind = CHECKPOINT) -> None:
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
        raise ValueError(f"{source}: cannot be read as {kind.a}: {exc.strerror or exc}") from None
    if count > _MAX_MEMBERS or directory > _MAX_DIRECTORY_BYTES:
        raise ValueError(
            f"{source}: not {kind.full}: its zip directory lists {count} members in {directory} bytes; "
            f"{kind.a} has at most {_MAX_MEMBERS} members and {_MAX_DIRECTORY_BYTES} bytes of directory"
        )


def list_members(archive: zipfile.ZipFile, size: int, source: Path,
                 kind: ArchiveKind = CHECKPOINT) -> dict[str, zipfile.ZipInfo]:
    """Every member by array name (``"0.W.npy"`` -> ``"0.W"``), checked before any is read."""
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise ValueError(f"{source}: not {kind.full}: {len(infos)} members; at most {_MAX_MEMBERS}")
    twice = [name for name, n in Counter(info.filename for info in infos).items() if n > 1]
    if twice:
        raise ValueError(f"{source}: corrupt {kind.noun}: the member {twice[0]!r} appears more than once "
                         f"({len(twice)} duplicated name(s)); {kind.a} names each member once")
    members = {}
    for info in infos:
        name = info.filename
        for bit, problem in _FLAG_PROBLEMS.items():
            if info.flag_bits & bit:
                raise ValueError(f"{source}: the member {name!r} {problem}; {kind.plural} never are "
                                 f"(refused unread)")
        if info.compress_type not in _COMPRESSIONS:
            raise ValueError(f"{source}: the member {name!r} uses compression method {info.compress_type}; "
                             f"{kind.a}'s members are stored (0) or deflated (8) (refused unread)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise ValueError(f"{source}: corrupt {kind.noun}: the stored member {name!r} declares {info.file_size} "
                             f"bytes but occupies {info.compress_size}")
        if info.header_offset + info.compress_size > size:
            raise ValueError(f"{source}: truncated or corrupt {kind.noun}: the member {name!r} extends past the end "
                             f"of the file ({size} bytes)")
        if not name.endswith(".npy"):
            raise ValueError(f"{source}: entry {name!r} is not a .npy array; not {kind.full}")
        members[name[: -len(".npy")]] = info
    return members


def check_members(members: dict[str, zipfile.ZipInfo], expected: dict[str, np.ndarray], size: int,
                   source: Path) -> None:
    """Names and declared sizes against the architecture, before any parameter is read."""
    missing = [name for name in expected if name not in members]
    if missing:
        raise ValueError(f"{source}: parameter array(s) {name_list(missing, sort=False, bare=True)} missing; "
                         f"the architecture has {name_list(expected)}")
    extra = [name for name in members if name not in expected]
    if extra:
        raise ValueError(f"{source}: unexpected array(s) {name_list(extra, sort=False, bare=True)}; "
                         f"the architecture has {name_list(expected)} (refused unread)")
    for name, ref in expected.items():
        declared = members[name].file_size
        if declared > ref.nbytes + MAX_NPY_HEADER:
            raise ValueError(
                f"{source}: the member for parameter {name!r} declares {declared} bytes; the architecture's "
                f"{ref.dtype} array of shape {ref.shape} needs {ref.nbytes} plus a .npy header of at most "
                f"{MAX_NPY_HEADER} (refused unread)"
            )
    check_expansion(members, size, source, hint=" (gradkit.nn.save stores arrays uncompressed; resave the model "
                                                 "with it)")


def check_expansion(members: dict[str, zipfile.ZipInfo], size: int, source: Path, *, hint: str = "") -> None:
    """Refuse members that expand to more than ``_MAX_EXPANSION`` times the file (plus a grace): a likely zip bomb."""
    total = sum(info.file_size for info in members.values())
    if total > _MAX_EXPANSION * size + _EXPANSION_GRACE:
        raise ValueError(
            f"{source}: the members expand to {total} bytes, more than {_MAX_EXPANSION} times the file's {size} "
            f"bytes plus {_EXPANSION_GRACE}: refused as a likely zip bomb{hint}"
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


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, source: Path, *,
                 spec: np.ndarray | None = None, header: bool = False,
                 kind: ArchiveKind = CHECKPOINT) -> np.ndarray:
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
                    shape, fortran, dtype = npy.read_array_header_1_0(reader, max_header_size=MAX_NPY_HEADER)
                elif version == (2, 0):
                    shape, fortran, dtype = npy.read_array_header_2_0(reader, max_header_size=MAX_NPY_HEADER)
                else:
                    raise ValueError(f".npy format version {version}; {kind.a}'s arrays are version 1.0 or 2.0")
            except ValueError as exc:
                if "magic string" in str(exc):  # wrong, or a member too short to hold one
                    raise _Unreadable(f"entry {name!r} is not a .npy array; not {kind.full} ({exc})") from None
                raise _Unreadable(f"truncated or corrupt {kind.noun}: array {name!r} has an unreadable .npy header "
                                  f"({exc})") from None
            if dtype.hasobject:
                raise _Unreadable(f"array {name!r} is an object array (pickled Python objects), which {kind.a} "
                                  f"never holds; refusing to unpickle it")
            if header:
                if dtype != np.uint8 or len(shape) != 1:
                    raise _Unreadable(f"the {name!r} entry must be a 1-d uint8 array of JSON bytes; "
                                      f"got dtype {dtype}, shape {shape}")
            elif spec is not None:
                _check_array(name, shape, dtype, spec)
            count = 1
            for n in shape:
                count *= n
            nbytes = count * dtype.itemsize
            if reader.used + nbytes != info.file_size:
                raise _Unreadable(
                    f"truncated or corrupt {kind.noun}: array {name!r} is a {dtype} array of shape {shape} "
                    f"({nbytes} bytes after a {reader.used}-byte .npy header) but its member declares "
                    f"{info.file_size} bytes"
                )
            flat = np.empty(count, dtype=dtype)
            raw = flat.view(np.uint8)
            done = 0
            while done < nbytes:
                chunk = reader.read(min(_CHUNK, nbytes - done))
                if not chunk:
                    raise _Unreadable(f"truncated or corrupt {kind.noun}: array {name!r} ends after {done} of its "
                                      f"{nbytes} bytes")
                raw[done: done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                done += len(chunk)
            del raw
            if stream.read(1):
                raise _Unreadable(f"truncated or corrupt {kind.noun}: array {name!r} holds more than its "
                                  f"declared {info.file_size} bytes")
    except _Unreadable as exc:
        raise ValueError(f"{source}: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError,
            struct.error) as exc:
        raise ValueError(f"{source}: truncated or corrupt {kind.noun}: array {name!r} is unreadable ({exc})") from None
    if fortran and len(shape) > 1:
        return flat.reshape(shape[::-1]).T
    return flat.reshape(shape)


class _Unreadable(Exception):
    """A refusal with its message ready; :func:`read_member` adds the path."""


def _check_array(name: str, shape: tuple[int, ...], dtype: np.dtype, ref: np.ndarray) -> None:
    if shape != ref.shape:
        index, key = name.split(".", 1)
        if key == "W":
            raise _Unreadable(f"layer {index} declares Dense{ref.shape} but the file has shape {shape} for {name!r}")
        raise _Unreadable(f"parameter {name!r} has shape {shape}; the architecture builds {ref.shape}")
    if dtype != ref.dtype:
        raise _Unreadable(f"parameter {name!r} has dtype {dtype}; the architecture builds {ref.dtype}")


def name_list(names: Iterable[str], *, sort: bool = True, bare: bool = False, show: int = 8) -> str:
    """Names for a message, as a list (or ``bare``: comma-separated), cut after ``show``.

    A hostile file may hold tens of thousands of names; a message lists a few and the count.
    """
    names = sorted(names) if sort else list(names)
    text = ", ".join(map(repr, names[:show])) + (f", ... ({len(names)} in all)" if len(names) > show else "")
    return text if bare else f"[{text}]"
