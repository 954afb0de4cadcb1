"""FastSA (Imanishi et al., NeurIPS 2023): simulated annealing over a schedule with recomputations.

The algorithm lives in ``native/fastsa.cpp``; this module only prepares its inputs,
picks the budget it anneals towards and returns a :class:`SolverResult` that
:func:`~recompiler.plan.make_plan` re-judges with ``simulate``.

Outline (../shared/papers/NOTES.md, "FastSA"): a vector of slots, mostly ``nop``,
holds the original order spread evenly; each iteration adds a node into a ``nop``
slot, removes one, or rotates one to another slot (validity from per-value sorted
production and use times); the peak comes from a range-add / range-max segment
tree in O(log T) per move; the objective is ``max(budget, peak) * cost`` with
Metropolis acceptance on an exponential temperature schedule. Stage 1 anneals
nodes grouped by Algorithm 1 and stops once the budget holds; stage 2 ungroups
and removes redundant computation at lower temperatures. In stage 2 a move may
also switch a variant group's option (``exact: false`` options only with
``allow_approx``). Independent restarts run on ``threads`` std::threads; the best
is kept, and the result is deterministic for a seed unless the time limit cuts it.

Never worse than what it can see: before annealing, the baselines the graph allows are planned
too (store-all, the graph's reference schedule, chen-greedy, greedy-evict, and the ``starts``
a caller passes — :func:`recompiler.frontend.solve.solve_captured` passes torch-knapsack's plan).
One more restart starts stage 2 from the best of them at a low temperature, and the cheapest
plan of all is returned (``stats["won"]``). This matters most where stage 1's grouped start
meets a tight budget at once by recomputing whole groups (segnet at its floor with the paper's
moves only: +2900% plain, +47% seeded).

Beyond the paper's moves (single adds, removes, rotations): segment moves recompute a node with a
chain of its ancestors just before a use, drop such a chain, or swap a recomputation for one
further up (``segment_moves``), and each restart ends with a polish that drops every
recomputation that costs the plan no bytes (``polish``). Known limit: schedules that recompute
several whole prefixes at once (a training chain at its very floor, which recomputes even the
loss at the end) are still out of reach; tests/solvers/test_fastsa.py lists them (strict xfail).

A budget below the graph's floor (DESIGN.md, "The floor") cannot be met: FastSA then
anneals towards the floor for a short search (``floor_iterations``, or ``floor_time`` under a
time limit) and returns its lowest peak, which ``make_plan`` marks ``feasible=False``.
Without a time limit every search stops on iteration counts, so a plan is a function of the
graph, the options and the seed.

>>> from recompiler.builders import training_chain
>>> from recompiler.solvers import solve
>>> plan = solve(training_chain(8), "60%", solver="fastsa", seed=1, stage2_iterations=20000)
>>> plan.feasible
True
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import native
from ..errors import SolverOptionError
from ..graph import CostGraph
from . import SolverResult


@dataclass(frozen=True, kw_only=True)
class FastSAConfig:
    """Options of the FastSA solver; every field can also be passed to ``solve`` by name."""

    stage1_iterations: int = 0
    """Iterations of stage 1 (grouped nodes) at most; it stops as soon as the budget holds. 0 picks
    20000 per scheduled node, within [2e6, 2e7] (paper: 2e7, for graphs of thousands of nodes)."""

    stage2_iterations: int = 0
    """Iterations of stage 2 (ungrouped nodes, lower temperatures), always run in full; 0 picks
    max(2e6, 8000 per scheduled node) (paper: 2e6, which leaves the 500- and 1000-node graphs short)."""

    slots: int = 0
    """Length T of the slot array (rounded up to a power of two); 0 picks 16 slots per scheduled node,
    at least 1024. The paper uses 2^20; fewer slots keep the segment tree in cache and local moves dense."""

    seed: int = 0
    """Seed of the random moves; restart r derives its own stream from it."""

    time_limit: float | None = None
    """Wall-clock seconds for the whole solve (all restarts run within it); None = bounded by iterations only."""

    restarts: int = 0
    """Independent annealing runs; the best plan (feasible first, then cheapest) is kept. Even runs
    start from grouped nodes, odd ones without grouping; runs 1 and 2 (mod 4) start from the leanest
    variant options. 0 picks 4 on graphs of up to 200 scheduled nodes, else 2."""

    threads: int = 2
    """std::threads the restarts run on (at most ``restarts``)."""

    grouping: bool = True
    """Group nodes with Algorithm 1 for stage 1 (False: stage 1 anneals plain nodes too)."""

    max_group_size: int = 64
    """Most nodes one group may hold (fan-out makes groups copy their producers)."""

    local_rotate: float = 0.9
    """Share of rotate moves whose target slot is near the node's slot rather than anywhere."""

    near_use: float = 0.5
    """Share of add moves placed just before a use of the node rather than in any ``nop`` slot."""

    segment_moves: float = 0.1
    """Share of moves that recompute a node together with a chain of its ancestors just before one
    of its uses, or drop such a chain of recomputations (the deep checkpointing single-node moves
    cannot reach: recomputing one node stretches its inputs' lifetimes), or swap a recomputation for
    a chain recomputed further up (drop it, recompute one of its inputs before a later use: on
    vgg19 at 80% this finds the proven optimum, +2.756%, where single moves stop at +4.85%).
    0 = the paper's moves only."""

    max_segment: int = 16
    """Most nodes one segment move recomputes or drops (each move draws 2 .. max_segment)."""

    swap_share: float = 0.33
    """Share of segment moves that swap a recomputation for a chain recomputed further up; the
    rest add or drop a chain, half each. 0 = no swaps."""

    polish: bool = True
    """End each restart by dropping, to a fixpoint, every recomputation of its best plan whose removal
    keeps the plan within the budget (or, over it, within its own peak): annealing leaves uphill
    moves behind that no later move undid. Never raises the cost."""

    over_weight: float = 10.0
    """Stage 2 scores a plan over the budget as ``(M + over_weight * (M - budget)) * C`` instead of the
    paper's ``M * C``, so that it keeps the budget stage 1 reached (0 = the paper's objective)."""

    floor_time: float = 2.0
    """Seconds at most spent annealing towards the floor when the budget is below it and a
    ``time_limit`` is set."""

    floor_iterations: int = 1_000_000
    """Iterations of each stage when the budget is below the floor and no ``time_limit`` is set (a
    stage's own count when that is smaller): a short search that, like every search without a time
    limit, gives the same plan for the same graph, options and seed on any machine at any load."""

    baselines: bool = True
    """Also plan with the baselines the graph allows (store-all, the graph's reference schedule,
    chen-greedy, greedy-evict, and the ``starts`` the caller gives, e.g. torch-knapsack's), start
    one more restart from the best of them, and return the best plan of all: FastSA never returns
    a plan worse than one of those."""

    baseline_share: float = 0.2
    """Share of ``time_limit`` greedy-evict may use (it is the slow baseline); FastSA gets the rest."""

    initial_temperature: float = 0.1
    """Starting temperature of the restart seeded with the best baseline, as a share of stage 1's
    h_i: low, so that it refines that plan rather than forgets it (0.01, 0.1 and 1 compared on
    chain, Checkmate and fused MLP graphs: 0.1 and 1 alike, 0.01 twice as costly on the fused MLP)."""


