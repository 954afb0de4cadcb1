"""Chen et al. (2016) segment checkpointing, as Checkmate's ``strategy_chen`` applies it to graphs.

Checkpoints are chosen among *candidates*: the forward nodes that cut the forward
graph (every forward edge crossing their position leaves from them, the graph
analogue of Checkmate's articulation points), or every forward node when the
graph has fewer than two such cuts. A plan keeps the checkpoints; every other
activation that is needed again after its segment (by a later segment or by the
backward) is recomputed right before that use, together with whatever of its
own inputs is stale, and then lives until its last use, which is Chen's
"recompute one segment at a time" behaviour expressed as a schedule.

``chen-sqrtn`` takes every ⌊√n⌋-th candidate; ``chen-greedy`` runs Chen's greedy
rule (close a segment once its bytes exceed B) for a sweep of B and keeps the
cheapest plan that fits the budget (else the one with the lowest peak).
"""

from __future__ import annotations

import math

import numpy as np

from ..graph import CostGraph
from ..simulate import simulate
from . import SolverResult


def forward_nodes(graph: CostGraph) -> list[int]:
    return [v for v in range(graph.n) if not graph.is_input[v] and not graph.is_backward[v]]


def cut_candidates(graph: CostGraph) -> list[int]:
    """Forward nodes v such that every forward edge from at-or-before v to after v starts at v."""
    fwd = forward_nodes(graph)
    pos = {v: i for i, v in enumerate(fwd)}
    # last_reach[i]: the furthest forward position any node before position i feeds.
    reach = np.full(len(fwd), -1)
    for v in fwd:
        for d in graph.deps[v]:
            if d in pos:
                reach[pos[d]] = max(reach[pos[d]], pos[v])
    cuts, furthest = [], -1
    for i, v in enumerate(fwd):
        if furthest <= i and i < len(fwd) - 1:
            cuts.append(v)
        furthest = max(furthest, int(reach[i]))
    return cuts


def candidates(graph: CostGraph) -> list[int]:
    cuts = cut_candidates(graph)
    return cuts if len(cuts) >= 2 else forward_nodes(graph)


def schedule_with_checkpoints(graph: CostGraph, kept: set[int]) -> list[int]:
    """The schedule that keeps ``kept`` and recomputes stale values right before their use.

    A value is stale for a consumer when its latest computation happened in another
    phase: forward segments (split after each kept node) are phases, and the whole
    backward is one phase. Kept, pinned and input values are never stale.
    """
    fwd_seg: dict[int, int] = {}
    seg = 0
    for v in forward_nodes(graph):
        fwd_seg[v] = seg
        if v in kept:
            seg += 1
    backward_phase = seg + 1
    never_stale = np.asarray(graph.is_input | graph.pinned).copy()
    for v in kept:
        never_stale[v] = True
    phase = np.full(graph.n, -1)  # phase of each node's latest computation
    schedule: list[int] = []

    def ensure(consumer_deps: list[int], here: int) -> None:
        # Iterative post-order recomputation of stale dependencies (graphs can be deep).
        stack = [(d, False) for d in reversed(consumer_deps)]
        while stack:
            v, expanded = stack.pop()
            if never_stale[v] or phase[v] == here:
                continue
            if expanded:
                schedule.append(v)
                phase[v] = here
                continue
            stack.append((v, True))
            stack.extend((d, False) for d in reversed(graph.deps[v]) if not never_stale[d] and phase[d] != here)

    for v in graph.baseline_schedule():
        here = backward_phase if graph.is_backward[v] else fwd_seg[v]
        ensure(graph.deps[v], here)
        schedule.append(v)
        phase[v] = here
    return schedule


def _segment_bytes(graph: CostGraph, cands: list[int]) -> list[int]:
    """Bytes of the forward nodes from the previous candidate (exclusive) up to each candidate."""
    fwd = forward_nodes(graph)
    where = {v: i for i, v in enumerate(fwd)}
    out, last = [], -1
    for c in cands:
        out.append(int(graph.memory[fwd[last + 1:where[c] + 1]].sum()))
        last = where[c]
    return out


def greedy_checkpoints(graph: CostGraph, cands: list[int], segment_bytes: list[int], limit: float) -> set[int]:
    """Chen's greedy rule: accumulate segment bytes, checkpoint where the sum first exceeds ``limit``."""
    kept, acc = set(), 0
    for v, b in zip(cands, segment_bytes):
        acc += b
        if acc > limit:
            kept.add(v)
            acc = 0
    return kept


def chen_sqrtn(graph: CostGraph, budget_bytes: int) -> SolverResult:
    """Every ⌊√n⌋-th candidate is a checkpoint; the budget is not consulted (Chen's √n rule)."""
    cands = candidates(graph)
    k = max(1, int(math.sqrt(len(cands))))
    kept = {v for i, v in enumerate(cands) if (i + 1) % k == 0}
    return SolverResult(schedule_with_checkpoints(graph, kept), stats={"checkpoints": len(kept)})


def chen_greedy(graph: CostGraph, budget_bytes: int, *, sweep: int = 64) -> SolverResult:
    """Sweep Chen's greedy segment limit B over ``sweep`` values; keep the cheapest plan within budget."""
    cands = candidates(graph)
    seg_bytes = _segment_bytes(graph, cands)
    total = max(sum(seg_bytes), 1)
    smallest = max(min((b for b in seg_bytes if b > 0), default=1), 1)
    limits = set(np.geomspace(smallest / 2, total, sweep).tolist()) | {math.sqrt(smallest * total)}
    best = None  # (feasible, -cost or -peak, ...) ordering below
    tried: set[frozenset] = set()
    for limit in sorted(limits):
        kept = frozenset(greedy_checkpoints(graph, cands, seg_bytes, limit))
        if kept in tried:
            continue
        tried.add(kept)
        sched = schedule_with_checkpoints(graph, set(kept))
        r = simulate(graph, sched)
        fits = r.peak_bytes <= budget_bytes
        key = (0, r.cost, r.peak_bytes) if fits else (1, r.peak_bytes, r.cost)
        if best is None or key < best[0]:
            best = (key, sched, len(kept), limit)
    _, sched, n_kept, limit = best
    return SolverResult(sched, stats={"checkpoints": n_kept, "segment_limit_bytes": float(limit),
                                      "plans_tried": len(tried)})
