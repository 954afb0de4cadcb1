"""Causal linear attention (Performer), with SLiM's sub-linear-memory backward.

    num_t = φ(q_t)ᵀ Σ_{s≤t} φ(k_s) v_sᵀ,   den_t = φ(q_t)ᵀ Σ_{s≤t} φ(k_s),   out_t = num_t / (den_t + ε)

Two computations of the prefix sums, equal up to floating-point drift:

* ``form="cumsum"``: the plain form, ``cumsum`` of the outer products φ(k_s) v_sᵀ — autograd keeps
  the L·M·d prefix states;
* ``form="chunked"`` (SLiM, Likhosherstov et al. 2021): ``recompiler::causal_prefix_attention``, a
  custom op that walks the sequence in slices of ``chunk_size`` tokens keeping only the running
  M×d state; it saves φ(q), φ(k), v and the final state, and its backward walks the slices in
  reverse, rebuilding each slice's starting state by subtracting its k⊗v from the final state.
  Memory O(L·(M + d) + M·d) instead of O(L·M·d).

The denominator is the same prefix product with v = 1, so it rides along as one extra value
column. Feature maps: ``sqr`` (elementwise square, SLiM's default), ``relu``, ``elu`` (elu + 1)
and ``favor+`` (positive random features, Choromanski et al.: M = ``features`` Gaussian
projections, fixed at construction).

Example
-------
>>> import torch
>>> attn = CausalLinearAttention(32, heads=4, form="chunked", chunk_size=16)
>>> attn(torch.randn(2, 64, 32)).shape
torch.Size([2, 64, 32])
"""

from __future__ import annotations

import math

import torch
from torch import nn

FEATURE_MAPS = ("sqr", "relu", "elu", "favor+")
FORMS = ("chunked", "cumsum")
_STATE = torch.float64  # dtype of the chunked form's running M×d state


# --------------------------------------------------------------------------- the prefix product
def prefix_product_cumsum(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """num_t = q_tᵀ Σ_{s≤t} k_s v_sᵀ over (B, H, L, M) q, k and (B, H, L, d) v, by materialised prefix states."""
    states = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=2)          # (B, H, L, M, d)
    return torch.einsum("bhlm,bhlmd->bhld", q, states)


@torch.library.custom_op("recompiler::causal_prefix_attention", mutates_args=())
def _prefix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    L = q.shape[2]
    out = torch.empty(*q.shape[:3], v.shape[-1], dtype=q.dtype, device=q.device)
    # The running state is kept in fp64 (it is only M×d): the backward rebuilds earlier states by
    # subtracting from the final one, and in fp32 that drift reaches 1e-4 relative over 4096 tokens.
    state = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1], dtype=_STATE)   # (B, H, M, d)
    for start in range(0, L, chunk_size):
        stop = min(start + chunk_size, L)
        qc, kc, vc = q[:, :, start:stop], k[:, :, start:stop], v[:, :, start:stop]
        within = torch.tril(qc @ kc.transpose(-1, -2))                        # (B, H, C, C)
        out[:, :, start:stop] = qc @ state.to(q.dtype) + within @ vc
        state = state + (kc.transpose(-1, -2).to(_STATE) @ vc.to(_STATE))
    return out, state


@_prefix.register_fake
def _prefix_fake(q, k, v, chunk_size):
    return (q.new_empty(*q.shape[:3], v.shape[-1]), q.new_empty(*q.shape[:2], q.shape[-1], v.shape[-1], dtype=_STATE))


@torch.library.custom_op("recompiler::causal_prefix_attention_backward", mutates_args=())
def _prefix_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, final_state: torch.Tensor,
                     chunk_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    L = q.shape[2]
    # contiguous whatever the inputs' strides, as the fake kernel says
    dq, dk, dv = q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)
    state = final_state.clone()
    later = torch.zeros_like(final_state)      # Σ over later slices of q_t g_tᵀ (M×d), fp64 like the state
    starts = list(range(0, L, chunk_size))
    for start in reversed(starts):
        stop = min(start + chunk_size, L)
        qc, kc, vc, gc = q[:, :, start:stop], k[:, :, start:stop], v[:, :, start:stop], grad[:, :, start:stop]
        state = state - kc.transpose(-1, -2).to(_STATE) @ vc.to(_STATE)       # the slice's starting state
        s_low, later_low = state.to(q.dtype), later.to(q.dtype)
        gv = torch.tril(gc @ vc.transpose(-1, -2))                            # [t, s] = g_t · v_s, s ≤ t
        qk = torch.tril(qc @ kc.transpose(-1, -2))                            # [t, s] = q_t · k_s, s ≤ t
        dq[:, :, start:stop] = gc @ s_low.transpose(-1, -2) + gv @ kc
        dk[:, :, start:stop] = vc @ later_low.transpose(-1, -2) + gv.transpose(-1, -2) @ qc
        dv[:, :, start:stop] = kc @ later_low + qk.transpose(-1, -2) @ gc
        later = later + qc.transpose(-1, -2).to(_STATE) @ gc.to(_STATE)
    return dq, dk, dv


@_prefix_backward.register_fake
def _prefix_backward_fake(grad, q, k, v, final_state, chunk_size):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup(ctx, inputs, output):
    q, k, v, chunk_size = inputs
    ctx.save_for_backward(q, k, v, output[1])
    ctx.chunk_size = chunk_size


