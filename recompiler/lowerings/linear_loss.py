"""Vocabulary projection + cross-entropy → the chunked loss (:mod:`.chunked_loss`).

:func:`match` finds, in the joint graph, the output projection feeding the loss:

    logits = mm(h, Wᵀ) | addmm(b, h, Wᵀ) → [views, fp32 upcast] → _log_softmax(dim=1)
           → nll_loss_forward(weight=None, mean | sum, ignore_index)

(HF's causal-LM loss shifts the labels, not the logits, so the rows are the hidden states' own)
with its backward: ``nll_loss_backward`` → ``_log_softmax_backward_data`` → [views] → the logits'
gradient G, read only by ``mm(G, W)`` (dh), ``mm(Gᵀ, h)`` or ``mm(hᵀ, G)`` (dW) and, with a bias,
``sum(G, 0)`` (db). A tied embedding weight is just W. Logits read anywhere else (returned to the
caller), class weights or label smoothing: no match.

Options: the graph as traced, and the chunked loss at up to three token-chunk sizes. Under a
chunked option the loss node runs the chunked forward (it keeps the per-token log-sum-exp), the
``nll_loss_backward`` node runs the chunked backward (recomputing each chunk's logits), the dh,
dW and db nodes take its results (through ``_log_softmax_backward_data``, kept as a zero-byte relay
so the backward's result tuple is not counted beside each gradient), and the rest of the group
is absorbed; the log-softmax node carries the forward's per-chunk workspace, the backward node
its own.

Example
-------
>>> import torch
>>> from recompiler.frontend.capture import capture
>>> class LM(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.body, self.head = torch.nn.Linear(8, 8), torch.nn.Linear(8, 500)
...     def forward(self, x, y):
...         return torch.nn.functional.cross_entropy(self.head(torch.tanh(self.body(x))), y)
>>> cap = capture(LM(), (torch.randn(64, 8), torch.randint(0, 500, (64,))), loss_fn=lambda out: out)
>>> [g.kind for g in cap.graph.variant_groups]
['loss']
"""

from __future__ import annotations

import math
import operator

import torch

from ..graph import VariantOption
from . import Instance, chunked_loss, fused_option, split_group
from .matching import Matcher, NoMatch, through_aliases
from .matching import shape as shape_of

#: Token-chunk sizes offered (those below the token count, and all tokens once).
CHUNK_SIZES = (256, 1024, 4096)
FORWARD_KERNELS, BACKWARD_KERNELS = 6, 10

_PASS = {"view", "_unsafe_view", "reshape", "_to_copy", "clone", "alias", "contiguous"}


