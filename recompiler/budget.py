"""Budgets: ``"25%"`` of the baseline peak, or bytes with units (``"12GiB"``, ``"500MB"``, ``1000``).

>>> parse_budget("50%", baseline_peak=1000)
500
>>> parse_budget("1.5KiB", baseline_peak=10**9)
1536
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from .errors import BudgetError

#: Byte counts are int64 in the native solvers and in simulate: a budget must be below 2**63.
MAX_BUDGET_BYTES = 2**63 - 1

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}
_PATTERN = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([A-Za-z%]*)\s*$")


def parse_budget(spec: str | int | float, *, baseline_peak: int) -> int:
    """Turn a budget spec into bytes. Percentages are of ``baseline_peak`` and must be in (0, 100].

    The number is read exactly (as a fraction, never through a float), so ``"9223372036854775807"``
    stays that many bytes; a size must come to at least 1 byte and stay below 2**63 bytes.
    """
    if isinstance(spec, bool):
        raise BudgetError(f"budget {spec!r} is not a size")
    if isinstance(spec, int):
        value, unit = Fraction(spec), ""
    elif isinstance(spec, float):
        if not math.isfinite(spec):
            raise BudgetError(f"budget {spec!r} is not a finite size")
        value, unit = Fraction(spec), ""
    else:
        m = _PATTERN.match(str(spec))
        if not m:
            raise BudgetError(f"cannot read budget {spec!r}: use a percentage like 25% or a size like 12GiB")
        # Fraction reads "1e400" exactly: no float overflow to inf, no rounding of 19-digit sizes
        value, unit = Fraction(m.group(1)), m.group(2).lower()
    if unit == "%":
        if not 0 < value <= 100:
            raise BudgetError(f"budget {spec} is out of range: a percentage must be above 0% and at most 100%")
        return int(baseline_peak * value / 100)
    if unit not in _UNITS:
        raise BudgetError(f"unknown unit {unit!r} in budget {spec!r}: use %, B, KB, MB, GB, KiB, MiB or GiB")
    if value <= 0:
        raise BudgetError(f"budget {spec} must be positive")
    size = value * _UNITS[unit]
    if size > MAX_BUDGET_BYTES:
        raise BudgetError(f"budget {spec} is too large: sizes must be below 2^63 bytes (8 EiB)")
    if size < 1:
        # int() would make it 0 bytes, a budget no plan can meet, and say nothing
        raise BudgetError(f"budget {spec} is less than 1 byte")
    return int(size)


def format_bytes(n: float) -> str:
    """Human-readable bytes with binary units: ``format_bytes(1536) == '1.50 KiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"
