"""Threads and forked processes: shared objects, numba's threading layers, fork(), Gumbel noise.

Anything that could crash or hang the interpreter (numba aborts a process whose
workqueue layer is entered by two threads; GNU OpenMP kills a forked child) runs in
a subprocess under a timeout, so that a failure is a failed test, not a dead pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradkit as gk
from gradkit import kernels
from gradkit.check import random_target

N_THREADS = 8
#: rows × classes of a threaded-size input: 128 × 1024 = 131,072 elements ≥ kernels' PARALLEL_MIN
BIG = (128, 1024)
TIMEOUT = 240  # seconds for a subprocess: compiling the kernels on a cold cache takes a while; a hang takes forever


# -- helpers ----------------------------------------------------------------------------------
def _hammer(tasks: list[Callable[[], Any]], expected: list[Any], rounds: int, switch: float = 1e-5) -> list[str]:
    """Run every task from ``N_THREADS`` threads (each in its own order), compare with ``expected``.

    A short switch interval makes the interpreter hand the GIL over often, so that
    threads interleave inside the calls and not only between them.
    """
    failures: list[str] = []
    start = threading.Barrier(N_THREADS)

    def worker(k: int) -> None:
        order = np.random.default_rng(k).permutation(len(tasks))
        start.wait()
        for _ in range(rounds):
            for i in order:
                try:
                    got = tasks[i]()
                    same = _same(got, expected[i])
                except Exception as exc:  # noqa: BLE001 - reported below with the task
                    failures.append(f"task {i}: {type(exc).__name__}: {exc}")
                    continue
                if not same:
                    failures.append(f"task {i}: differs from the single-threaded result")

    old = sys.getswitchinterval()
    sys.setswitchinterval(switch)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(N_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT)
        assert not any(t.is_alive() for t in threads), "threads still running: a hang"
    finally:
        sys.setswitchinterval(old)
    return failures


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _run(script: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter with this process's gradkit; fail on a crash or a hang."""
    full_env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    src = os.path.dirname(os.path.dirname(gk.__file__))
    full_env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    full_env.update(env or {})
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=full_env, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"subprocess hung (> {timeout} s); stderr: {(exc.stderr or b'')[-2000:]!r}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    return proc


def _omp_available() -> bool:
    try:
        from numba.np.ufunc import omppool  # noqa: F401
    except ImportError:
        return False
    return True


def _tbb_installed() -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("tbb")
    except PackageNotFoundError:
        return False
    return True


needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba kernels disabled or numba absent")


# -- every stateless activation, loss and head shared by threads -----------------------------
def _activation_tasks(rng: np.random.Generator) -> list[Callable[[], Any]]:
    tasks: list[Callable[[], Any]] = []
    for name in gk.activations.names():
        act = gk.activations.get(name)
        if act.stochastic:
            continue  # Gumbel-softmax has its own tests below
        shapes = [(3, 7), (2, 3, 5)]
        if name in ("softmax", "log_softmax"):  # numba kernels: also a size that runs threaded
            shapes.append(BIG)
        for shape in shapes:
            for dtype in (np.float32, np.float64):
                x = rng.standard_normal(shape).astype(dtype)
                g = rng.standard_normal(shape).astype(dtype)
                tasks.append(lambda act=act, x=x: act(x))
                tasks.append(lambda act=act, x=x, g=g: act.vjp(x, g))
                tasks.append(lambda act=act, x=x, g=g: act.jvp(x, g))
                if shape != BIG:
                    tasks.append(lambda act=act, x=x: act.jacobian(x))
    return tasks


def _loss_and_head_tasks(rng: np.random.Generator) -> list[Callable[[], Any]]:
    tasks: list[Callable[[], Any]] = []
    for loss_name in gk.losses.names():
        loss = gk.losses.get(loss_name)
        p = rng.uniform(0.05, 0.95, (4, 6))
        p /= p.sum(-1, keepdims=True)
        if loss.input_domain[1] <= 0:  # log-probabilities (nll)
            p = np.log(p)
        t = random_target(loss, p.shape, rng)
        tasks.append(lambda loss=loss, p=p, t=t: loss.value_and_grad(p, t))
        for act_name in gk.activations.names():
            act = gk.activations.get(act_name, **({"rng": 0} if act_name == "gumbel_softmax" else {}))
            if act.stochastic:
                continue
            try:
                head = gk.compose(act, loss)
            except ValueError:
                continue  # not composable
            z = rng.uniform(0.1, 2.0, (4, 6))
            target = random_target(loss, z.shape, rng)
            tasks.append(lambda head=head, z=z, target=target: head.value_and_grad(z, target))
    for act, loss in [(gk.Softmax(), gk.CrossEntropyLoss()), (gk.LogSoftmax(), gk.NLLLoss())]:
        head = gk.compose(act, loss)  # the fused kernel with integer labels, at threaded size
        z = rng.standard_normal(BIG).astype(np.float32)
        labels = rng.integers(0, BIG[1], BIG[0])
        tasks.append(lambda head=head, z=z, labels=labels: head.value_and_grad(z, labels))
    return tasks


