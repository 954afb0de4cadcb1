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

import math
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


#: Byte counts are int64 in simulate and the native core. A graph whose sizes (each node at its
#: largest option, plus fixed_memory) add up to more is refused, so that no peak can overflow:
#: at any step at most one value of each node is live.
MAX_BYTES = 2**63 - 1


def _as_int(x, what: str) -> int:
    """An integer field: an int (numpy's too) or an integral float such as 3.0; never a bool or a
    string, and never a fraction (1.9 is an error, not 1)."""
    if type(x) is int:
        return x
    if isinstance(x, (bool, np.bool_)):
        raise InvalidGraph(f"{what} is {x!r}: a boolean, expected an integer")
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        if math.isfinite(x) and float(x).is_integer():
            return int(x)
        raise InvalidGraph(f"{what} is {x!r}, expected an integer")
    raise InvalidGraph(f"{what} is {x!r} (a {type(x).__name__}), expected an integer")


def _as_number(x, what: str) -> float:
    """A cost: an int or float (numpy's too); never a bool or a string."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise InvalidGraph(f"{what} is {x!r} (a {type(x).__name__}), expected a number")
    return float(x)


def _as_sizes(values, n: int, what: str) -> np.ndarray:
    """Byte sizes as int64, each checked by the rules of :func:`_as_int` and below 2**63."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        arr = values.reshape(-1)
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr) | (arr != np.floor(arr))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidGraph(f"{what}[{i}] is {arr[i]!r}, expected an integer")
            if arr.size and np.abs(arr).max() >= 2.0**63:
                i = int(np.argmax(np.abs(arr)))
                raise InvalidGraph(f"{what}[{i}] is {arr[i]:.6g} bytes, more than 2**63 - 1")
        elif arr.dtype.kind == "u" and arr.size and arr.max() > MAX_BYTES:
            i = int(np.argmax(arr))
            raise InvalidGraph(f"{what}[{i}] is {int(arr[i])} bytes, more than 2**63 - 1")
        return arr.astype(np.int64)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise InvalidGraph(f"{what} must be a list of {n} integers, not {type(values).__name__}")
    out = [_as_int(x, f"{what}[{i}]") for i, x in enumerate(values)]
    for i, x in enumerate(out):
        if x > MAX_BYTES:
            raise InvalidGraph(f"{what}[{i}] is {x} bytes, more than 2**63 - 1")
        if x < -MAX_BYTES:
            raise InvalidGraph(f"{what}[{i}] is a negative size")
    return np.asarray(out, dtype=np.int64).reshape(-1)


