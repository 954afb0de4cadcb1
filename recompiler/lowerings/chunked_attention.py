"""Exact softmax attention in query chunks (SLiM's idea for softmax attention; flash attention's memory).

``chunked_attention(q, k, v, ...)`` equals ``F.scaled_dot_product_attention`` (the math path)
within floating-point reassociation, but never holds more than one chunk of the L×L scores:
the forward keeps only the output and the row log-sum-exp, and the backward recomputes each
chunk's scores (and regenerates its dropout mask) from q, k, v. Saved bytes drop from
B·H·Lq·Lk probabilities (plus mask and dropped probabilities with dropout) to B·H·Lq·(d + 1).

Both directions are ``torch.library`` custom ops (``recompiler::chunked_attention`` and
``recompiler::chunked_attention_backward``) with fake kernels, so they trace into AOTAutograd
joint graphs like any aten op.

Dropout: the keep-mask of query chunk ``[i, i + C)`` is drawn from a generator seeded by
``(seed, i)`` — the same in the forward and the backward, and independent of how the chunk
is scheduled. A reference with the same masks is :func:`dropout_keep_mask` over every chunk
(tests do that); the masks differ from ``native_dropout``'s, as any replayed RNG does.

Shapes: q (B, H, Lq, d); k, v (B, Hk, Lk, d) with H a multiple of Hk (grouped-query
attention repeats each k/v head H/Hk times); ``attn_mask`` boolean (True takes part) or
additive float, broadcastable to (B, H, Lq, Lk). Rows that see no key give 0, as
``_safe_softmax`` does.

Example
-------
>>> import torch, torch.nn.functional as F
>>> q, k, v = (torch.randn(2, 4, 64, 16) for _ in range(3))
>>> out = chunked_attention(q, k, v, is_causal=True, chunk_size=16)
>>> torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)
True
"""

from __future__ import annotations

import math

import torch

_SEED_MASK = (1 << 63) - 1


