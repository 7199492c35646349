"""A hostile numba cache: damaged, swapped, unreadable or unwritable cache files of the kernels.

Every case runs ``gradkit.Softmax`` (forward and VJP, a small and a threaded-size input) in a child
process whose ``NUMBA_CACHE_DIR`` is a fresh folder (numba's locators limited to that one, so that the
package's own ``__pycache__`` is never read or written), with a timeout: a cache warmed once per module
is copied, damaged for real, and the child must exit 0 with the portable path's numbers, at most one
warning naming the cache folder and no traceback; the next child must be silent and load every kernel
from the cache (healed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradkit import kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba kernels disabled or not installed")

TIMEOUT = 25  # seconds per child: a warm import is under a second, recompiling one kernel a few
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False

#: forward and VJP against the portable path; prints the cache misses of the four kernels involved
SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import gradkit
    from gradkit import kernels
    from gradkit.kernels import softmax as ks
    from gradkit.kernels._exp import PARALLEL_MIN

    rng = np.random.default_rng(0)
    sm = gradkit.Softmax()
    for shape in [(4, 7), (128, PARALLEL_MIN // 128 * 2)]:  # serial and threaded variants
        x, g = rng.standard_normal(shape), rng.standard_normal(shape)
        y, v = sm(x), sm.vjp(x, g)
        with kernels.disabled():
            y0, v0 = sm(x), sm.vjp(x, g)
        np.testing.assert_allclose(y, y0, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(v, v0, rtol=1e-12, atol=1e-15)
    misses = {}
    for pick in (ks._forward_rows, ks._softmax_project):
        for d in (pick.body, pick.threaded):
            misses[d.py_func.__qualname__] = sum(d.stats.cache_misses.values())
    print(json.dumps(misses))
""")

#: the kernel whose files are damaged (small: recompiled in well under a second), and another of its module
TARGET, OTHER = "softmax._softmax_project", "softmax._forward_rows"


def _run(cache: Path, script: str = SCRIPT, *args: str) -> tuple[dict[str, int], str]:
    """Run ``script`` (with ``args``) in a child on the cache folder ``cache``: its printed misses, its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "GRADKIT_"))}
    env.update(NUMBA_CACHE_DIR=str(cache), NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator")
    try:
        proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"child hung (> {TIMEOUT} s); stderr: {(exc.stderr or b'')[-2000:]!r}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Warning:" in line]


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the four kernels (serial and threaded variants), written by a first child."""
    cache = tmp_path_factory.mktemp("warm") / "numba"
    misses, stderr = _run(cache)
    assert not _warnings(stderr), stderr
    assert all(misses.values()), misses  # compiled, and saved:
    assert len(list(cache.glob("*/softmax.*.nbi"))) == 4, sorted(p.name for p in cache.rglob("*"))
    return cache


def _file(folder: Path, qualname: str, kind: str) -> Path:
    """The index (``"index"``) or the single data file (``"data"``) of ``qualname`` in ``folder``."""
    found = sorted(folder.glob(f"{qualname}-*.nbi" if kind == "index" else f"{qualname}-*.1.nbc"))
    assert len(found) == 1, (qualname, kind, sorted(p.name for p in folder.iterdir()))
    return found[0]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flip(at: int = 0, *, fraction: float | None = None) -> Callable[[Path], None]:
    """One bit flipped at byte ``at``, or at that fraction of the file (1.0: its last byte)."""
    def flip(path: Path) -> None:
        raw = bytearray(path.read_bytes())
        i = at if fraction is None else int(fraction * (len(raw) - 1))
        raw[i] ^= 0x04
        path.write_bytes(bytes(raw))
    return flip


def _garbage(path: Path) -> None:
    raw = bytearray(np.random.default_rng(7).bytes(path.stat().st_size))
    raw[0] = 0x17  # not a pickle's first byte: then numba's own format could be taken for it (a silent miss)
    path.write_bytes(bytes(raw))


def _swap(partner: str) -> Callable[[Path], None]:
    def swap(path: Path) -> None:  # another function's file, valid in itself, copied over this one
        shutil.copyfile(_file(path.parent, partner, "index" if path.suffix == ".nbi" else "data"), path)
    return swap


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _dangling(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "nowhere")


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _mode000(path: Path) -> None:
    path.chmod(0)


