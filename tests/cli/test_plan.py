"""``recompile plan MODEL.py``: a successful run, the plan file, and one-line errors with exit codes."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from recompiler.cli.main import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SMALL_MLP = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(64, 64), nn.Tanh()]
    return nn.Sequential(*layers), (torch.randn(512, 64),)
"""


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def model_file(tmp_path, text, name="model.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_plan_example_writes_a_plan_that_resimulates(tmp_path):
    out = tmp_path / "plan.json"
    r = run("plan", EXAMPLES / "mlp.py", "--budget", "60%", "--solver", "chen-greedy", "--json", out)
    assert r.exit_code == 0, r.output
    for text in ("baseline peak", "planned peak", "estimated overhead", "recomputed, by module", "chen-greedy"):
        assert text in r.output
    plan = json.loads(out.read_text())
    assert plan["feasible"] and plan["peak_bytes"] <= plan["budget_bytes"] and plan["recomputed"]
    assert f"{100 * plan['peak_bytes'] / plan['baseline_peak_bytes']:.1f}% of baseline" in r.output
    # what the runtime needs to re-apply the plan: node names and the forward/backward split
    stats = plan["stats"]
    assert stats["num_fwd_outputs"] == 1 and len(stats["node_names"]) == len(stats["module_paths"])
    assert all(stats["node_names"][v] for v in plan["schedule"])
    # the plan re-simulates on a fresh capture of the same model
    from recompiler.frontend import capture
    from recompiler.frontend.modelfile import load_model_file
    from recompiler.simulate import simulate

    spec = load_model_file(EXAMPLES / "mlp.py")
    assert stats["compiler"] == "inductor"  # the default, as in the backend
    cap = capture(spec.model, spec.example_inputs, loss_fn=spec.loss_fn, compiler=stats["compiler"])
    from recompiler.frontend.fusion import charge_named

    charge_named(cap, stats.get("charged", []))
    g = cap.graph
    assert g.names == stats["node_names"]
    assert simulate(g, plan["schedule"], plan["variant"]).peak_bytes == plan["peak_bytes"]
    # recomputed modules are named by their path in the model ("0", "2", ... in a Sequential)
    assert any(p.isdigit() for p in {stats["module_paths"][stats["node_names"].index(n)] for n in plan["recomputed"]})


def test_module_level_model_and_loss(tmp_path):
    p = model_file(tmp_path, """
        import torch
        model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
        example_inputs = torch.randn(256, 32)
        def loss(out):
            return out.pow(2).mean()
    """)
    r = run("plan", p, "--budget", "100%", "--device-profile", "h100")
    assert r.exit_code == 0, r.output
    assert "roofline, h100" in r.output


def test_unreachable_budget_names_the_floor_writes_plan_exit_3(tmp_path):
    out = tmp_path / "plan.json"
    r = run("plan", model_file(tmp_path, SMALL_MLP), "--budget", "1%", "--solver", "chen-greedy", "--json", out)
    assert r.exit_code == 3
    assert "no schedule can go below" in r.output
    assert json.loads(out.read_text())["feasible"] is False


@pytest.mark.parametrize("case,text,msg", [
    ("nothing defined", "x = 1\n", "defines neither build() nor"),
    ("import raises", "raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    ("build raises", "def build():\n    raise ValueError('no weights here')\n", "build() raised ValueError: no weights here"),
    ("not a module", "model = 3\nexample_inputs = ()\n", "not a torch.nn.Module"),
    ("forward raises", "import torch\nmodel = torch.nn.Linear(4, 2)\nexample_inputs = torch.randn(3, 5)\n",
     "could not trace"),
    ("data-dependent size", "import torch\nclass M(torch.nn.Module):\n    def __init__(self):\n"
     "        super().__init__()\n        self.l = torch.nn.Linear(4, 4)\n"
     "    def forward(self, x):\n        y = self.l(x)\n        return y[y > 0]\n"
     "model = M()\nexample_inputs = torch.randn(3, 4)\n", "size depends on the data"),
    ("no grad", "import torch\nmodel = torch.nn.Linear(4, 2).requires_grad_(False)\nexample_inputs = torch.randn(3, 4)\n",
     "requires a gradient"),
])
def test_model_file_errors_one_line_exit_2(tmp_path, case, text, msg):
    out = tmp_path / "plan.json"
    r = run("plan", model_file(tmp_path, text), "--budget", "50%", "--json", out)
    assert r.exit_code == 2, r.output
    assert msg in r.output and "Traceback" not in r.output
    assert r.output.strip().count("\n") == 0, r.output
    assert not out.exists()


@pytest.mark.parametrize("args,msg", [
    (["plan", "nope.py", "--budget", "50%"], "model file not found: nope.py"),
    (["plan", "MODEL", "--budget", "150%"], "out of range"),
    (["plan", "MODEL", "--budget", "lots"], "cannot read budget"),
    (["plan", "MODEL", "--budget", "50%", "--solver", "magic"], "unknown solver 'magic'"),
])
def test_usage_errors_fail_before_capture(tmp_path, args, msg):
    args = [str(model_file(tmp_path, SMALL_MLP)) if a == "MODEL" else a for a in args]
    out = tmp_path / "plan.json"
    r = run(*args, "--json", out)
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_subprocess_error_is_one_stderr_line(tmp_path):
    """The real console script: the error goes to stderr as one line, stdout stays empty."""
    p = model_file(tmp_path, "def build():\n    raise KeyError('missing')\n")
    r = subprocess.run([sys.executable, "-m", "recompiler.cli.main", "plan", str(p), "--budget", "50%"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


DROPOUT_TRANSFORMER = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), (torch.randn(4, 32, 32),)
"""


def test_replay_makes_a_dropout_transformer_plannable_at_half(tmp_path):
    path = model_file(tmp_path, DROPOUT_TRANSFORMER)
    pin_json, replay_json = tmp_path / "pin.json", tmp_path / "replay.json"
    # under eager's compiler (under inductor random ops draw from inductor's seeds: see test_inductor)
    pin = run("plan", path, "--budget", "50%", "--rng", "pin", "--json", pin_json, "--time-limit", "3",
              "--compiler", "eager")
    assert pin.exit_code == 3 and "random ops" in pin.output and "pinned" in pin.output
    replay = run("plan", path, "--budget", "50%", "--json", replay_json, "--time-limit", "3", "--compiler", "eager")
    assert replay.exit_code == 0, replay.output
    assert "random ops recomputed" in replay.output
    plan = json.loads(replay_json.read_text())
    assert plan["feasible"] and plan["stats"]["rng"] == "replay" and plan["stats"]["random_ops"] == 8
    assert f"{plan['stats']['random_recomputed']} of 8" in replay.output
    assert json.loads(pin_json.read_text())["stats"]["rng"] == "pin"
    shown = run("show", replay_json)
    assert shown.exit_code == 0 and f"random ops: {plan['stats']['random_recomputed']} of 8 recomputed" in shown.output


@pytest.mark.parametrize("command", ["plan", "check"])
def test_bad_rng_is_a_one_line_error(tmp_path, command):
    r = subprocess.run([sys.executable, "-m", "recompiler.cli.main", command, str(EXAMPLES / "mlp.py"),
                        "--budget", "50%", "--rng", "philox"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "rng must be one of 'replay', 'pin'" in r.stderr


CAUSAL_ATTENTION = """
import torch
from torch import nn

class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(32, 96), nn.Linear(32, 32)

    def forward(self, x):
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, 4, 8).permute(2, 0, 3, 1, 4)
        s = (q @ k.transpose(-1, -2)) * 8 ** -0.5
        s = s.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
        return self.proj((s.softmax(-1) @ v).transpose(1, 2).reshape(B, L, C))

def build():
    torch.manual_seed(0)
    return nn.Sequential(Attention(), nn.Tanh(), Attention()), (torch.randn(2, 256, 32),)
"""


def test_plan_lists_the_lowerings_it_chose_and_no_lowerings_turns_them_off(tmp_path):
    path = model_file(tmp_path, CAUSAL_ATTENTION)
    on_json, off_json = tmp_path / "on.json", tmp_path / "off.json"
    # eager's compiler: inductor decomposes softmax, which the attention matchers do not match yet
    on = run("plan", path, "--budget", "40%", "--json", on_json, "--time-limit", "3", "--compiler", "eager")
    assert on.exit_code == 0, on.output
    plan = json.loads(on_json.read_text())
    assert plan["lowerings"] and {e["kind"] for e in plan["lowerings"]} == {"attention"}
    assert {e["module"] for e in plan["lowerings"]} == {"0", "2"}
    assert all(e["option"].startswith("chunked-") and e["exact"] for e in plan["lowerings"])
    assert "lowerings chosen" in on.output and f"{len(plan['lowerings'])} of 2 groups lowered" in on.output
    shown = run("show", on_json)
    assert shown.exit_code == 0 and "lowerings chosen" in shown.output and "chunked-" in shown.output
    off = run("plan", path, "--budget", "40%", "--json", off_json, "--time-limit", "3", "--no-lowerings",
              "--compiler", "eager")
    assert off.exit_code == 3 and "off (--no-lowerings)" in off.output     # the L×L floor stays
    off_plan = json.loads(off_json.read_text())
    assert off_plan["lowerings"] == [] and off_plan["variant"] == []
    assert plan["peak_bytes"] < 0.6 * off_plan["peak_bytes"]


def test_plan_for_inductor_records_what_it_charged_and_resimulates(tmp_path):
    out = tmp_path / "plan.json"
    r = run("plan", EXAMPLES / "mlp.py", "--budget", "60%", "--compiler", "inductor", "--time-limit", "2",
            "--json", out)
    assert r.exit_code == 0, r.output
    assert "inductor's own partition" in r.output and "inductor fusion" in r.output
    plan = json.loads(out.read_text())
    assert plan["stats"]["compiler"] == "inductor" and "charged" in plan["stats"]
    from recompiler.frontend.capture import capture
    from recompiler.frontend.fusion import charge_named
    from recompiler.frontend.modelfile import load_model_file
    from recompiler.simulate import simulate

    spec = load_model_file(EXAMPLES / "mlp.py")
    cap = capture(spec.model, spec.example_inputs, loss_fn=spec.loss_fn, compiler="inductor")
    charge_named(cap, plan["stats"]["charged"])
    assert cap.graph.names == plan["stats"]["node_names"]
    assert simulate(cap.graph, plan["schedule"], plan["variant"]).peak_bytes == plan["peak_bytes"]


# ------------------------------------------------------------------ issue 20
def _cli(*argv):
    p = subprocess.run([sys.executable, "-m", "recompiler.cli.main", *map(str, argv)], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


WRONG_SHAPE = """
import torch

def build():
    return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh()), (torch.randn(3, 5),)
"""

GRAPH_BREAK = """
import torch

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = self.l(x)
        if y.sum() > 0:
            y = y * 2
        return self.l(y)

def build():
    return M(), (torch.randn(3, 4),)
"""


def test_wrong_input_shape_is_one_line_with_its_cause(tmp_path):
    code, stdout, stderr = _cli("plan", model_file(tmp_path, WRONG_SHAPE), "--budget", "50%")
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1, stderr                    # torch's own 19 log lines are gone
    assert "a and b must have same reduction dim" in stderr


def test_graph_break_names_its_source_line(tmp_path):
    path = model_file(tmp_path, GRAPH_BREAK)
    r = run("plan", path, "--budget", "50%")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    line = path.read_text().splitlines().index("        if y.sum() > 0:") + 1
    assert f"{path.name}:{line}" in r.output and "if y.sum() > 0:" in r.output
    assert 'backend="recompiler"' in r.output                # the path that does handle graph breaks


@pytest.mark.parametrize("where", ["build", "import"])
def test_build_calling_sys_exit_0_is_a_one_line_error_exit_2(tmp_path, where):
    text = ("import sys\ndef build():\n    sys.exit(0)\n" if where == "build" else "import sys\nsys.exit(0)\n")
    out = tmp_path / "plan.json"
    code, stdout, stderr = _cli("plan", model_file(tmp_path, text), "--budget", "50%", "--json", out)
    assert code == 2 and stdout == "" and "sys.exit(0)" in stderr and stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("flag_first", [True, False])
def test_verbose_prints_the_traceback_of_a_failing_build(tmp_path, flag_first):
    path = model_file(tmp_path, "def build():\n    raise ValueError('no weights here')\n")
    argv = (["--verbose", "plan", path, "--budget", "50%"] if flag_first
            else ["plan", path, "--budget", "50%", "--verbose"])
    code, stdout, stderr = _cli(*argv)
    assert code == 2 and "Traceback" in stderr and "raise ValueError('no weights here')" in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: ")   # still ends with the one line
    code, _, quiet = _cli("plan", path, "--budget", "50%")
    assert code == 2 and "Traceback" not in quiet and quiet.count("\n") == 1


def test_json_into_a_missing_folder_fails_before_capture(tmp_path):
    # a model whose capture would take long if it ran: the path check must come first
    out = tmp_path / "nodir" / "plan.json"
    code, stdout, stderr = _cli("plan", model_file(tmp_path, "raise SystemExit('must not be loaded')\n"),
                                "--budget", "50%", "--json", out)
    assert code == 2 and "folder" in stderr and "does not exist" in stderr and "must not be loaded" not in stderr
    assert not out.parent.exists()


def test_plan_says_lower_bound_not_smallest_reachable(tmp_path):
    r = run("plan", model_file(tmp_path, SMALL_MLP), "--budget", "60%", "--solver", "chen-greedy")
    assert r.exit_code in (0, 3), r.output
    assert "smallest reachable" not in r.output
    assert "peak lower bound" in r.output and "no schedule goes below it" in r.output


def test_verbose_does_not_leak_into_the_next_invocation(tmp_path):
    path = model_file(tmp_path, "def build():\n    raise ValueError('no weights here')\n")
    loud = run("--verbose", "plan", path, "--budget", "50%")
    assert loud.exit_code == 2 and "Traceback" in loud.output
    quiet = run("plan", path, "--budget", "50%")
    assert quiet.exit_code == 2 and "Traceback" not in quiet.output and len(quiet.output.strip().splitlines()) == 1


GELU_MLP = """
import torch

def build():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 64), torch.nn.GELU(),
                            torch.nn.Linear(64, 8))
    return m, (torch.randn(8, 128, 16),)
