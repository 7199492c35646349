"""numba's on-disk cache of the compiled kernels, made to heal itself: :func:`njit` is ``nb.njit(cache=True)``.

numba trusts its cache files: a truncated, emptied, bit-flipped or swapped ``.nbi`` (index) or ``.nbc``
(data) file, or one that cannot be read, makes the first call of a kernel raise from numba's loader, on
every run, until someone deletes the cache by hand; a swapped data file may even run another function's
code. The cache installed here keeps numba's locations, file names, locators (next to the source in
``__pycache__``, or under ``NUMBA_CACHE_DIR``) and its atomic writes (temporary file, then rename), and:

- writes each index and data payload behind a header and a SHA-256 digest of the payload and the file's
  own name (so a file copied over another function's does not verify), and stores the index key in the
  data file (so an index that names the wrong data file is a miss, not a crash);
- on load, treats a file that is missing, stale (another source, another numba) or in numba's own
  format as a miss, silently, as numba does; a file that cannot be opened or read, is not a regular file
  (a directory, a FIFO: never opened blocking), fails its digest or does not unpickle, or an entry that
  cannot be rebuilt and linked or that holds another function, is removed and recompiled, with one
  :class:`KernelCacheWarning` naming the cache folder. A file is removed only while it is still the one
  that was read (another process may have just replaced it); a failure to remove is ignored;
- where none of numba's locations is writable (a read-only install with an unwritable home, as in a
  container run as another user), caches in a folder of this user's own under the system's temporary
  directory (``gradkit-numba-<uid>``, mode 0700, refused unless it is a real folder owned by this user
  and closed to others), saying so once at debug level (logger ``gradkit.kernels``);
- where nothing can be cached at all (no writable location at import, or a save fails), compiles in
  memory, with one warning per process. ``NUMBA_CACHE_DIR`` names the folder to use instead.

It hooks into numba's private cache classes (a ``FunctionCache`` subclass set as ``dispatcher._cache``,
as ``Dispatcher.enable_caching`` does); where those are not as expected, plain ``cache=True`` is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import pickle
import re
import stat
import tempfile
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numba as nb
from numba.core import caching as _caching
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.dispatcher import Dispatcher

__all__ = ["KernelCacheWarning", "njit"]

#: the first bytes of every file this cache writes: a pickled string (protocol 0, so it never starts like
#: numba's own files), which numba's loader reads as the version of another numba and skips
_HEADER = pickle.dumps(f"gradkit-cache-1 numba={nb.__version__}", protocol=0)
#: how a file of this format written under another numba version starts (a miss, not damage)
_FAMILY = b"Vgradkit-cache-"
_DIGEST = hashlib.sha256().digest_size
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class KernelCacheWarning(RuntimeWarning):
    """numba's cache of gradkit's kernels was damaged (the entry is recompiled) or cannot be written."""


class _Damaged(Exception):
    """A cache file that exists but cannot be used; ``found`` is its ``os.stat`` when it could be taken."""

    def __init__(self, reason: str, found: os.stat_result | None = None) -> None:
        super().__init__(reason)
        self.found = found


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _remove(path: str, found: os.stat_result | None) -> None:
    """Remove ``path`` (a file, a link or an empty folder) if it is still what was read; errors ignored."""
    with contextlib.suppress(OSError):
        if found is not None and not _same_file(os.stat(path), found):
            return  # replaced since (another process rewrote it): leave the new one
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)


def _read(path: str) -> tuple[bytes, os.stat_result] | None:
    """The bytes of the regular file ``path`` and its stat; None where there is none (or a dangling link).

    Opened non-blocking, so that a FIFO in its place cannot hang the process. Raises :class:`_Damaged`."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):  # absent (its folder too: it is created on save)
        return None
    except OSError as exc:
        raise _Damaged(f"cannot open it: {exc.strerror or exc}") from None
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise _Damaged("not a regular file", found)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), found
    except OSError as exc:
        raise _Damaged(f"cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _seal(name: str, payload: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\0" + payload).digest()