#: name: (the function whose file is damaged, "index" or "data", how, whether the child must warn)
CASES: dict[str, tuple[str, str, Callable[[Path], None], bool]] = {
    "index-truncated": (TARGET, "index", _truncate, True),
    "index-emptied": (TARGET, "index", _empty, True),
    "data-truncated": (TARGET, "data", _truncate, True),
    "data-emptied": (TARGET, "data", _empty, True),
    "index-flip-header": (TARGET, "index", _flip(3), True),
    "index-flip-digest": (TARGET, "index", _flip(50), True),
    "index-flip-payload": (TARGET, "index", _flip(fraction=0.5), True),
    "index-flip-last": (TARGET, "index", _flip(fraction=1.0), True),
    "data-flip-start": (TARGET, "data", _flip(0), True),
    "data-flip-middle": (TARGET, "data", _flip(fraction=0.5), True),
    "data-flip-end": (TARGET, "data", _flip(fraction=1.0), True),
    "data-swapped": (TARGET, "data", _swap(OTHER), True),
    "index-swapped": (TARGET, "index", _swap(OTHER), True),
    "threaded-data-swapped": (TARGET + "_threaded", "data", _swap(OTHER + "_threaded"), True),
    "threaded-index-swapped": (TARGET + "_threaded", "index", _swap(OTHER + "_threaded"), True),
    "threaded-data-truncated": (TARGET + "_threaded", "data", _truncate, True),
    "index-garbage": (TARGET, "index", _garbage, True),
    "data-garbage": (TARGET, "data", _garbage, True),
    "index-directory": (TARGET, "index", _directory, True),
    "data-directory": (TARGET, "data", _directory, True),
    "index-dangling-link": (TARGET, "index", _dangling, False),  # as absent: rewritten in place of the link
    "data-dangling-link": (TARGET, "data", _dangling, False),
    "index-fifo": (TARGET, "index", _fifo, True),
    "data-fifo": (TARGET, "data", _fifo, True),
    "index-mode000": (TARGET, "index", _mode000, True),
    "data-mode000": (TARGET, "data", _mode000, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_cache_heals(case: str, warm: Path, tmp_path: Path) -> None:
    qualname, kind, damage, must_warn = CASES[case]
    if case.endswith("mode000") and ROOT:
        pytest.skip("root reads a mode-000 file: the directory, dangling-link and FIFO cases stand for it")
    cache = tmp_path / "numba"
    shutil.copytree(warm, cache, symlinks=True)
    (folder,) = cache.iterdir()
    damage(_file(folder, qualname, kind))

    misses, stderr = _run(cache)
    found = _warnings(stderr)
    assert len(found) == (1 if must_warn else 0), stderr
    assert all(str(folder) in line and "KernelCacheWarning" in line for line in found), stderr
    assert misses.pop(qualname.split(".")[1]) == 1, (misses, stderr)  # the damaged one recompiled,
    assert not any(misses.values()), misses  # the others loaded

    misses, stderr = _run(cache)  # healed: silent, everything from the cache
    assert stderr == "", stderr
    assert not any(misses.values()), misses


def _unwritable(cache: Path, script: str = SCRIPT) -> dict[str, int]:
    misses, stderr = _run(cache, script)
    found = _warnings(stderr)
    assert len(found) == 1, stderr  # once per process, not per kernel
    assert "KernelCacheWarning" in found[0] and "compiled in memory" in found[0], stderr
    return misses


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_unwritable_cache_compiles_in_memory(where: str, tmp_path: Path) -> None:
    numba = pytest.importorskip("numba")
    if not hasattr(numba.core.config, "CACHE_LOCATOR_CLASSES"):
        # an older numba (0.60) ignores NUMBA_CACHE_LOCATOR_CLASSES and, NUMBA_CACHE_DIR being unusable, caches
        # in the package's __pycache__ (rightly silent): there is no unwritable cache to test
        pytest.skip("this numba cannot limit its cache locators to NUMBA_CACHE_DIR")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    misses = _unwritable(blocker if where == "file" else blocker / "numba")  # nothing can be created there
    assert all(misses.values()), misses
    assert blocker.read_text() == "not a folder"


def test_cache_lost_after_import(warm: Path, tmp_path: Path) -> None:
    """The cache folder becomes a file after import: every load misses, the saves fail, one warning."""
    cache = tmp_path / "numba"
    shutil.copytree(warm, cache, symlinks=True)
    block = f"import shutil; shutil.rmtree({str(cache)!r}); open({str(cache)!r}, 'w').close()\n"
    misses = _unwritable(cache, SCRIPT.replace("rng = np", block + "rng = np", 1))
    assert all(misses.values()), misses


def test_foreign_files_are_a_silent_miss(warm: Path, tmp_path: Path) -> None:
    """Files in numba's own format (an older gradkit, plain ``cache=True``) are recompiled without a word."""
    cache = tmp_path / "numba"
    shutil.copytree(warm, cache, symlinks=True)
    (folder,) = cache.iterdir()
    index = _file(folder, TARGET, "index")
    header_end = index.read_bytes().index(b"\n.") + 2  # the pickled tag gradkit's cache files start with
    for path in (index, _file(folder, TARGET, "data")):
        path.write_bytes(b"\x80\x05" + path.read_bytes()[header_end:])
    misses, stderr = _run(cache)
    assert stderr == "", stderr
    assert misses[TARGET.split(".")[1]] == 1, misses
    misses, stderr = _run(cache)
    assert stderr == "" and not any(misses.values()), (misses, stderr)


#: rewrites the target's data file with a valid digest: a payload that cannot be rebuilt, or the other kernel's
FORGE = textwrap.dedent("""
    import sys
    from gradkit.kernels import _cache
    from gradkit.kernels import softmax  # noqa: F401 - what the payloads refer to

    target, other, mode = sys.argv[1:]
    f = _cache._CheckedFile("unused", "unused", None)
    def content(path):
        return f._unpickle(*f._payload(path))
    key, data = content(target)
    data = ("not", "a", "compile result") if mode == "unrebuildable" else content(other)[1]
    f._write(target, (key, data))
    print("{}")
""")


@pytest.mark.parametrize("mode", ["unrebuildable", "another-function"])
def test_verified_but_unusable_entry(mode: str, warm: Path, tmp_path: Path) -> None:
    """An entry whose digest holds but that cannot be rebuilt, or that holds another kernel's code (a file
    forged through the cache's own writer), is discarded and recompiled, once."""
    cache = tmp_path / "numba"
    shutil.copytree(warm, cache, symlinks=True)
    (folder,) = cache.iterdir()
    _run(cache, FORGE, str(_file(folder, TARGET, "data")), str(_file(folder, OTHER, "data")), mode)
    misses, stderr = _run(cache)
    found = _warnings(stderr)
    assert len(found) == 1 and str(folder) in found[0], stderr
    assert ("cannot rebuild" if mode == "unrebuildable" else "holds") in found[0], stderr
    assert misses.pop(TARGET.split(".")[1]) == 1 and not any(misses.values()), misses
    misses, stderr = _run(cache)
    assert stderr == "" and not any(misses.values()), (misses, stderr)


def test_unexpected_numba_gets_plain_cache(warm: Path, tmp_path: Path) -> None:
    """Where numba's cache internals are not as expected, the kernels get numba's own ``cache=True``."""
    cache = tmp_path / "numba"
    shutil.copytree(warm, cache, symlinks=True)
    prefix = ("from gradkit.kernels import _cache\n"
              "_cache._SUPPORTED = False\n"
              "from gradkit.kernels import softmax\n"
              "from numba.core.caching import FunctionCache\n"
              "assert type(softmax._forward_rows.body._cache) is FunctionCache\n")
    for expected in (1, 0):  # gradkit's files are another numba's to numba: recompiled once, then loaded
        misses, stderr = _run(cache, prefix + SCRIPT)
        assert stderr == "" and set(misses.values()) == {expected}, (misses, stderr)


def test_njit_keeps_options(monkeypatch: Any) -> None:
    """``njit`` refuses ``cache=`` (it always caches) and leaves numba's other options as given."""
    from gradkit.kernels import _cache

    with pytest.raises(TypeError):
        _cache.njit(cache=True)
    monkeypatch.setattr(_cache, "_enable", lambda d: None)  # no cache in this process: the real one stays untouched
    f = _cache.njit(fastmath=True, error_model="numpy")(lambda a: a + 1)
    assert f.targetoptions["fastmath"] and f.targetoptions["error_model"] == "numpy"


#: numba's own locations made unusable, as in a read-only install whose $HOME is not writable
_READ_ONLY = textwrap.dedent("""
    import logging
    logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
    for name in ("numba", "numba.core"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from numba.core import caching
    for cls in caching.FunctionCache._impl_class._locator_classes:  # numba's own locators, whatever their names
        cls.from_function = classmethod(lambda cls, py_func, py_file: None)
""")


def _run_read_only(tmp: Path) -> tuple[dict[str, int], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "GRADKIT_"))}
    env["TMPDIR"] = str(tmp)
    proc = subprocess.run([sys.executable, "-c", _READ_ONLY + SCRIPT], env=env, capture_output=True, text=True,
                          timeout=4 * TIMEOUT, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="the private temporary folder is keyed by the user id")
