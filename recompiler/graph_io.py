"""Graph files: our own JSON format, and the two networkx node-link formats of ../shared/graphs.

>>> from recompiler.builders import linear_chain
>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "g.json")
>>> write_graph(linear_chain(3), p); read_graph(p).n
3
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import networkx as nx
import numpy as np

from .errors import GraphFormatError, InvalidGraph
from .fileio import write_json_atomic
from .graph import CostGraph

FORMAT = "recompiler-graph"
VERSION = 1


def graph_to_dict(g: CostGraph) -> dict:
    """Our own format: one array per field, the variant groups as in DESIGN.md."""
    return {
        "format": FORMAT, "version": VERSION, "name": g.name,
        "names": g.names, "deps": g.deps,
        "compute": g.compute.tolist(), "memory": g.memory.tolist(),
        "is_backward": g.is_backward.tolist(), "is_input": g.is_input.tolist(),
        "pinned": g.pinned.tolist(), "is_output": g.is_output.tolist(),
        "fixed_memory": g.fixed_memory,
        **({"reference": g.reference} if g.reference is not None else {}),
        "variant_groups": [
            {"name": vg.name, "kind": vg.kind, "nodes": vg.nodes,
             "options": [{"name": o.name, "exact": o.exact, "compute": o.compute, "memory": o.memory,
                          **({"deps": o.deps} if o.deps is not None else {})} for o in vg.options]}
            for vg in g.variant_groups],
    }


def graph_from_dict(d: dict) -> CostGraph:
    """Build a CostGraph from any of the three formats (detected from the keys)."""
    if not isinstance(d, dict):
        raise GraphFormatError("a graph file must hold a JSON object")
    if d.get("format") == FORMAT:
        return _from_ours(d)
    if "nodes" in d and ("links" in d or "edges" in d):
        nodes = d["nodes"]
        if nodes and isinstance(nodes[0], dict) and "cost_ram" in nodes[0]:
            return _from_checkmate(d)
        if nodes and isinstance(nodes[0], dict) and "out_cost" in nodes[0]:
            return _from_random_layered(d)
    raise GraphFormatError("unknown graph format: expected recompiler-graph JSON, or the Checkmate / "
                           "random-layered node-link JSON of shared/graphs")


def read_graph(path: str | os.PathLike) -> CostGraph:
    """Read a graph file; any problem raises GraphFormatError or InvalidGraph with the file named."""
    path = Path(path)
    if not path.is_file():
        raise GraphFormatError(f"graph file not found: {path}")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GraphFormatError(f"{path}: not valid JSON ({e})") from None
    try:
        g = graph_from_dict(d)
    except InvalidGraph as e:
        raise InvalidGraph(f"{path}: {e}") from None
    except GraphFormatError as e:
        raise GraphFormatError(f"{path}: {e}") from None
    if g.name == "graph":
        g.name = path.name.removesuffix(".json")
    return g


def write_graph(g: CostGraph, path: str | os.PathLike) -> None:
    """Write our own format, atomically."""
    write_json_atomic(path, graph_to_dict(g))


# ---------------------------------------------------------------------- readers
def _field(d: dict, key: str, n: int | None = None):
    if key not in d:
        raise GraphFormatError(f"missing field {key!r}")
    return d[key]


#: Every field of our format; any other is refused by name (a typo such as "pined" would
#: otherwise drop the pins without a word).
OWN_FIELDS = ("format", "version", "name", "names", "deps", "compute", "memory", "is_backward", "is_input",
              "pinned", "is_output", "fixed_memory", "variant_groups", "reference")


def _from_ours(d: dict) -> CostGraph:
    if d.get("version") != VERSION:
        raise GraphFormatError(f"unsupported recompiler-graph version {d.get('version')!r} (this reads {VERSION})")
    unknown = sorted(str(k) for k in d if k not in OWN_FIELDS)
    if unknown:
        raise GraphFormatError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                               f"in recompiler-graph (known: {', '.join(OWN_FIELDS)})")
    for key in ("names", "deps", "compute", "memory", "variant_groups"):
        if key in d and not isinstance(d[key], list):
            raise GraphFormatError(f"field {key!r} must be a list, not {type(d[key]).__name__}")
    if any(not isinstance(ds, list) for ds in d.get("deps", [])):
        raise GraphFormatError("field 'deps' must be a list of lists of node ids")
    try:
        return CostGraph(
            names=_field(d, "names"), deps=_field(d, "deps"), compute=_field(d, "compute"),
            memory=_field(d, "memory"), is_backward=d.get("is_backward"), is_input=d.get("is_input"),
            pinned=d.get("pinned"), is_output=d.get("is_output"), variant_groups=d.get("variant_groups", []),
            fixed_memory=d.get("fixed_memory", 0), name=d.get("name", "graph"), reference=d.get("reference"))
    except (TypeError, ValueError) as e:
        raise GraphFormatError(f"malformed field in recompiler-graph: {e}") from None


def _flag(x, what: str) -> bool:
    """A JSON boolean; why strict: ``bool("false")`` is True."""
    if not isinstance(x, bool):
        raise GraphFormatError(f"{what} is {x!r}, expected true or false")
    return x


def _size(x, what: str) -> int:
    """A JSON integer (or an integral number such as 3.0); 1.9 is an error, not 1."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or (isinstance(x, float) and not x.is_integer()):
        raise GraphFormatError(f"{what} is {x!r}, expected an integer")
    return int(x)


