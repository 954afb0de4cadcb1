"""``recompile solve``: the table, the plan file, and one-line errors with exit codes."""

import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from bench_models.shared_graphs import SHARED_GRAPHS as SHARED
from recompiler.builders import random_layered
from recompiler.cli.main import cli
from recompiler.graph_io import read_graph, write_graph
from recompiler.simulate import simulate

RESNET = SHARED / "checkmate" / "resnet50.train.json"


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def test_solve_writes_plan_that_resimulates(tmp_path):
    out = tmp_path / "p.json"
    r = run("solve", RESNET, "--budget", "80%", "--solver", "chen-greedy", "--json", out)
    assert r.exit_code == 0, r.output
    assert "baseline peak" in r.output and "chen-greedy" in r.output
    plan = json.loads(out.read_text())
    sim = simulate(read_graph(RESNET), plan["schedule"], plan["variant"])
    assert sim.valid and sim.peak_bytes == plan["peak_bytes"] and plan["feasible"]
    assert f"{100 * plan['peak_bytes'] / plan['baseline_peak_bytes']:.1f}%" in r.output


def test_infeasible_plan_is_written_and_exit_3(tmp_path):
    out = tmp_path / "p.json"
    r = run("solve", SHARED / "checkmate" / "vgg16.train.json", "--budget", "50%", "--json", out)
    assert r.exit_code == 3
    assert json.loads(out.read_text())["feasible"] is False
    assert "no schedule can go below" in r.output and "83.1%" in r.output


