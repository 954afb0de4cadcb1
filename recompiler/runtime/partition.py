"""Plan → forward and backward fx graphs: the ``partition_fn`` side of AOTAutograd.

Given the joint graph a ``partition_fn`` receives and a schedule over its nodes
(CostGraph ids from :func:`recompiler.frontend.capture.lower`, one per fx node):

1. the joint graph is rebuilt in schedule order, one fx node per *occurrence*: the
   first occurrence is the node itself, a later one a copy (a recomputation) whose
   arguments are the latest occurrences of its inputs, exactly as ``simulate`` reads
   the schedule;
2. the schedule splits where the backward begins (the first node that reads a
   tangent); the forward part, plus whatever the forward outputs need, is the
   forward graph; forward nodes scheduled after the split run in the backward graph;
3. the *saved* values are the forward-part occurrences (parameters and inputs
   included) that a backward-part occurrence reads;
4. PyTorch's own extractor (``_extract_fwd_bwd_modules``, which also keeps
   AOTAutograd's output conventions) cuts the rebuilt graph into the two modules.
   It copies nodes in graph order, so both graphs follow the schedule; fx's code
   generation frees every value after its last use.

Example
-------
``partition_with_schedule(joint, num_fwd_outputs=1, schedule=plan.schedule)`` returns
``(fw_module, bw_module)``; :mod:`recompiler.runtime.backend` calls it from its
``partition_fn``.
"""

from __future__ import annotations

import contextlib
import operator
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.fx as fx
from torch._functorch.partitioners import _extract_fwd_bwd_modules

from ..errors import RecompilerError
from ..frontend.capture import depends_on_tangents, is_random, is_tangent, is_view, ordered_nodes


class PlanMismatch(RecompilerError):
    """A plan's schedule does not fit the joint graph it is applied to."""


@dataclass
class Partitioned:
    """The two modules, and what was saved across the boundary (for reports and tests)."""

    fw_module: fx.GraphModule
    bw_module: fx.GraphModule
    saved: list[str]
    recomputed: int


