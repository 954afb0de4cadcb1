"""``checkmate-milp``: Checkmate's exact MILP (Jain et al., MLSys 2020), solved with OR-Tools.

The formulation, and why its optimum is exact for our ``simulate`` semantics, is in
:mod:`recompiler.solvers.checkmate_model`. Backends: HiGHS (default), SCIP (both
through pywraplp) and CP-SAT. HiGHS proved optimality fastest here (2-core CPU,
120 s limit, memory rows scaled, load 1.0-1.4):

=================  ==============================  ==================================
instance           HiGHS                           note
=================  ==============================  ==================================
vgg19 @ 80%        optimal +2.7559%, 47.0 s
fcn_8_vgg @ 70%    optimal +0.8921%, 59.9 s
vgg_unet @ 90%     optimal +1.1289%, 19.7 s        unscaled HiGHS "proved" +1.2901%
vgg_unet @ 50%     no incumbent (MIP start +8.55%) CP-SAT 120 s: +7.19%, gap 1.39%
segnet @ 60%       optimal +0.4233%, 28.4 s
=================  ==============================  ==================================

Floating-point backends are held to integer truth: the memory rows are divided by their
largest coefficient (:func:`~.checkmate_model.memory_scale`; with raw ~1e7-unit coefficients
HiGHS's presolve proved a wrong optimum), a solution that ``simulate`` finds a few bytes over
the budget (within the backend's feasibility tolerance) has those bytes cut off the model's
budget and is solved again, and CP-SAT on the real budget settles what the cut left open
(``stats["tolerance_cut_bytes"]``, ``stats["settled_by"]``). "Optimal" is optimal among
Checkmate's staged schedules, to a relative gap of 1e-7: FastSA's unstaged schedules can be
cheaper still (segnet @ 90%: +0.103% against the staged optimum +0.1083%).

Sizes that spread too far for floating point (a 2**40-byte tensor beside kilobyte ones: HiGHS
drops coefficients under 1e-9 of a row's largest) are rounded up to a coarser unit for HiGHS and
SCIP (``Formulation.rounded``, ``stats["memory_unit_bytes"]``): the model then over-counts memory, so
its schedules fit, and CP-SAT on exact sizes settles what the rounding left open. An "infeasible"
is reported as ``InfeasibleBudget`` only when it is a proof: exact sizes, the real budget, and
store-all (a staged schedule) does not fit; otherwise the claim is withdrawn
(``stats["infeasible_withdrawn"]``) and the best known schedule returned.

``time_limit`` covers the whole call: each phase (LP bound, warm start, MILP, tolerance re-solves,
CP-SAT settling) gets only what is left of it, model loading included. Building a model is not
interruptible, so the call can end later by that much (~0.5 s per 25,000 variables here).

CP-SAT finds *some* incumbent most often, so the call first builds one itself:
the LP relaxation at the full budget (its objective is ``lower_bound_cost``) is
rounded as in ``checkmate-lp`` (and, when no rounding fits, the LP at 0.9 × budget
or halfway to the floor) and the best rounding that fits becomes a MIP start
(CP-SAT and SCIP take it as a hint; HiGHS's hint crashes in OR-Tools 9.15, so for
HiGHS it is only the fallback incumbent). On a time-out the best incumbent is
returned with ``optimal: False`` and the relative gap to the best proven bound
(the backend's, or the LP bound when higher). The plan is re-judged by ``simulate`` like
every plan.

>>> from recompiler.builders import training_chain
>>> from recompiler.solvers import solve
>>> plan = solve(training_chain(4), 4, solver="checkmate-milp")
>>> plan.feasible, plan.cost, plan.stats["milp_cost"], plan.stats["optimal"]
(True, 12.0, 12.0, True)
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from ..errors import InfeasibleBudget, SolverOptionError
from ..graph import CostGraph
from ..simulate import simulate
from . import SolverResult
from .checkmate_lp import round_lp
from .checkmate_model import (DEFAULT_MEMORY_CAP, require_reachable, Formulation, LinearModel, memory_scale, solve_lp,
                               to_pywraplp)

BACKENDS = ("highs", "scip", "cp-sat")
DEFAULT_TIME_LIMIT = 300.0
#: Relative gap under which a backend may call its incumbent optimal (HiGHS's default is 1e-4):
#: "optimal" here means within 1e-6 of the best possible cost.
MIP_GAP = 1e-7
#: How far simulate's cost of the extracted schedule may differ from the MILP's objective
#: before an "optimal" claim is withdrawn.
CLAIM_TOLERANCE = 1e-6
#: Bytes a floating-point backend's solution may overshoot the budget are taken off the model's
#: budget and it is solved again, until the cuts add up to this share of (budget − local bound).
TOLERANCE_CUTS_MAX = 0.01
#: The largest feasibility tolerance of HiGHS and SCIP (relative to a row's largest coefficient).
FEASIBILITY_TOLERANCE = 1e-6
#: The LP bound and warm start are skipped when less than this is left of the time limit.
LP_MIN_SECONDS = 0.05


def checkmate_milp(graph: CostGraph, budget_bytes: int, *, seed: int = 0, time_limit: float | None = None,
                   backend: str = "highs", lp_bound: bool = True, warm_start: bool = True,
                   memory_cap_bytes: int = DEFAULT_MEMORY_CAP, num_workers: int | None = None) -> SolverResult:
    """Solve Checkmate's MILP for ``graph`` under ``budget_bytes``.

    Options (keyword-only):

    - ``backend``: ``"highs"`` (default), ``"scip"`` or ``"cp-sat"`` (module docstring).
    - ``time_limit``: seconds for the whole call (LP bound included); default 300.
    - ``lp_bound``: record the LP relaxation's objective at the full budget as
      ``stats["lower_bound_cost"]``.
    - ``warm_start``: round that LP's solution into a MIP start (see above).
    - ``memory_cap_bytes``: refuse (``ModelTooLarge``) a model whose estimated size exceeds this.
    - ``num_workers``: CP-SAT search workers (default: every core).

    Raises ``InfeasibleBudget`` when the budget is below the graph's local bound or the
    solver proves that no staged schedule fits.
    """
    if backend not in BACKENDS:
        raise SolverOptionError(f"checkmate-milp backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    start = time.monotonic()
    limit = DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit)
    deadline = start + limit

    def left() -> float:
        return deadline - time.monotonic()

    floor = require_reachable(graph, budget_bytes)
    exact = backend == "cp-sat"  # integers: no rounding of sizes needed
    form = Formulation(graph, budget_bytes, exact=exact)
    size = form.check_size(memory_cap_bytes)
    stats: dict = {"backend": backend, "variables": size.variables, "constraints": size.constraints}
    if form.rounded:
        stats["memory_unit_bytes"] = form.unit  # sizes rounded up to this (Formulation.rounded)

    s_frac = None
    if (lp_bound or warm_start) and left() > LP_MIN_SECONDS:
        t0 = time.monotonic()
        bound, s_frac, lp_status = solve_lp(form, time_limit=min(0.3 * limit, left()))
        if lp_bound:
            stats["lower_bound_cost"] = bound
        stats["lp_status"] = lp_status
        stats["lp_seconds"] = round(time.monotonic() - t0, 3)

    if left() <= 0:
        # The LP took the whole limit: building the MILP (seconds on large graphs) would only overrun it.
        stats.update(status="no solution", optimal=False, milp_cost=None, best_bound=stats.get("lower_bound_cost"),
                     gap=None)
        return SolverResult(graph.baseline_schedule(), stats=stats)
    t0 = time.monotonic()
    lm = form.build(integer=True)
    stats["build_seconds"] = round(time.monotonic() - t0, 3)
    hint = None
    if warm_start and s_frac is not None:
        # A MIP start: the best LP rounding that fits (checkmate-lp's rounding, cheap
        # once the LP is solved), with its exact S/FREE/U.
        t0 = time.monotonic()
        best, _ = round_lp(form, [s_frac], seed=seed, random_draws=8, deadline=t0 + 0.1 * limit)
        reduced = max(int(0.9 * budget_bytes), (floor + budget_bytes) // 2)
        half = 0.5 * limit - (time.monotonic() - start)
        if (best is None or best[0][0] != 0) and half > 1.0 and reduced < budget_bytes:
            # Nothing fits: as checkmate-lp does, round the LP of a smaller budget.
            _, s_low, _ = solve_lp(Formulation(graph, reduced, exact=exact), time_limit=half)
            if s_low is not None:
                low, _ = round_lp(form, [s_low], seed=seed, random_draws=8,
                                  deadline=time.monotonic() + 0.1 * limit)
                best = low if best is None or low[0] < best[0] else best
        if best is not None and best[0][0] == 0:
            hint = form.exact_values(best[2], lm)
            stats["warm_start_cost"] = best[0][1]
        stats["warm_start_seconds"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    cut, first_bound, model = 0, None, lm  # model: the one the hint's variables belong to
    status, values, objective, bound = "no solution", None, None, None
    while left() > 0:
        # Each backend call gets what is left of the time limit, never more (issue 20: a 2 s
        # limit ran for a minute when every call was given at least a second).
        if backend == "cp-sat":
            status, values, objective, bound = _solve_cpsat(form, lm, left(), seed, num_workers, hint)
            break  # integer arithmetic: no tolerance to absorb
        status, values, objective, bound = _solve_pywraplp(lm, left(), backend.upper(), hint)
        first_bound = bound if first_bound is None else first_bound
        if values is None or status == "infeasible":
            break
        # A floating-point backend accepts memory rows violated within its tolerances (1e-6 of
        # the largest size at most): a schedule a few bytes over the budget. Take those bytes,
        # and at least that slack, off the model's budget and solve again.
        over = simulate(graph, form.schedule_from_r(lm.r_matrix(values, form.m))).peak_bytes - budget_bytes
        out_of_cuts = cut >= TOLERANCE_CUTS_MAX * max(1, budget_bytes - floor)
        if over <= 0 or out_of_cuts or left() <= 0:
            break
        cut += max(over, math.ceil(FEASIBILITY_TOLERANCE * memory_scale(lm)) * form.unit)
        form = Formulation(graph, budget_bytes - cut, exact=exact)
        lm = form.build(integer=True)
        stats["tolerance_cut_bytes"] = cut
    proof = not cut and not form.rounded  # an "infeasible" of this model is about the real budget
    if cut or form.rounded:
        # The smaller budget's bound does not bound the real problem; the first solve's does.
        if cut:
            bound = first_bound
        if status == "optimal" and not (bound is not None and objective <= bound * (1 + CLAIM_TOLERANCE)):
            status = "time limit"  # optimal for a budget a few bytes smaller: one in between might be cheaper
        if status != "optimal" and left() > 1.0:
            # Settle it in integer arithmetic: CP-SAT on the real budget and exact sizes, started
            # from this incumbent.
            full = Formulation(graph, budget_bytes, exact=True)
            full_lm = full.build(integer=True) if (form.rounded or full.unit != form.unit) else model
            start_point = None
            if values is not None:
                R = lm.r_matrix(values, form.m)
                if simulate(graph, form.schedule_from_r(R)).peak_bytes <= budget_bytes:
                    start_point = full.exact_values(R, full_lm)
            elif hint is not None and full_lm is model:
                start_point = hint
            exact_result = _solve_cpsat(full, full_lm, left(), seed, num_workers, start_point)
            stats["settled_by"] = "cp-sat"
            if exact_result[0] in ("optimal", "infeasible") or (
                    exact_result[2] is not None and (objective is None or exact_result[2] < objective)):
                status, values, objective, bound = exact_result
                form, lm = full, full_lm
                proof = True
    if status == "infeasible" and not proof:
        status = "infeasible within tolerance"
    stats["milp_seconds"] = round(time.monotonic() - t0, 3)
    stats["status"] = status
    if hint is not None and (objective is None or objective > stats["warm_start_cost"] * (1 + CLAIM_TOLERANCE)):
        # The MIP start is a feasible point of the model: it is the incumbent when the
        # backend found nothing better (HiGHS takes no start, see _solve_pywraplp). A backend
        # that calls a costlier point optimal is wrong (floating point), and loses the claim.
        if status == "optimal":
            stats["optimal_withdrawn"] = (f"the MIP start costs {stats['warm_start_cost']:.6g}, less than "
                                          f"the claimed optimum {objective:.6g}")
        if status.startswith("infeasible"):
            stats["infeasible_withdrawn"] = "the MIP start fits the budget"
        values, objective, lm = np.asarray(hint), stats["warm_start_cost"], model  # same m and nodes as form
        status = stats["status"] = "time limit"
    if lp_bound and stats.get("lower_bound_cost") is not None:
        bound = max(b for b in (bound, stats["lower_bound_cost"]) if b is not None)
    if status.startswith("infeasible"):
        if status == "infeasible" and simulate(graph, graph.baseline_schedule()).peak_bytes > budget_bytes:
            raise InfeasibleBudget(f"checkmate-milp proved that no staged schedule of {graph.name!r} fits "
                                   f"{budget_bytes:,} B (local bound {floor:,} B)", floor_bytes=floor)
        # Not a proof (a tolerance cut, rounded sizes, or contradicted by store-all fitting, which is
        # a staged schedule): no claim, and no incumbent.
        stats["infeasible_withdrawn"] = stats.get("infeasible_withdrawn") or (
            "store-all fits the budget" if status == "infeasible" else
            "infeasible only for a model with rounded sizes or a budget cut below the real one")
        values, objective = None, None
        status = stats["status"] = "no solution"
    stats["optimal"] = status == "optimal"
    if values is None:
        # No incumbent within the time limit: hand back the store-all schedule, which
        # make_plan judges infeasible for any budget below the baseline peak.
        stats.update(milp_cost=None, best_bound=bound, gap=None)
        return SolverResult(graph.baseline_schedule(), stats=stats)
    schedule = form.schedule_from_r(lm.r_matrix(values, form.m))
    stats["milp_cost"] = objective
    stats["best_bound"] = bound
    stats["gap"] = _gap(objective, bound)
    _check_claim(graph, schedule, budget_bytes, stats)
    return SolverResult(schedule, stats=stats)


def _check_claim(graph: CostGraph, schedule: list[int], budget_bytes: int, stats: dict) -> None:
    """Withdraw an "optimal" claim that ``simulate`` does not bear out: the schedule must fit the
    budget and cost what the MILP says (floating-point backends can be off on large coefficients)."""
    if not stats["optimal"]:
        return
    res = simulate(graph, schedule)
    objective = stats["milp_cost"]
    why = None
    if not res.valid or res.peak_bytes > budget_bytes:
        why = "its schedule does not fit the budget in simulate"
    elif abs(res.cost - objective) > CLAIM_TOLERANCE * max(abs(objective), 1e-300):
        why = f"simulate's cost {res.cost:.6g} differs from the MILP objective {objective:.6g}"
    if why:
        stats["optimal"] = False
        stats["optimal_withdrawn"] = why


def _gap(objective: float, bound: float | None) -> float | None:
    if bound is None or not math.isfinite(bound):
        return None
    if objective == 0:
        return 0.0
    return max(0.0, (objective - bound) / abs(objective))


def _solve_cpsat(form: Formulation, lm: LinearModel, time_limit: float, seed: int, num_workers: int | None,
                 hint: list[float] | None):
    from ortools.sat.python import cp_model

    t_end = time.monotonic() + time_limit  # building the model counts against the limit too
    model = cp_model.CpModel()
    x = [model.new_bool_var("") if (lb == 0 and ub == 1) else model.new_int_var(int(lb), int(ub), "")
         for lb, ub in zip(lm.lb, lm.ub)]
    for terms, lb, ub in lm.rows:
        expr = cp_model.LinearExpr.weighted_sum([x[v] for v, _ in terms], [int(c) for _, c in terms])
        if lb == ub:
            model.add(expr == int(lb))
        elif lb == -math.inf:
            model.add(expr <= math.floor(ub))
        elif ub == math.inf:
            model.add(expr >= math.ceil(lb))
        else:
            model.add_linear_constraint(expr, math.ceil(lb), math.floor(ub))
    obj_vars = [(v, c) for v, c in enumerate(lm.obj) if c]
    integral = all(float(c).is_integer() for _, c in obj_vars) and float(lm.obj_const).is_integer() \
        and sum(abs(c) for _, c in obj_vars) + abs(lm.obj_const) < 2**53
    coefs = [int(c) if integral else float(c) for _, c in obj_vars]
    const = int(lm.obj_const) if integral else float(lm.obj_const)
    model.minimize(cp_model.LinearExpr.weighted_sum([x[v] for v, _ in obj_vars], coefs) + const)
    if hint is not None:
        for v, value in enumerate(hint):
            model.add_hint(x[v], int(round(value)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.001, t_end - time.monotonic())
    solver.parameters.num_workers = int(num_workers or os.cpu_count() or 1)
    solver.parameters.random_seed = int(seed)
    solver.parameters.relative_gap_limit = MIP_GAP
    code = solver.solve(model)
    status = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "time limit",
              cp_model.INFEASIBLE: "infeasible", cp_model.MODEL_INVALID: "model invalid"}.get(code, "no solution")
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, None, None, (solver.best_objective_bound if code == cp_model.UNKNOWN else None)
    values = np.zeros(lm.num_vars)
    for v in lm.R.values():
        values[v] = solver.value(x[v])
    return status, values, float(solver.objective_value), float(solver.best_objective_bound)


def _solve_pywraplp(lm: LinearModel, time_limit: float, backend: str, hint: list[float] | None):
    from ortools.linear_solver import pywraplp

    t_end = time.monotonic() + time_limit  # loading the model counts against the limit too
    solver = pywraplp.Solver.CreateSolver(backend)
    if solver is None:
        raise SolverOptionError(f"OR-Tools was built without {backend}")
    x = to_pywraplp(solver, lm)
    solver.SetTimeLimit(max(1, int((t_end - time.monotonic()) * 1000)))
    if backend == "HIGHS":
        # Why: pywraplp's HiGHS prints a banner to stdout unless told not to, and
        # SetHint segfaults it (OR-Tools 9.15); the caller falls back to the hint instead.
        solver.SetSolverSpecificParametersAsString("output_flag=false")
    elif hint is not None:
        scale, memory = memory_scale(lm), set(lm.memory_vars)
        solver.SetHint(x, [h / scale if v in memory else h for v, h in enumerate(hint)])
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(params.RELATIVE_MIP_GAP, MIP_GAP)
    code = solver.Solve(params)
    status = {pywraplp.Solver.OPTIMAL: "optimal", pywraplp.Solver.FEASIBLE: "time limit",
              pywraplp.Solver.INFEASIBLE: "infeasible"}.get(code, "no solution")
    if code not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return status, None, None, None
    values = np.zeros(lm.num_vars)
    for v in lm.R.values():
        values[v] = x[v].solution_value()
    scale = lm.obj_scale
    return status, values, float(solver.Objective().Value()) * scale, float(solver.Objective().BestBound()) * scale
