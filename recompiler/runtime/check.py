"""One training step eager and one under a plan: memory, time and gradients side by side.

What ``recompile check`` prints and the runtime tests assert.

>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
>>> r = check_step(m, (torch.randn(32, 64),), budget="80%", repeats=1)
>>> r.max_grad_error < 1e-5
True
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

import torch

from ..errors import PlanOnly
from ..frontend.capture import _split_inputs, _WithLoss, default_loss, without_memory
from ..frontend.rng import DEFAULT_RNG
from .backend import make_backend, unwrap_backend_errors
from .memory import measure_peak


@dataclass(frozen=True)
class CheckReport:
    eager_peak_bytes: int          # measured: bytes allocated by the eager step, peak
    plan_peak_bytes: int           # measured: the same under the plan
    predicted_peak_bytes: int      # simulate's peak minus the bytes alive before the step (inputs, params)
    plan_simulated_peak_bytes: int
    baseline_simulated_peak_bytes: int
    eager_seconds: float           # median step time
    plan_seconds: float
    max_grad_error: float          # max over parameters of max|g - g_ref| / max|g_ref|
    buffers_equal: bool            # running statistics (BatchNorm) identical after the step
    loss_equal: bool
    graphs: int
    recomputations: int
    feasible: bool
    device: str
    reference: str = "eager"       # what the gradients are compared with (see check_step)
    random_ops: int = 0            # replayed random ops in the graphs
    random_recomputed: int = 0     # ... of which the plans recompute
    lowerings: tuple = ()          # the non-default lowerings the plans chose (plan JSON entries)
    compiler: str = "eager"        # what compiled the planned graphs (inductor or eager)
    baseline_predicted_bytes: int = 0  # the planner's baseline (the step without recompiler), minus inputs
    recompiles: int = 0            # graphs dynamo compiled again for the same code (replaced, not added)
    optimizer: str | None = None   # the optimizer stepped in each measured step (its state in the budget)

    @property
    def of_baseline(self) -> float:
        """Measured planned peak as a share of the planner's baseline (same compiler, no recompiler)."""
        return self.plan_peak_bytes / self.baseline_predicted_bytes if self.baseline_predicted_bytes else 0.0

    @property
    def of_eager(self) -> float:
        """Measured planned peak as a share of the measured peak of an uncompiled eager step."""
        return self.plan_peak_bytes / self.eager_peak_bytes if self.eager_peak_bytes else 0.0

    @property
    def predicted_error(self) -> float:
        """(measured − predicted) / predicted, for the planned step."""
        return self.plan_peak_bytes / self.predicted_peak_bytes - 1 if self.predicted_peak_bytes else 0.0


def _snapshot(model: torch.nn.Module):
    return copy.deepcopy(model.state_dict())


def _one_step(fn, model, state, seed, device, method="dispatch", optimizer=None):
    opt = _ready_optimizer(optimizer, model, state)
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = {}

    def step():
        loss = fn()
        loss.backward()
        if opt is not None:   # a whole training step: the update runs beside the gradients
            opt.step()
        out["loss"] = loss.detach()

    start = time.perf_counter()
    report = measure_peak(step, device=device, method=method)
    seconds = time.perf_counter() - start
    grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
    buffers = [b.detach().clone() for b in model.buffers()]
    return report.peak_bytes, seconds, grads, buffers, out["loss"]


def _ready_optimizer(spec, model, state):
    """``spec``'s optimizer over ``model``'s parameters with its state already allocated, as in
    the steady state of training (state is created at the first step: one step of zero gradients
    makes it, and the parameters are restored after)."""
    if spec is None:
        return None
    from ..optim.state import make_optimizer

    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(spec, params)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    return opt


def _time_only(fn, model, state, seed, repeats):
    times = []
    for _ in range(repeats):
        model.load_state_dict(state)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        start = time.perf_counter()
        fn().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def max_relative_error(got, expected) -> float:
    worst = 0.0
    for g, e in zip(got, expected):
        if e is None and g is None:
            continue
        if e is None or g is None:
            return float("inf")
        scale = e.abs().max().item() or 1.0
        worst = max(worst, (g - e).abs().max().item() / scale)
    return worst