class _CheckedFile(IndexDataCacheFile):
    """numba's index and data files of one function, each payload behind a header and a digest."""

    def __init__(self, cache_path: str, filename_base: str, source_stamp: Any) -> None:
        super().__init__(cache_path=cache_path, filename_base=filename_base, source_stamp=source_stamp)
        self._data_re = re.compile(re.escape(filename_base) + r"\.[0-9]+\.nbc")
        #: the data file that the last load returned, and its stat (what to remove if it cannot be rebuilt)
        self.last: tuple[str, os.stat_result] | None = None

    # -- the format -------------------------------------------------------------------------------------
    def _payload(self, path: str) -> tuple[bytes, os.stat_result] | None:
        """The verified payload of ``path``; None for a miss (absent, another format). Raises _Damaged."""
        got = _read(path)
        if got is None:
            return None
        raw, found = got
        if not raw.startswith(_HEADER):
            if raw.startswith((b"\x80", _FAMILY)):  # numba's own format, or this one of another numba version
                return None
            raise _Damaged("unknown format", found)
        digest, payload = raw[len(_HEADER):len(_HEADER) + _DIGEST], raw[len(_HEADER) + _DIGEST:]
        if digest != _seal(os.path.basename(path), payload):
            raise _Damaged("checksum mismatch", found)
        return payload, found

    def _unpickle(self, payload: bytes, found: os.stat_result) -> Any:
        try:
            return pickle.loads(payload)  # a payload this cache wrote: its digest matched
        except Exception as exc:  # noqa: BLE001 - any unpickling error makes the file unusable
            raise _Damaged(f"cannot unpickle it: {type(exc).__name__}", found) from None

    def _write(self, path: str, obj: Any) -> None:
        payload = self._dump(obj)
        with self._open_for_write(path) as f:  # numba's: a temporary file, then os.replace
            f.write(_HEADER + _seal(os.path.basename(path), payload) + payload)

    def _discard(self, path: str, exc: _Damaged) -> None:
        _remove(path, exc.found)
        _warn(f"gradkit: numba's cache entry {os.path.basename(path)!r} in {self._cache_path!r} is damaged "
              f"({exc}): discarded, the kernel is recompiled")

    # -- numba's IndexDataCacheFile ---------------------------------------------------------------------
    def _load_index(self) -> dict[Any, str]:
        try:
            got = self._payload(self._index_path)
            if got is None:
                return {}
            content = self._unpickle(*got)
            if not (isinstance(content, tuple) and len(content) == 2 and isinstance(content[1], dict)
                    and all(isinstance(v, str) and self._data_re.fullmatch(v) for v in content[1].values())):
                raise _Damaged("not an index of this function", got[1])
        except _Damaged as exc:
            self._discard(self._index_path, exc)
            return {}
        stamp, overloads = content
        return overloads if stamp == self._source_stamp else {}  # another source: stale, overwritten on save

    def _save_index(self, overloads: dict[Any, str]) -> None:
        self._write(self._index_path, (self._source_stamp, overloads))

    def load(self, key: Any) -> Any:
        """The reduced compile result saved for ``key``, or None (a miss, or a damaged entry: discarded)."""
        self.last = None
        name = self._load_index().get(key)
        if name is None:
            return None
        path = self._data_path(name)
        try:
            got = self._payload(path)
            if got is None:
                return None
            content = self._unpickle(*got)
            if not (isinstance(content, tuple) and len(content) == 2):
                raise _Damaged("not a data file of this cache", got[1])
        except _Damaged as exc:
            self._discard(path, exc)
            return None
        stored_key, data = content
        if stored_key != key:  # another signature's (two processes chose one name): a miss, overwritten on save
            return None
        self.last = path, got[1]
        return data

    def discard_last(self, reason: str) -> None:
        """Remove the data file the last :meth:`load` returned (it could not be used)."""
        if self.last is not None:
            path, found = self.last
            self.last = None
            self._discard(path, _Damaged(reason, found))

    def save(self, key: Any, data: Any) -> None:
        """Save ``data`` for ``key``: the data file first, so that an index never names one not yet written."""
        overloads = self._load_index()
        name = overloads.get(key)
        if name is None:
            taken = set(overloads.values())
            name = next(n for n in (self._data_name(i) for i in range(1, len(taken) + 2)) if n not in taken)
        self._write(self._data_path(name), (key, data))
        if overloads.get(key) != name:
            overloads[key] = name
            self._save_index(overloads)


_log = logging.getLogger("gradkit.kernels")
_lock = threading.Lock()


def _private_temp_folder() -> str | None:
    """``<tmp>/gradkit-numba-<uid>``, created 0700; None where it is not a real folder of this user's, closed to
    others (another user could otherwise plant cache files, which numba unpickles), or on a system without uids."""
    if not hasattr(os, "getuid"):
        return None
    path = os.path.join(tempfile.gettempdir(), f"gradkit-numba-{os.getuid()}")
    with contextlib.suppress(FileExistsError, OSError):
        os.mkdir(path, 0o700)
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return path


#: numba's locator of NUMBA_CACHE_DIR (``_UserProvidedCacheLocator`` before numba 0.61)
_UserLocator: Any = (getattr(_caching, "UserProvidedCacheLocator", None)
                     or getattr(_caching, "_UserProvidedCacheLocator", None))


