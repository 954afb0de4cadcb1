"""Public entry points that apply plans: ``compile`` (plan while compiling) and ``apply_plan``.

>>> import torch, recompiler
>>> m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
>>> step = recompiler.compile(m, budget="60%")
>>> step(torch.randn(4, 8)).sum().backward()
"""

from __future__ import annotations

import torch

from ..errors import PlanOnly
from ..frontend.capture import _split_inputs, _WithLoss, default_loss, without_memory
from ..frontend.rng import DEFAULT_RNG
from .backend import make_backend, unwrap_backend_errors


def compile(model: torch.nn.Module, budget: str | int = "50%", *, solver: str | None = None,
            device_profile: str = "cpu", seed: int = 0, time_limit: float | None = None,
            allow_approx: bool = False, rng: str = DEFAULT_RNG, compiler: str = "inductor",
            optimizer: str | None = None, **torch_compile_kwargs):
    """``torch.compile`` with the recompiler backend; the plans land in ``result.recompiler_session``.

    ``rng="replay"`` lets plans recompute random ops (each draws a seed and replays it bit for bit);
    ``rng="pin"`` computes them once on eager's RNG stream (see :mod:`recompiler.frontend.rng`).
    ``compiler="inductor"`` compiles the planned graphs with inductor; ``"eager"`` runs them node by node.
    ``optimizer="adamw"`` counts that optimizer's state inside the budget (:mod:`recompiler.optim.state`).
    """
    if without_memory(model, (), {}):
        raise PlanOnly("compiled and run")
    backend = make_backend({"budget": budget, "solver": solver, "device_profile": device_profile, "seed": seed,
                            "time_limit": time_limit, "allow_approx": allow_approx, "rng": rng,
                            "compiler": compiler, "optimizer": optimizer})
    compiled = torch.compile(model, backend=backend, **torch_compile_kwargs)
    compiled.recompiler_session = backend.session
    return compiled


class TrainingStep(torch.nn.Module):
    """``model`` and its loss as one module, called like the model, returning the loss.

    This is exactly the module ``recompile plan`` traces, so a plan made by it applies verbatim.
    """

    def __init__(self, model: torch.nn.Module, loss_fn=None):
        super().__init__()
        self.inner = _WithLoss(model, loss_fn or default_loss)

    def forward(self, *args, **kwargs):
        return self.inner(args, kwargs)

    def run(self, example_inputs):
        """Call with example inputs in any form ``recompile plan`` accepts (tensor, tuple or dict)."""
        args, kwargs = _split_inputs(example_inputs)
        return self.inner(args, kwargs)


def apply_plan(model: torch.nn.Module, plan_path: str, *, loss_fn=None):
    """Compile ``model`` + loss so that the backward follows a plan written by ``recompile plan``.

    Returns a compiled :class:`TrainingStep`: ``loss = step(*inputs); loss.backward()``. The
    plan is checked against the traced graph (node for node); a plan made for another model,
    batch shape or loss raises :class:`~recompiler.runtime.partition.PlanMismatch`.
    """
    backend = make_backend({"plan": str(plan_path), "via_apply_plan": True})
    step = TrainingStep(model, loss_fn)
    # The plan was traced through _WithLoss.forward(args, kwargs): compile that same module.
    compiled_inner = torch.compile(step.inner, backend=backend, fullgraph=True, dynamic=False)

    def run(*args, **kwargs):
        with unwrap_backend_errors():
            return compiled_inner(args, kwargs)

    run.recompiler_session = backend.session
    run.step = step
    return run
