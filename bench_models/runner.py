"""The bench runner: every model × budget × solver of a suite, judged by ``simulate``.

Each model is loaded (captured) once and its graph reused for every solver and budget.
A budget below the model's reachable floor is solved toward the floor (as ``recompile
plan`` does) and the row marked infeasible. A solver that cannot handle a model (the
Checkmate MILP/LP on large graphs, torch-knapsack on a shared graph that has no fx graph)
gives a *skipped* row with the reason; a solver that proves no plan fits a *no-plan* row; a
solver error an *error* row; a schedule ``simulate`` rejects an *invalid* row. Nothing crashes the suite.

Solve times are reported as seconds and as a ratio to a *calibration*: a fixed small solve
timed right before each model, so that the regression test can compare times across
machines and loads (bench_models/expected/, tests/bench_models/test_regression.py).

>>> parse_budgets("50%,25%")
['50%', '25%']
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

from bench_models import registry

TORCH_KNAPSACK = "torch-knapsack"
#: Largest graph (non-input nodes) each Checkmate formulation is run on, per suite: O(n²) variables
#: (checkmate-lp: ~1 s on the 45- and 51-node vgg graphs, minutes on the 71-node vgg_unet, ~150 s on a
#: 450-node graph that it still rounded to no plan below the baseline).
MAX_NODES = {"ci": {"checkmate-milp": 60, "checkmate-lp": 60},
             "full": {"checkmate-milp": 150, "checkmate-lp": 400},
             "paper": {"checkmate-milp": 150, "checkmate-lp": 400}}
#: The order the default solvers are listed in (those registered; fastsa only once it exists).
DEFAULT_ORDER = ("fastsa", "chen-sqrtn", "greedy-evict", "checkmate-lp", TORCH_KNAPSACK)

#: Options that make each solver deterministic and quick in the ``ci`` suite: FastSA is
#: deterministic for a seed only under fixed iteration counts, never under a time limit.
CI_OPTIONS: dict[str, dict] = {
    "fastsa": {"stage1_iterations": 500_000, "stage2_iterations": 200_000, "restarts": 2, "threads": 2},
    "checkmate-lp": {"random_draws": 8},
    TORCH_KNAPSACK: {"steps": 1, "grid": (1.0, 0.5, 0.1)},   # each probe is a partitioner run: seconds
}
CI_TIME_LIMITS: dict[str, float | None] = {"fastsa": None, "checkmate-lp": 120.0, TORCH_KNAPSACK: None}
#: Seconds per solve outside ci when no --time-limit is given (FastSA's own bound is 2e7 iterations).
DEFAULT_TIME_LIMIT = 60.0


def parse_budgets(text: str) -> list[str]:
    from recompiler.budget import parse_budget

    out = [b.strip() for b in text.split(",") if b.strip()]
    for b in out:
        parse_budget(b, baseline_peak=1)  # raises BudgetError on a bad one
    return out


def available_solvers() -> list[str]:
    from recompiler.solvers import known_solvers

    return known_solvers() + [TORCH_KNAPSACK]


def default_solvers() -> list[str]:
    have = set(available_solvers())
    return [s for s in DEFAULT_ORDER if s in have]


def check_solvers(names: list[str]) -> None:
    from recompiler.errors import UnknownSolver

    have = available_solvers()
    bad = [s for s in names if s not in have]
    if bad:
        raise UnknownSolver(f"unknown solver {', '.join(map(repr, bad))}; known: {', '.join(have)}")


@dataclass
class Row:
    """One model × budget × solver result; ``status`` is ok, skipped, error or invalid."""

    model: str
    budget: str
    solver: str
    status: str
    reason: str = ""
    nodes: int = 0
    baseline_peak_bytes: int = 0
    floor_bytes: int = 0
    budget_bytes: int = 0
    peak_bytes: int = 0
    peak_pct: float = 0.0
    overhead_pct: float = 0.0
    solve_seconds: float = 0.0
    calibration_seconds: float = 0.0
    feasible: bool = False
    stats: dict = field(default_factory=dict)

    @property
    def time_ratio(self) -> float:
        return self.solve_seconds / self.calibration_seconds if self.calibration_seconds else 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ModelInfo:
    name: str
    size: str
    description: str
    nodes: int = 0
    baseline_peak_bytes: int = 0
    floor_bytes: int = 0
    load_seconds: float = 0.0
    error: str = ""


@dataclass
class SuiteResult:
    suite: str
    budgets: list[str]
    solvers: list[str]
    time_limit: float | None
    models: dict[str, ModelInfo]
    rows: list[Row]
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"suite": self.suite, "budgets": self.budgets, "solvers": self.solvers, "time_limit": self.time_limit,
                "seconds": round(self.seconds, 2),
                "models": {k: dataclasses.asdict(v) for k, v in self.models.items()},
                "rows": [r.to_dict() for r in self.rows]}


# --------------------------------------------------------------------------- calibration
_CALIBRATION_GRAPH = None


#: chen-greedy solves in one calibration (~0.15 s together on this machine).
CALIBRATION_SOLVES = 6


def calibrate(repeats: int = 3) -> float:
    """Seconds of a fixed small workload (chen-greedy at 60% on the shared resnet50 graph,
    :data:`CALIBRATION_SOLVES` times, ~0.15 s), best of ``repeats``. Not greedy-evict, which it was
    until greedy-evict's numba kernel made it a 3 ms solve: too short to time on a shared machine."""
    global _CALIBRATION_GRAPH
    from recompiler.solvers import solve

    if _CALIBRATION_GRAPH is None:
        from bench_models.shared_graphs import graph_path
        from recompiler.graph_io import read_graph

        _CALIBRATION_GRAPH = read_graph(graph_path("resnet50"))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(CALIBRATION_SOLVES):
            solve(_CALIBRATION_GRAPH, "60%", "chen-greedy")
        best = min(best, time.perf_counter() - start)
    return best