def cyclic_file(tmp_path):
    d = {"directed": True, "graph": {}, "links": [{"source": 0, "target": 1}, {"source": 1, "target": 0}],
         "nodes": [{"id": i, "name": f"n{i}", "cost_cpu": 1, "cost_ram": 1} for i in range(2)]}
    p = tmp_path / "cyc.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize("case,args,msg", [
    ("missing file", ["solve", "nope.json", "--budget", "50%"], "not found"),
    ("malformed", ["solve", "BAD", "--budget", "50%"], "not valid JSON"),
    ("cyclic", ["solve", "CYC", "--budget", "50%"], "cycle"),
    ("150%", ["solve", "GOOD", "--budget", "150%"], "out of range"),
    ("0%", ["solve", "GOOD", "--budget", "0%"], "out of range"),
    ("-1", ["solve", "GOOD", "--budget", "-1"], "positive"),
    ("abc", ["solve", "GOOD", "--budget", "abc"], "cannot read budget"),
    ("unknown solver", ["solve", "GOOD", "--budget", "50%", "--solver", "magic"], "unknown solver 'magic'"),
])
def test_bad_input_one_line_exit_2_no_file(tmp_path, case, args, msg):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    good = tmp_path / "good.json"
    write_graph(random_layered(20, seed=1), good)
    files = {"BAD": bad, "CYC": cyclic_file(tmp_path), "GOOD": good}
    out = tmp_path / "out.json"
    argv = [str(files.get(a, a)) for a in args] + ["--json", str(out)]
    proc = subprocess.run([sys.executable, "-m", "recompiler.cli.main", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, (case, proc.stderr)
    assert msg in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3
    assert not out.exists()
    assert not list(tmp_path.glob(".out.json*"))


def test_help_is_fast_and_does_not_import_torch():
    code = ("import sys, time; t=time.perf_counter(); import recompiler.cli.main; "
            "print(time.perf_counter()-t, 'torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False" and out[2] == "False"
    start = time.perf_counter()
    subprocess.run(["recompile", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - start < 5  # generous: the point is no torch import (checked above)


def test_solvers_command_lists_default():
    r = run("solvers")
    assert r.exit_code == 0 and "(default)" in r.output and "greedy-evict" in r.output


# ------------------------------------------------------------------ issue 20
def _cli(*argv):
    """The real console script: (exit code, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "recompiler.cli.main", *map(str, argv)], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def _good(tmp_path):
    good = tmp_path / "good.json"
    write_graph(random_layered(20, seed=1), good)
    return good


@pytest.mark.parametrize("budget,msg", [
    ("1e400", "too large"), ("1e19", "too large"), ("0.5", "less than 1 byte"),
])
def test_budget_1e400_1e19_and_0_5_are_one_line_errors(tmp_path, budget, msg):
    out = tmp_path / "out.json"
    code, stdout, stderr = _cli("solve", _good(tmp_path), "--budget", budget, "--json", out)
    assert code == 2 and stdout == "" and msg in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and not out.exists()


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_time_limit_inf_nan_and_negative_are_refused_before_solving(tmp_path, value):
    code, stdout, stderr = _cli("solve", _good(tmp_path), "--budget", "50%", "--solver", "checkmate-milp",
                                "--time-limit", value)
    assert code == 2 and stdout == "" and "positive, finite number of seconds" in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr


@pytest.mark.parametrize("case", ["a folder as the file", "missing argument", "unknown option"])
def test_clicks_own_errors_are_one_line_exit_2(tmp_path, case):
    argv = {"a folder as the file": ["solve", tmp_path, "--budget", "50%"],
            "missing argument": ["show"],
            "unknown option": ["solve", _good(tmp_path), "--budget", "50%", "--bogus"]}[case]
    code, stdout, stderr = _cli(*argv)
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr


def test_unknown_field_in_a_graph_file_is_one_line(tmp_path):
    d = json.loads(_good(tmp_path).read_text())
    d["bogus"] = 1
    path = tmp_path / "bogus.json"
    path.write_text(json.dumps(d))
    code, stdout, stderr = _cli("solve", path, "--budget", "50%")
    assert code == 2 and stdout == "" and "bogus" in stderr and stderr.count("\n") == 1


@pytest.mark.parametrize("case", ["missing folder", "under a file", "a device"])
def test_json_into_a_missing_folder_or_unwritable_path_fails_before_solving(tmp_path, case, monkeypatch):
    target = {"missing folder": tmp_path / "nodir" / "p.json", "under a file": tmp_path / "good.json" / "p.json",
              "a device": "/dev/null"}[case]
    good = _good(tmp_path)
    import recompiler.solvers as solvers

    def no_solve(*a, **k):
        raise AssertionError("solved although the output path is unwritable")

    monkeypatch.setattr(solvers, "solve", no_solve)
    r = run("solve", good, "--budget", "50%", "--json", target)
    assert r.exit_code == 2, r.output
    assert "cannot write" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "nodir").exists()


def test_plans_are_written_0644_not_0600(tmp_path):
    import os
    import stat

    out = tmp_path / "p.json"
    old = os.umask(0o022)
    try:
        r = run("solve", _good(tmp_path), "--budget", "100%", "--solver", "chen-greedy", "--json", out)
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert not list(tmp_path.glob(".p.json*"))  # the temp file was renamed, none left behind


def _quadratic_plan(n):
    """training_chain(n) planned the O(n²) way: every backward step recomputes the chain from f0."""
    from recompiler.builders import training_chain
    from recompiler.plan import make_plan

    g = training_chain(n)
    schedule = list(range(n + 2))                   # f0..f{n-1}, loss, b{n-1}
    for i in range(n - 2, -1, -1):
        schedule += list(range(i + 1)) + [2 * n - i]  # f0..fi again, then bi
    return g, make_plan(g, schedule, solver="quadratic", budget_bytes=g.n)


def test_an_extreme_overhead_plan_warns_and_names_a_cheaper_budget(tmp_path, monkeypatch):
    import recompiler.solvers as solvers

    g, extreme = _quadratic_plan(16)
    assert extreme.overhead > 1                     # +364%
    path = tmp_path / "chain.json"
    write_graph(g, path)
    real = solvers.solve
    calls = []

    def solve(graph, budget, solver=None, **kw):    # the command's solve answers the extreme plan
        calls.append(solver)
        return extreme if len(calls) == 1 else real(graph, budget, solver, **kw)

    monkeypatch.setattr(solvers, "solve", solve)
    r = run("solve", path, "--budget", "100%")
    assert r.exit_code == 0, r.output
    assert f"warning: this plan adds {100 * extreme.overhead:.0f}% to the step's compute" in r.output
    assert "a budget of" in r.output and "quick chen-greedy probe" in r.output
    assert set(calls[1:]) == {"chen-greedy"}
    monkeypatch.setattr(solvers, "solve", real)
    calm = run("solve", path, "--budget", "90%", "--solver", "chen-greedy")
    assert calm.exit_code == 0 and "warning" not in calm.output
