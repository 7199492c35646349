"""Atomic writes for files users keep: write a temp file beside the target, fsync, ``os.replace``.

The temp file is named ``.<name>.gradkit-<pid>-<16 hex digits>.tmp`` (``<name>`` cut to 100
characters), in the directory of the file a symlink points to: a symlink given as the
path is kept and its target replaced. A writer killed mid-way (SIGKILL, power loss)
leaves its temp file behind; the next successful write of the same target removes
those of processes that no longer run. Temp files of a live process are never
touched: it may be writing right now.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

__all__ = ["atomic_open", "file_kind", "open_regular", "remove_stale_temps", "resolve_target", "save_png", "staged_outputs", "temp_prefix",
           "writable_dir"]

_TEMP_NAME_CHARS = 100  # of the target's name kept in a temp file's name (names are at most 255 bytes)


def _mode_for(target: Path) -> int:
    """The existing file's permissions, else the default for a new file (0666 less the umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def resolve_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` should replace: ``path`` itself, or the file its symlinks lead to.

    Raises ``ValueError`` for a symlink loop (there is no file to replace).
    """
    try:
        return Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:  # a new file, or a dangling symlink: the file it would create
        return Path(os.path.realpath(path))
    except OSError as exc:
        raise ValueError(f"path {os.fspath(path)!r} cannot be written: {exc.strerror or exc} "
                         f"(a symlink loop has no file at its end)") from None


def temp_prefix(name: str) -> str:
    """The start of a temp file's name for the file ``name``: ``.<name>.gradkit-`` (``name`` cut to 100 characters)."""
    return f".{name[:_TEMP_NAME_CHARS]}.gradkit-"


def _make_temp(target: Path) -> tuple[int, str]:
    """Create ``.<name>.gradkit-<pid>-<hex>.tmp`` beside ``target`` exclusively (mode 0600 until chmod)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = f"{temp_prefix(target.name)}{os.getpid()}-{secrets.token_hex(8)}.tmp"
        tmp = os.path.join(target.parent, name)
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file beside {str(target)!r}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def remove_stale_temps(directory: Path, name: str) -> None:
    """Remove temp files of ``directory / name`` left by writers that were killed (their process is gone).

    Only names this module makes are considered, only regular files, only those of a
    process that no longer exists (never this one's: another thread may be writing).
    POSIX only: on Windows ``os.kill(pid, 0)`` would terminate the process.
    """
    if os.name != "posix":
        return
    pattern = re.compile(re.escape(temp_prefix(name)) + r"(\d+)-[0-9a-f]{16}\.tmp\Z")
    own = os.getpid()
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            found = pattern.match(entry.name)
            if found is None or int(found.group(1)) == own or _pid_alive(int(found.group(1))):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temp file in ``path``'s directory; on success it replaces ``path`` atomically.

    If ``path`` is a symlink, the file it points to is replaced and the link kept. If
    the block raises, the temp file is removed and ``path`` is left as it was. After a
    successful write, temp files of the same target left by killed writers are removed.
    """
    target = resolve_target(path)
    fd, tmp = _make_temp(target)
    try:
        try:
            os.chmod(tmp, _mode_for(target))  # a temp file is made 0600; give the file its usual mode
            handle = os.fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(target.parent)
    remove_stale_temps(target.parent, target.name)


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write a matplotlib figure as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def writable_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written there.

    Called before a long job starts, so a read-only or mistyped folder fails in a second,
    not after the training. Raises ``ValueError`` naming ``option`` and the reason.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {str(out)!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".gradkit-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{option} {str(out)!r}: cannot write there ({exc.strerror or exc})") from None
    return out


@contextlib.contextmanager
def staged_outputs(out: Path) -> Iterator[Path]:
    """Write a job's output files into a hidden folder inside ``out``; move them in together on success.

    An output that is a symlink in ``out`` is kept, and the file it leads to replaced (as
    :func:`atomic_open` does). On any error the staging folder is removed and ``out`` keeps what it had: a run never leaves
    half of its files (a new plot beside an old history). Each move is an ``os.replace`` within
    one file system, so the set appears at once, in practice.
    """
    stage = Path(tempfile.mkdtemp(prefix=".gradkit-staging.", dir=out))
    try:
        yield stage
        for item in sorted(stage.iterdir()):
            dest = resolve_target(out / item.name)  # a symlink in ``out`` is kept: its target is replaced
            if dest.parent == stage.parent.resolve():
                os.replace(item, dest)
            else:  # the link leads elsewhere, maybe another file system: copy there atomically
                with open(item, "rb") as src, atomic_open(dest) as handle:
                    shutil.copyfileobj(src, handle)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


_FILE_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


_UNKNOWN_KIND = "a file of an unknown kind"


def file_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is, in words, if not a regular file (``"a FIFO (named pipe)"``)."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _FILE_KINDS if test(mode)), _UNKNOWN_KIND)


class open_regular:
    """Open ``source`` for reading only if it is a regular file: ``(handle, size)``.

    ``os.stat`` refuses a FIFO, device or directory before anything is opened (opening
    a FIFO blocks until a writer comes; a device may act on open); the file is then
    opened with ``O_NONBLOCK`` and ``fstat``-ed, so a file swapped in between is refused
    too and nothing can hang.
    """

    def __init__(self, source: Path, what: str) -> None:
        self.source = source
        self.what = what
        self.handle: BinaryIO | None = None

    def _check(self, info: os.stat_result) -> None:
        kind = file_kind(info.st_mode)
        if kind is not None:
            what = "not a regular file" if kind == _UNKNOWN_KIND else f"it is {kind}, not a regular file"
            raise ValueError(f"{self.source}: not {self.what}: {what}")
        if info.st_size == 0:
            raise ValueError(f"{self.source}: not {self.what}: the file is empty "
                             f"(0 bytes; pseudo-files such as /proc/self/mem report 0 bytes too)")

    def __enter__(self) -> tuple[BinaryIO, int]:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
        try:
            self._check(os.stat(self.source))
            fd = os.open(self.source, flags | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, PermissionError):
            raise
        except OSError as exc:  # a symlink loop, a name too long, a path through a file, ...
            raise ValueError(f"{self.source}: cannot be read as {self.what}: {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            self._check(info)
            self.handle = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        return self.handle, info.st_size

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()
