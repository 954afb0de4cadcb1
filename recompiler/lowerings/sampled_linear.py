"""Linear layers → WTA-CRS sampled weight gradients (:mod:`.wta_crs`): an approximate lowering.

A linear layer keeps its input X only for its weight gradient ∇W = ∇Yᵀ X. :func:`match` finds,
in the joint graph,

    X = view(h)  (2-D, h computed by the step: not a graph input)
    Y = addmm(b, X, Wᵀ) | mm(X, Wᵀ)      with W a 2-D graph input (a parameter)
    ∇W = mm(Gᵀ, X)                        in the backward, G the output's gradient

or, for weights stored (in, out) as in HF's GPT-2 ``Conv1D``, ``Y = addmm(b, X, W) | mm(X, W)``
with ``∇W = mm(Xᵀ, G)`` — where X is read by those two nodes only (through Xᵀ in the second form). Under an option at ratio r, the view X stands for a
small node instead: ``wta_crs_sample(h viewed, r, seed)``, the k = ⌈r·N⌉ sampled rows of X
(already scaled) and their indices, k·D_in values plus k int64. ∇W becomes
``Gᵀ[:, index] @ rows``, reading that node instead of X, and Y reads h itself, so h no longer
has to live until the backward. ∇X and ∇b are untouched (exact); ∇W is the unbiased WTA-CRS
estimate, so the option is ``exact: false``: a solver takes it only with ``allow_approx``.

The sampling seed is drawn once per step (``recompiler::draw_seed``, as replayed random ops
draw theirs), so a recomputed sample takes the same rows. Instances are found only when the
capture is given ratios (``capture(..., approx_ratios=(0.3, 0.1))``; ``recompile plan
--allow-approx``), so a plan made without approximation never sees these groups.
Linears fed a graph input directly (the first layer: its input lives through the step anyway)
or a 2-D activation with no view in between are left alone.

Example
-------
>>> import torch
>>> from recompiler.frontend.capture import capture
>>> m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
>>> cap = capture(m, (torch.randn(2, 32, 8),), approx_ratios=(0.3, 0.1))
>>> [(g.kind, [o.name for o in g.options]) for g in cap.graph.variant_groups]
[('linear', ['original', 'wta-crs-0.3', 'wta-crs-0.1'])]
"""

from __future__ import annotations

import operator

import torch

from ..frontend import costs
from ..graph import VariantOption
from . import Instance
from . import wta_crs

#: The ratios offered when the caller allows approximation without naming any.
DEFAULT_RATIOS = (0.3, 0.1)
#: Kernels one sample runs (row norms, sort, draws, gather).
SAMPLE_KERNELS = 4


def _is_transpose(node) -> bool:
    if not isinstance(node, torch.fx.Node) or node.op != "call_function":
        return False
    name = getattr(node.target, "_opname", str(node.target))
    if name == "t":
        return True
    return name == "permute" and list(node.args[1]) == [1, 0]


class SampledLinear(Instance):
    """One linear layer whose weight gradient may be estimated from sampled input rows."""

    def __init__(self, lowering, captured, profile, *, x2d, forward, weight_grad, grad, x_t=None, ratios):
        self.lowering, self.captured, self.profile = lowering, captured, profile
        self.x2d, self.forward, self.weight_grad, self.grad = x2d, forward, weight_grad, grad
        self.x_t = x_t   # Xᵀ, read by ∇W = mm(Xᵀ, G) (weights stored (in, out)); None: ∇W = mm(Gᵀ, X)
        self.ratios = tuple(ratios)
        ids = captured.node_ids
        self.nodes = sorted([x for x in (x2d, forward, weight_grad, x_t) if x is not None], key=lambda x: ids[x.name])
        self.module_path = captured.module_paths[ids[forward.name]]
        val = x2d.meta["val"]
        self.rows, self.d_in = int(val.shape[0]), int(val.shape[1])
        self.d_out = int(grad.meta["val"].shape[1])
        self.dtype = val.dtype

    def absorbed(self, node) -> bool:
        return node is self.x_t   # ∇W reads the sample itself

    def materialises(self, node) -> bool:
        # under an option the view stands for a real tensor (the sample), not an alias of h
        return node is self.x2d

    def options(self) -> list[VariantOption]:
        g, ids = self.captured.graph, self.captured.node_ids
        x, f, b = (ids[n.name] for n in (self.x2d, self.forward, self.weight_grad))
        base = self._base_id()
        item = torch.empty((), dtype=self.dtype).element_size()
        dtype = costs._dtype_name(self.x2d.meta["val"])
        prof = self.profile
        members = [ids[n.name] for n in self.nodes]
        original = VariantOption("original", True, [float(g.compute[i]) for i in members],
                                 [int(g.memory[i]) for i in members])
        opts = [original]
        for r in self.ratios:
            k = wta_crs.sample_count(self.rows, r)
            sample_bytes = k * self.d_in * item + k * 8
            sample_s = (costs.roofline(prof, flops=2 * self.rows * self.d_in,
                                       bytes_moved=(self.rows + k) * self.d_in * item, dtype=dtype)
                        + (SAMPLE_KERNELS - 1) * prof.launch_overhead)
            grad_s = (costs.roofline(prof, flops=2 * self.d_out * k * self.d_in,
                                     bytes_moved=(self.d_out * k + k * self.d_in + self.d_out * self.d_in) * item,
                                     dtype=dtype)
                      + costs.roofline(prof, flops=0, bytes_moved=2 * self.d_out * k * item, dtype=dtype))
            xt = ids[self.x_t.name] if self.x_t is not None else None
            row = {
                x: (sample_s, sample_bytes, [base]),
                f: (float(g.compute[f]), int(g.memory[f]), [d for d in g.deps[f] if d != x]),
                b: (grad_s, int(g.memory[b]), sorted({d for d in g.deps[b] if d not in (x, base, xt)} | {x})),
            }
            if xt is not None:
                row[xt] = (0.0, 0, [])
            opts.append(VariantOption(f"wta-crs-{r:g}", False, [row[i][0] for i in members],
                                      [row[i][1] for i in members], [row[i][2] for i in members]))
        return opts

    def _base_id(self) -> int:
        g, ids = self.captured.graph, self.captured.node_ids
        x = ids[self.x2d.name]
        # the view's root: the one non-view dep of the view (capture makes a view depend on it)
        roots = [d for d in g.deps[x] if self.captured.kinds[d] != "view"]
        return roots[0]

    def rewrite(self, option: int, node, emit, state: dict):
        ratio = self.ratios[option - 1]
        aten = torch.ops.aten

        def fresh_view():
            # X again, from h: what the forward matmul reads (the view's own occurrence is the sample)
            return emit.call(self.x2d.target, emit.arg(self.x2d.args[0]), *self.x2d.args[1:])

        if node is self.x2d:
            if "seed" not in state:   # once per step: a recomputed sample takes the same rows
                state["seed"] = emit.call(torch.ops.recompiler.draw_seed.default)
            return emit.call(torch.ops.recompiler.wta_crs_sample.default, fresh_view(), float(ratio), state["seed"])
        if node is self.forward:
            args = [fresh_view() if a is self.x2d else (emit.arg(a) if isinstance(a, torch.fx.Node) else a)
                    for a in node.args]
            return emit.call(node.target, *args, **node.kwargs)
        if node is self.x_t:
            return None
        sample = emit.arg(self.x2d)
        rows = emit.call(operator.getitem, sample, 0)
        index = emit.call(operator.getitem, sample, 1)
        # G[index] (aten.index is a core op inductor lowers; index_select is decomposed before
        # inductor sees a graph, so emitting it would be an op it cannot take)
        picked = emit.call(aten.index.Tensor, emit.arg(self.grad), [index])
        if self.x_t is None:   # ∇W = G[index]ᵀ · rows
            out = emit.call(aten.mm.default, emit.transpose(picked), rows)
        else:                  # ∇W = rowsᵀ · G[index]
            out = emit.call(aten.mm.default, emit.transpose(rows), picked)
        return emit.like(out, node)


