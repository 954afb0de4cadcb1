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


def _saved(tmp_path, **changes):
    plan = make_plan(training_chain(3), [0, 1, 2, 3, 4, 5, 0, 6], solver="hand", budget_bytes=4)
    d = plan.to_dict()
    d["stats"] = {"node_names": list(training_chain(3).names)}
    d.update(changes)
    return d


@pytest.mark.parametrize("case,change,msg", [
    ("array", None, "must be an object, not an array"),
    ("schedule a number", {"schedule": 5}, "'schedule' must be a list of node ids"),
    ("peak_bytes a string", {"peak_bytes": "x"}, "'peak_bytes' must be a non-negative integer, not a string"),
    ("ids beyond node_names", {"schedule": [0, 1, 99]}, "names node 99, but stats.node_names has only 7"),
    ("feasible a string", {"feasible": "yes"}, "'feasible' must be true or false"),
    ("stats a list", {"stats": []}, "'stats' must be an object"),
    ("lowerings of numbers", {"lowerings": [1]}, "'lowerings' must be a list of objects"),
])
def test_load_plan_rejects_an_array_a_numeric_schedule_a_string_peak_and_ids_beyond_node_names(
        tmp_path, case, change, msg):
    d = [1, 2] if change is None else _saved(tmp_path, **change)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError, match=msg):
        load_plan(path)
    assert load_plan(_write(tmp_path / "ok.json", _saved(tmp_path))).schedule == [0, 1, 2, 3, 4, 5, 0, 6]


def _write(path, d):
    path.write_text(json.dumps(d))
    return path