def partition_with_schedule(joint: fx.GraphModule, *, num_fwd_outputs: int, schedule: Sequence[int],
                            rewrites: dict | None = None, fused: set | None = None) -> Partitioned:
    """Cut ``joint`` into forward and backward modules that execute ``schedule``.

    ``schedule`` holds the ids :func:`~recompiler.frontend.capture.lower` gives the nodes of
    ``joint`` (their positions in :func:`~recompiler.frontend.capture.ordered_nodes`).
    ``rewrites`` (from :func:`recompiler.lowerings.rewrites`) maps the nodes of the lowerings a
    plan chose to what each occurrence emits instead of the node itself. ``fused`` (under
    inductor: :func:`recompiler.frontend.fusion.rederived`) are the joint nodes inductor inlines
    into their readers: one read in the backward part is computed there again from its inputs,
    never saved, as the fusion cost model (its deferred reads) assumes.
    """
    nodes = ordered_nodes(joint)
    (out_node,) = joint.graph.find_nodes(op="output")
    n = len(nodes)
    # The backward starts at the first node that needs a tangent (capture.lower makes those
    # depend on the forward outputs, so every forward output is computed before it).
    starts_backward = depends_on_tangents(nodes)
    schedule = [int(v) for v in schedule]
    if any(not 0 <= v < n for v in schedule):
        raise PlanMismatch(f"the plan's schedule names node ids outside this graph's {n} nodes")

    rewrites = rewrites or {}
    # A node a lowering absorbed emits nothing and may sit anywhere in the schedule: it does not
    # start the backward (the node that runs the lowering's backward is not absorbed).
    split = next((t for t, v in enumerate(schedule)
                  if starts_backward[v] and not getattr(rewrites.get(nodes[v]), "absorbed", False)), len(schedule))
    random_order = [v for v in schedule if is_random(nodes[v])]
    if random_order != sorted(random_order):
        # Every solver keeps pinned nodes in their original order; a hand-made plan may not.
        warnings.warn("recompiler: this plan runs random ops (dropout) in another order than the model, "
                      "so their random numbers differ from an eager step with the same seed", stacklevel=2)
    b = _Rebuilder(nodes, rewrites, fused)
    outputs = list(out_node.args[0])
    fwd_leaves = [a for a in torch.utils._pytree.tree_leaves(outputs[:num_fwd_outputs]) if isinstance(a, fx.Node)]
    fwd_resolved: dict[fx.Node, fx.Node] | None = None
    for t, v in enumerate(schedule):
        if t == split:
            # the forward graph returns the occurrences computed before the backward starts: a
            # later recomputation of a forward output must not be pulled into the forward
            fwd_resolved = {a: b.arg(a, False) for a in fwd_leaves if a in b.latest}
        node = nodes[v]
        if node.op in ("placeholder", "get_attr"):
            raise PlanMismatch(f"the plan schedules input {node.name!r}, which is never computed")
        # a rewritten node reads what its lowering needs (checked by Emitter.arg), not its own inputs
        missing = [] if node in b.rewrites else [a.name for a in node.all_input_nodes if a not in b.latest]
        if missing:
            raise PlanMismatch(f"step {t}: {node.name!r} needs {missing[0]!r}, not computed before it")
        b.run(node, backward_part=t >= split)
    new, latest, occurrence_part, recomputed = b.graph, b.latest, b.part, b.recomputed
    unscheduled = [x.name for x in nodes if x not in latest]
    if unscheduled:
        raise PlanMismatch(f"the plan never computes {unscheduled[0]!r} (and {len(unscheduled) - 1} more)")
    fwd_resolved = fwd_resolved or {}
    for a in fwd_leaves:
        if a not in fwd_resolved:  # no backward part, or not computed before it
            fwd_resolved[a] = b.arg(a, False)
    new_out = new.output(type(out_node.args[0])(
        [fx.node.map_arg(x, fwd_resolved.__getitem__) for x in outputs[:num_fwd_outputs]]
        + [fx.node.map_arg(x, lambda a: b.arg(a, True)) for x in outputs[num_fwd_outputs:]]))
    new_out.meta = dict(out_node.meta)

    # Forward outputs must be produced by the forward graph, whatever the schedule says.
    fwd_outs = [a for a in fx.node.map_aggregate(new_out.args[0][:num_fwd_outputs], lambda a: a)
                if isinstance(a, fx.Node)]
    stack = list(fwd_outs)
    while stack:
        x = stack.pop()
        if occurrence_part.get(x):
            occurrence_part[x] = False
            stack.extend(x.all_input_nodes)

    # Pin every occurrence to its part: PyTorch's extractor would otherwise also copy into the
    # backward any forward node whose inputs happen to be available there (running it twice).
    for x, backward_part in occurrence_part.items():
        x.meta["partitioner_tag"] = "must_be_in_backward" if backward_part else "must_be_in_forward"

    saved: dict[fx.Node, None] = {}
    for x in new.nodes:
        if occurrence_part.get(x):
            for a in x.all_input_nodes:
                if (occurrence_part.get(a) is False) or (a.op in ("placeholder", "get_attr") and not is_tangent(a)):
                    saved.setdefault(a, None)
    for a in fx.node.map_aggregate(new_out.args[0][num_fwd_outputs:], lambda a: a):
        # a gradient computed in the forward part (or an input passed through) is saved too
        if isinstance(a, fx.Node) and not occurrence_part.get(a, True) and not is_tangent(a):
            saved.setdefault(a, None)

    rebuilt = fx.GraphModule(joint, new)
    saved_values = [x for x in saved if not _is_symbolic(x)]
    saved_sym = [x for x in saved if _is_symbolic(x)]
    not_tensors = [x.name for x in saved_values if not isinstance(x.meta.get("val"), torch.Tensor)]
    if not_tensors:   # AOTAutograd would fail deep inside its runtime wrapper on the first step
        raise PlanMismatch(f"the partition would save {not_tensors[0]!r}, which is not a tensor, across the "
                           "forward/backward boundary (a bug in recompiler's partitioner: please report it)")
    fw, bw = _extract_fwd_bwd_modules(rebuilt, saved_values, saved_sym, num_fwd_outputs=num_fwd_outputs)
    return Partitioned(fw, bw, [x.name for x in saved_values + saved_sym], recomputed)


