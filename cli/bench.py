"""``recompile bench --suite ci|full``: every benchmark model × budget × solver, in one table.

The models, suites and runner live in ``bench_models/`` (a folder of the repository, not
of the installed package): run the command from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import SECONDS, check_output, console, error_console, fail, say, user_errors, verbose_option


def _import_bench_models():
    """``bench_models`` from the current directory (the repository root), else beside this file's checkout."""
    try:
        import bench_models.runner  # noqa: F401
        return
    except ImportError:
        pass
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / "bench_models" / "registry.py").is_file():
            sys.path.insert(0, str(root))
            import bench_models.runner  # noqa: F401
            return
    fail("bench_models/ not found: run `recompile bench` from the root of the recompiler repository")


@click.command("bench")
@click.option("--suite", type=click.Choice(["ci", "full", "paper"]), default="ci", show_default=True,
              help="ci: small model sizes, fixed seeds and iteration counts; full: the real configs; paper: the "
                   "FastSA paper's model kinds at its sizes (vision batch 512, text 128x512, LMs 8x2048), on the "
                   "meta device, planned only.")
@click.option("--models", default=None, help="Comma-separated model names (default: the whole suite; see --list).")
@click.option("--model-file", "model_files", multiple=True, type=click.Path(dir_okay=False),
              help="Bench this model file (as `recompile plan` reads it) instead of the suite's models; repeatable.")
@click.option("--cost", type=click.Choice(["roofline", "unit"]), default="roofline", show_default=True,
              help="roofline: the device profile's time per node; unit: every node costs 1 (the FastSA paper's).")
@click.option("--budgets", default=None,
              help="Comma-separated budgets, N% of the store-all peak or bytes (default: ci 80%,60%; full 50%,25%).")
@click.option("--solvers", default=None,
              help="Comma-separated solvers (default: fastsa, chen-sqrtn, greedy-evict, checkmate-lp, torch-knapsack "
                   "— those registered).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write every row as JSON here (atomically).")
@click.option("--update-expected", is_flag=True,
              help="Rewrite bench_models/expected/<suite>.json with this run (the regression baseline).")
@click.option("--check", is_flag=True,
              help="Compare this run with bench_models/expected/<suite>.json, solve times included (run it on a "
                   "quiet machine); exit 1 on any regression.")
@click.option("--time-limit", type=SECONDS, default=None,
              help="Seconds per solve, positive and finite (full suite, default 60; ci uses fixed iteration counts).")
@click.option("--list", "list_models", is_flag=True, help="List the suite's models and sizes, and exit.")
@verbose_option
def bench_command(suite, models, model_files, cost, budgets, solvers, json_out, update_expected, check, time_limit,
                  list_models):
    """Run the benchmark suite: capture each model once, plan it at every budget with every solver."""
    _import_bench_models()
    from bench_models import registry, runner

    if list_models:
        for name in registry.SUITES[suite]:
            e = registry.get(name)
            click.echo(f"{name:32s} {e.kind:7s} {e.sizes[suite]}")
        return
    with user_errors():
        check_output(json_out)  # before a run of many minutes, not after it
        model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
        if model_files:
            from recompiler.errors import RecompilerError

            missing = [f for f in model_files if not Path(f).is_file()]
            if missing:
                raise RecompilerError(f"model file not found: {missing[0]}")
            if check or update_expected:
                raise RecompilerError("--model-file runs are not compared with or recorded as expectations")
            files = [registry.FILE_PREFIX + str(Path(f).resolve()) for f in model_files]
            model_list = list(dict.fromkeys((model_list or []) + files))   # a file named twice is benched once
        for m in (m for m in model_list or () if not m.startswith(registry.FILE_PREFIX)):
            if m not in registry.MODELS:
                from recompiler.errors import RecompilerError

                raise RecompilerError(f"unknown model {m!r}; known: {', '.join(registry.MODELS)}")
        budget_list = runner.parse_budgets(budgets) if budgets else registry.SUITE_BUDGETS[suite]
        solver_list = [s.strip() for s in solvers.split(",") if s.strip()] if solvers else runner.default_solvers()
        runner.check_solvers(solver_list)
        if cost != "roofline" and (check or update_expected):
            from recompiler.errors import RecompilerError

            raise RecompilerError("the recorded expectations are roofline costs: --cost unit cannot --check or "
                                  "--update-expected")
        if check and update_expected:
            from recompiler.errors import RecompilerError

            raise RecompilerError("--check and --update-expected together would compare a run with itself")
        if check:
            from bench_models.regression import expected_path, load_expected

            if not expected_path(suite).is_file():
                from recompiler.errors import RecompilerError

                raise RecompilerError(f"no expectations recorded for suite {suite!r}: run with --update-expected first")
            expected = load_expected(suite)
            model_list = model_list or list(expected["models"])
            budgets = budgets or ",".join(expected["budgets"])
            budget_list = runner.parse_budgets(budgets)
            solver_list = solvers and solver_list or list(expected["solvers"])
        if update_expected and (model_list or solvers or budgets or time_limit is not None):
            say("[yellow]note:[/] --update-expected records this run's models, budgets and solvers as the baseline")
        names = model_list or registry.SUITES[suite]
        result = _run_with_progress(runner, suite, names, budget_list, solver_list, time_limit, json_out, cost)
        if json_out:
            from recompiler.fileio import write_json_atomic

            write_json_atomic(json_out, result.to_dict(), make_parents=False)
        if update_expected:
            from recompiler.fileio import write_json_atomic

            from bench_models.regression import expected_path

            write_json_atomic(expected_path(suite), result.to_dict())
    console().print(results_table(result))
    console().print(summary_table(result, cost))
    if json_out:
        say(f"results written to {json_out}")
    if update_expected:
        say(f"expectations written to bench_models/expected/{suite}.json")
    if check:
        from bench_models.regression import compare

        ran = {(r.model, r.budget, r.solver) for r in result.rows}
        chosen = {**expected, "rows": [r for r in expected["rows"] if (r["model"], r["budget"], r["solver"]) in ran]}
        problems = compare(chosen, result.to_dict())
        for line in problems:
            error_console().print(f"[red]regression:[/] {line}", markup=True, highlight=False)
        if problems:
            raise SystemExit(1)
        say(f"no regression against bench_models/expected/{suite}.json (plans and solve times)")


