"""Shared CLI plumbing: one error path, budget options, result tables.

Results go to stdout, diagnostics to stderr. Every error a user can cause is a
RecompilerError (or a click usage error) and becomes one readable line and an
exit code; heavy imports stay inside the commands so ``recompile --help`` is instant.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from contextlib import contextmanager

import click

EXIT_USAGE = 2       # bad input: missing file, malformed graph, bad budget, unknown solver
EXIT_INFEASIBLE = 3  # the plan was written but does not meet the budget


_VERBOSE = False


def _set_verbose(ctx, param, value):
    global _VERBOSE
    if value:
        _VERBOSE = True


def verbose_option(f):
    """``--verbose``: a failing build()/capture prints its full traceback before the one-line error.

    Accepted before the command (``recompile --verbose plan ...``) and after it
    (``recompile plan ... --verbose``), so it is where a user reaches for it.
    """
    return click.option("--verbose", "-v", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_verbose,
                        help="On an error, print its full traceback (and torch's own logs) too.")(f)


def verbose() -> bool:
    return _VERBOSE


def reset_verbose() -> None:
    """Each invocation starts quiet (one process may run several: tests, CliRunner)."""
    global _VERBOSE
    _VERBOSE = False


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


def warn(message: str) -> None:
    say(f"[bold yellow]warning:[/] {message}")


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    click.echo(click.style("error: ", fg="red", bold=True) + " ".join(str(message).split()), err=True)
    sys.exit(code)


@contextmanager
def user_errors():
    """Turn RecompilerError (and unreadable files) into one line on stderr, exit code 2.

    With ``--verbose`` the full traceback (with its causes: the user's code inside torch's
    tracing) is printed first; the last line is still the one-line error.
    """
    from recompiler.errors import RecompilerError

    try:
        yield
    except RecompilerError as e:
        _print_traceback(e)
        fail(describe_error(e))
    except (OSError, ValueError) as e:
        # Files we cannot open, and values a library rejects: still the user's input.
        _print_traceback(e)
        fail(f"{type(e).__name__}: {e}")


def _print_traceback(e: BaseException) -> None:
    if _VERBOSE:
        traceback.print_exception(e, file=sys.stderr)
        sys.stderr.flush()


# ------------------------------------------------------------------ what a capture error was caused by
def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and its causes, outermost first (dynamo wraps its errors several times)."""
    out, seen, x = [], set(), e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        out.append(x)
        x = getattr(x, "inner_exception", None) or x.__cause__ or x.__context__
    return out


def _is_library_file(filename: str) -> bool:
    """Frames of torch, recompiler, the standard library or site-packages are not the user's."""
    import recompiler

    path = os.path.abspath(filename)
    roots = [os.path.dirname(os.path.abspath(recompiler.__file__)), os.path.dirname(os.path.abspath(__file__)),
             os.path.dirname(os.__file__)]
    return (filename.startswith("<") or "site-packages" in path or "dist-packages" in path
            or any(path.startswith(r + os.sep) for r in roots))


def _user_frame(chain: list[BaseException]):
    """The innermost frame of the user's own code: dynamo's recorded stack, else a traceback."""
    for x in chain:
        frames = [f for f in getattr(x, "real_stack", None) or [] if not _is_library_file(f.filename)]
        if frames:
            return frames[-1]
    for x in reversed(chain):
        frames = [f for f in traceback.extract_tb(x.__traceback__) if not _is_library_file(f.filename)]
        if frames:
            return frames[-1]
    return None


def _where(frame) -> str:
    path = frame.filename
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:
        pass
    line = (frame.line or "").strip()
    return f"{path}:{frame.lineno}" + (f" (`{line}`)" if line else "")


def describe_error(e: BaseException) -> str:
    """The error's message, plus what a capture or model-file error hides: its cause and source line.

    Dynamo reports a shape mismatch as "RuntimeError when making fake tensor call"; the
    actual reason ("a and b must have same reduction dim ...") is the innermost exception, and
    the line of the model that broke the graph is in dynamo's recorded user stack.
    """
    from recompiler.errors import CaptureError, ModelFileError

    message = " ".join(str(e).split())
    if not isinstance(e, (CaptureError, ModelFileError)) or e.__cause__ is None:
        return message
    chain = _chain(e.__cause__)
    # The innermost exception that is not one of dynamo's wrappers, if it is what a wrapper was
    # raised *from* (its __cause__): an exception only in __context__ may be one dynamo handled.
    caused = {id(x.__cause__) for x in chain if x.__cause__ is not None}
    root = next((x for x in reversed(chain) if not type(x).__module__.startswith("torch._dynamo")
                 and id(x) in caused), None)
    if root is not None and root is not chain[0]:
        cause = " ".join(str(root).split())
        if cause and cause not in message:
            message += f"; caused by {type(root).__name__}: {cause}"
    frame = _user_frame(chain)
    if frame is not None:
        message += f" at {_where(frame)}"
    if isinstance(e, CaptureError) and any(type(x).__name__ == "Unsupported" for x in chain) and frame is not None:
        message += ("; `recompile plan` needs the step as one graph (torch.compile(model, backend=\"recompiler\") "
                    "plans each graph of a model with graph breaks)")
    return message


@contextmanager
def quiet_torch_logs():
    """Hide torch's own error logs while we trace (they repeat, in 19 lines, what our one line says).

    torch's loggers are children of "torch" with no level of their own, so raising that one
    logger's level silences them; ``--verbose`` keeps them.
    """
    import logging

    if _VERBOSE:
        yield
        return
    logger = logging.getLogger("torch")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


# ------------------------------------------------------------------ option types and output paths
class Seconds(click.ParamType):
    """A time limit: a positive, finite number of seconds (nan, inf and -1 are refused)."""

    name = "seconds"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:
            try:
                seconds = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r} is not a positive, finite number of seconds (leave the option out for the "
                      "solver's own limit)", param, ctx)
        return seconds


SECONDS = Seconds()


def check_output(path) -> None:
    """An output path that cannot be written fails now, before any slow work (and creates nothing)."""
    if path:
        from recompiler.fileio import check_output_path

        check_output_path(path)


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
    """The rich table every planning command prints: baseline vs plan (the words of `recompile plan`)."""
    from rich.table import Table

    from recompiler.budget import format_bytes

    t = Table(title=title, show_header=True, header_style="bold")
    for col in ("baseline peak", "budget", "planned peak", "% of baseline", "estimated overhead", "solve s",
                "feasible"):
        t.add_column(col, justify="right")
    t.add_row(format_bytes(plan.baseline_peak_bytes), format_bytes(plan.budget_bytes), format_bytes(plan.peak_bytes),
              f"{100 * plan.peak_fraction:.1f}%", f"{100 * plan.overhead:.2f}%", f"{plan.solve_seconds:.2f}",
              "[green]yes[/]" if plan.feasible else "[red]no[/]")
    return t


def record_recompute_costs(plan, graph) -> None:
    """Store one run's compute of each recomputed node (in ``plan.recomputed``'s order) for `show`.

    A plan JSON has no costs per node, so `recompile show` could only order nodes by how often
    they run, which puts free views (a transpose run 6 times) above the matmuls that cost.
    """
    costs = graph.resolve(plan.variant).compute
    plan.stats["recomputed_compute"] = [float(costs[v]) for v in recomputed_ids(plan.schedule)]


def recomputed_ids(schedule) -> list[int]:
    """Ids that run more than once, in order of first recomputation (as ``Plan.recomputed``)."""
    seen, out = set(), {}
    for v in schedule:
        if v in seen:
            out.setdefault(v, None)
        seen.add(v)
    return list(out)


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
