"""What inductor fuses, for the cost model of a graph that inductor compiles.

Inductor turns a chain of pointwise ops into one loop: an intermediate of the chain is
never written to memory (it is *inlined* into each kernel that reads it) unless something
outside the loop needs it — an extern kernel (a matmul, a custom op), the other graph
(a value saved for the backward), or the graph's outputs. A reduction reads inlined
producers the same way, but its own result is a buffer. So, for the CostGraph:

* an **inlined** node costs no memory, and its compute is the traffic of reading its
  materialised inputs (no kernel launch of its own, no write);
* every other node costs its bytes, as in the unfused model; a materialised pointwise node
  pays one launch and the traffic of its materialised inputs plus its own output.

A node is inlined when it is pointwise (``torch.Tag.pointwise``, inductor's random and seed
lookups, dtype conversions), all its readers (seen through views, which alias it) are
pointwise ops or reductions on the same side of the step (all forward, or all backward),
there are at most :data:`REALIZE_READS` of them (inductor realises a buffer read more often),
and it is not a graph output. A node read on both sides keeps its bytes: a plan may save it
for the backward, and a saved value is a buffer.

This is a static model of a plan-dependent fact (whether a forward value is saved depends
on the plan), so it errs on the safe side: a pointwise node read on both sides is charged
its bytes wherever it runs. ``recompile check`` measures how close it comes.

Example
-------
>>> import torch
>>> from recompiler.frontend.capture import capture
>>> m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))
>>> cap = capture(m, (torch.randn(4, 8),), compiler="inductor")
>>> any(cap.inlined)
True
"""

from __future__ import annotations

import operator

import torch
import torch.fx

from . import costs
from .capture import depends_on_tangents

#: Inductor's ``realize_reads_threshold``: a pointwise buffer read by more kernels than this is realised.
REALIZE_READS = 4

_POINTWISE_EXTRA = {"inductor_random", "inductor_lookup_seed", "convert_element_type", "_to_copy", "clone",
                    "masked_fill", "where", "fill", "full_like", "zeros_like", "ones_like", "lift_fresh_copy"}


def _name(node: torch.fx.Node) -> str:
    schema = getattr(node.target, "_schema", None)
    return schema.name.split("::")[-1] if schema is not None else ""


def is_pointwise(node: torch.fx.Node) -> bool:
    """An op inductor lowers to an elementwise loop (inlinable into its readers)."""
    if node.op != "call_function" or node.target is operator.getitem:
        return False
    if torch.Tag.pointwise in getattr(node.target, "tags", ()):
        return True
    return _name(node) in _POINTWISE_EXTRA and isinstance(node.meta.get("val"), torch.Tensor)


