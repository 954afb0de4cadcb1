"""``recompile plan MODEL.py --budget 25%``: capture a model's training step and plan it."""

from __future__ import annotations

import time
from collections import defaultdict

import click

from recompiler.advice import missed_budget_message, overhead_message

from .common import (EXIT_INFEASIBLE, SECONDS, check_output, console, lowerings_table,
                     quiet_torch_logs, record_recompute_costs, say, status, user_errors,
                     verbose_option, warn)

#: Rows of the "recomputed" table before the rest is summarised in one line.
MAX_MODULE_ROWS = 25


def _approx_ratios(allow_approx: bool, text: str | None, no_lowerings: bool) -> tuple:
    """The WTA-CRS ratios to offer: none without --allow-approx (a one-line error if ratios are given)."""
    from recompiler.errors import SolverOptionError
    from recompiler.frontend.capture import check_approx_ratios
    from recompiler.lowerings.sampled_linear import DEFAULT_RATIOS

    if not allow_approx:
        if text is not None:
            raise SolverOptionError("--approx-ratio needs --allow-approx (approximate lowerings are opt-in)")
        return ()
    if no_lowerings:
        raise SolverOptionError("--allow-approx offers a lowering: it cannot be combined with --no-lowerings")
    if text is None:
        return DEFAULT_RATIOS
    try:
        ratios = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SolverOptionError(f"--approx-ratio takes numbers in (0, 1] separated by commas, not {text!r}") from None
    return check_approx_ratios(ratios)


@click.command("plan")
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.option("--budget", "-b", required=True, help="Peak-memory budget: N% of the store-all peak, or bytes (12GiB, 500MB).")
@click.option("--solver", "-s", default=None, help="Solver name (default: the best available). `recompile solvers` lists them.")
@click.option("--device-profile", "-d", type=click.Choice(["cpu", "a100", "h100"]), default="cpu", show_default=True,
              help="Roofline profile for compute costs.")
@click.option("--profile", "timed", is_flag=True, help="Time every node on this machine instead of the roofline (slower).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the plan JSON here (atomically; its folder must exist).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for randomized solvers.")
@click.option("--time-limit", type=SECONDS, default=None, help="Seconds the solver may run (positive, finite).")
@click.option("--rng", default="replay", show_default=True,
              help="replay: random ops (dropout) draw a seed each and may be recomputed bit for bit; "
                   "pin: computed once, on eager's RNG stream.")
@click.option("--no-lowerings", is_flag=True,
              help="Plan recomputation only: offer the solver no alternative lowering (chunked attention).")
@click.option("--compiler", default="inductor", show_default=True,
              help="What will compile the planned graphs: inductor (fused; percentages are of inductor's own "
                   "step) or eager (fx graphs run node by node; percentages of store-all).")
@click.option("--allow-approx", is_flag=True,
              help="Also offer approximate lowerings (WTA-CRS sampled weight gradients for linear layers): "
                   "they change the gradients (unbiased estimates) and are marked in the plan.")
@click.option("--approx-ratio", "approx_ratio", default=None,
              help="With --allow-approx: the shares of a linear's input rows WTA-CRS may keep, comma-separated "
                   "(default 0.3,0.1).")
@click.option("--optimizer", default=None,
              help="Count this optimizer's state in the step's memory (and the budget): sgd, sgd-momentum, adam, "
                   "adamw, adagrad, adafactor, extreme-tensor[:P]. Default: none counted.")
