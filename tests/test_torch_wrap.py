"""gradkit.torch.wrap: autograd (gradcheck, gradgradcheck), forward mode, heads, saved tensors, the numba path,
torch.compile, CUDA (where a GPU is present) and input errors."""

from __future__ import annotations

import threading
import time
import warnings
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradkit as gk
import gradkit.torch as gkt
from gradkit import kernels
from gradkit.check import random_target
from gradkit.losses.classification import ClassLoss

from .cases import ACTIVATIONS, ActCase

#: every row of the activation table, Gumbel-softmax included (its noise held fixed with ``frozen()``)
#: (``hard=True`` is left out of gradcheck: its one-hot output is piecewise constant and its backward is by
#: design the soft sample's, the straight-through estimator; test_gumbel_backward_uses_its_own_forward_noise)
ROWS = [*ACTIVATIONS, ActCase("gumbel_softmax", {"temperature": 0.7, "rng": 0}, along_axis=True),
        ActCase("entmax_bisect", {"alpha": 1.3}, along_axis=True)]  # its torch checks: tests/test_entmax_bisect.py


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(key.encode()))


def _tensor(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=requires_grad)


def test_every_name_has_a_row():
    assert {case.name for case in ROWS} == set(gk.activations.names())


# -- activations: gradcheck and gradgradcheck for every row ---------------------------------------
@pytest.mark.parametrize("case", ROWS, ids=[c.id for c in ROWS])
def test_gradcheck_and_gradgradcheck(case):
    rng = _rng(case.id)
    for axis, shape, masked in ((-1, (3, 5), False), (0, (4, 3), case.along_axis)):
        act = case.make(axis=axis)
        module = gkt.wrap(act)
        x = _tensor(case.sample(rng, shape), requires_grad=True)
        where = torch.tensor(rng.uniform(size=shape) < 0.75) if masked else None
        if where is not None:
            where[..., 0] = True  # (axis 0: the first column) at least one live entry per slice
            where[0] = True

        def f(x, act=act, module=module, where=where):
            if where is None:
                return module(x)
            # masked outputs of the log maps are -inf, where finite differences are NaN: compare the live ones
            return torch.where(where, module(x, where=where), 0.0)

        if act.stochastic:
            f(x)  # draws the noise that frozen() then holds fixed
            with act.frozen():
                assert torch.autograd.gradcheck(f, (x,))
                assert torch.autograd.gradgradcheck(f, (x,))
        else:
            assert torch.autograd.gradcheck(f, (x,))
            assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("case", [c for c in ROWS if not c.make().stochastic], ids=lambda c: c.id)
