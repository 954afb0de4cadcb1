"""The Python side of the C++ core: converts a CostGraph once, formats its answers.

The extension ``recompiler._native`` is built by ``pip install -e .``; without it
every call here raises :class:`~recompiler.errors.NativeUnavailable` saying so
(no silent fallback to a slower path).
"""

from __future__ import annotations

import numpy as np

from .errors import NativeUnavailable
from .graph import CostGraph

try:
    from . import _native
except ImportError as _err:  # pragma: no cover - exercised only on a broken install
    _native = None
    _import_error = _err

_ERRORS = {
    1: "step {step}: node id {node} is out of range",
    2: "step {step}: node {node} ({name!r}) is an input and cannot be scheduled",
    3: "step {step}: node {node} ({name!r}) needs node {dep} ({dep_name!r}), which is not computed before it",
    4: "node {node} ({name!r}) is never computed",
    5: "pinned node {node} ({name!r}) is computed {dep} times",
}


def module():
    """The loaded extension module, or a clear error telling how to build it."""
    if _native is None:
        raise NativeUnavailable(
            f"recompiler's C++ core is not built ({_import_error}); run `pip install -e .` in the repository")
    return _native


def graph_handle(graph: CostGraph, variant: list[int]):
    """The native copy of ``graph`` with ``variant`` applied, cached on the graph.

    CostGraph is treated as immutable once built; the cache relies on that.
    """
    cache = graph.__dict__.setdefault("_native_cache", {})
    key = tuple(variant)
    handle = cache.get(key)
    if handle is None:
        r = graph.resolve(variant)
        ptr = np.zeros(graph.n + 1, dtype=np.int32)
        ptr[1:] = np.cumsum([len(d) for d in r.deps])
        idx = np.fromiter((d for ds in r.deps for d in ds), dtype=np.int32, count=int(ptr[-1]))
        handle = module().make_graph(
            ptr, idx, r.compute, r.memory, graph.is_input.astype(np.uint8), graph.pinned.astype(np.uint8),
            graph.is_output.astype(np.uint8), graph.input_bytes + graph.fixed_memory)
        handle = (handle, graph)
        if len(cache) > 64:  # a solver sweeping variants should not grow this without bound
            cache.clear()
        cache[key] = handle
    return handle


def simulate(handle, schedule: np.ndarray, want_live: bool = True):
    """Run the C++ simulator; returns (valid, reason, peak, cost, live)."""
    native_graph, graph = handle
    code, step, node, dep, peak, cost, live = module().simulate(native_graph, schedule, want_live)
    if code == 0:
        return True, "", peak, cost, live
    name = graph.names[node] if 0 <= node < graph.n else "?"
    dep_name = graph.names[dep] if 0 <= dep < graph.n else "?"
    return False, _ERRORS[code].format(step=step, node=node, dep=dep, name=name, dep_name=dep_name), 0, 0.0, live
