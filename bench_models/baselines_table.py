"""Baseline solvers on all 11 shared graphs: peak % of baseline and cost increase %.

    python bench_models/baselines_table.py [--budgets 90,80,50] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models.shared_graphs import all_graph_names, graph_path  # noqa: E402
from recompiler.budget import format_bytes  # noqa: E402
from recompiler.fileio import write_json_atomic  # noqa: E402
from recompiler.graph_io import read_graph  # noqa: E402
from recompiler.simulate import baseline  # noqa: E402
from recompiler.solvers import solve  # noqa: E402


@click.command()
@click.option("--budgets", default="90,80,50", show_default=True)
@click.option("--solvers", default="chen-sqrtn,chen-greedy,greedy-evict", show_default=True)
@click.option("--json", "json_out", default=None)
def main(budgets, solvers, json_out):
    budgets = [int(b) for b in budgets.split(",")]
    solvers = solvers.split(",")
    rows = []
    table = Table(title="baseline solvers on the shared graphs (peak % of baseline / cost increase %)")
    table.add_column("graph")
    table.add_column("nodes", justify="right")
    table.add_column("baseline peak", justify="right")
    table.add_column("floor %", justify="right")
    for s in solvers:
        for b in budgets:
            table.add_column(f"{s} @{b}%", justify="right")
    for name in all_graph_names():
        g = read_graph(graph_path(name))
        base = baseline(g)
        cells = []
        for s in solvers:
            for b in budgets:
                p = solve(g, f"{b}%", s, time_limit=60)
                rows.append({"graph": name, "solver": s, "budget_pct": b, "peak_pct": 100 * p.peak_fraction,
                             "cost_increase_pct": 100 * p.overhead, "feasible": p.feasible,
                             "solve_seconds": p.solve_seconds})
                mark = "" if p.feasible else "✗"
                cells.append(f"{100 * p.peak_fraction:.1f} / {100 * p.overhead:.1f}{mark}")
        table.add_row(name, str(g.n), format_bytes(base.peak_bytes), f"{100 * g.local_bound() / base.peak_bytes:.1f}",
                      *cells)
    Console(width=250).print(table)
    if json_out:
        write_json_atomic(json_out, rows)


if __name__ == "__main__":
    main()