def test_forward_backward_equal_gradkit(case):
    """Values and gradients through wrap are gradkit's own (NumPy) forward and VJP; random upstream."""
    rng = _rng("eq" + case.id)
    act = case.make()
    x = case.sample(rng, (4, 6))
    g = rng.standard_normal((4, 6))
    xt = _tensor(x, requires_grad=True)
    y = gkt.wrap(act)(xt)
    (gx,) = torch.autograd.grad(y, xt, _tensor(g))
    np.testing.assert_allclose(y.detach().numpy(), act(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gx.numpy(), act.vjp(x, g), rtol=1e-12, atol=1e-14)


# -- forward mode -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "entmax15", "sparsemax", "gelu", "taylor_softmax"])
def test_forward_mode_is_gradkit_jvp(name):
    import torch.autograd.forward_ad as fwad

    rng = _rng("jvp" + name)
    act = gk.activations.get(name)
    module = gkt.wrap(act)
    x, v = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    expected = act.jvp(x, v)
    _, jv = torch.func.jvp(module, (_tensor(x),), (_tensor(v),))
    np.testing.assert_allclose(jv.numpy(), expected, rtol=1e-12, atol=1e-14)
    with fwad.dual_level():
        out = module(fwad.make_dual(_tensor(x), _tensor(v)))
        np.testing.assert_allclose(fwad.unpack_dual(out).tangent.numpy(), expected, rtol=1e-12, atol=1e-14)
    # the whole Jacobian both ways: forward mode (jvp) and reverse mode (vjp) agree
    jf = torch.func.jacfwd(module)(_tensor(x))
    jr = torch.func.jacrev(module)(_tensor(x))
    np.testing.assert_allclose(jf.numpy(), jr.numpy(), rtol=1e-12, atol=1e-14)


def test_torch_func_vmap_and_grad():
    rng = _rng("vmap")
    act = gk.Entmax15()
    module = gkt.wrap(act)
    x, r = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    np.testing.assert_allclose(torch.func.vmap(module)(_tensor(x)).numpy(), act(x), rtol=1e-12, atol=1e-14)
    grad = torch.func.grad(lambda x: (module(x) * _tensor(r)).sum())(_tensor(x))
    np.testing.assert_allclose(grad.numpy(), act.vjp(x, r), rtol=1e-12, atol=1e-14)


# -- heads ------------------------------------------------------------------------------------------
#: logits per activation that keep the activation's output inside the loss's smooth region
LOGIT_RANGE = {"relu": (0.1, 2.5), "hard_sigmoid": (-2.9, 2.9)}


def _pairs():
    for case in ACTIVATIONS:
        for loss_name in gk.losses.names():
            try:
                gk.compose(case.make(), gk.losses.get(loss_name))
            except ValueError:
                continue  # not composable: gk.compose refuses the pair
            yield pytest.param(case, loss_name, id=f"{case.id}-{loss_name}")


def _head_inputs(case, loss_name, reduction, labels):
    rng = _rng(f"{case.id}-{loss_name}-{reduction}-{labels}")
    lo, hi = LOGIT_RANGE.get(case.name, (-2.5, 2.5))
    z = rng.uniform(lo, hi, (4, 5))
    for k in case.kinks:
        z = np.where(np.abs(z - k) < 1e-3, k + 0.1, z)
    loss = gk.losses.get(loss_name, reduction=reduction)
    target = random_target(loss, z.shape, rng, labels=labels)
    return rng, z, loss, target


@pytest.mark.parametrize("case,loss_name", list(_pairs()))
def test_head_backward_is_head_grad(case, loss_name):
    """Every composable pair, every reduction, labels and per-class targets: the loss is the head's value,
    the backward with a random upstream is head.vjp (for a scalar loss: that scalar times head.grad)."""
    for reduction in ("mean", "sum", "none"):
        for labels in (False, True) if issubclass(type(gk.losses.get(loss_name)), ClassLoss) else (False,):
            rng, z, loss, target = _head_inputs(case, loss_name, reduction, labels)
            head = gk.compose(case.make(), loss)
            zt = _tensor(z, requires_grad=True)
            value = gkt.wrap(head)(zt, torch.as_tensor(target))
            expected_value, expected_grad = head.value_and_grad(z, target)
            np.testing.assert_allclose(value.detach().numpy(), expected_value, rtol=1e-12, atol=1e-14)
            g = rng.standard_normal(tuple(value.shape))
            (gz,) = torch.autograd.grad(value, zt, _tensor(g))
            expected = head.vjp(z, target, g)
            np.testing.assert_allclose(gz.numpy(), expected, rtol=1e-12, atol=1e-14)
            if reduction != "none":
                np.testing.assert_allclose(gz.numpy(), g * expected_grad, rtol=1e-12, atol=1e-14)


def _covering_pairs():
    """A subset of the pairs in which every activation row and every loss appears, the fused pairs
    (softmax + cross_entropy, log_softmax + nll, sigmoid + bce) and the Fenchel–Young heads included:
    gradgradcheck of all ~300 pairs would cost ~30 s. Sparse maps into log losses are left out (exact
    zeros make the loss infinite)."""
    pairs = [p for p in _pairs() if not (p.values[0].name in ("sparsemax", "entmax15")
                                         and p.values[1] in ("cross_entropy", "kl_div"))]
    special = {("softmax", "cross_entropy"), ("log_softmax", "nll"), ("sigmoid", "bce"),
               ("sparsemax", "sparsemax_loss"), ("entmax15", "entmax15_loss")}
    chosen, seen_cases, seen_losses = [], set(), set()
    for i, p in enumerate(pairs):
        case, loss_name = p.values
        if ((case.name, loss_name) in special and not case.kwargs) or case.id not in seen_cases \
                or loss_name not in seen_losses:
            chosen.append(p)
            seen_cases.add(case.id)
            seen_losses.add(loss_name)
    return chosen


def test_covering_pairs_cover():
    chosen = _covering_pairs()
    assert {p.values[0].id for p in chosen} == {c.id for c in ACTIVATIONS}
    assert {p.values[1] for p in chosen} == set(gk.losses.names())


@pytest.mark.parametrize("case,loss_name", _covering_pairs())
def test_head_gradcheck_and_gradgradcheck(case, loss_name):
    _, z, loss, target = _head_inputs(case, loss_name, "mean", False)
    module = gkt.wrap(gk.compose(case.make(), loss))
    tt = torch.as_tensor(target)
    zt = _tensor(z, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: module(z, tt), (zt,))
    assert torch.autograd.gradgradcheck(lambda z: module(z, tt), (zt,))


def test_head_reduction_none_gradcheck_and_mask():
    rng = _rng("head-none")
    z = rng.standard_normal((3, 5))
    labels = torch.as_tensor(rng.integers(0, 5, 3))
    where = torch.tensor(rng.uniform(size=(3, 5)) < 0.7)
    where[:, 0] = True
    head = gk.compose(gk.LogSoftmax(), gk.NLLLoss(reduction="none"))
    module = gkt.wrap(head)
    zt = _tensor(z, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: module(z, labels, where=where), (zt,))
    assert torch.autograd.gradgradcheck(lambda z: module(z, labels, where=where), (zt,))
    v = rng.standard_normal((3, 5))
    _, jv = torch.func.jvp(lambda z: module(z, labels, where=where), (_tensor(z),), (_tensor(v),))
    np.testing.assert_allclose(jv.numpy(), head.jvp(z, labels.numpy(), v, where=where.numpy()), rtol=1e-12)


def test_head_target_gets_no_gradient():
    rng = _rng("target")
    z = _tensor(rng.standard_normal((3, 4)), requires_grad=True)
    t = _tensor(rng.uniform(size=(3, 4)), requires_grad=True)
    value = gkt.wrap(gk.compose(gk.Softmax(), gk.CrossEntropyLoss()))(z, t)
    gz, gt = torch.autograd.grad(value, (z, t), allow_unused=True)
    assert gz is not None and gt is None


# -- what is saved for backward ------------------------------------------------------------------------
def _saved(module, x, *args):
    packed = []

    def pack(t):
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x, *args)
    return y, packed


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sparsemax", "entmax15", "entmax_bisect"])
def test_saves_only_y(name):
    x = torch.randn(64, 32, requires_grad=True)
    y, packed = _saved(gkt.wrap(gk.activations.get(name)), x)
    assert len(packed) == 1
    assert packed[0] is y or packed[0].data_ptr() == y.data_ptr()
    assert packed[0].shape == y.shape


