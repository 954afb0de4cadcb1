"""Linear layers → WTA-CRS sampled weight gradients (:mod:`.wta_crs`): an approximate lowering.

A linear layer keeps its input X only for its weight gradient ∇W = ∇Yᵀ X. :func:`match` finds,
in the joint graph,

    X = view(h)  (2-D, h computed by the step: not a graph input)
    Y = addmm(b, X, Wᵀ) | mm(X, Wᵀ)      with W a 2-D graph input (a parameter)
    ∇W = mm(Gᵀ, X)                        in the backward, G the output's gradient

where X is read by those two nodes only. Under an option at ratio r, the view X stands for a
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

_TRANSPOSES = {"t", "permute"}


def _is_transpose(node) -> bool:
    if not isinstance(node, torch.fx.Node) or node.op != "call_function":
        return False
    name = getattr(node.target, "_opname", str(node.target))
    if name == "t":
        return True
    return name == "permute" and list(node.args[1]) == [1, 0]


class SampledLinear(Instance):
    """One linear layer whose weight gradient may be estimated from sampled input rows."""

    def __init__(self, lowering, captured, profile, *, x2d, forward, weight_grad, grad_t, ratios):
        self.lowering, self.captured, self.profile = lowering, captured, profile
        self.x2d, self.forward, self.weight_grad, self.grad_t = x2d, forward, weight_grad, grad_t
        self.ratios = tuple(ratios)
        ids = captured.node_ids
        self.nodes = sorted([x2d, forward, weight_grad], key=lambda x: ids[x.name])
        self.module_path = captured.module_paths[ids[forward.name]]
        val = x2d.meta["val"]
        self.rows, self.d_in = int(val.shape[0]), int(val.shape[1])
        self.d_out = int(weight_grad.meta["val"].shape[0])
        self.dtype = val.dtype

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
            row = {
                x: (sample_s, sample_bytes, [base]),
                f: (float(g.compute[f]), int(g.memory[f]), [d for d in g.deps[f] if d != x]),
                b: (grad_s, int(g.memory[b]), sorted({d for d in g.deps[b] if d not in (x, base)} | {x})),
            }
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
        sample = emit.arg(self.x2d)
        rows = emit.call(operator.getitem, sample, 0)
        index = emit.call(operator.getitem, sample, 1)
        # Gᵀ[:, index] as (G[index])ᵀ: aten.index is a core op inductor lowers (index_select is
        # decomposed before inductor sees a graph, so emitting it would be an op it cannot take)
        picked = emit.transpose(emit.call(aten.index.Tensor, emit.arg(self.grad_t.args[0]), [index]))
        return emit.like(emit.call(aten.mm.default, picked, rows), node)


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
        grad_t, x2d = b.args
        if not (_is_transpose(grad_t) and isinstance(x2d, torch.fx.Node)) or g.is_backward[ids[x2d.name]]:
            continue
        if captured.kinds[ids[x2d.name]] != "view" or x2d.target is operator.getitem:
            continue
        val = x2d.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.dim() != 2 or not val.dtype.is_floating_point:
            continue
        users = list(x2d.users)
        forward = [u for u in users if u is not b]
        if len(users) != 2 or len(forward) != 1:
            continue
        f = forward[0]
        if f.target is torch.ops.aten.addmm.default and len(f.args) == 3 and f.args[1] is x2d:
            weight_t = f.args[2]
        elif f.target is torch.ops.aten.mm.default and f.args[0] is x2d:
            weight_t = f.args[1]
        else:
            continue
        if f.kwargs or not _is_transpose(weight_t) or weight_t.args[0].op != "placeholder":
            continue
        inst = SampledLinear(entry, captured, profile, x2d=x2d, forward=f, weight_grad=b, grad_t=grad_t,
                             ratios=ratios)
        w = weight_t.args[0].meta.get("val")
        if w is None or tuple(b.meta["val"].shape) != tuple(w.shape) or g.is_input[inst._base_id()]:
            continue   # not W's own gradient; or X is a graph input, alive through the step anyway
        found.append(inst)
    return found
