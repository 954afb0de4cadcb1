"""``checkmate-lp``: Checkmate's LP relaxation with rounding (Jain et al., MLSys 2020, §5).

Solve the relaxation of the Checkmate model (:mod:`.checkmate_model`) with HiGHS at
``lp_budget_fraction`` × budget (0.9: rounding tends to add memory), round its
fractional S (deterministic thresholds 0.1..0.9 and ``random_draws`` seeded
Bernoulli draws), rebuild the cheapest R for each rounded S in closed form
(Checkmate's rule, and a lazy variant that recomputes where a value is read
rather than refilling a hold: see ``Formulation.cheapest_r``), judge
each schedule with ``simulate`` and keep the cheapest one that fits the budget
(else the one with the lowest peak). The relaxation at the full budget is solved
too: its objective is ``stats["lower_bound_cost"]``, a lower bound on the cost of
every staged schedule that fits (0.9 × budget would not be a bound), and its S is
rounded as well. Where 0.9 × budget is below the local bound (vgg16 at 90%), the
reduced LP is solved halfway between the bound and the budget instead.

>>> from recompiler.builders import training_chain
>>> from recompiler.solvers import solve
>>> plan = solve(training_chain(6), 5, solver="checkmate-lp")
>>> plan.feasible, plan.stats["lower_bound_cost"] <= plan.cost
(True, True)
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import SolverOptionError
from ..graph import CostGraph
from ..simulate import simulate
from . import SolverResult
from .checkmate_model import DEFAULT_MEMORY_CAP, require_reachable, LP_BACKENDS, Formulation, solve_lp

DEFAULT_TIME_LIMIT = 300.0
THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))


def checkmate_lp(graph: CostGraph, budget_bytes: int, *, seed: int = 0, time_limit: float | None = None,
                 lp_budget_fraction: float = 0.9, random_draws: int = 32, lp_backend: str = "HIGHS",
                 memory_cap_bytes: int = DEFAULT_MEMORY_CAP) -> SolverResult:
    """LP relaxation + two-phase rounding (module docstring).

    Options (keyword-only):

    - ``time_limit``: seconds for the whole call; each LP gets up to 40% of it.
    - ``lp_budget_fraction``: budget factor of the LP whose S is rounded (Checkmate: 0.9).
    - ``random_draws``: randomized roundings per LP solution, seeded by ``seed``.
    - ``lp_backend``: ``"HIGHS"`` (default, fastest here), ``"GLOP"`` or ``"PDLP"``.
    - ``memory_cap_bytes``: refuse (``ModelTooLarge``) a model whose estimated size exceeds this.
    """
    if lp_backend not in LP_BACKENDS:
        raise SolverOptionError(f"checkmate-lp lp_backend {lp_backend!r}: choose one of {', '.join(LP_BACKENDS)}")
    start = time.monotonic()
    limit = DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit)
    floor = require_reachable(graph, budget_bytes)
    full = Formulation(graph, budget_bytes)
    size = full.check_size(memory_cap_bytes)
    stats: dict = {"variables": size.variables, "constraints": size.constraints}

    t0 = time.monotonic()
    bound, s_full, status_full = solve_lp(full, time_limit=0.4 * limit, backend=lp_backend)
    stats.update(lower_bound_cost=bound, lp_status=status_full, lp_seconds=round(time.monotonic() - t0, 3))
    fractional: list[np.ndarray] = []
    reduced_budget = int(lp_budget_fraction * budget_bytes)
    if reduced_budget < floor:  # 0.9 x budget can be below the floor: halfway to it instead
        reduced_budget = (floor + budget_bytes) // 2
    if lp_budget_fraction < 1.0 and reduced_budget < budget_bytes:
        left = limit - (time.monotonic() - start)
        if left > 1.0:
            _, s_low, status_low = solve_lp(Formulation(graph, reduced_budget), time_limit=min(0.4 * limit, left),
                                             backend=lp_backend)
            stats["lp_reduced_status"] = status_low
            if s_low is not None:
                fractional.append(s_low)
    if s_full is not None:
        fractional.append(s_full)
    if not fractional:
        # No LP solution in time: nothing to round; store-all is judged infeasible by make_plan.
        stats["roundings"] = 0
        return SolverResult(graph.baseline_schedule(), stats=stats)

    best, tried = round_lp(full, fractional, seed=seed, random_draws=random_draws,
                           deadline=start + limit)
    stats["roundings"] = tried
    stats["rounding_fits"] = best[0][0] == 0
    return SolverResult(best[1], stats=stats)


def round_lp(form: Formulation, fractional: list[np.ndarray], *, seed: int, random_draws: int,
             deadline: float | None = None):
    """Round each fractional S (thresholds, then seeded draws), rebuild R, judge with simulate.

    Returns ``((fits?0:1, cost or peak, ...), schedule, R)`` of the best rounding and
    the number of distinct roundings tried. Stops early at ``deadline`` (monotonic
    seconds) once something has been judged.
    """
    graph, budget_bytes = form.graph, form.budget_bytes
    rng = np.random.default_rng(seed)
    candidates: list[np.ndarray] = []
    for S in fractional:
        candidates.extend(S >= th - 1e-9 for th in THRESHOLDS)
        candidates.extend(rng.random(S.shape) < S for _ in range(random_draws))
    best = None
    tried: set[bytes] = set()
    for S in candidates:
        if deadline is not None and time.monotonic() > deadline and best is not None:
            break
        for lazy in (False, True):
            R = form.cheapest_r(S, lazy=lazy)
            key = np.packbits(R).tobytes()
            if key in tried:
                continue
            tried.add(key)
            schedule = form.schedule_from_r(R)
            r = simulate(graph, schedule)
            fits = r.peak_bytes <= budget_bytes
            rank = (0, r.cost, r.peak_bytes) if fits else (1, r.peak_bytes, r.cost)
            if best is None or rank < best[0]:
                best = (rank, schedule, R)
    return best, len(tried)