def test_shared_activations_losses_and_heads_give_single_threaded_results_from_many_threads():
    rng = np.random.default_rng(1313)
    tasks = _activation_tasks(rng) + _loss_and_head_tasks(rng)
    expected = [task() for task in tasks]  # single-threaded reference, same objects and inputs
    failures = _hammer(tasks, expected, rounds=2)
    assert not failures, f"{len(failures)} of {2 * N_THREADS * len(tasks)} calls: {failures[:5]}"


def test_hammer_catches_an_object_that_keeps_per_call_state():
    # the check above can fail: an activation that parks its input on the object gives
    # other threads' results once threads interleave
    class Racy(gk.Softmax):
        def compute_forward(self, xp, x, axis, mask):  # type: ignore[no-untyped-def]
            self.last = x
            time.sleep(1e-5)  # lets the other threads run here, as a longer computation would
            return super().compute_forward(xp, self.last, axis, mask)

    rng = np.random.default_rng(7)
    racy = Racy()
    xs = [rng.standard_normal((2, 3)) for _ in range(40)]
    tasks = [lambda x=x: racy(x) for x in xs]
    failures = _hammer(tasks, [task() for task in tasks], rounds=3)
    assert failures and "differs" in failures[0]


# -- numba's threading layers: threads ----------------------------------------------------------
_THREADS_SCRIPT = """
    import sys, threading
    import numpy as np, numba, gradkit as gk

    rng = np.random.default_rng(0)
    sm, lsm = gk.Softmax(), gk.LogSoftmax()
    head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
    jobs = []
    for k in range(12):
        dtype = (np.float32, np.float64)[k % 2]
        x = rng.standard_normal((128, 1024)).astype(dtype)   # 131,072 elements: the threaded kernels
        g = rng.standard_normal(x.shape).astype(dtype)
        labels = rng.integers(0, 1024, 128)
        small = rng.standard_normal((64, 32)).astype(dtype)  # its Jacobian has 65,536 entries
        jobs.append([lambda x=x: sm(x), lambda x=x, g=g: sm.vjp(x, g), lambda x=x, g=g: lsm.jvp(x, g),
                     lambda x=x, l=labels: head.value_and_grad(x, l)[1], lambda s=small: sm.jacobian(s)])
    flat = [f for fs in jobs for f in fs]
    want = [f() for f in flat]
    layer = numba.threading_layer()
    bad = []
    def work(k):
        for r in range(3):
            for i in np.random.default_rng(k + 10 * r).permutation(len(flat)):
                if not np.array_equal(flat[i](), want[i]):
                    bad.append(i)
    sys.setswitchinterval(1e-5)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(layer, len(bad))
    sys.exit(1 if bad else 0)
"""


@needs_numba
@pytest.mark.parametrize("layer", ["workqueue", "omp", "default"])
def test_threaded_kernels_from_six_threads_under_each_threading_layer(layer):
    # before: workqueue aborted the process ("not threadsafe ... concurrent access")
    if layer == "omp" and not _omp_available():
        pytest.skip("numba's OpenMP layer is not available here")
    proc = _run(_THREADS_SCRIPT, {"NUMBA_THREADING_LAYER": layer})
    used, bad = proc.stdout.split()
    assert bad == "0"
    if layer != "default":
        assert used == layer  # the user's choice is kept


