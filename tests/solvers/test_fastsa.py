"""FastSA: optimal on brute-forceable graphs, always valid, honest about unreachable budgets."""

from __future__ import annotations

import heapq
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recompiler.builders import random_layered, training_chain, transformer_block
from recompiler.errors import SolverOptionError
from recompiler.graph import CostGraph, VariantGroup, VariantOption
from recompiler.simulate import baseline, simulate, simulate_reference
from recompiler.solvers import DEFAULT_SOLVER, solve
from recompiler.solvers.fastsa import FastSAConfig, fastsa, floor_bytes

# Small stage 2 for small graphs: the tests stay fast, the answers stay optimal.
QUICK = dict(stage1_iterations=200_000, stage2_iterations=200_000)


def brute_force_min_cost(graph: CostGraph, budget: int) -> float | None:
    """The cheapest valid schedule with peak <= budget, by Dijkstra over (held values, computed nodes).

    A step computes one node whose non-input deps are held; the bytes live at that step are the
    held values plus the new one (plus inputs and fixed memory), exactly as ``simulate`` counts
    them when every value is freed right after its last use. Freeing a held value is a free
    move. Done when every node was computed and every output is held. None if no schedule fits.
    """
    n = graph.n
    sched = [v for v in range(n) if not graph.is_input[v]]
    size = [int(m) for m in graph.memory]
    base = graph.input_bytes + graph.fixed_memory
    need = [sum(1 << d for d in set(graph.deps[v]) if not graph.is_input[d]) for v in range(n)]
    full = sum(1 << v for v in sched)
    outs = sum(1 << v for v in sched if graph.is_output[v])

    def held_bytes(mask):
        return sum(size[v] for v in sched if mask >> v & 1)

    start = (0, 0)
    dist = {start: 0.0}
    heap = [(0.0, 0, 0)]
    while heap:
        c, held, done = heapq.heappop(heap)
        if dist.get((held, done), float("inf")) < c:
            continue
        if done == full and held & outs == outs:
            return c
        nxt = []
        for v in sched:
            if held >> v & 1:  # recomputing a held value never helps
                continue
            if graph.pinned[v] and done >> v & 1:
                continue
            if need[v] & ~held:
                continue
            if base + held_bytes(held) + size[v] > budget:
                continue
            nxt.append((c + float(graph.compute[v]), held | 1 << v, done | 1 << v))
        for v in sched:
            if held >> v & 1:
                nxt.append((c, held & ~(1 << v), done))
        for nc, nh, nd in nxt:
            if nc < dist.get((nh, nd), float("inf")):
                dist[(nh, nd)] = nc
                heapq.heappush(heap, (nc, nh, nd))
    return None


def _skips() -> CostGraph:
    """Heterogeneous sizes and costs on a chain with skip connections."""
    return CostGraph(names=list("abcdefgh"), deps=[[], [0], [1], [1, 2], [3], [2, 4], [0, 5], [6, 3]],
                     compute=[3, 1, 4, 1, 5, 9, 2, 6], memory=[8, 2, 9, 3, 7, 1, 6, 4],
                     is_output=[False] * 7 + [True], name="skips")


def _budget(graph: CostGraph, fraction: float) -> int:
    """``fraction`` of the way from the floor (0.0) to the store-all peak (1.0)."""
    floor = graph.local_bound()
    return int(floor + (baseline(graph).peak_bytes - floor) * fraction)


