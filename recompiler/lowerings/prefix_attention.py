"""Causal linear attention (``recompiler.nn.CausalLinearAttention``) → its other forms, SLiM's trade-off.

The module traces to ``recompiler::causal_prefix_attention`` (SLiM's chunked prefix product at the
module's ``chunk_size``: it keeps φ(q), φ(k), v and the final M×d state) and its backward op.
:func:`match` finds each such pair; the options are the traced op (0), the same op at the other
slice lengths of :data:`CHUNK_SIZES` (same bytes, different kernel counts and within-slice work),
and ``cumsum``: the plain form, ``recompiler::causal_prefix_cumsum``, which keeps the L·M·d prefix
states from the forward so the backward needs no state rebuilding — more memory, fewer kernels.

Example
-------
>>> import torch
>>> from recompiler.frontend.capture import capture
>>> from recompiler.nn import CausalLinearAttention
>>> cap = capture(CausalLinearAttention(32, heads=4, chunk_size=16), (torch.randn(2, 64, 32),))
>>> [o.name for o in cap.graph.variant_groups[0].options]
['chunked-16', 'chunked-64', 'cumsum']
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx as fx

from ..graph import VariantOption
from ..nn import linear_attention  # noqa: F401 - registers the recompiler::causal_prefix_* ops
from . import Instance
from .matching import through_aliases

#: Slice lengths offered besides the traced one (those below the sequence length, and L once).
CHUNK_SIZES = (64, 256, 1024)
#: Kernels per slice: forward (scores, tril, two matmuls, state update) and backward.
FORWARD_KERNELS = 6
BACKWARD_KERNELS = 14


class PrefixAttention(Instance):
    """One ``causal_prefix_attention`` forward / backward pair."""

    def __init__(self, lowering, captured, profile, fwd, out, state, aliases, bwd, grads):
        self.lowering, self.captured, self.profile = lowering, captured, profile
        self.fwd, self.out, self.state, self.bwd, self.grads = fwd, out, state, bwd, grads
        self.aliases = aliases          # detach views of the state between the forward and the backward
        ids = captured.node_ids
        self.nodes = sorted([fwd, out, state, *aliases, bwd, *grads], key=lambda x: ids[x.name])
        self.module_path = captured.module_paths[ids[fwd.name]]
        q, v = fwd.args[0].meta["val"], fwd.args[2].meta["val"]
        self.B, self.H, self.L, self.M = q.shape
        self.d, self.itemsize, self.traced_chunk = v.shape[-1], q.element_size(), int(fwd.args[3])

    def choices(self) -> list:
        """(name, chunk size or None for cumsum) per option; option 0 is the traced op."""
        sizes = sorted({min(c, self.L) for c in CHUNK_SIZES} - {min(self.traced_chunk, self.L)})
        return ([(f"chunked-{self.traced_chunk}", self.traced_chunk)] + [(f"chunked-{c}", c) for c in sizes]
                + [("cumsum", None)])

    # ---------------------------------------------------------------- costs
    def _seconds(self, chunk: int | None, backward: bool) -> float:
        """Roofline of one direction; the options' costs are scaled from the traced op's own."""
        B, H, L, M, d, prof = self.B, self.H, self.L, self.M, self.d, self.profile
        io = B * H * L * (2 * M + 2 * d) * self.itemsize
        if chunk is None:
            states = B * H * L * M * d * self.itemsize
            flops = 2 * B * H * L * M * d * (3 if backward else 2)
            moved, kernels = io + (5 if backward else 3) * states, 6 if backward else 3
        else:
            flops = 2 * B * H * L * (chunk * (M + d) + 2 * M * d) * (2 if backward else 1)
            moved, kernels = io, math.ceil(L / chunk) * (BACKWARD_KERNELS if backward else FORWARD_KERNELS)
        return max(flops / prof.peak("float32"), moved / prof.bandwidth) + kernels * prof.launch_overhead

    def _workspace(self, chunk: int, backward: bool) -> int:
        return linear_attention.workspace_bytes(self.fwd.args[0].meta["val"], chunk, backward=backward)

    def options(self) -> list[VariantOption]:
        g, ids = self.captured.graph, self.captured.node_ids
        members = [ids[x.name] for x in self.nodes]
        f, b, st = ids[self.fwd.name], ids[self.bwd.name], ids[self.state.name]
        traced = {True: self._seconds(self.traced_chunk, True), False: self._seconds(self.traced_chunk, False)}
        states = self.B * self.H * self.L * self.M * self.d * self.itemsize
        opts = []
        for name, chunk in self.choices():
            compute = [float(g.compute[i]) for i in members]
            memory = [int(g.memory[i]) for i in members]
            for k, i in enumerate(members):
                if i in (f, b):
                    compute[k] = float(g.compute[i]) * self._seconds(chunk, i == b) / traced[i == b]
                    # the traced op's workspace (capture counted it) becomes this option's
                    memory[k] += (self._workspace(chunk, i == b) if chunk is not None else 0) \
                        - self._workspace(self.traced_chunk, i == b)
            if chunk is None:
                for k, i in enumerate(members):
                    if i == st:
                        memory[k] = states                       # the prefix states, kept for the backward
                    elif i == f:   # + the outer products, − the final state
                        memory[k] += 2 * states - int(g.memory[st])
                    elif i == b:
                        memory[k] += 2 * states                  # q⊗g and its reversed cumsum
            opts.append(VariantOption(name, True, compute, memory))
        return opts

    # -------------------------------------------------------------- rewrite
    def rewrite(self, option: int, node, emit, state: dict):
        _, chunk = self.choices()[option]
        ops = torch.ops.recompiler
        if node is self.fwd:
            q, k, v = (emit.arg(a) for a in self.fwd.args[:3])
            state["fwd"] = (emit.call(ops.causal_prefix_cumsum.default, q, k, v) if chunk is None
                            else emit.call(ops.causal_prefix_attention.default, q, k, v, chunk))
            return state["fwd"]
        if node is self.out or node is self.state:
            return emit.call(operator.getitem, emit.arg(self.fwd), 0 if node is self.out else 1)
        if node in self.aliases:
            return emit.arg(self.state)
        if node is self.bwd:
            grad, q, k, v = (emit.arg(a) for a in self.bwd.args[:4])
            saved = emit.arg(self.state)
            return (emit.call(ops.causal_prefix_cumsum_backward.default, grad, q, k, v, saved) if chunk is None
                    else emit.call(ops.causal_prefix_attention_backward.default, grad, q, k, v, saved, chunk))
        return emit.call(operator.getitem, emit.arg(self.bwd), node.args[1])


def match(captured, profile) -> list[PrefixAttention]:
    """Every ``causal_prefix_attention`` op with its backward, when nothing else reads their internals."""
    from . import LOWERINGS

    entry = next(e for e in LOWERINGS if e.match is match)
    ops = captured.ops
    found = []
    for fwd in captured.fx_nodes:
        if ops[captured.node_ids[fwd.name]] != "causal_prefix_attention":
            continue
        items = {u.args[1]: u for u in fwd.users if u.target is operator.getitem}
        if len(items) != 2 or len(fwd.users) != 2:
            continue
        out, st = items[0], items[1]
        aliases, readers = through_aliases(captured, st)   # the state, through autograd's detach views
        if len(readers) != 1 or ops[captured.node_ids[readers[0].name]] != "causal_prefix_attention_backward":
            continue
        (bwd,) = readers
        if list(bwd.args[1:4]) != list(fwd.args[:3]) or bwd.args[4] not in [st, *aliases]:
            continue
        grads = [u for u in bwd.users if u.target is operator.getitem]
        if len(grads) != len(bwd.users) or not all(isinstance(x, fx.Node) for x in fwd.args[:3]):
            continue
        g = captured.graph
        if any(g.pinned[captured.node_ids[x.name]] for x in (fwd, bwd)):
            continue
        found.append(PrefixAttention(entry, captured, profile, fwd, out, st, aliases, bwd, grads))
    return found
