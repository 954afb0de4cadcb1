"""``simulate``: the one judge of every plan (DESIGN.md, "The schedule and its semantics").

Two implementations with identical results: :func:`simulate_reference`, a clear
Python transcription of the semantics, and the C++ one in ``native/`` that
:func:`simulate` calls. ``tests/test_simulate.py`` checks they agree.

Example
-------
>>> from recompiler.builders import linear_chain
>>> g = linear_chain(3, memory=10)
>>> r = simulate(g, g.baseline_schedule())
>>> r.valid, r.peak_bytes, r.cost
(True, 20, 3.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .graph import CostGraph


@dataclass(frozen=True)
class SimResult:
    """What ``simulate`` finds: validity (with the reason), peak bytes, total cost.

    ``live_bytes[t]`` is the bytes live at step t, inputs and fixed memory included.
    For an invalid schedule peak_bytes and cost are 0 and live_bytes is empty.
    """

    valid: bool
    reason: str
    peak_bytes: int
    cost: float
    live_bytes: np.ndarray

    @property
    def peak_step(self) -> int:
        return int(np.argmax(self.live_bytes)) if self.live_bytes.size else -1


def _invalid(reason: str) -> SimResult:
    return SimResult(False, reason, 0, 0.0, np.zeros(0, dtype=np.int64))


def _check_variant(graph: CostGraph, variant) -> list[int] | str:
    variant = list(graph.default_variant() if variant is None else variant)
    if len(variant) != len(graph.variant_groups):
        return f"variant has {len(variant)} entries, the graph has {len(graph.variant_groups)} variant groups"
    for g, choice in zip(graph.variant_groups, variant):
        if not 0 <= int(choice) < len(g.options):
            return f"variant group {g.name!r} has no option {choice}"
    return [int(c) for c in variant]


def simulate_reference(graph: CostGraph, schedule: Sequence[int], variant: Sequence[int] | None = None) -> SimResult:
    """The semantics of DESIGN.md written out plainly (O(T·deps)). Use :func:`simulate`."""
    variant = _check_variant(graph, variant)
    if isinstance(variant, str):
        return _invalid(variant)
    costs = graph.resolve(variant)
    n, T = graph.n, len(schedule)
    schedule = [int(v) for v in schedule]

    # Validity: ids in range, no inputs scheduled, dependencies computed earlier.
    seen = [False] * n
    count = [0] * n
    for t, v in enumerate(schedule):
        if not 0 <= v < n:
            return _invalid(f"step {t}: node id {v} is out of range")
        if graph.is_input[v]:
            return _invalid(f"step {t}: node {v} ({graph.names[v]!r}) is an input and cannot be scheduled")
        for d in costs.deps[v]:
            if not graph.is_input[d] and not seen[d]:
                return _invalid(f"step {t}: node {v} ({graph.names[v]!r}) needs node {d} "
                                f"({graph.names[d]!r}), which is not computed before it")
        seen[v] = True
        count[v] += 1
    for v in range(n):
        if not graph.is_input[v] and count[v] == 0:
            return _invalid(f"node {v} ({graph.names[v]!r}) is never computed")
        if graph.pinned[v] and count[v] > 1:
            return _invalid(f"pinned node {v} ({graph.names[v]!r}) is computed {count[v]} times")

    # Liveness: the occurrence of v at t lives until the last use before v's next occurrence.
    live = np.zeros(T, dtype=np.int64)
    for t, v in enumerate(schedule):
        nxt = next((s for s in range(t + 1, T) if schedule[s] == v), T)
        uses = [s for s in range(t + 1, nxt) if v in costs.deps[schedule[s]]]
        end = uses[-1] if uses else t
        if graph.is_output[v] and nxt == T:
            end = T - 1
        live[t:end + 1] += costs.memory[v]
    live += graph.input_bytes + graph.fixed_memory
    peak = int(live.max()) if T else graph.input_bytes + graph.fixed_memory
    cost = float(sum(costs.compute[v] for v in schedule))
    return SimResult(True, "", peak, cost, live)


def simulate(graph: CostGraph, schedule: Sequence[int], variant: Sequence[int] | None = None) -> SimResult:
    """Judge a schedule: validity, peak bytes and cost, computed by the C++ core.

    ``schedule`` is a sequence of node ids (a repeat is a recomputation); ``variant``
    the option chosen per variant group (default: option 0 everywhere).
    """
    from . import native

    variant = _check_variant(graph, variant)
    if isinstance(variant, str):
        return _invalid(variant)
    try:
        wide = np.asarray(schedule, dtype=np.int64).reshape(-1)
    except OverflowError:
        wide = None
    if wide is None or (wide.size and (wide.min() < -2**31 or wide.max() >= 2**31)):
        # Ids beyond int32 are out of range anyway; the reference reports them (in step order,
        # as the native core would) instead of the cast raising OverflowError.
        return simulate_reference(graph, schedule, variant)
    sched = np.ascontiguousarray(wide, dtype=np.int32)
    valid, reason, peak, cost, live = native.simulate(native.graph_handle(graph, variant), sched)
    if not valid:
        return _invalid(reason)
    return SimResult(True, "", int(peak), float(cost), live)


def baseline(graph: CostGraph) -> SimResult:
    """The step as it runs without recompiler, simulated: the reference for ``--budget N%``.

    That is ``graph.reference`` when set (inductor's default partition), else store-all.
    """
    if graph.reference is not None:
        res = simulate(graph, graph.reference)
        if res.valid:
            return res
    return simulate(graph, graph.baseline_schedule())