SMALL = {
    **{f"random9_s{seed}": random_layered(9, width=3, edge_prob=0.5, seed=seed, max_memory=50) for seed in range(4)},
    "random11_s7": random_layered(11, width=2, edge_prob=0.5, seed=7, max_memory=50),
    "skips": _skips(),
    "train_chain4": training_chain(4, memory=10),
    "train_chain5": training_chain(5, compute=2.0, with_input=True),
}
FRACTIONS = (0.0, 0.3, 0.6, 1.0)
# Budgets at or next to the floor of the training chains, where the optimum recomputes whole
# prefixes of the chain several times (and the loss output at the very end). Segment moves find
# one such prefix (train_chain5 at 0.3); here the peak falls only once several are in place, and
# no single move lowers max(peak): the objective is flat in between. Strict: if FastSA learns
# them, this list shrinks.
KNOWN_MISSES = {("train_chain4", 0.0), ("train_chain4", 0.3), ("train_chain5", 0.0)}
CASES = [pytest.param(name, f, marks=pytest.mark.xfail(strict=True, reason="deep checkpointing at the floor"))
         if (name, f) in KNOWN_MISSES else pytest.param(name, f) for name in SMALL for f in FRACTIONS]


_OPTIMA: dict = {}


def optimum(name: str, fraction: float) -> float | None:
    if (name, fraction) not in _OPTIMA:
        _OPTIMA[name, fraction] = brute_force_min_cost(SMALL[name], _budget(SMALL[name], fraction))
    return _OPTIMA[name, fraction]


@pytest.mark.parametrize("name,fraction", CASES)
def test_cost_within_one_percent_of_brute_force_optimum(name, fraction):
    graph = SMALL[name]
    budget = _budget(graph, fraction)
    best = optimum(name, fraction)
    if best is None:
        plan = solve(graph, budget, "fastsa", seed=3, **QUICK)
        assert not plan.feasible  # nothing fits, and FastSA does not pretend otherwise
        return
    plan = solve(graph, budget, "fastsa", seed=3, **QUICK)
    assert plan.feasible, (name, budget, plan.peak_bytes)
    assert plan.cost <= best * 1.01 + 1e-9, (name, budget, plan.cost, best)
    assert plan.cost >= best - 1e-9  # the brute force is a true optimum


def test_the_small_cases_include_feasible_tight_budgets():
    feasible = [(n, f) for n in SMALL for f in FRACTIONS if optimum(n, f) is not None]
    assert len(feasible) >= 20
    assert sum(f <= 0.3 for _, f in feasible) >= 5


def test_brute_force_agrees_with_simulate_on_a_known_case():
    g = training_chain(3, memory=10)  # f0 f1 f2 loss b2 b1 b0: store-all peaks at 50 bytes
    assert brute_force_min_cost(g, baseline(g).peak_bytes) == baseline(g).cost
    assert brute_force_min_cost(g, g.local_bound() - 1) is None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 40), seed=st.integers(0, 10_000), frac=st.floats(0.05, 1.0),
       width=st.integers(1, 5), restarts=st.integers(1, 3), flags=st.integers(0, 3),
       segments=st.sampled_from([0.0, 0.1, 0.6]))
def test_plans_are_always_valid_and_the_tree_is_exact(n, seed, frac, width, restarts, flags, segments):
    g = random_layered(n, width=width, seed=seed, edge_prob=0.4)
    rng = np.random.default_rng(seed)
    if flags:  # first-layer nodes become inputs, a few others pinned, some fixed memory
        is_input = np.zeros(g.n, dtype=bool)
        is_input[: min(width, g.n - 1)] = flags & 1
        pinned = (rng.random(g.n) < 0.15) & ~is_input if flags & 2 else None
        g = CostGraph(names=g.names, deps=g.deps, compute=g.compute, memory=g.memory, is_input=is_input,
                      pinned=pinned, is_output=g.is_output & ~is_input, fixed_memory=int(rng.integers(0, 500)))
    budget = max(1, int(baseline(g).peak_bytes * frac))
    r = fastsa(g, budget, seed=seed, restarts=restarts, stage1_iterations=30_000, stage2_iterations=30_000,
               segment_moves=segments, baselines=False)  # the annealed plan itself, segment moves included
    sim = simulate(g, r.schedule, r.variant)
    assert sim.valid, sim.reason
    ref = simulate_reference(g, r.schedule, r.variant)
    assert ref.peak_bytes == sim.peak_bytes
    # The solver's incremental peak (segment tree) is simulate's peak, byte for byte.
    assert r.stats["native_peak_bytes"] == sim.peak_bytes
    assert r.stats["native_cost"] == pytest.approx(sim.cost, rel=1e-9)
    assert sim.peak_bytes >= floor_bytes(g)
    if g.pinned.any():
        counts = np.bincount(np.asarray(r.schedule, dtype=int), minlength=g.n)
        assert (counts[g.pinned] == 1).all()