def floor_bytes(graph: CostGraph, *, allow_approx: bool = False) -> int:
    """A lower bound on the peak of any plan under any allowed variant choice (DESIGN.md, "The floor").

    The larger of two bounds, each with every node at the smallest size an allowed option gives it:
    the local bound (per node, its bytes plus its non-input inputs' bytes, minimised over the options
    of its own group, which may change its inputs), and the last step, where every output is live.
    """
    n = graph.n
    min_mem = graph.memory.astype(np.int64).copy()
    own_opts: dict[int, list[tuple[int, list[int]]]] = {}
    for vg in graph.variant_groups:
        for k, node in enumerate(vg.nodes):
            for j, o in enumerate(vg.options):
                if not (o.exact or allow_approx or j == 0):
                    continue
                mem = int(graph.memory[node]) if j == 0 else int(o.memory[k])
                deps = graph.deps[node] if (j == 0 or o.deps is None) else o.deps[k]
                min_mem[node] = min(min_mem[node], mem)
                own_opts.setdefault(node, []).append((mem, deps))
    best = 0
    for v in range(n):
        if graph.is_input[v]:
            continue
        choices = own_opts.get(v, [(int(graph.memory[v]), graph.deps[v])])
        need = min(mem + sum(int(min_mem[d]) for d in set(deps) if not graph.is_input[d]) for mem, deps in choices)
        best = max(best, need)
    at_end = int(min_mem[graph.is_output & ~graph.is_input].sum())
    return max(best, at_end) + graph.input_bytes + graph.fixed_memory


@dataclass(frozen=True)
class BaselinePlan:
    """A baseline's schedule and how ``simulate`` ranks it (see :func:`_rank_schedule`)."""

    name: str
    schedule: list[int]
    rank: tuple
    cost: float


