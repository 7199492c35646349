"""Atomic writes for files users keep: write a temp file beside the target, fsync, ``os.replace``."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "save_png", "staged_outputs", "writable_dir"]


def _mode_for(target: Path) -> int:
    """The existing file's permissions, else the default for a new file (0666 less the umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temp file in ``path``'s directory; on success it replaces ``path`` atomically.

    If the block raises, the temp file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, _mode_for(target))  # mkstemp makes 0600; give the file its usual mode
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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

    On any error the staging folder is removed and ``out`` keeps what it had: a run never leaves
    half of its files (a new plot beside an old history). Each move is an ``os.replace`` within
    one file system, so the set appears at once, in practice.
    """
    stage = Path(tempfile.mkdtemp(prefix=".gradkit-staging.", dir=out))
    try:
        yield stage
        for item in sorted(stage.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
