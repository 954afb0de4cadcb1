"""Greedy eviction: repeatedly add the recomputation that buys the most peak bytes per unit of cost.

Start from the store-all schedule. At the peak step, every value that is live
there but not used there could instead be recomputed right before its next use
(or, for an output, at the end), freeing it across the peak. Each such move is
judged exactly (the peak ``simulate`` would find for the new schedule); the one
with the least added cost per byte of peak removed is applied. When no move
lowers the peak, a move that leaves it equal but lowers the number of steps at
the peak is taken (ties in the peak otherwise stall the greedy). Stops when the
budget holds, no move helps, or the time limit is reached.

Why it is fast: a move changes the live bytes only by a few range additions (the
evicted value's interval is cut, its new copy's dependencies may be held longer,
every later step shifts by one), so each candidate's new peak is a handful of
range-maximum queries on the current live profile (a sparse table), not a fresh
simulation. One move is O(T log T + candidates · deps) in a numba kernel; the
clock is checked between moves, which take milliseconds even at 10⁵ steps.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from ..graph import CostGraph
from ..simulate import simulate
from . import SolverResult

DEFAULT_TIME_LIMIT = 120.0


@njit(cache=True)
def _range_max(table, lo, hi):
    """max(live[lo..hi]) from the sparse table (lo <= hi)."""
    k = 0
    while (2 << k) <= hi - lo + 1:
        k += 1
    a = table[k, lo]
    b = table[k, hi - (1 << k) + 1]
    return a if a > b else b


@njit(cache=True)
def _count_at(live, lo, hi, value):
    c = 0
    for k in range(lo, hi + 1):
        if live[k] == value:
            c += 1
    return c


@njit(cache=True)
def _best_move(sched, dep_ptr, dep_idx, memory, compute, is_input, pinned, is_output, live, always_live):
    """The greedy's move for schedule ``sched`` with live bytes ``live`` (simulate's, per step).

    Returns (kind, node, q, new_peak): kind 1 lowers the peak, 2 keeps it with fewer peak
    steps, 0 none; the move inserts ``node`` before step ``q`` (q = T: append). The choice
    and its tie-breaking are those of judging every candidate with ``simulate``.
    """
    T = sched.shape[0]
    n = memory.shape[0]
    peak = live[0]
    p = 0
    for k in range(T):
        if live[k] > peak:
            peak = live[k]
            p = k
    count = 0
    for k in range(T):
        if live[k] == peak:
            count += 1

    # end[t]: last step the occurrence at t is live (DESIGN.md liveness), occurrences per node.
    end = np.arange(T)
    latest = np.full(n, -1)
    occ_cnt = np.zeros(n + 1, np.int64)
    for t in range(T):
        v = sched[t]
        for j in range(dep_ptr[v], dep_ptr[v + 1]):
            d = dep_idx[j]
            if not is_input[d]:
                end[latest[d]] = t
        latest[v] = t
        occ_cnt[v + 1] += 1
    out_final = always_live
    for v in range(n):
        if is_output[v] and latest[v] >= 0:
            end[latest[v]] = T - 1
            out_final += memory[v]
    occ_ptr = np.cumsum(occ_cnt)
    occ_pos = np.empty(T, np.int64)
    fill = occ_ptr[:-1].copy()
    for t in range(T):
        v = sched[t]
        occ_pos[fill[v]] = t
        fill[v] += 1

    # Reads before the peak (last one per node), at the peak, and the first one after it.
    last_read = np.full(n, -1)
    for s in range(p):
        v = sched[s]
        for j in range(dep_ptr[v], dep_ptr[v + 1]):
            last_read[dep_idx[j]] = s
    used_here = np.zeros(n, np.bool_)
    v = sched[p]
    for j in range(dep_ptr[v], dep_ptr[v + 1]):
        used_here[dep_idx[j]] = True
    first_read = np.full(n, -1)
    for s in range(p + 1, T):
        v = sched[s]
        for j in range(dep_ptr[v], dep_ptr[v + 1]):
            d = dep_idx[j]
            if first_read[d] < 0:
                first_read[d] = s

    # Sparse table for range maxima of live, and prefix counts of steps at the peak.
    levels = 1
    while (1 << levels) <= T:
        levels += 1
    table = np.empty((levels, T), np.int64)
    table[0] = live
    for k in range(1, levels):
        half = 1 << (k - 1)
        for i in range(T - (1 << k) + 1):
            a = table[k - 1, i]
            b = table[k - 1, i + half]
            table[k, i] = a if a > b else b
    at_peak = np.zeros(T + 1, np.int64)
    for k in range(T):
        at_peak[k + 1] = at_peak[k] + (1 if live[k] == peak else 0)

    best_kind = 0
    best_key = 0.0
    best_added = 0.0
    best_count = 0
    best_node = -1
    best_q = -1
    best_peak = peak
    max_deps = 0
    for v in range(n):
        max_deps = max(max_deps, dep_ptr[v + 1] - dep_ptr[v])
    cuts = np.empty(max_deps + 1, np.int64)
    gains = np.empty(max_deps + 1, np.int64)
    for t in range(p):
        v = sched[t]
        if end[t] < p or used_here[v] or pinned[v] or memory[v] == 0:
            continue
        q = first_read[v]
        if q < 0:
            if not is_output[v]:
                continue
            q = T
        mv = memory[v]
        u = last_read[v] if last_read[v] > t else t
        # Range additions over old steps [0, q-1]: -mv after u; +memory[d] after e_d for each
        # dependency whose latest value before q would otherwise be freed before q.
        ncut = 1
        cuts[0] = u + 1
        gains[0] = -mv
        ext = 0
        for j in range(dep_ptr[v], dep_ptr[v + 1]):
            d = dep_idx[j]
            if is_input[d] or memory[d] == 0 or (q == T and is_output[d]):
                continue  # (an output already lives to the new last step)
            dup = False
            for jj in range(dep_ptr[v], j):
                if dep_idx[jj] == d:
                    dup = True
            if dup:
                continue
            lo, hi = occ_ptr[d], occ_ptr[d + 1]  # latest occurrence of d before q: binary search
            while lo < hi:
                mid = (lo + hi) // 2
                if occ_pos[mid] < q:
                    lo = mid + 1
                else:
                    hi = mid
            e = end[occ_pos[lo - 1]]
            if e < q:
                cuts[ncut] = e + 1
                gains[ncut] = memory[d]
                ncut += 1
                ext += memory[d]
        # Sort the cuts (few) and sweep the segments of [0, q-1].
        for a in range(1, ncut):
            c, g = cuts[a], gains[a]
            b = a - 1
            while b >= 0 and cuts[b] > c:
                cuts[b + 1] = cuts[b]
                gains[b + 1] = gains[b]
                b -= 1
            cuts[b + 1] = c
            gains[b + 1] = g
        new_peak = out_final + ext if q == T else live[q] - memory[sched[q]] + ext
        if q < T:
            m = _range_max(table, q, T - 1)
            if m > new_peak:
                new_peak = m
        start = 0
        delta = 0
        for a in range(ncut + 1):
            stop = cuts[a] if a < ncut else q  # segment [start, stop-1] has this delta
            if stop > q:
                stop = q
            if stop > start:
                m = _range_max(table, start, stop - 1) + delta
                if m > new_peak:
                    new_peak = m
            if a < ncut:
                delta += gains[a]
                if cuts[a] > start:
                    start = cuts[a]
        added = compute[v]
        if new_peak < peak:
            key = added / (peak - new_peak)
            if best_kind != 1 or key < best_key:
                best_kind, best_key, best_node, best_q, best_peak = 1, key, v, q, new_peak
        elif new_peak == peak and best_kind != 1:
            # Steps at the peak after the move, segment by segment (as above).
            c = 0
            if q < T:
                c += at_peak[T] - at_peak[q]
                if live[q] - memory[sched[q]] + ext == peak:
                    c += 1
            elif out_final + ext == peak:
                c += 1
            start = 0
            delta = 0
            for a in range(ncut + 1):
                stop = cuts[a] if a < ncut else q
                if stop > q:
                    stop = q
                if stop > start:
                    if delta == 0:
                        c += at_peak[stop] - at_peak[start]
                    elif delta > 0:
                        c += _count_at(live, start, stop - 1, peak - delta)
                if a < ncut:
                    delta += gains[a]
                    if cuts[a] > start:
                        start = cuts[a]
            if c < count and (best_kind == 0 or added < best_added or (added == best_added and c < best_count)):
                best_kind, best_added, best_count, best_node, best_q, best_peak = 2, added, c, v, q, new_peak
    return best_kind, best_node, best_q, best_peak


def _csr(graph: CostGraph):
    ptr = np.zeros(graph.n + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(d) for d in graph.deps])
    idx = np.fromiter((d for ds in graph.deps for d in ds), dtype=np.int64, count=int(ptr[-1]))
    return ptr, idx


def greedy_evict(graph: CostGraph, budget_bytes: int, *, time_limit: float | None = None,
                 max_moves: int | None = None) -> SolverResult:
    """Greedy recomputation until ``budget_bytes`` holds (see the module docstring).

    ``time_limit`` (seconds, default 120) is checked between moves, each of which takes
    milliseconds; ``max_moves`` defaults to 4 × nodes.
    """
    deadline = time.monotonic() + (time_limit if time_limit is not None else DEFAULT_TIME_LIMIT)
    max_moves = max_moves if max_moves is not None else 4 * graph.n
    schedule = np.asarray(graph.baseline_schedule(), dtype=np.int64)
    res = simulate(graph, schedule)
    moves = 0
    stop = "budget met"
    if res.peak_bytes > budget_bytes and schedule.size == 0:
        # Every node is an input: nothing can be scheduled, so nothing can be freed.
        return SolverResult([], stats={"moves": 0, "stopped": "nothing to schedule"})
    ptr, idx = _csr(graph)
    args = (ptr, idx, graph.memory, graph.compute, graph.is_input, graph.pinned, graph.is_output)
    always_live = graph.input_bytes + graph.fixed_memory
    while res.peak_bytes > budget_bytes:
        if moves >= max_moves:
            stop = "move limit"
            break
        if time.monotonic() > deadline:
            stop = "time limit"
            break
        kind, node, q, _ = _best_move(schedule, *args, res.live_bytes, always_live)
        if kind == 0:
            stop = "no move helps"
            break
        schedule = np.insert(schedule, q, node)
        res = simulate(graph, schedule)
        moves += 1
    return SolverResult(schedule.tolist(), stats={"moves": moves, "stopped": stop})