# --------------------------------------------------------------------------- one solve
def skip_reason(solver: str, loaded: registry.Loaded, suite: str = "full") -> str | None:
    """Why ``solver`` is not run on this model, or None."""
    if solver == TORCH_KNAPSACK and loaded.captured is None:
        return "no fx graph (a node-cost graph file)"
    limit = MAX_NODES[suite].get(solver)
    scheduled = int((~loaded.graph.is_input).sum())
    if limit is not None and scheduled > limit:
        return f"too large ({scheduled} nodes > {limit})"
    return None


def solve_one(loaded: registry.Loaded, budget: str, solver: str, *, seed: int = 0,
              time_limit: float | None = None, options: dict | None = None, knapsack_cache: dict | None = None):
    """Plan ``loaded`` at ``budget`` with ``solver``: a Plan (toward the floor if the budget is below it)."""
    from recompiler.budget import parse_budget
    from recompiler.frontend.capture import reachable_floor
    from recompiler.simulate import baseline
    from recompiler.solvers import solve

    graph = loaded.graph
    budget_bytes = parse_budget(budget, baseline_peak=baseline(graph).peak_bytes)
    target = max(budget_bytes, reachable_floor(graph))
    options = dict(options or {})
    if solver == TORCH_KNAPSACK:
        from recompiler.frontend.torch_knapsack import torch_knapsack

        plan = torch_knapsack(loaded.captured, target, time_limit=time_limit, cache=knapsack_cache, **options)
    elif loaded.captured is not None:
        # as users plan: FastSA is offered PyTorch's plan too (probes shared with the torch-knapsack rows)
        from recompiler.frontend.solve import solve_captured

        plan = solve_captured(loaded.captured, target, solver, seed=seed, time_limit=time_limit,
                              torch_cache=knapsack_cache, **options)
    else:
        plan = solve(graph, target, solver, seed=seed, time_limit=time_limit, **options)
    if target != budget_bytes:
        plan.stats["solved_for_bytes"] = target
        plan.budget_bytes, plan.feasible = budget_bytes, plan.peak_bytes <= budget_bytes
    return plan


def _small_stats(stats: dict) -> dict:
    keep = ("torch_budget", "iterations", "timed_out", "lower_bound_cost", "solved_for_bytes", "below_floor")
    return {k: stats[k] for k in keep if k in stats}