# -- fork(): multiprocessing, concurrent.futures --------------------------------------------
_FORK_SCRIPT = """
    import multiprocessing as mp, sys
    from concurrent.futures import ProcessPoolExecutor
    import numpy as np, numba, gradkit as gk
    HIDE_TBB = {hide_tbb}
    if HIDE_TBB:  # as if numba was installed without the tbb wheel
        import importlib.metadata as md
        real = md.distribution
        def distribution(name):
            if name == "tbb":
                raise md.PackageNotFoundError(name)
            return real(name)
        md.distribution = distribution

    def work(seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((256, 512)).astype(np.float32)    # 131,072 elements: threaded kernels
        labels = rng.integers(0, 512, 256)
        head = gk.compose(gk.Softmax(), gk.CrossEntropyLoss())
        return gk.Softmax()(x), gk.LogSoftmax().vjp(x, x), head.value_and_grad(x, labels)[1]

    def close(a, b, exact):
        # the serial variant sums in another order (float32: 1e-7 of the row's scale)
        return all(np.array_equal(p, q) if exact else np.allclose(p, q, rtol=1e-5, atol=1e-6 * np.abs(q).max())
                   for p, q in zip(a, b))

    if __name__ == "__main__":
        mine = [work(s) for s in range(4)]        # the parent starts numba's threading layer
        layer = numba.threading_layer()
        exact = layer != "omp"                    # omp: children run the serial variant (last-bit float32 differences)
        ctx = mp.get_context("fork")
        with ctx.Pool(2) as pool:
            theirs = pool.map(work, range(4))
        assert all(close(a, b, exact) for a, b in zip(mine, theirs)), "Pool results differ"
        with ProcessPoolExecutor(2, mp_context=ctx) as ex:
            theirs = list(ex.map(work, range(4)))
        assert all(close(a, b, exact) for a, b in zip(mine, theirs)), "ProcessPoolExecutor results differ"
        print(layer)
"""


@needs_numba
@pytest.mark.parametrize("layer,hide_tbb", [("default", False), ("default", True), ("omp", False),
                                            ("workqueue", False)], ids=["default", "default-without-tbb", "omp",
                                                                        "workqueue"])
def test_forked_workers_run_threaded_size_kernels_after_the_parent_did(layer, hide_tbb):
    # before: "Terminating: fork() called from a process already using GNU OpenMP" in every
    # worker, and the Pool respawning them forever
    if layer == "omp" and not _omp_available():
        pytest.skip("numba's OpenMP layer is not available here")
    proc = _run(_FORK_SCRIPT.format(hide_tbb=hide_tbb), {"NUMBA_THREADING_LAYER": layer})
    used = proc.stdout.split()[-1]
    if layer != "default":
        assert used == layer
    elif hide_tbb:
        assert used != "tbb"
    elif _tbb_installed():
        assert used == "tbb"  # the fast extra's wheel is found although numba alone would not find it


_TORCH_FORK_SCRIPT = """
    import multiprocessing as mp
    import numpy as np, torch, gradkit as gk, gradkit.torch as gt
    torch.set_num_threads(1)   # the documented remedy for torch's own pool; gradkit's kernels stay threaded

    def work(seed):
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(256, 512, generator=gen, requires_grad=True)   # threaded-size kernels
        g = torch.randn(256, 512, generator=gen)
        (dz,) = torch.autograd.grad(gt.wrap(gk.Softmax())(z), z, grad_outputs=g)
        labels = torch.randint(0, 512, (256,), generator=gen)
        loss = gt.wrap(gk.compose(gk.LogSoftmax(), gk.NLLLoss()))(z, labels)
        (dl,) = torch.autograd.grad(loss, z)
        x = z.detach().numpy()
        return dz.numpy(), dl.numpy(), gk.Sparsemax().vjp(x, g.numpy())

    if __name__ == "__main__":
        mine = [work(s) for s in range(3)]
        with mp.get_context("fork").Pool(2) as pool:
            theirs = pool.map(work, range(3))
        assert all(np.array_equal(p, q) for a, b in zip(mine, theirs) for p, q in zip(a, b)), "results differ"
        print("ok")
"""


def test_forked_children_of_a_torch_wrap_parent_do_not_hang_with_one_torch_thread():
    """With torch's own pool at one thread (its fork limit, documented), gradkit adds no hang of its own: the
    parent runs the wrapper and threaded-size kernels, forked children do the same and get the same numbers."""
    pytest.importorskip("torch")
    proc = _run(_TORCH_FORK_SCRIPT)
    assert proc.stdout.split()[-1] == "ok"


def test_a_forked_child_of_a_gnu_openmp_parent_uses_the_serial_kernels(monkeypatch):
    from gradkit.kernels import _threads

    monkeypatch.setattr(_threads, "_serial_only", False)
    monkeypatch.setattr(_threads, "_started_layer", lambda: "omp")
    monkeypatch.setitem(sys.modules, "numba.np.ufunc.omppool", type(sys)("fake_omppool"))
    sys.modules["numba.np.ufunc.omppool"].openmp_vendor = "GNU"  # type: ignore[attr-defined]
    _threads._after_fork_in_child()
    assert _threads._serial_only
    assert _threads.variant("threaded", "serial", "guarded") == "serial"
    sys.modules["numba.np.ufunc.omppool"].openmp_vendor = "Intel"  # type: ignore[attr-defined]
    monkeypatch.setattr(_threads, "_serial_only", False)
    _threads._after_fork_in_child()
    assert not _threads._serial_only  # Intel's OpenMP survives fork()