def _run_with_progress(runner, suite, names, budgets, solvers, time_limit, json_out=None, cost="roofline"):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = len(names) * len(budgets) * len(solvers)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=error_console(), transient=False) as progress:
        task = progress.add_task("starting", total=total)

        def on_model(name, info):
            progress.update(task, description=f"{name}: capturing" if info is None else f"{name}: solving")

        def on_row(row):
            progress.update(task, advance=1, description=f"{row.model} {row.budget} {row.solver}")

        def checkpoint(partial):  # a long run keeps what it has so far
            from recompiler.fileio import write_json_atomic

            write_json_atomic(json_out, {**partial.to_dict(), "partial": True}, make_parents=False)

        return runner.run_suite(suite, models=names, budgets=budgets, solvers=solvers, time_limit=time_limit,
                                cost=cost, on_model=on_model, on_row=on_row,
                                checkpoint=checkpoint if json_out else None)


def results_table(result):
    """The rich table: one line per model × budget × solver."""
    from rich.table import Table

    from recompiler.budget import format_bytes

    t = Table(title=f"recompile bench --suite {result.suite} ({result.seconds:.0f} s)", header_style="bold")
    for col, just in (("model", "left"), ("nodes", "right"), ("baseline peak", "right"), ("floor %", "right"),
                      ("budget", "right"), ("solver", "left"), ("plan peak %", "right"), ("overhead %", "right"),
                      ("solve s", "right"), ("feasible", "left")):
        t.add_column(col, justify=just)
    last = None
    for r in result.rows:
        info = result.models[r.model]
        first = r.model != last
        last = r.model
        base = info.baseline_peak_bytes
        head = (r.model, str(info.nodes), format_bytes(base) if base else "",
                f"{100 * info.floor_bytes / base:.1f}" if base else "") if first else ("", "", "", "")
        if r.status == "ok":
            feas = "[green]yes[/]" if r.feasible else "[red]no[/]"
            cells = (f"{r.peak_pct:.1f}", f"{r.overhead_pct:.2f}", f"{r.solve_seconds:.2f}", feas)
        else:
            colour = "yellow" if r.status == "skipped" else "red"
            cells = ("", "", "", f"[{colour}]{r.status}[/]: {r.reason}")
        t.add_row(*head, r.budget, r.solver, *cells, end_section=False)
    return t


#: The FastSA paper's reported averages over its 23 models (unit cost; ../shared/papers/NOTES.md,
#: "Reported"): budget -> (what it says about memory, average cost increase %).
PAPER_FIGURES = {"50%": ("met on all 23 models", 7.0), "25%": ("73% average reduction; some models miss it", 18.0)}


def summary_table(result, cost: str = "roofline"):
    """Per budget and solver: cells met, mean overhead and mean peak over the cells met, and how often
    the solver cost more than torch-knapsack where that met the budget; the paper's averages beside."""
    from rich.table import Table

    t = Table(title=f"summary ({cost} cost)", header_style="bold")
    for col, just in (("budget", "left"), ("solver", "left"), ("met", "right"), ("mean overhead %", "right"),
                      ("mean peak %", "right"), ("costlier than torch-knapsack", "right")):
        t.add_column(col, justify=just)
    ok = [r for r in result.rows if r.status == "ok"]
    knap = {(r.model, r.budget): r for r in ok if r.solver == "torch-knapsack" and r.feasible}
    for b in result.budgets:
        for solver in result.solvers:
            cells = [r for r in ok if r.budget == b and r.solver == solver]
            if not cells:
                continue
            met = [r for r in cells if r.feasible]
            mean = (lambda xs: f"{sum(xs) / len(xs):.2f}" if xs else "")
            worse = [r for r in met if (r.model, b) in knap and solver != "torch-knapsack"
                     and r.overhead_pct > knap[(r.model, b)].overhead_pct + 1e-9]
            beaten = "" if solver == "torch-knapsack" else f"{len(worse)} of {sum((r.model, b) in knap for r in cells)}"
            t.add_row(b, solver, f"{len(met)}/{len(cells)}", mean([r.overhead_pct for r in met]),
                      mean([r.peak_pct for r in met]), beaten)
        if result.suite == "paper" and b in PAPER_FIGURES:
            memory, overhead = PAPER_FIGURES[b]
            t.add_row(b, "[dim]FastSA paper (unit cost)[/]", f"[dim]{memory}[/]", f"[dim]+{overhead:.0f}[/]", "", "",
                      end_section=True)
    return t
