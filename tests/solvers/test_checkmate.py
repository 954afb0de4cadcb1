"""checkmate-milp and checkmate-lp against exhaustive search on small graphs.

Two exhaustive searches (Dijkstra over (position, held values) states, memory
counted as ``simulate`` does: the held values plus the node being computed):

- ``staged_optimum``: the cheapest schedule in Checkmate's family (stage t computes
  some nodes ≤ t in index order and ends with node t). The MILP must equal it.
- ``general_optimum``: the cheapest schedule of all (any order, any repeats). It is
  a lower bound on the MILP (the staged family is smaller).
"""

from __future__ import annotations

import heapq
import itertools
import time

import numpy as np
import pytest

from recompiler.builders import linear_chain, random_layered, training_chain
from recompiler.errors import InfeasibleBudget
from recompiler.graph import CostGraph
from recompiler.simulate import baseline, simulate
from recompiler.solvers import solve
from recompiler.solvers.checkmate_model import Formulation, ModelTooLarge


# ------------------------------------------------------------------ exhaustive searches
def _setup(graph: CostGraph):
    nodes = [v for v in range(graph.n) if not graph.is_input[v]]
    local = {v: k for k, v in enumerate(nodes)}
    deps = [sum(1 << local[d] for d in set(graph.deps[v]) if not graph.is_input[d]) for v in nodes]
    mem = [int(graph.memory[v]) for v in nodes]
    cost = [float(graph.compute[v]) for v in nodes]
    outputs = sum(1 << k for k, v in enumerate(nodes) if graph.is_output[v])
    pinned = [bool(graph.pinned[v]) for v in nodes]
    return len(nodes), deps, mem, cost, outputs, pinned


def graph_capacity(graph: CostGraph, budget: int) -> int:
    return budget - graph.input_bytes - graph.fixed_memory


def _held_bytes(mem, held: int) -> int:
    return sum(mem[k] for k in range(len(mem)) if held >> k & 1)


def _dijkstra(start, moves, is_goal):
    """Cheapest cost from ``start`` to a goal state; ``moves(state)`` yields (cost, state)."""
    best = {start: 0.0}
    heap = [(0.0, 0, start)]
    tie = itertools.count(1)
    while heap:
        c, _, s = heapq.heappop(heap)
        if c > best.get(s, float("inf")):
            continue
        if is_goal(s):
            return c
        for dc, s2 in moves(s):
            if c + dc < best.get(s2, float("inf")):
                best[s2] = c + dc
                heapq.heappush(heap, (c + dc, next(tie), s2))
    return None


def staged_optimum(graph: CostGraph, budget: int) -> float | None:
    """The cheapest staged schedule whose peak (our semantics) is ≤ budget; None if none fits."""
    m, deps, mem, cost, outputs, pinned = _setup(graph)
    cap = graph_capacity(graph, budget)

    def moves(state):
        t, k, held = state
        if t == m:  # all stages done but an output is missing: a dead end
            return
        for x in range(m):  # drop a held value (free)
            if held >> x & 1:
                yield 0.0, (t, k, held & ~(1 << x))
        for j in range(k + 1, t + 1):
            if held >> j & 1 or deps[j] & ~held or (pinned[j] and j != t):
                continue
            if _held_bytes(mem, held) + mem[j] > cap:
                continue
            yield cost[j], ((t + 1, -1, held | 1 << j) if j == t else (t, j, held | 1 << j))

    return _dijkstra((0, -1, 0), moves, lambda s: s[0] == m and s[2] & outputs == outputs)


def general_optimum(graph: CostGraph, budget: int) -> float | None:
    """The cheapest schedule of any shape whose peak is ≤ budget; None if none fits."""
    m, deps, mem, cost, outputs, pinned = _setup(graph)
    cap = graph_capacity(graph, budget)
    everything = (1 << m) - 1

    def moves(state):
        done, held = state
        for x in range(m):
            if held >> x & 1:
                yield 0.0, (done, held & ~(1 << x))
        for j in range(m):
            if held >> j & 1 or deps[j] & ~held or (pinned[j] and done >> j & 1):
                continue
            if _held_bytes(mem, held) + mem[j] > cap:
                continue
            yield cost[j], (done | 1 << j, held | 1 << j)

    return _dijkstra((0, 0), moves, lambda s: s[0] == everything and s[1] & outputs == outputs)


