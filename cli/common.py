"""Shared CLI plumbing: one error path, budget options, result tables.

Results go to stdout, diagnostics to stderr. Every error a user can cause is a
RecompilerError (or a click usage error) and becomes one readable line and an
exit code; heavy imports stay inside the commands so ``recompile --help`` is instant.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click

EXIT_USAGE = 2       # bad input: missing file, malformed graph, bad budget, unknown solver
EXIT_INFEASIBLE = 3  # the plan was written but does not meet the budget


def console():
    """The stdout console; wide when piped so tables are not squeezed to 80 columns."""
    from rich.console import Console

    c = Console(highlight=False)
    return c if c.is_terminal else Console(highlight=False, width=200)


def error_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A diagnostic line on stderr, never wrapped."""
    error_console().print(message)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    click.echo(click.style("error: ", fg="red", bold=True) + " ".join(str(message).split()), err=True)
    sys.exit(code)


@contextmanager
def user_errors():
    """Turn RecompilerError (and unreadable files) into one line on stderr, exit code 2."""
    from recompiler.errors import RecompilerError

    try:
        yield
    except RecompilerError as e:
        fail(str(e))
    except (OSError, ValueError) as e:
        # Files we cannot open, and values a library rejects: still the user's input.
        fail(f"{type(e).__name__}: {e}")


@contextmanager
def status(message: str):
    """A spinner on stderr while something slow runs (quiet when stderr is not a terminal)."""
    console = error_console()
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


def plan_table(plan, title: str):
    """The rich table every planning command prints: baseline vs plan."""
    from rich.table import Table

    from recompiler.budget import format_bytes

    t = Table(title=title, show_header=True, header_style="bold")
    for col in ("baseline peak", "budget", "plan peak", "% of baseline", "cost increase", "solve s", "feasible"):
        t.add_column(col, justify="right")
    t.add_row(format_bytes(plan.baseline_peak_bytes), format_bytes(plan.budget_bytes), format_bytes(plan.peak_bytes),
              f"{100 * plan.peak_fraction:.1f}%", f"{100 * plan.overhead:.2f}%", f"{plan.solve_seconds:.2f}",
              "[green]yes[/]" if plan.feasible else "[red]no[/]")
    return t


def infeasible_message(plan, floor_bytes: int) -> str:
    from recompiler.budget import format_bytes

    return (f"budget {format_bytes(plan.budget_bytes)} not reached: best peak found "
            f"{format_bytes(plan.peak_bytes)} ({100 * plan.peak_fraction:.1f}% of baseline); no schedule can go "
            f"below {format_bytes(floor_bytes)} ({100 * floor_bytes / plan.baseline_peak_bytes:.1f}%)")


def lowerings_table(entries):
    """The lowerings a plan chose, one line per group (``recompile plan`` and ``recompile show``)."""
    from rich.table import Table

    t = Table(title="lowerings chosen", header_style="bold", title_justify="left")
    for col in ("group", "module", "kind", "option", "exact"):
        t.add_column(col)
    for e in entries:
        t.add_row(e["group"], e.get("module") or "(top level)", e["kind"], e["option"],
                  "yes" if e.get("exact", True) else "[yellow]no[/]")
    return t