class _Rebuilder:
    """Builds the joint graph again, one fx node per schedule occurrence.

    Arguments are the latest occurrences of their inputs, as ``simulate`` reads the schedule,
    with two rules that keep the real tensors' lifetimes those the schedule promises:

    * an element of a multi-output op (``getitem``) belongs with its producer's occurrence: taken
      once per producer run, so the tuple itself is never saved across the boundary;
    * a view is re-derived from the latest occurrence of its base before use: the CostGraph
      makes a view's consumers depend on its base, so once the base was recomputed, a stale
      view must not keep the old base alive; and in the backward part, so that the base is
      saved, never the view. Views cost no compute and no memory;
    * a ``fused`` node (one inductor inlines into its readers) is re-derived before use when one
      of its inputs was recomputed since (inductor runs it inside the reader, on the inputs it
      was given, so a stale copy would keep old occurrences alive: the cost model's deferred
      reads are of the latest ones), and when it is read in the backward part from its
      forward occurrence (inductor would write it out as a saved buffer, where the cost model
      keeps its inputs alive instead).
    """

    def __init__(self, nodes: list[fx.Node], rewrites: dict | None = None, fused: set | None = None):
        self.rewrites = rewrites or {}
        self.fused = fused or set()
        self.read_by: dict[fx.Node, dict[fx.Node, fx.Node]] = {}  # fused occurrence -> {input: occurrence read}
        self.graph = fx.Graph()
        self.latest: dict[fx.Node, fx.Node] = {}
        self.part: dict[fx.Node, bool] = {}       # new node -> belongs to the backward part
        self.based_on: dict[fx.Node, fx.Node] = {}  # new view -> the base occurrence it aliases
        self.elements: dict[tuple, fx.Node] = {}  # (producer occurrence, index) -> its getitem
        self.root: dict[fx.Node, fx.Node] = {}
        self.seen: set[fx.Node] = set()
        self.recomputed = 0
        for node in nodes:
            if node.op in ("placeholder", "get_attr"):
                # Placeholders and constants first, in their original order (AOTAutograd's convention).
                self.latest[node] = self.graph.node_copy(node)
            base = _view_base(node)
            if getattr(self.rewrites.get(node), "materialises", False):
                base = None   # a lowering makes this view a tensor of its own (a WTA-CRS sample)
            self.root[node] = self.root[base] if base is not None else node

    def _copy(self, node: fx.Node, backward_part: bool) -> fx.Node:
        read: dict[fx.Node, fx.Node] = {}

        def occurrence(a: fx.Node) -> fx.Node:
            read[a] = self.arg(a, backward_part)
            return read[a]

        copy = self.graph.node_copy(node, occurrence)
        if node in self.fused:
            self.read_by[copy] = read
        copy.meta = dict(copy.meta)
        copy.meta["recompiler_origin"] = node.name  # the joint node this occurrence runs
        root = self.root[node]
        if root is not node:
            self.based_on[copy] = self.latest[root]
        return copy

    def arg(self, a: fx.Node, backward_part: bool) -> fx.Node:
        """The occurrence of ``a`` to read now (a stale view or fused node is derived again)."""
        root = self.root[a]
        if root in self.fused and ((backward_part and self.part.get(self.latest[root]) is False)
                                   or self._stale(root)):
            self.run(root, backward_part, rederive=True)
        x = self.latest[a]
        if root is a or root.op in ("placeholder", "get_attr"):
            return x
        if self.based_on.get(x) is self.latest[root] and not (backward_part and self.part.get(x) is False):
            return x
        # a view is never saved: its base is, and the backward takes the view again (inductor
        # assumes a saved tensor starts where its storage does, so a view's offset would be lost)
        return self.run(a, backward_part, rederive=True)

    def _stale(self, a: fx.Node) -> bool:
        """Did the latest occurrence of the fused node ``a`` read an input that was recomputed since?"""
        for j, occ in self.read_by.get(self.latest[a], {}).items():
            if occ is not self.latest[j] or (j in self.fused and self._stale(j)):
                return True
            root = self.root[j]
            if root is not j and root.op not in ("placeholder", "get_attr") and \
                    self.based_on.get(occ) is not self.latest[root]:
                return True
        return False

    def run(self, node: fx.Node, backward_part: bool, rederive: bool = False) -> fx.Node:
        if node in self.rewrites:
            out = self.rewrites[node](Emitter(self, node, backward_part))
            if node in self.seen and out is not None:
                self.recomputed += 1
            self.seen.add(node)
            self.latest[node] = out
            return out
        if node.target is operator.getitem:
            producer = self.arg(node.args[0], backward_part)
            key = (producer, node.args[1])
            if key not in self.elements:
                self.elements[key] = self._copy(node, backward_part)
                self.part[self.elements[key]] = self.part.get(producer, backward_part)
            out = self.elements[key]
        else:
            out = self._copy(node, backward_part)
            self.part[out] = backward_part
            if node in self.seen and not rederive:
                self.recomputed += 1
                out.meta["recompiler_recompute"] = True
        self.seen.add(node)
        self.latest[node] = out
        return out