class LinearLoss(Instance):
    """One matched projection + cross-entropy, forward and backward."""

    def __init__(self, lowering, captured, profile, parts):
        self.lowering, self.captured, self.profile = lowering, captured, profile
        self.__dict__.update(parts)
        ids = captured.node_ids
        self.nodes = sorted(parts["members"], key=lambda x: ids[x.name])
        self.module_path = captured.module_paths[ids[self.logits.name]]

    def chunk_sizes(self) -> list[int]:
        return sorted({min(c, self.tokens) for c in CHUNK_SIZES})

    def options(self) -> list[VariantOption]:
        g, ids = self.captured.graph, self.captured.node_ids
        members = [ids[x.name] for x in self.nodes]
        fwd, bwd, _, _ = split_group(g, members)
        loss, main, work = ids[self.loss.name], ids[self.main.name], ids[self.log_softmax.name]
        exits = {ids[x.name] for x in self.exits.values()}
        fwd_cost, bwd_cost = float(sum(g.compute[i] for i in fwd)), float(sum(g.compute[i] for i in bwd))
        acc = torch.empty((), dtype=torch.promote_types(self.dtype, torch.float32)).element_size()
        grads = sum(int(g.memory[i]) for i in exits)
        launch = self.profile.launch_overhead
        opts = [VariantOption("original", True, [float(g.compute[i]) for i in members],
                              [int(g.memory[i]) for i in members])]
        for c in self.chunk_sizes():
            chunks = math.ceil(self.tokens / c)
            fwd_ws, bwd_ws = (chunked_loss.workspace_bytes(self.tokens, self.vocab, c, self.dtype, backward=b)
                              for b in (False, True))
            # the gradients wait for the backward through a zero-byte relay, so the backward's tuple
            # (and its workspace) is not counted again beside each gradient it hands out; the
            # backward recomputes every chunk's logits: the projection's cost again
            opts.append(fused_option(
                f"chunked-{c}", g, members, head=loss, main=main, exits=exits, work=work,
                relay=ids[self.relay.name],
                head_compute=fwd_cost + chunks * FORWARD_KERNELS * launch,
                head_bytes=int(g.memory[loss]) + self.tokens * acc,            # + the per-token lse
                main_compute=bwd_cost + float(g.compute[ids[self.logits.name]]) + chunks * BACKWARD_KERNELS * launch,
                main_bytes=grads + bwd_ws, work_bytes=fwd_ws))
        return opts

    def absorbed(self, node) -> bool:
        return not any(node is x for x in (self.loss, self.main, *self.exits.values()))

    def rewrite(self, option: int, node, emit, state: dict):
        chunk = self.chunk_sizes()[option - 1]
        ops, aten = torch.ops.recompiler, torch.ops.aten

        def inputs():
            w = emit.transpose(emit.arg(self.weight_t))          # (H, V) view -> (V, H)
            bias = emit.arg(self.bias) if self.bias is not None else None
            return emit.arg(self.hidden), w, bias, emit.arg(self.labels)

        if node is self.loss:
            h, w, bias, labels = inputs()
            res = emit.call(ops.chunked_linear_cross_entropy.default, h, w, bias, labels, self.ignore_index,
                            self.reduction, chunk)
            state["lse"] = emit.call(operator.getitem, res, 1)
            return emit.like(emit.call(operator.getitem, res, 0), node)
        if node is self.main:
            h, w, bias, labels = inputs()
            state["grads"] = emit.call(ops.chunked_linear_cross_entropy_backward.default, emit.arg(self.grad_loss),
                                       h, w, bias, labels, state["lse"], self.ignore_index, self.reduction, chunk)
            return None
        for role, exit_node in self.exits.items():
            if node is exit_node:
                k = {"dh": 0, "dw": 1, "dwt": 1, "db": 2}[role]
                x = emit.call(operator.getitem, state["grads"], k)
                if role == "dwt":
                    x = emit.transpose(x)
                x = emit.call(aten.reshape.default, x, list(node.meta["val"].shape))
                return emit.like(x, node)
        return None


def match(captured, profile) -> list[LinearLoss]:
    """Every vocabulary projection + cross-entropy of the joint graph (module docstring)."""
    from . import LOWERINGS

    entry = next(e for e in LOWERINGS if e.match is match)
    found = []
    for node in captured.fx_nodes:
        if captured.ops[captured.node_ids[node.name]] == "nll_loss_forward":
            parts = _Matcher(captured).run(node)
            if parts is not None:
                found.append(LinearLoss(entry, captured, profile, parts))
    return found


