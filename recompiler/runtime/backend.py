"""The ``recompiler`` dynamo backend: plan each captured graph, then partition it by the plan.

After ``pip install``, ``torch.compile(model, backend="recompiler", options={...})`` finds
this backend through the ``torch_dynamo_backends`` entry point. Options:

``budget``         ``"25%"`` of each graph's store-all peak, or bytes (``"12GiB"``, ``1000``); default ``"50%"``
``solver``         a name from ``recompile solvers``; default: the best available
``device_profile`` the cost model's roofline profile (``cpu``, ``a100``, ``h100``); default ``cpu``
``seed``, ``time_limit``, ``allow_approx``   passed to the solver; ``allow_approx=True`` also offers the
                   approximate WTA-CRS lowering of linear layers (``recompiler.lowerings.sampled_linear``)
``approx_ratios``  the row ratios WTA-CRS is offered at (default ``(0.3, 0.1)``; needs ``allow_approx``)
``optimizer``      an optimizer whose state the budget covers (``"adamw"``; ``recompiler.optim.state``)
``solver_options`` a dict of the solver's own options (``{"stage1_iterations": 200_000}``: a fixed
                   amount of search instead of a time limit, so a plan does not depend on the load)
``rng``            ``"replay"`` (default): random ops draw a seed each and may be recomputed, bit for
                   bit; ``"pin"``: random ops run once, on eager's RNG stream (``recompiler.frontend.rng``)
``plan``           a plan JSON (``recompile plan``) to apply verbatim instead of solving (its own
                   ``rng`` mode and lowerings apply)
``lowerings``      ``True`` (default): the solver may pick the registry's alternative lowerings
                   (``recompiler.lowerings``: chunked attention); ``False``: every node as traced
``compiler``       ``"inductor"`` (default): the planned forward and backward are compiled by
                   inductor; what is planned is the graph its partitioner receives (after its
                   joint-graph passes, with softmax, log-softmax, NLL and dropout kept whole for
                   the lowerings), costed as inductor fuses it (``recompiler.frontend.fusion``),
                   and inductor's fusion is kept to the plan's order. ``"eager"``: the fx graphs
                   run node by node, bit-identical to eager PyTorch (debugging, exactness tests)

**What a percentage means.** ``"50%"`` is half of what the step would use without
recompiler under the same compiler: under inductor, inductor's own default partition
(which already recomputes fused pointwise ops in the backward); under eager, AOTAutograd's
store-all partition. At a budget the default partition meets, the plan *is* that partition.

**Graph breaks.** When dynamo splits the model into several graphs, each is planned on
its own. A percentage budget applies to each graph's own baseline, so the whole step
shrinks by about that fraction. An absolute budget is given to every graph in full:
exact for the usual single graph; with several graphs their saved activations add up,
so prefer a percentage there (a warning says so).

Calls without grad (inference, ``torch.no_grad``) never reach the partitioner and run
the captured graph unchanged.

Example
-------
>>> import torch, recompiler.runtime.backend as rb
>>> m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
>>> out = torch.compile(m, backend=rb.recompiler_backend, options={"budget": "60%"})(torch.randn(4, 8))
>>> out.sum().backward()
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field

import torch
import torch._functorch.config  # noqa: F401 - must be imported before aot_autograd reads it
from torch._dynamo.backends.common import aot_autograd
from torch.fx.graph import _BoxedCodeGen

from ..budget import parse_budget
from ..errors import PlanOnly, RecompilerError, SolverOptionError
from ..frontend.capture import COMPILERS, _is_meta, check_compiler, compile_inductor, inductor_partitioner
from ..frontend.fusion import charge_named, rederived
from ..frontend.rng import DEFAULT_RNG, check_rng_mode
from ..plan import Plan, load_plan
from .partition import PlanMismatch, partition_with_schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendOptions:
    """What ``options={...}`` may hold (see the module docstring)."""

    budget: str | int = "50%"
    """Peak budget per graph: a percentage of its store-all peak, or bytes."""
    solver: str | None = None
    """Solver name; None picks the default solver."""
    device_profile: str = "cpu"
    """Roofline profile for compute costs."""
    seed: int = 0
    """Seed for randomized solvers."""
    time_limit: float | None = None
    """Seconds a solver may spend per graph."""
    allow_approx: bool = False
    """Allow inexact lowerings (variant options with exact=False)."""
    solver_options: dict | None = None
    """The solver's own options (``solve(..., **solver_options)``)."""
    plan: str | None = None
    """Path of a plan JSON to apply instead of solving."""
    rng: str = DEFAULT_RNG
    """``"replay"``: random ops are recomputable from a per-op seed; ``"pin"``: computed once."""
    lowerings: bool = True
    """Offer the solver the alternative lowerings of :mod:`recompiler.lowerings`."""
    variants: tuple | None = None
    """Internal (``check_step``'s reference): per graph, the variant to run with the store-all schedule."""
    compiler: str = "inductor"
    """``"inductor"``: compile the planned graphs with inductor; ``"eager"``: run them node by node."""
    approx_ratios: tuple | None = None
    """The ratios the approximate lowerings (WTA-CRS) are offered at with ``allow_approx``;
    None: :data:`~recompiler.lowerings.sampled_linear.DEFAULT_RATIOS`."""
    optimizer: str | None = None
    """An optimizer whose state the budget covers (``"adamw"``, ``"extreme-tensor:2"``...; see
    :mod:`recompiler.optim.state`): counted as fixed memory of each graph, for its own parameters."""
    via_apply_plan: bool = False
    """Internal: the plan is applied by :func:`~recompiler.runtime.apply.apply_plan` (its errors
    do not advise calling it)."""

    def offered_ratios(self) -> tuple:
        """The approximation ratios the graphs are captured with: none unless ``allow_approx``."""
        if not self.allow_approx:
            return ()
        from ..lowerings.sampled_linear import DEFAULT_RATIOS

        return DEFAULT_RATIOS if self.approx_ratios is None else tuple(self.approx_ratios)

    @classmethod
    def from_dict(cls, options: dict | None) -> "BackendOptions":
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise SolverOptionError(f"the recompiler backend takes no option {', '.join(unknown)}; "
                                    f"its options: {', '.join(cls.__dataclass_fields__)}")
        check_rng_mode(options.get("rng", cls.rng))
        if options.get("optimizer") is not None:
            from ..optim.state import parse_optimizer

            options["optimizer"] = str(parse_optimizer(options["optimizer"]))
        if options.get("approx_ratios") is not None:
            from ..frontend.capture import check_approx_ratios

            options["approx_ratios"] = check_approx_ratios(options["approx_ratios"])
            if not options.get("allow_approx"):
                raise SolverOptionError("the backend option approx_ratios needs allow_approx=True "
                                        "(approximate lowerings are opt-in)")
        # refuse a budget the CLI would refuse (0, True, "5 apples") now, not after tracing
        parse_budget(options.get("budget", cls.budget), baseline_peak=2**62)
        if not isinstance(options.get("solver_options") or {}, dict):
            raise SolverOptionError(f"the backend option solver_options is a dict, not {options['solver_options']!r}")
        clash = sorted(set(options.get("solver_options") or {}) & {"seed", "time_limit", "allow_approx", "budget"})
        if clash:
            raise SolverOptionError(f"give {', '.join(clash)} as backend options, not in solver_options")
        if not isinstance(options.get("lowerings", True), bool):
            raise SolverOptionError(f"the backend option lowerings is True or False, not {options['lowerings']!r}")
        if options.get("compiler", cls.compiler) not in COMPILERS:
            raise SolverOptionError(f"the backend option compiler is inductor or eager, not {options['compiler']!r}")
        return cls(**options)


