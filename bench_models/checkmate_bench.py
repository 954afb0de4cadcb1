"""Checkmate MILP and LP rounding next to every other registered solver (issue 5).

    python bench_models/checkmate_bench.py [--json out.json] [--time-limit S]
                                           [--heuristic-time-limit S] [--graphs a,b] [--budgets 90,80]
    python bench_models/checkmate_bench.py --table-from a.json [--table-from b.json]

On the seven Checkmate graphs and RL1/RL2 (random_layered n100/n250) at 90/80/70/50%
of the store-all peak: cost increase % of checkmate-milp with its proven gap,
checkmate-lp (rounding) with the LP lower bound, and the cost increase % of each
other solver in ``SOLVERS`` (a cell shows ``✗ peak%`` when the plan misses the
budget). Budgets below the graph's local bound are shown as such and not solved by
the exact methods. The JSON (written atomically after every graph) has one record
per (graph, budget, solver).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models.shared_graphs import CHECKMATE, graph_path  # noqa: E402
from recompiler.errors import InfeasibleBudget, RecompilerError  # noqa: E402
from recompiler.fileio import write_json_atomic  # noqa: E402
from recompiler.graph_io import read_graph  # noqa: E402
from recompiler.simulate import baseline  # noqa: E402
from recompiler.solvers import known_solvers, solve  # noqa: E402

GRAPHS = CHECKMATE + ["RL1", "RL2"]
EXACT = ("checkmate-milp", "checkmate-lp")
SKIP = ("store-all",)  # the reference every budget is a fraction of


def _run(graph, budget_bytes, solver, time_limit):
    start = time.perf_counter()
    try:
        plan = solve(graph, budget_bytes, solver, time_limit=time_limit)
    except InfeasibleBudget as e:
        return {"solver": solver, "error": "infeasible", "message": str(e), "seconds": time.perf_counter() - start}
    except RecompilerError as e:
        return {"solver": solver, "error": type(e).__name__, "message": str(e), "seconds": time.perf_counter() - start}
    keep = ("optimal", "status", "gap", "milp_cost", "best_bound", "lower_bound_cost", "lp_status",
            "warm_start_cost", "variables", "constraints", "roundings", "rounding_fits")
    return {"solver": solver, "feasible": plan.feasible, "cost": plan.cost, "overhead": plan.overhead,
            "peak_fraction": plan.peak_fraction, "peak_bytes": plan.peak_bytes,
            "seconds": time.perf_counter() - start, "stats": {k: plan.stats[k] for k in keep if k in plan.stats}}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _cell(rec: dict | None, *, seconds: bool = True) -> str:
    if rec is None:
        return ""
    if rec.get("error") == "infeasible":
        return "[dim]infeasible[/]"
    if "error" in rec:
        return f"[red]{rec['error']}[/]"
    s = f" {rec['seconds']:.0f}s" if seconds else ""
    if rec["stats"].get("status") == "no solution" or rec["stats"].get("roundings") == 0:
        return f"[yellow]time-out[/]{s}"
    if not rec["feasible"]:
        return f"[red]✗ {_pct(rec['peak_fraction'])}[/]{s}"
    return f"+{_pct(rec['overhead'])}{s}"


def render(records: list[dict], title: str) -> Table:
    """The side-by-side table from the JSON records (one row per graph and budget)."""
    others = sorted({r["solver"] for r in records if r.get("solver") and r["solver"] not in EXACT})
    table = Table(title=title)
    for col in ["graph", "n", "budget", "floor", "MILP", "gap", "LP-round", "LP bound", *others]:
        table.add_column(col, justify="left" if col == "graph" else "right")
    rows: dict[tuple, dict] = {}
    for r in records:
        rows.setdefault((r["graph"], r["budget_percent"]), {})[r["solver"]] = r
    last = None
    for (name, pct), row in rows.items():
        if last is not None and name != last:
            table.add_section()
        last = name
        first = next(iter(row.values()))
        floor = first["floor_percent"] / 100
        lead = [name, str(first["nodes"]), f"{pct}%", _pct(floor)]
        if None in row:
            table.add_row(*lead, "[dim]below floor[/]", *[""] * (3 + len(others)))
            continue
        milp, lp = row["checkmate-milp"], row["checkmate-lp"]
        gap = milp.get("stats", {}).get("gap")
        bound = lp.get("stats", {}).get("lower_bound_cost")
        table.add_row(*lead, _cell(milp), "" if gap is None else _pct(gap), _cell(lp),
                      "" if bound is None else f"+{_pct(bound / lp['baseline_cost'] - 1)}",
                      *[_cell(row.get(s)) for s in others])
    return table


@click.command()
@click.option("--json", "json_out", default=None, help="Write every record here (atomically).")
@click.option("--time-limit", default=30.0, show_default=True, help="Seconds for checkmate-milp and checkmate-lp.")
@click.option("--heuristic-time-limit", default=10.0, show_default=True, help="Seconds for the other solvers.")
@click.option("--graphs", default=",".join(GRAPHS), show_default=True)
@click.option("--budgets", default="90,80,70,50", show_default=True)
@click.option("--table-from", "table_from", multiple=True,
              help="Only print the table of earlier --json files (later files win per graph and budget).")
def main(json_out, time_limit, heuristic_time_limit, graphs, budgets, table_from):
    console = Console(width=None if sys.stdout.isatty() else 200)
    if table_from:
        merged: dict[tuple, dict] = {}
        for path in table_from:
            data = json.loads(Path(path).read_text())
            fresh = {(r["graph"], r["budget_percent"]) for r in data["records"]}
            merged = {k: v for k, v in merged.items() if (k[0], k[1]) not in fresh}
            for r in data["records"]:
                merged[r["graph"], r["budget_percent"], r["solver"]] = r
        order = {g: i for i, g in enumerate(GRAPHS)}
        records = sorted(merged.values(), key=lambda r: (order.get(r["graph"], 99), -r["budget_percent"]))
        console.print(render(records, f"Checkmate baselines (cost increase %), from {', '.join(table_from)}"))
        return
    budgets = [int(b) for b in budgets.split(",")]
    others = [s for s in known_solvers() if s not in EXACT and s not in SKIP]
    records = []
    for name in graphs.split(","):
        graph = read_graph(graph_path(name))
        base = baseline(graph)
        floor = graph.local_bound() / base.peak_bytes
        for pct in budgets:
            budget_bytes = int(pct / 100 * base.peak_bytes)
            common = dict(graph=name, nodes=graph.n, budget_percent=pct, budget_bytes=budget_bytes,
                          floor_percent=100 * floor, baseline_cost=base.cost)
            if budget_bytes < graph.local_bound():
                # No schedule can fit (DESIGN.md, "The floor"): nothing to solve.
                records.append({**common, "solver": None, "error": "below floor"})
                continue
            for solver in [*EXACT, *others]:
                limit = time_limit if solver in EXACT else heuristic_time_limit
                rec = {**_run(graph, budget_bytes, solver, limit), **common}
                records.append(rec)
                console.log(f"{name} @{pct}% {solver}: {_cell(rec)}")
            if json_out:
                write_json_atomic(json_out, {"time_limit": time_limit, "heuristic_time_limit": heuristic_time_limit,
                                             "records": records})
    console.print(render(records, f"Checkmate baselines (cost increase %, MILP/LP {time_limit:.0f} s, "
                                  f"others {heuristic_time_limit:.0f} s)"))


if __name__ == "__main__":
    main()
