"""recompiler::chunked_attention: exact against the math path, masks, GQA, dropout, tracing, saved bytes."""

import pytest
import torch
import torch.nn.functional as F

from recompiler.lowerings.chunked_attention import chunked_attention, dropout_keep_mask, saved_bytes


def reference(q, k, v, mask=None, causal=False, keep=None, p=0.0):
    """Softmax attention written out on the full L×L scores (k/v heads repeated for GQA)."""
    G = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(G, 1), v.repeat_interleave(G, 1)
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    probs = torch.softmax(s, -1).nan_to_num(0.0)  # a row that sees nothing gives 0, as _safe_softmax
    if keep is not None:
        probs = probs * keep / (1 - p)
    return probs @ v


def tensors(dtype=torch.float64, B=2, H=4, Hk=4, Lq=37, Lk=37, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    return make(B, H, Lq, d), make(B, Hk, Lk, d), make(B, Hk, Lk, d)


def grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g)


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
@pytest.mark.parametrize("Hk", [4, 2, 1])
@pytest.mark.parametrize("chunk", [1, 10, 64])
def test_equals_full_attention_in_fp64(causal, mask_kind, Hk, chunk):
    q, k, v = tensors(Hk=Hk, Lk=37 if causal else 29)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(2, 1, 37, k.shape[2], generator=torch.Generator().manual_seed(3)) > 0.3
        mask[0, 0, 3, :] = False   # a padding row that sees no key
    elif mask_kind == "float":
        mask = torch.randn(2, 4, 37, k.shape[2], dtype=torch.float64)
    out = chunked_attention(q, k, v, mask, is_causal=causal, chunk_size=chunk)
    ref = reference(q, k, v, mask, causal)
    assert rel(out, ref) < 1e-12
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v))):
        assert torch.isfinite(a).all() and rel(a, b) < 1e-10


def test_fp32_matches_sdpa_within_1e_5():
    q, k, v = tensors(torch.float32, Lq=256, Lk=256, d=32)
    out = chunked_attention(q, k, v, is_causal=True, chunk_size=64)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert rel(out, ref) <= 1e-5
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v))):
        assert rel(a, b) <= 1e-5


def test_bf16_close_to_fp32():
    q, k, v = tensors(torch.float32, Lq=128, Lk=128, d=32)
    low = [t.detach().bfloat16().requires_grad_() for t in (q, k, v)]
    out = chunked_attention(*low, is_causal=True, chunk_size=32)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == torch.bfloat16 and rel(out, ref) < 2e-2
    for a, b in zip(grads(out, low), grads(ref, (q, k, v))):
        assert a.dtype == torch.bfloat16 and rel(a, b) < 3e-2


def test_dropout_equals_a_reference_with_the_same_masks():
    q, k, v = tensors(Lq=40, Lk=40)
    p, chunk, seed = 0.3, 16, torch.tensor(1234)
    out = chunked_attention(q, k, v, is_causal=True, dropout_p=p, seed=seed, chunk_size=chunk)
    keep = torch.cat([dropout_keep_mask(1234, s, (2, 4, min(chunk, 40 - s), 40), p, "cpu", torch.float64)
                      for s in range(0, 40, chunk)], dim=2)
    ref = reference(q, k, v, causal=True, keep=keep, p=p)
    assert rel(out, ref) < 1e-12
    for a, b in zip(grads(out, (q, k, v)), grads(ref, (q, k, v))):
        assert rel(a, b) < 1e-10
    again = chunked_attention(q, k, v, is_causal=True, dropout_p=p, seed=seed, chunk_size=chunk)
    other = chunked_attention(q, k, v, is_causal=True, dropout_p=p, seed=torch.tensor(99), chunk_size=chunk)
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_dropout_keep_rate_within_four_sigma():
    n, p = 1000 * 1000, 0.1
    keep = dropout_keep_mask(7, 0, (1000, 1000), p, "cpu")
    assert abs(keep.float().mean().item() - (1 - p)) < 4 * ((p * (1 - p) / n) ** 0.5)


def test_traces_into_an_aot_joint_graph():
    q, k, v = tensors(torch.float32, Lq=32, Lk=32)

    def f(q, k, v):
        return chunked_attention(q, k, v, is_causal=True, chunk_size=8).square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    want = torch.autograd.grad(f(q, k, v), (q, k, v))
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(got, want))


def saved_by_autograd(fn, inputs):
    """Bytes autograd keeps for the backward of ``fn(*inputs)``, the inputs themselves excluded."""
    ids = {t.data_ptr() for t in inputs}
    saved = []

    def pack(t):
        if t.data_ptr() not in ids and t.numel():
            saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sum(saved)


def test_saved_bytes_are_the_output_and_the_lse_only():
    q, k, v = tensors(torch.float32, B=2, H=4, Lq=256, Lk=256, d=16)
    chunked = saved_by_autograd(lambda *a: chunked_attention(*a, is_causal=True, chunk_size=32), (q, k, v))
    assert abs(chunked - saved_bytes(q, v)) <= 0.05 * saved_bytes(q, v)
    full = saved_by_autograd(lambda *a: reference(*a, causal=True), (q, k, v))
    assert full > 2 * 4 * 256 * 256 * 4 > 10 * chunked   # the math path keeps the L×L probabilities


@pytest.mark.parametrize("kwargs, words", [
    (dict(chunk_size=0), "chunk_size must be at least 1"),
    (dict(dropout_p=1.0, seed=torch.tensor(1)), "dropout_p must be in"),
    (dict(dropout_p=0.1), "needs a seed"),
])
def test_bad_arguments_are_clear_errors(kwargs, words):
    q, k, v = tensors(torch.float32, Lq=8, Lk=8)
    with pytest.raises(ValueError, match=words):
        chunked_attention(q, k, v, **kwargs)


def test_heads_must_group():
    q, _, _ = tensors(torch.float32, H=4)
    _, k, v = tensors(torch.float32, Hk=3)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        chunked_attention(q, k, v)