def baseline_plans(graph: CostGraph, budget_bytes: int, starts: Mapping[str, Sequence[int]] | None = None,
                   greedy_seconds: float | None = None) -> list[BaselinePlan]:
    """The valid plans of the baselines FastSA compares with, each ranked under ``budget_bytes``.

    Store-all, the graph's reference schedule (its compiler's own partition), chen-greedy,
    greedy-evict (at most ``greedy_seconds``, or :data:`GREEDY_MOVES` moves without them) and every schedule
    in ``starts``. A baseline that fails or returns an invalid schedule is left out.

    >>> from recompiler.builders import training_chain
    >>> g = training_chain(8)
    >>> [p.name for p in baseline_plans(g, 10**9)]
    ['store-all', 'chen-greedy', 'greedy-evict']
    """
    from .chen import chen_greedy
    from .greedy_evict import greedy_evict

    found: dict[str, list[int]] = {"store-all": graph.baseline_schedule()}
    if graph.reference is not None:
        found["reference"] = list(graph.reference)
    found["chen-greedy"] = chen_greedy(graph, budget_bytes).schedule
    if greedy_seconds is None:   # no time limit: bounded by moves, so the baseline (and the plan) never depends on the load
        greedy = greedy_evict(graph, budget_bytes, time_limit=math.inf, max_moves=min(4 * graph.n, GREEDY_MOVES))
    else:
        greedy = greedy_evict(graph, budget_bytes, time_limit=greedy_seconds)
    found["greedy-evict"] = greedy.schedule
    for name, schedule in (starts or {}).items():
        found[name] = [int(v) for v in schedule]
    plans = []
    for name, schedule in found.items():
        rank = _rank_schedule(graph, schedule, None, budget_bytes)
        if rank[0] < 2:
            plans.append(BaselinePlan(name, schedule, rank, rank[1]))
    return plans


#: Moves greedy-evict may make as a baseline when FastSA has no time limit (milliseconds each).
GREEDY_MOVES = 2000


def _rank_schedule(graph: CostGraph, schedule, variant, budget: int) -> tuple:
    """``(0 feasible | 1 over the budget | 2 invalid, cost, peak)`` judged by ``simulate``, as plans
    are; compare ranks with :func:`_better_rank`."""
    from ..simulate import simulate

    res = simulate(graph, list(schedule), variant)
    if not res.valid:
        return (2, 0.0, 0)
    return (0 if res.peak_bytes <= budget else 1, float(res.cost), int(res.peak_bytes))


#: Over the budget, peaks this close (relative) tie and the cheaper plan wins.
PEAK_TIE = 1e-3


def _better_rank(a: tuple, b: tuple) -> bool:
    """Feasible first, then cheapest; over the budget the lower peak, except that peaks within
    :data:`PEAK_TIE` tie and the cheaper plan wins (a few bytes lower is not worth a few percent
    more compute when neither fits). The native core's ``over_budget_better`` is the same rule."""
    if a[0] != b[0]:
        return a[0] < b[0]
    if a[0] == 0:
        return a[1] < b[1] * (1 - 1e-12)
    if a[2] < b[2] * (1 - PEAK_TIE) or b[2] < a[2] * (1 - PEAK_TIE):
        return a[2] < b[2]
    return a[1] < b[1] * (1 - 1e-12) or (a[1] <= b[1] * (1 + 1e-12) and a[2] < b[2])


def _best_of(plans, rank):
    best = None
    for p in plans:
        if best is None or _better_rank(rank(p), rank(best)):
            best = p
    return best


def _rank(graph: CostGraph, r: dict, budget: int) -> tuple:
    """:func:`_rank_schedule` of a native result."""
    return _rank_schedule(graph, r["schedule"], [int(x) for x in (r["variant"] or ())] or None, budget)


def _groups_spec(graph: CostGraph) -> list:
    """Variant groups for the native side; option 0 carries the graph's own values (as ``resolve`` does)."""
    spec = []
    for vg in graph.variant_groups:
        opts = []
        for j, o in enumerate(vg.options):
            if j == 0:
                opts.append((True, [float(graph.compute[v]) for v in vg.nodes],
                             [int(graph.memory[v]) for v in vg.nodes], None))
            else:
                opts.append((bool(o.exact), [float(c) for c in o.compute], [int(m) for m in o.memory],
                             None if o.deps is None else [[int(d) for d in ds] for ds in o.deps]))
        spec.append(([int(v) for v in vg.nodes], opts))
    return spec


