"""The lowering registry: alternative lowerings of joint-graph patterns, chosen by the solver.

``LOWERINGS`` is one plain table (DESIGN.md, "Lowerings"). Each :class:`Lowering` names a
``match`` that finds its instances in a captured joint graph, and each :class:`Instance` it
returns knows its options' costs (one :class:`~recompiler.graph.VariantOption` each, option 0
the original lowering) and how to ``rewrite`` its nodes when a plan picks another option.
Capture turns every instance into a variant group (:func:`attach`); the runtime rewrites the
chosen instances while it rebuilds the joint graph in schedule order (:func:`rewrites`).

Adding a lowering is one module with a ``match(captured, profile)`` function plus one line below.

Example
-------
>>> [entry.name for entry in LOWERINGS]
['chunked-attention', 'chunked-sdpa', 'prefix-attention', 'chunked-loss', 'wta-crs']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..graph import CostGraph, VariantGroup, VariantOption


@dataclass(frozen=True)
class Lowering:
    """One entry of :data:`LOWERINGS`."""

    name: str
    kind: str          # "attention", "linear" or "loss" (a VariantGroup kind)
    exact: bool        # its options change no numbers beyond floating-point reassociation
    match: Callable    # (captured, profile) -> list[Instance]
    module: str        # where it lives, for plan reports


class Instance:
    """One match of a lowering in a joint graph (subclassed by each lowering module).

    ``nodes`` are the fx nodes of the variant group, in CostGraph id order; ``options()`` their
    costs per option; ``rewrite(option, node, emit, state)`` emits, for one occurrence of ``node``
    under a non-default option, what replaces it (``emit`` is the runtime's
    :class:`~recompiler.runtime.partition.Emitter`; ``state`` a dict kept per instance for one
    partition), and returns the fx node standing for it (None when the node is absorbed).
    """

    lowering: Lowering
    nodes: list
    module_path: str = ""

    def options(self) -> list[VariantOption]:
        raise NotImplementedError

    def rewrite(self, option: int, node, emit, state: dict):
        raise NotImplementedError

    def absorbed(self, node) -> bool:
        """``node`` emits nothing under a non-default option and may sit anywhere in a schedule."""
        return False

    def materialises(self, node) -> bool:
        """``node`` is a view in the graph but stands for a tensor of its own under a non-default
        option (the runtime then never re-derives it from its base)."""
        return False

    def group_name(self, index: int) -> str:
        return f"{self.lowering.name}:{index}"


def split_group(graph: CostGraph, members: list[int]):
    """``(forward ids, backward ids, external deps of the forward ones, of the backward ones)``."""
    inside = set(members)
    fwd = [i for i in members if not graph.is_backward[i]]
    bwd = [i for i in members if graph.is_backward[i]]
    ext_f = {d for i in fwd for d in graph.deps[i] if d not in inside}
    ext_b = {d for i in bwd for d in graph.deps[i] if d not in inside}
    return fwd, bwd, ext_f, ext_b


def fused_option(name: str, graph: CostGraph, members: list[int], *, head: int, main: int, exits: set, work: int,
                 head_compute: float, head_bytes: int, main_compute: float, main_bytes: int, work_bytes: int,
                 relay: int | None = None) -> VariantOption:
    """An option where one op replaces the group's forward and one its backward.

    ``head`` runs the forward (``head_bytes``, reading everything the group's forward read, and
    ``work``, which carries the op's workspace just before it); ``main`` runs the backward
    (``main_bytes``, after ``head`` and everything the group read); the ``exits`` take its results
    (through the zero-byte ``relay`` when given); every other node is absorbed (0 s, 0 B, no deps).
    """
    _, _, ext_f, ext_b = split_group(graph, members)
    compute, memory, deps = [], [], []
    for i in members:
        if i == head:
            row = (head_compute, head_bytes, sorted(ext_f | {work}))
        elif i == main:
            row = (main_compute, main_bytes, sorted(ext_b | ext_f | {head}))
        elif i in exits:
            row = (0.0, int(graph.memory[i]), [relay if relay is not None else main])
        elif i == relay:
            row = (0.0, 0, [main])
        elif i == work:
            row = (0.0, work_bytes, [])
        else:
            row = (0.0, 0, [])
        compute.append(row[0])
        memory.append(row[1])
        deps.append(row[2])
    return VariantOption(name, True, compute, memory, deps)


def _table():
    from . import linear_loss, prefix_attention, sampled_linear, sdpa_attention, softmax_attention

    return (
        Lowering("chunked-attention", "attention", True, softmax_attention.match, softmax_attention.__name__),
        Lowering("chunked-sdpa", "attention", True, sdpa_attention.match, sdpa_attention.__name__),
        Lowering("prefix-attention", "attention", True, prefix_attention.match, prefix_attention.__name__),
        Lowering("chunked-loss", "loss", True, linear_loss.match, linear_loss.__name__),
        Lowering("wta-crs", "linear", False, sampled_linear.match, sampled_linear.__name__),
    )


LOWERINGS: tuple[Lowering, ...] = _table()


def find_instances(captured, profile) -> list[Instance]:
    """Every instance of every registered lowering in ``captured``, no node in two instances."""
    taken: set = set()
    found: list[Instance] = []
    for entry in LOWERINGS:
        for inst in entry.match(captured, profile):
            if taken.isdisjoint(inst.nodes):
                taken.update(inst.nodes)
                found.append(inst)
    found.sort(key=lambda inst: captured.node_ids[inst.nodes[0].name])
    return found


def attach(graph: CostGraph, captured, instances: list[Instance]) -> CostGraph:
    """``graph`` with one variant group per instance (the CostGraph checks every option)."""
    groups = []
    for k, inst in enumerate(instances):
        groups.append(VariantGroup(name=inst.group_name(k), kind=inst.lowering.kind,
                                   nodes=[captured.node_ids[x.name] for x in inst.nodes], options=inst.options()))
    return CostGraph(names=graph.names, deps=graph.deps, compute=graph.compute, memory=graph.memory,
                     is_backward=graph.is_backward, is_input=graph.is_input, pinned=graph.pinned,
                     is_output=graph.is_output, variant_groups=groups, fixed_memory=graph.fixed_memory,
                     name=graph.name, reference=graph.reference)


def rewrites(instances: list[Instance], variant) -> dict:
    """``{fx node: rewrite(emit)}`` for every node of an instance whose chosen option is not 0.

    Each rewrite carries ``.absorbed`` (:meth:`Instance.absorbed`): the runtime lets only the
    others start the backward part.
    """
    out: dict = {}
    for inst, choice in zip(instances, variant or ()):
        if choice:
            state: dict = {}
            for node in inst.nodes:
                def rewrite(emit, inst=inst, choice=choice, node=node, state=state):
                    return inst.rewrite(choice, node, emit, state)
                rewrite.absorbed = inst.absorbed(node)
                rewrite.materialises = inst.materialises(node)
                out[node] = rewrite
    return out


def chosen(graph: CostGraph, instances: list[Instance], variant) -> list[dict]:
    """The plan JSON's ``lowerings``: one entry per group whose chosen option is not the original."""
    out = []
    for k, (group, choice) in enumerate(zip(graph.variant_groups, variant or ())):
        if choice:
            inst = instances[k] if k < len(instances) else None
            out.append({"group": group.name, "kind": group.kind, "option": group.options[choice].name,
                        "exact": group.options[choice].exact,
                        "module": inst.module_path if inst is not None else ""})
    return out