class _Matcher(Matcher):
    """Walks out from one ``nll_loss_forward``; raises NoMatch at the first thing it does not expect."""

    def _run(self, nll):
        self.expect(not self.backward(nll))
        ls, labels, weight, reduction, ignore_index = nll.args[:5]
        self.expect(weight is None and reduction in (1, 2) and self.op(ls) == "_log_softmax")
        self.expect(ls.args[1] in (1, -1) and len(shape_of(ls)) == 2)
        self.members.update((nll, ls))
        items = {u.args[1]: u for u in nll.users}
        self.expect(set(items) <= {0, 1} and 0 in items and all(u.target is operator.getitem for u in nll.users))
        self.members.update(items.values())
        loss = items[0]
        # ---- forward, up: views and casts to the projection
        x = ls.args[0]
        while self.op(x) in _PASS and len(x.users) == 1:
            self.members.add(x)
            x = x.args[0]
        logits = x
        if self.op(logits) == "mm":
            hidden, weight_t = logits.args
            bias = None
        else:
            self.expect(self.op(logits) == "addmm" and logits.args[3:] == () and not logits.kwargs)
            bias, hidden, weight_t = logits.args[:3]
            self.expect(len(shape_of(bias)) == 1)
        self.members.add(logits)
        N, H = shape_of(hidden)
        self.expect(shape_of(weight_t)[0] == H and shape_of(ls) == (N, shape_of(weight_t)[1]))
        V = shape_of(weight_t)[1]
        # ---- backward: nll_loss_backward → _log_softmax_backward_data → G
        ls_aliases, readers = through_aliases(self.cap, ls)
        self.members.update(ls_aliases)
        nll_b = [u for u in readers if self.op(u) == "nll_loss_backward"]
        self.expect(len(nll_b) == 1)
        (main,) = nll_b
        grad_loss = main.args[0]
        self.expect(main.args[2] is labels and main.args[3] is None and main.args[4] == reduction
                    and main.args[5] == ignore_index and main.args[6] is items.get(1))
        self.members.add(main)
        (lsb,) = main.users
        self.expect(self.op(lsb) == "_log_softmax_backward_data" and (lsb.args[1] is ls or lsb.args[1] in ls_aliases))
        self.members.add(lsb)
        for r in readers:
            self.expect(r is nll or r is main or r is lsb)
        grad = lsb
        while len(grad.users) == 1 and self.op(next(iter(grad.users))) in _PASS:
            grad = next(iter(grad.users))
            self.members.add(grad)
        self.expect(shape_of(grad) == (N, V))
        # ---- backward: the readers of the logits' gradient
        exits: dict = {}
        for u in list(grad.users):
            name = self.op(u)
            if self.is_t(u) and len(u.users) == 1:
                (mm,) = u.users
                self.expect(self.op(mm) == "mm" and mm.args[0] is u and mm.args[1] is hidden)
                self.members.update((u, mm))
                exits["dw"] = mm
            elif name == "mm" and u.args[0] is grad:         # dh = G · W
                exits["dh"] = self._mm_with_transpose(u, u.args[1], weight_t, (N, H))
            elif name == "mm" and u.args[1] is grad:         # dWᵀ = hᵀ · G
                exits["dwt"] = self._mm_with_transpose(u, u.args[0], hidden, (H, V))
            elif name == "sum.dim_IntList" and bias is not None and list(u.args[1]) == [0]:
                self.members.add(u)
                exits["db"] = u
            else:
                raise NoMatch
        self.expect("dh" in exits and ("dw" in exits) != ("dwt" in exits) and ("db" in exits) == (bias is not None))
        self._check_closed(loss, list(exits.values()), main)
        self.expect(self.cap.node_ids[main.name] < self.cap.node_ids[lsb.name]
                    < min(self.cap.node_ids[x.name] for x in exits.values()))
        val = hidden.meta["val"]
        self.expect(val.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16))
        return {"members": self.members, "loss": loss, "log_softmax": ls, "logits": logits, "hidden": hidden,
                "weight_t": weight_t, "bias": bias, "labels": labels, "grad_loss": grad_loss, "main": main,
                "exits": exits, "relay": lsb, "tokens": N, "vocab": V, "dtype": val.dtype, "ignore_index": int(ignore_index),
                "reduction": int(reduction)}

    def _mm_with_transpose(self, mm, other, base, shape):
        """``mm`` whose other operand is ``base`` transposed (taken too when only ``mm`` reads it)."""
        self.expect(self.is_t(other) and other.args[0] is base and shape_of(mm) == shape)
        self.members.add(mm)
        if len(other.users) == 1:
            self.members.add(other)
        return mm

    def _check_closed(self, loss, grads, main):
        """Only the loss and the gradients leave the group; the backward node comes after all it reads."""
        g, ids = self.cap.graph, self.cap.node_ids
        exits = {loss, *grads}
        for m in self.members:
            i = ids[m.name]
            self.expect(not g.pinned[i] and m.op == "call_function")
            if m not in exits:
                self.expect(not g.is_output[i] and all(u in self.members for u in m.users))
        member_ids = {ids[m.name] for m in self.members}
        deps = {d for m in self.members for d in g.deps[ids[m.name]] if d not in member_ids}
        self.expect(max(deps | {ids[loss.name]}) < ids[main.name] < min(ids[x.name] for x in grads))
