"""The trivial baseline: store every activation (the schedule every budget is a fraction of)."""

from __future__ import annotations

from ..graph import CostGraph
from . import SolverResult


def store_all(graph: CostGraph, budget_bytes: int) -> SolverResult:
    """Each node once, in topological order; ignores the budget.

    >>> from recompiler.builders import linear_chain
    >>> store_all(linear_chain(3), 0).schedule
    [0, 1, 2]
    """
    return SolverResult(schedule=graph.baseline_schedule())
