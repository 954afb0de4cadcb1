"""FastSA against the FastSA paper's own Table 1, and on the Checkmate graphs at tight budgets (issue 4).

    python bench_models/fastsa_table1.py [--json out.json] [--budgets 90,80] [--seed 0]
    python bench_models/fastsa_table1.py --checkmate [--json out.json]   # 70/60/50/40% on all 7

Table 1 mode runs ``solve(..., solver="fastsa")`` on RL1-RL4 (random_layered n100..n1000),
CM1 (fcn_8_vgg) and CM2 (resnet50) and prints, per cell, our cost increase %, our peak as
% of the store-all peak, our seconds, moves per second (iterations per thread-second) and
simulate's speed on our plan, beside the paper's FastSA numbers. Only ``simulate``'s numbers
are reported. A cell meets its targets when the cost increase is at most the paper's (at
the paper's precision), the peak fits the budget, the solve takes under a third of the
paper's seconds (wall clock, on whatever else the machine is running: the load average is
printed and recorded), and the annealer makes at least 1M moves per CPU-second (thread CPU
time, so the figure does not depend on the load; moves per wall-second are shown beside it).

Checkmate mode runs 70/60/50/40% on the seven Checkmate graphs and reports cost increase,
peak and feasibility, with the graph's floor (DESIGN.md) beside them.
The JSON (one record per cell) is written atomically after every cell.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models.shared_graphs import CHECKMATE, TABLE1, graph_path  # noqa: E402
from recompiler import native  # noqa: E402
from recompiler.fileio import write_json_atomic  # noqa: E402
from recompiler.graph_io import read_graph  # noqa: E402
from recompiler.simulate import baseline  # noqa: E402
from recompiler.solvers import solve  # noqa: E402

# The paper's FastSA column of Table 1: (cost increase %, memory % of original, seconds).
PAPER = {
    ("RL1", 90): (0.0, 79.4, 11.7), ("RL1", 80): (0.3, 79.4, 11.5), ("RL1", 70): (2.2, 77.3, 12.0),
    ("RL2", 90): (0.0, 77.3, 15.1), ("RL2", 80): (0.0, 72.2, 15.0), ("RL2", 70): (2.6, 68.9, 14.5),
    ("RL3", 90): (0.03, 87.4, 21.0), ("RL3", 80): (2.3, 78.6, 20.9), ("RL3", 70): (4.8, 73.5, 21.2),
    ("RL4", 90): (0.4, 87.5, 36.0), ("RL4", 80): (2.5, 78.4, 36.3), ("RL4", 70): (7.4, 70.0, 36.5),
    ("CM1", 90): (0.1, 75.3, 9.4), ("CM1", 80): (0.1, 75.1, 9.7), ("CM1", 70): (3.0, 62.3, 9.7),
    ("CM2", 90): (0.2, 86.2, 10.9), ("CM2", 80): (0.4, 76.6, 10.9), ("CM2", 70): (0.8, 66.8, 11.0),
}
# The decimals the paper prints each cost increase with (0.03 has two, the rest one).
PAPER_DECIMALS = {("RL3", 90): 2}
MIN_MOVES_PER_SECOND = 1e6


def simulate_seconds(graph, plan, repeat: int = 200) -> float:
    """Seconds per native simulate call on the plan's schedule (no live array)."""
    handle = native.graph_handle(graph, plan.variant)
    sched = np.ascontiguousarray(plan.schedule, dtype=np.int32)
    native.simulate(handle, sched, want_live=False)
    start = time.perf_counter()
    for _ in range(repeat):
        native.simulate(handle, sched, want_live=False)
    return (time.perf_counter() - start) / repeat


def run_cell(graph, name: str, pct: int, seed: int, time_limit: float | None) -> dict:
    base = baseline(graph)
    budget = int(base.peak_bytes * pct / 100)
    start = time.perf_counter()
    plan = solve(graph, budget, "fastsa", seed=seed, time_limit=time_limit)
    seconds = time.perf_counter() - start
    return {
        "graph": name, "file": graph.name, "nodes": graph.n, "edges": graph.num_edges, "budget_pct": pct,
        "budget_bytes": budget, "baseline_peak_bytes": base.peak_bytes, "peak_bytes": plan.peak_bytes,
        "peak_pct": 100.0 * plan.peak_fraction, "cost_increase_pct": 100.0 * plan.overhead,
        "feasible": plan.feasible, "seconds": seconds, "solver_seconds": plan.solve_seconds,
        "moves_per_second": plan.stats["moves_per_second"], "iterations": plan.stats["iterations"],
        "moves_per_wall_second": plan.stats["moves_per_wall_second"], "cpu_seconds": plan.stats["cpu_seconds"],
        "restarts": plan.stats["restarts"], "load_average": os.getloadavg()[0],
        "stage1_iterations": plan.stats["stage1_iterations"], "stage2_iterations": plan.stats["stage2_iterations"],
        "schedule_length": len(plan.schedule), "floor_pct": 100.0 * plan.stats["search_floor_bytes"] / base.peak_bytes,
        "simulate_us": 1e6 * simulate_seconds(graph, plan), "seed": seed, "time_limit": time_limit,
    }


