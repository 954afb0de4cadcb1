"""What inductor fuses, for the cost model of a graph that inductor compiles.

Inductor turns a chain of pointwise ops into one loop: an intermediate of the chain is
never written to memory (it is *inlined* into each kernel that reads it) unless something
outside the loop needs it — an extern kernel (a matmul, a custom op), the other graph
(a value saved for the backward), or the graph's outputs. A reduction reads inlined
producers the same way, but its own result is a buffer. So, for the CostGraph:

* an **inlined** node costs no memory, and its compute is the traffic of reading its
  materialised inputs (no kernel launch of its own, no write);
* every other node costs its bytes, as in the unfused model; a materialised pointwise node
  pays one launch and the traffic of its materialised inputs plus its own output;
* an inlined node's reads are *deferred*: its loop runs inside each reader's kernel, so the
  buffers it reads stay alive until its readers run. Every reader of an inlined node also
  depends on the inlined node's materialised inputs (:func:`deferred_deps`); otherwise a plan
  that "computes" a fused intermediate early would free, on paper, inputs that inductor keeps.

A node is inlined when it is pointwise (``torch.Tag.pointwise``, inductor's random and seed
lookups, dtype conversions), all its readers (seen through views, which alias it) are
pointwise ops or reductions on its own side of the step (all forward, or all backward), there
are at most :data:`REALIZE_READS` of them, it is not a graph output, and none of inductor's
own realisation rules applies (``_realized_by_inductor``: too many buffers read, or, read more
than once, a loop too large or using an op CPU inductor will not recompute per reader).

Whether a forward value is saved for the backward depends on the plan, and a saved value is
a buffer. The partition keeps the model true: an inlined value read in the backward from its
forward occurrence is computed again there from its inputs (``partition_with_schedule``'s
``fused``), which the deferred reads kept alive. A pinned node cannot run twice: should a
plan save one, :func:`solve_fused` charges it and solves again. A node read on both sides
keeps its bytes. ``recompile check`` measures how close the model comes.

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
import time

import torch
import torch.fx

from . import costs
from .capture import depends_on_tangents

#: Inductor's ``realize_reads_threshold``: a pointwise buffer read by more kernels than this is realised.
REALIZE_READS = 4

#: Inductor's ``realize_cpu_acc_reads_threshold`` / ``_realize_acc_reads_threshold_default``: a
#: pointwise loop that reads more buffers than this is realised, whoever reads it.
MAX_ACC_READS = {"cpu": 12, "other": 8}
#: ``realize_cpu_opcount_threshold`` / ``_realize_opcount_threshold_default``: a loop this large
#: is realised when it has more than one reader.
MAX_OPCOUNT = {"cpu": 50, "other": 30}
#: On CPU a loop using one of these and read more than once is realised
#: (``StorageBox.should_realize_on_reuse``).
HEAVY_CPU_OPS = {"exp", "log", "log10", "log1p", "log2", "sigmoid", "tanh"}

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
    # per node, the loop it would be if inlined: the buffers it reads, its ops, their count
    loop_reads: list[set] = []
    loop_ops: list[set] = []
    loop_size: list[int] = []
    for i, x in enumerate(nodes):
        reads, ops, size = set(), {_name(x)}, 1
        for a in x.all_input_nodes:
            j = ids[a]
            if inlined[j]:
                reads |= loop_reads[j]
                ops |= loop_ops[j]
                size += loop_size[j]
            else:
                reads.add(j)
                size += 1
        loop_reads.append(reads)
        loop_ops.append(ops)
        loop_size.append(size)
        if kinds[i] != "op" or i in outputs or not is_pointwise(x):
            continue
        rs = readers(i)
        if not rs or -1 in rs or len(rs) > REALIZE_READS:
            continue
        if not all(is_pointwise(nodes[j]) or is_reduction(nodes[j]) for j in rs):
            continue
        if len({bool(is_backward[j]) for j in rs}) != 1 or bool(is_backward[rs[0]]) != bool(is_backward[i]):
            continue
        if _realized_by_inductor(x, len(x.users), reads, ops, size):
            continue
        inlined[i] = True
    return inlined


def _realized_by_inductor(node: torch.fx.Node, users: int, reads: set, ops: set, size: int) -> bool:
    """Inductor's own reasons to write a pointwise loop out although its readers could inline it
    (``GraphLowering.run_node``: ``mark_reuse`` and ``has_exceeded_max_reads``)."""
    val = node.meta.get("val")
    device = "cpu" if isinstance(val, torch.Tensor) and val.device.type in ("cpu", "meta") else "other"
    if len(reads) > MAX_ACC_READS[device]:
        return True
    if users > 1:
        if device == "cpu" and ops & HEAVY_CPU_OPS:
            return True
        if size > MAX_OPCOUNT[device] or len(reads) > REALIZE_READS:
            return True
    return False


def deferred_deps(deps: list[list[int]], inlined: list[bool]) -> list[list[int]]:
    """``deps`` where a reader of an inlined node also reads what that node reads (transitively).

    >>> deferred_deps([[], [0], [1]], [False, True, False])
    [[], [0], [0, 1]]
    """
    reads: list[list[int]] = []       # per node: the materialised buffers its loop reads
    out: list[list[int]] = []
    for i, ds in enumerate(deps):
        extra = [r for d in ds if inlined[d] for r in reads[d]]
        out.append(sorted(set(ds) | set(extra)))
        reads.append(sorted({r for d in ds for r in (reads[d] if inlined[d] else [d])}))
    return out


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


def rederived(captured) -> set:
    """The fx nodes the partition computes again in the backward instead of saving them
    (``partition_with_schedule(fused=...)``): inlined nodes that may run twice (not pinned)."""
    return {captured.fx_nodes[i] for i, fused in enumerate(captured.inlined)
            if fused and not captured.graph.pinned[i]}


def saved_inlined(captured, schedule, variant=None) -> list[int]:
    """Inlined nodes that ``schedule`` computes in the forward graph and reads in the backward,
    and that the partition cannot compute again there (:func:`rederived`: pinned ones).

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
                if captured.inlined[d] and graph.pinned[d] and latest.get(d, split) < split:
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
    # a buffer is read where it is, so its readers no longer wait on its inputs;
    # a new CostGraph: a graph is immutable once built (its native copy is cached on it)
    captured.graph = dataclasses.replace(captured.graph, memory=memory,
                                         deps=deferred_deps(captured.unfused_deps, captured.inlined))


