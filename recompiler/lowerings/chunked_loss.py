"""Exact linear + cross-entropy in token chunks: the vocabulary logits never exist whole.

``chunked_linear_cross_entropy(h, weight, bias, labels)`` equals
``F.cross_entropy(h @ weight.T + bias, labels, ignore_index=..., reduction=...)`` within
floating-point reassociation (fused linear + cross-entropy, as Liger-Kernel's
FusedLinearCrossEntropy), but holds at most one (chunk × vocabulary) block of logits: the forward
keeps the per-token log-sum-exp (N floats), and the backward recomputes each chunk's logits
from the hidden states to form ``softmax − onehot`` and its products with the weight and the
hidden states. Saved bytes drop from N·V logits (plus log-softmax and its gradient in the
backward) to N.

Both directions are ``torch.library`` custom ops (``recompiler::chunked_linear_cross_entropy``
and ``..._backward``) with fake kernels. Reductions: ``"mean"`` over the non-ignored tokens (as
``nll_loss``) and ``"sum"``; no label smoothing, no class weights.

Example
-------
>>> import torch, torch.nn.functional as F
>>> h, w, y = torch.randn(64, 16), torch.randn(100, 16), torch.randint(0, 100, (64,))
>>> loss = chunked_linear_cross_entropy(h, w, None, y, chunk_size=16)
>>> torch.allclose(loss, F.cross_entropy(h @ w.T, y), rtol=1e-5)
True
"""

from __future__ import annotations

import torch

REDUCTIONS = {"mean": 1, "sum": 2}   # nll_loss's reduction codes
#: Per-chunk temporaries, in (chunk × vocabulary) accumulator tiles, measured with the CPU
#: tracker inside the ops: the logits and their exp in the forward; logits, probabilities and
#: their scaled copy in the backward. One chunk over all tokens is one tile less.
FORWARD_TILES, BACKWARD_TILES = 2, 3


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _logits(h, weight, bias, acc):
    z = (h @ weight.t()).to(acc)
    return z if bias is None else z + bias.to(acc)


@torch.library.custom_op("recompiler::chunked_linear_cross_entropy", mutates_args=())
def _forward(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
             ignore_index: int, reduction: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    acc = _accumulator(h.dtype)
    N = h.shape[0]
    lse = torch.empty(N, dtype=acc, device=h.device)
    total = torch.zeros((), dtype=acc, device=h.device)
    for start in range(0, N, chunk_size):
        stop = min(start + chunk_size, N)
        z = _logits(h[start:stop], weight, bias, acc)
        lse[start:stop] = torch.logsumexp(z, dim=-1)
        y = labels[start:stop]
        keep = y != ignore_index
        picked = z.gather(1, torch.where(keep, y, 0)[:, None]).squeeze(1)
        total += torch.where(keep, lse[start:stop] - picked, 0.0).sum()
    if reduction == REDUCTIONS["mean"]:
        total = total / (labels != ignore_index).sum()
    return total.to(h.dtype), lse


@_forward.register_fake
def _forward_fake(h, weight, bias, labels, ignore_index, reduction, chunk_size):
    return h.new_empty(()), h.new_empty(h.shape[0], dtype=_accumulator(h.dtype))


@torch.library.custom_op("recompiler::chunked_linear_cross_entropy_backward", mutates_args=())
def _backward(grad: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
              labels: torch.Tensor, lse: torch.Tensor, ignore_index: int, reduction: int,
              chunk_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    acc = _accumulator(h.dtype)
    N, V = h.shape[0], weight.shape[0]
    scale = grad.to(acc)
    if reduction == REDUCTIONS["mean"]:
        scale = scale / (labels != ignore_index).sum()
    dh = torch.empty(h.shape, dtype=h.dtype, device=h.device)
    dw = torch.zeros(weight.shape, dtype=acc, device=h.device)
    db = torch.zeros(V, dtype=acc, device=h.device)
    w_acc = weight.to(acc)
    for start in range(0, N, chunk_size):
        stop = min(start + chunk_size, N)
        p = torch.exp(_logits(h[start:stop], weight, bias, acc) - lse[start:stop, None])   # the softmax again
        y = labels[start:stop]
        keep = y != ignore_index
        rows = torch.arange(stop - start, device=h.device)
        p[rows, torch.where(keep, y, 0)] -= keep.to(acc)            # softmax − onehot, on kept rows
        p *= (keep.to(acc) * scale)[:, None]
        dh[start:stop] = (p @ w_acc).to(h.dtype)
        dw += p.t() @ h[start:stop].to(acc)
        db += p.sum(0)
    return dh, dw.to(weight.dtype), db.to(weight.dtype)


@_backward.register_fake
def _backward_fake(grad, h, weight, bias, labels, lse, ignore_index, reduction, chunk_size):
    return h.new_empty(h.shape), weight.new_empty(weight.shape), weight.new_empty(weight.shape[0])


def _setup_context(ctx, inputs, output):
    h, weight, bias, labels, ignore_index, reduction, chunk_size = inputs
    ctx.save_for_backward(h, weight, bias, labels, output[1])
    ctx.options = (ignore_index, reduction, chunk_size)
    ctx.has_bias = bias is not None


def _autograd_backward(ctx, grad, grad_lse):
    h, weight, bias, labels, lse = ctx.saved_tensors
    dh, dw, db = torch.ops.recompiler.chunked_linear_cross_entropy_backward(grad, h, weight, bias, labels, lse,
                                                                            *ctx.options)
    return dh, dw, db if ctx.has_bias else None, None, None, None, None


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)


def workspace_bytes(tokens: int, vocab: int, chunk_size: int, dtype: torch.dtype, *, backward: bool) -> int:
    """Bytes the op (or its backward) allocates and frees inside itself."""
    chunk = min(int(chunk_size), tokens)
    tiles = (BACKWARD_TILES if backward else FORWARD_TILES) - (chunk >= tokens)
    return tiles * chunk * vocab * torch.empty((), dtype=_accumulator(dtype)).element_size()


def _register_workspace():
    from ..frontend import costs

    costs.WORKSPACE["recompiler::chunked_linear_cross_entropy"] = (
        lambda h, w, b, y, ii, red, chunk: workspace_bytes(h.shape[0], w.shape[0], chunk, h.dtype, backward=False))
    costs.WORKSPACE["recompiler::chunked_linear_cross_entropy_backward"] = (
        lambda g, h, w, b, y, lse, ii, red, chunk: workspace_bytes(h.shape[0], w.shape[0], chunk, h.dtype,
                                                                   backward=True))


_register_workspace()


def chunked_linear_cross_entropy(h, weight, bias, labels, *, ignore_index: int = -100, reduction: str = "mean",
                                 chunk_size: int = 1024):
    """Cross-entropy of ``h @ weight.T (+ bias)`` against ``labels``, ``chunk_size`` tokens at a time."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    loss, _ = torch.ops.recompiler.chunked_linear_cross_entropy(h, weight, bias, labels, int(ignore_index),
                                                                REDUCTIONS[reduction], int(chunk_size))
    return loss
