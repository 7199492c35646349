"""Writing into a data folder without following links or replacing what is not a plain file.

A data folder may be shared, or prepared by someone else: a name in it can be a symbolic link
to a user's file, a device, a FIFO or a folder. :class:`DataFolder` writes only regular files
that it creates itself, inside the folder:

- the folder is opened once (``O_DIRECTORY``; the path given may itself lead through links, and
  :attr:`DataFolder.path` is where it led); every later step names entries relative to that open
  folder, so a link planted in the path afterwards changes nothing;
- a target that exists and is not a regular file (a symbolic link, a device, a FIFO, a socket, a
  folder) is refused with :class:`UnsafeTarget`, before anything is downloaded;
- a temp file ``.<name>.gradkit-<pid>-<hex>.tmp`` is created in the folder with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` (never an existing file, never through a link), written,
  fsync-ed, then renamed over the target: a rename replaces the directory entry (a link planted
  in between is replaced, not written through) and is atomic;
- temp files are removed on any error, and those of writers that were killed are removed by the
  next write of the same name. Nothing is ever written outside the folder.

On systems without ``dir_fd`` support (Windows) the same checks run on paths.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Self

from .._io import file_kind, remove_stale_temps, temp_prefix

__all__ = ["DataFolder", "UnsafeTarget"]

_DIR_FD = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd and os.replace in os.supports_dir_fd


class UnsafeTarget(ValueError):
    """A name in the data folder that gradkit will not replace: not a regular file."""


class DataFolder:
    """A folder that data files are written into safely (see the module's description).

    Parameters
    ----------
    path : str or path-like
        The folder; created with its parents if missing.

    Examples
    --------
    >>> import tempfile
    >>> folder = DataFolder(tempfile.mkdtemp())
    >>> with folder.open_write("labels") as out:
    ...     _ = out.write(b"data")
    >>> (folder.path / "labels").read_bytes()
    b'data'
    >>> folder.close()
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = Path(path)
        try:
            given.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
            self._fd = os.open(given, flags) if _DIR_FD else -1
        except OSError as exc:
            raise OSError(f"the data folder {str(given)!r} cannot be used: {exc.strerror or exc}") from None
        #: where the folder is (the path given, its links followed)
        self.path = Path(os.path.realpath(given))
        #: how it was named
        self.given = given

    def close(self) -> None:
        """Close the folder (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self, name: str) -> tuple[str, int | None]:
        """``(name, dir_fd)`` with a folder descriptor, else ``(path, None)``."""
        if os.sep in name or (os.altsep and os.altsep in name) or name in ("", ".", ".."):
            raise ValueError(f"name must be a plain file name inside the data folder, got {name!r}")
        return (name, self._fd) if self._fd >= 0 else (str(self.path / name), None)

    def check_target(self, name: str) -> None:
        """Raise :class:`UnsafeTarget` if ``name`` exists in the folder and is not a regular file."""
        where, fd = self._where(name)
        try:
            info = os.stat(where, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        kind = file_kind(info.st_mode)
        if kind is not None:
            link = ""
            if stat.S_ISLNK(info.st_mode):
                with contextlib.suppress(OSError):
                    link = f" to {os.readlink(where, dir_fd=fd)!r}"
            raise UnsafeTarget(f"{self.path / name} is {kind}{link}, not a regular file: gradkit does "
                               f"not write through links nor replace devices, FIFOs or folders; remove it, or choose "
                               f"another folder")

    def _create_temp(self, name: str) -> tuple[int, str]:
        flags = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_BINARY", 0))
        for _ in range(100):
            temp = f"{temp_prefix(name)}{os.getpid()}-{secrets.token_hex(8)}.tmp"
            where, fd = self._where(temp)
            try:
                return os.open(where, flags, 0o600, dir_fd=fd), temp
            except FileExistsError:
                continue
        raise FileExistsError(f"could not create a temp file in {self.path}")

    def _unlink(self, name: str) -> None:
        where, fd = self._where(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where, dir_fd=fd)

    @contextlib.contextmanager
    def scratch(self, name: str) -> Iterator[BinaryIO]:
        """A temp file in the folder, open for reading and writing, removed when the block ends."""
        handle_fd, temp = self._create_temp(name)
        try:
            with os.fdopen(handle_fd, "w+b") as handle:
                yield handle
        finally:
            self._unlink(temp)

    @contextlib.contextmanager
    def open_write(self, name: str) -> Iterator[BinaryIO]:
        """Write ``name`` in the folder: a temp file renamed over it when the block succeeds.

        Refuses (:class:`UnsafeTarget`) a ``name`` that is a link, device, FIFO, socket or folder.
        The new file gets the permissions of a new file (0666 less the umask).
        """
        self.check_target(name)
        handle_fd, temp = self._create_temp(name)
        try:
            umask = os.umask(0)
            os.umask(umask)
            if hasattr(os, "fchmod"):
                os.fchmod(handle_fd, 0o666 & ~umask)
            with os.fdopen(handle_fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            self.check_target(name)  # planted while the data were written: refuse rather than replace it
            (src, fd), (dst, _) = self._where(temp), self._where(name)
            os.replace(src, dst, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            self._unlink(temp)
            raise
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
        remove_stale_temps(self.path, name)