def _cost(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise GraphFormatError(f"{what} is {x!r}, expected a number")
    return float(x)


def _topological_positions(keys: list, edges: list[tuple], preferred: list) -> dict:
    """Position of each node key in a topological order, keeping ``preferred`` when it is one."""
    dg = nx.DiGraph()
    dg.add_nodes_from(keys)
    dg.add_edges_from(edges)
    try:
        cycle = nx.find_cycle(dg)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join(str(a) for a, _ in cycle) + f" -> {cycle[0][0]}"
        raise InvalidGraph(f"the graph has a cycle: {path}")
    pos = {k: i for i, k in enumerate(preferred)}
    if len(pos) == len(keys) and all(pos[a] < pos[b] for a, b in edges):
        return pos
    order = list(nx.lexicographical_topological_sort(dg, key=lambda k: pos.get(k, len(pos))))
    return {k: i for i, k in enumerate(order)}


def _build(keys, names, edges, compute, memory, backward, output_key, name) -> CostGraph:
    pos = _topological_positions(keys, edges, keys)
    n = len(keys)
    order = sorted(keys, key=pos.__getitem__)
    index = {k: i for i, k in enumerate(order)}
    deps = [[] for _ in range(n)]
    for a, b in edges:
        deps[index[b]].append(index[a])
    is_output = np.zeros(n, dtype=bool)
    is_output[index[output_key]] = True
    by_key = dict(zip(keys, range(n)))
    perm = [by_key[k] for k in order]
    return CostGraph(names=[names[i] for i in perm], deps=[sorted(set(x)) for x in deps],
                     compute=[compute[i] for i in perm], memory=[memory[i] for i in perm],
                     is_backward=[backward[i] for i in perm], is_output=is_output, name=name)


def _from_checkmate(d: dict) -> CostGraph:
    """Checkmate training graphs: ids in topological order, the last node is the output."""
    try:
        nodes = d["nodes"]
        keys = [n["id"] for n in nodes]
        links = d.get("links", d.get("edges"))
        edges = [(e["source"], e["target"]) for e in links]
        name = d.get("graph", {}).get("name", "graph")
        g = _build(keys, [str(n.get("name", n["id"])) for n in nodes], edges,
                   [_cost(n["cost_cpu"], f"node {n['id']!r} cost_cpu") for n in nodes],
                   [_size(n["cost_ram"], f"node {n['id']!r} cost_ram") for n in nodes],
                   [_flag(n.get("backward", False), f"node {n['id']!r} backward") for n in nodes], max(keys), name)
    except (KeyError, TypeError, ValueError) as e:
        raise GraphFormatError(f"malformed Checkmate graph: missing or bad field {e}") from None
    return g


def _from_random_layered(d: dict) -> CostGraph:
    """Random layered DAGs: run in ``graph.order``; ``graph.target_node`` is the output."""
    try:
        meta = d["graph"]
        nodes = d["nodes"]
        keys = [n["name"] for n in nodes]
        edges = [(e["0"], e["1"]) for e in d["links"]]
        order = meta.get("order", keys)
        if sorted(map(str, order)) != sorted(map(str, keys)):
            raise GraphFormatError("graph.order does not list every node exactly once")
        by_key = {n["name"]: n for n in nodes}
        pos = _topological_positions(keys, edges, order)
        keys_sorted = sorted(keys, key=pos.__getitem__)
        target = meta.get("target_node", keys_sorted[-1])
        g = _build(keys_sorted, [str(k) for k in keys_sorted], edges,
                   [_cost(by_key[k]["duration"], f"node {k!r} duration") for k in keys_sorted],
                   [_size(by_key[k]["out_cost"], f"node {k!r} out_cost") for k in keys_sorted],
                   [False] * len(keys_sorted), target,
                   meta.get("name", "graph"))
    except (KeyError, TypeError, ValueError) as e:
        raise GraphFormatError(f"malformed random-layered graph: missing or bad field {e}") from None
    return g
