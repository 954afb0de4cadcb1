"""The paper suite: the FastSA paper's model kinds at its sizes, on the meta device, planned only;
unit costs; ``recompile bench --suite paper`` and ``--model-file``."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bench_models import registry, runner
from recompiler.cli.main import cli
from recompiler.simulate import baseline


def test_the_paper_suite_has_the_papers_model_kinds_at_its_sizes():
    names = registry.SUITES["paper"]
    assert len(registry.PAPER_VISION) == 13
    text = [n for n in names if "sequence classification" in registry.get(n).sizes["paper"]]
    lms = [n for n in names if n not in text and n[len("paper:"):] not in registry.PAPER_VISION]
    assert len(text) == 4 and len(lms) == 8
    assert {"paper:gpt-neo-2.7b", "paper:bloom-3b", "paper:opt-6.7b", "paper:llama-7b"} <= set(lms)
    assert not set(names) & set(registry.SUITES["ci"]) and not set(names) & set(registry.SUITES["full"])
    model, inputs = registry.build("paper:resnet50", "paper")
    assert tuple(inputs[0].shape) == (512, 3, 224, 224) and inputs[0].device.type == "meta"
    with pytest.raises(ValueError, match="no size 'ci'"):
        registry.build("paper:resnet50", "ci")


@pytest.mark.parametrize("name", ["paper:mobilenetv3_large_100", "paper:distilbert-base", "paper:gpt2"])
def test_small_paper_members_capture_their_joint_graph_and_plan(name):
    loaded = registry.load(name, "paper", cost="unit")
    g = loaded.graph
    assert loaded.captured.planned_only and int(g.is_output.sum()) > 1     # gradients, not forward only
    assert set(np.unique(g.compute[~g.is_input])) == {1.0}
    plan = runner.solve_one(loaded, "50%", "fastsa", time_limit=10)
    assert plan.feasible and plan.peak_bytes <= 0.5 * baseline(g).peak_bytes


def test_unit_costs_reach_the_variant_options_too():
    from recompiler.builders import transformer_block

    g = registry.unit_costs(transformer_block())
    assert all(c == 1.0 for vg in g.variant_groups for o in vg.options for c in o.compute)
    assert (g.compute[g.is_input] == 0).all()


MODEL = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 32), nn.Tanh()), (torch.randn(128, 32),)
"""


def test_bench_model_file_and_unit_cost(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(MODEL)
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(cli, ["bench", "--model-file", str(path), "--model-file", str(path),
                                 "--solvers", "fastsa,chen-greedy,torch-knapsack", "--budgets", "80%",
                                 "--cost", "unit", "--time-limit", "5", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "tiny.py" in r.output and "summary (unit cost)" in r.output
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3 and all(x["status"] == "ok" for x in rows)      # the same file once
    by = {x["solver"]: x for x in rows}
    for other in ("chen-greedy", "torch-knapsack"):
        if by[other]["feasible"]:
            assert by["fastsa"]["feasible"] and by["fastsa"]["overhead_pct"] <= by[other]["overhead_pct"] + 1e-9


def test_bench_model_file_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(cli, ["bench", "--model-file", str(tmp_path / "missing.py")])
    assert r.exit_code == 2 and "model file not found" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["bench", "--models", "graph:vgg16", "--cost", "unit", "--check"])
    assert r.exit_code == 2 and "--cost unit" in r.output
    path = tmp_path / "tiny.py"
    path.write_text(MODEL)
    r = CliRunner().invoke(cli, ["bench", "--model-file", str(path), "--update-expected"])
    assert r.exit_code == 2 and "not compared with or recorded" in r.output
