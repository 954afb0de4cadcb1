"""Softmax attention on the math path → exact chunked attention (:mod:`.chunked_attention`).

:func:`match` finds, in an AOTAutograd joint graph, every attention computed as

    S = bmm(q, kᵀ) → [scale: mul/div by a number] → [mask: add / where / masked_fill]
      → _softmax | _safe_softmax → [dropout: native_dropout, replayed] → O = bmm(P, v)

(views, expands, clones and dtype casts may sit between the steps) together with its whole
backward: ``bmm(Pᵀ, dO)`` for dv, ``bmm(dO, vᵀ)`` → dropout backward → ``_softmax_backward_data``
→ mask and scale backward → ``bmm(qᵀ, dS)`` for dkᵀ and ``bmm(dS, k)`` for dq. That covers
hand-written ``softmax(q @ kᵀ) @ v``, HF "eager" attention (GPT-2, BERT, LLaMA, ...) and the SDPA
math decomposition PyTorch uses for attention with dropout on CPU (q and k pre-scaled,
``_safe_softmax``). Anything else — other users of the probabilities (``output_attentions``), a
mask that needs a gradient, a fill value that is not −inf, dropout under ``rng="pin"`` — is no
match, and the graph keeps its own lowering.

Options (:meth:`SoftmaxAttention.options`): 0 is the graph as traced; then chunked attention at
up to three query-chunk sizes. Under a chunked option the output node O runs the chunked forward
(its output and row log-sum-exp are all it keeps), the first backward node of the group runs the
chunked backward (recomputing each chunk's scores from q, k, v, the mask and the dropout seed),
the three gradient nodes take its results, and every other node of the group is absorbed (no
compute, no bytes). The softmax node carries the forward's per-chunk workspace
(:func:`.chunked_attention.workspace_bytes`, live just before O needs it) and the backward node its
own, so a large chunk is not free.

With dropout the chunked op draws its own keep-masks from the replayed op's seed: a chunked plan
is as random as the original but not the same sample (DESIGN.md, random ops).

Example
-------
>>> import torch
>>> from recompiler.frontend.capture import capture
>>> class Attn(torch.nn.Module):
...     def forward(self, q, k, v):
...         return torch.softmax(q @ k.transpose(-1, -2) * 0.125, -1) @ v
>>> qkv = [torch.randn(2, 4, 64, 16, requires_grad=True) for _ in range(3)]
>>> cap = capture(Attn(), tuple(qkv))
>>> [g.kind for g in cap.graph.variant_groups]
['attention']
"""

from __future__ import annotations

import math
import operator

import torch
import torch.fx as fx

from ..graph import VariantOption
from . import Instance, chunked_attention, fused_option, split_group  # registers the chunked ops
from .matching import ALIASES, Matcher, NoMatch, number, op_name
from .matching import shape as shape_of

#: Query-chunk sizes offered (those below the query length, and the whole length once).
CHUNK_SIZES = (32, 128, 512)
#: Kernels per chunk, for the launch-overhead part of the cost.
FORWARD_KERNELS = 10
BACKWARD_KERNELS = 18

_PASS = {"view", "_unsafe_view", "reshape", "expand", "clone", "_to_copy", "alias", "contiguous"}
_MASKED_FILL = {"masked_fill.Scalar", "masked_fill.Tensor"}
_SCALES = {"mul.Tensor", "mul.Scalar", "div.Tensor", "div.Scalar"}


