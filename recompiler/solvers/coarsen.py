"""Coarsen a CostGraph into runs of consecutive nodes, so that the O(n²) Checkmate LP fits graphs
of thousands of nodes (``checkmate-lp`` with ``max_nodes``); plans on the coarse graph expand
back into schedules of the original graph.

A *run* is a stretch of consecutive scheduled nodes (graph order) on one side of the step; a
pinned node is a run of its own (it must not be recomputed with its neighbours), inputs stay
inputs. The coarse node of a run costs the run's total compute and holds the bytes of the
run's *boundary* values: those read outside the run, or outputs. Computing a coarse node
computes the whole run in order, so every expanded schedule is valid; what the coarse model
cannot see is the run's own transient bytes, which is why the expanded schedules are judged
by ``simulate`` like every other plan.

>>> from recompiler.builders import training_chain
>>> c = coarsen(training_chain(8), 6)
>>> c.graph.n, c.runs[:2], c.expand([1, 0])[:4]
(6, [[0, 1, 2], [3, 4, 5]], [3, 4, 5, 0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..graph import CostGraph


@dataclass(frozen=True)
class Coarsened:
    """The coarse graph and, per coarse node, the original nodes it stands for (in order)."""

    graph: CostGraph
    runs: list[list[int]]

    def expand(self, schedule) -> list[int]:
        """A schedule of the original graph for a schedule of the coarse one (inputs are never scheduled)."""
        out: list[int] = []
        for c in schedule:
            out.extend(self.runs[int(c)])
        return out


def coarsen(graph: CostGraph, max_nodes: int) -> Coarsened:
    """Runs of about ``(scheduled nodes) / max_nodes`` nodes each (module docstring).

    The coarse graph has at most ``max_nodes`` scheduled nodes plus one per pinned node and one
    per change of side (forward/backward), and the original inputs.
    """
    scheduled = [v for v in range(graph.n) if not graph.is_input[v]]
    length = max(1, math.ceil(len(scheduled) / max(1, max_nodes)))
    runs: list[list[int]] = []
    inputs: list[int] = []
    current: list[int] = []
    for v in range(graph.n):
        if graph.is_input[v]:
            inputs.append(v)
            continue
        side_changes = bool(current) and graph.is_backward[v] != graph.is_backward[current[-1]]
        if current and (len(current) >= length or graph.pinned[v] or graph.pinned[current[-1]] or side_changes):
            runs.append(current)
            current = []
        current.append(v)
    if current:
        runs.append(current)

    # Coarse ids: inputs first (kept as they are), then the runs in graph order; every run's
    # outside dependencies lie in earlier runs, since runs are consecutive in graph order.
    coarse_of = np.empty(graph.n, dtype=np.int64)
    for k, v in enumerate(inputs):
        coarse_of[v] = k
    for k, run in enumerate(runs):
        coarse_of[run] = len(inputs) + k
    read_outside = np.zeros(graph.n, dtype=bool)
    for v in range(graph.n):
        for d in graph.deps[v]:
            if coarse_of[d] != coarse_of[v]:
                read_outside[d] = True
    names, deps, compute, memory, backward, pinned, output = [], [], [], [], [], [], []
    for v in inputs:
        names.append(graph.names[v]); deps.append([]); compute.append(float(graph.compute[v]))
        memory.append(int(graph.memory[v])); backward.append(False); pinned.append(False); output.append(False)
    for k, run in enumerate(runs):
        me = len(inputs) + k
        names.append(graph.names[run[0]] if len(run) == 1 else f"{graph.names[run[0]]}..{graph.names[run[-1]]}")
        deps.append(sorted({int(coarse_of[d]) for v in run for d in graph.deps[v] if coarse_of[d] != me}))
        compute.append(float(graph.compute[run].sum()))
        memory.append(int(sum(int(graph.memory[v]) for v in run if read_outside[v] or graph.is_output[v])))
        backward.append(bool(graph.is_backward[run[0]]))
        pinned.append(bool(graph.pinned[run].any()))
        output.append(bool(graph.is_output[run].any()))
    n_in = len(inputs)
    coarse = CostGraph(names=names, deps=deps, compute=np.asarray(compute), memory=np.asarray(memory, dtype=np.int64),
                       is_backward=np.asarray(backward), is_input=np.arange(len(names)) < n_in,
                       pinned=np.asarray(pinned), is_output=np.asarray(output), fixed_memory=graph.fixed_memory,
                       name=f"{graph.name} (coarse {len(runs)})")
    return Coarsened(coarse, [[] for _ in inputs] + runs)