@needs_numba
def test_joblib_loky_workers_compute_the_parents_results():
    joblib = pytest.importorskip("joblib")
    script = """
        import numpy as np, gradkit as gk
        from joblib import Parallel, delayed

        def work(seed):
            x = np.random.default_rng(seed).standard_normal((256, 512)).astype(np.float32)
            return gk.Softmax()(x)

        if __name__ == "__main__":
            mine = [work(s) for s in range(3)]
            theirs = Parallel(n_jobs=2, backend="loky")(delayed(work)(s) for s in range(3))
            assert all(np.array_equal(a, b) for a, b in zip(mine, theirs))
    """
    assert joblib.__version__
    _run(script)


# -- Gumbel-softmax shared by threads -------------------------------------------------------
def test_gumbel_explicit_noise_calls_depend_on_nothing_shared():
    # before: gs(z, noise=n) and gs.vjp(..., noise=n) read the noise from the object, where
    # another thread's call could have replaced it
    gs = gk.GumbelSoftmax(temperature=0.7, rng=0)
    sm = gk.Softmax(temperature=0.7)
    rng = np.random.default_rng(2)
    tasks, expected = [], []
    for _ in range(60):
        z, n, g = rng.standard_normal((3, 5)), rng.gumbel(size=(3, 5)), rng.standard_normal((3, 5))
        tasks.append(lambda z=z, n=n: gs(z, noise=n))
        expected.append(sm(z + n))
        tasks.append(lambda z=z, n=n, g=g: gs.vjp(z, g, noise=n))
        expected.append(sm.vjp(z + n, g))
        tasks.append(lambda z=z, n=n, g=g: gs.jvp(z, g, noise=n))
        expected.append(sm.jvp(z + n, g))
        tasks.append(lambda z=z, n=n, g=g: (gs(z, noise=n), gs.vjp(z, g)))  # the same thread's noise, kept
        expected.append((sm(z + n), sm.vjp(z + n, g)))
        tasks.append(lambda z=z: gs(z).shape)  # plain draws in between, from every thread
        expected.append((3, 5))
    failures = _hammer(tasks, expected, rounds=4, switch=1e-6)
    assert not failures, f"{len(failures)} of {4 * N_THREADS * len(tasks)} calls: {failures[:5]}"


def _in_thread(fn: Callable[[], Any]) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(timeout=60)
    assert out, "the thread failed or hung"
    return out[0]


def test_gumbel_forward_noise_is_kept_per_thread():
    # before: another thread's forward replaced the noise this thread's vjp then used
    gs, sm = gk.GumbelSoftmax(rng=4), gk.Softmax()
    x, g = np.array([[0.3, -1.0, 2.0, 0.5]]), np.array([[1.0, -0.5, 0.25, 2.0]])
    gs(x)
    mine = gs.noise.copy()
    theirs = _in_thread(lambda: (gs(x), gs.noise.copy())[1])
    assert not np.array_equal(mine, theirs)
    np.testing.assert_array_equal(gs.noise, mine)
    np.testing.assert_allclose(gs.vjp(x, g), sm.vjp(x + mine, g), rtol=1e-15)
    error = _in_thread(lambda: _raised(lambda: gs.vjp(x, g)))  # a fresh thread has no forward pass to use
    assert isinstance(error, ValueError) and "per thread" in str(error)


def _raised(fn: Callable[[], Any]) -> BaseException | None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - returned to the test thread
        return exc
    return None


def test_gumbel_frozen_holds_only_in_its_thread():
    # before: frozen() set a flag on the object, so every thread reused one sample
    gs = gk.GumbelSoftmax(rng=5)
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    first = gs(x)
    with gs.frozen():
        other = _in_thread(lambda: (gs(x), gs(x)))
        np.testing.assert_array_equal(gs(x), first)  # still frozen here
    assert not np.array_equal(other[0], other[1]), "another thread's forward passes were frozen too"


def test_gumbel_draws_from_many_threads_come_from_the_seeded_stream_intact():
    # each draw is a block of the generator's stream: threads change the order of the
    # blocks, never their contents (a guard: numpy's Generator also holds a lock per call)
    gs = gk.GumbelSoftmax(rng=6)
    x = np.zeros((16, 33))
    blocks: list[bytes] = []

    def draw() -> None:
        for _ in range(100):
            blocks.append(gs.sample_noise(x).tobytes())

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=draw) for _ in range(N_THREADS)]
        [t.start() for t in threads]
        [t.join(timeout=60) for t in threads]
    finally:
        sys.setswitchinterval(old)
    ref = np.random.default_rng(6)
    stream = {ref.gumbel(size=x.shape).tobytes() for _ in range(100 * N_THREADS)}
    assert len(blocks) == 100 * N_THREADS and set(blocks) == stream