def _backward(ctx, grad, grad_state):
    q, k, v, final_state = ctx.saved_tensors
    dq, dk, dv = torch.ops.recompiler.causal_prefix_attention_backward(grad.contiguous(), q, k, v, final_state,
                                                                       ctx.chunk_size)
    return dq, dk, dv, None


_prefix.register_autograd(_backward, setup_context=_setup)


@torch.library.custom_op("recompiler::causal_prefix_cumsum", mutates_args=())
def _cumsum_form(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain form as one op: (num, the L·M·d prefix states it keeps for the backward)."""
    states = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=2)          # (B, H, L, M, d)
    return torch.einsum("bhlm,bhlmd->bhld", q, states), states


@_cumsum_form.register_fake
def _cumsum_form_fake(q, k, v):
    return q.new_empty(*q.shape[:3], v.shape[-1]), q.new_empty(*q.shape, v.shape[-1])


@torch.library.custom_op("recompiler::causal_prefix_cumsum_backward", mutates_args=())
def _cumsum_form_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq = torch.einsum("bhld,bhlmd->bhlm", grad, states)
    # d states_t = q_t g_tᵀ; each k_s v_sᵀ feeds every later state: a reversed cumulative sum
    dw = torch.flip(torch.cumsum(torch.flip(q.unsqueeze(-1) * grad.unsqueeze(-2), [2]), dim=2), [2])
    return dq, torch.einsum("bhlmd,bhld->bhlm", dw, v), torch.einsum("bhlmd,bhlm->bhld", dw, k)


@_cumsum_form_backward.register_fake
def _cumsum_form_backward_fake(grad, q, k, v, states):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


#: Per-slice temporaries, in (batch·heads × slice × slice) tiles, as the CPU tracker measures them
#: inside the ops: the within-slice scores and their causal half, and in the backward their
#: gradients. One slice over the whole sequence slices nothing: one tile less.
FORWARD_TILES, BACKWARD_TILES = 3, 4


def workspace_bytes(q, chunk_size: int, *, backward: bool) -> int:
    """Bytes the chunked op (or its backward) allocates and frees inside itself, for (B, H, L, M) ``q``."""
    B, H, L, _ = q.shape
    c = min(int(chunk_size), L)
    tiles = (BACKWARD_TILES if backward else FORWARD_TILES) - (c >= L)
    return tiles * B * H * c * c * q.element_size()


def _register_workspace():
    from ..frontend import costs

    costs.WORKSPACE["recompiler::causal_prefix_attention"] = (
        lambda q, k, v, chunk_size: workspace_bytes(q, chunk_size, backward=False))
    costs.WORKSPACE["recompiler::causal_prefix_attention_backward"] = (
        lambda grad, q, k, v, state, chunk_size: workspace_bytes(q, chunk_size, backward=True))


_register_workspace()


def prefix_product_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """The same as :func:`prefix_product_cumsum`, in slices of ``chunk_size`` (SLiM's backward)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    return torch.ops.recompiler.causal_prefix_attention(q, k, v, int(chunk_size))[0]


# --------------------------------------------------------------------------- the module
class CausalLinearAttention(nn.Module):
    """Multi-head causal linear attention over (B, L, dim) inputs (module docstring).

    ``features`` is M for ``favor+`` (default: the head size); the other maps keep M = head size.
    """

    def __init__(self, dim: int, heads: int, feature_map: str = "sqr", *, form: str = "chunked",
                 chunk_size: int = 256, features: int | None = None, eps: float = 1e-6):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"feature_map must be one of {', '.join(FEATURE_MAPS)}, not {feature_map!r}")
        if form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, not {form!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self.heads, self.head_dim = heads, dim // heads
        self.feature_map, self.form, self.chunk_size, self.eps = feature_map, form, chunk_size, eps
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if feature_map == "favor+":
            m = features or self.head_dim
            self.register_buffer("projection", torch.randn(self.head_dim, m))

    def features(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        if self.feature_map == "sqr":
            return x * x
        if self.feature_map == "relu":
            return torch.relu(x)
        if self.feature_map == "elu":
            return nn.functional.elu(x) + 1
        # FAVOR+: exp(wᵀx − ‖x‖²/2) / √M on x scaled by d^(−1/4); a stabiliser that cancels in
        # num/den (per row for queries, one constant for keys) keeps exp in range.
        x = x * self.head_dim ** -0.25
        proj = x @ self.projection
        proj = proj - (x * x).sum(-1, keepdim=True) / 2
        stab = proj.amax(-1, keepdim=True) if is_query else proj.amax().reshape(1, 1, 1, 1)
        return torch.exp(proj - stab.detach()) / math.sqrt(self.projection.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, dim = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        fq, fk = self.features(q, True), self.features(k, False)
        # the denominator is the prefix product with v = 1: one extra value column
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        if self.form == "cumsum":
            both = prefix_product_cumsum(fq, fk, v1)
        else:
            both = prefix_product_chunked(fq, fk, v1, self.chunk_size)
        out = both[..., :-1] / (both[..., -1:] + self.eps)
        return self.proj(out.transpose(1, 2).reshape(B, L, dim))