def _as_costs(values, what: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        return values.astype(np.float64).reshape(-1)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise InvalidGraph(f"{what} must be a list of numbers, not {type(values).__name__}")
    return np.asarray([_as_number(x, f"{what}[{i}]") for i, x in enumerate(values)], dtype=np.float64).reshape(-1)


def _as_bool(values, n: int, what: str) -> np.ndarray:
    """A flag per node: booleans only (numpy's too). Why strict: ``bool("false")`` is True."""
    if values is None:
        return np.zeros(n, dtype=bool)
    if isinstance(values, np.ndarray) and values.dtype.kind == "b":
        arr = values.reshape(-1).copy()
    else:
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise InvalidGraph(f"{what} must be a list of {n} booleans, not {type(values).__name__}")
        for i, x in enumerate(values):
            if not isinstance(x, (bool, np.bool_)):
                raise InvalidGraph(f"{what}[{i}] is {x!r} (a {type(x).__name__}), expected true or false")
        arr = np.asarray(values, dtype=bool).reshape(-1)
    if arr.shape != (n,):
        raise InvalidGraph(f"{what} has {arr.size} entries, expected {n}")
    return arr


def _total_bytes(memory: np.ndarray, groups, fixed_memory: int) -> int:
    """Σ over nodes of its largest size over the options, + fixed_memory, exactly (no int64 overflow)."""
    largest = memory.copy()
    for g in groups:
        for o in g.options:
            if len(o.memory) == len(g.nodes):
                np.maximum.at(largest, np.asarray(g.nodes, dtype=np.int64),
                              np.asarray(o.memory, dtype=np.int64))
    largest = np.maximum(largest, 0)
    # Each entry is below 2**63: the high and low 32-bit halves sum without overflow.
    return int((largest >> 32).sum()) * 2**32 + int((largest & 0xFFFFFFFF).sum()) + fixed_memory


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
        for what in ("names", "deps", "variant_groups"):
            value = getattr(self, what)
            if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
                raise InvalidGraph(f"{what} must be a list, not {type(value).__name__}")
        n = len(self.names)
        self.names = [str(x) for x in self.names]
        if len(self.deps) != n:
            raise InvalidGraph(f"deps has {len(self.deps)} entries, expected {n} (one per node)")
        for i, ds in enumerate(self.deps):
            if isinstance(ds, (str, bytes, dict)) or not hasattr(ds, "__len__"):
                raise InvalidGraph(f"deps[{i}] is {ds!r}, expected a list of node ids")
        self.deps = [[d if type(d) is int else _as_int(d, f"deps[{i}]") for d in ds]
                     for i, ds in enumerate(self.deps)]
        self.compute = _as_costs(self.compute, "compute")
        self.memory = _as_sizes(self.memory, n, "memory")
        if self.compute.shape != (n,) or self.memory.shape != (n,):
            raise InvalidGraph(f"compute and memory need {n} entries each")
        self.is_backward = _as_bool(self.is_backward, n, "is_backward")
        self.is_input = _as_bool(self.is_input, n, "is_input")
        self.pinned = _as_bool(self.pinned, n, "pinned")
        self.is_output = _as_bool(self.is_output, n, "is_output")
        self.fixed_memory = _as_int(self.fixed_memory, "fixed_memory")
        self.variant_groups = [_as_group(g) for g in self.variant_groups]
        if self.reference is not None:
            self.reference = [_as_int(v, f"reference[{t}]") for t, v in enumerate(self.reference)]
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
        total = _total_bytes(self.memory, self.variant_groups, self.fixed_memory)
        if total > MAX_BYTES:
            raise InvalidGraph(f"the graph's sizes add up to {total:,} B (every node at its largest option, plus "
                               f"fixed_memory), more than 2**63 - 1: peaks would not be exact")

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


_GROUP_KEYS = {"name", "kind", "nodes", "options"}
_OPTION_KEYS = {"name", "exact", "compute", "memory", "deps"}


def _unknown(d: dict, known: set, where: str) -> None:
    extra = sorted(map(str, set(d) - known))
    if extra:
        raise InvalidGraph(f"{where} has unknown field{'s' if len(extra) > 1 else ''} {', '.join(extra)} "
                           f"(known: {', '.join(sorted(known))})")


def _as_option(o, where: str) -> VariantOption:
    """One option, from a VariantOption or a dict, with the same strict types as the graph's own fields."""
    if isinstance(o, VariantOption):
        name, exact, compute, memory, deps = o.name, o.exact, o.compute, o.memory, o.deps
    elif isinstance(o, dict):
        _unknown(o, _OPTION_KEYS, where)
        missing = sorted({"name", "exact", "compute", "memory"} - set(o))
        if missing:
            raise InvalidGraph(f"{where} lacks {', '.join(missing)}")
        name, exact, compute, memory, deps = o["name"], o["exact"], o["compute"], o["memory"], o.get("deps")
    else:
        raise InvalidGraph(f"{where} is {o!r}, expected an object")
    if not isinstance(exact, (bool, np.bool_)):
        raise InvalidGraph(f"{where}: exact is {exact!r} (a {type(exact).__name__}), expected true or false")
    for field_name, value in (("compute", compute), ("memory", memory)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise InvalidGraph(f"{where}: {field_name} must be a list, not {type(value).__name__}")
    mem = [_as_int(m, f"{where} memory[{k}]") for k, m in enumerate(memory)]
    if any(m > MAX_BYTES for m in mem):
        raise InvalidGraph(f"{where} has a size of more than 2**63 - 1 bytes")
    if deps is not None:
        if isinstance(deps, (str, bytes)) or not hasattr(deps, "__len__") or any(
                isinstance(ds, (str, bytes)) or not hasattr(ds, "__len__") for ds in deps):
            raise InvalidGraph(f"{where}: deps must be a list of lists of node ids")
        deps = [[_as_int(d, f"{where} deps[{k}]") for d in ds] for k, ds in enumerate(deps)]
    return VariantOption(name=str(name), exact=bool(exact),
                         compute=[_as_number(c, f"{where} compute[{k}]") for k, c in enumerate(compute)],
                         memory=mem, deps=deps)


def _as_group(g) -> VariantGroup:
    """A group, from a VariantGroup or a dict (a graph file's), its fields checked and normalized."""
    if isinstance(g, VariantGroup):
        name, kind, nodes, options = g.name, g.kind, g.nodes, g.options
    elif isinstance(g, dict):
        _unknown(g, _GROUP_KEYS, f"variant group {g.get('name', '?')!r}")
        missing = sorted(_GROUP_KEYS - set(g))
        if missing:
            raise InvalidGraph(f"malformed variant group {g.get('name', '?')!r}: lacks {', '.join(missing)}")
        name, kind, nodes, options = g["name"], g["kind"], g["nodes"], g["options"]
    else:
        raise InvalidGraph(f"malformed variant group {g!r}: expected an object")
    where = f"variant group {name!r}"
    for field_name, value in (("nodes", nodes), ("options", options)):
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
            raise InvalidGraph(f"{where}: {field_name} must be a list, not {type(value).__name__}")
    opts = [_as_option(o, f"{where} option {k}") for k, o in enumerate(options)]
    return VariantGroup(name=str(name), kind=str(kind), nodes=[_as_int(x, f"{where} nodes[{k}]")
                                                                for k, x in enumerate(nodes)], options=opts)


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
