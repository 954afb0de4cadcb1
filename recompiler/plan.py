"""``Plan``: a schedule plus a variant choice, with the numbers ``simulate`` found for it.

Only :func:`make_plan` builds a Plan from a solver's answer, and it always runs
``simulate``: a solver's own claims about its plan are never trusted.

>>> from recompiler.builders import linear_chain
>>> g = linear_chain(3)
>>> p = make_plan(g, g.baseline_schedule(), solver="store-all", budget_bytes=10)
>>> p.feasible, p.peak_bytes, p.overhead
(True, 2, 0.0)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import GraphFormatError, InvalidGraph
from .fileio import write_json_atomic
from .graph import CostGraph
from .simulate import baseline, simulate


@dataclass
class Plan:
    """A judged plan; the field names are those of the plan JSON in DESIGN.md."""

    graph: str
    solver: str
    budget_bytes: int
    baseline_peak_bytes: int
    peak_bytes: int
    baseline_cost: float
    cost: float
    overhead: float
    solve_seconds: float
    schedule: list[int]
    variant: list[int]
    recomputed: list[str]
    feasible: bool
    stats: dict = field(default_factory=dict)
    #: The non-default lowerings chosen: ``{"group", "kind", "option", "exact", "module"}`` each.
    lowerings: list = field(default_factory=list)

    @property
    def peak_fraction(self) -> float:
        return self.peak_bytes / self.baseline_peak_bytes if self.baseline_peak_bytes else 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        """Read a plan JSON object; any field of the wrong type is a GraphFormatError naming it."""
        _check_plan_dict(d)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k not in ("stats", "lowerings")},
                   stats=d.get("stats", {}), lowerings=list(d.get("lowerings", [])))

    def save(self, path: str | os.PathLike, *, make_parents: bool = True) -> None:
        """Write the plan JSON atomically (temp file + rename), mode 0666 less the umask."""
        write_json_atomic(path, self.to_dict(), make_parents=make_parents)


def load_plan(path: str | os.PathLike) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise GraphFormatError(f"plan file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise GraphFormatError(f"{path}: cannot read the plan ({e})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise GraphFormatError(f"{path}: not valid JSON ({e})") from None
    try:
        return Plan.from_dict(d)
    except GraphFormatError as e:
        raise GraphFormatError(f"{path}: {e}") from None


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


#: What each plan JSON field must hold (DESIGN.md): a check and the words for the error.
_FIELD_TYPES = {
    "graph": (lambda x: isinstance(x, str), "a string"),
    "solver": (lambda x: isinstance(x, str), "a string"),
    "budget_bytes": (lambda x: _is_int(x) and x >= 0, "a non-negative integer"),
    "baseline_peak_bytes": (lambda x: _is_int(x) and x >= 0, "a non-negative integer"),
    "peak_bytes": (lambda x: _is_int(x) and x >= 0, "a non-negative integer"),
    "baseline_cost": (_is_number, "a number"),
    "cost": (_is_number, "a number"),
    "overhead": (_is_number, "a number"),
    "solve_seconds": (_is_number, "a number"),
    "schedule": (lambda x: isinstance(x, list) and all(_is_int(v) and v >= 0 for v in x),
                 "a list of node ids (non-negative integers)"),
    "variant": (lambda x: isinstance(x, list) and all(_is_int(v) and v >= 0 for v in x),
                "a list of option indices (non-negative integers)"),
    "recomputed": (lambda x: isinstance(x, list) and all(isinstance(v, str) for v in x), "a list of node names"),
    "feasible": (lambda x: isinstance(x, bool), "true or false"),
}


def _check_plan_dict(d) -> None:
    """Reject a plan JSON that would make its readers (``recompile show``, ``apply_plan``) crash.

    A plan file is user input: it may be hand-edited or come from another tool, so every field
    the readers index or do arithmetic with is checked here, once, with a message naming it.
    """
    if not isinstance(d, dict):
        raise GraphFormatError(f"a plan JSON must be an object, not {_json_kind(d)}")
    for name in Plan.__dataclass_fields__:
        if name in ("stats", "lowerings"):
            continue
        if name not in d:
            raise GraphFormatError(f"plan JSON lacks field {name!r}")
        ok, words = _FIELD_TYPES[name]
        if not ok(d[name]):
            raise GraphFormatError(f"plan field {name!r} must be {words}, not {_json_kind(d[name])}")
    stats = d.get("stats", {})
    if not isinstance(stats, dict):
        raise GraphFormatError(f"plan field 'stats' must be an object, not {_json_kind(stats)}")
    lowerings = d.get("lowerings", [])
    if not (isinstance(lowerings, list) and all(
            isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("group", "kind", "option"))
            for e in lowerings)):
        raise GraphFormatError("plan field 'lowerings' must be a list of objects with string "
                               "'group', 'kind' and 'option'")
    for key in ("node_names", "module_paths"):
        if key in stats and not (isinstance(stats[key], list)
                                 and all(isinstance(v, str) or v is None for v in stats[key])):
            raise GraphFormatError(f"plan field 'stats.{key}' must be a list of strings")
    top = max(d["schedule"], default=-1)
    for key in ("node_names", "module_paths"):  # one entry per node of the graph
        if key in stats and top >= len(stats[key]):
            raise GraphFormatError(f"plan schedule names node {top}, but stats.{key} has only "
                                   f"{len(stats[key])} nodes")
    if "node_names" in stats and "module_paths" in stats and len(stats["module_paths"]) != len(stats["node_names"]):
        raise GraphFormatError(f"plan stats.module_paths has {len(stats['module_paths'])} entries, "
                               f"stats.node_names {len(stats['node_names'])}")


def _json_kind(x) -> str:
    """How JSON would call the value: an array, a string, a number..."""
    if isinstance(x, bool):
        return "a boolean"
    if x is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(x), type(x).__name__)


def recomputed_names(graph: CostGraph, schedule: Sequence[int]) -> list[str]:
    """Names of the nodes that appear more than once, in order of first recomputation."""
    seen: set[int] = set()
    out: dict[int, None] = {}
    for v in schedule:
        if v in seen:
            out.setdefault(int(v), None)
        seen.add(int(v))
    return [graph.names[v] for v in out]


def make_plan(graph: CostGraph, schedule: Sequence[int], *, solver: str, budget_bytes: int,
              variant: Sequence[int] | None = None, solve_seconds: float = 0.0, stats: dict | None = None) -> Plan:
    """Judge a solver's schedule with ``simulate`` and wrap it as a Plan.

    An invalid schedule is a solver bug, so it raises InvalidGraph with simulate's reason.
    """
    schedule = [int(v) for v in np.asarray(schedule).reshape(-1)]
    variant = [int(v) for v in (variant if variant is not None else graph.default_variant())]
    base = baseline(graph)
    res = simulate(graph, schedule, variant)
    if not res.valid:
        raise InvalidGraph(f"solver {solver!r} produced an invalid schedule: {res.reason}")
    return Plan(graph=graph.name, solver=solver, budget_bytes=int(budget_bytes),
                baseline_peak_bytes=base.peak_bytes, peak_bytes=res.peak_bytes, baseline_cost=base.cost,
                cost=res.cost, overhead=(res.cost / base.cost - 1.0) if base.cost else 0.0,
                solve_seconds=float(solve_seconds), schedule=schedule, variant=variant,
                recomputed=recomputed_names(graph, schedule), feasible=res.peak_bytes <= budget_bytes,
                stats=dict(stats or {}))
