"""How many threads a kernel call uses: the knobs, the cores found (affinity, cgroup quota), the serial or
threaded variant by size and thread count, forked children, racing threads, threadpoolctl limits.

Only the policy's logic is tested here, never a timing (benchmarks/contention.py measures those).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels
from gradkit.kernels import _cores

ROOT = Path(__file__).resolve().parents[1]
needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba not installed or disabled")


@pytest.fixture(autouse=True)
def _automatic(monkeypatch):
    """Every test starts from the automatic choice (no set_num_threads, no GRADKIT_NUM_THREADS)."""
    monkeypatch.delenv("GRADKIT_NUM_THREADS", raising=False)
    monkeypatch.setattr(_cores, "_chosen", None)


# -- the knobs ----------------------------------------------------------------------------------
def test_threads_block_overrides_set_num_threads_which_overrides_the_environment(monkeypatch):
    monkeypatch.setattr(_cores, "available_cores", lambda: 7)
    assert _cores.requested_threads() == 7  # automatic: the cores
    monkeypatch.setenv("GRADKIT_NUM_THREADS", "3")
    assert _cores.requested_threads() == 3
    kernels.set_num_threads(2)
    assert kernels.get_num_threads() == 2 and _cores.requested_threads() == 2
    with kernels.threads(1):
        assert _cores.requested_threads() == 1
        with kernels.threads(5):
            assert _cores.requested_threads() == 5  # the innermost block
        assert _cores.requested_threads() == 1
    assert _cores.requested_threads() == 2
    kernels.set_num_threads(None)
    assert kernels.get_num_threads() is None and _cores.requested_threads() == 3


@pytest.mark.parametrize("bad,exc,fragment", [
    (0, ValueError, "n: expected an integer >= 1; got 0"),
    (-2, ValueError, "n: expected an integer >= 1; got -2"),
    (1.5, TypeError, "n: expected an integer >= 1; got 1.5 of type float"),
    (True, TypeError, "n: expected an integer >= 1; got True of type bool"),
    ("2", TypeError, "got '2' of type str"),
])
def test_bad_thread_counts_are_refused(bad, exc, fragment):
    with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        kernels.set_num_threads(bad)
    with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(")", r"\)")), kernels.threads(bad):
        pass  # pragma: no cover
    assert kernels.get_num_threads() is None  # nothing half-set


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "2.5"])
def test_a_bad_environment_variable_is_named(monkeypatch, raw):
    monkeypatch.setenv("GRADKIT_NUM_THREADS", raw)
    with pytest.raises(ValueError, match="GRADKIT_NUM_THREADS: expected an integer >= 1"):
        _cores.requested_threads()


# -- the cores found ----------------------------------------------------------------------------
def _tree(tmp_path, files: dict[str, str], own: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(own)
    return root, proc


@pytest.mark.parametrize("files,own,expected", [
    ({"job/cpu.max": "150000 100000\n"}, "0::/job\n", 1.5),  # v2, own cgroup
    ({"cpu.max": "200000 100000\n"}, "0::/\n", 2.0),  # v2, at the root
    ({"job/cpu.max": "max 100000\n"}, "0::/job\n", None),  # v2: unlimited
    ({"cpu/job/cpu.cfs_quota_us": "50000\n", "cpu/job/cpu.cfs_period_us": "100000\n"},
     "3:cpu,cpuacct:/job\n1:memory:/x\n", 0.5),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "2:cpu:/\n", None),  # v1 unlimited
    ({"job/cpu.max": "300000 100000\n", "cpu.max": "100000 100000\n"}, "0::/job\n", 1.0),  # the tighter one
    ({"job/cpu.max": "garbage\n"}, "0::/job\n", None),
    ({"job/cpu.max": "0 100000\n"}, "0::/job\n", None),
    ({}, "not a cgroup line\n", None),
])
def test_cgroup_cpu_quota(tmp_path, files, own, expected):
    root, proc = _tree(tmp_path, files, own)
    assert _cores.cgroup_cpu_limit(root, proc) == expected


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_hostile_cgroup_files_are_not_read(tmp_path):
    # a FIFO nobody writes to would block open()/read() forever; a huge file must not be read whole
    root, proc = _tree(tmp_path, {"job/cpu.max": "1" * 10_000_000 + " 100000"}, "0::/job\n")
    os.mkfifo(root / "cpu.max")
    os.mkfifo(tmp_path / "fifo_cgroup")
    out = []
    t = threading.Thread(target=lambda: out.extend([_cores.cgroup_cpu_limit(root, proc),
                                                    _cores.cgroup_cpu_limit(root, tmp_path / "fifo_cgroup")]))
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "reading a cgroup FIFO hung"
    assert out == [None, None]
    # a path that climbs out of the cgroup tree is not followed
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "cpu.max").write_text("100000 100000")
    root2, proc2 = _tree(tmp_path / "b", {}, "0::/../../outside\n")
    assert _cores.cgroup_cpu_limit(root2, proc2) is None


def test_available_cores_is_the_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(_cores, "_cgroup_cores", lambda: None)
    assert kernels.available_cores() == 6
    monkeypatch.setattr(_cores, "_cgroup_cores", lambda: 2)  # a 1.5-CPU quota rounds up to 2
    assert kernels.available_cores() == 2
    monkeypatch.setattr(_cores, "_cgroup_cores", lambda: 16)
    assert kernels.available_cores() == 6


# -- the variant a kernel call runs -------------------------------------------------------------
@needs_numba
def test_serial_below_parallel_min_and_the_threaded_code_on_as_many_threads_as_may_run(monkeypatch):
    import numba

    from gradkit.kernels import _exp, _threads
    from gradkit.kernels import softmax as fast_softmax

    kernel = fast_softmax._forward_rows
    big = _exp.PARALLEL_MIN
    monkeypatch.setattr(_threads, "_layer", "tbb")
    assert kernel(big - 1) is kernel.serial

    def threads_of(chosen):
        assert chosen.inner is kernel.threaded  # one compiled code above PARALLEL_MIN: results cannot differ
        return chosen.threads

    monkeypatch.setattr(numba, "get_num_threads", lambda: 8)
    with kernels.threads(1):
        assert threads_of(kernel(big)) == 1  # before: all of numba's threads whatever the setting
    monkeypatch.setattr(_cores, "available_cores", lambda: 1)  # a 1-CPU container or taskset
    assert threads_of(kernel(big)) == 1
    monkeypatch.setattr(_cores, "available_cores", lambda: 3)
    assert threads_of(kernel(big)) == 3
    monkeypatch.setattr(_cores, "available_cores", lambda: 64)
    assert threads_of(kernel(big)) == 8  # never more than numba's pool
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)  # the user's numba.set_num_threads(1)
    assert threads_of(kernel(big)) == 1


@needs_numba
@pytest.mark.parametrize(("rows", "per", "chunk"), [(1000, 4, 125), (1001, 4, 126), (5, 4, 1), (1000, 0, 500)])
def test_threaded_calls_hand_out_rows_in_chunks_and_lower_numba_only_for_the_call(monkeypatch, rows, per, chunk):
    import numba

    from gradkit.kernels import _threads

    seen = []

    def threaded(n, size, a):
        seen.append((n, size))
        return a + 1

    monkeypatch.setattr(_threads, "_layer", "tbb")
    monkeypatch.setattr(_threads, "num_threads", lambda: 2)
    monkeypatch.setattr(_threads, "CHUNKS_PER_THREAD", per)  # 0: one equal share per thread
    monkeypatch.setattr(numba, "get_num_threads", lambda: 8)  # numba's pool larger than the cores
    threads_set, chunks_set = [], []
    monkeypatch.setattr(numba, "set_num_threads", threads_set.append)
    monkeypatch.setattr(numba, "set_parallel_chunksize", lambda n: chunks_set.append(n) or 0)
    fn = _threads.variant(threaded, None, None)
    assert fn is not threaded and fn.inner is threaded
    np.testing.assert_array_equal(fn(np.zeros((rows, 3))), np.ones((rows, 3)))
    assert seen == [(rows, chunk)]  # the rows in chunks of about rows / (threads * per), rounded up
    assert threads_set == [2, 8]  # lowered to the cores for the call, then put back
    assert chunks_set == [1, 0]  # one chunk of rows per loop iteration, taken dynamically; then numba's default


@needs_numba
def test_the_chunk_size_and_thread_count_are_restored_even_when_the_kernel_raises():
    import numba

    from gradkit.kernels import _threads

    def threaded(n, chunk, a):
        raise RuntimeError("inside")

    before_threads, before_chunk = numba.get_num_threads(), numba.get_parallel_chunksize()
    fn = _threads._balanced(threaded, 1)
    with pytest.raises(RuntimeError, match="inside"):
        fn(np.zeros((8, 2)))
    assert numba.get_num_threads() == before_threads and numba.get_parallel_chunksize() == before_chunk


@needs_numba
@pytest.mark.parametrize("cls", [gk.Softmax, gk.LogSoftmax], ids=lambda c: c.__name__)
def test_results_do_not_depend_on_the_thread_count_to_the_last_bit(cls):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 512), dtype=np.float32)  # 131,072 elements: large enough to thread
    g = rng.standard_normal(x.shape, dtype=np.float32)
    act = cls()
    auto = act(x), act.vjp(x, g)
    with kernels.threads(1):
        one = act(x), act.vjp(x, g)
    for a, b in zip(auto, one):  # before: threads(1) ran the serial twin, which differs in the last bit
        np.testing.assert_array_equal(a, b)


_CHILD = r"""
import os, numba, numpy as np
import gradkit as gk
from gradkit import kernels
from gradkit.kernels import _exp, _threads
from gradkit.kernels import softmax as fs
k = fs._forward_rows
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})   # one core, as under taskset -c 0
print(numba.config.NUMBA_NUM_THREADS, kernels.available_cores(), k(_exp.PARALLEL_MIN).threads)
x = np.random.default_rng(0).standard_normal((512, 512))
a = gk.Softmax()(x)
with kernels.threads(1):
    b = gk.Softmax()(x)
