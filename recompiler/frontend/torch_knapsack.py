"""``torch-knapsack``: PyTorch's own ``activation_memory_budget`` partitioner, judged by our ``simulate``.

PyTorch's min-cut partitioner (``torch._functorch.partitioners.min_cut_rematerialization_partition``)
with ``torch._functorch.config.activation_memory_budget`` set solves a 0-1 knapsack over the
activations it could save (default solver: the quantized DP; its ``ilp`` needs scipy) and
returns a forward and a backward fx graph, the backward recomputing what was not saved.
:func:`schedule_from_modules` turns that decision into our schedule over the *same* joint
graph the CostGraph was lowered from:

1. the forward graph's computing nodes in its order, then the backward graph's in its order
   (placeholders of the backward are the saved values: nothing to compute); fx node names
   map back to CostGraph ids through ``Captured.node_ids`` — a recomputed copy in the
   backward has the original's name, so it becomes a second occurrence of that node;
2. a recomputation of a *pinned* node is dropped (under ``rng="pin"`` PyTorch may still count
   dropout as recomputable, as inductor replays its RNG from philox seeds; we pin it there so a
   plan keeps eager's masks; under ``rng="replay"`` only the seed draws are pinned): the nearest
   valid schedule keeps the forward's value alive instead;
3. nodes of the joint graph that neither module computes (dead code PyTorch eliminates:
   e.g. an unused output of a multi-output op) are put right after their last dependency,
   where they are freed at once; our CostGraph still has them, and a valid schedule runs
   every node.

``simulate`` then judges the schedule like any solver's. PyTorch's budget is a fraction of
the bytes of saved activations (1.0: its runtime-optimal min cut; 0.0: recompute all it
may), not of the peak, so :func:`torch_knapsack` bisects it for the largest fraction whose
simulated peak meets our byte budget (a coarse grid, then bisection: the peak is not monotone
in the fraction) and records that fraction in ``stats["torch_budget"]``.

CSE is switched off while partitioning (``torch._functorch.config.cse``): CSE would merge
equal nodes of the joint graph, whose merged-away nodes our CostGraph still has.

It is not a CostGraph solver in ``SOLVERS``: it needs the fx joint graph, so ``recompile bench``
calls :func:`torch_knapsack` with the :class:`~recompiler.frontend.capture.Captured` model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import RecompilerError
from ..plan import Plan, make_plan
from ..simulate import simulate

SOLVER_NAME = "torch-knapsack"
#: The lowest fraction tried (PyTorch: save only the inputs, recompute the rest of the forward).
MIN_BUDGET = 0.0


class TorchPartitionError(RecompilerError):
    """PyTorch's partitioner failed on this joint graph, or its decision cannot be mapped back."""


def _copy_joint(joint):
    """A fresh GraphModule over a copy of ``joint``'s graph (the partitioner mutates what it gets)."""
    import torch.fx as fx

    graph = fx.Graph()
    out = graph.graph_copy(joint.graph, {})
    graph.output(out)
    return fx.GraphModule(joint, graph)


def partition(captured, memory_budget: float):
    """PyTorch's ``(fw_module, bw_module)`` for ``captured.joint`` at ``activation_memory_budget``.

    For a graph captured for inductor the partitioner runs as inductor calls it
    (``compiler="inductor"``: fusible ops are cheap to recompute).
    """
    import torch._functorch.config as fconfig  # noqa: F401 - import explicitly before reading its options
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    joint = _copy_joint(captured.joint)
    with fconfig.patch(activation_memory_budget=float(memory_budget), cse=False,
                       activation_memory_budget_solver="dp"):
        try:
            return min_cut_rematerialization_partition(joint, None, num_fwd_outputs=captured.num_fwd_outputs,
                                                       compiler=getattr(captured, "compiler", "eager"))
        except Exception as e:  # noqa: BLE001 - PyTorch internals: report in one line
            msg = next((s for s in str(e).splitlines() if s.strip()), "")
            raise TorchPartitionError(f"PyTorch's partitioner failed: {type(e).__name__}: {msg}") from e


def schedule_from_modules(captured, fw_module, bw_module) -> list[int]:
    """Our schedule for PyTorch's two modules (module docstring, steps 1-3)."""
    g = captured.graph
    ids = captured.node_ids
    sched: list[int] = []
    done: set[int] = set()
    for module in (fw_module, bw_module):
        for node in module.graph.nodes:
            if node.op != "call_function":
                continue
            i = ids.get(node.name)
            if i is None:
                raise TorchPartitionError(f"PyTorch's {'forward' if module is fw_module else 'backward'} graph "
                                          f"computes {node.name!r}, which the joint graph has no node of")
            if g.is_input[i] or (g.pinned[i] and i in done):
                continue
            sched.append(i)
            done.add(i)
    return _place_missing(g, sched)