# ----------------------------------------------------------------------- small graphs
def random_dag(n: int, seed: int, *, inputs: int = 1, pinned: int = 1, fixed: int = 3) -> CostGraph:
    """A seeded DAG with inputs first, a few pinned nodes, two outputs and uneven costs."""
    rng = np.random.default_rng(seed)
    deps = []
    for i in range(n):
        if i < inputs:
            deps.append([])
            continue
        k = int(rng.integers(1, min(3, i) + 1))
        deps.append(sorted({int(x) for x in rng.choice(i, size=k, replace=False)}))
    is_input = np.arange(n) < inputs
    pin = np.zeros(n, dtype=bool)
    pin[rng.choice(np.arange(inputs, n), size=pinned, replace=False)] = True
    out = np.zeros(n, dtype=bool)
    out[-1] = True
    out[int(rng.integers(inputs, n - 1))] = True
    return CostGraph(names=[f"v{i}" for i in range(n)], deps=deps, compute=rng.integers(1, 6, n).astype(float),
                     memory=rng.integers(1, 9, n), is_input=is_input, pinned=pin, is_output=out,
                     fixed_memory=fixed, name=f"dag{n}_{seed}")


SMALL = [training_chain(3), training_chain(4), linear_chain(7),
         random_layered(9, width=3, seed=1, max_memory=9), random_layered(8, width=2, seed=2, max_memory=9),
         random_dag(9, 3), random_dag(10, 4), random_dag(9, 5, pinned=2)]