def meets(rec: dict) -> dict:
    """Which of the issue's targets a Table 1 cell meets."""
    ci, _, paper_s = PAPER[(rec["graph"], rec["budget_pct"])]
    decimals = PAPER_DECIMALS.get((rec["graph"], rec["budget_pct"]), 1)
    return {
        "cost": round(rec["cost_increase_pct"], decimals) <= ci,
        "peak": rec["feasible"],
        "time": rec["seconds"] < paper_s / 3,
        "speed": rec["moves_per_second"] >= MIN_MOVES_PER_SECOND,
    }


def _mark(ok: bool, text: str) -> str:
    return f"[green]{text}[/green]" if ok else f"[red]{text}[/red]"


def table1(budgets: list[int], seed: int, time_limit: float | None, json_path: str | None, console: Console):
    records = []
    table = Table(title="FastSA vs the paper's Table 1 (ours | paper)")
    for col in ("graph", "(n, m)", "budget", "cost incr. %", "paper CI %", "peak %", "paper mem %",
                "seconds", "paper s / 3", "CPU s", "moves/CPU-s", "moves/wall-s", "simulate µs", "targets"):
        table.add_column(col, justify="right")
    for name in TABLE1:
        graph = read_graph(graph_path(name))
        for pct in budgets:
            rec = run_cell(graph, name, pct, seed, time_limit)
            paper = PAPER.get((name, pct))
            ok = meets(rec) if paper else None
            rec["paper"] = dict(zip(("cost_increase_pct", "memory_pct", "seconds"), paper)) if paper else None
            rec["meets"] = ok
            records.append(rec)
            if json_path:
                write_json_atomic(json_path, {"mode": "table1", "records": records})
            ok = ok or {"cost": True, "peak": rec["feasible"], "time": True, "speed": True}
            table.add_row(
                name, f"({graph.n}, {graph.num_edges})", f"{pct}%",
                _mark(ok["cost"], f"{rec['cost_increase_pct']:.3f}"), f"{paper[0]}" if paper else "-",
                _mark(ok["peak"], f"{rec['peak_pct']:.1f}"), f"{paper[1]}" if paper else "-",
                _mark(ok["time"], f"{rec['seconds']:.2f}"), f"{paper[2] / 3:.1f}" if paper else "-",
                f"{rec['cpu_seconds']:.2f}", _mark(ok["speed"], f"{rec['moves_per_second'] / 1e6:.2f}M"),
                f"{rec['moves_per_wall_second'] / 1e6:.2f}M", f"{rec['simulate_us']:.1f}",
                "all met" if all(ok.values()) else "missed: " + ", ".join(k for k, v in ok.items() if not v))
            console.print(f"[dim]{name} {pct}%: {rec['cost_increase_pct']:.3f}% cost, {rec['peak_pct']:.1f}% peak, "
                          f"{rec['seconds']:.2f}s[/dim]", highlight=False)
    console.print(table)
    cells = [r for r in records if r["meets"]]
    for target in ("cost", "peak", "time", "speed"):
        n_ok = sum(r["meets"][target] for r in cells)
        console.print(f"{target:>5}: {n_ok}/{len(cells)} cells meet the target")
    return records


def checkmate(budgets: list[int], seed: int, time_limit: float | None, json_path: str | None, console: Console):
    records = []
    table = Table(title="FastSA on the Checkmate graphs")
    table.add_column("graph")
    table.add_column("n", justify="right")
    table.add_column("floor %", justify="right")
    for pct in budgets:
        table.add_column(f"{pct}%: CI % / peak %", justify="right")
    table.add_column("seconds", justify="right")
    for name in CHECKMATE:
        graph = read_graph(graph_path(name))
        cells, secs = [], 0.0
        for pct in budgets:
            rec = run_cell(graph, name, pct, seed, time_limit)
            records.append(rec)
            if json_path:
                write_json_atomic(json_path, {"mode": "checkmate", "records": records})
            secs += rec["seconds"]
            text = f"{rec['cost_increase_pct']:.2f} / {rec['peak_pct']:.1f}"
            if not rec["feasible"]:
                below = " (below floor)" if pct < rec["floor_pct"] else ""
                text = f"[red]✗ {text}{below}[/red]"
            cells.append(text)
        table.add_row(name, str(graph.n), f"{records[-1]['floor_pct']:.1f}", *cells, f"{secs:.1f}")
        console.print(f"[dim]{name} done[/dim]")
    console.print(table)
    return records


@click.command()
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every cell here (atomically).")
@click.option("--checkmate", "checkmate_mode", is_flag=True, help="70/60/50/40% on the seven Checkmate graphs.")
@click.option("--budgets", default=None, help="Comma-separated percentages (default 90,80; 70,60,50,40 with --checkmate).")
@click.option("--seed", default=0, show_default=True)
@click.option("--time-limit", type=float, default=None, help="Seconds per solve (default: none, iterations bound it).")
def main(json_path, checkmate_mode, budgets, seed, time_limit):
    console = Console(width=None if sys.stdout.isatty() else 200)
    default = "70,60,50,40" if checkmate_mode else "90,80"
    pcts = [int(x) for x in (budgets or default).split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    console.print(f"[dim]{os.cpu_count()} CPUs, load average {load:.2f}[/dim]")
    if checkmate_mode:
        checkmate(pcts, seed, time_limit, json_path, console)
    else:
        table1(pcts, seed, time_limit, json_path, console)


if __name__ == "__main__":
    main()
