"""recompiler.nn.CausalLinearAttention: SLiM's chunked prefix sums equal the cumsum form, in less memory."""

import pytest
import torch

from recompiler.nn import CausalLinearAttention
from recompiler.nn.linear_attention import FEATURE_MAPS, prefix_product_chunked, prefix_product_cumsum


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def qkv(L=50, M=4, d=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, L, n, generator=g, dtype=dtype).requires_grad_() for n in (M, M, d)]


@pytest.mark.parametrize("chunk", [1, 7, 50, 64])
def test_chunked_prefix_product_equals_cumsum_in_fp64(chunk):
    q, k, v = qkv()
    a, b = prefix_product_cumsum(q, k, v), prefix_product_chunked(q, k, v, chunk)
    assert rel(b, a) < 1e-13
    g = torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=a.dtype)
    for x, y in zip(torch.autograd.grad(b, (q, k, v), g), torch.autograd.grad(a, (q, k, v), g)):
        assert rel(x, y) < 1e-12


def grads_of(model, x):
    out = model(x)
    return out, torch.autograd.grad(out.square().sum(), list(model.parameters()))


@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
def test_module_chunked_equals_cumsum_at_4096_tokens(feature_map):
    x = torch.randn(1, 4096, 32, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(1)
    plain = CausalLinearAttention(32, 4, feature_map, form="cumsum")
    torch.manual_seed(1)
    slim = CausalLinearAttention(32, 4, feature_map, form="chunked", chunk_size=256)
    (a, ga), (b, gb) = grads_of(plain, x), grads_of(slim, x)
    assert rel(b, a) <= 1e-5
    assert all(rel(y, z) <= 1e-5 for y, z in zip(gb, ga))


@pytest.mark.parametrize("form", ["cumsum", "chunked"])
def test_causal(form):
    torch.manual_seed(0)
    m = CausalLinearAttention(16, 2, form=form, chunk_size=8)
    x = torch.randn(1, 40, 16)
    y = x.clone()
    y[:, 25:] += 1.0
    assert torch.allclose(m(x)[:, :25], m(y)[:, :25], atol=1e-6) and not torch.allclose(m(x)[:, 25:], m(y)[:, 25:])


def saved_bytes(fn, *inputs):
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sum(total)


def test_chunked_form_keeps_no_prefix_states():
    L, M, d = 2048, 16, 17
    q, k, v = qkv(L, M, d, torch.float32)
    chunked = saved_bytes(lambda *a: prefix_product_chunked(*a, 128), q, k, v)
    cumsum = saved_bytes(prefix_product_cumsum, q, k, v)
    assert chunked == 2 * 3 * (L * (2 * M + d) * 4 + M * d * 8)   # φ(q), φ(k), v and the fp64 final state
    assert cumsum >= 2 * 3 * L * M * d * 4 > 4 * chunked           # the L·M·d prefix states


def test_traces_into_an_aot_joint_graph():
    torch.manual_seed(0)
    m = CausalLinearAttention(16, 2, chunk_size=8)
    x = torch.randn(2, 32, 16)
    torch._dynamo.reset()
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(x).sum(), list(m.parameters()))
    want = torch.autograd.grad(m(x).sum(), list(m.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(got, want))


@pytest.mark.parametrize("kwargs, words", [
    (dict(dim=10, heads=3), "multiple of heads"),
    (dict(feature_map="gelu"), "feature_map must be one of"),
    (dict(form="scan"), "form must be one of"),
    (dict(chunk_size=0), "chunk_size must be at least 1"),
])
def test_bad_arguments(kwargs, words):
    args = dict(dim=16, heads=2) | kwargs
    with pytest.raises(ValueError, match=words):
        CausalLinearAttention(**args)
