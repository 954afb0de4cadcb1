"""What a plan's user is told about it: a missed budget, an extreme overhead.

One wording for every path (``recompile plan|solve|check``, the backend's warnings), so a
budget is never missed in silence anywhere.

>>> from recompiler.builders import training_chain
>>> from recompiler.solvers import solve
>>> g = training_chain(8)
>>> plan = solve(g, g.floor() - 1, "chen-greedy")
>>> missed_budget_message(plan, g.floor()).startswith("budget")
True
"""

from __future__ import annotations

import time

from .budget import format_bytes

#: An estimated overhead above this share of the step's compute is worth a warning (+100%).
EXTREME_OVERHEAD = 1.0
#: How long the nearby-budget probe of that warning may take, all probes together (seconds):
#: the probe only improves a message, so it never holds up a solve for long.
PROBE_SECONDS = 2.0
#: Graphs above this many nodes skip the probe (one chen-greedy solve is seconds there).
PROBE_MAX_NODES = 20_000


def missed_budget_message(plan, floor_bytes: int) -> str:
    """``budget X not reached: best peak found Y (..%); no schedule can go below Z (a lower bound)``."""
    # the floor is a lower bound (CostGraph.floor): no schedule goes below it, but the best
    # reachable peak may well be above it, so it is never called "reachable"
    return (f"budget {format_bytes(plan.budget_bytes)} not reached: best peak found "
            f"{format_bytes(plan.peak_bytes)} ({100 * plan.peak_fraction:.1f}% of baseline); no schedule can go "
            f"below {format_bytes(floor_bytes)} ({100 * floor_bytes / plan.baseline_peak_bytes:.1f}%, a lower "
            "bound)")


def overhead_message(plan, graph) -> str | None:
    """A warning line when the plan's overhead is extreme, naming a cheaper nearby budget if one is found.

    The probe is chen-greedy (fast, deterministic) at a few budgets above the plan's peak,
    stopped after :data:`PROBE_SECONDS`: its figures are real plans (judged by simulate), though
    the chosen solver would likely do better still at the same budget.
    """
    if plan.overhead <= EXTREME_OVERHEAD:
        return None
    from .errors import RecompilerError
    from .solvers import solve

    head = f"this plan adds {100 * plan.overhead:.0f}% to the step's compute (estimated overhead)"
    base = plan.baseline_peak_bytes
    start = time.perf_counter()
    found = None
    for points in (5, 10, 20, 30, 50) if graph.n <= PROBE_MAX_NODES else ():
        share = min(1.0, plan.peak_fraction + points / 100)
        if time.perf_counter() - start > PROBE_SECONDS:
            break
        try:
            probe = solve(graph, max(1, int(base * share)), "chen-greedy")
        except RecompilerError:
            break
        if probe.feasible and probe.overhead <= min(EXTREME_OVERHEAD, plan.overhead / 2):
            found = (share, probe)
            break
        if share >= 1.0:
            break
    if found is None:
        return head + "; a larger budget lowers it (100% costs nothing)"
    share, probe = found
    return (head + f"; a budget of {100 * share:.0f}% ({format_bytes(int(base * share))}) costs about "
            f"+{100 * probe.overhead:.0f}% (a quick chen-greedy probe)")