def budgets(graph: CostGraph) -> list[int]:
    """Budgets from the local bound to the baseline peak (and one below the bound)."""
    lo, hi = graph.local_bound(), baseline(graph).peak_bytes
    return sorted({lo - 1, lo, (2 * lo + hi) // 3, (lo + 2 * hi) // 3, hi})


CASES = [(g, b) for g in SMALL for b in budgets(g)]


@pytest.mark.parametrize("graph,budget", CASES, ids=[f"{g.name}-{b}" for g, b in CASES])
def test_milp_equals_exhaustive_search(graph, budget):
    staged = staged_optimum(graph, budget)
    general = general_optimum(graph, budget)
    if staged is None:
        with pytest.raises(InfeasibleBudget):
            solve(graph, budget, solver="checkmate-milp", time_limit=30)
        return
    plan = solve(graph, budget, solver="checkmate-milp", time_limit=30)
    assert plan.stats["optimal"] and plan.stats["gap"] == 0.0
    # The MILP's own number, simulate's cost and the exhaustive optimum agree.
    assert plan.cost == pytest.approx(plan.stats["milp_cost"], abs=1e-9)
    assert plan.cost == pytest.approx(staged, abs=1e-9)
    assert plan.feasible and plan.peak_bytes <= budget
    assert general is not None and general <= plan.cost + 1e-9
    assert plan.stats["lower_bound_cost"] <= plan.cost + 1e-6


@pytest.mark.parametrize("graph", SMALL, ids=[g.name for g in SMALL])
def test_lp_rounding_is_valid_and_bounded(graph):
    for budget in budgets(graph)[1:]:
        staged = staged_optimum(graph, budget)
        plan = solve(graph, budget, solver="checkmate-lp", seed=1, time_limit=30)  # make_plan re-simulates
        r = simulate(graph, plan.schedule)
        assert r.valid and r.cost == plan.cost and r.peak_bytes == plan.peak_bytes
        lb = plan.stats["lower_bound_cost"]
        if staged is None:  # no staged schedule fits, so no rounding can (the LP may still be feasible)
            assert not plan.feasible
            continue
        assert lb is not None and lb <= staged + 1e-6
        if plan.feasible:  # a rounded plan is a staged schedule: never below the staged optimum
            assert plan.cost >= staged - 1e-9
        assert plan.stats["rounding_fits"] == plan.feasible


def test_lp_rounding_fits_a_training_chain():
    g = training_chain(12)
    for budget in ("90%", "70%"):
        plan = solve(g, budget, solver="checkmate-lp", time_limit=30)
        assert plan.feasible and plan.stats["lower_bound_cost"] <= plan.cost


def test_formulation_schedule_roundtrip():
    """R = identity is the store-all schedule; cheapest_r of "keep everything" is R = identity."""
    g = random_dag(9, 7)
    f = Formulation(g, 10**9)
    assert f.schedule_from_r(np.eye(f.m, dtype=bool)) == g.baseline_schedule()
    keep = np.tril(np.ones((f.m + 1, f.m), dtype=bool), -1)
    assert (f.cheapest_r(keep) == np.eye(f.m, dtype=bool)).all()
    # Keep nothing: every stage recomputes what its frontier needs, pinned nodes excepted.
    r = f.cheapest_r(np.zeros((f.m + 1, f.m), dtype=bool))
    sched = f.schedule_from_r(r)
    assert simulate(g, sched).valid
    pinned = [v for v in range(g.n) if g.pinned[v]]
    assert all(sched.count(v) == 1 for v in pinned)


def test_model_size_cap_names_the_variables():
    g = random_layered(60, seed=0)
    size = Formulation(g, baseline(g).peak_bytes).size()
    for name in ("checkmate-milp", "checkmate-lp"):
        with pytest.raises(ModelTooLarge, match=f"{size.variables:,} variables"):
            solve(g, "90%", solver=name, memory_cap_bytes=10**6)


def test_size_estimate_counts_the_built_model():
    g = random_dag(10, 4)
    f = Formulation(g, baseline(g).peak_bytes)
    lm = f.build()
    assert f.size().variables == lm.num_vars
    assert f.size().constraints == len(lm.rows)


def test_time_limit_is_honored_and_reports_the_gap():
    g = random_layered(60, seed=5)
    start = time.monotonic()
    plan = solve(g, "60%", solver="checkmate-milp", time_limit=3, lp_bound=False)
    elapsed = time.monotonic() - start
    assert elapsed < 3 + 3.0
    if plan.stats["optimal"]:
        pytest.skip("solved to optimality within the limit; nothing to check about time-outs")
    assert plan.stats["status"] in ("time limit", "no solution")
    if plan.stats["milp_cost"] is not None:
        assert 0.0 <= plan.stats["gap"] <= 1.0
        assert plan.cost == pytest.approx(plan.stats["milp_cost"])


def test_budget_below_the_local_bound_fails_fast():
    g = random_layered(60, seed=0)
    start = time.monotonic()
    with pytest.raises(InfeasibleBudget, match="local bound"):
        solve(g, g.local_bound() - 1, solver="checkmate-milp", time_limit=60)
    with pytest.raises(InfeasibleBudget, match="local bound"):
        solve(g, g.local_bound() - 1, solver="checkmate-lp", time_limit=60)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("graph", SMALL[3:] + [random_layered(30, seed=9)], ids=lambda g: g.name)
def test_model_memory_equals_simulate_on_staged_schedules(graph):
    """For staged schedules, the exact S/FREE/U assignment meets every row but the
    budget, and its largest U is simulate's peak: the model's memory is our semantics."""
    f = Formulation(graph, baseline(graph).peak_bytes)
    lm = f.build()
    rng = np.random.default_rng(0)
    for _ in range(20):
        R = f.cheapest_r(rng.random((f.m + 1, f.m)) < rng.random())
        values = f.exact_values(R, lm)
        for terms, lb, ub in lm.rows:
            act = sum(values[v] * c for v, c in terms)
            assert lb - 1e-9 <= act <= ub + 1e-9
        peak = max(values[lm.U[t, k]] for t in range(f.m) for k in range(t + 1) if R[t, k])
        r = simulate(graph, f.schedule_from_r(R))
        assert peak * f.unit + graph.input_bytes + graph.fixed_memory == r.peak_bytes
        assert all(values[v] >= 0 for v in lm.U.values())


@pytest.mark.parametrize("backend", ["cp-sat", "scip", "highs"])
def test_backends_agree(backend):
    for graph in (SMALL[1], SMALL[5]):
        budget = budgets(graph)[2]
        plan = solve(graph, budget, solver="checkmate-milp", backend=backend, time_limit=30)
        assert plan.stats["optimal"] and plan.cost == pytest.approx(staged_optimum(graph, budget))


def test_an_optimal_claim_simulate_does_not_bear_out_is_withdrawn():
    from recompiler.builders import training_chain
    from recompiler.solvers.checkmate_milp import _check_claim

    g = training_chain(6)
    sched = g.baseline_schedule()
    cost = simulate(g, sched).cost
    good = {"optimal": True, "milp_cost": cost}
    _check_claim(g, sched, 10**12, good)
    assert good["optimal"] and "optimal_withdrawn" not in good
    off = {"optimal": True, "milp_cost": cost * (1 + 1e-4)}       # a floating-point backend's drift
    _check_claim(g, sched, 10**12, off)
    assert not off["optimal"] and "differs" in off["optimal_withdrawn"]
    tight = {"optimal": True, "milp_cost": cost}
    _check_claim(g, sched, 1, tight)                               # does not fit: not optimal either
    assert not tight["optimal"] and "does not fit" in tight["optimal_withdrawn"]


def _huge(graph: CostGraph) -> CostGraph:
    """``graph`` with every size near a billion bytes and no common divisor (so units stay 1 byte)."""
    memory = np.asarray(graph.memory, dtype=np.int64) * 1_000_000_007 + np.arange(graph.n) % 5
    return CostGraph(names=graph.names, deps=graph.deps, compute=graph.compute, memory=memory,
                     is_input=graph.is_input, pinned=graph.pinned, is_output=graph.is_output,
                     fixed_memory=graph.fixed_memory, name=graph.name + "_huge")


@pytest.mark.parametrize("backend", ["highs", "scip", "cp-sat"])
def test_milp_is_exact_with_sizes_of_a_billion_bytes(backend):
    # Memory coefficients of 10^9 are what broke HiGHS's presolve on the Checkmate graphs
    # (a wrong "optimal"); the scaled memory rows must keep every backend exact.
    for graph in (_huge(SMALL[5]), _huge(SMALL[6]), _huge(SMALL[1])):
        for budget in budgets(graph)[1:4]:
            best = staged_optimum(graph, budget)
            if best is None:
                with pytest.raises(InfeasibleBudget):
                    solve(graph, budget, solver="checkmate-milp", backend=backend, time_limit=30)
                continue
            plan = solve(graph, budget, solver="checkmate-milp", backend=backend, time_limit=30)
            assert plan.stats["optimal"], (graph.name, budget, plan.stats)
            assert plan.cost == pytest.approx(best, abs=1e-9) and plan.peak_bytes <= budget


def test_a_claimed_optimum_costlier_than_the_mip_start_is_withdrawn(monkeypatch):
    from recompiler.solvers import checkmate_milp as milp

    def wrong_optimum(lm, time_limit, backend, hint):  # a backend that proves a costlier point optimal
        objective = float(np.dot(lm.obj, hint)) + lm.obj_const
        return "optimal", np.asarray(hint), 2 * objective, 2 * objective

    monkeypatch.setattr(milp, "_solve_pywraplp", wrong_optimum)
    graph = training_chain(6)
    budget = budgets(graph)[2]
    plan = solve(graph, budget, solver="checkmate-milp", time_limit=30)
    assert plan.stats["warm_start_cost"] is not None
    assert not plan.stats["optimal"] and "MIP start" in plan.stats["optimal_withdrawn"]
    assert plan.cost == pytest.approx(plan.stats["warm_start_cost"]) and plan.feasible


@pytest.mark.slow
def test_milp_proves_the_true_optimum_of_vgg_unet_at_90_percent():
    # HiGHS once called +1.290% optimal here while +1.129% fits (issue 15).
    from bench_models.shared_graphs import graph_path
    from recompiler.graph_io import read_graph

    graph = read_graph(graph_path("vgg_unet"))
    base = baseline(graph)
    plan = solve(graph, int(0.9 * base.peak_bytes), solver="checkmate-milp", time_limit=120)
    assert plan.stats["optimal"] and plan.feasible
    assert 100 * (plan.cost / base.cost - 1) == pytest.approx(1.1289, abs=1e-3)
