"""Coarsening for the Checkmate LP: every expanded schedule is valid, runs respect pins and sides."""

from __future__ import annotations

from recompiler.builders import random_layered, training_chain
from recompiler.simulate import simulate
from recompiler.solvers import solve
from recompiler.solvers.coarsen import coarsen


def test_runs_cover_the_graph_and_expand_to_valid_schedules():
    for g in (training_chain(12), random_layered(60, width=4, seed=3)):
        c = coarsen(g, 8)
        members = sorted(v for run in c.runs for v in run)
        assert members == [v for v in range(g.n) if not g.is_input[v]]
        for run in c.runs:
            assert len({bool(g.is_backward[v]) for v in run}) <= 1
        assert simulate(g, c.expand(c.graph.baseline_schedule())).valid


def test_checkmate_lp_coarsens_a_large_graph_and_the_plan_is_judged_on_the_original():
    g = training_chain(80)
    plan = solve(g, "60%", "checkmate-lp", time_limit=30, max_nodes=20)
    assert plan.stats["coarse_nodes"] <= 24 and "lower_bound_cost" not in plan.stats
    assert simulate(g, plan.schedule).valid and plan.feasible


def test_coarsening_ends_when_pinned_nodes_keep_the_graph_above_max_nodes():
    # every third node pinned: no coarsening gets below 2n/3 pinned runs, so it must stop (it
    # used to halve its target forever), and the LP is solved on the coarsest graph reached
    import dataclasses
    import time

    import numpy as np

    g = training_chain(60)
    pinned = np.zeros(g.n, dtype=bool)
    pinned[[v for v in range(g.n) if not g.is_input[v]][::3]] = True
    g = dataclasses.replace(g, pinned=pinned)
    start = time.perf_counter()
    plan = solve(g, "80%", "checkmate-lp", time_limit=20, max_nodes=10)
    assert time.perf_counter() - start < 20
    assert plan.stats["coarse_nodes"] >= int(pinned.sum()) and simulate(g, plan.schedule).valid