def fastsa(graph: CostGraph, budget_bytes: int, *, seed: int | None = None, time_limit: float | None = None,
           allow_approx: bool = False, config: FastSAConfig | None = None,
           stage1_iterations: int | None = None, stage2_iterations: int | None = None, slots: int | None = None,
           restarts: int | None = None, threads: int | None = None, grouping: bool | None = None,
           max_group_size: int | None = None, local_rotate: float | None = None,
           near_use: float | None = None, segment_moves: float | None = None,
           max_segment: int | None = None, swap_share: float | None = None, polish: bool | None = None, over_weight: float | None = None,
           floor_time: float | None = None, floor_iterations: int | None = None, baselines: bool | None = None,
           baseline_share: float | None = None, initial_temperature: float | None = None,
           starts: Mapping[str, Sequence[int]] | None = None) -> SolverResult:
    """Plan ``graph`` under ``budget_bytes`` with FastSA (see the module docstring).

    ``config`` gives every option at once; the keyword options override single fields.
    ``seed`` and ``time_limit`` override the config's. ``starts`` names more schedules of this
    graph to compare with and start from (``{"torch-knapsack": schedule}``; invalid ones are
    ignored); ``stats["won"]`` says where the returned plan came from.
    """
    cfg = config or FastSAConfig()
    overrides = {k: v for k, v in dict(
        stage1_iterations=stage1_iterations, stage2_iterations=stage2_iterations, slots=slots,
        restarts=restarts, threads=threads, grouping=grouping, max_group_size=max_group_size,
        local_rotate=local_rotate, near_use=near_use, segment_moves=segment_moves, max_segment=max_segment,
        swap_share=swap_share, polish=polish,
        over_weight=over_weight, floor_time=floor_time, floor_iterations=floor_iterations,
        baselines=baselines, baseline_share=baseline_share, initial_temperature=initial_temperature,
        seed=seed, time_limit=time_limit).items() if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    _check(cfg)
    start_clock = time.perf_counter()

    floor = floor_bytes(graph, allow_approx=allow_approx)
    target = int(budget_bytes)
    limit = cfg.time_limit
    below_floor = target < floor
    if below_floor:
        # Unreachable: anneal towards the floor itself, briefly, and report the lowest peak found.
        # Briefly means iterations, not seconds, unless the caller gave seconds: a wall-clock stop
        # would make the plan depend on the machine's load (and ranks of one job disagree).
        target = floor
        if limit is None:
            cfg = dataclasses.replace(cfg, **{name: min(getattr(cfg, name) or cfg.floor_iterations,
                                                        cfg.floor_iterations)
                                              for name in ("stage1_iterations", "stage2_iterations")})
        else:
            limit = min(limit, cfg.floor_time)
    candidates = []
    if cfg.baselines:
        candidates = baseline_plans(graph, target, starts, None if limit is None else cfg.baseline_share * limit)
        if limit is not None:
            limit = max(0.0, limit - (time.perf_counter() - start_clock))
    seed_plan = _best_of(candidates, lambda c: c.rank)
    conf = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(NativeFields)}
    conf.update(time_limit=-1.0 if limit is None else float(limit), allow_approx=bool(allow_approx),
                seed=int(cfg.seed) & (2**64 - 1))
    if seed_plan is not None and seed_plan.schedule:
        conf.update(initial_schedule=seed_plan.schedule, initial_variant=graph.default_variant(),
                    initial_temperature=float(cfg.initial_temperature))
    handle, _ = native.graph_handle(graph, graph.default_variant())
    spec = _groups_spec(graph)
    if not spec:
        r = native.module().fastsa(handle, spec, target, conf)
    else:
        # With variant groups the search space is larger and one annealing run can end worse than
        # recomputation alone would: anneal the graph as traced too (half the time each when
        # limited) and keep the better plan, so offering lowerings never costs a plan.
        if limit is not None and not below_floor:   # towards the floor each run takes its short time
            conf["time_limit"] = float(limit) / 2
        plain = dict(conf, initial_variant=[]) if "initial_schedule" in conf else conf
        runs = [native.module().fastsa(handle, spec, target, conf), native.module().fastsa(handle, [], target, plain)]
        best = _best_of(range(2), lambda k: _rank(graph, runs[k], target))
        r = runs[best]
        r["iterations"] = sum(x["iterations"] for x in runs)
        r["cpu_seconds"] = sum(x["cpu_seconds"] for x in runs)
        r["thread_seconds"] = sum(x["thread_seconds"] for x in runs)
        r["seconds"] = sum(x["seconds"] for x in runs)
        r["variant_run_won"] = best == 0
        r["from_initial"] = runs[best]["from_initial"]
    won = f"fastsa from {seed_plan.name}" if r["from_initial"] else "fastsa"
    if seed_plan is not None and _better_rank(seed_plan.rank, _rank(graph, r, target)):
        # the annealing could not match a baseline (its restarts only offer what simulate re-judges)
        r = dict(r, schedule=seed_plan.schedule, variant=graph.default_variant() or None)
        won = seed_plan.name
    stats = {
        "iterations": int(r["iterations"]),
        "moves_per_second": (r["iterations"] / r["cpu_seconds"]) if r["cpu_seconds"] > 0 else 0.0,
        "moves_per_wall_second": (r["iterations"] / r["thread_seconds"]) if r["thread_seconds"] > 0 else 0.0,
        "cpu_seconds": float(r["cpu_seconds"]),
        "accepted": int(r["accepted"]),
        "stage1_iterations": int(r["stage1_iterations"]),
        "stage2_iterations": int(r["stage2_iterations"]),
        "stage1_met_budget": bool(r["stage1_met_budget"]),
        "groups": int(r["groups"]),
        "slots": int(r["slots"]),
        "restarts": int(r["restarts_done"]) - int("initial_schedule" in conf),   # from scratch
        "seeded_from": seed_plan.name if "initial_schedule" in conf else None,
        "best_restart": int(r["best_restart"]),
        "timed_out": bool(r["timed_out"]),
        "native_seconds": float(r["seconds"]),
        "native_peak_bytes": int(r["peak"]),
        "native_cost": float(r["cost"]),
        "search_floor_bytes": floor,
        "below_floor": below_floor,
        "won": won,
        "baselines": {c.name: {"feasible": c.rank[0] == 0, "peak_bytes": c.rank[2], "cost": c.cost}
                      for c in candidates},
    }
    if "variant_run_won" in r:
        stats["variant_run_won"] = bool(r["variant_run_won"])
    # the run without groups leaves the default choice: say so explicitly when the graph has groups
    variant = [int(x) for x in (r["variant"] or ())] or (graph.default_variant() if graph.variant_groups else None)
    return SolverResult(schedule=np.asarray(r["schedule"]).tolist(), variant=variant, stats=stats)


