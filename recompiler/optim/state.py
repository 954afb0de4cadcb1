"""Optimizer state in the budget: the exact bytes each optimizer keeps, from its own state layout.

A training step's peak is parameters + gradients + optimizer state + activations. The state is
alive through the whole step (it is read and written by ``optimizer.step()`` after the backward,
and kept to the next step), so it is *fixed memory* of the step's graph: a plan made with
``--optimizer adam`` has every byte of Adam's moments inside its budget.

Layouts (PyTorch 2.13's own, per parameter tensor p; ``step`` a 0-dim float32 counter):

``sgd``            nothing (momentum 0)
``sgd-momentum``   ``momentum_buffer``: like p
``adam``/``adamw`` ``exp_avg`` and ``exp_avg_sq``: like p each; ``step``
``adagrad``        ``sum``: like p; ``step``
``adafactor``      ``torch.optim.Adafactor``: for p of 2+ dims ``row_var`` (p's shape, last dim 1) and
                   ``col_var`` (second-to-last dim 1); a 1-D p keeps ``variance`` like p; ``step``
``extreme-tensor[:p]``  :class:`recompiler.optim.ExtremeTensorAdagrad`: Σdᵢ accumulators per parameter

>>> spec = parse_optimizer("adamw")
>>> state_bytes(spec, [((1024, 1024), 4)])   # two fp32 moments + the step counter
8388612
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import SolverOptionError

#: The names ``--optimizer`` takes (``extreme-tensor`` optionally with ``:order``).
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw", "adagrad", "adafactor", "extreme-tensor")
#: Bytes of one ``step`` counter (a 0-dim float32 tensor, as torch.optim keeps it).
STEP_BYTES = 4


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer named on the command line: ``name`` from :data:`OPTIMIZERS`, ``order`` for extreme tensoring."""

    name: str
    order: int | None = None

    def __str__(self) -> str:
        return self.name if self.order is None else f"{self.name}:{self.order}"


def parse_optimizer(text: str | OptimizerSpec) -> OptimizerSpec:
    """``"adam"`` or ``"extreme-tensor:3"`` as an :class:`OptimizerSpec`; a one-line error otherwise."""
    if isinstance(text, OptimizerSpec):
        return text
    name, _, order = str(text).strip().lower().partition(":")
    if name not in OPTIMIZERS:
        raise SolverOptionError(f"unknown optimizer {text!r}: use one of {', '.join(OPTIMIZERS)} "
                                "(extreme-tensor:P for a tensor order P)")
    if not order:
        return OptimizerSpec(name)
    if name != "extreme-tensor":
        raise SolverOptionError(f"optimizer {name} takes no ':{order}' (only extreme-tensor:P has an order)")
    if not order.isdigit() or int(order) < 1:
        raise SolverOptionError(f"extreme-tensor's order is a whole number >= 1, not {order!r}")
    return OptimizerSpec(name, int(order))


def state_bytes(spec: OptimizerSpec | str, params: Iterable[tuple[tuple[int, ...], int]]) -> int:
    """Bytes of optimizer state for parameters given as ``(shape, itemsize)`` pairs (module docstring)."""
    spec = parse_optimizer(spec)
    total = 0
    for shape, itemsize in params:
        numel = math.prod(shape)
        if spec.name == "sgd":
            continue
        if spec.name == "sgd-momentum":
            total += numel * itemsize
        elif spec.name in ("adam", "adamw"):
            total += 2 * numel * itemsize + STEP_BYTES
        elif spec.name == "adagrad":
            total += numel * itemsize + STEP_BYTES
        elif spec.name == "adafactor":
            if len(shape) > 1:
                rows = math.prod(shape[:-1])
                cols = math.prod(shape[:-2]) * shape[-1]
                total += (rows + cols) * itemsize + STEP_BYTES
            else:
                total += numel * itemsize + STEP_BYTES
        else:
            total += _extreme_tensor_bytes(shape, itemsize, spec.order)
    return total


def _extreme_tensor_bytes(shape, itemsize: int, order: int | None) -> int:
    from .extreme_tensoring import ExtremeTensorAdagrad

    return ExtremeTensorAdagrad.state_bytes_for([tuple(shape)], order=order, itemsize=itemsize)


def trainable_parameters(captured) -> list[tuple[tuple[int, ...], int]]:
    """``(shape, itemsize)`` of every parameter of a captured step that gets a gradient (what an
    optimizer keeps state for)."""
    import torch

    return [(tuple(int(d) for d in t.shape), t.element_size()) for t in captured.flat_inputs
            if isinstance(t, torch.nn.Parameter) and t.requires_grad]


def add_optimizer_state(captured, spec: OptimizerSpec | str) -> int:
    """Count ``spec``'s state as fixed memory of ``captured.graph`` (in place); returns its bytes.

    Call it before the budget is parsed: a percentage is then of the whole step, state included.
    """
    import dataclasses

    extra = state_bytes(spec, trainable_parameters(captured))
    captured.graph = dataclasses.replace(captured.graph, fixed_memory=captured.graph.fixed_memory + extra)
    return extra


def memory_breakdown(captured, plan, optimizer_bytes: int = 0) -> dict[str, int]:
    """Bytes at the plan's peak step by kind: ``parameters``, ``gradients`` (outputs computed by
    then: they live to the step's end), ``optimizer_state``, ``inputs`` (the step's data and
    buffers) and ``activations`` (everything else); they add up to ``plan.peak_bytes``.
    """
    import numpy as np
    import torch

    from ..simulate import simulate

    g = captured.graph
    res = simulate(g, plan.schedule, plan.variant)
    peak_step = int(np.argmax(res.live_bytes)) if len(res.live_bytes) else 0
    params = sum(t.numel() * t.element_size() for t in captured.flat_inputs if isinstance(t, torch.nn.Parameter))
    first: dict[int, int] = {}
    for t, v in enumerate(plan.schedule):
        first.setdefault(int(v), t)
    memory = g.resolve(plan.variant).memory
    grads = sum(int(memory[v]) for v, t in first.items() if g.is_output[v] and not g.is_input[v] and t <= peak_step)
    inputs = int(g.input_bytes) - params
    fixed_other = int(g.fixed_memory) - optimizer_bytes
    activations = int(res.peak_bytes) - params - grads - optimizer_bytes - inputs - fixed_other
    return {"parameters": int(params), "gradients": int(grads), "optimizer_state": int(optimizer_bytes),
            "inputs": int(inputs + fixed_other), "activations": int(activations)}


def make_optimizer(spec: OptimizerSpec | str, params):
    """An optimizer instance of ``spec`` over ``params`` (default hyper-parameters; what
    ``recompile check --optimizer`` steps with: the state layout, not the learning rate, is what it measures)."""
    import torch

    spec = parse_optimizer(spec)
    if spec.name == "extreme-tensor":
        from .extreme_tensoring import ExtremeTensorAdagrad

        return ExtremeTensorAdagrad(params, order=spec.order)
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=1e-3),
            "sgd-momentum": lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9),
            "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
            "adafactor": torch.optim.Adafactor}[spec.name]
    return make(params)
