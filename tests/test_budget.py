import pytest

from recompiler.budget import format_bytes, parse_budget
from recompiler.errors import BudgetError


@pytest.mark.parametrize("spec,expected", [
    ("50%", 500), ("100%", 1000), ("0.5%", 5), ("12GiB", 12 * 2**30), ("500MB", 500 * 10**6),
    ("1000", 1000), (1234, 1234), ("1.5 KiB", 1536), ("2g", 2 * 2**30),
])
def test_parse(spec, expected):
    assert parse_budget(spec, baseline_peak=1000) == expected


@pytest.mark.parametrize("spec,msg", [
    ("150%", "out of range"), ("0%", "out of range"), ("-1", "must be positive"), ("abc", "cannot read"),
    ("10 parsecs", "unknown unit"), ("5XB", "unknown unit"), ("", "cannot read"), (True, "not a size"),
])
def test_bad_budgets(spec, msg):
    with pytest.raises(BudgetError, match=msg):
        parse_budget(spec, baseline_peak=1000)


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(3 * 2**30) == "3.00 GiB"
