"""The ci suite against bench_models/expected/ci.json, and the comparison rules themselves."""

import time

import pytest

from bench_models import regression, runner


def test_ci_suite_has_not_regressed():
    """Re-run the whole ci suite (fixed seeds and iteration counts) and hold its plans to their expectations.

    Solve times are left to ``recompile bench --suite ci --check`` on a quiet machine: a test run
    shares the machine with whatever else is running.
    """
    expected = regression.load_expected("ci")
    start = time.perf_counter()
    result = runner.run_suite("ci", models=list(expected["models"]), budgets=expected["budgets"],
                              solvers=expected["solvers"])
    problems = regression.compare(expected, result.to_dict(), times=False)
    assert not problems, "\n".join(problems)
    assert time.perf_counter() - start < 600, "the ci suite must run in under 10 minutes"
    # the suite covers every kind of model and judged plans of every solver it was recorded with
    assert {"resnet50", "gpt2", "graph:vgg16"} <= set(expected["models"])
    ok = {r.solver for r in result.rows if r.status == "ok"}
    assert ok == set(expected["solvers"])


def _row(**kw):
    row = {"model": "m", "budget": "50%", "solver": "s", "status": "ok", "reason": "", "peak_pct": 40.0,
           "overhead_pct": 10.0, "solve_seconds": 2.0, "calibration_seconds": 0.1, "feasible": True}
    row.update(kw)
    return row


def _check(old, new):
    return regression.compare({"rows": [old]}, {"rows": [new]})


def test_compare_accepts_the_same_run_and_small_drift():
    assert _check(_row(), _row()) == []
    assert _check(_row(), _row(overhead_pct=10.9, solve_seconds=5.9)) == []   # < +1 pp, < 3x
    assert _check(_row(), _row(overhead_pct=3.0, solve_seconds=0.5)) == []    # better is fine
    # the time is a ratio to the calibration: a machine twice as slow is no regression
    assert _check(_row(), _row(solve_seconds=8.0, calibration_seconds=0.2)) == []


@pytest.mark.parametrize("change, words", [
    (dict(status="invalid", reason="solver 's' produced an invalid schedule"), "now invalid"),
    (dict(status="error", reason="boom"), "now error"),
    (dict(feasible=False, peak_pct=55.0), "misses it"),
    (dict(overhead_pct=11.5), "overhead rose"),
    (dict(solve_seconds=6.5), "solve time"),
])
def test_compare_catches_each_kind_of_regression(change, words):
    problems = _check(_row(), _row(**change))
    assert len(problems) == 1 and words in problems[0] and "m @ 50% / s" in problems[0]


def test_compare_holds_a_missed_budget_to_its_peak():
    missed = _row(feasible=False, peak_pct=55.0)
    assert _check(missed, _row(feasible=False, peak_pct=55.9)) == []
    assert _check(missed, _row(feasible=False, peak_pct=52.0, overhead_pct=10.5)) == []   # lower is fine
    problems = _check(missed, _row(feasible=False, peak_pct=56.5))
    assert len(problems) == 1 and "missed its budget at peak 55.0%, now at 56.5%" in problems[0]


def test_compare_judges_a_missed_budget_by_its_peak_first():
    missed = _row(feasible=False, peak_pct=55.0, overhead_pct=10.0)
    # the same peak at a higher cost is a regression ...
    assert "overhead rose" in _check(missed, _row(feasible=False, peak_pct=55.0, overhead_pct=12.0))[0]
    # ... a lower peak is worth its cost ...
    assert _check(missed, _row(feasible=False, peak_pct=54.0, overhead_pct=12.0)) == []
    # ... and below the reachable floor (solved for the floor) only the peak counts
    floor = dict(missed, stats={"solved_for_bytes": 123})
    assert _check(floor, _row(feasible=False, peak_pct=55.0, overhead_pct=14.0)) == []
    assert "now at 56.5%" in _check(floor, _row(feasible=False, peak_pct=56.5))[0]


def test_compare_without_times_ignores_only_the_time():
    slow = _row(solve_seconds=60.0)
    assert _check(_row(), slow) != []
    assert regression.compare({"rows": [_row()]}, {"rows": [slow]}, times=False) == []
    worse = _row(solve_seconds=60.0, overhead_pct=15.0)
    problems = regression.compare({"rows": [_row()]}, {"rows": [worse]}, times=False)
    assert len(problems) == 1 and "overhead rose" in problems[0]


def test_compare_rules_for_missing_skipped_and_tiny_times():
    assert "no longer run" in regression.compare({"rows": [_row()]}, {"rows": []})[0]
    assert _check(_row(status="skipped", feasible=False), _row(status="error")) == []
    assert _check(_row(feasible=False), _row(feasible=False)) == []
    # milliseconds are noise on a shared machine: an expected ratio counts as at least MIN_RATIO
    assert regression.MIN_RATIO == 2.0
    assert _check(_row(solve_seconds=0.001), _row(solve_seconds=0.59)) == []   # 5.9x calibration < 3 x 2
    assert _check(_row(solve_seconds=0.001), _row(solve_seconds=0.61)) != []


def test_expected_file_is_a_ci_run_with_rows_for_every_model():
    expected = regression.load_expected("ci")
    assert expected["suite"] == "ci"
    keys = {(r["model"], r["budget"], r["solver"]) for r in expected["rows"]}
    assert len(keys) == len(expected["models"]) * len(expected["budgets"]) * len(expected["solvers"])