@verbose_option
def plan_command(model_file, budget, solver, device_profile, timed, json_out, seed, time_limit, rng, no_lowerings,
                 compiler, allow_approx, approx_ratio, optimizer):
    """Capture MODEL_FILE's training step, plan recomputation under --budget, print the plan.

    MODEL_FILE defines build() -> (model, example_inputs), or module-level `model` and
    `example_inputs`; optionally loss(output) -> scalar (default: output.loss, else the sum
    of the outputs).
    """
    with user_errors():
        check_output(json_out)                  # a bad --json path fails before the capture, not after
        from recompiler.budget import parse_budget
        from recompiler.solvers import get_solver

        get_solver(solver) if solver else None  # an unknown name fails before the slow capture
        parse_budget(budget, baseline_peak=1)   # so does an unreadable budget
        from recompiler.frontend.rng import check_rng_mode

        check_rng_mode(rng)                     # and an unknown --rng
        from recompiler.frontend.capture import check_compiler

        check_compiler(compiler)                # and an unknown --compiler
        approx_ratios = _approx_ratios(allow_approx, approx_ratio, no_lowerings)   # and bad ratios
        from recompiler.optim.state import add_optimizer_state, memory_breakdown, parse_optimizer

        optimizer_spec = parse_optimizer(optimizer) if optimizer is not None else None   # and an unknown optimizer

        from recompiler.frontend.capture import capture
        from recompiler.frontend.modelfile import load_model_file
        from recompiler.simulate import baseline

        start = time.perf_counter()
        with status(f"loading {model_file}"), quiet_torch_logs():
            spec = load_model_file(model_file)
        with status(f"capturing the training step of {spec.name}" + (" and timing every node" if timed else "")), \
                quiet_torch_logs():
            cap = capture(spec.model, spec.example_inputs, loss_fn=spec.loss_fn, device_profile=device_profile,
                          profile=timed, name=spec.name, rng=rng, lowerings=not no_lowerings,
                          compiler=compiler, approx_ratios=approx_ratios)
        capture_seconds = time.perf_counter() - start
        # the optimizer's state lives through the step: fixed memory, inside the budget (a
        # percentage is then of the whole step, state included)
        optimizer_bytes = add_optimizer_state(cap, optimizer_spec) if optimizer_spec is not None else 0
        graph = cap.graph
        budget_bytes = parse_budget(budget, baseline_peak=baseline(graph).peak_bytes)
        from recompiler.frontend.capture import reachable_floor

        floor = reachable_floor(graph)
        # Below the floor no plan exists: aim the solver at the floor instead of letting it
        # spend its whole time limit on the impossible; the plan still records the user's budget.
        target = max(budget_bytes, floor)
        with status(f"solving {graph.name} ({graph.n} nodes)"):
            from recompiler.frontend.solve import solve_captured

            plan = solve_captured(cap, target, solver, seed=seed, time_limit=time_limit, allow_approx=allow_approx)
            graph = cap.graph  # under inductor the fusion rounds may have charged nodes the plan saves
        if target != budget_bytes:
            plan.stats["solved_for_bytes"] = target
            plan.budget_bytes, plan.feasible = budget_bytes, plan.peak_bytes <= budget_bytes
        plan.stats.update(cap.plan_stats())
        plan.stats["capture_seconds"] = round(capture_seconds, 3)
        plan.stats["total_flops"] = cap.total_flops
        plan.stats["random_ops"] = len(cap.random_ops)
        plan.stats["random_recomputed"] = cap.random_recomputed(plan.schedule)
        plan.stats["lowerings_offered"] = not no_lowerings
        plan.stats["optimizer"] = str(optimizer_spec) if optimizer_spec is not None else None
        plan.stats["memory_breakdown"] = memory_breakdown(cap, plan, optimizer_bytes)
        if not plan.feasible and optimizer_spec is not None:
            with status("planning with the optimizers of less state"):
                plan.stats["optimizers_that_fit"] = _optimizers_that_fit(
                    cap, optimizer_spec, optimizer_bytes, budget_bytes, solver, seed, time_limit, allow_approx)
        from recompiler import lowerings

        plan.lowerings = lowerings.chosen(graph, cap.lowerings, plan.variant)
        record_recompute_costs(plan, graph)
        if json_out:
            plan.save(json_out, make_parents=False)
    from recompiler.frontend.capture import reachable_floor

    out = console()
    out.print(_summary(cap, plan, capture_seconds))
    out.print(_recomputed_table(cap, plan))
    if plan.lowerings:
        out.print(lowerings_table(plan.lowerings))
    if json_out:
        say(f"plan written to {json_out}")
    extreme = overhead_message(plan, graph)
    if extreme:
        warn(extreme)
    if not plan.feasible:
        from recompiler.budget import format_bytes

        say(f"[bold red]infeasible:[/] {missed_budget_message(plan, reachable_floor(graph, plan.variant))}")
        for alt in plan.stats.get("optimizers_that_fit") or ():
            say(f"  with {alt['optimizer']} ({format_bytes(alt['state_bytes'])} of state): "
                + (f"[green]fits[/] at +{100 * alt['overhead']:.2f}%" if alt["feasible"]
                   else f"still over (best peak {format_bytes(alt['peak_bytes'])})"))
        raise SystemExit(EXIT_INFEASIBLE)


