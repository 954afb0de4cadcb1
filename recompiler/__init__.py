"""recompiler: an activation-recomputation planner for PyTorch training.

Torch-free at import: the graph, simulate and solvers need only numpy and networkx;
``recompiler.frontend`` and ``recompiler.runtime`` import torch when used. The names
below load on first use, so ``import recompiler.cli`` (the ``recompile`` script) stays instant.

>>> from recompiler import solve
>>> from recompiler.builders import training_chain
>>> solve(training_chain(8), "70%", solver="greedy-evict").feasible
True
"""

import importlib

_EXPORTS = {
    "CostGraph": "graph", "VariantGroup": "graph", "VariantOption": "graph",
    "Plan": "plan", "load_plan": "plan", "SimResult": "simulate", "simulate": "simulate",
    "solve": "solvers", "RecompilerError": "errors",
    "compile": "runtime.apply", "apply_plan": "runtime.apply",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'recompiler' has no attribute {name!r}")
