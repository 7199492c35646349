"""gradkit.torch.wrap and gradkit's portable path on torch tensors: dtypes (float16, bfloat16, float32, float64 in
any combination of logits and target), no host reads (PyTorch's ``meta`` device, which has shapes and dtypes but
no values), and torch.compile of many wrapped modules in one process without hitting dynamo's recompile limit."""

from __future__ import annotations

import contextlib
import pickle
import warnings
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradkit as gk
import gradkit.torch as gkt
from gradkit.check import random_target
from gradkit.losses.classification import ClassLoss

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: the target dtype of the "different" case, per logits dtype: float32 logits with a bfloat16 target is the
#: autocast case (the target of a lower precision than the computation)
OTHER = {torch.float16: torch.bfloat16, torch.bfloat16: torch.float16, torch.float32: torch.bfloat16,
         torch.float64: torch.float32}
#: logits that keep the activation's output inside the loss's smooth region (relu: away from its kink at 0;
#: hard_sigmoid: inside its linear part)
LOGIT_RANGE = {"relu": (0.1, 2.5), "hard_sigmoid": (-2.9, 2.9)}
#: where finite differences are meaningless: samples keep 0.05 away (rounding to float16/bfloat16 moves them)
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "hard_sigmoid": (-3.0, 3.0)}


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(key.encode()))


