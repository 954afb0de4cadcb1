"""WTA-CRS sampled weight gradients: unbiased, sampled for real, cheaper to keep, replayable, traceable."""

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from recompiler.errors import SolverOptionError
from recompiler.lowerings.wta_crs import sample_count, sampled_linear, wta_crs_weight_grad

SAMPLE = torch.ops.recompiler.wta_crs_sample


def _skewed(N=64, D_in=16, D_out=8, dtype=torch.float64, seed=0):
    """Rows of x scaled log-uniformly over 3 decades; a fixed output gradient."""
    gen = torch.Generator().manual_seed(seed)
    scales = 10 ** (-3 * torch.rand(N, generator=gen, dtype=dtype))
    x = torch.randn(N, D_in, generator=gen, dtype=dtype) * scales[:, None]
    g = torch.randn(N, D_out, generator=gen, dtype=dtype)
    return x, g


def _estimates(x, g, ratio, seeds):
    """One WTA-CRS ∇W estimate per seed, stacked [M, D_out, D_in] (one batched matmul)."""
    rows, index = zip(*(SAMPLE(x, ratio, torch.tensor(s)) for s in seeds))
    rows, index = torch.stack(rows), torch.stack(index)
    return g[index].transpose(1, 2) @ rows


def _within_4se(estimates, exact):
    mean, se = estimates.mean(0), estimates.std(0) / estimates.shape[0] ** 0.5
    return ((mean - exact).abs() <= 4 * se).double().mean().item()


def test_sample_count():
    assert [sample_count(100, r) for r in (0.3, 0.1, 0.07, 1.0, 0.001)] == [30, 10, 7, 100, 1]
    assert sample_count(10, 0.25) == 3 and sample_count(1, 0.3) == 1 and sample_count(0, 0.3) == 0


def test_unbiased_on_skewed_rows(one_thread):
    x, g = _skewed()
    exact = g.t() @ x
    estimates = _estimates(x, g, 0.3, range(3000))
    assert _within_4se(estimates, exact) >= 0.99
    # The criterion has power: a 2% bias fails it.
    assert _within_4se(estimates * 1.02, exact) < 0.99


