"""The ``recompile`` console script: a click group; each command lives in its own module."""

from __future__ import annotations

import click

from .bench import bench_command
from .common import EXIT_USAGE, fail, reset_verbose, verbose_option
from .check import check_command
from .plan import plan_command
from .show import show_command
from .solve import solve_command


class OneLineErrors(click.Group):
    """click's own usage errors (a folder given as the file, an unknown option) as our one line.

    click prints "Usage: ... / Try ... --help / Error: ..." over three lines and exits 1 for
    its file errors; every CLI error here is one ``error:`` line on stderr and exit code 2.
    """

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        reset_verbose()
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            raise SystemExit(1) from None
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()  # a bare `recompile` asks for the help text: show it as click does
            raise SystemExit(e.exit_code) from None
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            hint = f" (see {ctx.command_path} --help)" if isinstance(e, click.UsageError) and ctx else ""
            fail(f"{where}{e.format_message()}{hint}", EXIT_USAGE)
        # without standalone mode click returns --help's and ctx.exit()'s code instead of exiting
        raise SystemExit(rv if isinstance(rv, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recompiler")
@verbose_option
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
