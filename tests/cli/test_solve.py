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
