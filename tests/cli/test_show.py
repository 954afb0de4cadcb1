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
