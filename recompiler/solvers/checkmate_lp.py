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
from .coarsen import Coarsened, coarsen

DEFAULT_TIME_LIMIT = 300.0
#: Graphs with more scheduled nodes are coarsened (see ``max_nodes``): the model grows as n²
#: (variables) to n³ (FREE rows), and at about this size HiGHS solves one relaxation in ~10 s here.
DEFAULT_MAX_NODES = 100
#: ... and coarsened further while the model has more nonzeros than this (~5 s per relaxation
#: here on vgg_unet's 70k, time-outs past 250k on a random layered graph).
MAX_NONZEROS = 150_000
MIN_COARSE_NODES = 16
THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))


def checkmate_lp(graph: CostGraph, budget_bytes: int, *, seed: int = 0, time_limit: float | None = None,
                 lp_budget_fraction: float = 0.9, random_draws: int = 32, lp_backend: str = "HIGHS",
                 memory_cap_bytes: int = DEFAULT_MEMORY_CAP, max_nodes: int | None = DEFAULT_MAX_NODES) -> SolverResult:
    """LP relaxation + two-phase rounding (module docstring).

    Options (keyword-only):

    - ``time_limit``: seconds for the whole call; each LP gets up to 40% of it.
    - ``lp_budget_fraction``: budget factor of the LP whose S is rounded (Checkmate: 0.9).
    - ``random_draws``: randomized roundings per LP solution, seeded by ``seed``.
    - ``lp_backend``: ``"HIGHS"`` (default, fastest here), ``"GLOP"`` or ``"PDLP"``.
    - ``memory_cap_bytes``: refuse (``ModelTooLarge``) a model whose estimated size exceeds this.
    - ``max_nodes``: a graph with more scheduled nodes is coarsened into runs of consecutive
      nodes (:mod:`.coarsen`) and the LP solved on at most about this many; None = never.
    """
    if lp_backend not in LP_BACKENDS:
        raise SolverOptionError(f"checkmate-lp lp_backend {lp_backend!r}: choose one of {', '.join(LP_BACKENDS)}")
    start = time.monotonic()
    limit = DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit)
    if max_nodes is not None and max_nodes < 2:
        raise SolverOptionError(f"checkmate-lp max_nodes must be >= 2 (or None), got {max_nodes}")
    floor = require_reachable(graph, budget_bytes)
    original, coarse = graph, None
    if max_nodes is not None:
        nodes = target = int((~graph.is_input).sum())
        # Coarser until the model is small enough to solve: density matters as much as size
        # (random layered graphs have 2-3x the FREE rows of a CNN of the same node count).
        # Pinned nodes and side changes are runs of their own, so a coarsening may stay above
        # max_nodes: the target then halves, and stops once it no longer shrinks the graph.
        while nodes > max_nodes or (nodes > MIN_COARSE_NODES
                                    and Formulation(graph, budget_bytes).size().nonzeros > MAX_NONZEROS):
            if target <= MIN_COARSE_NODES:
                break
            target = max(MIN_COARSE_NODES, min(max_nodes, target // 2) if target > max_nodes else target // 2)
            finer = coarsen(original, target)
            finer_nodes = int((~finer.graph.is_input).sum())
            if finer_nodes >= nodes:
                break
            coarse, graph, nodes = finer, finer.graph, finer_nodes
    full = Formulation(graph, budget_bytes)
    size = full.check_size(memory_cap_bytes)
    stats: dict = {"variables": size.variables, "constraints": size.constraints}
    if coarse is not None:
        stats["coarse_nodes"] = nodes

    t0 = time.monotonic()
    bound, s_full, status_full = solve_lp(full, time_limit=0.4 * limit, backend=lp_backend)
    # On a coarse graph the relaxation bounds only the coarse schedules, not the graph's.
    stats.update({"coarse_lp_cost" if coarse else "lower_bound_cost": bound}, lp_status=status_full,
                 lp_seconds=round(time.monotonic() - t0, 3))
    fractional: list[np.ndarray] = []
    reduced_budget = int(lp_budget_fraction * budget_bytes)
    if coarse is not None:
        floor = max(floor, graph.local_bound())
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
        return SolverResult(original.baseline_schedule(), stats=stats)

    best, tried = round_lp(full, fractional, seed=seed, random_draws=random_draws,
                           deadline=start + limit, coarse=coarse, graph=original)
    stats["roundings"] = tried
    stats["rounding_fits"] = best[0][0] == 0
    return SolverResult(best[1], stats=stats)


def round_lp(form: Formulation, fractional: list[np.ndarray], *, seed: int, random_draws: int,
             deadline: float | None = None, coarse: Coarsened | None = None, graph: CostGraph | None = None):
    """Round each fractional S (thresholds, then seeded draws), rebuild R, judge with simulate.

    Returns ``((fits?0:1, cost or peak, ...), schedule, R)`` of the best rounding and
    the number of distinct roundings tried. Stops early at ``deadline`` (monotonic
    seconds) once something has been judged. With ``coarse`` (``form`` is of
    ``coarse.graph``) each schedule is expanded and judged on the original ``graph``.
    """
    budget_bytes = form.budget_bytes
    graph = form.graph if coarse is None else graph
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
            if coarse is not None:
                schedule = coarse.expand(schedule)
            r = simulate(graph, schedule)
            fits = r.peak_bytes <= budget_bytes
            rank = (0, r.cost, r.peak_bytes) if fits else (1, r.peak_bytes, r.cost)
            if best is None or rank < best[0]:
                best = (rank, schedule, R)
    return best, len(tried)