def test_pinned_nodes_are_never_recomputed():
    g = training_chain(12, memory=10)
    pinned = np.zeros(g.n, dtype=bool)
    pinned[[1, 3, 5]] = True
    g = CostGraph(names=g.names, deps=g.deps, compute=g.compute, memory=g.memory, is_backward=g.is_backward,
                  pinned=pinned, is_output=g.is_output, name="pinned_chain")
    plan = solve(g, "50%", "fastsa", seed=0, **QUICK)
    for v in (1, 3, 5):
        assert plan.schedule.count(v) == 1
    assert len(plan.schedule) > g.n  # the others were recomputed to meet the budget
    assert plan.feasible


def _approx_graph() -> CostGraph:
    """A training chain whose f2 output is large, with an approximate lowering that makes it tiny."""
    g = training_chain(6, memory=10)
    memory = g.memory.copy()
    memory[2] = 100
    opts = [VariantOption("eager", True, [1.0], [100]),
            VariantOption("sampled", False, [1.0], [1])]
    return CostGraph(names=g.names, deps=g.deps, compute=g.compute, memory=memory, is_backward=g.is_backward,
                     is_output=g.is_output, variant_groups=[VariantGroup("f2", "linear", [2], opts)])


def test_approximate_options_only_when_allowed():
    g = _approx_graph()
    base = baseline(g)
    budget = base.peak_bytes - 30
    plain = solve(g, budget, "fastsa", seed=0, **QUICK)
    assert plain.feasible and plain.variant == [0]
    assert plain.cost > base.cost  # f2 must be recomputed instead of kept
    approx = solve(g, budget, "fastsa", seed=0, allow_approx=True, **QUICK)
    assert approx.feasible and approx.variant == [1]
    assert approx.cost == base.cost  # the small lowering fits without any recomputation
    # One restart starts from option 0, so only a switch move in stage 2 can reach option 1.
    switched = solve(g, budget, "fastsa", seed=1, allow_approx=True, restarts=1, **QUICK)
    assert switched.variant == [1] and switched.cost == base.cost


def _random_variant_graph(n: int, seed: int) -> CostGraph:
    """A random DAG with 1-3 variant groups whose options change costs, sizes and dependencies."""
    rng = np.random.default_rng(seed)
    g = random_layered(n, width=3, seed=seed, edge_prob=0.4)
    groups, free = [], list(rng.permutation(np.arange(1, n)))
    for gi in range(int(rng.integers(1, 4))):
        k = int(rng.integers(1, 3))
        nodes, free = sorted(int(x) for x in free[:k]), free[k:]
        if not nodes:
            break
        opts = [VariantOption("o0", True, [float(g.compute[v]) for v in nodes], [int(g.memory[v]) for v in nodes])]
        for j in range(int(rng.integers(1, 3))):
            deps = None
            if rng.random() < 0.5:
                deps = [sorted({int(d) for d in rng.choice(v, size=min(v, int(rng.integers(0, 3))), replace=False)})
                        for v in nodes]
            opts.append(VariantOption(f"o{j + 1}", bool(rng.random() < 0.5),
                                      [float(rng.uniform(0.1, 20)) for _ in nodes],
                                      [int(rng.integers(1, 1500)) for _ in nodes], deps))
        groups.append(VariantGroup(f"g{gi}", "linear", nodes, opts))
    return CostGraph(names=g.names, deps=g.deps, compute=g.compute, memory=g.memory, is_output=g.is_output,
                     variant_groups=groups)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(4, 30), seed=st.integers(0, 10_000), frac=st.floats(0.2, 1.0), approx=st.booleans())
