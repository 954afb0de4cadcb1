"""Optimizer state counted in the step's memory: exact bytes per optimizer, and the plan's breakdown."""

import json
import textwrap

import pytest
import torch
from click.testing import CliRunner

from recompiler.cli.main import cli
from recompiler.errors import SolverOptionError
from recompiler.optim.state import OPTIMIZERS, parse_optimizer, state_bytes


def _model():
    torch.manual_seed(0)
    # 1-D (biases, norm), 2-D (linear) and 3-D (conv) parameters: Adafactor factors the last two
    return torch.nn.Sequential(torch.nn.Conv1d(3, 8, 5), torch.nn.Flatten(), torch.nn.LayerNorm(8 * 28),
                               torch.nn.Linear(8 * 28, 10))


def _real_state_bytes(opt):
    return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


@pytest.mark.parametrize("name, make", [
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.1)),
    ("sgd-momentum", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("adam", lambda p: torch.optim.Adam(p)),
    ("adamw", lambda p: torch.optim.AdamW(p)),
    ("adagrad", lambda p: torch.optim.Adagrad(p)),
    ("adafactor", lambda p: torch.optim.Adafactor(p)),
    ("extreme-tensor:2", lambda p: __import__("recompiler.optim", fromlist=["x"]).ExtremeTensorAdagrad(p, order=2)),
])
def test_state_bytes_equal_what_the_optimizer_keeps(name, make):
    model = _model()
    opt = make(model.parameters())
    model(torch.randn(4, 3, 32)).sum().backward()
    opt.step()
    params = [(tuple(p.shape), p.element_size()) for p in model.parameters()]
    assert state_bytes(name, params) == _real_state_bytes(opt)


def test_optimizer_names_are_checked():
    assert [str(parse_optimizer(n)) for n in OPTIMIZERS] == list(OPTIMIZERS)
    assert parse_optimizer("extreme-tensor:3").order == 3
    for bad, msg in (("lion", "unknown optimizer"), ("adam:2", "takes no"), ("extreme-tensor:0", ">= 1"),
                     ("extreme-tensor:x", ">= 1")):
        with pytest.raises(SolverOptionError, match=msg):
            parse_optimizer(bad)


MODEL = """
import torch

def build():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 64), torch.nn.GELU(),
                            torch.nn.Linear(64, 8))
    return m, (torch.randn(8, 128, 16),)
"""


def test_plan_counts_the_optimizer_state_in_the_budget_and_breaks_the_peak_down(tmp_path):
    f = tmp_path / "model.py"
    f.write_text(textwrap.dedent(MODEL))
    run = CliRunner()
    plain = run.invoke(cli, ["plan", str(f), "--budget", "80%", "--compiler", "eager", "--json", str(tmp_path / "a.json")])
    adam = run.invoke(cli, ["plan", str(f), "--budget", "80%", "--compiler", "eager", "--optimizer", "adam",
                            "--json", str(tmp_path / "b.json")])
    assert plain.exit_code == 0 and adam.exit_code == 0, adam.output
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    params = [(tuple(p.shape), 4) for p in __import__("torch").nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 8)).parameters()]
    moments = state_bytes("adam", params)
    assert b["baseline_peak_bytes"] == a["baseline_peak_bytes"] + moments   # fixed through the step
    assert b["budget_bytes"] == int(0.8 * b["baseline_peak_bytes"])          # a percentage of it all
    for plan in (a, b):
        parts = plan["stats"]["memory_breakdown"]
        assert set(parts) == {"parameters", "gradients", "optimizer_state", "inputs", "activations"}
        assert sum(parts.values()) == plan["peak_bytes"] and min(parts.values()) >= 0
    assert b["stats"]["memory_breakdown"]["optimizer_state"] == moments and b["stats"]["optimizer"] == "adam"
    assert a["stats"]["memory_breakdown"]["optimizer_state"] == 0
    assert "optimizer state (adam)" in adam.output