def test_elementwise_saves_only_x():
    x = torch.randn(64, 32, requires_grad=True)
    _, packed = _saved(gkt.wrap(gk.GELU()), x)
    assert len(packed) == 1 and packed[0].data_ptr() == x.data_ptr()


# -- the NumPy / numba path ------------------------------------------------------------------------------
def test_cpu_tensors_use_the_kernels_zero_copy(monkeypatch):
    """CPU float32 tensors go through the numba kernels on shared memory (forward and backward); under
    create_graph the backward is the portable torch code; both give the same numbers as the portable path."""
    from gradkit.kernels import softmax as fast

    calls = {"forward": 0, "vjp": 0}
    seen = []

    def spy(name):
        original = getattr(fast, name)

        def wrapped(a, *args, **kwargs):
            calls[name] += 1
            seen.append(a)
            return original(a, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(fast, "forward", spy("forward"))
    monkeypatch.setattr(fast, "vjp", spy("vjp"))
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(200, 64, generator=gen)
    x = base.t().requires_grad_()  # strided: a view, not contiguous
    r = torch.randn(64, 200, generator=gen)
    module = gkt.wrap(gk.Softmax())
    y = module(x)
    (gx,) = torch.autograd.grad(y, x, r)
    on = kernels.available()
    assert calls == ({"forward": 1, "vjp": 1} if on else {"forward": 0, "vjp": 0})
    if on:  # the kernel read the tensor's own memory
        assert seen[0].ctypes.data == base.data_ptr() and not seen[0].flags.c_contiguous
    # an upstream that is a broadcast view (the backward of .sum()) goes through as well
    (g_sum,) = torch.autograd.grad(module(x).sum(), x)
    # create_graph: the backward is recorded, so the portable torch code runs (no kernel call)
    before = dict(calls)
    (gx_graph,) = torch.autograd.grad(module(x), x, r, create_graph=True)
    assert gx_graph.requires_grad and calls["vjp"] == before["vjp"]
    with kernels.disabled():
        y_port = module(x)
        (gx_port,) = torch.autograd.grad(y_port, x, r)
        (g_sum_port,) = torch.autograd.grad(module(x).sum(), x)
    torch.testing.assert_close(y, y_port, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gx, gx_port, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gx_graph, gx_port, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g_sum, g_sum_port, rtol=1e-5, atol=1e-6)


def test_identity_output_is_not_the_input():
    x = torch.randn(3, 4)
    y = gkt.wrap(gk.Identity())(x)
    y.add_(1.0)
    assert not torch.equal(x, y)


def test_half_and_integer_inputs():
    x = torch.randn(4, 6, dtype=torch.float16, requires_grad=True)
    y = gkt.wrap(gk.Softmax())(x)
    assert y.dtype == torch.float16
    (gx,) = torch.autograd.grad(y, x, torch.randn(4, 6, dtype=torch.float16))
    assert gx.dtype == torch.float16 and bool(torch.isfinite(gx).all())
    yi = gkt.wrap(gk.Softmax())(torch.arange(6).reshape(2, 3))
    assert yi.dtype == torch.float64
    np.testing.assert_allclose(yi.numpy(), gk.Softmax()(np.arange(6).reshape(2, 3)), rtol=1e-15)


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_backward_uses_its_own_forward_noise(hard):
    """The noise is saved with the graph: a later forward pass (or another thread's) does not change
    the backward of an earlier one. With hard=True the backward is the soft sample's (straight-through)."""
    act = gk.GumbelSoftmax(rng=5, hard=hard)
    module = gkt.wrap(act)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    r = torch.randn(3, 6, dtype=torch.float64)
    y = module(x)
    noise = act.noise
    t = threading.Thread(target=lambda: module(x))
    t.start()
    t.join(timeout=60)
    module(x)  # new noise in this thread too
    (gx,) = torch.autograd.grad(y, x, r)
    expected = act.vjp(x.detach().numpy(), r.numpy(), noise=np.asarray(noise))
    if hard:
        assert set(np.unique(y.detach().numpy())) <= {0.0, 1.0}
    np.testing.assert_allclose(gx.numpy(), expected, rtol=1e-12, atol=1e-14)


# -- torch.compile -----------------------------------------------------------------------------------
def test_compile_fullgraph_four():
    """torch.compile(wrap(act), fullgraph=True): forward and backward traced without a graph break, equal to
    eager (one shape, dynamic=False). Softmax goes through the default inductor backend; the other three
    through "aot_eager" (dynamo and AOT autograd trace forward and backward exactly as for inductor, minus
    inductor's code generation, ~3 s each on 2 cores: all four through inductor pass as well)."""
    gen = torch.Generator().manual_seed(11)
    x0 = torch.randn(8, 16, generator=gen)
    r = torch.randn(8, 16, generator=gen)
    where = torch.rand(8, 16, generator=gen) < 0.8
    where[:, 0] = True
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dynamo notes array_api_compat's lru_cache helpers
        for act, backend in ((gk.Softmax(), "inductor"), (gk.LogSoftmax(), "aot_eager"),
                             (gk.Sparsemax(), "aot_eager"), (gk.Entmax15(), "aot_eager")):
            module = gkt.wrap(act)
            compiled = torch.compile(module, fullgraph=True, dynamic=False, backend=backend)
            x = x0.clone().requires_grad_()
            y = compiled(x, where)
            (gx,) = torch.autograd.grad(y, x, torch.where(where, r, 0.0))
            xe = x0.clone().requires_grad_()
            ye = module(xe, where)
            (ge,) = torch.autograd.grad(ye, xe, torch.where(where, r, 0.0))
            torch.testing.assert_close(y, ye, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(gx, ge, rtol=1e-5, atol=1e-6)
    assert time.perf_counter() - start < 300


# -- CUDA -------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sparsemax", "entmax15", "gelu", "spherical_softmax"])
def test_cuda_tensors(name):
    act = gk.activations.get(name)
    module = gkt.wrap(act)
    x = torch.randn(5, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    r = torch.randn(5, 7, dtype=torch.float64, device="cuda")
    y = module(x)
    assert y.device.type == "cuda"
    (gx,) = torch.autograd.grad(y, x, r)
    xc = x.detach().cpu()
    np.testing.assert_allclose(y.detach().cpu().numpy(), act(xc.numpy()), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx.cpu().numpy(), act.vjp(xc.numpy(), r.cpu().numpy()), rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(module, (x,))
    assert torch.autograd.gradgradcheck(module, (x,))
    head = gkt.wrap(gk.compose(gk.Softmax(), gk.CrossEntropyLoss()))
    z = torch.randn(5, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    labels = torch.randint(0, 7, (5,), device="cuda")
    assert torch.autograd.gradcheck(lambda z: head(z, labels), (z,))


# -- errors and repr -------------------------------------------------------------------------------------
def test_wrap_refuses_other_objects():
    with pytest.raises(TypeError, match=r"obj must be a gradkit Activation.*got 'softmax' \(str\)"):
        gkt.wrap("softmax")
    with pytest.raises(TypeError, match="got MSELoss"):
        gkt.wrap(gk.MSELoss())


def test_input_errors():
    sm = gkt.wrap(gk.Softmax())
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        sm([1.0, 2.0])
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        sm(np.ones(3))
    with pytest.raises(TypeError, match="x must have a real floating or integer dtype, got torch.bool"):
        sm(torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="where must be a boolean mask, got dtype torch.float32"):
        sm(torch.ones(2, 3), where=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"where must broadcast to the shape of x, \(2, 3\); got \(4,\)"):
        sm(torch.ones(2, 3), where=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"axis must be in \[-1, 0\].*got 2"):
        gkt.wrap(gk.Softmax(axis=2))(torch.ones(3))
    with pytest.raises(ValueError, match="x must have at least one entry along axis=-1"):
        sm(torch.ones(2, 0))
    with pytest.raises(TypeError, match="GELU does not take where="):
        gkt.wrap(gk.GELU())(torch.ones(3), where=torch.ones(3, dtype=torch.bool))
    head = gkt.wrap(gk.compose(gk.Softmax(), gk.CrossEntropyLoss()))
    with pytest.raises(TypeError, match="target must be a torch.Tensor, got list"):
        head(torch.ones(2, 3), [0, 1])
    with pytest.raises(ValueError, match="label"):
        head(torch.ones(2, 3), torch.tensor([0, 7]))


def test_repr_and_module():
    module = gkt.wrap(gk.Sparsemax(axis=0))
    assert isinstance(module, torch.nn.Module)
    assert repr(module) == "GradkitActivation(Sparsemax(axis=0, method='sort', n_iter=50))"
    assert module.activation == gk.Sparsemax(axis=0)
    head = gkt.wrap(gk.compose("softmax", "cross_entropy"))
    assert repr(head).startswith("GradkitHead(compose(Softmax(")
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), gkt.wrap(gk.Entmax15()))
    assert net(torch.randn(2, 4)).shape == (2, 3)


def test_recorded_head_backward_warns_nothing():
    """A recorded backward (create_graph) passes an upstream that requires grad: no torch.asarray warning."""
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    head = gkt.wrap(gk.compose(gk.Sparsemax(), gk.MSELoss()))
    t = torch.rand(3, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        g = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
        (gz,) = torch.autograd.grad(head(z, t), z, g, create_graph=True)
        hz, hg = torch.autograd.grad((gz * torch.randn(3, 4, dtype=torch.float64)).sum(), (z, g))
    assert gz.shape == hz.shape == z.shape and hg.shape == ()


def test_torch_func_over_heads():
    """torch.func.grad / vmap over a wrapped head: gradkit's traced path (the one whose overflow fallback
    read the NumPy-only finfo().maxexp) runs on torch tensors."""
    rng = _rng("func-heads")
    for head in (gk.compose(gk.Sparsemax(), gk.MSELoss()), gk.compose(gk.Softmax(), gk.KLDivLoss()),
                 gk.compose(gk.Entmax15(), gk.Entmax15Loss())):
        module = gkt.wrap(head)
        z, t = rng.standard_normal((4, 5)), rng.uniform(size=(4, 5))
        grad = torch.func.grad(lambda z, module=module, t=t: module(z, _tensor(t)))(_tensor(z))
        np.testing.assert_allclose(grad.numpy(), head.grad(z, t), rtol=1e-12, atol=1e-14)
        per_row = torch.func.vmap(lambda z, t, module=module: module(z[None], t[None]))(_tensor(z), _tensor(t))
        np.testing.assert_allclose(per_row.numpy(), [head(z[i:i + 1], t[i:i + 1]) for i in range(4)], rtol=1e-12)


def test_compile_fullgraph_heads():
    """Heads trace whole too (fused path, generic chain rule): no np.errstate under tracing."""
    gen = torch.Generator().manual_seed(12)
    z0 = torch.randn(6, 5, generator=gen)
    labels = torch.randint(0, 5, (6,), generator=gen)
    probs = torch.rand(6, 5, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # (the fused, the generic and the Fenchel–Young path all trace; the test keeps two, ~5 s on 2 cores)
        for head, target in ((gk.compose(gk.Softmax(), gk.CrossEntropyLoss()), labels),
                             (gk.compose(gk.Sparsemax(), gk.MSELoss()), probs)):
            module = gkt.wrap(head)
            compiled = torch.compile(module, fullgraph=True, dynamic=False, backend="aot_eager")
            z = z0.clone().requires_grad_()
            (gz,) = torch.autograd.grad(compiled(z, target), z)
            value, grad = head.value_and_grad(z0.numpy(), target.numpy())
            np.testing.assert_allclose(compiled(z0, target).item(), value, rtol=1e-5)
            np.testing.assert_allclose(gz.numpy(), grad, rtol=1e-5, atol=1e-6)


def test_unusual_tensors():
    """Inference mode, a broadcast (stride-0) input, a lazily negated view: same values as torch's softmax."""
    module = gkt.wrap(gk.Softmax())
    with torch.inference_mode():
        x = torch.randn(4, 5)
        torch.testing.assert_close(module(x), torch.softmax(x, -1))
    x = torch.randn(1, 5, requires_grad=True)
    xe = x.expand(4, 5)
    r = torch.randn(4, 5)
    (gx,) = torch.autograd.grad(module(xe), x, r)
    (ge,) = torch.autograd.grad(torch.softmax(xe, -1), x, r)
    torch.testing.assert_close(gx, ge)
    xn = torch._neg_view(torch.randn(3, 4))
    assert xn.is_neg()
    torch.testing.assert_close(module(xn), torch.softmax(xn.clone(), -1))