def is_reduction(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and torch.Tag.reduction in getattr(node.target, "tags", ())


def inlined_nodes(nodes: list[torch.fx.Node], kinds: list[str], is_backward, outputs: set[int]) -> list[bool]:
    """Per node of ``nodes`` (CostGraph order): will inductor inline it (module docstring)?

    ``kinds`` are capture's node kinds (``"view"`` nodes alias their input); ``is_backward``
    the side of each node; ``outputs`` the ids of graph outputs (and their roots).
    """
    ids = {x: i for i, x in enumerate(nodes)}

    def readers(i: int) -> list[int]:
        """The computing nodes that read node ``i``'s storage, through views."""
        out, stack, seen = [], [nodes[i]], set()
        while stack:
            x = stack.pop()
            for u in x.users:
                j = ids.get(u)
                if j is None:           # the graph's output node
                    out.append(-1)
                    continue
                if j in seen:
                    continue
                seen.add(j)
                if kinds[j] == "view":
                    if j in outputs:
                        out.append(-1)
                    stack.append(u)
                else:
                    out.append(j)
        return out

    inlined = [False] * len(nodes)
    for i, x in enumerate(nodes):
        if kinds[i] != "op" or i in outputs or not is_pointwise(x):
            continue
        rs = readers(i)
        if not rs or -1 in rs or len(rs) > REALIZE_READS:
            continue
        if not all(is_pointwise(nodes[j]) or is_reduction(nodes[j]) for j in rs):
            continue
        if len({bool(is_backward[j]) for j in rs}) != 1 or bool(is_backward[rs[0]]) != bool(is_backward[i]):
            continue
        inlined[i] = True
    return inlined


def fused_seconds(node: torch.fx.Node, inlined: bool, input_inlined, profile: costs.DeviceProfile,
                  flops: int) -> float:
    """Roofline seconds of ``node`` inside inductor's fused kernels.

    Reads of inlined inputs are free (their values are computed in registers); an inlined
    node writes nothing and launches nothing.
    """
    read = sum(costs.tensor_bytes(a.meta.get("val")) for a, fused in zip(node.all_input_nodes, input_inlined)
               if not fused)
    written = 0 if inlined else costs.tensor_bytes(node.meta.get("val"))
    seconds = max(flops / profile.peak(costs._dtype_name(node.meta.get("val"))), (read + written) / profile.bandwidth)
    return seconds + (0.0 if inlined else profile.launch_overhead)


def saved_inlined(captured, schedule, variant=None) -> list[int]:
    """Inlined nodes that ``schedule`` computes in the forward graph and reads in the backward.

    A value saved for the backward is a buffer, so the static model's "no memory" is wrong for
    them under this schedule: :func:`solve_fused` charges them and solves again.
    """
    graph = captured.graph
    if not any(captured.inlined):
        return []
    deps = graph.resolve(variant).deps
    tangent = depends_on_tangents(captured.fx_nodes)
    split = next((t for t, v in enumerate(schedule) if tangent[v]), len(schedule))
    latest: dict[int, int] = {}
    leaks: set[int] = set()
    for t, v in enumerate(schedule):
        if t >= split:
            for d in deps[v]:
                if captured.inlined[d] and latest.get(d, split) < split:
                    leaks.add(d)
        latest[v] = t
    return sorted(leaks)


def charge(captured, nodes) -> None:
    """Give ``nodes`` their bytes back (they are buffers after all): ``captured.graph`` is replaced."""
    import dataclasses

    if not nodes:
        return
    memory = captured.graph.memory.copy()
    for i in nodes:
        captured.inlined[i] = False
        memory[i] = costs.tensor_bytes(captured.fx_nodes[i].meta.get("val"))
    # a new CostGraph: a graph is immutable once built (its native copy is cached on it)
    captured.graph = dataclasses.replace(captured.graph, memory=memory)


#: Re-solves after charging what a plan saved, before every saveable inlined node is charged.
MAX_ROUNDS = 4


def solve_fused(captured, budget, solver=None, **options):
    """``solvers.solve`` on an inductor-costed graph, until no plan saves a value costed as inlined.

    The fusion model is static while "saved for the backward" depends on the plan: a solver
    could otherwise save a fused intermediate for free. Each round charges the intermediates the
    plan saves and solves again; after :data:`MAX_ROUNDS` every inlined node that does not depend
    on a tangent (all that could be saved) is charged. The budget's bytes are fixed up front,
    from the graph's reference peak as first costed.
    """
    from ..budget import parse_budget
    from ..simulate import baseline
    from ..solvers import solve

    reference = baseline(captured.graph)
    before = list(captured.inlined)
    if isinstance(budget, str):
        budget = parse_budget(budget, baseline_peak=reference.peak_bytes)
    for _ in range(MAX_ROUNDS):
        plan = solve(captured.graph, budget, solver, **options)
        leaks = saved_inlined(captured, plan.schedule, plan.variant)
        if not leaks:
            break
        charge(captured, leaks)
    else:
        tangent = depends_on_tangents(captured.fx_nodes)
        charge(captured, [i for i, fused in enumerate(captured.inlined) if fused and not tangent[i]])
        plan = solve(captured.graph, budget, solver, **options)
    # the baseline is the step as inductor runs it, costed before any round charged a node
    plan.baseline_peak_bytes = reference.peak_bytes
    # what a later capture of the same step must charge too, to re-simulate this plan exactly
    plan.stats["charged"] = [captured.graph.names[i] for i, (a, b) in enumerate(zip(before, captured.inlined))
                             if a and not b]
    return plan