def test_variant_switches_on_random_graphs_stay_exact(n, seed, frac, approx):
    g = _random_variant_graph(n, seed)
    budget = int(baseline(g).peak_bytes * frac)
    r = fastsa(g, budget, seed=seed, allow_approx=approx, stage1_iterations=20_000, stage2_iterations=40_000)
    sim = simulate(g, r.schedule, r.variant)
    assert sim.valid, sim.reason
    assert r.stats["native_peak_bytes"] == sim.peak_bytes
    assert r.stats["native_cost"] == pytest.approx(sim.cost, rel=1e-9)
    if not approx:
        assert all(vg.options[c].exact for vg, c in zip(g.variant_groups, r.variant))


def test_variant_switch_moves_keep_plans_valid():
    g = transformer_block(2, seq=256, hidden=64, with_variants=True)
    for frac in (1.0, 0.9):
        r = fastsa(g, int(baseline(g).peak_bytes * frac), seed=1, **QUICK)
        sim = simulate(g, r.schedule, r.variant)
        assert sim.valid, sim.reason
        assert r.stats["native_peak_bytes"] == sim.peak_bytes


def test_budget_below_the_floor_returns_quickly_and_infeasible():
    g = random_layered(200, seed=7)
    floor = floor_bytes(g)
    assert floor == max(g.local_bound(), g.input_bytes + int(g.memory[g.is_output].sum()))
    start = time.perf_counter()
    plan = solve(g, floor - 1, "fastsa", seed=0)
    assert time.perf_counter() - start < 10
    assert not plan.feasible
    assert plan.stats["below_floor"]
    assert plan.peak_bytes < baseline(g).peak_bytes  # it still reports the lowest peak it found


def test_a_budget_below_the_floor_gives_the_same_plan_whatever_the_clock():
    """Issue 20: below the floor FastSA annealed for floor_time seconds, so the plan depended on the
    machine's load (+37% and +363% for one command). Without a time limit it stops on iterations:
    floor_time only caps a search the caller limited in seconds."""
    g = random_layered(120, seed=3)
    budget = floor_bytes(g) - 1
    hurried = solve(g, budget, "fastsa", seed=4, floor_time=1e-4, floor_iterations=200_000)
    patient = solve(g, budget, "fastsa", seed=4, floor_time=60.0, floor_iterations=200_000)
    assert not hurried.stats["timed_out"]
    assert hurried.schedule == patient.schedule and hurried.variant == patient.variant
    # with a time limit the caller asked for seconds: floor_time caps them
    limited = solve(g, budget, "fastsa", seed=4, time_limit=30.0, floor_time=1e-4, floor_iterations=10**9)
    assert limited.stats["timed_out"]


def test_outputs_at_the_end_are_part_of_the_floor():
    g = transformer_block(2, seq=64, hidden=64)  # parameter gradients dominate the last step
    at_end = g.input_bytes + int(g.memory[g.is_output].sum())
    assert floor_bytes(g) == at_end > g.local_bound()
    plan = solve(g, at_end - 1, "fastsa", seed=0, floor_iterations=300_000)
    assert not plan.feasible and plan.stats["below_floor"]
    assert plan.peak_bytes >= at_end


def test_time_limit_is_honored():
    g = random_layered(400, seed=2)
    start = time.perf_counter()
    plan = solve(g, "30%", "fastsa", seed=0, time_limit=0.6, stage1_iterations=10**9, stage2_iterations=10**9)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.6 + 1.5, elapsed
    assert plan.stats["timed_out"]