def dropout_keep_mask(seed: int, start: int, shape, p: float, device, dtype=torch.bool) -> torch.Tensor:
    """The keep-mask (True = kept, probability 1 − p) of the query chunk starting at row ``start``."""
    gen = torch.Generator(device=device)
    # A distinct, reproducible stream per chunk: the chunk's first row mixed into the seed.
    gen.manual_seed((int(seed) * 1_000_003 + start * 7919 + 1) & _SEED_MASK)
    return (torch.rand(shape, generator=gen, device=device) >= p).to(dtype)


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics and gradient sums in fp32 at least (bf16/fp16 inputs), fp64 for fp64."""
    return torch.promote_types(dtype, torch.float32)


def _group(q: torch.Tensor, k: torch.Tensor):
    B, H, Lq, d = q.shape
    Hk = k.shape[1]
    if H % Hk:
        raise ValueError(f"query heads ({H}) must be a multiple of key/value heads ({Hk})")
    return B, H, Hk, H // Hk, Lq, k.shape[2], d


def _chunk_bias(attn_mask, is_causal: bool, start: int, stop: int, Lk: int, dtype, device):
    """The additive bias (−inf where masked) of rows [start, stop), broadcastable to (B, H, rows, Lk)."""
    bias = None
    if attn_mask is not None:
        m = attn_mask[..., start:stop, :] if attn_mask.dim() >= 2 and attn_mask.shape[-2] != 1 else attn_mask
        if m.dtype == torch.bool:
            bias = torch.zeros(m.shape, dtype=dtype, device=device).masked_fill(~m, float("-inf"))
        else:
            bias = m.to(dtype)
    if is_causal:
        rows = torch.arange(start, stop, device=device)[:, None]
        cols = torch.arange(Lk, device=device)[None, :]
        causal = torch.zeros((stop - start, Lk), dtype=dtype, device=device).masked_fill(cols > rows, float("-inf"))
        bias = causal if bias is None else bias + causal
    return bias


def _scores(q_c, k, bias, scale, B, Hk, G):
    # q_c (B, H, C, d) -> (B, Hk, G, C, d): each k/v head serves G query heads without copying k/v.
    C = q_c.shape[2]
    s = torch.matmul(q_c.reshape(B, Hk, G, C, -1), k.unsqueeze(2).transpose(-1, -2)) * scale
    s = s.reshape(B, Hk * G, C, -1)
    return s if bias is None else s + bias


def _check(q, k, v, chunk_size, dropout_p, seed):
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("chunked_attention takes (B, H, L, d) query, key and value")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), not {dropout_p}")
    if dropout_p > 0 and seed is None:
        raise ValueError("dropout_p > 0 needs a seed (a 0-dim int64 tensor, e.g. torch.ops.recompiler.draw_seed())")


@torch.library.custom_op("recompiler::chunked_attention", mutates_args=())
def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, scale: float,
             is_causal: bool, dropout_p: float, seed: torch.Tensor | None,
             chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    B, H, Hk, G, Lq, Lk, d = _group(q, k)
    acc = _accumulator(q.dtype)
    out = torch.empty(B, H, Lq, v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(B, H, Lq, dtype=acc, device=q.device)
    for start in range(0, Lq, chunk_size):
        stop = min(start + chunk_size, Lq)
        bias = _chunk_bias(attn_mask, is_causal, start, stop, Lk, q.dtype, q.device)
        s = _scores(q[:, :, start:stop], k, bias, scale, B, Hk, G).to(acc)
        m = s.amax(-1, keepdim=True)
        m = torch.where(torch.isinf(m), torch.zeros_like(m), m)   # a row that sees nothing
        e = torch.exp(s - m)
        denom = e.sum(-1, keepdim=True)
        p = e / torch.where(denom == 0, torch.ones_like(denom), denom)
        lse[:, :, start:stop] = torch.where(denom == 0, torch.full_like(denom, float("inf")),
                                            m + torch.log(denom)).squeeze(-1)
        if dropout_p > 0:
            p = p * dropout_keep_mask(int(seed), start, p.shape, dropout_p, q.device, p.dtype) / (1 - dropout_p)
        p = p.to(v.dtype).reshape(B, Hk, G, stop - start, Lk)
        out[:, :, start:stop] = torch.matmul(p, v.unsqueeze(2)).reshape(B, H, stop - start, -1)
    return out, lse


@_forward.register_fake
def _forward_fake(q, k, v, attn_mask, scale, is_causal, dropout_p, seed, chunk_size):
    B, H, Lq, _ = q.shape
    return q.new_empty(B, H, Lq, v.shape[-1]), q.new_empty(B, H, Lq, dtype=_accumulator(q.dtype))


@torch.library.custom_op("recompiler::chunked_attention_backward", mutates_args=())
def _backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              attn_mask: torch.Tensor | None, out: torch.Tensor, lse: torch.Tensor, scale: float, is_causal: bool,
              dropout_p: float, seed: torch.Tensor | None,
              chunk_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, H, Hk, G, Lq, Lk, d = _group(q, k)
    acc = _accumulator(q.dtype)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)   # contiguous, as the fake kernel says
    dk = torch.zeros(k.shape, dtype=acc, device=k.device)
    dv = torch.zeros(v.shape, dtype=acc, device=v.device)
    # D_i = Σ_j P_ij dP_ij = dO_i · O_i, with or without dropout (the mask cancels out).
    delta = (grad_out.to(acc) * out.to(acc)).sum(-1, keepdim=True)
    for start in range(0, Lq, chunk_size):
        stop = min(start + chunk_size, Lq)
        C = stop - start
        bias = _chunk_bias(attn_mask, is_causal, start, stop, Lk, q.dtype, q.device)
        q_c = q[:, :, start:stop]
        s = _scores(q_c, k, bias, scale, B, Hk, G).to(acc)
        p = torch.exp(s - lse[:, :, start:stop, None])           # the softmax, recomputed from lse
        do = grad_out[:, :, start:stop].to(acc)
        vg = v.unsqueeze(2).to(acc)
        dp = torch.matmul(do.reshape(B, Hk, G, C, -1), vg.transpose(-1, -2)).reshape(B, H, C, Lk)
        if dropout_p > 0:
            z = dropout_keep_mask(int(seed), start, p.shape, dropout_p, q.device, p.dtype) / (1 - dropout_p)
            p_used, dp = p * z, dp * z
        else:
            p_used = p
        dv += torch.matmul(p_used.reshape(B, Hk, G, C, Lk).transpose(-1, -2), do.reshape(B, Hk, G, C, -1)).sum(2)
        ds = p * (dp - delta[:, :, start:stop])
        ds5 = ds.reshape(B, Hk, G, C, Lk)
        dq[:, :, start:stop] = (torch.matmul(ds5, k.unsqueeze(2).to(acc)) * scale).reshape(B, H, C, d).to(q.dtype)
        dk += (torch.matmul(ds5.transpose(-1, -2), q_c.reshape(B, Hk, G, C, d).to(acc)) * scale).sum(2)
    return dq, dk.to(k.dtype), dv.to(v.dtype)


@_backward.register_fake
def _backward_fake(grad_out, q, k, v, attn_mask, out, lse, scale, is_causal, dropout_p, seed, chunk_size):
    # contiguous whatever the inputs' strides, exactly like the real kernel
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, attn_mask, scale, is_causal, dropout_p, seed, chunk_size = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, attn_mask, out, lse, seed)
    ctx.options = (scale, is_causal, dropout_p, chunk_size)


def _autograd_backward(ctx, grad_out, grad_lse):
    q, k, v, attn_mask, out, lse, seed = ctx.saved_tensors
    scale, is_causal, dropout_p, chunk_size = ctx.options
    dq, dk, dv = torch.ops.recompiler.chunked_attention_backward(
        grad_out.contiguous(), q, k, v, attn_mask, out, lse, scale, is_causal, dropout_p, seed, chunk_size)
    return dq, dk, dv, None, None, None, None, None, None


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


def chunked_attention(q, k, v, attn_mask=None, *, scale: float | None = None, is_causal: bool = False,
                      dropout_p: float = 0.0, seed: torch.Tensor | None = None, chunk_size: int = 128):
    """Softmax attention over (B, H, L, d) tensors, ``chunk_size`` query rows at a time (module docstring).

    ``scale`` defaults to 1/√d, as in ``F.scaled_dot_product_attention``; ``seed`` (a 0-dim int64
    tensor) is required when ``dropout_p > 0``.
    """
    _check(q, k, v, chunk_size, dropout_p, seed)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    out, _ = torch.ops.recompiler.chunked_attention(q, k, v, attn_mask, scale, bool(is_causal), float(dropout_p),
                                                    seed, int(chunk_size))
    return out


#: Per-chunk temporaries, in (batch·heads × chunk × keys) accumulator tiles, as the CPU tracker
#: measures them inside the ops (tests/lowerings): scores, shifted scores, exp and probabilities
#: in the forward; the backward adds dP and dS, and with dropout the keep-mask and the dropped
#: probabilities. One chunk over all queries slices nothing: two forward tiles, one backward tile less.
FORWARD_TILES, WHOLE_FORWARD_TILES = 5, 3
BACKWARD_TILES, BACKWARD_DROPOUT_TILES = 6, 8


def workspace_bytes(batch_heads: int, Lq: int, Lk: int, chunk_size: int, dtype: torch.dtype, *, dropout: bool,
                    backward: bool) -> int:
    """Bytes the op (or its backward) allocates and frees inside itself: B·H heads, Lq queries, Lk keys."""
    chunk = min(int(chunk_size), Lq)
    whole = chunk >= Lq
    if backward:
        tiles = (BACKWARD_DROPOUT_TILES if dropout else BACKWARD_TILES) - whole
    else:
        tiles = WHOLE_FORWARD_TILES if whole else FORWARD_TILES
    acc = torch.empty((), dtype=_accumulator(dtype)).element_size()
    return tiles * batch_heads * chunk * Lk * acc


def _register_workspace():
    from ..frontend import costs

    def of(q, k, chunk, p, backward):
        return workspace_bytes(q.shape[0] * q.shape[1], q.shape[2], k.shape[2], chunk, q.dtype, dropout=bool(p),
                               backward=backward)

    costs.WORKSPACE["recompiler::chunked_attention"] = (
        lambda q, k, v, mask, scale, causal, p, seed, chunk: of(q, k, chunk, p, False))
    costs.WORKSPACE["recompiler::chunked_attention_backward"] = (
        lambda g, q, k, v, mask, out, lse, scale, causal, p, seed, chunk: of(q, k, chunk, p, True))


_register_workspace()


def saved_bytes(q, v, *, dropout: bool = False) -> int:
    """Bytes the op keeps for its backward beyond q, k, v and the mask: the output and the row lse."""
    B, H, Lq, _ = q.shape
    lse_itemsize = torch.empty((), dtype=_accumulator(q.dtype)).element_size()
    return B * H * Lq * (v.shape[-1] * q.element_size() + lse_itemsize) + (8 if dropout else 0)
