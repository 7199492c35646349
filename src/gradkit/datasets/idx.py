"""Reading IDX files, the format of MNIST and Fashion-MNIST (plain or gzip-compressed).

An IDX file is a 4-byte magic number — two zero bytes, a type code, the number of
dimensions — then each dimension as a big-endian ``uint32``, then the values in C
order, big-endian. :func:`read_idx` checks all of it before it allocates: the
declared size must fit ``max_bytes``, and the file must hold exactly that many
values (a truncated file or trailing bytes are errors, not a silent guess).

Gzip data are decompressed in bounded steps (never more than the header declares), and the
compressed file itself may be at most a little larger than ``max_bytes``, so that neither a
gzip bomb nor gigabytes of padding after the data take more than a moment. Concatenated gzip
members are read as one stream and zero padding after the last one is skipped, as ``gzip -d``
does, up to 1 MiB (a block's padding): more padding is an error found after reading at most
that much, however long the file; any other trailing bytes are an error.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np

from .._io import open_regular

__all__ = ["read_idx"]

#: IDX type code -> (big-endian dtype, name)
_TYPES: dict[int, tuple[str, str]] = {
    0x08: ("u1", "unsigned byte"),
    0x09: ("i1", "signed byte"),
    0x0B: (">i2", "short"),
    0x0C: (">i4", "int"),
    0x0D: (">f4", "float"),
    0x0E: (">f8", "double"),
}
_MAX_NDIM = 16
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_READ = 1 << 18  # compressed bytes read at a time
#: the most zero padding after gzip data that is skipped (a tape or disk block; more is refused, unread)
_MAX_PADDING = 1 << 20


def _gzip_limit(max_bytes: int) -> int:
    """The largest gzip file that can hold an IDX file of ``max_bytes``: deflate's stored blocks add
    5 bytes a 64 KiB block; a 64th more and 1 MiB leave room for headers, members and padding."""
    return max_bytes + max_bytes // 64 + (1 << 20)


class _Gunzip(io.RawIOBase):
    """The decompressed bytes of a gzip file, produced as asked for (``readinto``), never more.

    Members follow one another; zero bytes after the last are skipped, 256 KiB a read.
    """

    def __init__(self, raw: BinaryIO, source: Path) -> None:
        super().__init__()
        self._raw, self._source = raw, source
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""  # compressed bytes read but not yet given to the decompressor
        self._ended = False
        self._padding = 0  # zero bytes skipped after the last member

    def readable(self) -> bool:
        return True

    def _next_member(self) -> bool:
        """After a member's end: start the next one (True) or find only zeros up to the end (False)."""
        rest = self._pending
        while len(rest) < 2:
            more = self._raw.read(_GZIP_READ)
            if not more:
                break
            rest += more
        while rest and not rest.startswith(_GZIP_MAGIC):
            if rest.count(0) != len(rest):
                raise ValueError(f"{self._source}: trailing bytes after the gzip data (not zero padding, "
                                 f"not a gzip member)")
            self._padding += len(rest)
            if self._padding > _MAX_PADDING:
                raise ValueError(f"{self._source}: more than {_MAX_PADDING:,} bytes of zero padding after the gzip "
                                 "data (a block's padding is less): refused without reading the rest")
            rest = self._raw.read(_GZIP_READ)
        if not rest:
            return False
        self._z, self._pending = zlib.decompressobj(16 + zlib.MAX_WBITS), rest
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._ended and len(view):
            if self._z.eof and not self._next_member():
                self._ended = True
                break
            if not self._pending:
                self._pending = self._raw.read(_GZIP_READ)
                if not self._pending:
                    raise ValueError(f"{self._source}: corrupt gzip data (the file ends inside compressed data)")
            try:
                out = self._z.decompress(self._pending, len(view))
            except zlib.error as exc:
                raise ValueError(f"{self._source}: corrupt gzip data ({exc})") from None
            self._pending = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
            if out:
                view[: len(out)] = out
                return len(out)
        return 0


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = 1 << 30) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain, told apart by content) into a NumPy array.

    Parameters
    ----------
    path : str or path-like
        A regular file; FIFOs, devices and directories are refused before opening.
    max_bytes : int
        Largest data size accepted (default 1 GiB); checked on the header, before
        anything is allocated, so a header declaring huge dimensions costs nothing.

    Returns
    -------
    numpy.ndarray
        The values with the declared shape, in native byte order (``uint8`` for MNIST).

    Raises
    ------
    ValueError
        Not an IDX file (wrong magic, unknown type code, 0 or more than 16 dimensions),
        a size above ``max_bytes``, a truncated file or trailing bytes, corrupt gzip data.
    FileNotFoundError, PermissionError
        As :func:`open` raises them.

    Examples
    --------
    >>> import gzip, os, struct, tempfile, numpy as np
    >>> from gradkit.datasets import read_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
    >>> with gzip.open(path, "wb") as f:
    ...     _ = f.write(struct.pack(">BBBBI", 0, 0, 0x08, 1, 3) + bytes([7, 2, 1]))
    >>> read_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    return _read(path, max_bytes)[0]


