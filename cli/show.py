"""``recompile show PLAN.json``: print a saved plan's summary and what it recomputes."""

from __future__ import annotations

from collections import Counter

import click

from .common import console, lowerings_table, plan_table, user_errors


@click.command("show")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--top", default=20, show_default=True, help="Recomputed nodes to list.")
def show_command(plan_file, top):
    """Print the plan in PLAN_FILE (written by `recompile plan` or `recompile solve`)."""
    with user_errors():
        from rich.table import Table

        from recompiler.plan import load_plan

        plan = load_plan(plan_file)
    out = console()
    out.print(plan_table(plan, f"{plan.graph} — {plan.solver}"))
    counts = Counter(plan.schedule)
    names = plan.stats.get("node_names")
    paths = plan.stats.get("module_paths")
    t = Table(title=f"recomputed: {len(plan.recomputed)} nodes, {len(plan.schedule) - len(counts)} extra steps",
              header_style="bold")
    t.add_column("node")
    t.add_column("module")
    t.add_column("runs", justify="right")
    for v, runs in sorted(((v, c) for v, c in counts.items() if c > 1), key=lambda x: -x[1])[:top]:
        t.add_row(names[v] if names else str(v), paths[v] if paths else "", str(runs))
    out.print(t)
    if "random_ops" in plan.stats:  # plans of captured models (`recompile plan`)
        rng = plan.stats.get("rng", "pin")
        out.print(f"random ops: {plan.stats['random_recomputed']} of {plan.stats['random_ops']} recomputed "
                  f"(replayed from their seeds)" if rng == "replay" else "random ops: pinned (computed once)")
    if plan.lowerings:
        out.print(lowerings_table(plan.lowerings))
    elif plan.stats.get("variant_groups"):
        out.print(f"lowerings: none of {len(plan.stats['variant_groups'])} groups lowered")
