"""Compare a bench run with the recorded expectations (bench_models/expected/<suite>.json).

A row regresses when, for the same model × budget × solver:

* its plan was judged before and is now invalid, errors, or is no longer run;
* it met its budget before and does not now;
* it missed its budget before and now, and its peak rose by more than :data:`OVERHEAD_SLACK_PP`
  percentage points of the baseline (over the budget the peak is what a plan is judged by);
* its overhead rose by more than :data:`OVERHEAD_SLACK_PP` percentage points — except where the
  budget was missed before and now and either lies below the reachable floor (the row was solved
  for the floor: only its peak counts, and the cost there is seed noise) or the peak fell by more
  than :data:`PEAK_TIE_PP` (a lower peak is worth its cost, as in FastSA's own ranking);
* with ``times=True`` only: its solve time, as a ratio to the calibration solve timed in the
  same process, rose above :data:`TIME_FACTOR` × the expected ratio. Expected ratios below
  :data:`MIN_RATIO` count as that much: a solve shorter than two calibration solves (~0.3 s) is
  noise on a shared 2-core machine, not a measurement.

Times are a benchmark's business, not a test's: the test suite compares plans only (a loaded CI
machine once made an OR-Tools LP 10× its calibration), and ``recompile bench --suite ci --check``,
run on a quiet machine, compares the times too. ``--update-expected`` rewrites the expectations
on purpose.

>>> compare({"rows": []}, {"rows": []})
[]
"""

from __future__ import annotations

import json
from pathlib import Path

EXPECTED_DIR = Path(__file__).resolve().parent / "expected"
OVERHEAD_SLACK_PP = 1.0
#: A missed budget's peak this much lower (pp of the baseline) buys its overhead.
PEAK_TIE_PP = 0.1
TIME_FACTOR = 3.0
MIN_RATIO = 2.0


def expected_path(suite: str) -> Path:
    return EXPECTED_DIR / f"{suite}.json"


def load_expected(suite: str) -> dict:
    return json.loads(expected_path(suite).read_text())


def _key(row: dict) -> tuple[str, str, str]:
    return row["model"], row["budget"], row["solver"]


def _ratio(row: dict) -> float:
    calib = row.get("calibration_seconds") or 0.0
    return row["solve_seconds"] / calib if calib > 0 else 0.0


def compare(expected: dict, actual: dict, *, times: bool = True) -> list[str]:
    """Every regression of ``actual`` against ``expected`` (both ``SuiteResult.to_dict()`` forms), one line each.

    ``times=False`` leaves solve times out (plans only).
    """
    now = {_key(r): r for r in actual["rows"]}
    problems: list[str] = []
    for old in expected["rows"]:
        key = _key(old)
        where = f"{key[0]} @ {key[1]} / {key[2]}"
        new = now.get(key)
        if old["status"] != "ok":
            continue  # skipped before: nothing to hold it to
        if new is None:
            problems.append(f"{where}: no longer run")
            continue
        if new["status"] != "ok":
            problems.append(f"{where}: was a valid plan, now {new['status']}: {new['reason']}")
            continue
        if old["feasible"] and not new["feasible"]:
            problems.append(f"{where}: met its budget before (peak {old['peak_pct']:.1f}%), now misses it "
                            f"(peak {new['peak_pct']:.1f}%)")
        missed = not old["feasible"] and not new["feasible"]
        if missed and new["peak_pct"] > old["peak_pct"] + OVERHEAD_SLACK_PP:
            problems.append(f"{where}: missed its budget at peak {old['peak_pct']:.1f}%, now at {new['peak_pct']:.1f}% "
                            f"(allowed: +{OVERHEAD_SLACK_PP:g} pp)")
        below_floor = "solved_for_bytes" in (old.get("stats") or {})
        peak_fell = new["peak_pct"] < old["peak_pct"] - PEAK_TIE_PP
        if not (missed and (below_floor or peak_fell)) and new["overhead_pct"] > old["overhead_pct"] + OVERHEAD_SLACK_PP:
            problems.append(f"{where}: overhead rose from {old['overhead_pct']:.2f}% to {new['overhead_pct']:.2f}% "
                            f"(allowed: +{OVERHEAD_SLACK_PP:g} pp)")
        old_ratio, new_ratio = max(_ratio(old), MIN_RATIO), _ratio(new)
        if times and new_ratio > TIME_FACTOR * old_ratio:
            problems.append(f"{where}: solve time {new['solve_seconds']:.2f} s is {new_ratio:.1f}× the calibration "
                            f"solve, expected at most {TIME_FACTOR:g} × {old_ratio:.1f}×")
    return problems
