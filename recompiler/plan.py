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
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k not in ("stats", "lowerings")},
                       stats=d.get("stats", {}), lowerings=list(d.get("lowerings", [])))
        except KeyError as e:
            raise GraphFormatError(f"plan JSON lacks field {e}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan JSON atomically (temp file + rename)."""
        write_json_atomic(path, self.to_dict())


def load_plan(path: str | os.PathLike) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise GraphFormatError(f"plan file not found: {path}")
    try:
        return Plan.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise GraphFormatError(f"{path}: not valid JSON ({e})") from None


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