@dataclass
class CompiledGraphRecord:
    """What the backend decided for one graph: the plan and the partition's saved values."""

    plan: Plan
    saved: list[str]
    recomputed: int
    random_ops: int = 0
    """Replayed random ops in the graph (0 under ``rng="pin"``)."""
    random_recomputed: int = 0
    """How many of them the plan recomputes."""
    lowerings: list = field(default_factory=list)
    """The non-default lowerings the plan chose (the plan JSON's ``lowerings`` entries)."""


@dataclass
class Session:
    """The plans of every graph compiled by one backend instance (``recompiler.compile`` exposes it)."""

    options: BackendOptions
    graphs: list[CompiledGraphRecord] = field(default_factory=list)
    compiler: str = "eager"
    """What the planned graphs are compiled with (a saved plan's own compiler, else the option)."""
    inputs: list = field(default_factory=list)
    """The real inputs dynamo passed for the graph being compiled (its parameters among them)."""


# The records of the most recent backend instance, for `recompile check` and tests.
LAST_SESSION: Session | None = None


@contextlib.contextmanager
def unwrap_backend_errors():
    """Re-raise a RecompilerError that dynamo wrapped in BackendCompilerFailed as itself."""
    try:
        yield
    except RecompilerError:
        raise
    except Exception as e:  # noqa: BLE001 - looking inside dynamo's wrapper
        inner, seen = e, set()
        while inner is not None and id(inner) not in seen and not isinstance(inner, RecompilerError):
            seen.add(id(inner))
            inner = getattr(inner, "inner_exception", None) or inner.__cause__
        if isinstance(inner, RecompilerError):
            raise inner from None
        raise


