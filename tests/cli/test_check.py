"""`recompile check`: eager vs plan table, exit codes."""

from pathlib import Path

from click.testing import CliRunner

from recompiler.cli.main import cli

MODEL = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    return m, (torch.randn(256, 64),)
'''


def write_model(tmp_path) -> Path:
    p = tmp_path / "model.py"
    p.write_text(MODEL)
    return p


def test_check_prints_comparison(tmp_path):
    r = CliRunner().invoke(cli, ["check", str(write_model(tmp_path)), "--budget", "100%", "--solver", "chen-greedy",
                                 "--repeats", "1"])
    assert r.exit_code == 0, r.output
    for row in ("measured peak", "step time", "predicted peak", "max gradient error"):
        assert row in r.output


def test_check_needs_exactly_one_of_budget_and_plan(tmp_path):
    model = str(write_model(tmp_path))
    r = CliRunner().invoke(cli, ["check", model])
    assert r.exit_code == 2 and "exactly one of --budget and --plan" in r.output
    r = CliRunner().invoke(cli, ["check", model, "--budget", "50%", "--plan", "x.json"])
    assert r.exit_code == 2


def test_check_missing_model_file(tmp_path):
    r = CliRunner().invoke(cli, ["check", str(tmp_path / "nope.py"), "--budget", "50%"])
    assert r.exit_code == 2 and "not found" in r.output and "Traceback" not in r.output


DROPOUT_MODEL = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.Dropout(0.5), nn.Tanh(), nn.Linear(64, 64), nn.Dropout(0.5), nn.Tanh(),
                      nn.Linear(64, 1))
    return m, (torch.randn(256, 64),)
'''


def test_check_names_its_reference_for_each_rng_mode(tmp_path):
    p = tmp_path / "dropout.py"
    p.write_text(DROPOUT_MODEL)
    # a budget chen-greedy meets: a missed one exits 3 (test_check_exits_3_when_the_plan_misses_its_budget)
    base = ["check", str(p), "--budget", "100%", "--solver", "chen-greedy", "--repeats", "1", "--compiler", "eager"]
    replay = CliRunner().invoke(cli, base)
    assert replay.exit_code == 0, replay.output
    assert "vs store-all, replayed RNG" in replay.output and "random ops recomputed (replayed)" in replay.output
    pin = CliRunner().invoke(cli, base + ["--rng", "pin"])
    assert pin.exit_code == 0, pin.output
    assert "vs eager" in pin.output and "random ops recomputed" not in pin.output


def test_check_under_inductor_reports_both_shares(tmp_path):
    p = tmp_path / "dropout.py"
    p.write_text(DROPOUT_MODEL)
    r = CliRunner().invoke(cli, ["check", str(p), "--budget", "100%", "--solver", "chen-greedy", "--repeats", "1",
                                 "--compiler", "inductor"])
    assert r.exit_code == 0, r.output
    assert "compiled by inductor" in r.output and "inductor's default partition" in r.output
    assert "% of the planner's baseline" in r.output and "% of an eager step" in r.output


def test_check_unknown_compiler_is_one_line(tmp_path):
    p = tmp_path / "dropout.py"
    p.write_text(DROPOUT_MODEL)
    r = CliRunner().invoke(cli, ["check", str(p), "--budget", "60%", "--compiler", "tvm"])
    assert r.exit_code == 2 and "unknown compiler 'tvm'" in r.output and "Traceback" not in r.output


META_MODEL = '''
import torch
from torch import nn

def build():
    with torch.device("meta"):
        m = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 64))
        x = torch.randn(4096, 64)
    return m, (x,)
'''


def test_a_meta_model_is_planned_but_not_checked(tmp_path):
    model = tmp_path / "meta_model.py"
    model.write_text(META_MODEL)
    r = CliRunner().invoke(cli, ["check", str(model), "--budget", "50%"])
    assert r.exit_code == 2 and "can only be planned" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    out = tmp_path / "plan.json"
    r = CliRunner().invoke(cli, ["plan", str(model), "--budget", "80%", "--json", str(out), "--time-limit", "3"])
    assert r.exit_code == 0, r.output
    assert out.exists()


# ------------------------------------------------------------------ issue 20
RECOMPILING_MODEL = '''
import torch
from torch import nn

class M(nn.Module):
    """Like HF's problem_type: the first forward sets an attribute, so dynamo recompiles the same code once."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        self.problem_type = None

    def forward(self, x):
        if self.problem_type is None:
            self.problem_type = "regression"
        return self.net(x)

def build():
    torch.manual_seed(0)
    return M(), (torch.randn(256, 64),)
'''


def test_check_counts_a_recompile_of_the_same_code_as_a_replacement_not_an_extra_graph(tmp_path):
    import torch

    from recompiler.frontend.modelfile import load_model_file
    from recompiler.runtime.check import check_step

    p = tmp_path / "recompiling.py"
    p.write_text(RECOMPILING_MODEL)
    spec = load_model_file(p)
    options = dict(budget="100%", solver="chen-greedy", repeats=1, compiler="eager")
    r = check_step(spec.model, spec.example_inputs, **options)
    assert r.graphs == 1 and r.recompiles == 1
    plain = check_step(spec.model.net, spec.example_inputs, **options)   # the same step, compiled once
    assert plain.graphs == 1 and plain.recompiles == 0
    assert r.predicted_peak_bytes == plain.predicted_peak_bytes          # not doubled
    out = CliRunner().invoke(cli, ["check", str(p), "--budget", "100%", "--solver", "chen-greedy", "--repeats", "1",
                                   "--compiler", "eager"])
    assert out.exit_code == 0, out.output
    assert "+1 recompiled (replaced)" in out.output
    assert torch.is_grad_enabled()


def test_check_exits_3_when_the_plan_misses_its_budget(tmp_path):
    r = CliRunner().invoke(cli, ["check", str(write_model(tmp_path)), "--budget", "1%", "--solver", "chen-greedy",
                                 "--repeats", "1", "--compiler", "eager"])
    assert r.exit_code == 3, r.output                                     # as `recompile plan` does
    assert "over budget" in r.output and "infeasible:" in r.output


def test_check_time_limit_nan_is_refused(tmp_path):
    r = CliRunner().invoke(cli, ["check", str(write_model(tmp_path)), "--budget", "50%", "--time-limit", "nan"])
    assert r.exit_code == 2 and "positive, finite number of seconds" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_check_wrong_input_shape_is_one_line_with_its_cause(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "shape.py"
    p.write_text("import torch\ndef build():\n"
                 "    return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh()), (torch.randn(3, 5),)\n")
    r = subprocess.run([sys.executable, "-m", "recompiler.cli.main", "check", str(p), "--budget", "50%",
                        "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert "a and b must have same reduction dim" in r.stderr and "Traceback" not in r.stderr