class SoftmaxAttention(Instance):
    """One matched attention: its nodes, their roles, and the shapes the chunked op needs."""

    def __init__(self, lowering, captured, profile, parts: dict):
        self.lowering = lowering
        self.captured = captured
        self.profile = profile
        self.__dict__.update(parts)
        ids = captured.node_ids
        self.nodes = sorted(parts["members"], key=lambda x: ids[x.name])
        self.module_path = captured.module_paths[ids[self.out.name]]

    # ---------------------------------------------------------------- costs
    def chunk_sizes(self) -> list[int]:
        L = self.q_len
        return sorted({min(c, L) for c in CHUNK_SIZES})

    def options(self) -> list[VariantOption]:
        cap = self.captured
        g, ids = cap.graph, cap.node_ids
        members = [ids[x.name] for x in self.nodes]
        fwd, bwd, _, _ = split_group(g, members)
        out, main, work = ids[self.out.name], ids[self.main.name], ids[self.softmax.name]
        exits = {ids[x.name] for x in (self.dq, self.dkt, self.dv)}
        fwd_cost = float(sum(g.compute[i] for i in fwd))
        bwd_cost = float(sum(g.compute[i] for i in bwd))
        recompute = fwd_cost - float(g.compute[out])      # scores, softmax, mask: again per chunk
        acc = torch.empty((), dtype=torch.promote_types(self.dtype, torch.float32)).element_size()
        lse_bytes = self.batch * self.q_len * acc
        grads = sum(int(g.memory[i]) for i in exits)
        launch = self.profile.launch_overhead
        opts = [VariantOption("original", True, [float(g.compute[i]) for i in members],
                              [int(g.memory[i]) for i in members])]
        for c in self.chunk_sizes():
            chunks = math.ceil(self.q_len / c)
            fwd_ws, bwd_ws = (chunked_attention.workspace_bytes(self.batch, self.q_len, self.k_len, c, self.dtype,
                                                                dropout=bool(self.dropout_p), backward=backward)
                              for backward in (False, True))
            opts.append(fused_option(
                f"chunked-{c}", g, members, head=out, main=main, exits=exits, work=work,
                head_compute=fwd_cost + chunks * FORWARD_KERNELS * launch, head_bytes=int(g.memory[out]) + lse_bytes,
                main_compute=bwd_cost + recompute + chunks * BACKWARD_KERNELS * launch, main_bytes=grads + bwd_ws,
                work_bytes=fwd_ws))
        return opts

    # -------------------------------------------------------------- rewrite
    def absorbed(self, node) -> bool:
        return not any(node is x for x in (self.out, self.main, self.dq, self.dkt, self.dv))

    def rewrite(self, option: int, node, emit, state: dict):
        chunk = self.chunk_sizes()[option - 1]
        aten = torch.ops.aten
        b4 = self.batch_shape
        L, S, D, Dv = self.q_len, self.k_len, self.head_dim, self.v_dim

        def inputs():
            q = emit.call(aten.reshape.default, emit.arg(self.q), [*b4, L, D])
            kt = emit.call(aten.reshape.default, emit.arg(self.kt), [*b4, D, S])
            k = emit.transpose(kt)
            v = emit.call(aten.reshape.default, emit.arg(self.v), [*b4, S, Dv])
            return q, k, v, self._mask(emit), emit.arg(self.seed) if self.seed is not None else None

        if node is self.out:
            q, k, v, mask, seed = inputs()
            res = emit.call(torch.ops.recompiler.chunked_attention.default, q, k, v, mask, self.scale, False,
                            self.dropout_p, seed, chunk)
            out4 = emit.call(operator.getitem, res, 0)
            state["lse"] = emit.call(operator.getitem, res, 1)
            return emit.call(aten.reshape.default, out4, list(self.out.meta["val"].shape))
        if node is self.main:
            q, k, v, mask, seed = inputs()
            grad = emit.call(aten.reshape.default, emit.arg(self.grad_out), [*b4, L, Dv])
            # the output as O holds it (not the op's own 4-d result, a second view of the same storage:
            # two saved aliases, and inductor may write a gradient over one while the other is still read)
            out4 = emit.call(aten.reshape.default, emit.arg(self.out), [*b4, L, Dv])
            state["grads"] = emit.call(torch.ops.recompiler.chunked_attention_backward.default, grad, q, k, v, mask,
                                       out4, state["lse"], self.scale,
                                       False, self.dropout_p, seed, chunk)
            return None
        if node is self.dq or node is self.dkt or node is self.dv:
            k = {self.dq: 0, self.dkt: 1, self.dv: 2}[node]
            x = emit.call(operator.getitem, state["grads"], k)
            if node is self.dkt:
                x = emit.transpose(x)
            x = emit.call(aten.reshape.default, x, list(node.meta["val"].shape))
            return emit.like(x, node)
        return None

    def _mask(self, emit):
        """The chunked op's ``attn_mask``: the additive mask as is; a −inf fill as the boolean
        "takes part" mask (the op turns it into a bias one chunk at a time)."""
        if self.mask is None:
            return None
        if self.mask_kind == "add":
            return emit.arg(self.mask)
        cond = emit.arg(self.mask)
        # where(cond, x, -inf) keeps x where cond holds; masked_fill(x, cond, -inf) drops it there
        return cond if self.mask_kind == "keep" else emit.call(torch.ops.aten.logical_not.default, cond)


