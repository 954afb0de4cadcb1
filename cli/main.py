"""The ``recompile`` console script: a click group; each command lives in its own module."""

from __future__ import annotations

import click

from .bench import bench_command
from .check import check_command
from .plan import plan_command
from .show import show_command
from .solve import solve_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recompiler")
def cli():
    """recompiler: plan activation recomputation for PyTorch training under a memory budget."""


@cli.command("solvers")
def solvers_command():
    """List the registered solvers."""
    from recompiler.solvers import DEFAULT_SOLVER, known_solvers

    for name in known_solvers():
        click.echo(f"{name}{'  (default)' if name == DEFAULT_SOLVER else ''}")


cli.add_command(solve_command)
cli.add_command(plan_command)
cli.add_command(check_command)
cli.add_command(show_command)
cli.add_command(bench_command)


def main():
    # standalone_mode turns click's own usage errors into exit code 2 with one message.
    cli(prog_name="recompile")


if __name__ == "__main__":
    main()