def _place_missing(g, sched: list[int]) -> list[int]:
    """Insert every non-input node the schedule lacks right after its dependencies are all computed."""
    present = set(sched)
    missing = [v for v in range(g.n) if not g.is_input[v] and v not in present]
    if not missing:
        return sched
    # Nodes missing are inserted in id order (a topological order), each after the first step
    # at which all its dependencies have appeared (a missing dep is placed just before it).
    first = {}
    for t, v in enumerate(sched):
        first.setdefault(v, t)
    after: dict[int, list[int]] = {}
    for v in missing:
        pos = max((first[d] for d in g.deps[v] if not g.is_input[d]), default=-1)
        first[v] = pos  # same position: lands after its deps, in id order among the inserted
        after.setdefault(pos, []).append(v)
    out = list(after.get(-1, []))
    for t, v in enumerate(sched):
        out.append(v)
        out.extend(after.get(t, []))
    return out


def reference_schedule(captured) -> list[int]:
    """The schedule of PyTorch's default partition (``activation_memory_budget`` 1.0) of ``captured``:
    what the step runs without recompiler under inductor (:attr:`CostGraph.reference`)."""
    return probe(captured, 1.0).schedule


@dataclass(eq=False)
class Probe:
    """One partitioner run: PyTorch's budget fraction and what ``simulate`` makes of it."""

    torch_budget: float
    schedule: list[int]
    peak_bytes: int
    cost: float
    seconds: float


def probe(captured, memory_budget: float) -> Probe:
    start = time.perf_counter()
    fw, bw = partition(captured, memory_budget)
    sched = schedule_from_modules(captured, fw, bw)
    res = simulate(captured.graph, sched)
    if not res.valid:
        raise TorchPartitionError(f"PyTorch's plan at budget {memory_budget:g} maps to an invalid schedule: "
                                  f"{res.reason}")
    return Probe(float(memory_budget), sched, res.peak_bytes, res.cost, time.perf_counter() - start)


#: Fractions probed first, largest first; the bisection then refines between two neighbours.
GRID = (1.0, 0.5, 0.25, 0.1, MIN_BUDGET)


def torch_knapsack(captured, budget_bytes: int, *, steps: int = 4, time_limit: float | None = None,
                   cache: dict | None = None, grid: tuple[float, ...] = GRID) -> Plan:
    """PyTorch's plan with the largest ``activation_memory_budget`` whose simulated peak fits ``budget_bytes``.

    The peak is not monotone in PyTorch's fraction (recomputing everything can raise it), so
    the fractions of ``grid`` (default :data:`GRID`) are probed first, largest first; the
    largest that fits is then raised by ``steps`` bisection steps towards the next larger one.
    ``time_limit`` seconds stop the search early (the best plan so far is kept). If nothing fits, the plan with the lowest
    peak seen is returned (``feasible=False``). ``cache`` (a dict kept per captured model)
    shares probes between budgets. ``stats["torch_budget"]`` is the fraction chosen.
    """
    start = time.perf_counter()
    cache = {} if cache is None else cache
    used: list[Probe] = []

    def run(b: float) -> Probe:
        if b not in cache:
            cache[b] = probe(captured, b)
        used.append(cache[b])
        return cache[b]

    def out_of_time() -> bool:
        return time_limit is not None and time.perf_counter() - start > time_limit

    def fits(p: Probe) -> bool:
        return p.peak_bytes <= budget_bytes

    best = None
    above = None   # the smallest grid fraction larger than the best that fits (does not fit)
    for b in sorted(grid, reverse=True):
        p = run(b)
        if fits(p):
            best = p
            break
        above = b
        if out_of_time():
            break
    if best is not None and above is not None:
        lo, hi = best.torch_budget, above
        for _ in range(steps):
            if out_of_time():
                break
            mid = (lo + hi) / 2
            p = run(mid)
            if fits(p):
                lo, best = mid, p
            else:
                hi = mid
    if best is None:
        best = min(used, key=lambda p: (p.peak_bytes, p.cost))
    seconds = time.perf_counter() - start
    stats = {"torch_budget": best.torch_budget,
             "probes": [{"torch_budget": p.torch_budget, "peak_bytes": p.peak_bytes, "cost": p.cost,
                         "seconds": round(p.seconds, 3)} for p in dict.fromkeys(used)]}
    return make_plan(captured.graph, best.schedule, solver=SOLVER_NAME, budget_bytes=budget_bytes,
                     solve_seconds=seconds, stats=stats)