"""


def test_allow_approx_offers_wta_crs_and_marks_every_approximate_layer(tmp_path):
    f = model_file(tmp_path, GELU_MLP)
    exact = run("plan", f, "--budget", "70%", "--compiler", "eager", "--json", tmp_path / "exact.json")
    assert exact.exit_code == 0, exact.output
    assert json.loads((tmp_path / "exact.json").read_text())["lowerings"] == []
    r = run("plan", f, "--budget", "70%", "--compiler", "eager", "--allow-approx", "--approx-ratio", "0.2,0.05",
            "--json", tmp_path / "approx.json")
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "approx.json").read_text())
    assert saved["lowerings"] and all(e["exact"] is False and e["kind"] == "linear" for e in saved["lowerings"])
    assert {e["option"] for e in saved["lowerings"]} <= {"wta-crs-0.2", "wta-crs-0.05"}
    assert saved["stats"]["approx_ratios"] == [0.2, 0.05]
    assert "approximate" in r.output and "estimated" in r.output
    assert saved["overhead"] < json.loads((tmp_path / "exact.json").read_text())["overhead"]


@pytest.mark.parametrize("args, msg", [
    (["--approx-ratio", "0.3"], "needs --allow-approx"),
    (["--allow-approx", "--approx-ratio", "0"], "in (0, 1]"),
    (["--allow-approx", "--approx-ratio", "abc"], "numbers in (0, 1]"),
    (["--allow-approx", "--no-lowerings"], "cannot be combined"),
])
def test_approx_options_errors_are_one_line_exit_2(tmp_path, args, msg):
    r = run("plan", model_file(tmp_path, GELU_MLP), "--budget", "70%", *args)
    assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
