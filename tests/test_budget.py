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


# issue 20: budgets a native solver cannot hold, or that round to nothing, are BudgetErrors here
@pytest.mark.parametrize("spec,msg", [
    ("1e400", "too large"), ("1e19", "too large"), (str(2**63), "too large"), ("8EiB", "unknown unit"),
    (2**63, "too large"), (float("inf"), "not a finite size"), (float("nan"), "not a finite size"),
    ("0.5", "less than 1 byte"), (0.5, "less than 1 byte"), ("0.4B", "less than 1 byte"),
])
def test_budget_1e400_1e19_and_0_5_are_budget_errors(spec, msg):
    with pytest.raises(BudgetError, match=msg):
        parse_budget(spec, baseline_peak=1000)


def test_budget_is_read_exactly_up_to_2_63():
    # through a float these would round: 2**63 - 1 to 2**63 (over the limit), 1e18 + 1 to 1e18
    assert parse_budget(str(2**63 - 1), baseline_peak=1) == 2**63 - 1
    assert parse_budget("1000000000000000001", baseline_peak=1) == 10**18 + 1
    assert parse_budget("1.5", baseline_peak=1) == 1
    assert parse_budget("50%", baseline_peak=2**62 + 2) == 2**61 + 1