def _optimizers_that_fit(cap, spec, optimizer_bytes: int, budget_bytes: int, solver, seed, time_limit,
                         allow_approx) -> list[dict]:
    """The same budget, planned with each optimizer that keeps less state than ``spec``: which fit,
    and at what overhead (one budget covers recomputation, lowerings and optimizer state)."""
    import copy
    import dataclasses

    from recompiler.frontend.solve import solve_captured
    from recompiler.optim.state import OPTIMIZERS, parse_optimizer, state_bytes, trainable_parameters

    params = trainable_parameters(cap)
    out = []
    for name in OPTIMIZERS:
        alt = parse_optimizer(name)
        extra = state_bytes(alt, params)
        if alt.name == spec.name or extra >= optimizer_bytes:
            continue   # more state cannot make a missed budget fit
        other = copy.copy(cap)
        other.graph = dataclasses.replace(cap.graph, fixed_memory=cap.graph.fixed_memory - optimizer_bytes + extra)
        p = solve_captured(other, budget_bytes, solver, seed=seed, time_limit=time_limit, allow_approx=allow_approx)
        out.append({"optimizer": str(alt), "state_bytes": int(extra), "feasible": bool(p.feasible),
                    "overhead": float(p.overhead), "peak_bytes": int(p.peak_bytes)})
    return out