def boxed_nop(gm: torch.fx.GraphModule, example_inputs):
    """Run the fx graph as is, with boxed calling so saved activations die at their last use."""
    gm.graph.set_codegen(_BoxedCodeGen())
    gm.recompile()
    forward = gm.forward

    def run(args):
        return forward(args)

    run._boxed_call = True
    return run


def _load_plan(session: Session) -> Plan | None:
    return load_plan(session.options.plan) if session.options.plan else None


def _other_shapes(planned, now) -> str:
    """``"L_x_ was (4, 16), is (2, 16)"`` for the inputs whose shapes differ ('' when none do or unknown)."""
    if not isinstance(planned, list) or len(planned) != len(now):
        return ""
    differ = [f"{p.get('name')} was {tuple(p.get('shape') or ())}, is {tuple(n['shape'] or ())}"
              for p, n in zip(planned, now) if isinstance(p, dict) and p.get("shape") != n["shape"]]
    return "; ".join(differ[:3]) + (f"; and {len(differ) - 3} more" if len(differ) > 3 else "")


def _check_fits(plan: Plan, path: str, captured, applied_by_apply_plan: bool = False) -> Plan:
    groups = [g.name for g in captured.graph.variant_groups]
    if list(plan.stats.get("variant_groups", [])) != groups or len(plan.variant) != len(groups):
        raise PlanMismatch(f"plan {path} chose lowerings for {len(plan.variant)} variant groups; this graph has "
                           f"{len(groups)}: re-run `recompile plan` on this model")
    names = plan.stats.get("node_names")
    if names is not None and names != list(captured.graph.names):
        other = _other_shapes(plan.stats.get("inputs"), captured.input_shapes())
        if other:
            raise PlanMismatch(f"plan {path} was made for inputs of other shapes ({other}): re-run "
                               "`recompile plan` on inputs of the shapes you train with")
        hint = "" if applied_by_apply_plan else (
            ", or apply it with recompiler.apply_plan(model, plan), which compiles the model together "
            "with its loss as `recompile plan` traced it")
        raise PlanMismatch(f"plan {path} was made for another graph ({len(names)} nodes; this one has "
                           f"{captured.graph.n}): re-run `recompile plan` on this model{hint}")
    if len(plan.schedule) == 0 or max(plan.schedule) >= captured.graph.n:
        raise PlanMismatch(f"plan {path} does not fit this graph")
    return plan


def _solve_for(session: Session, captured) -> Plan:
    opts = session.options
    if opts.variants is not None:
        from ..plan import make_plan

        variant = list(opts.variants[len(session.graphs)])
        from ..simulate import simulate

        schedule = captured.graph.reference
        if schedule is None or not simulate(captured.graph, schedule, variant).valid:
            schedule = captured.graph.baseline_schedule()
        return make_plan(captured.graph, schedule, solver="store-all", budget_bytes=captured.graph.floor(),
                         variant=variant)
    if not _is_percentage(opts.budget) and session.graphs:
        warnings.warn("recompiler: the model compiled to several graphs; an absolute budget is given to each "
                      "graph in full, so their peaks may add up — prefer a percentage budget", stacklevel=2)
    from ..frontend.solve import solve_captured

    return solve_captured(captured, opts.budget, opts.solver, seed=opts.seed, time_limit=opts.time_limit,
                          allow_approx=opts.allow_approx, **(opts.solver_options or {}))


def _is_percentage(budget) -> bool:
    return isinstance(budget, str) and budget.strip().endswith("%")


def _warn_about(plan: Plan, captured) -> None:
    """A missed budget or an extreme overhead is never silent, on this path as on the CLI's."""
    from ..advice import missed_budget_message, overhead_message

    where = f"recompiler: {captured.graph.name}"
    if not plan.feasible:
        warnings.warn(f"{where}: {missed_budget_message(plan, captured.graph.floor())}", stacklevel=2)
    extreme = overhead_message(plan, captured.graph)
    if extreme:
        warnings.warn(f"{where}: {extreme}", stacklevel=2)