print(np.array_equal(a, b), numba.get_num_threads())
"""


@needs_numba
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_a_process_pinned_to_one_core_runs_kernels_on_one_thread_though_numba_started_four():
    env = dict(os.environ, NUMBA_NUM_THREADS="4", PYTHONPATH=str(ROOT / "src"))
    env.pop("GRADKIT_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-c", _CHILD], check=False, capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["4", "1", "1", "True", "4"]  # before: 4 threads on one core


# -- processes and threads ----------------------------------------------------------------------
def _child_reports(conn):
    x = np.random.default_rng(1).standard_normal((300, 300))
    y = gk.Softmax()(x)
    conn.send((_cores.requested_threads(), float(y.sum())))
    conn.close()


@needs_numba
@pytest.mark.skipif(sys.platform == "win32", reason="no fork()")
def test_a_forked_child_keeps_the_setting_and_runs_the_kernels():
    import multiprocessing as mp

    x = np.random.default_rng(1).standard_normal((300, 300))
    gk.Softmax()(x)  # the parent has started numba's threads (90,000 elements: threaded)
    kernels.set_num_threads(1)
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child_reports, args=(child,))
    p.start()
    try:
        assert parent.poll(60), "the forked child hung"
        n, total = parent.recv()
    finally:
        p.join(timeout=30)
        if p.is_alive():  # pragma: no cover - a hang
            p.kill()
    assert p.exitcode == 0 and n == 1 and total == pytest.approx(300.0)


def test_racing_threads_each_see_their_own_block():
    barrier = threading.Barrier(8, timeout=30)
    seen: dict[int, list[int]] = {}

    def worker(k: int) -> None:
        with kernels.threads(k + 1):
            barrier.wait()  # all eight blocks open at once
            seen[k] = [_cores.requested_threads() for _ in range(200)]
            barrier.wait()

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in workers)
    assert seen == {k: [k + 1] * 200 for k in range(8)}
    assert _cores._inside.get() is None  # nothing leaked into this thread


@needs_numba
def test_racing_kernel_calls_with_different_limits_agree():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((256, 1024))
    expected = gk.Softmax()(x)
    errors = []

    def worker(k: int) -> None:
        try:
            with kernels.threads(1 + k % 2):
                for _ in range(5):
                    np.testing.assert_allclose(gk.Softmax()(x), expected, rtol=1e-12, atol=1e-15)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in workers) and errors == []


# -- other libraries' pools ---------------------------------------------------------------------
@needs_numba
def test_kernels_leave_blas_and_openmp_pools_as_they_are_and_work_under_threadpoolctl_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    x = np.random.default_rng(5).standard_normal((512, 256))
    act = gk.Softmax()
    expected = act(x)

    def pools():
        return sorted((p["filepath"], p["num_threads"]) for p in threadpoolctl.threadpool_info())

    before, environ = pools(), dict(os.environ)
    act(x)
    # gradkit sets no BLAS/OpenMP thread count and no OMP_* variable behind the user's back
    assert pools() == before and dict(os.environ) == environ
    with threadpoolctl.threadpool_limits(1):
        np.testing.assert_allclose(act(x), expected, rtol=1e-12, atol=1e-15)
    assert pools() == before