def match(captured, profile) -> list[SampledLinear]:
    """Every linear of the module docstring's shape, when the capture was given ratios."""
    from . import LOWERINGS

    ratios = tuple(getattr(captured, "approx_ratios", ()) or ())
    if not ratios:
        return []
    entry = next(e for e in LOWERINGS if e.match is match)
    ids, g = captured.node_ids, captured.graph
    found = []
    for b in captured.fx_nodes:
        if b.target is not torch.ops.aten.mm.default or not g.is_backward[ids[b.name]]:
            continue
        parts = _weight_grad_parts(captured, b)
        if parts is None:
            continue
        inst = SampledLinear(entry, captured, profile, weight_grad=b, ratios=ratios, **parts)
        if not g.is_input[inst._base_id()]:   # X a graph input: alive through the step anyway
            found.append(inst)
    return found


def _weight_grad_parts(captured, b):
    """``{x2d, forward, grad, x_t}`` when ``b`` is a linear's weight gradient (module docstring), else None."""
    ids, g = captured.node_ids, captured.graph
    first, second = b.args
    if not (_is_transpose(first) and isinstance(second, torch.fx.Node)):
        return None
    inner = first.args[0]
    if g.is_backward[ids[inner.name]]:     # ∇W = mm(Gᵀ, X): W stored (out, in), Y = X · Wᵀ
        x2d, grad, x_t, weight_transposed = second, inner, None, True
    else:                                  # ∇W = mm(Xᵀ, G): W stored (in, out), Y = X · W
        x2d, grad, x_t, weight_transposed = inner, second, first, False
    if g.is_backward[ids[x2d.name]] or not g.is_backward[ids[grad.name]]:
        return None
    if captured.kinds[ids[x2d.name]] != "view" or x2d.target is operator.getitem:
        return None
    val, gval = x2d.meta.get("val"), grad.meta.get("val")
    if not (isinstance(val, torch.Tensor) and isinstance(gval, torch.Tensor) and val.dim() == gval.dim() == 2
            and val.dtype.is_floating_point and val.shape[0] == gval.shape[0]):
        return None
    # X is read by the forward matmul and by ∇W (through Xᵀ, which only ∇W reads) and by nothing else
    readers = [u for u in x2d.users if u is not (x_t if x_t is not None else b)]
    if len(x2d.users) != 2 or len(readers) != 1 or (x_t is not None and list(x_t.users) != [b]):
        return None
    f = readers[0]
    if f.kwargs:
        return None
    if f.target is torch.ops.aten.addmm.default and len(f.args) == 3 and f.args[1] is x2d:
        weight = f.args[2]
    elif f.target is torch.ops.aten.mm.default and f.args[0] is x2d:
        weight = f.args[1]
    else:
        return None
    if weight_transposed:
        if not _is_transpose(weight):
            return None
        weight = weight.args[0]
    if not (isinstance(weight, torch.fx.Node) and weight.op == "placeholder"):
        return None
    w = weight.meta.get("val")
    if w is None or tuple(b.meta["val"].shape) != tuple(w.shape):
        return None   # not W's own gradient
    return {"x2d": x2d, "forward": f, "grad": grad, "x_t": x_t}
