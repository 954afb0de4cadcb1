"""torch-knapsack: PyTorch's activation_memory_budget partitioner, converted to our schedule and judged by simulate."""

import pytest
import torch
from torch import nn

from recompiler.builders import linear_chain
from recompiler.frontend.capture import capture
from recompiler.frontend.torch_knapsack import (
    GRID,
    _place_missing,
    partition,
    probe,
    schedule_from_modules,
    torch_knapsack,
)
from recompiler.simulate import baseline, simulate


@pytest.fixture(scope="module")
def cap():
    torch.manual_seed(0)
    layers = []
    for _ in range(4):
        layers += [nn.Linear(64, 64), nn.GELU(), nn.Dropout(0.1)]
    model = nn.Sequential(*layers).train()
    return capture(model, (torch.randn(256, 64),))


def _computed(module):
    return [n.name for n in module.graph.nodes if n.op == "call_function"]


def test_runtime_optimal_partition_maps_to_a_valid_schedule_in_torch_order(cap):
    fw, bw = partition(cap, 1.0)
    sched = schedule_from_modules(cap, fw, bw)
    g = cap.graph
    res = simulate(g, sched)
    assert res.valid, res.reason
    # every non-input node runs; the forward module's nodes come first, in its order
    assert {v for v in sched} == {v for v in range(g.n) if not g.is_input[v]}
    fw_ids = [cap.node_ids[n] for n in _computed(fw)]
    assert sched[:len(fw_ids)] == fw_ids
    # what the backward recomputes are second occurrences of the original nodes
    recomputed = [cap.node_ids[n] for n in _computed(bw) if n in set(_computed(fw))]
    for v in recomputed:
        if not g.pinned[v]:
            assert sched.count(v) == 2


def test_recompute_everything_repeats_the_forward_but_never_a_random_op(cap):
    g = cap.graph
    p = probe(cap, 0.0)
    counts = {v: p.schedule.count(v) for v in set(p.schedule)}
    assert any(c > 1 for c in counts.values())             # PyTorch recomputed the forward
    dropouts = [v for v in range(g.n) if g.pinned[v]]
    assert dropouts and all(counts[v] == 1 for v in dropouts)  # pinned: kept, not recomputed
    assert p.cost > baseline(g).cost


def test_bisection_picks_the_largest_fraction_that_fits(cap):
    full = probe(cap, 1.0)
    lowest = min((probe(cap, b) for b in GRID), key=lambda p: p.peak_bytes)
    assert lowest.peak_bytes < full.peak_bytes
    # at PyTorch's own peak, its runtime-optimal plan (fraction 1.0) is the answer
    plan = torch_knapsack(cap, full.peak_bytes)
    assert plan.feasible and plan.stats["torch_budget"] == 1.0 and plan.peak_bytes == full.peak_bytes
    # between the two, a smaller fraction that fits, and no larger fraction tried fits
    budget = (full.peak_bytes + lowest.peak_bytes) // 2
    plan = torch_knapsack(cap, budget, steps=4)
    assert plan.feasible and plan.peak_bytes <= budget and plan.stats["torch_budget"] < 1.0
    chosen = plan.stats["torch_budget"]
    assert all(pr["peak_bytes"] > budget for pr in plan.stats["probes"] if pr["torch_budget"] > chosen)
    assert simulate(cap.graph, plan.schedule).peak_bytes == plan.peak_bytes
    # nothing fits: the lowest peak seen, marked infeasible
    plan = torch_knapsack(cap, 1)
    assert not plan.feasible and plan.peak_bytes == min(pr["peak_bytes"] for pr in plan.stats["probes"])


def test_probes_are_shared_through_the_cache(cap):
    cache = {}
    torch_knapsack(cap, 1, cache=cache)
    assert set(GRID) <= set(cache)
    before = dict(cache)
    plan = torch_knapsack(cap, 1, cache=cache)
    assert all(cache[b] is before[b] for b in before) and not plan.feasible


def test_missing_nodes_are_placed_after_their_dependencies():
    g = linear_chain(5)  # 0 -> 1 -> 2 -> 3 -> 4
    out = _place_missing(g, [0, 2, 4])  # 1 and 3 missing (nodes PyTorch's dead-code elimination dropped)
    assert sorted(out) == [0, 1, 2, 3, 4]
    assert simulate(g, [0, 1, 2, 3, 4]).valid
    assert out.index(1) == out.index(0) + 1 and out.index(3) == out.index(2) + 1
