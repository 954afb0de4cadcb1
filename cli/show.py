"""``recompile show PLAN.json``: print a saved plan's summary and what it recomputes."""

from __future__ import annotations

from collections import Counter

import click

from .common import console, lowerings_table, plan_table, recomputed_ids, user_errors, verbose_option


@click.command("show")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True, help="Recomputed nodes to list.")
@verbose_option
def show_command(plan_file, top):
    """Print the plan in PLAN_FILE (written by `recompile plan` or `recompile solve`)."""
    with user_errors():
        from rich.table import Table

        from recompiler.plan import load_plan

        plan = load_plan(plan_file)  # checks every field, and the ids against node_names
    out = console()
    out.print(plan_table(plan, f"{plan.graph} — {plan.solver}"))
    counts = Counter(plan.schedule)
    names = plan.stats.get("node_names")
    paths = plan.stats.get("module_paths")
    ids = recomputed_ids(plan.schedule)
    extra = sum(counts[v] - 1 for v in ids)
    # One run's compute per recomputed node (plans written by `recompile plan`/`solve`): rows
    # go by the compute they add, so a free view run six times does not head the list.
    # Older plans have no costs: rows then follow the schedule (order of first recomputation).
    compute = plan.stats.get("recomputed_compute")
    if not (isinstance(compute, list) and len(compute) == len(ids)
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in compute)):
        compute = None
    captured = "device_profile" in plan.stats  # a captured model's costs are seconds
    rows = [(v, counts[v] - 1, None if compute is None else (counts[v] - 1) * compute[i]) for i, v in enumerate(ids)]
    if compute is not None:
        rows.sort(key=lambda r: -r[2])  # stable: ties keep schedule order
    t = Table(title=f"recomputed: {len(ids)} nodes, {extra} extra runs"
                    + ("" if compute is not None else " (in schedule order)"), header_style="bold")
    t.add_column("node")
    t.add_column("module")
    t.add_column("extra runs", justify="right")
    if compute is not None:
        t.add_column("added ms" if captured else "added cost", justify="right")
        t.add_column("% of overhead", justify="right")
    added_total = plan.cost - plan.baseline_cost
    for v, runs, added in rows[:top]:
        cells = [names[v] if names else str(v), (paths[v] or "(top level)") if paths else "", str(runs)]
        if compute is not None:
            cells.append(f"{added * 1e3:.3f}" if captured else f"{added:g}")
            cells.append(f"{100 * added / added_total:.1f}%" if added_total > 0 else "")
        t.add_row(*cells)
    if len(rows) > top:
        t.add_row(f"… {len(rows) - top} more nodes (--top)", "", str(sum(r[1] for r in rows[top:])),
                  *(["", ""] if compute is not None else []))
    out.print(t)
    # stats is free-form (load_plan checks only what indexing needs): read it defensively
    breakdown = plan.stats.get("memory_breakdown")
    if isinstance(breakdown, dict) and plan.peak_bytes and all(
            isinstance(b, int) and not isinstance(b, bool) for b in breakdown.values()):
        from recompiler.budget import format_bytes

        optimizer = plan.stats.get("optimizer")
        out.print("at the peak: " + ", ".join(
            f"{str(kind).replace('_', ' ')}{f' ({optimizer})' if kind == 'optimizer_state' and optimizer else ''} "
            f"{format_bytes(b)} ({100 * b / plan.peak_bytes:.1f}%)" for kind, b in breakdown.items()))
    if "random_ops" in plan.stats:  # plans of captured models (`recompile plan`)
        rng = plan.stats.get("rng", "pin")
        out.print(f"random ops: {plan.stats.get('random_recomputed', '?')} of {plan.stats['random_ops']} recomputed "
                  f"(replayed from their seeds)" if rng == "replay" else "random ops: pinned (computed once)")
    groups = plan.stats.get("variant_groups")
    if plan.lowerings:
        out.print(lowerings_table(plan.lowerings))
    elif isinstance(groups, list) and groups:
        out.print(f"lowerings: none of {len(groups)} groups lowered")