# ------------------------------------------------------------------ matching
def match(captured, profile) -> list[SoftmaxAttention]:
    """Every softmax attention of the joint graph, forward and backward (module docstring)."""
    from . import LOWERINGS

    entry = next(e for e in LOWERINGS if e.match is match)
    found = []
    for node in captured.fx_nodes:
        if op_name(captured, node) in ("_softmax", "_safe_softmax"):
            parts = _Matcher(captured).run(node)
            if parts is not None:
                found.append(SoftmaxAttention(entry, captured, profile, parts))
    return found


class _Matcher(Matcher):
    """Walks out from one softmax node; raises NoMatch at the first thing it does not expect."""

    def passthrough(self, node) -> bool:
        name = self.op(node)
        if name == "expand":
            return shape_of(node) == shape_of(node.args[0])
        return name in _PASS

    def up(self, node):
        """From ``node`` towards its producers, through pass-through ops (taken into the group)."""
        while isinstance(node, fx.Node) and self.passthrough(node):
            self.members.add(node)
            node = node.args[0]
        return node

    def down(self, node):
        """From ``node`` to its single consumer in the same part (forward or backward), through pass-through
        ops; saved aliases are taken too. Readers in the backward are checked when the group is closed."""
        part = self.backward(node)
        while True:
            aliases = self.aliases(node)
            users = [u for u in node.users if u not in aliases and self.backward(u) == part]
            self.expect(len(users) == 1)
            (nxt,) = users
            if not self.passthrough(nxt):
                return nxt
            self.members.add(nxt)
            node = nxt

    def transpose_of(self, node, base) -> bool:
        """``node`` is ``base`` (3-d) with its last two dims swapped (a transpose view, or the
        ``permute(base, [0, 2, 1])`` inductor's joint-graph passes write for one)."""
        if node.args[0] is not base:
            return False
        if self.op(node) == "transpose.int":
            if {int(d) % 3 for d in node.args[1:3]} != {1, 2}:
                return False
        elif self.op(node) == "permute":
            if [int(d) % 3 for d in node.args[1]] != [0, 2, 1]:
                return False
        else:
            return False
        shape = shape_of(base)
        return shape_of(node) == shape[:-2] + (shape[-1], shape[-2])

    def _run(self, softmax):
        cap = self.cap
        self.expect(not self.backward(softmax))
        shape = shape_of(softmax)
        self.expect(3 <= len(shape) <= 4 and softmax.args[1] in (-1, len(shape) - 1))
        parts: dict = {"softmax": softmax, "mask": None, "mask_kind": None, "fill": None, "scale": 1.0,
                       "seed": None, "dropout_p": 0.0}
        self.members.add(softmax)
        # ---- forward, up: mask, scale, scores
        x = self.up(softmax.args[0])
        x = self._mask_op(x, parts)
        x = self.up(x)
        x = self._scale_op(x, parts)
        scores = self.up(x)
        self.expect(self.op(scores) == "bmm")
        self.members.add(scores)
        q, kt = scores.args
        # ---- forward, down: dropout, P @ v
        y = self.down(softmax)
        dropout = None
        if self.op(y) == "native_dropout":
            from ..frontend import rng

            self.expect(rng.original_op(y.target) is not None)   # pinned dropout keeps its own mask
            seed, _, p, train = y.args[:4]
            self.expect(bool(train) and number(p))
            parts.update(seed=seed, dropout_p=float(p))
            dropout = y
            self.members.add(y)
            items = {u.args[1]: u for u in y.users}
            self.expect(set(items) <= {0, 1} and 0 in items)
            self.members.update(items.values())
            parts["keep_mask"] = items.get(1)
            y = self.down(items[0])
        out = y
        self.expect(self.op(out) == "bmm" and out.args[0] in self.members | {softmax})
        probs, v = out.args
        self.members.add(out)
        # ---- backward: dv, dP
        grad_out = None
        dv = dp = None
        for t in probs.users:
            if self.transpose_of(t, probs):
                for u in t.users:
                    if self.op(u) == "bmm" and u.args[0] is t and self.backward(u):
                        self.members.update((t, u))
                        dv, grad_out = u, u.args[1]
        self.expect(dv is not None)
        for u in grad_out.users:
            if self.op(u) == "bmm" and u.args[0] is grad_out and self.transpose_of(u.args[1], v):
                dp = u
        self.expect(dp is not None)
        self.members.add(dp)
        # ---- backward: dP → dropout backward → softmax backward
        sb = self.down(dp)
        if dropout is not None:
            self.expect(self.op(sb) == "native_dropout_backward" and sb.args[1] is parts["keep_mask"])
            self.members.add(sb)
            sb = self.down(sb)
        self.expect(self.op(sb) == "_softmax_backward_data")
        saved = sb.args[1]
        while saved is not softmax:
            self.expect(saved in self.members and self.op(saved) in ALIASES)
            saved = saved.args[0]
        self.members.add(sb)
        # ---- backward: mask and scale backward → dS → dq, dkᵀ
        z = self.down_to_fork(sb)
        if parts["mask_kind"] in ("keep", "fill"):
            (z,) = z.users
            self.expect(self._is_mask_backward(z, parts))
            self.members.add(z)
            z = self.down_to_fork(z)
        if parts["scale_op"] is not None:
            (z,) = z.users
            self.expect(self.op(z) == parts["scale_op"] and z.args[0] in self.members
                        and z.args[1] == parts["scale_arg"])
            self.members.add(z)
            z = self.down_to_fork(z)
        ds = z
        dq = dkt = None
        users = list(ds.users)
        self.expect(len(users) == 2)
        for u in users:
            self.expect(self.op(u) == "bmm")
            if u.args[0] is ds and self.transpose_of(u.args[1], kt):
                dq = u
            elif u.args[1] is ds and self.transpose_of(u.args[0], q):
                dkt = u
        self.expect(dq is not None and dkt is not None)
        self.members.update((dq, dkt))
        # transposes of q, kᵀ and v made for the backward belong to the group when only it reads them
        for t in (dq.args[1], dkt.args[0], dp.args[1]):
            if all(u in self.members for u in t.users):
                self.members.add(t)
        parts.update(out=out, q=q, kt=kt, v=v, grad_out=grad_out, dq=dq, dkt=dkt, dv=dv)
        self._shapes(parts, shape)
        self._check_closed(parts)
        parts["members"] = self.members
        return parts

    def down_to_fork(self, node):
        """Like :meth:`down`, but stop at the node that feeds both gradient matmuls."""
        while len(node.users) == 1:
            (nxt,) = node.users
            if not self.passthrough(nxt):
                break
            self.members.add(nxt)
            node = nxt
        return node

    def _mask_op(self, x, parts):
        name = self.op(x)
        if name == "add.Tensor":
            a, b = x.args
            # the score side leads back to the scores matmul; the other side is the mask
            side, mask = (a, b) if self._reaches_bmm(a) else (b, a)
            self.expect(isinstance(mask, fx.Node) and self._reaches_bmm(side) and not self._reaches_bmm(mask))
            parts.update(mask=mask, mask_kind="add")
        elif name == "where.self":
            cond, a, b = x.args
            if self._reaches_bmm(a):
                side, fill, kind = a, b, "keep"
            else:
                side, fill, kind = b, a, "fill"
            self.expect(self._reaches_bmm(side) and self._minus_inf(fill) and _is_bool(cond))
            parts.update(mask=cond, mask_kind=kind, fill=self._fill_value(fill))
        elif name in _MASKED_FILL:
            side, cond, fill = x.args[:3]
            self.expect(self._reaches_bmm(side) and self._minus_inf(fill) and _is_bool(cond))
            parts.update(mask=cond, mask_kind="fill", fill=self._fill_value(fill))
        else:
            return x
        self.members.add(x)
        return side

    def _is_mask_backward(self, z, parts) -> bool:
        name = self.op(z)
        if name == "where.self":
            cond, a, b = z.args
            return cond is parts["mask"] and (self.zero(b) if parts["mask_kind"] == "keep" else self.zero(a))
        if name in _MASKED_FILL:
            return z.args[1] is parts["mask"] and self.zero(z.args[2])
        return False

    def zero(self, x) -> bool:
        """0, as a number or a ``scalar_tensor(0)`` node (taken into the group when only it reads it)."""
        if isinstance(x, fx.Node):
            if self.op(x) != "scalar_tensor" or not _zero(x.args[0]):
                return False
            if len(x.users) == 1:
                self.members.add(x)
            return True
        return _zero(x)

    def _scale_op(self, x, parts):
        name = self.op(x)
        parts["scale_op"] = None
        if name in _SCALES and isinstance(x.args[0], fx.Node) and number(x.args[1]):
            value = float(x.args[1])
            self.expect(value != 0.0)
            parts.update(scale=value if name.startswith("mul") else 1.0 / value, scale_op=name,
                         scale_arg=x.args[1])
            self.members.add(x)
            return x.args[0]
        return x

    def _reaches_bmm(self, node) -> bool:
        for _ in range(8):
            if not isinstance(node, fx.Node):
                return False
            name = self.op(node)
            if name == "bmm":
                return True
            if not (self.passthrough(node) or name in _SCALES):
                return False
            node = node.args[0]
        return False

    def _minus_inf(self, fill) -> bool:
        value = self._fill_value(fill)
        return isinstance(fill, fx.Node) or (number(value) and (value == float("-inf") or value <= -1e30))

    def _fill_value(self, fill):
        if isinstance(fill, fx.Node):
            # a constant fill node (scalar_tensor / full): only −inf-like constants are exact
            name = self.op(fill)
            args = fill.args
            value = args[0] if name == "scalar_tensor" else args[1] if name == "full" and len(args) > 1 else None
            self.expect(number(value) and (value == float("-inf") or value <= -1e30))
            if len(fill.users) == 1:
                self.members.add(fill)   # the rewrite passes a boolean mask: the fill is not needed
            return fill
        return fill

    def _shapes(self, parts, shape):
        qs, kts, vs = shape_of(parts["q"]), shape_of(parts["kt"]), shape_of(parts["v"])
        self.expect(len(qs) == 3 and len(kts) == 3 and len(vs) == 3)
        batch = shape[:-2]
        b4 = (1,) * (2 - len(batch)) + tuple(batch)
        self.expect(math.prod(b4) == qs[0] == kts[0] == vs[0])
        L, S = shape[-2:]
        self.expect(qs[1] == L and kts[2] == S and vs[1] == S and qs[2] == kts[1])
        val = parts["q"].meta["val"]
        self.expect(val.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16))
        parts.update(batch_shape=b4, batch=math.prod(b4), q_len=L, k_len=S, head_dim=qs[2], v_dim=vs[2],
                     dtype=val.dtype)
        if parts["mask"] is not None:
            ms = shape_of(parts["mask"])
            try:
                torch.broadcast_shapes(ms, tuple(shape))
            except RuntimeError:
                raise NoMatch from None
            self.expect(len(ms) <= 4)

    def _check_closed(self, parts):
        """Only the output and the three gradients may be used outside the group; pick the backward node."""
        cap = self.cap
        g, ids = cap.graph, cap.node_ids
        exits = {parts["out"], parts["dq"], parts["dkt"], parts["dv"]}
        for m in self.members:
            i = ids[m.name]
            self.expect(not g.pinned[i] and m.op == "call_function")
            if m not in exits:      # the output and the gradients may be the step's outputs, nothing else
                self.expect(not g.is_output[i] and all(u in self.members for u in m.users))
        member_ids = {ids[m.name] for m in self.members}
        deps = {d for m in self.members for d in g.deps[ids[m.name]] if d not in member_ids}
        need = max(deps | {ids[parts["out"].name]})
        first_exit = min(ids[x.name] for x in (parts["dq"], parts["dkt"], parts["dv"]))
        candidates = sorted(ids[m.name] for m in self.members
                            if g.is_backward[ids[m.name]] and m not in exits and need < ids[m.name] < first_exit)
        self.expect(bool(candidates))
        parts["main"] = cap.fx_nodes[candidates[0]]


def _is_bool(node) -> bool:
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    return isinstance(val, torch.Tensor) and val.dtype == torch.bool


def _zero(x) -> bool:
    return number(x) and float(x) == 0.0
