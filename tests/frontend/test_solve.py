"""solve_captured: torch-knapsack's plan offered to FastSA, so a plan never loses to PyTorch's partitioner."""

import time

import pytest
import torch
from torch import nn

from recompiler.frontend.capture import capture
from recompiler.frontend.solve import solve_captured, torch_starts
from recompiler.frontend.torch_knapsack import torch_knapsack
from recompiler.simulate import baseline, simulate


def _model():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(64, 64), nn.GELU(), nn.Tanh()]
    return nn.Sequential(*layers), torch.randn(256, 64)


@pytest.fixture(scope="module", params=["eager", "inductor"])
def cap(request):
    model, x = _model()
    return capture(model, (x,), compiler=request.param)


@pytest.mark.parametrize("fraction", [0.9, 0.8])
def test_never_costlier_than_torch_knapsack_where_it_meets_the_budget(cap, fraction):
    budget = int(fraction * baseline(cap.graph).peak_bytes)
    theirs = torch_knapsack(cap, budget)
    assert theirs.feasible                                    # the cells this rule is about
    ours = solve_captured(cap, budget, "fastsa", seed=0, stage2_iterations=50_000)
    assert "torch-knapsack" in ours.stats["baselines"]
    assert ours.feasible and ours.cost <= theirs.cost * (1 + 1e-12)
    assert simulate(cap.graph, ours.schedule, ours.variant).peak_bytes == ours.peak_bytes


def test_torch_start_is_a_valid_schedule_and_absent_when_nothing_needs_planning(cap):
    base = baseline(cap.graph).peak_bytes
    starts = torch_starts(cap, int(0.8 * base))
    assert simulate(cap.graph, starts["torch-knapsack"]).valid
    assert torch_starts(cap, base) == {}


def test_the_time_limit_covers_pytorchs_partitioner_too(cap):
    budget = int(0.5 * baseline(cap.graph).peak_bytes)
    start = time.perf_counter()
    solve_captured(cap, budget, "fastsa", time_limit=2.0)
    assert time.perf_counter() - start < 2.0 * 1.5 + 1.0     # charging rounds under inductor


def test_solvers_without_starts_plan_as_before(cap):
    plan = solve_captured(cap, "70%", "chen-greedy")
    assert plan.solver == "chen-greedy" and "baselines" not in plan.stats
