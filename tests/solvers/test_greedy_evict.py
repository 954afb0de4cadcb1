"""greedy-evict: same plans as judging every move with simulate, fast, within its time limit."""

import time

import numpy as np
import pytest

from recompiler.builders import random_layered, training_chain, transformer_block
from recompiler.graph import CostGraph
from recompiler.simulate import baseline, simulate
from recompiler.solvers import solve
from recompiler.solvers.greedy_evict import greedy_evict


def reference_greedy(graph, budget_bytes, max_moves=None):
    """The greedy as first written: every candidate move judged by a full simulate (O(T²) a move)."""
    def last_use(schedule):
        end, latest = np.arange(len(schedule)), {}
        for t, v in enumerate(schedule):
            for d in graph.deps[v]:
                if d in latest:
                    end[latest[d]] = t
            latest[v] = t
        for v, t in latest.items():
            if graph.is_output[v]:
                end[t] = len(schedule) - 1
        return end

    schedule = graph.baseline_schedule()
    res = simulate(graph, schedule)
    moves, max_moves = 0, max_moves if max_moves is not None else 4 * graph.n
    while res.peak_bytes > budget_bytes and moves < max_moves and schedule:
        p, peak = res.peak_step, res.peak_bytes
        count = int((res.live_bytes == peak).sum())
        end, used = last_use(schedule), set(graph.deps[schedule[p]])
        lower = flat = None
        for t in range(p):
            v = schedule[t]
            if end[t] < p or v in used or graph.pinned[v] or graph.memory[v] == 0:
                continue
            q = next((s for s in range(p + 1, len(schedule)) if v in graph.deps[schedule[s]]), None)
            if q is None:
                if not graph.is_output[v]:
                    continue
                q = len(schedule)
            cand = schedule[:q] + [v] + schedule[q:]
            r = simulate(graph, cand)
            added = float(graph.compute[v])
            if r.peak_bytes < peak:
                key = added / (peak - r.peak_bytes)
                if lower is None or key < lower[0]:
                    lower = (key, cand, r)
            elif r.peak_bytes == peak and lower is None:
                c = int((r.live_bytes == peak).sum())
                if c < count and (flat is None or (added, c) < flat[0]):
                    flat = ((added, c), cand, r)
        if (lower or flat) is None:
            break
        _, schedule, res = lower or flat
        moves += 1
    return schedule


def small_graphs():
    for seed in range(25):
        yield random_layered(12 + seed, width=2 + seed % 3, seed=seed, edge_prob=0.4)
    yield training_chain(9)
    yield transformer_block(1, seq=16, hidden=8)
    # duplicate deps, zero sizes, pinned nodes, inputs and several outputs
    yield CostGraph(names=list("xabcdef"), deps=[[], [0], [1, 1], [2, 0], [1, 3], [4, 2], [5, 3]],
                    compute=[0, 1, 2, 1, 3, 1, 2], memory=[5, 4, 0, 6, 2, 3, 1], is_input=[True] + [False] * 6,
                    pinned=[False, False, False, True, False, False, False],
                    is_output=[False, True, False, False, False, False, True])


@pytest.mark.parametrize("frac", [0.9, 0.6, 0.3])
def test_greedy_evict_plans_equal_judging_every_move_with_simulate(frac):
    for g in small_graphs():
        budget = int(baseline(g).peak_bytes * frac)
        assert greedy_evict(g, budget).schedule == reference_greedy(g, budget), g.name


def test_greedy_evict_all_inputs_is_a_plan_not_an_index_error():
    g = CostGraph(names=["a", "b"], deps=[[], [0]], compute=[1.0, 1.0], memory=[4, 4], is_input=[True, True])
    plan = solve(g, 1, "greedy-evict")
    assert plan.schedule == [] and not plan.feasible and plan.peak_bytes == 8
    assert solve(g, 8, "greedy-evict").feasible


def test_greedy_evict_honours_time_limit_within_a_move():
    # 10,001 nodes: judging one move took seconds when every candidate was simulated.
    solve(training_chain(4), 1, "greedy-evict")   # numba compiles the kernel on first use (seconds, once)
    g = training_chain(5000)
    start = time.monotonic()
    plan = solve(g, 10, "greedy-evict", time_limit=0.5)
    assert time.monotonic() - start < 2.5
    assert plan.stats["stopped"] == "time limit" and plan.stats["moves"] > 0


def test_greedy_evict_is_fast_on_a_20000_node_layered_graph():
    solve(training_chain(4), 1, "greedy-evict")   # the kernel compiled (once) before the clock starts
    g = random_layered(20000)
    start = time.monotonic()
    plan = solve(g, "50%", "greedy-evict", time_limit=60)
    assert time.monotonic() - start < 20  # 62 s before; ~1 s here
    assert plan.stats["stopped"] != "time limit" and plan.peak_bytes < baseline(g).peak_bytes
