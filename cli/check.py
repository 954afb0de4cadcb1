"""``recompile check MODEL.py --budget 25%``: one training step eager, one under the plan, compared."""

from __future__ import annotations

from contextlib import contextmanager

import click

from .common import (EXIT_INFEASIBLE, SECONDS, console, quiet_torch_logs, say, status, user_errors,
                     verbose_option)

EXIT_MISMATCH = 1  # gradients differ beyond the tolerance


@click.command("check")
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.option("--budget", "-b", default=None, help="Peak budget to plan for (N% or bytes); or use --plan.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False), default=None,
              help="Apply this plan JSON (from `recompile plan`) instead of solving.")
@click.option("--solver", "-s", default=None, help="Solver name (default: the best available).")
@click.option("--device-profile", "-d", type=click.Choice(["cpu", "a100", "h100"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--time-limit", type=SECONDS, default=None, help="Seconds the solver may run (positive, finite).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed steps per mode (median reported).")
@click.option("--tolerance", type=float, default=1e-5, show_default=True,
              help="Largest relative gradient error accepted; above it the command exits 1.")
@click.option("--rng", default="replay", show_default=True,
              help="replay: random ops may be recomputed from per-op seeds (gradients compared with the "
                   "replayed step without recomputation); pin: computed once (compared with eager). "
                   "A --plan uses its own mode.")
@click.option("--no-lowerings", is_flag=True, help="Plan recomputation only (no chunked attention). A --plan uses its own.")
@click.option("--compiler", default="inductor", show_default=True,
              help="Compile the planned graphs with inductor or run them eagerly (eager: bit-identical to "
                   "eager PyTorch). A --plan uses its own.")
@click.option("--optimizer", default=None,
              help="Plan with this optimizer's state in the budget and measure whole steps, optimizer.step() "
                   "included: sgd, sgd-momentum, adam, adamw, adagrad, adafactor, extreme-tensor[:P].")
@verbose_option
def check_command(model_file, budget, plan_file, solver, device_profile, seed, time_limit, repeats, tolerance, rng,
                  no_lowerings, compiler, optimizer):
    """Run MODEL_FILE's training step eagerly and under a plan; compare memory, time and gradients."""
    with user_errors():
        from recompiler.budget import parse_budget
        from recompiler.errors import BudgetError
        from recompiler.solvers import get_solver

        if (budget is None) == (plan_file is None):
            raise BudgetError("give exactly one of --budget and --plan")
        if budget is not None:
            parse_budget(budget, baseline_peak=1)
        get_solver(solver) if solver else None
        from recompiler.frontend.rng import check_rng_mode

        check_rng_mode(rng)
        from recompiler.frontend.capture import check_compiler

        check_compiler(compiler)
        if optimizer is not None:
            from recompiler.optim.state import parse_optimizer

            optimizer = str(parse_optimizer(optimizer))   # an unknown name fails before the step runs

        import torch

        from recompiler.frontend.modelfile import load_model_file
        from recompiler.runtime.check import check_step

        with status(f"loading {model_file}"), quiet_torch_logs():
            spec = load_model_file(model_file)
        device = "cuda" if torch.cuda.is_available() and next(spec.model.parameters()).is_cuda else "cpu"
        with status("running the step eagerly and under the plan"), quiet_torch_logs(), _model_errors():
            r = check_step(spec.model, spec.example_inputs, loss_fn=spec.loss_fn, budget=budget or "100%",
                           solver=solver, device_profile=device_profile, seed=seed, time_limit=time_limit,
                           plan=plan_file, repeats=repeats, device=device, rng=rng, lowerings=not no_lowerings,
                           compiler=compiler, optimizer=optimizer)
    console().print(report_table(r, spec.name))
    if r.max_grad_error > tolerance:
        say(f"[bold red]gradients differ:[/] max relative error {r.max_grad_error:.2e} > {tolerance:g}")
        raise SystemExit(EXIT_MISMATCH)
    if not r.feasible:
        # as `recompile plan` does: a plan that misses its budget is not a success
        say(f"[bold red]infeasible:[/] the plan's simulated peak is "
            f"{100 * r.plan_simulated_peak_bytes / r.baseline_simulated_peak_bytes:.1f}% of baseline, over the "
            "budget (gradients match)")
        raise SystemExit(EXIT_INFEASIBLE)


@contextmanager
def _model_errors():
    """The model's own step failing under dynamo (a shape mismatch...) is the user's input: one line.

    Only dynamo's reports on the traced code count; an internal dynamo error or a backend
    failure that is not a RecompilerError is a bug (of recompiler or torch) and keeps its traceback.
    """
    import torch._dynamo.exc as dynamo_exc

    from recompiler.errors import CaptureError

    try:
        yield
    except (dynamo_exc.TorchRuntimeError, dynamo_exc.Unsupported, dynamo_exc.UserError) as e:
        raise CaptureError(f"the model's training step failed under torch.compile: "
                           f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e


def report_table(r, name: str):
    from rich.table import Table

    from recompiler.budget import format_bytes

    t = Table(title=f"{name}: eager vs plan ({r.device}, planned graphs compiled by {r.compiler})",
              header_style="bold")
    t.add_column("")
    t.add_column("eager", justify="right")
    t.add_column("plan", justify="right")
    t.add_column("plan / eager", justify="right")
    t.add_row("measured peak", format_bytes(r.eager_peak_bytes), format_bytes(r.plan_peak_bytes),
              f"{r.plan_peak_bytes / max(r.eager_peak_bytes, 1):.2f}")
    t.add_row("step time", f"{1e3 * r.eager_seconds:.1f} ms", f"{1e3 * r.plan_seconds:.1f} ms",
              f"{r.plan_seconds / max(r.eager_seconds, 1e-12):.2f}")
    t.add_row("predicted peak (simulate)", "", format_bytes(r.predicted_peak_bytes),
              f"measured {100 * r.predicted_error:+.1f}%")
    t.add_row("measured peak % of the planner's baseline", "", f"{100 * r.of_baseline:.1f}%",
              "inductor's own step" if r.compiler == "inductor" else "store-all")
    t.add_row("measured peak % of an eager step", "", f"{100 * r.of_eager:.1f}%", "uncompiled")
    t.add_row("simulated peak % of baseline", "", f"{100 * r.plan_simulated_peak_bytes / r.baseline_simulated_peak_bytes:.1f}%",
              "feasible" if r.feasible else "[red]over budget[/]")
    t.add_row("max gradient error (relative)", "", f"{r.max_grad_error:.2e}", f"vs {r.reference}")
    if r.random_ops:
        t.add_row("random ops recomputed (replayed)", "", f"{r.random_recomputed} of {r.random_ops}", "")
    if r.lowerings:
        options = sorted({e["option"] for e in r.lowerings})
        t.add_row("lowerings chosen", "", str(len(r.lowerings)), ", ".join(options))
    t.add_row("BatchNorm statistics equal", "", "yes" if r.buffers_equal else "[red]no[/]", "")
    if r.optimizer:
        t.add_row("optimizer (state in the budget)", "", r.optimizer, "step() in every measured step")
    t.add_row("graphs / recomputations", "", f"{r.graphs} / {r.recomputations}",
              f"+{r.recompiles} recompiled (replaced)" if r.recompiles else "")
    return t
