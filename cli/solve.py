"""``recompile solve GRAPH.json --budget 80%``: plan a node-cost graph file."""

from __future__ import annotations

import click

from recompiler.advice import missed_budget_message, overhead_message

from .common import (EXIT_INFEASIBLE, SECONDS, check_output, console,
                     plan_table, record_recompute_costs, say, status, user_errors, verbose_option, warn)


@click.command("solve")
@click.argument("graph_file", type=click.Path(dir_okay=False))
@click.option("--budget", "-b", required=True, help="Peak-memory budget: N% of the store-all peak, or bytes (12GiB, 500MB, 1000).")
@click.option("--solver", "-s", default=None, help="Solver name (default: the best available). `recompile solvers` lists them.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for randomized solvers.")
@click.option("--time-limit", type=SECONDS, default=None, help="Seconds a solver may run (positive, finite).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the plan JSON here (atomically; its folder must exist).")
@verbose_option
def solve_command(graph_file, budget, solver, seed, time_limit, json_out):
    """Plan recomputation for GRAPH_FILE (our graph JSON or the shared networkx formats)."""
    from recompiler.budget import parse_budget
    from recompiler.graph_io import read_graph
    from recompiler.simulate import baseline
    from recompiler.solvers import get_solver, solve

    with user_errors():
        check_output(json_out)                  # a bad --json path fails before the solve, not after
        graph = read_graph(graph_file)
        get_solver(solver) if solver else None  # an unknown name fails before any work
        budget_bytes = parse_budget(budget, baseline_peak=baseline(graph).peak_bytes)
        with status(f"solving {graph.name} ({graph.n} nodes)"):
            plan = solve(graph, budget_bytes, solver, seed=seed, time_limit=time_limit)
        record_recompute_costs(plan, graph)
        if json_out:
            plan.save(json_out, make_parents=False)
    console().print(plan_table(plan, f"{graph.name} — {plan.solver}"))
    if json_out:
        say(f"plan written to {json_out}")
    extreme = overhead_message(plan, graph)
    if extreme:
        warn(extreme)
    if not plan.feasible:
        say(f"[bold red]infeasible:[/] {missed_budget_message(plan, graph.floor(plan.variant))}")
        raise SystemExit(EXIT_INFEASIBLE)
