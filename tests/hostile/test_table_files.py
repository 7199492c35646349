"""Hostile ``.npz`` tables for the command line's ``--data``: each file is made here and refused in one line.

The table reader shares the checkpoints' archive reader (``gradkit._io.archive``): sizes are checked before
anything is read, arrays are never unpickled, reads are bounded.
"""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

from gradkit.apps.tabular import read_table


def _npy(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _write(path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _good_y(n: int = 4) -> bytes:
    return _npy(np.arange(n) % 2)


def _refused(path) -> str:
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            read_table(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"reading a refused file took {peak / 2**20:.1f} MiB"
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"--data {path}")
    return message


def test_a_good_table_is_read(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, X=np.arange(8.0).reshape(4, 2), y=np.array([0, 1, 0, 1]))
    table = read_table(path)
    assert table.X.shape == (4, 2) and table.y.tolist() == [0, 1, 0, 1]
    assert table.description == "ok.npz: 4 rows × 2 features, arrays X and y, 2 classes"


def test_an_object_array_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    _write(path, {"X.npy": _npy(np.array([[os.system]], dtype=object), allow_pickle=True), "y.npy": _good_y(1)})
    assert "object array (pickled Python objects)" in _refused(path)


def test_a_deflate_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "bomb.npz"
    _write(path, {"X.npy": _npy(np.zeros((40_000, 1_000))), "y.npy": _good_y(40_000)}, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 1 << 20
    assert "refused as a likely zip bomb" in _refused(path)


def test_a_header_declaring_more_than_the_member_holds_is_refused(tmp_path):
    small = _npy(np.zeros((1, 1)))
    path = tmp_path / "liar.npz"
    _write(path, {"X.npy": small.replace(b"(1, 1)", b"(9, 9)"), "y.npy": _good_y(9)})  # 648 bytes declared, 8 held
    assert "shape (9, 9) (648 bytes after a" in _refused(path)


def test_not_a_zip_and_missing_arrays(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("X,y\n1,0\n")
    assert "not an .npz (zip) archive" in _refused(path)
    other = tmp_path / "other.npz"
    np.savez(other, features=np.ones((4, 2)))
    assert "needs arrays 'X' and 'y'; found ['features']" in _refused(other)


def test_an_encrypted_member_is_refused_unread(tmp_path):
    path = tmp_path / "enc.npz"
    _write(path, {"X.npy": _npy(np.ones((2, 2))), "y.npy": _good_y(2)})
    data = bytearray(path.read_bytes())
    for signature in (b"PK\x03\x04", b"PK\x01\x02"):  # set the encryption bit in every header
        at = data.find(signature)
        while at >= 0:
            flag_at = at + (6 if signature == b"PK\x03\x04" else 8)
            data[flag_at] |= 0x1
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    assert "is encrypted" in _refused(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_a_table_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.npz"
    os.mkfifo(path)
    with pytest.raises(ValueError, match="not a regular file"):
        read_table(path)