def test_an_unknown_optimizer_is_one_line_exit_2(tmp_path):
    f = tmp_path / "model.py"
    f.write_text(textwrap.dedent(MODEL))
    r = CliRunner().invoke(cli, ["plan", str(f), "--budget", "80%", "--optimizer", "lion"])
    assert r.exit_code == 2 and "unknown optimizer" in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_the_backend_counts_the_optimizer_state_of_each_graphs_parameters(compiler):
    import recompiler
    import recompiler.runtime.backend as rb

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))
    x = torch.randn(32, 16)
    peaks = {}
    for optimizer in (None, "adamw"):
        torch._dynamo.reset()
        compiled = recompiler.compile(model, "100%", compiler=compiler, optimizer=optimizer)
        compiled(x).sum().backward()
        (record,) = rb.LAST_SESSION.graphs
        peaks[optimizer] = record.plan.baseline_peak_bytes
    moments = state_bytes("adamw", [(tuple(p.shape), 4) for p in model.parameters()])
    assert peaks["adamw"] == peaks[None] + moments
    parts = record.plan.stats["memory_breakdown"]
    assert parts["optimizer_state"] == moments and sum(parts.values()) == record.plan.peak_bytes
    with pytest.raises(SolverOptionError, match="unknown optimizer"):
        recompiler.compile(model, "50%", optimizer="lion")


BIG = """
import torch

def build():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 512), torch.nn.GELU(),
                            torch.nn.Linear(512, 8))
    return m, (torch.randn(4, 16, 256),)
"""


def test_a_budget_adam_misses_names_the_optimizers_that_fit(tmp_path):
    """Parameters dominate this step: Adam's moments cannot fit 3.3 MiB, a factored or extreme-tensored
    state can (one budget over recomputation and optimizer state)."""
    f = tmp_path / "model.py"
    f.write_text(textwrap.dedent(BIG))
    r = CliRunner().invoke(cli, ["plan", str(f), "--budget", "3.3MiB", "--optimizer", "adam", "--compiler", "eager",
                                 "--json", str(tmp_path / "p.json")])
    assert r.exit_code == 3, r.output
    alts = {a["optimizer"]: a for a in json.loads((tmp_path / "p.json").read_text())["stats"]["optimizers_that_fit"]}
    assert "adam" not in alts and "adamw" not in alts   # not less state
    assert alts["adafactor"]["feasible"] and alts["extreme-tensor"]["feasible"] and alts["sgd"]["feasible"]
    assert not alts["sgd-momentum"]["feasible"]
    assert "with adafactor" in r.output and "fits" in r.output


def test_show_prints_the_memory_breakdown(tmp_path):
    f = tmp_path / "model.py"
    f.write_text(textwrap.dedent(MODEL))
    run = CliRunner()
    assert run.invoke(cli, ["plan", str(f), "--budget", "80%", "--compiler", "eager", "--optimizer", "adafactor",
                            "--json", str(tmp_path / "p.json")]).exit_code == 0
    r = run.invoke(cli, ["show", str(tmp_path / "p.json")])
    assert r.exit_code == 0 and "at the peak: parameters" in r.output and "optimizer state (adafactor)" in r.output


@pytest.mark.parametrize("optimizer", ["adam", "adafactor", "extreme-tensor:2"])
def test_a_measured_full_step_with_the_optimizer_is_within_5_percent_of_simulated(optimizer):
    """check_step with an optimizer: forward, backward and optimizer.step() measured (CPU tracker),
    the state allocated before the step as in training, against simulate's peak."""
    from recompiler.runtime.check import check_step

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 256), torch.nn.GELU(),
                                torch.nn.Linear(256, 1))
    x = torch.randn(512, 64)
    r = check_step(model, (x,), budget="90%", solver="chen-greedy", optimizer=optimizer, compiler="eager", repeats=1)
    assert r.optimizer == optimizer
    assert abs(r.predicted_error) <= 0.05, (r.plan_peak_bytes, r.predicted_peak_bytes)
    assert r.max_grad_error <= 1e-5


def test_check_takes_an_optimizer_and_refuses_an_unknown_one(tmp_path):
    f = tmp_path / "model.py"
    f.write_text(textwrap.dedent(MODEL))
    run = CliRunner()
    r = run.invoke(cli, ["check", str(f), "--budget", "100%", "--compiler", "eager", "--optimizer", "adamw",
                         "--repeats", "1"])
    assert r.exit_code == 0, r.output
    assert "optimizer (state in the budget)" in r.output and "adamw" in r.output
    bad = run.invoke(cli, ["check", str(f), "--budget", "100%", "--optimizer", "lion"])
    assert bad.exit_code == 2 and "unknown optimizer" in bad.output and len(bad.output.strip().splitlines()) == 1