def test_deterministic_for_a_seed():
    g = random_layered(60, seed=11)
    kw = dict(seed=5, restarts=3, threads=2, **QUICK)
    a = fastsa(g, int(baseline(g).peak_bytes * 0.7), **kw)
    b = fastsa(g, int(baseline(g).peak_bytes * 0.7), **kw)
    assert a.schedule == b.schedule and a.variant == b.variant
    c = fastsa(g, int(baseline(g).peak_bytes * 0.7), **{**kw, "threads": 1})
    assert c.schedule == a.schedule  # the threads only decide where restarts run
    d = fastsa(g, int(baseline(g).peak_bytes * 0.7), **{**kw, "seed": 6})
    assert d.stats["iterations"] > 0


def test_config_dataclass_and_option_errors():
    cfg = FastSAConfig(stage2_iterations=10_000, restarts=1)
    with pytest.raises(TypeError):
        FastSAConfig(10)  # keyword-only
    r = fastsa(training_chain(5), 10**9, config=cfg, stage1_iterations=1000)
    assert r.stats["restarts"] == 1
    with pytest.raises(SolverOptionError):
        solve(training_chain(5), "50%", "fastsa", threads=0)
    with pytest.raises(SolverOptionError):
        solve(training_chain(5), "50%", "fastsa", not_an_option=1)


def test_fastsa_is_the_default_solver():
    assert DEFAULT_SOLVER == "fastsa"


# --------------------------------------------------------------------------- never worse than a baseline


def test_never_worse_than_the_baselines_on_a_graph_where_plain_annealing_loses():
    # segnet at its floor, annealed with the paper's moves only: stage 1's grouped start meets the
    # budget at once with every group copying its producers (+2900% cost), and stage 2 cannot undo
    # that one node at a time (the segment moves and the polish can: see the test below).
    from bench_models.shared_graphs import graph_path
    from recompiler.graph_io import read_graph

    g = read_graph(graph_path("segnet"))
    budget = g.floor()
    plain = solve(g, budget, "fastsa", baselines=False, segment_moves=0.0, polish=False)
    plan = solve(g, budget, "fastsa", segment_moves=0.0, polish=False)
    feasible = {k: v["cost"] for k, v in plan.stats["baselines"].items() if v["feasible"]}
    assert plain.feasible and plan.feasible
    assert plain.cost > 2 * min(feasible.values())          # the case this rule exists for
    assert plan.cost <= min(feasible.values()) * (1 + 1e-12)
    assert plan.cost < plain.cost / 10
    assert plan.stats["won"].startswith("fastsa from ") and plan.stats["seeded_from"] in feasible


def test_segment_moves_and_the_polish_each_undo_a_grouped_start_that_single_moves_cannot():
    # The same segnet case without any baseline: recomputing whole chains at once lets the
    # annealing itself leave the +2900% start, and so does dropping, at the end, every
    # recomputation that costs no bytes; both together do best.
    from bench_models.shared_graphs import graph_path
    from recompiler.graph_io import read_graph

    g = read_graph(graph_path("segnet"))
    budget = g.floor()
    cost = {}
    for name, kw in {"single": dict(segment_moves=0.0, polish=False), "segments": dict(polish=False),
                     "polish": dict(segment_moves=0.0), "both": {}}.items():
        plan = solve(g, budget, "fastsa", baselines=False, **kw)
        assert plan.feasible, name
        cost[name] = plan.cost
    assert cost["segments"] < cost["single"] / 10 and cost["polish"] < cost["single"] / 10
    assert cost["both"] <= min(cost["segments"], cost["polish"])