@pytest.fixture
def one_thread():
    """Thousands of tiny matmuls: intra-op threads only contend on a loaded box (5 ms per call)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_unbiased_through_sampled_linear(one_thread):
    x, g = _skewed(N=40, D_in=6, D_out=4)
    w = torch.randn(4, 6, dtype=x.dtype, requires_grad=True)
    gen = torch.Generator().manual_seed(1)
    grads = []
    for _ in range(2000):
        (dw,) = torch.autograd.grad(sampled_linear(x, w, ratio=0.1, generator=gen), [w], g)
        grads.append(dw)
    assert _within_4se(torch.stack(grads), g.t() @ x) >= 0.99


def test_single_estimate_is_not_exact():
    x, g = _skewed()
    w = torch.randn(8, 16, dtype=x.dtype, requires_grad=True)
    (dw,) = torch.autograd.grad(sampled_linear(x, w, ratio=0.3), [w], g)
    exact = g.t() @ x
    assert (dw - exact).norm() > 1e-3 * exact.norm()


@pytest.mark.parametrize("shape", [(64, 16), (3, 20, 16)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_input_and_bias_gradients_exact(shape, with_bias):
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(8, 16, requires_grad=True)
    b = torch.randn(8, requires_grad=True) if with_bias else None
    leaves = [x] + ([b] if with_bias else [])
    g = torch.randn(*shape[:-1], 8)
    y_ref = F.linear(x, w, b)
    ref = torch.autograd.grad(y_ref, leaves, g)
    y = sampled_linear(x, w, b, ratio=0.3)
    got = torch.autograd.grad(y, leaves, g)
    assert torch.equal(y, y_ref)
    for a, r in zip(got, ref):
        assert torch.allclose(a, r, rtol=1e-6, atol=1e-6)


def test_variance_below_uniform_row_sampling(one_thread):
    x, g = _skewed()
    exact, (N, k) = g.t() @ x, (x.shape[0], sample_count(x.shape[0], 0.3))
    wta = _estimates(x, g, 0.3, range(2000))
    idx = torch.randint(N, (2000, k), generator=torch.Generator().manual_seed(0))
    uniform = (N / k) * g[idx].transpose(1, 2) @ x[idx]
    mse = lambda e: ((e - exact) ** 2).sum((1, 2)).mean().item()  # noqa: E731
    assert mse(uniform) > 0        # the uniform estimator is itself random here
    assert mse(wta) < 0.25 * mse(uniform)     # measured ≈ 0.06


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_saves_only_sampled_rows_and_indices(dtype):
    x = torch.randn(4, 25, 16, dtype=dtype, requires_grad=True)
    w = torch.randn(8, 16, dtype=dtype, requires_grad=True)
    b = torch.zeros(8, dtype=dtype, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = sampled_linear(x, w, b, ratio=0.3)
    k = sample_count(100, 0.3)
    assert not any(t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() for t in saved)
    # Besides the weight (a parameter, held anyway) only k rows and k indices are kept.
    extra = [t for t in saved if t is not w]
    assert len(extra) == len(saved) - 1
    assert sum(t.numel() * t.element_size() for t in extra) == k * 16 * x.element_size() + k * 8
    y.sum().backward()
    assert w.grad.shape == w.shape and x.grad.shape == x.shape


def test_deterministic_given_seed():
    x, _ = _skewed()
    a, b = SAMPLE(x, 0.3, torch.tensor(7)), SAMPLE(x, 0.3, torch.tensor(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    others = [SAMPLE(x, 0.3, torch.tensor(s))[1] for s in range(8, 12)]
    assert not all(torch.equal(a[1], o) for o in others)
    # A recomputation of the whole layer from the same generator state gives the same gradient.
    w = torch.randn(8, 16, dtype=x.dtype, requires_grad=True)
    grads = []
    for _ in range(2):
        torch.manual_seed(3)
        grads.append(torch.autograd.grad(sampled_linear(x, w, ratio=0.3).sum(), [w])[0])
    assert torch.equal(*grads)
    torch.manual_seed(4)
    assert not torch.equal(grads[0], torch.autograd.grad(sampled_linear(x, w, ratio=0.3).sum(), [w])[0])


def test_winners_are_kept_unscaled_and_zero_rows_never_drawn():
    x, _ = _skewed()
    x[5] = 0
    order = torch.argsort(x.norm(dim=1), descending=True)
    for s in range(50):
        rows, index = SAMPLE(x, 0.3, torch.tensor(s))
        assert 5 not in index.tolist()
        # The rows kept with scale 1 are exactly the highest-norm rows (the winner set C).
        unscaled = (rows == x[index]).all(1)
        n = int(unscaled.sum())
        assert 0 < n < len(index)
        assert set(index[unscaled].tolist()) == set(order[:n].tolist())


def test_ratio_one_is_exact():
    x, g = _skewed(N=20)
    for xx in (x, torch.ones_like(x)):            # distinct norms, and all norms tied
        rows, index = SAMPLE(xx, 1.0, torch.tensor(0))
        assert rows.shape == xx.shape
        assert torch.allclose(wta_crs_weight_grad(g, rows, index), g.t() @ xx, rtol=1e-12, atol=1e-12)


def test_zero_rows_and_empty_rest_are_exact():
    x, g = _skewed(N=10)
    x[2:] = 0                                      # the winners hold all the mass
    rows, index = SAMPLE(x, 0.3, torch.tensor(0))
    assert rows.shape == (3, 16) and torch.isfinite(rows).all()
    assert torch.allclose(wta_crs_weight_grad(g, rows, index), g.t() @ x, rtol=1e-12, atol=1e-12)
    zero = torch.zeros(10, 16, dtype=x.dtype)      # no mass at all: uniform, estimate 0
    rows, index = SAMPLE(zero, 0.3, torch.tensor(0))
    assert torch.equal(wta_crs_weight_grad(g, rows, index), torch.zeros(8, 16, dtype=x.dtype))


def test_single_row():
    x, g = _skewed(N=1)
    rows, index = SAMPLE(x, 0.1, torch.tensor(0))
    assert index.tolist() == [0] and torch.equal(rows, x)
    rows, index = SAMPLE(torch.zeros_like(x), 0.1, torch.tensor(0))
    assert index.tolist() == [0] and torch.equal(rows, torch.zeros_like(x))


@pytest.mark.parametrize("ratio", [0.0, -0.3, 1.5, float("nan")])
def test_bad_ratio_raises(ratio):
    x = torch.randn(10, 4)
    with pytest.raises(SolverOptionError, match="ratio"):
        sample_count(10, ratio)
    with pytest.raises(SolverOptionError, match="ratio"):
        sampled_linear(x, torch.randn(3, 4), ratio=ratio)
    with pytest.raises(SolverOptionError, match="ratio"):
        SAMPLE(x, ratio, torch.tensor(0))


def test_fake_tensors_give_shapes():
    with FakeTensorMode():
        x = torch.empty(50, 12, dtype=torch.bfloat16)
        rows, index = SAMPLE(x, 0.3, torch.ops.recompiler.draw_seed())
        assert rows.shape == (15, 12) and rows.dtype == torch.bfloat16
        assert index.shape == (15,) and index.dtype == torch.int64
    torch.library.opcheck(SAMPLE, (torch.randn(50, 12), 0.3, torch.tensor(3)))


def test_under_torch_compile():
    x = torch.randn(2, 30, 16, requires_grad=True)
    w = torch.randn(8, 16, requires_grad=True)
    b = torch.randn(8, requires_grad=True)

    def step(x, w, b):
        return sampled_linear(x, w, b, ratio=0.3).square().sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    grads = []
    for fn in (step, compiled):
        torch.manual_seed(0)                       # the same seed draw: the same rows
        grads.append(torch.autograd.grad(fn(x, w, b), [x, w, b]))
    for a, r in zip(*grads):
        assert torch.allclose(a, r, rtol=1e-5, atol=1e-5)
    op = torch.compile(lambda x, s: SAMPLE(x, 0.3, s), backend="aot_eager", fullgraph=True)
    got, ref = op(x.detach()[0], torch.tensor(5)), SAMPLE(x.detach()[0], 0.3, torch.tensor(5))
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