def _read(path: Any, max_bytes: int, *, digest: bool = False) -> tuple[np.ndarray, str | None]:
    """The array and, with ``digest``, the md5 of the (decompressed) file's bytes."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise TypeError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    source = Path(os.fspath(path))
    with open_regular(source, "an IDX file") as (handle, size):
        magic = handle.read(2)
        handle.seek(0)
        if magic == _GZIP_MAGIC:
            if size > _gzip_limit(max_bytes):
                raise ValueError(f"{source}: {size:,} bytes of gzip data, more than an IDX file of at most "
                                 f"max_bytes={max_bytes:,} can take")
            stream = io.BufferedReader(_Gunzip(handle, source), 1 << 16)
            return _parse(cast(io.BufferedIOBase, stream), source, max_bytes, None, digest)
        return _parse(cast(io.BufferedIOBase, handle), source, max_bytes, size, digest)


def _exactly(stream: io.BufferedIOBase, n: int, source: Path, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ValueError(f"{source}: truncated IDX file: it ends inside the {what} ({len(data)} of {n} bytes)")
    return data


def _parse(stream: io.BufferedIOBase, source: Path, max_bytes: int, size: int | None, digest: bool) -> tuple[np.ndarray, str | None]:
    head = _exactly(stream, 4, source, "magic number")
    if head[:2] != b"\0\0":
        raise ValueError(f"{source}: not an IDX file: it must start with two zero bytes; got {head[:4].hex(' ')}")
    code, ndim = head[2], head[3]
    if code not in _TYPES:
        known = ", ".join(f"0x{c:02X} ({name})" for c, (_, name) in _TYPES.items())
        raise ValueError(f"{source}: not an IDX file: unknown type code 0x{code:02X}; known: {known}")
    if not 1 <= ndim <= _MAX_NDIM:
        raise ValueError(f"{source}: IDX files with {ndim} dimensions are not read (1 to {_MAX_NDIM})")
    raw_dims = _exactly(stream, 4 * ndim, source, "dimensions")
    shape = struct.unpack(f">{ndim}I", raw_dims)
    dtype = np.dtype(_TYPES[code][0])
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise ValueError(f"{source}: the header declares shape {shape} of {_TYPES[code][1]}s, {nbytes:,} bytes, "
                         f"more than max_bytes={max_bytes:,}")
    expected = 4 + 4 * ndim + nbytes
    if size is not None and size != expected:
        problem = "truncated" if size < expected else "trailing bytes after the data"
        raise ValueError(f"{source}: {problem}: shape {shape} of {_TYPES[code][1]}s needs {expected:,} bytes; "
                         f"the file has {size:,}")
    out = np.empty(shape, dtype=dtype)
    view = out.reshape(-1).view(np.uint8).data  # a memoryview of out's bytes
    done = 0
    while done < nbytes:
        got = stream.readinto(view[done : done + _CHUNK])
        if not got:
            raise ValueError(f"{source}: truncated IDX file: {done:,} of {nbytes:,} data bytes for shape {shape}")
        done += got
    if stream.read(1):
        raise ValueError(f"{source}: trailing bytes after the data of shape {shape}: not an IDX file of that shape")
    md5 = None
    if digest:
        h = hashlib.md5(head + raw_dims, usedforsecurity=False)
        h.update(view)
        md5 = h.hexdigest()
    return out.astype(dtype.newbyteorder("="), copy=False), md5