def check_step(model: torch.nn.Module, example_inputs, *, loss_fn=None, budget: str | int = "50%",
               solver: str | None = None, device_profile: str = "cpu", seed: int = 0,
               time_limit: float | None = None, plan: str | None = None, repeats: int = 3,
               device: str = "cpu", rng: str = DEFAULT_RNG, lowerings: bool = True,
               compiler: str = "inductor", optimizer: str | None = None) -> CheckReport:
    """Run the step eagerly and under a plan (solved here, or ``plan`` from a file) and compare.

    The model's state (parameters, BatchNorm statistics) is restored before every step, and
    the RNG is re-seeded. Memory and time are compared with the eager step. Gradients are
    compared with the eager step too, except when the plan replays random ops
    (``rng="replay"`` on a model with dropout): their masks come from per-op seeds, not
    eager's stream, so the reference is then the same replayed graph run with no
    recomputation (the ``store-all`` schedule) — a plan must not change a single number of it.

    ``optimizer="adamw"`` (:mod:`recompiler.optim.state`) plans with that optimizer's state in the
    budget and measures whole training steps: forward, backward and ``optimizer.step()``, with the
    state allocated before the step (as in training), so the prediction leaves it out with the inputs.

    ``compiler="inductor"`` (the default, as in the backend) compiles the planned graphs with
    inductor; memory is then measured with the profiler (:class:`~.memory.ProfilerTracker`) for
    every step, the eager one included, and the reference is inductor's own default partition of
    the same graph. ``"eager"`` runs them node by node (bit-identical to eager PyTorch without
    random ops).
    """
    import torch._dynamo

    torch._dynamo.reset()  # a fresh backend each call: don't let dynamo's per-code cache fill up
    args, kwargs = _split_inputs(example_inputs)
    if without_memory(model, args, kwargs):
        raise PlanOnly("checked")
    wrapper = _WithLoss(model, loss_fn or default_loss)
    state = _snapshot(model)
    eager = lambda: wrapper(args, kwargs)  # noqa: E731
    options = {"plan": plan} if plan else {"budget": budget, "solver": solver, "device_profile": device_profile,
                                          "seed": seed, "time_limit": time_limit, "rng": rng,
                                          "lowerings": lowerings, "compiler": compiler, "optimizer": optimizer}
    backend = _tag_compile_ids(make_backend(options))
    compiled = torch.compile(wrapper, backend=backend, dynamic=False)

    def planned():
        with unwrap_backend_errors():
            return compiled(args, kwargs)

    # Compile first (its fake-tensor tracing would otherwise be measured), then measure each once.
    model.load_state_dict(state)
    torch.manual_seed(seed)
    planned().backward()
    records = backend.session.graphs
    reference, reference_name = eager, "eager"
    if any(r.random_ops for r in records):
        from . import backend as backend_module

        # the same lowerings as the plan: a chunked attention draws its own dropout masks
        variants = tuple(tuple(r.plan.variant) for r in records)
        store_all = torch.compile(wrapper, backend=make_backend({"solver": "store-all", "budget": "100%",
                                                                 "rng": "replay", "variants": variants,
                                                                 "compiler": backend.session.compiler}),
                                  dynamic=False)
        backend_module.LAST_SESSION = backend.session  # the session reported is the plan's

        def reference():
            with unwrap_backend_errors():
                return store_all(args, kwargs)
        reference_name = ("inductor's default partition, same seeds" if backend.session.compiler == "inductor"
                          else "store-all, replayed RNG")
    method = "profiler" if backend.session.compiler == "inductor" else "dispatch"
    e_peak, _, e_grads, e_bufs, e_loss = _one_step(eager, model, state, seed, device, method, optimizer)
    if reference is not eager:
        _, _, e_grads, e_bufs, e_loss = _one_step(reference, model, state, seed, device, method, optimizer)
    p_peak, _, p_grads, p_bufs, p_loss = _one_step(planned, model, state, seed, device, method, optimizer)
    e_time = _time_only(eager, model, state, seed, repeats)
    p_time = _time_only(planned, model, state, seed, repeats)
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)

    # after every step ran: a recompile (e.g. HF setting config.problem_type in its first call)
    # may have happened in any of them, and it replaces its frame's graph rather than adding one
    records, recompiles = _current_graphs(backend)
    sim_peak = sum(r.plan.peak_bytes for r in records)
    base_peak = sum(r.plan.baseline_peak_bytes for r in records)
    # alive before the measured step: the inputs (parameters among them) and the optimizer's state
    alive_before = sum(r.plan.stats.get("input_bytes", 0)
                       + (r.plan.stats.get("memory_breakdown") or {}).get("optimizer_state", 0) for r in records)
    return CheckReport(
        eager_peak_bytes=e_peak, plan_peak_bytes=p_peak, predicted_peak_bytes=sim_peak - alive_before,
        plan_simulated_peak_bytes=sim_peak, baseline_simulated_peak_bytes=base_peak,
        eager_seconds=e_time, plan_seconds=p_time, max_grad_error=max_relative_error(p_grads, e_grads),
        buffers_equal=all(torch.equal(a, b) for a, b in zip(p_bufs, e_bufs)),
        loss_equal=bool(torch.allclose(p_loss, e_loss, rtol=1e-6, atol=0)), graphs=len(records),
        recomputations=sum(r.recomputed for r in records), feasible=all(r.plan.feasible for r in records),
        device=device, reference=reference_name, random_ops=sum(r.random_ops for r in records),
        random_recomputed=sum(r.random_recomputed for r in records),
        lowerings=tuple(entry for r in records for entry in r.lowerings), compiler=backend.session.compiler,
        baseline_predicted_bytes=base_peak - alive_before, recompiles=recompiles,
        optimizer=backend.session.options.optimizer)


def _tag_compile_ids(backend):
    """Wrap a backend so each graph record it adds knows its dynamo frame and recompile number."""
    from torch._guards import CompileContext

    ids = {}

    def tagged(gm, example_inputs, **kwargs):
        before = len(backend.session.graphs)
        out = backend(gm, example_inputs, **kwargs)
        cid = CompileContext.current_compile_id()
        if cid is not None:
            for r in backend.session.graphs[before:]:
                ids[id(r)] = (cid.frame_id, cid.frame_compile_id)
        return out

    tagged.session, tagged.compile_ids = backend.session, ids
    return tagged


def _current_graphs(backend):
    """The graphs one step runs now, and how many earlier graphs of the same code they replaced.

    Graph breaks give graphs of different frames, which all run in a step (their peaks add
    up); a recompile of the same frame (a guard failed) gives a graph that replaces the
    frame's earlier one: only the newest per frame is counted.
    """
    latest: dict = {}
    for r in backend.session.graphs:
        frame, number = backend.compile_ids.get(id(r), (("untagged", id(r)), 0))  # untagged: its own frame
        if frame not in latest or number >= latest[frame][0]:
            latest[frame] = (number, id(r))
    kept = {rid for _, rid in latest.values()}
    current = [r for r in backend.session.graphs if id(r) in kept]
    return current, len(backend.session.graphs) - len(current)
