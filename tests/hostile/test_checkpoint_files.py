"""Hostile checkpoints: every file is generated here, every outcome asserted.

* zip bombs of each kind (an extra ``.npy`` member, a weight member, a raw member, the JSON
  header, an architecture that agrees with its bomb) and ``.npy`` headers declaring huge
  shapes: ``nn.load`` runs in a child under ``RLIMIT_AS`` (1 GiB above the child's footprint
  after ``import gradkit``) with a timeout, and must end with ``ValueError``, quickly, with a
  small peak RSS. The bombs inflate to 4 GiB each (4 MiB files): the deflate stream of zeros
  is one block repeated, so making one costs milliseconds, and the CRC-32 of 4 GiB of zeros
  is computed by squaring CRC-32's affine map, not by hashing 4 GiB.
* encrypted members, unsupported compression, duplicate names, a lying size, a member flood;
  FIFO, symlink loop, directory, ``/proc/self/mem``, a character device;
* memory of a legitimate load (tracemalloc, stored and compressed);
* ``nn.save``: SIGKILL at random moments of a save (forked child), symlinks, stale temp files.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from gradkit import nn

HEADER = "__gradkit__"
MiB = 1 << 20
BOMB_MIB = 4096  # each bomb member inflates to 4 GiB


# --- building archives byte by byte -------------------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The bytes of a version 1.0 .npy header alone (what precedes the data)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


class Member:
    """One zip member: ``payload`` is what the archive holds (already compressed for method 8)."""

    def __init__(self, name, payload, *, method=0, file_size=None, crc=None, flags=0):
        self.name, self.payload, self.method, self.flags = name, payload, method, flags
        self.file_size = len(payload) if file_size is None else file_size
        self.crc = zlib.crc32(payload) if crc is None else crc


def _deflated(member: Member) -> Member:
    """The same member, deflated."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return Member(member.name, c.compress(member.payload) + c.flush(), method=8, file_size=member.file_size,
                  crc=member.crc)


