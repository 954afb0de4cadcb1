"""Every general-purpose solver on every shared graph: valid plans, truthful ``feasible``."""


import pytest

from bench_models.shared_graphs import SHARED_GRAPHS
from recompiler.builders import random_layered, training_chain, transformer_block
from recompiler.errors import SolverOptionError, UnknownSolver
from recompiler.graph_io import read_graph
from recompiler.plan import Plan
from recompiler.simulate import baseline, simulate
from recompiler.solvers import known_solvers, solve

SHARED = sorted(SHARED_GRAPHS.glob("*/*.json"))
# The exact Checkmate formulations have their own tests on graphs they can solve in time.
GENERAL = [s for s in known_solvers() if not s.startswith("checkmate")]
_graphs = {}


def shared_graph(path):
    if path not in _graphs:
        _graphs[path] = read_graph(path)
    return _graphs[path]


def check_plan(graph, plan: Plan, budget_bytes: int):
    r = simulate(graph, plan.schedule, plan.variant)
    assert r.valid, r.reason
    assert plan.peak_bytes == r.peak_bytes and plan.cost == pytest.approx(r.cost)
    assert plan.feasible == (r.peak_bytes <= budget_bytes)
    assert plan.budget_bytes == budget_bytes
    assert r.peak_bytes >= graph.floor(plan.variant) >= graph.local_bound(plan.variant)
    assert plan.overhead == pytest.approx(r.cost / baseline(graph).cost - 1)
    assert Plan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize("solver", GENERAL)
@pytest.mark.parametrize("fraction", [0.9, 0.5])
@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.stem[:24])
def test_every_solver_on_every_shared_graph(path, fraction, solver):
    g = shared_graph(path)
    budget = int(baseline(g).peak_bytes * fraction)
    plan = solve(g, budget, solver, time_limit=2)
    check_plan(g, plan, budget)


@pytest.mark.parametrize("solver", GENERAL)
@pytest.mark.parametrize("graph", [training_chain(30), random_layered(80, seed=5), transformer_block(3)],
                         ids=["train_chain", "random", "transformer"])
def test_solvers_on_synthetic_graphs(graph, solver):
    budget = int(baseline(graph).peak_bytes * 0.6)
    check_plan(graph, solve(graph, budget, solver, time_limit=2), budget)


def test_greedy_evict_meets_reachable_budgets_on_checkmate_graphs():
    for name, pct in [("resnet50", 50), ("mobilenet", 50), ("vgg_unet", 50), ("fcn_8_vgg", 90)]:
        g = read_graph(next(p for p in SHARED if p.name.startswith(name)))
        plan = solve(g, f"{pct}%", "greedy-evict")
        assert plan.feasible, (name, plan.peak_fraction)


def test_chen_sqrtn_recomputes_on_a_training_chain():
    g = training_chain(16)
    plan = solve(g, "100%", "chen-sqrtn")
    assert plan.recomputed and plan.peak_bytes < baseline(g).peak_bytes


def test_store_all_is_the_baseline():
    g = training_chain(5)
    plan = solve(g, "100%", "store-all")
    assert plan.schedule == g.baseline_schedule() and plan.overhead == 0 and plan.feasible


def test_front_function_errors():
    g = training_chain(4)
    with pytest.raises(UnknownSolver, match="known solvers: .*greedy-evict"):
        solve(g, "50%", "nope")
    with pytest.raises(SolverOptionError, match="takes no option bogus"):
        solve(g, "50%", "greedy-evict", bogus=1)
    with pytest.raises(TypeError):
        solve(g, "50%", "greedy-evict", 3)  # options are keyword-only


@pytest.mark.parametrize("solver", known_solvers())
def test_budget_of_2_to_the_63_or_more_is_a_budget_error_for_every_solver(solver):
    from recompiler.errors import BudgetError

    g = training_chain(3)
    for bad in (2**63, 2**70, 1.9, True):
        with pytest.raises(BudgetError):
            solve(g, bad, solver, time_limit=2)
    assert solve(g, 2**63 - 1, solver, time_limit=2).feasible
