"""Type stub of ``recompiler._native``, the C++ core built from ``native/`` by ``pip install -e .``.

Call it through :mod:`recompiler.native` (graph conversion and caching) and the solvers,
not directly: the functions take plain arrays and return plain tuples and dicts.
"""

from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

class Graph:
    """The node-cost graph as the core holds it (native/graph.h): CSR deps, one variant applied."""

    @property
    def n(self) -> int: ...

def make_graph(
    dep_ptr: npt.NDArray[np.int32],
    dep_idx: npt.NDArray[np.int32],
    compute: npt.NDArray[np.float64],
    memory: npt.NDArray[np.int64],
    is_input: npt.NDArray[np.uint8],
    pinned: npt.NDArray[np.uint8],
    is_output: npt.NDArray[np.uint8],
    always_live: int,
) -> Graph:
    """Copy a resolved CostGraph into the core. Deps of node i: ``dep_idx[dep_ptr[i]:dep_ptr[i+1]]``;
    ``always_live`` is the bytes of every input plus ``fixed_memory``."""

def simulate(
    graph: Graph, schedule: npt.NDArray[np.int32], want_live: bool = True
) -> tuple[int, int, int, int, int, float, npt.NDArray[np.int64]]:
    """Judge a schedule (DESIGN.md semantics) in O(T + deps), without the GIL.

    Returns ``(error, step, node, dep, peak, cost, live)``: ``error`` is 0 for a valid schedule,
    else 1 node out of range, 2 input scheduled, 3 dependency missing, 4 node never computed,
    5 pinned node repeated (``dep`` then holds the count); ``live`` is bytes live per step
    (inputs and fixed memory included), empty unless ``want_live``.
    """

class FastSAOut(TypedDict):
    schedule: npt.NDArray[np.int32]  # node ids in execution order
    variant: list[int]               # option per variant group
    peak: int                        # the solver's own peak (simulate re-judges it)
    cost: float
    feasible: bool
    best_restart: int
    restarts_done: int
    iterations: int                  # all restarts together
    accepted: int
    stage1_iterations: int           # of the best restart
    stage2_iterations: int
    slots: int
    groups: int                      # grouped ops in stage 1
    seconds: float                   # wall clock
    cpu_seconds: float               # thread CPU time, summed over restarts
    thread_seconds: float            # wall time of each restart, summed
    timed_out: bool
    stage1_met_budget: bool

def fastsa(
    graph: Graph,
    groups: list[tuple[list[int], list[tuple[bool, list[float], list[int], list[list[int]] | None]]]],
    budget: int,
    config: dict[str, Any],
) -> FastSAOut:
    """FastSA (native/fastsa.cpp) under ``budget`` bytes (a peak including inputs and fixed memory).

    ``graph`` has option 0 of every variant group applied. ``groups`` lists each variant group as
    ``(nodes, options)``, an option being ``(exact, compute per node, bytes per node, deps per node
    or None)``; option 0 must carry the graph's own values. ``config`` holds every field of
    :class:`recompiler.solvers.fastsa.FastSAConfig` the core reads, plus ``allow_approx``;
    ``time_limit`` < 0 means none. Runs without the GIL, on ``config["threads"]`` threads.
    """
