"""Property test: seeded random graphs through every registered solver, every plan re-judged.

Graphs have variant groups (exact and inexact options, some changing deps), pinned nodes,
inputs (sometimes all of them), outputs, zero and huge sizes (up to ~2**60, sums below 2**63)
and fixed memory; every fourth graph allows approximation. Each plan is re-simulated by the reference ``simulate_reference``; its
numbers and ``feasible`` must agree, inexact options must not be chosen without
``allow_approx``, and a solver may fail only with a ``RecompilerError`` — an
``InfeasibleBudget`` never while store-all fits the budget.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from recompiler.errors import InfeasibleBudget, RecompilerError
from recompiler.graph import MAX_BYTES, CostGraph, VariantGroup, VariantOption
from recompiler.simulate import baseline, simulate_reference
from recompiler.solvers import get_solver, known_solvers, solve
from recompiler.solvers.fastsa import floor_bytes

#: Kept tiny so that hundreds of graphs x every solver run in well under a minute.
SOLVER_OPTIONS = {
    "fastsa": {"stage1_iterations": 300, "stage2_iterations": 300, "restarts": 1, "threads": 1},
    "greedy-evict": {},
    "checkmate-milp": {"num_workers": 1},
    "checkmate-lp": {"random_draws": 4},
    "chen-greedy": {"sweep": 8},
}
TIME_LIMIT = 1.0


def random_graph(seed: int) -> CostGraph:
    """A small seeded graph that exercises the contract's corners (module docstring)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 15))
    deps = [sorted({int(d) for d in rng.choice(i, size=int(rng.integers(0, min(i, 3) + 1)), replace=False)})
            if i else [] for i in range(n)]
    if n > 1 and rng.random() < 0.3:
        deps[-1] = deps[-1] + [deps[-1][0]] if deps[-1] else deps[-1]  # duplicate deps are allowed
    scale = int(rng.choice([1, 1, 2**20, 2**40, 2**56]))
    memory = rng.integers(0, 1000, n).astype(object) * scale + rng.integers(0, 7, n)
    memory[rng.random(n) < 0.2] = 0
    is_input = rng.random(n) < (0.9 if rng.random() < 0.05 else 0.15)  # sometimes every node an input
    pinned = (rng.random(n) < 0.2) & ~is_input
    is_output = rng.random(n) < 0.25
    is_output[-1] = not is_input[-1]
    fixed = int(rng.choice([0, 0, 5, scale]))
    groups = []
    candidates = [v for v in range(n) if not is_input[v]]
    rng.shuffle(candidates)
    for k in range(int(rng.integers(0, 3))):
        nodes = sorted(candidates[2 * k:2 * k + 2])
        if not nodes:
            break
        opts = [VariantOption("orig", True, [1.0 + v % 3 for v in nodes], [int(memory[v]) for v in nodes])]
        for j in range(int(rng.integers(1, 3))):
            new_deps = None
            if rng.random() < 0.4:
                new_deps = [sorted({int(d) for d in rng.choice(v, size=min(v, 1 + j), replace=False)}) if v else []
                            for v in nodes]
            opts.append(VariantOption(f"opt{j}", bool(rng.random() < 0.7), [float(rng.uniform(0.5, 4)) for _ in nodes],
                                      [int(int(memory[v]) * rng.choice([0, 0.25, 0.5, 2])) for v in nodes], new_deps))
        groups.append(VariantGroup(f"g{k}", str(rng.choice(["attention", "linear"])), nodes, opts))
    largest = [int(m) for m in memory]
    for g in groups:
        for o in g.options:
            for v, m in zip(g.nodes, o.memory):
                largest[v] = max(largest[v], m)
    if sum(largest) + fixed > MAX_BYTES:  # keep within the exact range (the graph refuses more)
        return random_graph(seed + 10**6)
    return CostGraph(names=[f"v{i}" for i in range(n)], deps=deps, compute=[1.0 + i % 3 for i in range(n)],
                     memory=[int(m) for m in memory], is_input=is_input, pinned=pinned, is_output=is_output,
                     variant_groups=groups, fixed_memory=fixed, name=f"fuzz{seed}")


def budgets(graph: CostGraph, seed: int) -> list[int]:
    rng = np.random.default_rng(seed + 7)
    peak, lo = baseline(graph).peak_bytes, graph.local_bound()
    choices = [int(peak * 1.08), peak, (3 * peak + lo) // 4, (peak + lo) // 2, lo, lo - 1, int(peak * 0.3), 0]
    return sorted({max(0, int(b)) for b in rng.choice(choices, size=2, replace=False)})


def check_run(graph: CostGraph, solver: str, budget: int, allow_approx: bool = False) -> str | None:
    """None when the run honours the contract, else what went wrong."""
    fn = get_solver(solver)
    params = inspect.signature(fn).parameters
    options = {k: v for k, v in SOLVER_OPTIONS.get(solver, {}).items() if k in params}
    try:
        plan = solve(graph, budget, solver, time_limit=TIME_LIMIT, seed=1, allow_approx=allow_approx, **options)
    except InfeasibleBudget as e:
        store_all = simulate_reference(graph, graph.baseline_schedule()).peak_bytes
        if store_all <= budget:
            return f"InfeasibleBudget although store-all ({store_all}) fits {budget}: {e}"
        return None
    except RecompilerError:
        return None
    except Exception as e:  # noqa: BLE001 - the property: nothing else may escape
        return f"raised {type(e).__name__}: {e}"
    r = simulate_reference(graph, plan.schedule, plan.variant)
    if not r.valid:
        return f"invalid plan: {r.reason}"
    if r.peak_bytes != plan.peak_bytes or not math.isclose(r.cost, plan.cost, rel_tol=1e-9, abs_tol=1e-9):
        return f"plan says peak {plan.peak_bytes} cost {plan.cost}, reference {r.peak_bytes} {r.cost}"
    if plan.feasible != (r.peak_bytes <= budget):
        return f"feasible={plan.feasible} but peak {r.peak_bytes} vs budget {budget}"
    for g, choice in zip(graph.variant_groups, plan.variant):
        if not g.options[choice].exact and not allow_approx:
            return f"inexact option {choice} of {g.name} chosen without allow_approx"
    floor = floor_bytes(graph, allow_approx=allow_approx)
    if r.peak_bytes < floor:
        return f"peak {r.peak_bytes} below the floor {floor}"
    return None


def fuzz(seeds) -> tuple[int, int, list[str]]:
    graphs = runs = 0
    violations: list[str] = []
    for seed in seeds:
        graph = random_graph(seed)
        graphs += 1
        for budget in budgets(graph, seed):
            for solver in known_solvers():
                runs += 1
                problem = check_run(graph, solver, budget, allow_approx=seed % 4 == 3)
                if problem:
                    violations.append(f"seed {seed} {solver} budget {budget}: {problem}")
    return graphs, runs, violations


def test_fuzz_every_solver_on_random_graphs():
    graphs, runs, violations = fuzz(range(300))
    print(f"\nfuzz: {graphs} graphs, {runs} solver runs, {len(violations)} violations")
    assert not violations, "\n".join(violations[:20])


@pytest.mark.slow
def test_fuzz_every_solver_on_random_graphs_long():
    graphs, runs, violations = fuzz(range(1000, 4000))
    print(f"\nfuzz (long): {graphs} graphs, {runs} solver runs, {len(violations)} violations")
    assert not violations, "\n".join(violations[:20])
