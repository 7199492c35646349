"""Hostile data files for gradkit.datasets, generated here: a FIFO named like a data file (the command
must not block on it), the original MNIST spelling ``train-images.idx3-ubyte.gz`` (found and copied),
and gzip data followed by gigabytes of zero padding or a gzip member of zeros (refused after reading a
bounded amount). Hangs are detected by running each case in a subprocess with a timeout."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

import gradkit.datasets as gd
from gradkit.datasets import fetch, mnist
from gradkit.datasets.__main__ import main
from gradkit.datasets.idx import _MAX_PADDING

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs and sparse files as POSIX makes them")

HANG = 60  # seconds: a hang detector, far above the fraction of a second each case takes


def _idx(a: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def _fake_fashion(rng: np.random.Generator) -> dict[str, tuple[str, bytes, str]]:
    """part -> (usual name, IDX bytes, md5) of a tiny Fashion-MNIST."""
    n_train, n_test = int(rng.integers(3, 9)), int(rng.integers(2, 5))
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8)}
    out = {}
    for part, (name, _) in mnist.FASHION_MNIST_FILES.items():
        data = _idx(arrays[part])
        out[part] = (name, data, hashlib.md5(data).hexdigest())
    return out


def _dotted(name: str) -> str:
    return name.replace("-idx", ".idx")  # train-images-idx3-ubyte -> train-images.idx3-ubyte


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True,
                          timeout=HANG)


@pytest.mark.parametrize("spelling", ["usual", "dotted"])
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("part", sorted(mnist.FASHION_MNIST_FILES))
def test_the_command_refuses_a_fifo_named_like_a_data_file_in_one_line(tmp_path: Path, part: str, gz: bool,
                                                                       spelling: str) -> None:
    files = _fake_fashion(np.random.default_rng(sorted(mnist.FASHION_MNIST_FILES).index(part)))
    source = tmp_path / "source"
    source.mkdir()
    for other, (name, data, _) in files.items():
        stored = (_dotted(name) if spelling == "dotted" else name) + (".gz" if gz else "")
        if other == part:
            os.mkfifo(source / stored)
            fifo = source / stored
        else:
            (source / stored).write_bytes(gzip.compress(data) if gz else data)
    table = {p: (name, md5) for p, (name, _, md5) in files.items()}
    proc = _run(f"""
        import sys
        from gradkit.datasets import mnist
        from gradkit.datasets.__main__ import main
        mnist.FASHION_MNIST_FILES.update({table!r})
        sys.exit(main(["fashion-mnist", "--source", {str(source)!r}, "--dir", {str(tmp_path / "out")!r}]))
    """)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {fifo}: not an IDX file: it is a FIFO (named pipe)"), proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("spelled", ["all dotted", "train images dotted", "mixed"])
def test_fashion_mnist_in_the_original_spelling_is_found_and_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str], gz: bool,
                                                                    spelled: str) -> None:
    rng = np.random.default_rng([len(spelled), gz])
    files = _fake_fashion(rng)
    for part, (name, _, md5) in files.items():
        monkeypatch.setitem(mnist.FASHION_MNIST_FILES, part, (name, md5))
    source, target = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    for i, (part, (name, data, _)) in enumerate(sorted(files.items())):
        dotted = {"all dotted": True, "train images dotted": part == "train_images", "mixed": i % 2 == 0}[spelled]
        (source / ((_dotted(name) if dotted else name) + (".gz" if gz else ""))).write_bytes(
            gzip.compress(data) if gz else data)
    assert main(["fashion-mnist", "--source", str(source), "--dir", str(target)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == sorted(name + ".gz" * gz for name, _, _ in files.values())
    X_train, _, _, y_test = gd.load_fashion_mnist(target)
    images = np.frombuffer(files["train_images"][1][16:], dtype=np.uint8).reshape(X_train.shape)
    np.testing.assert_array_equal(X_train, images)
    np.testing.assert_array_equal(y_test, np.frombuffer(files["test_labels"][1][8:], dtype=np.uint8))
    assert fetch.fetch_fashion_mnist(target / "again", source=source) == target / "again"


def _gzip_then(path: Path, data: bytes, padding: int) -> Path:
    """``data`` gzipped, then ``padding`` zero bytes, as a sparse file (no disk used for them)."""
    path.write_bytes(gzip.compress(data))
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size + padding)
    return path


def _read_in_child(path: Path, max_bytes: int) -> subprocess.CompletedProcess[str]:
    return _run(f"""
        import gradkit.datasets as d
        try:
            print(d.read_idx({str(path)!r}, max_bytes={max_bytes}).tolist())
        except ValueError as exc:
            print("ValueError:", exc)
    """)


@pytest.mark.parametrize("padding", [2 << 30, 256 << 20, _MAX_PADDING + 1])
@pytest.mark.parametrize("max_bytes", [1 << 33, 1 << 30])
def test_gigabytes_of_zero_padding_after_gzip_data_are_refused_unread(tmp_path: Path, padding: int,
                                                                      max_bytes: int) -> None:
    rng = np.random.default_rng(padding % 1000)
    labels = rng.integers(0, 10, int(rng.integers(5, 50)), dtype=np.uint8)
    path = _gzip_then(tmp_path / "train-labels-idx1-ubyte.gz", _idx(labels), padding)
    proc = _read_in_child(path, max_bytes)
    assert proc.returncode == 0, proc.stderr
    if path.stat().st_size > max_bytes + max_bytes // 64 + (1 << 20):  # refused on its size, before reading
        assert "bytes of gzip data, more than an IDX file of at most" in proc.stdout
    else:
        assert f"ValueError: {path}: more than {_MAX_PADDING:,} bytes of zero padding" in proc.stdout


@pytest.mark.parametrize("padding", [1, 511, 10240, _MAX_PADDING])
def test_a_block_of_zero_padding_after_gzip_data_is_skipped(tmp_path: Path, padding: int) -> None:
    labels = np.random.default_rng(padding).integers(0, 10, 40, dtype=np.uint8)
    path = _gzip_then(tmp_path / "labels.gz", _idx(labels), padding)
    np.testing.assert_array_equal(gd.read_idx(path), labels)


def test_a_gzip_member_of_zeros_after_the_data_is_refused_after_one_byte(tmp_path: Path) -> None:
    """256 MiB of zeros in a second gzip member, written by a streaming compressor (a few hundred KiB)."""
    labels = np.random.default_rng(4).integers(0, 10, 30, dtype=np.uint8)
    path = tmp_path / "labels.gz"
    with path.open("wb") as f:
        f.write(gzip.compress(_idx(labels)))
        z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        chunk = bytes(1 << 20)
        for _ in range(256):
            f.write(z.compress(chunk))
        f.write(z.flush())
    assert path.stat().st_size < 1 << 20
    proc = _read_in_child(path, 1 << 30)
    assert proc.returncode == 0, proc.stderr
    assert f"ValueError: {path}: trailing bytes after the data of shape (30,)" in proc.stdout
