"""Greedy eviction: repeatedly add the recomputation that buys the most peak bytes per unit of cost.

Start from the store-all schedule. At the peak step, every value that is live
there but not used there could instead be recomputed right before its next use
(or, for an output, at the end), freeing it across the peak. Each such move is
judged exactly with the native ``simulate``; the one with the least added cost
per byte of peak removed is applied. When no move lowers the peak, a move that
leaves it equal but lowers the number of steps at the peak is taken (ties in
the peak otherwise stall the greedy). Stops when the budget holds, no move
helps, or the time limit is reached.
"""

from __future__ import annotations

import time

import numpy as np

from ..graph import CostGraph
from ..simulate import simulate
from . import SolverResult


def _last_use(graph: CostGraph, schedule: list[int]) -> np.ndarray:
    """For each step, the last step its value is live (the semantics of DESIGN.md)."""
    T = len(schedule)
    end = np.arange(T)
    latest = {}
    for t, v in enumerate(schedule):
        for d in graph.deps[v]:
            if d in latest:
                end[latest[d]] = t
        latest[v] = t
    for v, t in latest.items():
        if graph.is_output[v]:
            end[t] = T - 1
    return end


def _moves(graph: CostGraph, schedule: list[int], peak_step: int):
    """(insert position, node) for each value live across the peak step but not used there."""
    end = _last_use(graph, schedule)
    used_here = set(graph.deps[schedule[peak_step]])
    for t in range(peak_step):
        v = schedule[t]
        if end[t] < peak_step or v in used_here or graph.pinned[v] or graph.memory[v] == 0:
            continue
        q = next((s for s in range(peak_step + 1, len(schedule)) if v in graph.deps[schedule[s]]), None)
        if q is None:
            if not graph.is_output[v]:
                continue
            q = len(schedule)
        yield q, v


def greedy_evict(graph: CostGraph, budget_bytes: int, *, time_limit: float | None = None,
                 max_moves: int | None = None) -> SolverResult:
    """Greedy recomputation until ``budget_bytes`` holds (see the module docstring)."""
    deadline = time.monotonic() + (time_limit if time_limit is not None else 120.0)
    max_moves = max_moves if max_moves is not None else 4 * graph.n
    schedule = graph.baseline_schedule()
    res = simulate(graph, schedule)
    moves = 0
    stop = "budget met"
    while res.peak_bytes > budget_bytes:
        if moves >= max_moves:
            stop = "move limit"
            break
        if time.monotonic() > deadline:
            stop = "time limit"
            break
        peak, count = res.peak_bytes, int((res.live_bytes == res.peak_bytes).sum())
        best_lower, best_flat = None, None
        for q, v in _moves(graph, schedule, res.peak_step):
            cand = schedule[:q] + [v] + schedule[q:]
            r = simulate(graph, cand)
            if not r.valid:
                continue
            added = float(graph.compute[v])
            if r.peak_bytes < peak:
                key = added / (peak - r.peak_bytes)
                if best_lower is None or key < best_lower[0]:
                    best_lower = (key, cand, r)
            elif r.peak_bytes == peak and best_lower is None:
                c = int((r.live_bytes == peak).sum())
                if c < count and (best_flat is None or (added, c) < best_flat[0]):
                    best_flat = ((added, c), cand, r)
        chosen = best_lower or best_flat
        if chosen is None:
            stop = "no move helps"
            break
        _, schedule, res = chosen
        moves += 1
    return SolverResult(schedule, stats={"moves": moves, "stopped": stop})
