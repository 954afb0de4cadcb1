import json

import pytest

from recompiler.builders import training_chain
from recompiler.errors import GraphFormatError, InvalidGraph
from recompiler.plan import Plan, load_plan, make_plan, recomputed_names


def test_make_plan_judges_with_simulate(tmp_path):
    g = training_chain(3)
    plan = make_plan(g, [0, 1, 2, 3, 4, 5, 0, 6], solver="hand", budget_bytes=4)
    assert plan.recomputed == ["f0"] and plan.cost == 8 and plan.overhead == pytest.approx(1 / 7)
    assert plan.feasible == (plan.peak_bytes <= 4)
    path = tmp_path / "plan.json"
    plan.save(path)
    on_disk = json.loads(path.read_text())
    for key in ("graph", "solver", "budget_bytes", "baseline_peak_bytes", "peak_bytes", "baseline_cost", "cost",
                "overhead", "solve_seconds", "schedule", "variant", "recomputed", "feasible"):
        assert key in on_disk
    assert load_plan(path) == plan


def test_invalid_schedule_is_a_solver_bug():
    with pytest.raises(InvalidGraph, match="invalid schedule"):
        make_plan(training_chain(2), [1, 0], solver="broken", budget_bytes=1)


def test_recomputed_names_in_order():
    g = training_chain(3)
    assert recomputed_names(g, [0, 1, 1, 0]) == ["f1", "f0"]


def test_load_plan_errors(tmp_path):
    with pytest.raises(GraphFormatError, match="not found"):
        load_plan(tmp_path / "x.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(GraphFormatError, match="lacks field"):
        load_plan(tmp_path / "x.json")
    assert Plan.__dataclass_fields__.keys() >= {"schedule", "variant"}