def _logits(name: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    lo, hi = LOGIT_RANGE.get(name, (-2.5, 2.5))
    z = rng.uniform(lo, hi, shape)
    for k in KINKS.get(name, ()):
        z = np.where(np.abs(z - k) < 0.05, k + 0.1, z)
    return z


def _heads():
    for a in gk.activations.builtin_names():
        for loss_name in gk.losses.builtin_names():
            try:
                head = gk.compose(a, loss_name)
            except ValueError:
                continue  # not composable: gk.compose refuses the pair
            yield a, loss_name, head


HEADS = list(_heads())
#: exact zeros of a sparse map into a loss that takes their log: the loss clamps the log at the dtype's smallest
#: normal (float32 for float16/bfloat16 logits), so its value depends on the dtype by design (-log of 1.2e-38
#: against -log of 2.2e-308): these heads are run in the dtype test for dtype and shape only
CLAMPED = {(a, b) for a in ("sparsemax", "entmax15", "entmax_bisect") for b in ("cross_entropy", "kl_div", "bce")}


def _close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """``got`` (in ``dtype``) against the float64 result on the same (rounded) inputs: a few units of the
    dtype's rounding, relative to the result's scale (float32 is the computation of float16/bfloat16)."""
    eps = torch.finfo(dtype).eps
    factor = 1e3 if dtype == torch.float64 else 64.0 if dtype == torch.float32 else 8.0
    scale = float(expected[torch.isfinite(expected)].abs().max()) if bool(torch.isfinite(expected).any()) else 1.0
    torch.testing.assert_close(got.double(), expected, rtol=factor * eps, atol=factor * eps * max(1.0, scale),
                               equal_nan=True, msg=lambda m: f"{what}: {m}")


# -- dtypes ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", gk.activations.builtin_names())
def test_activation_dtypes(name):
    """Every activation, every dtype: output and gradient in the input's dtype, close to float64 on the same
    rounded input and upstream (random)."""
    rng = _rng("dtype-" + name)
    act = gk.activations.get(name)
    module = gkt.wrap(act)
    x64, g64 = _logits(name, rng, (3, 5)), rng.standard_normal((3, 5))
    if act.stochastic:
        module(torch.as_tensor(x64))  # draws the noise frozen() then holds fixed
    for dtype in DTYPES:
        x = torch.as_tensor(x64).to(dtype).requires_grad_()
        g = torch.as_tensor(g64).to(dtype)
        xr = x.detach().double().requires_grad_()
        if act.stochastic:
            with act.frozen():
                y, yr = module(x), module(xr)
        else:
            y, yr = module(x), module(xr)
        (gx,) = torch.autograd.grad(y, x, g)
        (gr,) = torch.autograd.grad(yr, xr, g.double())
        assert y.dtype == dtype and gx.dtype == dtype, (dtype, y.dtype, gx.dtype)
        _close(y.detach(), yr.detach(), dtype, f"{name} {dtype} forward")
        _close(gx, gr, dtype, f"{name} {dtype} gradient")


def _head_case(a: str, loss_name: str, head: gk.Composed, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    z = _logits(a, rng, (4, 5))
    return z, random_target(head.loss, z.shape, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_head_dtypes(dtype):
    """Every composable head (activation x loss of the registries), logits in ``dtype``, per-class or elementwise
    targets in the same and in another dtype: value and gradient in the logits' dtype, close to float64 on the
    same rounded inputs; a random upstream for ``reduction="none"``."""
    for a, loss_name, head in HEADS:
        rng = _rng(f"head-{a}-{loss_name}-{dtype}")
        z64, t64 = _head_case(a, loss_name, head, rng)
        for reduction in ("mean", "none"):
            h = gk.compose(a, gk.losses.get(loss_name, reduction=reduction))
            module = gkt.wrap(h)
            for tdtype in (dtype, OTHER[dtype]):
                z = torch.as_tensor(z64).to(dtype).requires_grad_()
                t = torch.as_tensor(t64).to(tdtype)
                zr = z.detach().double().requires_grad_()
                if h.activation.stochastic:  # Gumbel-softmax: one noise for both (and their backward passes)
                    h.activation(z64)
                    with h.activation.frozen():
                        value, ref = module(z, t), module(zr, t.double())
                else:
                    value, ref = module(z, t), module(zr, t.double())
                g64 = rng.standard_normal(tuple(value.shape))
                g = torch.as_tensor(g64).to(dtype)
                with h.activation.frozen() if h.activation.stochastic else contextlib.nullcontext():
                    (gz,) = torch.autograd.grad(value, z, g)
                    (gr,) = torch.autograd.grad(ref, zr, g.double())
                what = f"{a}+{loss_name} {reduction} z {dtype} target {tdtype}"
                assert value.dtype == dtype and gz.dtype == dtype, (what, value.dtype, gz.dtype)
                assert tuple(gz.shape) == tuple(z.shape)
                if (a, loss_name) in CLAMPED:
                    continue
                _close(value.detach(), ref.detach(), dtype, what + " value")
                _close(gz, gr, dtype, what + " gradient")


@pytest.mark.parametrize("tdtype", [torch.int64, torch.int32, torch.uint8], ids=str)
def test_head_labels_with_half_logits(tdtype):
    """Integer labels stay labels whatever the logits' dtype (they are not cast to the computation dtype)."""
    rng = _rng(f"labels-{tdtype}")
    z64 = rng.standard_normal((6, 5))
    labels = torch.as_tensor(rng.integers(0, 5, 6)).to(tdtype)
    for a, loss_name in (("softmax", "cross_entropy"), ("log_softmax", "nll"), ("entmax15", "entmax15_loss")):
        module = gkt.wrap(gk.compose(a, loss_name))
        ref = module(torch.as_tensor(z64), labels)
        for dtype in (torch.float16, torch.bfloat16):
            z = torch.as_tensor(z64).to(dtype).requires_grad_()
            value = module(z, labels)
            (gz,) = torch.autograd.grad(value, z)
            assert value.dtype == dtype and gz.dtype == dtype
            zr = z.detach().double().requires_grad_()
            (gr,) = torch.autograd.grad(module(zr, labels), zr)
            _close(value.detach(), module(zr, labels).detach(), dtype, f"{a}+{loss_name} {dtype}")
            _close(gz, gr, dtype, f"{a}+{loss_name} {dtype} gradient")
            assert abs(float(value.detach()) - float(ref)) < 0.05 * max(1.0, abs(float(ref)))


# -- no host reads: the meta device ------------------------------------------------------------------------
def _meta(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, requires_grad: bool = False) -> torch.Tensor:
    return torch.empty(shape, device="meta", dtype=dtype, requires_grad=requires_grad)


def _is_meta(t: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    assert t.is_meta and tuple(t.shape) == shape and t.dtype == dtype, (t.device, tuple(t.shape), t.dtype)


SHAPE = (4, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", gk.activations.builtin_names())
def test_activation_on_meta(name, dtype):
    """A meta tensor has no values: any ``.item()``, ``bool()``, ``float()``, ``.numpy()`` or ``.tolist()`` of one
    raises. Forward, VJP, JVP and Jacobian of the portable path, and forward + backward + forward mode through the
    wrapper, run on meta tensors and give meta tensors of the right shape and dtype: the device code has no host
    read (on CUDA, no synchronization)."""
    act = _activation(name)
    x, v = _meta(SHAPE, dtype), _meta(SHAPE, dtype)
    _is_meta(act(x), SHAPE, dtype)
    _is_meta(act.vjp(x, v), SHAPE, dtype)
    _is_meta(act.jvp(x, v), SHAPE, dtype)
    _is_meta(act.jacobian(x), (*SHAPE, SHAPE[-1]), dtype)
    module = gkt.wrap(act)
    xr = _meta(SHAPE, dtype, requires_grad=True)
    y = module(xr)
    _is_meta(y, SHAPE, dtype)
    (gx,) = torch.autograd.grad(y, xr, v)
    _is_meta(gx, SHAPE, dtype)
    (gg,) = torch.autograd.grad(module(xr), xr, v, create_graph=True)  # the recorded backward: portable code
    _is_meta(gg, SHAPE, dtype)
    _, tangent = torch.func.jvp(module, (x,), (v,))
    _is_meta(tangent, SHAPE, dtype)


def _meta_target(loss: gk.Loss, labels: bool) -> torch.Tensor:
    t = torch.as_tensor(random_target(loss, SHAPE, 0, labels=labels))
    return t.to("meta") if labels else t.to("meta", torch.float32)


#: the bisection's step count on meta tensors: every step is the same device code, and a meta operation costs
#: ~0.1 ms of Python (50 steps per call made the Fenchel-Young heads 15 s)
LIGHT = {"entmax_bisect": {"n_iter": 4}, "entmax_bisect_loss": {"n_iter": 4}}


def _activation(name: str) -> gk.Activation:
    return gk.activations.get(name, **LIGHT.get(name, {}))


def _loss(name: str, **kwargs) -> gk.Loss:
    return gk.losses.get(name, **LIGHT.get(name, {}), **kwargs)


def _target_kinds(loss: gk.Loss) -> tuple[bool, ...]:
    return (False, True) if isinstance(loss, ClassLoss) else (False,)


@pytest.mark.parametrize("name", gk.losses.builtin_names())
def test_loss_on_meta(name):
    """Every loss, every reduction, per-class targets and integer labels: value_and_grad, vjp and jvp of the
    portable path on meta tensors (value checks need values: skipped on meta, as under tracing)."""
    for reduction in ("mean", "sum", "none"):
        loss = _loss(name, reduction=reduction)
        for labels in _target_kinds(loss):
            t, p = _meta_target(loss, labels), _meta(SHAPE)
            value, grad = loss.value_and_grad(p, t)
            assert value.is_meta and grad.is_meta and tuple(grad.shape) == SHAPE
            _is_meta(loss.vjp(p, t, _meta(tuple(value.shape))), SHAPE, torch.float32)
            assert loss.jvp(p, t, _meta(SHAPE)).is_meta


@pytest.mark.parametrize("loss_name", gk.losses.builtin_names())
def test_heads_on_meta(loss_name):
    """Every composable head with this loss (every activation of the registry): value_and_grad and jvp of the
    portable path, forward + backward (and the recorded backward) through the wrapper, on meta tensors."""
    heads = [(a, gk.compose(_activation(a), _loss(loss_name))) for a, name, _ in HEADS if name == loss_name]
    assert heads
    for a, head in heads:
        for labels in _target_kinds(head.loss):
            t, z = _meta_target(head.loss, labels), _meta(SHAPE)
            value, grad = head.value_and_grad(z, t)
            assert value.is_meta and value.shape == () and grad.is_meta, a
            _is_meta(grad, SHAPE, torch.float32)
            assert head.jvp(z, t, _meta(SHAPE)).is_meta
            zr = _meta(SHAPE, requires_grad=True)
            module = gkt.wrap(head)
            (gz,) = torch.autograd.grad(module(zr, t), zr)
            _is_meta(gz, SHAPE, torch.float32)
            (gg,) = torch.autograd.grad(module(zr, t), zr, create_graph=True)
            _is_meta(gg, SHAPE, torch.float32)


def test_meta_test_sees_a_host_read(monkeypatch):
    """The meta tests can fail: a single ``.item()`` in the portable code makes them raise."""
    from gradkit.activations import softmax

    real = softmax.exp_and_sum

    def reading(xp, s, axis):
        e, total = real(xp, s, axis)
        total.sum().item()
        return e, total

    monkeypatch.setattr(softmax, "exp_and_sum", reading)
    with pytest.raises(RuntimeError, match="meta"):
        gk.Softmax()(_meta(SHAPE))


def test_value_checks_still_run_on_device_tensors():
    """Skipped on meta and under tracing only: labels out of range and NaN targets on an ordinary (CPU) tensor
    on the portable path (grad mode on: the NumPy path is not taken) still raise, naming the target."""
    module = gkt.wrap(gk.compose("softmax", "cross_entropy"))
    z = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match="target labels must be in"):
        module(z, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="target contains NaN"):
        gk.compose("identity", "mse")(torch.randn(3), torch.tensor([0.0, float("nan"), 1.0]))


# -- torch.compile: one cache per wrapped module --------------------------------------------------------
COMPILED = ["softmax", "log_softmax", "sparsemax", "entmax15", "relu", "gelu", "tanh", "sigmoid", "taylor_softmax",
            "spherical_softmax"]


def test_compile_many_wrapped_modules_in_one_process():
    """Ten distinct wrapped activations compiled with fullgraph=True one after the other (no dynamo reset between
    them), then relu and taylor_softmax with dynamic=True over four shapes of three ranks: none hits dynamo's
    recompile limit (8 entries per code object; a shared ``forward`` failed from the 9th), values and gradients
    (random upstream) equal eager. The "eager" backend: the cache is dynamo's, whatever the backend."""
    torch._dynamo.reset()  # a clean count for this test only, not between its compiles
    gen = torch.Generator().manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dynamo notes array_api_compat's lru_cache helpers
        runs = [(name, False, (4, 6)) for name in COMPILED]
        runs += [(name, True, shape) for name in ("relu", "taylor_softmax") for shape in ((3, 4), (5, 7), (2, 3, 5), (6,))]
        compiled = {}
        for name, dynamic, shape in runs:
            if (name, dynamic) not in compiled:
                module = gkt.wrap(gk.activations.get(name))
                compiled[name, dynamic] = module, torch.compile(module, fullgraph=True, dynamic=dynamic, backend="eager")
            module, fn = compiled[name, dynamic]
            x0, r = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
            x, xe = x0.clone().requires_grad_(), x0.clone().requires_grad_()
            y, ye = fn(x), module(xe)
            (gx,) = torch.autograd.grad(y, x, r)
            (ge,) = torch.autograd.grad(ye, xe, r)
            torch.testing.assert_close(y, ye, rtol=1e-6, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")
            torch.testing.assert_close(gx, ge, rtol=1e-6, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")
    torch._dynamo.reset()


def test_each_module_has_its_own_forward_and_pickles():
    a, b = gkt.wrap(gk.ReLU()), gkt.wrap(gk.ReLU())
    assert a.forward.__code__ is not b.forward.__code__
    assert a.forward.__doc__ == type(a).forward.__doc__
    x = torch.randn(3, 4)
    for module in (a, gkt.wrap(gk.compose("softmax", "cross_entropy"))):
        clone = pickle.loads(pickle.dumps(module))
        assert type(clone) is type(module) and clone.forward.__self__ is clone
        assert clone.forward.__code__ is not module.forward.__code__
    torch.testing.assert_close(pickle.loads(pickle.dumps(a))(x), a(x))