def _summary(cap, plan, capture_seconds: float):
    from rich.table import Table

    from recompiler.frontend.capture import reachable_floor

    from recompiler.budget import format_bytes

    g = cap.graph
    t = Table(title=f"{g.name} — {plan.solver}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("nodes", f"{g.n} ({int(g.is_input.sum())} inputs, {int((g.is_backward & ~g.is_input).sum())} backward, "
                       f"{int(g.pinned.sum())} pinned)")
    t.add_row("cost model", ("profiled on this machine" if cap.profiled else f"roofline, {cap.device_profile}")
              + (", inductor fusion" if cap.compiler == "inductor" else ", eager (no fusion)"))
    t.add_row("baseline peak", format_bytes(plan.baseline_peak_bytes)
              + (" (inductor's own partition)" if cap.compiler == "inductor" else " (store-all)"))
    t.add_row("budget", format_bytes(plan.budget_bytes))
    colour = "green" if plan.feasible else "red"
    t.add_row("planned peak", f"[{colour}]{format_bytes(plan.peak_bytes)}[/] ({100 * plan.peak_fraction:.1f}% of baseline)")
    floor = reachable_floor(g, plan.variant)
    # CostGraph.floor bounds every schedule's peak from below; the best reachable peak is often
    # above it (a 78.1% plan beside a 66.7% bound), so it is never called "reachable"
    t.add_row("peak lower bound", f"{format_bytes(floor)} ({100 * floor / plan.baseline_peak_bytes:.1f}%; no "
                                  "schedule goes below it)")
    breakdown = plan.stats.get("memory_breakdown")
    if breakdown and plan.peak_bytes:
        # what the planned peak is made of (recomputation only moves the activations part)
        for kind, b in breakdown.items():
            what = f"  {kind.replace('_', ' ')}" + (f" ({plan.stats['optimizer']})" if kind == "optimizer_state"
                                                   and plan.stats.get("optimizer") else "")
            t.add_row(what, f"{format_bytes(b)} ({100 * b / plan.peak_bytes:.1f}%)")
    t.add_row("estimated overhead", f"{100 * plan.overhead:.2f}% ({plan.baseline_cost * 1e3:.2f} → {plan.cost * 1e3:.2f} ms)")
    t.add_row("recomputed nodes", str(len(plan.recomputed)))
    if cap.rng == "replay":
        t.add_row("random ops recomputed", f"{plan.stats['random_recomputed']} of {plan.stats['random_ops']} "
                                           "(replayed from their seeds)")
    else:
        t.add_row("random ops", "pinned (--rng pin): computed once")
    groups = g.variant_groups
    if not plan.stats.get("lowerings_offered", True):
        t.add_row("lowerings", "off (--no-lowerings)")
    else:
        t.add_row("lowerings", f"{len(plan.lowerings)} of {len(groups)} groups lowered"
                               + (f" ({', '.join(sorted({x.kind for x in groups}))})" if groups else ""))
    approx = [e for e in plan.lowerings if not e.get("exact", True)]
    if approx:   # an approximate lowering changes the gradients: never only in the lowerings table
        t.add_row("[yellow]approximate[/]", f"[yellow]{len(approx)} layer{'s' * (len(approx) != 1)} with estimated "
                                            "weight gradients (WTA-CRS, unbiased)[/]")
    t.add_row("capture / solve", f"{capture_seconds:.1f} s / {plan.solve_seconds:.2f} s")
    return t



def _recomputed_table(cap, plan):
    """Recomputations grouped by module path: nodes, extra runs, added compute, ops."""
    from rich.table import Table

    from recompiler.budget import format_bytes

    g = cap.graph
    runs: dict[int, int] = defaultdict(int)
    for v in plan.schedule:
        runs[v] += 1
    rows: dict[str, dict] = defaultdict(lambda: {"nodes": 0, "extra": 0, "seconds": 0.0, "bytes": 0, "ops": defaultdict(int)})
    for v, k in runs.items():
        if k <= 1:
            continue
        r = rows[cap.module_paths[v] or "(top level)"]
        r["nodes"] += 1
        r["extra"] += k - 1
        r["seconds"] += (k - 1) * float(g.compute[v])
        r["bytes"] += int(g.memory[v])
        r["ops"][cap.ops[v]] += 1
    t = Table(title="recomputed, by module", title_justify="left", header_style="bold")
    for col, just in (("module", "left"), ("nodes", "right"), ("extra runs", "right"), ("bytes", "right"),
                      ("added ms", "right"), ("ops", "left")):
        t.add_column(col, justify=just)
    order = sorted(rows.items(), key=lambda kv: -kv[1]["seconds"])
    for path, r in order[:MAX_MODULE_ROWS]:
        ops = ", ".join(f"{op}×{c}" if c > 1 else op for op, c in sorted(r["ops"].items(), key=lambda x: -x[1])[:4])
        t.add_row(path, str(r["nodes"]), str(r["extra"]), format_bytes(r["bytes"]), f"{r['seconds'] * 1e3:.3f}", ops)
    if len(order) > MAX_MODULE_ROWS:
        rest = order[MAX_MODULE_ROWS:]
        t.add_row(f"… {len(rest)} more modules", str(sum(r["nodes"] for _, r in rest)),
                  str(sum(r["extra"] for _, r in rest)), format_bytes(sum(r["bytes"] for _, r in rest)),
                  f"{sum(r['seconds'] for _, r in rest) * 1e3:.3f}", "")
    if not order:
        t.add_row("(nothing recomputed)", "", "", "", "", "")
    return t

