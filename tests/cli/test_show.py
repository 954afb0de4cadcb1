from click.testing import CliRunner

from recompiler.builders import training_chain
from recompiler.cli.main import cli
from recompiler.solvers import solve


def test_show_prints_plan_and_recomputed(tmp_path):
    plan = solve(training_chain(12), "50%", "chen-sqrtn")
    plan.save(tmp_path / "p.json")
    r = CliRunner().invoke(cli, ["show", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    assert "chen-sqrtn" in r.output and "recomputed" in r.output
    assert f"{len(plan.recomputed)} nodes" in r.output


def test_show_missing_file():
    r = CliRunner().invoke(cli, ["show", "nope.json"])
    assert r.exit_code == 2 and "not found" in r.output


# ------------------------------------------------------------------ issue 20
import json  # noqa: E402

import pytest  # noqa: E402


def _plan_dict():
    plan = solve(training_chain(12), "50%", "chen-sqrtn")
    d = plan.to_dict()
    d["stats"]["node_names"] = list(training_chain(12).names)
    return d


@pytest.mark.parametrize("case,edit,msg", [
    ("an array", lambda d: [1, 2], "must be an object, not an array"),
    ("schedule a number", lambda d: {**d, "schedule": 5}, "'schedule' must be a list of node ids"),
    ("peak_bytes a string", lambda d: {**d, "peak_bytes": "x"}, "'peak_bytes' must be a non-negative integer"),
    ("ids beyond node_names", lambda d: {**d, "schedule": d["schedule"] + [999]}, "names node 999"),
])
def test_show_on_an_array_a_numeric_schedule_a_string_peak_or_ids_beyond_node_names_is_one_line_exit_2(
        tmp_path, case, edit, msg):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(edit(_plan_dict())))
    r = CliRunner().invoke(cli, ["show", str(path)])
    assert r.exit_code == 2, (case, r.output)
    assert msg in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_show_uses_plans_column_words_and_lists_costly_nodes_before_free_views(tmp_path):
    from recompiler.graph import CostGraph
    from recompiler.plan import make_plan
    from recompiler.cli.common import record_recompute_costs

    # a free view "t" recomputed three times, a costly "mm" once: by runs "t" would come first
    g = CostGraph(names=["x", "t", "mm", "out"], deps=[[], [0], [1], [2]], compute=[0.0, 0.0, 5.0, 1.0],
                  memory=[1, 1, 1, 1], is_input=[True, False, False, False])
    plan = make_plan(g, [1, 1, 1, 1, 2, 2, 3], solver="hand", budget_bytes=10)
    record_recompute_costs(plan, g)
    plan.stats["node_names"] = list(g.names)
    plan.save(tmp_path / "p.json")
    r = CliRunner().invoke(cli, ["show", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    assert "estimated overhead" in r.output and "extra runs" in r.output     # the words of `recompile plan`
    assert "cost increase" not in r.output and "┃ runs" not in r.output
    assert r.output.index("│ mm ") < r.output.index("│ t ")
    assert "4 extra runs" in r.output


def test_show_without_costs_lists_nodes_in_schedule_order(tmp_path):
    plan = solve(training_chain(12), "50%", "chen-sqrtn")
    plan.save(tmp_path / "p.json")
    r = CliRunner().invoke(cli, ["show", str(tmp_path / "p.json")])
    assert r.exit_code == 0 and "in schedule order" in r.output