class Emitter:
    """What a lowering's rewrite uses to emit the nodes that replace one occurrence of ``node``.

    ``arg(x)`` is the occurrence of the joint node ``x`` to read now; ``call(target, *args)``
    appends a call (its fake value computed, so the extractor and later passes see shapes);
    ``like(x, node)`` gives ``x`` the strides of the node it replaces.
    """

    def __init__(self, rebuilder: "_Rebuilder", node: fx.Node, backward_part: bool):
        self._b, self._node, self._backward = rebuilder, node, backward_part

    def arg(self, x: fx.Node) -> fx.Node:
        if self._b.latest.get(x) is None:
            raise PlanMismatch(f"{self._node.name!r} (rewritten by a lowering) needs {x.name!r}, not computed "
                               "before it")
        return self._b.arg(x, self._backward)

    def call(self, target, *args, **kwargs) -> fx.Node:
        node = self._b.graph.call_function(target, args, kwargs)
        node.meta["val"] = _fake_value(target, args, kwargs, like=self._node)
        node.meta["recompiler_origin"] = self._node.name
        self._b.part[node] = self._backward
        if target is operator.getitem and isinstance(args[0], fx.Node) and args[0] in self._b.part:
            # as for the graph's own elements: taken in its producer's part, so a tuple never
            # crosses the boundary (an element taken again in the backward is saved instead)
            self._b.part[node] = self._b.part[args[0]]
        return node

    def transpose(self, x: fx.Node) -> fx.Node:
        """``x`` with its last two dims swapped, as a ``permute`` (a core op: the graphs inductor
        compiles are already decomposed, so a ``transpose``/``t`` emitted here would not be)."""
        dims = list(range(x.meta["val"].dim()))
        dims[-2:] = dims[-1], dims[-2]
        return self.call(torch.ops.aten.permute.default, x, dims)

    def like(self, x: fx.Node, original: fx.Node) -> fx.Node:
        """``x`` laid out with ``original``'s strides (later views in the graph assume them), copied
        only when they differ: permuted into the original's memory order, made contiguous, permuted back."""
        want = original.meta["val"]
        if x.meta["val"].stride() == want.stride():
            return x
        order = sorted(range(want.dim()), key=lambda d: (-want.stride()[d], d))
        inverse = sorted(range(want.dim()), key=lambda d: order[d])
        y = self.call(torch.ops.aten.permute.default, x, order)
        y = self.call(torch.ops.aten.clone.default, y, memory_format=torch.contiguous_format)
        y = self.call(torch.ops.aten.permute.default, y, inverse)
        if y.meta["val"].stride() != want.stride():
            raise PlanMismatch(f"cannot lay out the rewrite of {original.name!r} with strides {want.stride()}")
        return y


def _fake_value(target, args, kwargs, like: fx.Node | None = None):
    vals = fx.node.map_aggregate((args, kwargs), lambda a: a.meta["val"] if isinstance(a, fx.Node) else a)
    from torch._guards import detect_fake_mode

    tensors = [v for v in torch.utils._pytree.tree_leaves(vals) if isinstance(v, torch.Tensor)]
    if not tensors and like is not None:
        # an op of no tensor inputs (a seed draw): the fake mode of the node it is emitted for,
        # so that it is not run for real (which would draw from the user's generator)
        tensors = [v for v in torch.utils._pytree.tree_leaves(like.meta.get("val")) if isinstance(v, torch.Tensor)]
    mode = detect_fake_mode(tensors)
    with mode if mode is not None else contextlib.nullcontext():
        return target(*vals[0], **vals[1])


def _view_base(node: fx.Node) -> fx.Node | None:
    """The input a view (or an element of a view-returning op) aliases; None for other nodes."""
    if node.target is operator.getitem:
        producer = node.args[0]
        return producer if isinstance(producer, fx.Node) and is_view(producer) else None
    if is_view(node) and node.all_input_nodes:
        return node.all_input_nodes[0]
    return None


def _is_symbolic(node: fx.Node) -> bool:
    return isinstance(node.meta.get("val"), (torch.SymInt, torch.SymFloat, torch.SymBool, int))
