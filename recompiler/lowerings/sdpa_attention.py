"""Fused SDPA kernels (flash / memory-efficient) → chunked attention at a chosen chunk size.

``F.scaled_dot_product_attention`` without dropout reaches the joint graph as one fused op and
its backward (``_scaled_dot_product_flash_attention_for_cpu`` on CPU; ``_flash`` /
``_efficient`` on CUDA), which already keep only out + log-sum-exp. :func:`match` makes each such
pair a group whose options are the fused pair as traced and :mod:`.chunked_attention` at the
chunk sizes of :data:`.softmax_attention.CHUNK_SIZES`: the same saved bytes, with the chunk's
workspace and kernel count explicit, so a plan can bound the temporaries of the backward. With
dropout the fused ops draw their own masks (philox): no match.

Example
-------
>>> import torch, torch.nn.functional as F
>>> from recompiler.frontend.capture import capture
>>> class Attn(torch.nn.Module):
...     def forward(self, q, k, v):
...         return F.scaled_dot_product_attention(q, k, v, is_causal=True)
>>> qkv = [torch.randn(2, 4, 64, 16, requires_grad=True) for _ in range(3)]
>>> [o.name for o in capture(Attn(), tuple(qkv)).graph.variant_groups[0].options]
['fused', 'chunked-32', 'chunked-64']
"""

from __future__ import annotations

import math
import operator

import torch

from ..graph import VariantOption
from . import Instance, chunked_attention
from .matching import through_aliases
from .softmax_attention import BACKWARD_KERNELS, CHUNK_SIZES, FORWARD_KERNELS

#: Fused forward op → its backward op (the names :func:`recompiler.frontend.capture.lower` gives them).
FUSED = {
    "_scaled_dot_product_flash_attention_for_cpu": "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_flash_attention": "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention": "_scaled_dot_product_efficient_attention_backward",
}


def _arguments(node) -> dict:
    """The node's arguments by schema name, defaults filled in."""
    schema = node.target._schema
    out = {}
    for k, a in enumerate(schema.arguments):
        if k < len(node.args):
            out[a.name] = node.args[k]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
    return out


class FusedAttention(Instance):
    """One fused SDPA forward / backward pair."""

    def __init__(self, lowering, captured, profile, fwd, fwd_items, bwd, bwd_items, args, aliases):
        self.lowering, self.captured, self.profile = lowering, captured, profile
        self.fwd, self.fwd_items, self.bwd, self.bwd_items = fwd, fwd_items, bwd, bwd_items
        self.aliases = aliases       # detach view -> the forward output it shows the backward
        self.q, self.k, self.v = args["query"], args["key"], args["value"]
        self.mask = args.get("attn_mask", args.get("attn_bias"))
        self.is_causal = bool(args.get("is_causal", False))
        qv = self.q.meta["val"]
        self.scale = args.get("scale") or 1.0 / math.sqrt(qv.shape[-1])
        self.B, self.H, self.L, _ = qv.shape
        self.S, self.dtype = self.k.meta["val"].shape[2], qv.dtype
        ids = captured.node_ids
        self.nodes = sorted([fwd, *fwd_items.values(), *aliases, bwd, *bwd_items.values()], key=lambda x: ids[x.name])
        self.module_path = captured.module_paths[ids[fwd.name]]

    def chunk_sizes(self) -> list[int]:
        return sorted({min(c, self.L) for c in CHUNK_SIZES})

    def options(self) -> list[VariantOption]:
        g, ids = self.captured.graph, self.captured.node_ids
        members = [ids[x.name] for x in self.nodes]
        f, b = ids[self.fwd.name], ids[self.bwd.name]
        lse = ids[self.fwd_items[1].name]
        acc = torch.empty((), dtype=torch.promote_types(self.dtype, torch.float32)).element_size()
        lse_bytes = self.B * self.H * self.L * acc
        launch = self.profile.launch_overhead
        opts = [VariantOption("fused", True, [float(g.compute[i]) for i in members],
                              [int(g.memory[i]) for i in members])]
        for c in self.chunk_sizes():
            chunks = math.ceil(self.L / c)
            compute = [float(g.compute[i]) for i in members]
            memory = [int(g.memory[i]) for i in members]
            for k, i in enumerate(members):
                backward = i == b
                if i in (f, b):
                    ws = chunked_attention.workspace_bytes(self.B * self.H, self.L, self.S, c, self.dtype,
                                                           dropout=False, backward=backward)
                    compute[k] += chunks * (BACKWARD_KERNELS if backward else FORWARD_KERNELS) * launch
                    memory[k] += ws
                    if i == f:   # our lse is (B, H, L) in the accumulator type: the fused one may be padded
                        memory[k] += lse_bytes - int(g.memory[lse])
                elif i == lse:
                    memory[k] = lse_bytes
            opts.append(VariantOption(f"chunked-{c}", True, compute, memory))
        return opts

    def rewrite(self, option: int, node, emit, state: dict):
        chunk = self.chunk_sizes()[option - 1]
        ops = torch.ops.recompiler
        mask = emit.arg(self.mask) if self.mask is not None else None
        if node is self.fwd:
            return emit.call(ops.chunked_attention.default, emit.arg(self.q), emit.arg(self.k), emit.arg(self.v),
                             mask, float(self.scale), self.is_causal, 0.0, None, chunk)
        if node is self.bwd:
            grad = emit.arg(self.bwd.args[0])
            out, lse = emit.arg(self.fwd_items[0]), emit.arg(self.fwd_items[1])
            return emit.call(ops.chunked_attention_backward.default, grad, emit.arg(self.q), emit.arg(self.k),
                             emit.arg(self.v), mask, out, lse, float(self.scale), self.is_causal, 0.0, None, chunk)
        if node in self.aliases:
            return emit.arg(self.aliases[node])
        from_fwd = node in self.fwd_items.values()
        if from_fwd and node.args[1] > 1:
            return None          # the fused kernel's philox state and sizes: only its backward read them
        x = emit.call(operator.getitem, emit.arg(self.fwd if from_fwd else self.bwd), node.args[1])
        return emit.like(x, node)