# --------------------------------------------------------------------------- the suite
def run_suite(suite: str, *, models: list[str] | None = None, budgets: list[str] | None = None,
              solvers: list[str] | None = None, time_limit: float | None = None, seed: int = 0,
              cost: str = "roofline",
              deterministic: bool | None = None, on_model: Callable[[str, ModelInfo | None], None] | None = None,
              on_row: Callable[[Row], None] | None = None,
              checkpoint: Callable[[SuiteResult], None] | None = None) -> SuiteResult:
    """Run ``suite`` (``ci`` or ``full``); the callbacks report progress.

    ``deterministic`` (default: True for ``ci``) uses :data:`CI_OPTIONS` and
    :data:`CI_TIME_LIMITS` so the numbers repeat exactly; otherwise every solver gets
    ``time_limit`` seconds (None: :data:`DEFAULT_TIME_LIMIT`). ``checkpoint`` receives the
    result so far after each model (to save partial results of a long run). ``cost="unit"`` plans
    with one unit per node (the FastSA paper's cost model). A model named ``file:PATH`` is the
    model file at PATH (:func:`registry.load`).
    """
    from recompiler.errors import RecompilerError
    from recompiler.frontend.capture import reachable_floor
    from recompiler.simulate import baseline

    if suite not in registry.SUITES:
        raise ValueError(f"unknown suite {suite!r}: choose one of {', '.join(registry.SUITES)}")
    models = list(models or registry.SUITES[suite])
    for m in models:
        registry.get(m)
    budgets = list(budgets or registry.SUITE_BUDGETS[suite])
    solvers = list(solvers or default_solvers())
    check_solvers(solvers)
    deterministic = (suite == "ci") if deterministic is None else deterministic
    if time_limit is None and not deterministic:
        time_limit = DEFAULT_TIME_LIMIT
    start = time.perf_counter()
    infos: dict[str, ModelInfo] = {}
    rows: list[Row] = []

    for name in models:
        entry = registry.get(name)
        info = ModelInfo(name, suite, entry.sizes[suite])
        infos[name] = info
        if on_model:
            on_model(name, None)
        try:
            loaded = registry.load(name, suite, cost=cost)
        except Exception as e:  # noqa: BLE001 - a model that does not build/capture is a row, not a crash
            info.error = _one_line(e)
            for b in budgets:
                for s in solvers:
                    row = Row(name, b, s, "error", f"load failed: {info.error}")
                    rows.append(row)
                    on_row and on_row(row)
            continue
        g = loaded.graph
        info.nodes, info.load_seconds = g.n, round(loaded.load_seconds, 2)
        info.baseline_peak_bytes = baseline(g).peak_bytes
        info.floor_bytes = reachable_floor(g)
        if on_model:
            on_model(name, info)
        calib = calibrate()
        cache: dict = {}
        for b in budgets:
            # torch-knapsack first: its partitioner runs are cached, and FastSA (offered its plan)
            # then gets its whole time limit for itself, as torch-knapsack had; rows keep the given order
            order = sorted(solvers, key=lambda s: s != TORCH_KNAPSACK)
            done: dict[str, Row] = {}
            for s in order:
                row = Row(name, b, s, "ok", nodes=g.n, baseline_peak_bytes=info.baseline_peak_bytes,
                          floor_bytes=info.floor_bytes, calibration_seconds=calib)
                reason = skip_reason(s, loaded, suite)
                if reason:
                    row.status, row.reason = "skipped", reason
                else:
                    opts = CI_OPTIONS.get(s, {}) if deterministic else {}
                    limit = CI_TIME_LIMITS.get(s, time_limit) if deterministic else time_limit
                    try:
                        plan = solve_one(loaded, b, s, seed=seed, time_limit=limit, options=opts,
                                         knapsack_cache=cache)
                    except RecompilerError as e:
                        row.status, row.reason = _status_of(e), _one_line(e)
                    except Exception as e:  # noqa: BLE001 - report, keep going
                        row.status, row.reason = "error", _one_line(e)
                    else:
                        row.budget_bytes, row.peak_bytes = plan.budget_bytes, plan.peak_bytes
                        row.peak_pct = 100 * plan.peak_fraction
                        row.overhead_pct = 100 * plan.overhead
                        row.solve_seconds = plan.solve_seconds
                        row.feasible = plan.feasible
                        row.stats = _small_stats(plan.stats)
                done[s] = row
            for s in solvers:
                rows.append(done[s])
                on_row and on_row(done[s])
        del loaded
        if checkpoint:
            checkpoint(SuiteResult(suite, budgets, solvers, time_limit, dict(infos), list(rows),
                                   time.perf_counter() - start))
    return SuiteResult(suite, budgets, solvers, time_limit, infos, rows, time.perf_counter() - start)


def _status_of(e: Exception) -> str:
    """A solver's refusal as a row status: too large → skipped, proved infeasible → no-plan,
    a schedule ``simulate`` rejects → invalid, anything else → error."""
    from recompiler.errors import InfeasibleBudget, InvalidGraph, ModelTooLarge

    if isinstance(e, ModelTooLarge):
        return "skipped"
    if isinstance(e, InfeasibleBudget):
        return "no-plan"
    if isinstance(e, InvalidGraph):
        return "invalid"
    return "error"


def _one_line(e: BaseException) -> str:
    msg = next((line.strip() for line in str(e).strip().splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__