def _zip(path: Path, members: list[Member]) -> Path:
    """A zip64 archive written by hand: sizes, CRCs, flags and methods are exactly as given."""
    out, central = io.BytesIO(), io.BytesIO()
    for m in members:
        name = m.name.encode("utf-8")
        offset = out.tell()
        extra = struct.pack("<HHQQ", 1, 16, m.file_size, len(m.payload))
        out.write(struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", 45, m.flags, m.method, 0, 0x21, m.crc,
                              0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra)))
        out.write(name + extra + m.payload)
        extra = struct.pack("<HHQQQ", 1, 24, m.file_size, len(m.payload), offset)
        central.write(struct.pack("<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", 45, 45, m.flags, m.method, 0, 0x21, m.crc,
                                  0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, 0xFFFFFFFF))
        central.write(name + extra)
    start, directory = out.tell(), central.getvalue()
    out.write(directory)
    end64 = out.tell()
    n = len(members)
    out.write(struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(directory), start))
    out.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, end64, 1))
    out.write(struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    path.write_bytes(out.getvalue())
    return path


# --- a 4 GiB member in 4 MiB, fast ---------------------------------------------------------------


def _crc_zeros_map(n: int) -> tuple[int, list[int]]:
    """CRC-32 over ``n`` zero bytes as an affine map over GF(2): ``crc -> k ^ sum(cols[i] for set bits i)``."""
    zeros = bytes(n)
    k = zlib.crc32(zeros, 0)
    return k, [zlib.crc32(zeros, 1 << i) ^ k for i in range(32)]


def _apply(m: tuple[int, list[int]], crc: int) -> int:
    k, cols = m
    for i in range(32):
        if crc >> i & 1:
            k ^= cols[i]
    return k


def _compose(a, b):
    """The map ``a(b(crc))``."""
    return _apply(a, b[0]), [_apply(a, col) ^ a[0] for col in b[1]]


def _crc_then_zeros(crc: int, n_mib: int) -> int:
    """``zlib.crc32(bytes(n_mib * MiB), crc)`` in O(log n_mib) steps."""
    step, result = _crc_zeros_map(MiB), None
    while n_mib:
        if n_mib & 1:
            result = step if result is None else _compose(step, result)
        step, n_mib = _compose(step, step), n_mib >> 1
    return crc if result is None else _apply(result, crc)


def _bomb(name: str, prefix: bytes, n_mib: int = BOMB_MIB, file_size: int | None = None) -> Member:
    """A deflated member that inflates to ``prefix`` + ``n_mib`` MiB of zeros (its CRC true; its size
    true unless ``file_size`` says otherwise)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    first = c.compress(prefix + zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)  # the window is all zeros: every later MiB is this
    assert c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH) == block
    payload = first + block * (n_mib - 1) + c.flush()
    crc = _crc_then_zeros(zlib.crc32(prefix), n_mib)
    size = len(prefix) + n_mib * MiB if file_size is None else file_size
    return Member(name, payload, method=8, file_size=size, crc=crc)


def test_the_bomb_generator_is_exact():
    """The fast stream and CRC agree with zlib on a 64 MiB member (the 4 GiB ones are made the same way)."""
    prefix = _npy_header("|u1", (64 * MiB,))
    m = _bomb("x", prefix, 64)
    d = zlib.decompressobj(-15)
    data = d.decompress(m.payload) + d.flush()
    assert d.eof and len(data) == m.file_size == len(prefix) + 64 * MiB
    assert zlib.crc32(data) == m.crc and data.startswith(prefix) and data.count(0) >= 64 * MiB


# --- a valid checkpoint, taken apart ------------------------------------------------------------


def _model():
    return nn.Sequential([nn.Dense(5, 16, rng=0), "relu", nn.Dense(16, 3, rng=1)])


def _header(model, **changes):
    header = {"format": "gradkit.nn.checkpoint", "format_version": 1, "gradkit_version": "0",
              "architecture": model.config(),
              "params": {k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in model.params.items()},
              "metadata": None}
    header.update(changes)
    return header


def _header_member(header) -> Member:
    return Member(f"{HEADER}.npy", _npy(np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)))


def _members(model=None, header=None) -> list[Member]:
    model = model or _model()
    members = [Member(f"{k}.npy", _npy(v)) for k, v in model.params.items()]
    return [*members, _header_member(header or _header(model))]


def _replace(members: list[Member], new: Member) -> list[Member]:
    return [new if m.name == new.name else m for m in members]


def test_the_hand_written_archive_is_a_valid_checkpoint(tmp_path):
    model = _model()
    loaded = nn.load(_zip(tmp_path / "ok.npz", _members(model)))
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    assert loaded.forward(x).tobytes() == model.forward(x).tobytes()
    deflated = [_deflated(m) for m in _members(model)]
    assert nn.load(_zip(tmp_path / "deflated.npz", deflated)).forward(x).tobytes() == model.forward(x).tobytes()


# --- zip bombs and huge shapes: in a child under RLIMIT_AS, with a timeout ---------------------


def _bombs():
    """name -> (members, message fragment)."""
    model = _model()
    good = _members(model)
    big = nn.Sequential([nn.Dense(5, 16, rng=0)])
    big_header = _header(big)
    big_header["architecture"][0].update(in_features=32768, out_features=32768)
    big_header["params"]["0.W"]["shape"] = [32768, 32768]
    big_header["params"]["0.b"]["shape"] = [32768]
    return {
        "extra-npy-member": (
            [*good, _bomb("extra.npy", _npy_header("|u1", (BOMB_MIB * MiB,)))],
            "unexpected array(s) 'extra'"),
        "weight-member": (
            _replace(good, _bomb("0.W.npy", _npy_header("<f4", (32768, 32768)))),
            "the member for parameter '0.W' declares 4294967424 bytes"),
        "raw-member": (
            [*good, _bomb("weights.bin", b"")],
            "entry 'weights.bin' is not a .npy array"),
        "json-header": (
            _replace(good, _bomb(f"{HEADER}.npy", _npy_header("|u1", (BOMB_MIB * MiB,)))),
            "header member declares 4294967424 bytes"),
        "architecture-agrees": (
            [_bomb("0.W.npy", _npy_header("<f4", (32768, 32768))),
             Member("0.b.npy", _npy(np.zeros(32768, np.float32))), _header_member(big_header)],
            "refused as a likely zip bomb"),
        "lying-size": (  # the directory says 0.W is its true size; the stream goes on for 4 GiB
            _replace(good, _bomb("0.W.npy", _npy(model.params["0.W"]), file_size=len(_npy(model.params["0.W"])))),
            "array '0.W' is unreadable (Bad CRC-32"),
        "npy-shape-vs-architecture": (
            _replace(good, Member("0.W.npy", _npy_header("<f4", (10**6, 10**6)) + bytes(320))),
            r"layer 0 declares Dense(5, 16) but the file has shape (1000000, 1000000)"),
        "npy-shape-agrees": (  # header and .npy agree on 4 TB; the member holds 320 bytes
            [Member("0.W.npy", _npy_header("<f4", (10**6, 10**6)) + bytes(320)),
             Member("0.b.npy", _npy(np.zeros(10**6, np.float32))),
             _header_member(_header(big, architecture=[{**big.config()[0], "in_features": 10**6,
                                                        "out_features": 10**6}]))],
            "is a float32 array of shape (1000000, 1000000) (4000000000000 bytes"),
        "npy-shape-header": (
            _replace(good, Member(f"{HEADER}.npy", _npy_header("|u1", (10**13,)) + b"{}")),
            "array '__gradkit__' is a uint8 array of shape (10000000000000,)"),
    }


BOMBS = [
    "extra-npy-member", "weight-member", "raw-member", "json-header", "architecture-agrees", "lying-size",
    "npy-shape-vs-architecture", "npy-shape-agrees", "npy-shape-header"]


@pytest.fixture(scope="module")
def bomb_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bombs")
    return {name: (_zip(folder / f"{name}.npz", members), fragment) for name, (members, fragment) in _bombs().items()}


_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from gradkit import nn

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    base_rss = status("VmRSS:")
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize:") + (1 << 30), resource.RLIM_INFINITY))
    start = time.perf_counter()
    try:
        nn.load(sys.argv[1])
        out = {"type": None, "message": ""}
    except BaseException as exc:
        out = {"type": type(exc).__name__, "message": str(exc)}
    out.update(seconds=time.perf_counter() - start, rss_growth=status("VmHWM:") - base_rss)
    print(json.dumps(out))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
@pytest.mark.parametrize("name", BOMBS)
def test_bombs_are_refused_unread_under_a_memory_limit(bomb_files, name):
    path, fragment = bomb_files[name]
    assert path.stat().st_size < 6 * MiB
    src = str(Path(nn.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=120,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["type"] == "ValueError", out
    assert fragment in out["message"], out["message"]
    assert out["seconds"] < 5
    assert out["rss_growth"] < 64 * MiB  # nothing of the bomb's size was ever resident


# --- members that zipfile cannot or must not read: refused before reading -----------------------


def _flagged(flags):
    return lambda good: _replace(good, Member("0.W.npy", next(m for m in good if m.name == "0.W.npy").payload,
                                              flags=flags))


def _method(method):
    return lambda good: _replace(good, Member("0.W.npy", next(m for m in good if m.name == "0.W.npy").payload,
                                              method=method))


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_flagged(0x1), "the member '0.W.npy' is encrypted"),
        (_flagged(0x41), "the member '0.W.npy' is encrypted"),
        (_flagged(0x40), "the member '0.W.npy' uses strong encryption"),
        (_flagged(0x20), "the member '0.W.npy' is compressed patched data"),
        (_method(14), "the member '0.W.npy' uses compression method 14"),  # LZMA: zipfile would try it
        (_method(12), "the member '0.W.npy' uses compression method 12"),  # bzip2
        (_method(99), "the member '0.W.npy' uses compression method 99"),  # AES: NotImplementedError before
        (lambda good: [Member("0.W.npy", _npy(np.ones((5, 16), np.float32))), *good],
         "the member '0.W.npy' appears more than once"),
        (lambda good: [*good, Member(f"{HEADER}.npy", good[-1].payload)], "the member '__gradkit__.npy' appears"),
        (lambda good: _replace(good, Member("0.W.npy", next(m for m in good if m.name == "0.W.npy").payload,
                                            file_size=400)),
         "the stored member '0.W.npy' declares 400 bytes but occupies 448"),
        (lambda good: _replace(good, Member("0.W.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 4200) + bytes(4200))),
         "array '0.W' has an unreadable .npy header (Header info length (4200) is large"),
        (lambda good: _replace(good, Member("0.W.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", 60_000) + bytes(400))),
         "array '0.W' has an unreadable .npy header (EOF: reading array header, expected 60000 bytes got 400)"),
        (lambda good: _replace(good, _deflated(Member("0.W.npy", _npy_header("<f4", (5, 16)) * 40 + bytes(320)))),
         ("the member for parameter '0.W' declares 5440 bytes; the architecture's float32 array of shape (5, 16) "
          "needs 320 plus a .npy header of at most 4096 (refused unread)")),
        (lambda good: _replace(good, Member("0.W.npy", b"\x93NUMPY\x03\x00" + bytes(500))),
         "array '0.W' has an unreadable .npy header (.npy format version (3, 0)"),
        (lambda good: _replace(good, Member("0.W.npy", b"PK\x03\x04 not a .npy")), "entry '0.W' is not a .npy array"),
        (lambda good: _replace(good, Member("0.W.npy", _npy(np.zeros((5, 16), np.float32))[:-4])),
         ("array '0.W' is a float32 array of shape (5, 16) (320 bytes after a 128-byte .npy header) but its member "
          "declares 444 bytes")),
    ],
    ids=["encrypted", "encrypted+strong", "strong-encryption", "patch-data", "lzma", "bzip2", "method-99",
         "duplicate-weight", "duplicate-header", "stored-size-lie", "npy-header-too-long", "npy-header-cut", "member-too-long", "npy-version-3",
         "not-npy", "short-npy"],
)
def test_members_are_checked_before_anything_is_read(tmp_path, edit, fragment):
    path = _zip(tmp_path / "bad.npz", edit(_members()))
    with pytest.raises(ValueError, match=r"bad\.npz: ") as caught:
        nn.load(path)
    assert fragment in str(caught.value)


def test_a_member_past_the_end_of_the_file(tmp_path):
    path = _zip(tmp_path / "cut.npz", _members())
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    offset_field = central + 46 + len("0.W.npy") + 4 + 16  # the zip64 extra's header offset of the first member
    data[offset_field: offset_field + 8] = struct.pack("<Q", len(data))
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"cut\.npz: truncated or corrupt checkpoint: the member '0\.W\.npy' "
                                         r"extends past the end of the file"):
        nn.load(path)


def test_a_member_flood_is_refused_before_zipfile_parses_it(tmp_path):
    """70,000 empty members (a 6 MiB file): zipfile would build 70,000 objects; the count is read first."""
    path = _zip(tmp_path / "flood.npz", [Member(f"{i}.npy", b"") for i in range(70_000)])
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"flood\.npz: not a gradkit checkpoint: its zip directory lists 70000 "
                                         r"members in \d+ bytes; a checkpoint has at most 65535 members"):
        nn.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * MiB


def test_a_huge_header_is_refused_unread_and_save_never_writes_one(tmp_path):
    header = _header(_model(), metadata={"blob": "x" * (5 * MiB)})
    path = _zip(tmp_path / "big.npz", _replace(_members(), _deflated(_header_member(header))))
    assert path.stat().st_size < 64 * 1024
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"big\.npz: the '__gradkit__' header member declares 52\d{5} bytes; "
                                         r"a checkpoint header holds at most 4194304 bytes of JSON \(refused unread\)"):
        nn.load(path)
    assert tracemalloc.get_traced_memory()[1] < 2 * MiB
    tracemalloc.stop()
    target = tmp_path / "m.npz"
    with pytest.raises(ValueError, match=r"model cannot be checkpointed: its JSON header .* is 52\d{5} bytes; "
                                         r"load accepts at most 4194304"):
        nn.save(_model(), target, metadata={"blob": "x" * (5 * MiB)})
    assert not target.exists()
    nn.save(_model(), target, metadata={"blob": "x" * (3 * MiB)})  # under the cap: a round trip
    assert nn.load(target).metadata == {"blob": "x" * (3 * MiB)}


# --- paths that are not regular files ----------------------------------------------------------


def _load_with_timeout(path, seconds=20):
    """``nn.load(path)`` in a thread: its outcome, or a failure if it is still blocked after ``seconds``."""
    outcome = {}

    def run():
        try:
            outcome["value"] = nn.load(path)
        except BaseException as exc:  # noqa: BLE001 (reported to the test thread)
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():  # blocked opening a FIFO: give it a writer so the thread can finish, then fail
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        worker.join(5)
        pytest.fail(f"nn.load({str(path)!r}) blocked for {seconds} s")
    return outcome


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    start = time.perf_counter()
    outcome = _load_with_timeout(fifo)
    assert isinstance(outcome.get("error"), ValueError), outcome
    assert "model.npz: not a gradkit checkpoint: it is a FIFO (named pipe), not a regular file" in str(outcome["error"])
    assert time.perf_counter() - start < 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_swapped_in_after_the_stat_is_refused_by_fstat(tmp_path, monkeypatch):
    """The race between os.stat and open: the opened descriptor is checked again (O_NONBLOCK: no hang)."""
    fifo, regular = tmp_path / "model.npz", tmp_path / "regular.npz"
    os.mkfifo(fifo)
    nn.save(_model(), regular)
    real_stat = os.stat

    def stat_before_the_swap(p, *args, **kwargs):  # what os.stat saw just before the file was replaced
        return real_stat(regular) if os.fspath(p) == str(fifo) else real_stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_before_the_swap)
    outcome = _load_with_timeout(fifo)
    monkeypatch.undo()
    assert isinstance(outcome.get("error"), ValueError), outcome
    assert "model.npz: not a gradkit checkpoint: it is a FIFO (named pipe), not a regular file" in str(outcome["error"])


def test_a_symlink_loop_is_a_value_error(tmp_path):
    (tmp_path / "a.npz").symlink_to(tmp_path / "b.npz")
    (tmp_path / "b.npz").symlink_to(tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"a\.npz: cannot be read as a gradkit checkpoint: Too many levels of symbolic links"):
        nn.load(tmp_path / "a.npz")


def test_a_directory_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="not a gradkit checkpoint: it is a directory, not a regular file"):
        nn.load(tmp_path)


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="no /proc/self/mem here")
def test_proc_self_mem_is_a_value_error():
    """A "regular" pseudo-file of size 0 whose read fails with EIO."""
    with pytest.raises(ValueError, match=r"/proc/self/mem: not a gradkit checkpoint: the file is empty"):
        nn.load("/proc/self/mem")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_refused_unopened():
    outcome = _load_with_timeout("/dev/zero")
    assert isinstance(outcome.get("error"), ValueError), outcome
    assert "/dev/zero: not a gradkit checkpoint: it is a character device" in str(outcome["error"])


def test_a_missing_file_or_dangling_link_stays_file_not_found(tmp_path):
    """As with open() and np.load: a path that names nothing is FileNotFoundError, not ValueError."""
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "absent.npz")
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "dangling.npz")


def test_an_architecture_no_array_can_hold_is_refused_before_allocation(tmp_path):
    header = _header(_model())
    header["architecture"][0].update(in_features=10**10, out_features=10**10)
    path = _zip(tmp_path / "huge.npz", _replace(_members(), _header_member(header)))
    with pytest.raises(ValueError, match=r"huge\.npz: layer 0 of the architecture cannot be built: "
                                         r"Dense\(10000000000, 10000000000\) of float32 would need more bytes"):
        nn.load(path)


# --- a legitimate load costs the parameters once --------------------------------------------------


def _wide_model(mib: int, seed: int = 0) -> nn.Sequential:
    """Two float32 Dense layers holding ``mib`` MiB of parameters in all."""
    n = int((mib * MiB / 8) ** 0.5)
    return nn.Sequential([nn.Dense(n, n, rng=seed), "relu", nn.Dense(n, n, rng=seed + 1)])


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_peak_memory_of_a_load_is_under_twice_the_file(tmp_path, compressed):
    """Before: every Dense was randomly initialized (float64) and then overwritten: 4x the file."""
    model = _wide_model(32)
    path = tmp_path / "wide.npz"
    if compressed:
        np.savez_compressed(path, **model.params, **{HEADER: np.frombuffer(
            json.dumps(_header(model)).encode(), dtype=np.uint8)})
    else:
        nn.save(model, path)
    size = path.stat().st_size
    assert size > 28 * MiB  # random weights barely deflate
    tracemalloc.start()
    loaded = nn.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= 2 * size, f"peak {peak / MiB:.1f} MiB for a {size / MiB:.1f} MiB file"
    for name, value in model.params.items():
        assert loaded.params[name].tobytes() == value.tobytes()
        assert loaded.params[name].flags.writeable and loaded.params[name].flags.c_contiguous
    grads = loaded.grads  # allocated now, at first use, as zeros of each parameter's shape and dtype
    assert {k: (g.shape, g.dtype, bool(g.any())) for k, g in grads.items()} == {
        k: (v.shape, v.dtype, False) for k, v in model.params.items()}


def test_a_loaded_model_trains_like_a_built_one(tmp_path):
    """The layers built from arrays (lazy gradient buffers) give the same step as the saved model."""
    import gradkit as gk

    rng = np.random.default_rng(3)
    model = nn.Sequential([nn.Dense(5, 7, rng=0, dtype=np.float64), "tanh", nn.Dense(7, 3, rng=1, dtype=np.float64)])
    for p in model.params.values():
        p[...] = rng.standard_normal(p.shape)
    nn.save(model, tmp_path / "m.npz")
    loaded = nn.load(tmp_path / "m.npz")
    x, y = rng.standard_normal((9, 5)), rng.integers(0, 3, 9)
    loss = gk.compose(gk.LogSoftmax(), gk.NLLLoss())
    for m in (model, loaded):
        nn.fit(m, x, y, loss=loss, epochs=2, batch_size=3, rng=0)
    for name, value in model.params.items():
        np.testing.assert_array_equal(loaded.params[name], value)
        np.testing.assert_array_equal(loaded.grads[name], model.grads[name])


def test_fortran_ordered_weights_round_trip(tmp_path):
    model = _model()
    w = model.layers[0].params["W"]
    model.layers[0].params["W"] = np.asfortranarray(w)
    nn.save(model, tmp_path / "f.npz")
    loaded = nn.load(tmp_path / "f.npz")
    assert loaded.params["0.W"].tobytes() == w.tobytes() and loaded.params["0.W"].shape == (5, 16)


# --- save: symlinks, SIGKILL mid-way, stale temp files --------------------------------------------


def _tmp_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_save_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    real_dir, link_dir = tmp_path / "store", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    nn.save(_model(), real_dir / "model.npz", metadata={"v": 1})
    link = link_dir / "current.npz"
    link.symlink_to(os.path.join("..", "store", "model.npz"))  # relative, as `ln -s` makes them
    chain = link_dir / "latest.npz"
    chain.symlink_to("current.npz")  # a link to a link
    nn.save(_model(), chain, metadata={"v": 2})
    assert chain.is_symlink() and os.readlink(chain) == "current.npz"
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "store", "model.npz")
    assert nn.load(real_dir / "model.npz").metadata == {"v": 2}
    assert sorted(os.listdir(real_dir)) == ["model.npz"] and sorted(os.listdir(link_dir)) == ["current.npz",
                                                                                             "latest.npz"]
    dangling = link_dir / "next.npz"
    dangling.symlink_to(os.path.join("..", "store", "next.npz"))
    nn.save(_model(), dangling, metadata={"v": 3})  # a dangling link: its target is created
    assert dangling.is_symlink() and nn.load(real_dir / "next.npz").metadata == {"v": 3}


def test_save_to_a_symlink_loop_is_a_value_error(tmp_path):
    (tmp_path / "a.npz").symlink_to(tmp_path / "b.npz")
    (tmp_path / "b.npz").symlink_to(tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"path '.*a\.npz' cannot be written: Too many levels of symbolic links"):
        nn.save(_model(), tmp_path / "a.npz")
    assert (tmp_path / "a.npz").is_symlink() and _tmp_files(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_at_random_moments_of_a_save(tmp_path):
    """20 children are killed mid-save: the checkpoint always loads whole; the next save removes their temp files."""
    models = [_wide_model(4, seed=0), _wide_model(4, seed=7)]  # 4 MiB each
    path = tmp_path / "model.npz"
    nn.save(models[0], path, metadata={"v": 0})
    start = time.perf_counter()
    nn.save(models[1], path, metadata={"v": 1})
    one_save = time.perf_counter() - start
    rng = np.random.default_rng(20)
    orphans = 0
    for _ in range(20):
        ready_r, ready_w = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork() with threads running
            pid = os.fork()
        if pid == 0:  # the child: save the two models in turn until killed
            try:
                os.close(ready_r)
                os.write(ready_w, b"!")
                i = 0
                while True:
                    nn.save(models[i % 2], path, metadata={"v": i % 2})
                    i += 1
            finally:
                os._exit(1)
        os.close(ready_w)
        try:
            assert os.read(ready_r, 1) == b"!"
        finally:
            os.close(ready_r)
        time.sleep(rng.uniform(0, 3 * one_save))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)  # reaped: its pid no longer runs
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        loaded = nn.load(path)  # always one whole checkpoint, the old or the new
        expected = models[loaded.metadata["v"]]
        assert all(loaded.params[k].tobytes() == v.tobytes() for k, v in expected.params.items())
        orphans += len(_tmp_files(tmp_path))
    assert orphans > 0  # some kills did land inside a write (a temp file was left behind)
    nn.save(models[0], path, metadata={"v": 0})
    assert os.listdir(tmp_path) == ["model.npz"]
    assert nn.load(path).metadata == {"v": 0}


def test_stale_temp_cleanup_touches_only_dead_writers_temp_files_of_this_target(tmp_path):
    path = tmp_path / "model.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)  # a process that has exited and been reaped
    stale = f".model.npz.gradkit-{dead_pid}-{'0123456789abcdef'}.tmp"
    kept = [
        f".model.npz.gradkit-{os.getpid()}-{'a' * 16}.tmp",  # this process: another thread may be writing it
        f".model.npz.gradkit-{os.getppid()}-{'b' * 16}.tmp",  # a live process
        f".other.npz.gradkit-{dead_pid}-{'c' * 16}.tmp",  # another target's
        ".model.npz.abcdefgh.tmp",  # not a name gradkit makes
        f".model.npz.gradkit-{dead_pid}-{'d' * 15}.tmp",  # not quite
        "model.npz.tmp",
    ]
    for name in [stale, *kept]:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / "folder.tmp").mkdir()
    link = f".model.npz.gradkit-{dead_pid}-{'e' * 16}.tmp"
    (tmp_path / link).symlink_to(tmp_path / "model.npz.tmp")  # not a regular file: left alone
    nn.save(_model(), path)
    assert sorted(os.listdir(tmp_path)) == sorted(["model.npz", "folder.tmp", link, *kept])
