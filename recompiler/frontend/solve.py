"""Plan a captured training step: ``solvers.solve`` with what only a capture knows.

Two things a bare CostGraph cannot give a solver: PyTorch's own partitioner, which needs the fx
joint graph (its plan at this budget is offered to FastSA as a start, so a plan never loses to
``activation_memory_budget`` where that meets the budget), and inductor's fusion, whose
intermediates are charged round by round (:func:`~recompiler.frontend.fusion.solve_fused`).
The backend and ``recompile plan`` both plan through :func:`solve_captured`.

>>> import torch
>>> from recompiler.frontend import capture
>>> cap = capture(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh()), (torch.randn(4, 8),),
...               compiler="eager")
>>> solve_captured(cap, "100%").feasible
True
"""

from __future__ import annotations

import inspect
import time

from ..budget import parse_budget
from ..plan import Plan
from ..simulate import baseline
from ..solvers import DEFAULT_SOLVER, get_solver, solve

#: Share of a solve's time limit PyTorch's partitioner may take to find its plan.
TORCH_SHARE = 0.25


def solve_captured(captured, budget, solver: str | None = None, *, time_limit: float | None = None,
                   torch_cache: dict | None = None, **options) -> Plan:
    """Plan ``captured`` under ``budget`` (bytes or a budget string) with ``solver``.

    A solver that takes ``starts`` (FastSA) also gets torch-knapsack's plan at this budget,
    when PyTorch's partitioner can plan this graph (``torch_cache``: its probes, kept per
    captured model, as :func:`~.torch_knapsack.torch_knapsack` takes them); inductor-compiled
    captures are solved with :func:`~recompiler.frontend.fusion.solve_fused`.
    """
    name = solver or DEFAULT_SOLVER
    # every budget is read the same way (an integer 0 is refused here as on the CLI)
    budget_bytes = parse_budget(budget, baseline_peak=baseline(captured.graph).peak_bytes)
    if "starts" in inspect.signature(get_solver(name)).parameters and "starts" not in options:
        start = time.perf_counter()
        options["starts"] = torch_starts(captured, budget_bytes,
                                         None if time_limit is None else TORCH_SHARE * time_limit, cache=torch_cache)
        if time_limit is not None:  # the time limit covers the whole solve
            time_limit = max(time_limit - (time.perf_counter() - start), (1 - TORCH_SHARE) * time_limit / 2)
    if captured.compiler == "inductor":
        from .fusion import solve_fused

        return solve_fused(captured, budget_bytes, name, time_limit=time_limit, **options)
    return solve(captured.graph, budget_bytes, name, time_limit=time_limit, **options)


def torch_starts(captured, budget_bytes: int, time_limit: float | None = None,
                 cache: dict | None = None) -> dict[str, list[int]]:
    """``{"torch-knapsack": schedule}``: PyTorch's plan at ``budget_bytes``, or ``{}`` where its
    partitioner cannot plan this graph or the step already fits without a plan."""
    from .torch_knapsack import SOLVER_NAME, TorchPartitionError, torch_knapsack

    if captured.joint is None or budget_bytes >= baseline(captured.graph).peak_bytes:
        return {}
    try:
        plan = torch_knapsack(captured, int(budget_bytes), time_limit=time_limit, cache=cache)
    except TorchPartitionError:
        return {}
    return {SOLVER_NAME: list(plan.schedule)}