def _partition_fn(session: Session):
    from ..frontend.capture import lower

    from .. import lowerings as registry

    def partition(joint, joint_inputs, *, num_fwd_outputs, **_):
        saved_plan = _load_plan(session)
        # A saved plan was made on the graph its own rng mode produced (plans older than the
        # option were all made with random ops pinned), with lowerings when it lists groups.
        rng = saved_plan.stats.get("rng", "pin") if saved_plan is not None else session.options.rng
        lowerings = (bool(saved_plan.stats.get("variant_groups")) if saved_plan is not None
                     else session.options.lowerings)
        approx = (saved_plan.stats.get("approx_ratios") or () if saved_plan is not None
                  else session.options.offered_ratios())
        captured = lower(joint, num_fwd_outputs, profile=session.options.device_profile,
                         name=f"graph{len(session.graphs)}", rng=rng, lowerings=lowerings,
                         compiler=session.compiler, approx_ratios=approx)
        captured.flat_inputs = list(session.inputs)
        optimizer_bytes = 0
        if session.options.optimizer is not None and saved_plan is None:
            from ..optim.state import add_optimizer_state

            optimizer_bytes = add_optimizer_state(captured, session.options.optimizer)
        if saved_plan is not None:
            plan = _check_fits(saved_plan, session.options.plan, captured, session.options.via_apply_plan)
            if captured.compiler == "inductor":
                charge_named(captured, plan.stats.get("charged", []))
        else:
            plan = _solve_for(session, captured)
            if session.options.variants is None:   # check_step's store-all reference has no budget
                _warn_about(plan, captured)
        plan.stats.setdefault("input_bytes", captured.graph.input_bytes)  # alive before the step
        plan.stats.setdefault("rng", rng)
        plan.stats.setdefault("variant_groups", [g.name for g in captured.graph.variant_groups])
        plan.stats.setdefault("compiler", session.compiler)
        if optimizer_bytes:
            from ..optim.state import memory_breakdown

            plan.stats["optimizer"] = session.options.optimizer
            plan.stats["memory_breakdown"] = memory_breakdown(captured, plan, optimizer_bytes)
        chosen = registry.chosen(captured.graph, captured.lowerings, plan.variant)
        plan.lowerings = chosen
        part = partition_with_schedule(joint, num_fwd_outputs=num_fwd_outputs, schedule=plan.schedule,
                                       rewrites=registry.rewrites(captured.lowerings, plan.variant),
                                       fused=rederived(captured))
        session.graphs.append(CompiledGraphRecord(plan, part.saved, part.recomputed, len(captured.random_ops),
                                                  captured.random_recomputed(plan.schedule), chosen))
        log.info("recompiler: %s planned to %.1f%% of its %d-byte peak (+%.1f%% compute), %d recomputations",
                 captured.graph.name, 100 * plan.peak_fraction, plan.baseline_peak_bytes, 100 * plan.overhead,
                 part.recomputed)
        return part.fw_module, part.bw_module

    return partition


def make_backend(options: dict | BackendOptions | None = None):
    """A fresh backend callable (with its own :class:`Session`) for ``torch.compile(backend=...)``."""
    global LAST_SESSION
    opts = options if isinstance(options, BackendOptions) else BackendOptions.from_dict(options)
    session = Session(opts, compiler=opts.compiler)
    if opts.plan:
        # a saved plan was made on the graph its own compiler partitions (older plans: eager)
        session.compiler = check_compiler(load_plan(opts.plan).stats.get("compiler", "eager"))
    LAST_SESSION = session
    partition = _partition_fn(session)
    if session.compiler == "inductor":
        def backend(gm, example_inputs, **_):
            _refuse_meta(example_inputs)
            session.inputs = list(example_inputs)
            with inductor_partitioner(partition):
                return compile_inductor(gm, example_inputs)
    else:
        inner = aot_autograd(fw_compiler=boxed_nop, bw_compiler=boxed_nop, partition_fn=partition,
                             keep_inference_input_mutations=True)

        def backend(gm, example_inputs, **_):
            _refuse_meta(example_inputs)
            session.inputs = list(example_inputs)
            return inner(gm, example_inputs)

    backend.session = session
    return backend


def _refuse_meta(example_inputs) -> None:
    """A meta model has nothing to run a plan on: say so instead of compiling kernels for it."""
    if any(_is_meta(t) for t in example_inputs):
        raise PlanOnly("compiled and run")


def recompiler_backend(gm: torch.fx.GraphModule, example_inputs, options: dict | None = None):
    """The entry point dynamo calls for ``backend="recompiler"`` (options arrive as a keyword)."""
    return make_backend(options)(gm, example_inputs)