def test_read_only_install_caches_in_a_private_temporary_folder(tmp_path: Path) -> None:
    misses, stderr = _run_read_only(tmp_path)
    folder = tmp_path / f"gradkit-numba-{os.getuid()}"
    assert all(misses.values()), misses  # compiled once,
    assert folder.is_dir() and (folder.stat().st_mode & 0o777) == 0o700
    assert any(folder.rglob("*.nbi")), "nothing was cached"
    said = [line for line in stderr.splitlines() if line.startswith("gradkit.kernels DEBUG")]
    assert len(said) == 1 and str(folder) in said[0] and "NUMBA_CACHE_DIR" in said[0], stderr
    assert not _warnings(stderr), stderr
    misses, stderr = _run_read_only(tmp_path)  # then loaded from there
    assert not any(misses.values()), misses


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="the private temporary folder is keyed by the user id")
@pytest.mark.parametrize("planted", ["open-to-others", "symlink", "file"])
def test_a_planted_temporary_folder_is_never_used(planted: str, tmp_path: Path) -> None:
    """Another user could plant cache files (which numba unpickles) in a shared temporary folder: gradkit uses
    only a real folder of its own user's, closed to others; else it compiles in memory, with one warning."""
    folder = tmp_path / f"gradkit-numba-{os.getuid()}"
    if planted == "open-to-others":
        folder.mkdir()
        folder.chmod(0o777)
    elif planted == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        folder.write_text("not a folder")
    misses, stderr = _run_read_only(tmp_path)
    assert all(misses.values()), misses
    found = _warnings(stderr)
    assert len(found) == 1 and "compiled in memory" in found[0], stderr
    assert not any(tmp_path.rglob("*.nbi"))