@dataclass(frozen=True, kw_only=True)
class NativeFields:
    """The config fields the native core reads (the rest are handled here)."""

    stage1_iterations: int
    stage2_iterations: int
    slots: int
    seed: int
    restarts: int
    threads: int
    grouping: bool
    max_group_size: int
    local_rotate: float
    near_use: float
    segment_moves: float
    max_segment: int
    swap_share: float
    polish: bool
    over_weight: float


def _check(cfg: FastSAConfig) -> None:
    for name in ("stage1_iterations", "stage2_iterations", "slots"):
        if getattr(cfg, name) < 0:
            raise SolverOptionError(f"fastsa option {name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.slots > 2**26:
        raise SolverOptionError(f"fastsa option slots is at most 2**26 (67M slots, ~1.6 GiB), got {cfg.slots}")
    if not 0.0 <= cfg.baseline_share <= 1.0:
        raise SolverOptionError(f"fastsa option baseline_share must be within [0, 1], got {cfg.baseline_share}")
    if not cfg.initial_temperature > 0:
        raise SolverOptionError(f"fastsa option initial_temperature must be > 0, got {cfg.initial_temperature}")
    if cfg.over_weight < 0:
        raise SolverOptionError(f"fastsa option over_weight must be >= 0, got {cfg.over_weight}")
    if cfg.restarts < 0:
        raise SolverOptionError(f"fastsa option restarts must be >= 0 (0 = automatic), got {cfg.restarts}")
    for name in ("threads", "max_group_size"):
        if getattr(cfg, name) < 1:
            raise SolverOptionError(f"fastsa option {name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.time_limit is not None and not cfg.time_limit >= 0:   # also refuses nan
        raise SolverOptionError(f"fastsa time_limit must be >= 0 seconds, got {cfg.time_limit}")
    if cfg.floor_iterations < 1:
        raise SolverOptionError(f"fastsa option floor_iterations must be >= 1, got {cfg.floor_iterations}")
    if cfg.max_segment < 2:
        raise SolverOptionError(f"fastsa option max_segment must be >= 2, got {cfg.max_segment}")
    for name in ("local_rotate", "near_use", "segment_moves", "swap_share"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise SolverOptionError(f"fastsa option {name} must be within [0, 1], got {getattr(cfg, name)}")