def match(captured, profile) -> list[FusedAttention]:
    """Every fused SDPA forward (dropout 0) with its backward, when only the two read each other's internals."""
    from . import LOWERINGS

    entry = next(e for e in LOWERINGS if e.match is match)
    ops, ids, g = captured.ops, captured.node_ids, captured.graph
    found = []
    for fwd in captured.fx_nodes:
        name = ops[ids[fwd.name]]
        if name not in FUSED:
            continue
        args = _arguments(fwd)
        if args.get("dropout_p", 0.0) or not all(isinstance(args.get(k), torch.fx.Node)
                                                 for k in ("query", "key", "value")):
            continue
        if len(args["query"].meta["val"].shape) != 4 or args["query"].meta["val"].shape[-1] != \
                args["value"].meta["val"].shape[-1]:
            continue
        fwd_items = {u.args[1]: u for u in fwd.users if u.target is operator.getitem}
        if len(fwd_items) != len(fwd.users) or 0 not in fwd_items or 1 not in fwd_items:
            continue
        aliases = {}                     # detach views autograd puts on saved outputs -> the output
        readers: dict = {}               # output index -> its readers beyond those views
        for k, item in fwd_items.items():
            views, readers[k] = through_aliases(captured, item)
            aliases.update(dict.fromkeys(views, item))
        bwds = {u for rs in readers.values() for u in rs if ops[ids[u.name]] == FUSED[name]}
        if len(bwds) != 1:
            continue
        (bwd,) = bwds
        # the saved internals (lse, philox state, ...) must feed nothing but the backward
        if any(u is not bwd for k, rs in readers.items() if k != 0 for u in rs):
            continue
        if any(any(u is not bwd for u in a.users if u not in aliases) for a in aliases):
            continue
        bargs = _arguments(bwd)
        if [bargs.get(k) for k in ("query", "key", "value")] != [args[k] for k in ("query", "key", "value")]:
            continue
        if aliases.get(bargs.get("out"), bargs.get("out")) is not fwd_items[0]:
            continue
        bwd_items = {u.args[1]: u for u in bwd.users if u.target is operator.getitem}
        if len(bwd_items) != len(bwd.users) or not set(bwd_items) <= {0, 1, 2} \
                or g.pinned[ids[fwd.name]] or g.pinned[ids[bwd.name]]:
            continue
        found.append(FusedAttention(entry, captured, profile, fwd, fwd_items, bwd, bwd_items, args, aliases))
    return found
