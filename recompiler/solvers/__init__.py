"""``solve``: one front function over every solver (the networkx ``flow_func`` pattern).

A solver is a plain function ``fn(graph, budget_bytes, *, seed, time_limit, allow_approx,
**options) -> SolverResult``; its schedule is judged by ``simulate`` in
:func:`~recompiler.plan.make_plan`, never by the solver itself.

>>> from recompiler.builders import training_chain
>>> plan = solve(training_chain(16), "60%", solver="chen-greedy")
>>> plan.feasible
True
"""

from __future__ import annotations

import importlib
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..budget import parse_budget
from ..errors import BudgetError, SolverOptionError, UnknownSolver
from ..graph import MAX_BYTES, CostGraph
from ..plan import Plan, make_plan
from ..simulate import baseline


@dataclass
class SolverResult:
    """What a solver returns: a schedule, a variant choice, and free-form stats for the plan JSON."""

    schedule: list[int]
    variant: list[int] | None = None
    stats: dict = field(default_factory=dict)


# name -> "module:function", imported on first use so that e.g. OR-Tools loads only when asked for.
SOLVERS: dict[str, str] = {
    "store-all": "recompiler.solvers.baselines:store_all",
    "chen-sqrtn": "recompiler.solvers.chen:chen_sqrtn",
    "chen-greedy": "recompiler.solvers.chen:chen_greedy",
    "greedy-evict": "recompiler.solvers.greedy_evict:greedy_evict",
    "fastsa": "recompiler.solvers.fastsa:fastsa",
    "checkmate-milp": "recompiler.solvers.checkmate_milp:checkmate_milp",
    "checkmate-lp": "recompiler.solvers.checkmate_lp:checkmate_lp",
}

DEFAULT_SOLVER = "fastsa"


def known_solvers() -> list[str]:
    return sorted(SOLVERS)


def get_solver(name: str) -> Callable[..., SolverResult]:
    """The solver function registered under ``name``; an unknown name lists the known ones."""
    if name not in SOLVERS:
        raise UnknownSolver(f"unknown solver {name!r}; known solvers: {', '.join(known_solvers())}")
    module, func = SOLVERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def _budget_bytes(budget) -> int:
    """A budget given as a number: whole bytes below 2**63 (byte counts are int64 in simulate and
    the native core; a larger budget used to surface as the core's TypeError)."""
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise BudgetError(f"budget {budget!r} is not a number of bytes")
    if isinstance(budget, (float, np.floating)) and not (math.isfinite(budget) and float(budget).is_integer()):
        raise BudgetError(f"budget {budget!r} is not a whole number of bytes")
    value = int(budget)
    if value > MAX_BYTES:
        raise BudgetError(f"budget {value:,} B is 2**63 bytes or more: byte counts must stay below 2**63")
    return value


def solve(graph: CostGraph, budget: str | int, solver: str | None = None, *, seed: int = 0,
          time_limit: float | None = None, allow_approx: bool = False, **options) -> Plan:
    """Plan ``graph`` under ``budget`` (bytes, ``"80%"`` of the baseline peak, or ``"12GiB"``).

    ``solver`` is a name from :data:`SOLVERS` (default :data:`DEFAULT_SOLVER`); solver-specific
    options are keyword-only and checked against the solver's signature. The returned Plan
    carries simulate's numbers and ``feasible`` (peak ≤ budget); a plan that misses the
    budget is still returned, with ``feasible=False``.
    """
    name = solver or DEFAULT_SOLVER
    fn = get_solver(name)
    params = inspect.signature(fn).parameters
    accepted = sorted(k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SolverOptionError(f"solver {name!r} takes no option {', '.join(unknown)}; "
                                f"its options: {', '.join(accepted) or 'none'}")
    base = baseline(graph)
    budget_bytes = parse_budget(budget, baseline_peak=base.peak_bytes) if isinstance(budget, str) \
        else _budget_bytes(budget)
    if graph.reference is not None and budget_bytes >= base.peak_bytes:
        # The step as its compiler runs it (inductor's own partition) already fits: that is the plan.
        return make_plan(graph, graph.reference, solver=name, budget_bytes=budget_bytes,
                         stats={"local_bound_bytes": graph.local_bound(), "floor_bytes": graph.floor(),
                                "reference": True})
    common = {"seed": seed, "time_limit": time_limit, "allow_approx": allow_approx}
    kwargs = {k: v for k, v in common.items() if k in params} | options
    start = time.perf_counter()
    result = fn(graph, budget_bytes, **kwargs)
    seconds = time.perf_counter() - start
    stats = {"local_bound_bytes": graph.local_bound(result.variant), "floor_bytes": graph.floor(result.variant),
             **result.stats}
    return make_plan(graph, result.schedule, solver=name, budget_bytes=budget_bytes, variant=result.variant,
                     solve_seconds=seconds, stats=stats)