def charge_named(captured, names) -> None:
    """:func:`charge` the nodes called ``names`` (a plan's ``stats["charged"]``), to re-simulate it."""
    names = set(names)
    charge(captured, [i for i, name in enumerate(captured.graph.names) if name in names])


#: Solves (each charging what the previous plan saved) before the best plan so far is taken.
MAX_ROUNDS = 4


def solve_fused(captured, budget, solver=None, **options):
    """``solvers.solve`` on an inductor-costed graph, charging every inlined value a plan saves.

    The fusion model is static while "saved for the backward" depends on the plan: a solver
    could otherwise save a fused intermediate for free. Each round charges the intermediates the
    plan saves (they are buffers) and solves again, until a plan saves nothing uncharged or
    :data:`MAX_ROUNDS` plans were made. Every round's plan is then judged on the graph as finally
    charged (charging only adds bytes and drops deferred reads, so each schedule stays valid and
    its peak is honest), and the best is returned: feasible and cheapest, else the lowest peak.
    The budget's bytes are fixed up front, from the graph's reference peak as first costed.
    """
    from ..budget import parse_budget
    from ..plan import make_plan
    from ..simulate import baseline
    from ..solvers import solve

    reference = baseline(captured.graph)
    before = list(captured.inlined)
    if isinstance(budget, str):
        budget = parse_budget(budget, baseline_peak=reference.peak_bytes)
    plans = []
    limit = options.pop("time_limit", None)
    deadline = None if limit is None else time.perf_counter() + limit
    for _ in range(MAX_ROUNDS):
        if deadline is not None:   # the time limit covers every round; a later round gets what is left
            options["time_limit"] = max(deadline - time.perf_counter(), 0.05 * limit)
        plan = solve(captured.graph, budget, solver, **options)
        plans.append(plan)
        leaks = saved_inlined(captured, plan.schedule, plan.variant)
        charge(captured, leaks)
        if not leaks or (deadline is not None and time.perf_counter() >= deadline):
            break
    if len(plans) > 1:
        judged = [make_plan(captured.graph, p.schedule, solver=p.solver, budget_bytes=budget, variant=p.variant,
                            solve_seconds=p.solve_seconds, stats=p.stats) for p in plans]
        plan = min(judged, key=lambda p: (not p.feasible, p.cost if p.feasible else p.peak_bytes))
        plan.stats["fusion_rounds"] = len(plans)
        plan.solve_seconds = sum(p.solve_seconds for p in plans)
    # the baseline is the step as inductor runs it, costed before any round charged a node
    plan.baseline_peak_bytes = reference.peak_bytes
    plan.baseline_cost = reference.cost
    plan.overhead = plan.cost / reference.cost - 1.0 if reference.cost else 0.0
    # what a later capture of the same step must charge too, to re-simulate this plan exactly
    plan.stats["charged"] = [captured.graph.names[i] for i, (a, b) in enumerate(zip(before, captured.inlined))
                             if a and not b]
    return plan