class _TempCacheLocator(_UserLocator or object):  # type: ignore[misc]
    """The last of numba's locators: :func:`_private_temp_folder`, for an install where nothing else is writable."""

    def __init__(self, py_func: Any, py_file: str) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(_TEMP_ROOT or "", self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        global _TEMP_ROOT, _said_temp  # one folder, and one debug line, a process
        with _lock:
            if _TEMP_ROOT is None:
                _TEMP_ROOT = _private_temp_folder() or ""
        if not _TEMP_ROOT:
            return None
        locator = super(_UserLocator, cls).from_function(py_func, py_file)  # the source-file check
        if locator is not None and not _said_temp:
            _said_temp = True
            _log.debug("gradkit: no writable numba cache next to the package or under $HOME: the kernels are "
                       "cached in %s (set NUMBA_CACHE_DIR to choose the folder)", _TEMP_ROOT)
        return locator


_TEMP_ROOT: str | None = None
_said_temp = False


def _impl_with_temp_locator() -> Any:
    """numba's cache implementation class with :class:`_TempCacheLocator` after its own locators (numba's
    own class where it has no locator list)."""
    base = getattr(FunctionCache, "_impl_class", None)
    locators = getattr(base, "_locator_classes", None)
    usable = _UserLocator is not None and all(hasattr(_UserLocator, name) for name in
                                              ("get_suitable_cache_subpath", "from_function"))
    if base is None or not isinstance(locators, list) or not usable:
        return base
    return type("_HealingCacheImpl", (base,), {"_locator_classes": [*locators, _TempCacheLocator]})


class _HealingCache(FunctionCache):
    """numba's ``FunctionCache`` on :class:`_CheckedFile`: damage is discarded, a failed save is a warning."""

    _impl_class = _impl_with_temp_locator()

    def __init__(self, py_func: Callable[..., Any]) -> None:
        super().__init__(py_func)  # RuntimeError where no locator has a writable folder
        self._cache_file = _CheckedFile(self._cache_path, self._impl.filename_base,
                                        self._impl.locator.get_source_stamp())
        module = inspect.getmodule(py_func)
        self._expected = (py_func.__qualname__, "<dynamic>" if module is None else module.__name__)

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        """The cached compile result for ``sig``, or None; one that cannot be rebuilt or is another function's
        is discarded."""
        self._cache_file.last = None
        try:
            cres = super().load_overload(sig, target_context)
        except Exception as exc:  # whatever rebuilding a cached entry raises
            if self._cache_file.last is None:
                raise  # not from a cached entry
            self._cache_file.discard_last(f"cannot rebuild it: {type(exc).__name__}: {exc}")
            return None
        if cres is not None:
            fndesc = getattr(cres, "fndesc", None)
            if (getattr(fndesc, "qualname", None), getattr(fndesc, "modname", None)) != self._expected:
                self._cache_file.discard_last(f"it holds {getattr(fndesc, 'qualname', '?')!r}")
                return None
        return cres

    def save_overload(self, sig: Any, data: Any) -> None:
        """Save the compile result; where that fails, warn (once per process) and keep it in memory only."""
        try:
            super().save_overload(sig, data)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written must not fail the call
            _unwritable(f"cannot write to {self._cache_path!r} ({type(exc).__name__}: {exc})")


_warned_unwritable = False
#: every kernel made by :func:`njit`, in the order their modules were imported (:mod:`gradkit.kernels.warm` counts them)
DISPATCHERS: list[Any] = []


def _warn(message: str) -> None:
    warnings.warn(message, KernelCacheWarning, stacklevel=3)


def _unwritable(why: str) -> None:
    """Warn, once per process, that the kernels are compiled in memory only."""
    global _warned_unwritable  # one flag per process
    with _lock:
        if _warned_unwritable:
            return
        _warned_unwritable = True
    _warn(f"gradkit: the numba kernels cannot be cached on disk, {why}: they are compiled in memory in this "
          "process (set NUMBA_CACHE_DIR to a writable folder to keep them)")


def _supported() -> bool:
    """Whether numba's cache classes have the private parts that :class:`_HealingCache` relies on."""
    needed = {IndexDataCacheFile: ("_open_for_write", "_data_path", "_data_name", "_dump", "_load_index",
                                   "_save_index", "load", "save"),
              FunctionCache: ("load_overload", "save_overload", "_impl_class"),
              Dispatcher: ("enable_caching",)}
    try:
        params = list(inspect.signature(IndexDataCacheFile.__init__).parameters)
    except (TypeError, ValueError):
        return False
    return (params == ["self", "cache_path", "filename_base", "source_stamp"]
            and all(hasattr(cls, name) for cls, names in needed.items() for name in names))


_SUPPORTED = _supported()


def _enable(dispatcher: Any) -> None:
    """Install the healing cache on ``dispatcher`` (numba's plain cache where numba is not as expected)."""
    if _SUPPORTED and hasattr(dispatcher, "_cache"):
        try:
            dispatcher._cache = _HealingCache(dispatcher.py_func)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            _unwritable(str(exc))
            return
        except (AttributeError, TypeError):  # numba's internals changed: its own cache
            pass
        else:
            return
    try:
        dispatcher.enable_caching()
    except RuntimeError as exc:
        _unwritable(str(exc))


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options, cache=True)``, with the self-healing on-disk cache of this module.

    Parameters
    ----------
    **options
        numba's compilation options (``fastmath``, ``error_model``, ``inline``, ``parallel``, ...), not
        ``cache``.

    Returns
    -------
    callable
        A decorator: a Python function to a numba dispatcher (or the function itself under
        ``NUMBA_DISABLE_JIT``).
    """
    if "cache" in options:
        raise TypeError("njit() caches always: do not pass cache=")

    def decorate(fn: Callable[..., Any]) -> Any:
        dispatcher = nb.njit(**options)(fn)
        if isinstance(dispatcher, Dispatcher):
            _enable(dispatcher)
            DISPATCHERS.append(dispatcher)
        return dispatcher

    return decorate