def test_the_polish_never_raises_the_cost_and_drops_what_a_short_anneal_leaves():
    # A short, hot stage 2 leaves recomputations behind that cost bytes nothing to drop.
    improved = 0
    for seed in range(6):
        g = random_layered(60, seed=seed)
        for frac in (0.6, 0.8):
            budget = int(frac * baseline(g).peak_bytes)
            kw = dict(seed=seed, baselines=False, restarts=1, threads=1, stage1_iterations=50_000,
                      stage2_iterations=3_000)
            rough, polished = solve(g, budget, "fastsa", polish=False, **kw), solve(g, budget, "fastsa", **kw)
            simulate_reference(g, polished.schedule)
            if rough.feasible:
                assert polished.feasible and polished.cost <= rough.cost * (1 + 1e-12)
            else:
                assert polished.peak_bytes <= rough.peak_bytes * (1 + 1e-3)
                assert polished.cost <= rough.cost * (1 + 1e-12) or polished.peak_bytes < rough.peak_bytes
            improved += polished.cost < rough.cost * (1 - 1e-9)
    assert improved >= 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(4, 40), seed=st.integers(0, 10**6), frac=st.floats(0.3, 0.95))
def test_no_feasible_baseline_is_cheaper_than_fastsa(n, seed, frac):
    from recompiler.solvers.chen import chen_greedy
    from recompiler.solvers.greedy_evict import greedy_evict

    g = random_layered(n, seed=seed)
    budget = int(frac * baseline(g).peak_bytes)
    plan = solve(g, budget, "fastsa", seed=seed, **QUICK)
    simulate_reference(g, plan.schedule)  # valid for the independent simulator too
    for other in (chen_greedy(g, budget), greedy_evict(g, budget)):
        r = simulate(g, other.schedule)
        if r.peak_bytes <= budget:
            assert plan.feasible and plan.cost <= r.cost * (1 + 1e-12)


def test_a_given_start_is_refined_and_an_invalid_one_ignored():
    g = training_chain(24)
    budget = int(0.5 * baseline(g).peak_bytes)
    given = solve(g, budget, "chen-greedy")
    plan = solve(g, budget, "fastsa", starts={"mine": given.schedule, "broken": [0, 0, 0]}, **QUICK)
    assert "mine" in plan.stats["baselines"] and "broken" not in plan.stats["baselines"]
    assert plan.cost <= given.cost * (1 + 1e-12)
    # the seeded restart alone (no restarts from scratch can win) is never worse than its start
    r = fastsa(g, budget, restarts=1, stage1_iterations=1, stage2_iterations=1, starts={"mine": given.schedule})
    assert simulate(g, r.schedule).cost <= given.cost * (1 + 1e-12)


def test_baselines_can_be_turned_off():
    g = training_chain(12)
    plan = solve(g, "60%", "fastsa", baselines=False, **QUICK)
    assert plan.stats["baselines"] == {} and plan.stats["seeded_from"] is None and plan.stats["won"] == "fastsa"
    with pytest.raises(SolverOptionError, match="baseline_share"):
        solve(g, "60%", "fastsa", baseline_share=2.0)


def test_the_greedy_baseline_does_not_depend_on_the_clock(monkeypatch):
    """Issue 20: FastSA's greedy-evict baseline stopped after 5 wall-clock seconds, so on a loaded
    machine (or a slower rank) the best baseline, and the plan seeded from it, could differ.
    Without a time limit it is bounded by moves: a clock that races changes nothing."""
    import itertools
    from types import SimpleNamespace

    import recompiler.solvers.greedy_evict as ge
    from recompiler.solvers.fastsa import baseline_plans

    g = random_layered(300, seed=5)
    budget = int(0.4 * baseline(g).peak_bytes)
    calm = {p.name: p.schedule for p in baseline_plans(g, budget)}
    clock = itertools.count(0.0, 1000.0)   # every reading 1000 s after the last
    monkeypatch.setattr(ge, "time", SimpleNamespace(monotonic=lambda: next(clock), perf_counter=lambda: next(clock)))
    raced = {p.name: p.schedule for p in baseline_plans(g, budget)}
    assert calm["greedy-evict"] != g.baseline_schedule()   # it made moves
    assert raced == calm
