"""The node-cost graph: the torch-free contract between frontend, solvers and simulate.

Nodes are numbered 0..n-1 in a topological order; see ../shared/DESIGN.md for the
meaning of each field.

Example
-------
>>> g = CostGraph(names=["a", "b"], deps=[[], [0]], compute=[1.0, 2.0], memory=[4, 8])
>>> g.n, g.baseline_schedule()
(2, [0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import networkx as nx
import numpy as np

from .errors import InvalidGraph

VARIANT_KINDS = ("attention", "linear", "loss")


@dataclass(frozen=True)
class VariantOption:
    """One lowering of a variant group: per-node costs for the group's nodes.

    ``deps`` (optional) replaces the dependencies of the group's nodes, one list per node.
    """

    name: str
    exact: bool
    compute: list[float]
    memory: list[int]
    deps: list[list[int]] | None = None


@dataclass(frozen=True)
class VariantGroup:
    """Nodes whose costs change together when an alternative lowering is chosen.

    Option 0 is the original lowering.
    """

    name: str
    kind: str
    nodes: list[int]
    options: list[VariantOption]


@dataclass(frozen=True)
class ResolvedCosts:
    """Deps, compute and memory of every node once a variant option is chosen per group."""

    deps: list[list[int]]
    compute: np.ndarray
    memory: np.ndarray


def _as_bool(values, n: int, what: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=bool)
    arr = np.asarray(values, dtype=bool)
    if arr.shape != (n,):
        raise InvalidGraph(f"{what} has {arr.size} entries, expected {n}")
    return arr


@dataclass(eq=False)
class CostGraph:
    """Arrays describing a joint forward+backward graph (DESIGN.md, "The node-cost graph").

    Checked on construction: every dependency must name an earlier node, costs and
    sizes must be non-negative and finite, variant groups must be well formed.
    Violations raise :class:`~recompiler.errors.InvalidGraph` naming the node.
    """

    names: list[str]
    deps: list[list[int]]
    compute: np.ndarray
    memory: np.ndarray
    is_backward: np.ndarray = None
    is_input: np.ndarray = None
    pinned: np.ndarray = None
    is_output: np.ndarray = None
    variant_groups: list[VariantGroup] = field(default_factory=list)
    fixed_memory: int = 0
    name: str = "graph"
    #: The schedule the step runs without recompiler under its compiler (inductor's default
    #: partition, which recomputes fused pointwise ops); None: store-all. Percent budgets,
    #: ``baseline_peak_bytes`` and overheads are relative to it (:func:`recompiler.simulate.baseline`).
    reference: list[int] | None = None

    def __post_init__(self):
        n = len(self.names)
        self.names = [str(x) for x in self.names]
        if len(self.deps) != n:
            raise InvalidGraph(f"deps has {len(self.deps)} entries, expected {n} (one per node)")
        self.deps = [[int(d) for d in ds] for ds in self.deps]
        self.compute = np.asarray(self.compute, dtype=np.float64).reshape(-1)
        self.memory = np.asarray(self.memory, dtype=np.int64).reshape(-1)
        if self.compute.shape != (n,) or self.memory.shape != (n,):
            raise InvalidGraph(f"compute and memory need {n} entries each")
        self.is_backward = _as_bool(self.is_backward, n, "is_backward")
        self.is_input = _as_bool(self.is_input, n, "is_input")
        self.pinned = _as_bool(self.pinned, n, "pinned")
        self.is_output = _as_bool(self.is_output, n, "is_output")
        self.fixed_memory = int(self.fixed_memory)
        self.variant_groups = [_as_group(g) for g in self.variant_groups]
        if self.reference is not None:
            self.reference = [int(v) for v in self.reference]
        self._validate()

    # ----------------------------------------------------------------- checks
    def _validate(self) -> None:
        n = self.n
        for i, ds in enumerate(self.deps):
            for d in ds:
                if d < 0 or d >= n:
                    raise InvalidGraph(f"node {i} ({self.names[i]!r}) depends on out-of-range node id {d}")
                if d >= i:
                    raise InvalidGraph(_order_error(self, i, d))
        bad = np.flatnonzero(~np.isfinite(self.compute) | (self.compute < 0))
        if bad.size:
            raise InvalidGraph(f"node {bad[0]} ({self.names[bad[0]]!r}) has a negative or non-finite compute cost")
        bad = np.flatnonzero(self.memory < 0)
        if bad.size:
            raise InvalidGraph(f"node {bad[0]} ({self.names[bad[0]]!r}) has a negative size")
        if self.fixed_memory < 0:
            raise InvalidGraph("fixed_memory is negative")
        both = np.flatnonzero(self.is_input & self.pinned)
        if both.size:
            raise InvalidGraph(f"node {both[0]} ({self.names[both[0]]!r}) is an input and pinned; inputs are never scheduled")
        for g in self.variant_groups:
            _validate_group(self, g)

    # ------------------------------------------------------------- accessors
    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def num_edges(self) -> int:
        return sum(len(d) for d in self.deps)

    @property
    def input_bytes(self) -> int:
        return int(self.memory[self.is_input].sum())

    def baseline_schedule(self) -> list[int]:
        """The store-everything schedule: every non-input node once, in topological order."""
        return [i for i in range(self.n) if not self.is_input[i]]

    def default_variant(self) -> list[int]:
        return [0] * len(self.variant_groups)

    def resolve(self, variant: Sequence[int] | None = None) -> ResolvedCosts:
        """Deps, compute and memory with ``variant[g]`` chosen for each group g.

        >>> g = CostGraph(names=["a"], deps=[[]], compute=[1.0], memory=[4])
        >>> g.resolve().memory.tolist()
        [4]
        """
        if not variant or not any(variant):
            return ResolvedCosts(self.deps, self.compute, self.memory)
        deps = list(self.deps)
        compute = self.compute.copy()
        memory = self.memory.copy()
        for g, choice in zip(self.variant_groups, variant):
            if choice == 0:
                continue
            opt = g.options[choice]
            for k, node in enumerate(g.nodes):
                compute[node] = opt.compute[k]
                memory[node] = opt.memory[k]
                if opt.deps is not None:
                    deps[node] = opt.deps[k]
        return ResolvedCosts(deps, compute, memory)

    def users(self, deps: list[list[int]] | None = None) -> list[list[int]]:
        """For every node, the nodes that depend on it (ascending)."""
        out: list[list[int]] = [[] for _ in range(self.n)]
        for i, ds in enumerate(deps if deps is not None else self.deps):
            for d in set(ds):
                out[d].append(i)
        return out

    def to_networkx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for i in range(self.n):
            g.add_node(i, name=self.names[i], compute=float(self.compute[i]), memory=int(self.memory[i]))
        for i, ds in enumerate(self.deps):
            g.add_edges_from((d, i) for d in ds)
        return g

    def local_bound(self, variant: Sequence[int] | None = None) -> int:
        """The floor of DESIGN.md: no schedule can peak below this many bytes.

        max over scheduled nodes of (own bytes + bytes of its non-input deps) + inputs + fixed.
        """
        r = self.resolve(variant)
        best = 0
        for i in range(self.n):
            if self.is_input[i]:
                continue
            need = int(r.memory[i]) + sum(int(r.memory[d]) for d in set(r.deps[i]) if not self.is_input[d])
            best = max(best, need)
        return best + self.input_bytes + self.fixed_memory

    def floor(self, variant: Sequence[int] | None = None) -> int:
        """The smallest peak any schedule can reach: the local bound, or every input plus every
        output (gradients, loss), all live at the last step, whichever is higher.

        The second term is what usually binds for a training step (parameters + gradients).
        """
        memory = self.resolve(variant).memory
        at_end = self.input_bytes + int(memory[self.is_output & ~self.is_input].sum()) + self.fixed_memory
        return max(self.local_bound(variant), at_end)

    def summary(self) -> str:
        return (f"{self.name}: {self.n} nodes, {self.num_edges} edges, "
                f"{int(self.is_backward.sum())} backward, {int(self.is_input.sum())} inputs, "
                f"{len(self.variant_groups)} variant groups")


def _order_error(g: CostGraph, i: int, d: int) -> str:
    """Say whether a forward reference is a cycle (and which) or only a bad numbering."""
    if d == i:
        return f"cycle: node {i} ({g.names[i]!r}) depends on itself"
    dg = nx.DiGraph()
    for j, ds in enumerate(g.deps):
        dg.add_edges_from((x, j) for x in ds if 0 <= x < g.n)
    try:
        cyc = nx.find_cycle(dg, source=i)
        path = " -> ".join(f"{g.names[a]!r}" for a, _ in cyc) + f" -> {g.names[cyc[0][0]]!r}"
        return f"cycle through node {i} ({g.names[i]!r}): {path}"
    except nx.NetworkXNoCycle:
        return (f"node {i} ({g.names[i]!r}) depends on later node {d} ({g.names[d]!r}); "
                "nodes must be numbered in a topological order")


def _as_group(g) -> VariantGroup:
    if isinstance(g, VariantGroup):
        return g
    try:
        opts = [o if isinstance(o, VariantOption) else VariantOption(
            name=str(o["name"]), exact=bool(o["exact"]), compute=[float(x) for x in o["compute"]],
            memory=[int(x) for x in o["memory"]],
            deps=None if o.get("deps") is None else [[int(d) for d in ds] for ds in o["deps"]])
            for o in g["options"]]
        return VariantGroup(name=str(g["name"]), kind=str(g["kind"]), nodes=[int(x) for x in g["nodes"]], options=opts)
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidGraph(f"malformed variant group {g.get('name', '?') if isinstance(g, dict) else g!r}: {e}") from None


def _validate_group(graph: CostGraph, g: VariantGroup) -> None:
    if g.kind not in VARIANT_KINDS:
        raise InvalidGraph(f"variant group {g.name!r} has kind {g.kind!r}; expected one of {VARIANT_KINDS}")
    if not g.options:
        raise InvalidGraph(f"variant group {g.name!r} has no options")
    k = len(g.nodes)
    for node in g.nodes:
        if not 0 <= node < graph.n:
            raise InvalidGraph(f"variant group {g.name!r} names out-of-range node id {node}")
    base = g.options[0]
    if len(base.compute) == k and len(base.memory) == k and (
            any(float(graph.compute[v]) != float(c) for v, c in zip(g.nodes, base.compute))
            or any(int(graph.memory[v]) != int(m) for v, m in zip(g.nodes, base.memory))
            or (base.deps is not None and any(sorted(graph.deps[v]) != sorted(d) for v, d in zip(g.nodes, base.deps)))):
        raise InvalidGraph(f"variant group {g.name!r}: option 0 must be the original lowering "
                           "(the nodes' own compute, memory and deps)")
    for o in g.options:
        if len(o.compute) != k or len(o.memory) != k or (o.deps is not None and len(o.deps) != k):
            raise InvalidGraph(f"variant group {g.name!r} option {o.name!r} needs one entry per node ({k})")
        if any(c < 0 for c in o.compute) or any(m < 0 for m in o.memory):
            raise InvalidGraph(f"variant group {g.name!r} option {o.name!r} has a negative cost or size")
        for node, ds in zip(g.nodes, o.deps or []):
            for d in ds:
                if not 0 <= d < node:
                    raise InvalidGraph(f"variant group {g.name!r} option {o.name!r}: node {node} "
                                       f"may only depend on earlier nodes, not {d}")
