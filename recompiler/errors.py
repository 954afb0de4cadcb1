"""The exception hierarchy: every error a user can cause is a ``RecompilerError``.

The CLI catches ``RecompilerError`` and prints its message as one line; anything
else is a bug in recompiler and keeps its traceback.
"""


class RecompilerError(Exception):
    """Base class of every error recompiler raises on purpose."""


class InvalidGraph(RecompilerError):
    """A node-cost graph breaks the contract of DESIGN.md (cycle, bad id, negative size...)."""


class GraphFormatError(RecompilerError):
    """A graph or plan file cannot be read: missing, malformed JSON, unknown format."""


class OutputPathError(RecompilerError):
    """A file recompiler was asked to write cannot be written there (missing folder, not a file...)."""


class BudgetError(RecompilerError):
    """A budget specification that cannot be understood or is out of range."""


class InfeasibleBudget(RecompilerError):
    """No plan can reach the budget; the message names the smallest reachable peak."""

    def __init__(self, message: str, *, floor_bytes: int | None = None, best_peak_bytes: int | None = None):
        super().__init__(message)
        self.floor_bytes = floor_bytes
        self.best_peak_bytes = best_peak_bytes


class UnknownSolver(RecompilerError):
    """A solver name that is not registered; the message lists the known ones."""


class SolverOptionError(RecompilerError):
    """An option a solver does not take, or a value it cannot use."""


class NativeUnavailable(RecompilerError):
    """The C++ extension ``recompiler._native`` is not built."""


class ModelFileError(RecompilerError):
    """A model file that cannot be loaded: missing, raising on import, or defining no model."""


class CaptureError(RecompilerError):
    """A model whose training step cannot be traced into one joint graph (or raises while traced)."""


class ModelTooLarge(RecompilerError):
    """An exact model (Checkmate MILP/LP) would exceed its memory cap; the message names its size."""


class PlanOnly(RecompilerError):
    """A model without data (meta device or fake tensors): it can be planned, not run or checked."""

    def __init__(self, what: str = "run"):
        super().__init__(f"this model is on the meta device (or made of fake tensors): it can only be planned "
                         f"(recompile plan / capture + solve), not {what}")


class OptimizerError(RecompilerError):
    """An optimizer option recompiler's optimizers cannot use (``order`` < 1, ``lr`` < 0, ...)."""
