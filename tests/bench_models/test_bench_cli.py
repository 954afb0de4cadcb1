"""``recompile bench``: the table, skipped rows with reasons, JSON, the registry and errors."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bench_models import registry
from recompiler.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return CliRunner().invoke(cli, ["bench", *map(str, args)])


def test_bench_table_json_and_skips(tmp_path):
    out = tmp_path / "bench.json"
    r = run("--suite", "ci", "--models", "graph:vgg16", "--solvers", "greedy-evict,torch-knapsack,checkmate-milp",
            "--budgets", "90%,85%", "--json", out)
    assert r.exit_code == 0, r.output
    for text in ("graph:vgg16", "baseline peak", "plan peak %", "overhead %", "solve s", "feasible",
                 "no fx graph", "skipped"):
        assert text in r.output
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert len(rows) == 6 and "partial" not in data
    greedy = [x for x in rows if x["solver"] == "greedy-evict"]
    assert all(x["status"] == "ok" and x["feasible"] and x["peak_pct"] <= 90.0 for x in greedy)
    assert all(x["status"] == "skipped" for x in rows if x["solver"] == "torch-knapsack")
    milp = [x for x in rows if x["solver"] == "checkmate-milp"]  # 45 nodes: small enough for the MILP
    assert all(x["status"] == "ok" and x["feasible"] for x in milp)
    # the exact MILP is never worse than the greedy heuristic on the same cost model
    for m, g in zip(milp, greedy):
        assert m["overhead_pct"] <= g["overhead_pct"] + 1e-9


def test_bench_rejects_unknown_names_before_running():
    r = run("--models", "nope")
    assert r.exit_code == 2 and "unknown model 'nope'" in r.output
    r = run("--models", "graph:vgg16", "--solvers", "magic")
    assert r.exit_code == 2 and "unknown solver 'magic'" in r.output
    r = run("--models", "graph:vgg16", "--budgets", "150%")
    assert r.exit_code == 2 and "out of range" in r.output


def test_bench_check_compares_the_chosen_rows_with_the_expectations():
    r = run("--check", "--models", "graph:RL1", "--solvers", "greedy-evict")
    assert r.exit_code == 0, r.output
    assert "no regression" in r.output
    r = run("--check", "--update-expected")
    assert r.exit_code == 2 and "compare a run with itself" in r.output


def test_bench_list_runs_from_the_repository_root_and_elsewhere(tmp_path):
    for cwd in (ROOT, tmp_path):
        r = subprocess.run([sys.executable, "-c", "from recompiler.cli.main import main; main()", "bench", "--list",
                            "--suite", "full"], cwd=cwd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "swin_tiny_patch4_window7_224" in r.stdout and "graph:RL4" in r.stdout


def test_registry_has_every_model_in_both_sizes():
    timm = {"resnet50", "vit_base_patch16_224", "convnext_tiny", "efficientnet_b0", "swin_tiny_patch4_window7_224"}
    hf = {"gpt2", "bert-base-uncased", "t5-small", "llama", "mistral"}
    assert timm | hf == set(registry.FX_MODELS)
    assert len(registry.SHARED_MODELS) == 11
    for name in registry.MODELS:
        want = {"paper"} if name in registry.PAPER_MODELS else {"ci", "full"}
        assert set(registry.get(name).sizes) == want


def test_ci_and_full_sizes_build_the_stated_configs():
    model, inputs = registry.build("gpt2", "ci")
    assert model.config.n_layer == 2 and tuple(inputs["input_ids"].shape) == registry.CI_TOKENS
    assert model.loss_type == "ForCausalLM" and model.config.bos_token_id < model.config.vocab_size
    model, inputs = registry.build("resnet50", "full")
    assert tuple(inputs[0].shape) == (8, 3, 224, 224)
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # the real ResNet-50


def test_solver_refusals_become_statuses_not_crashes():
    from bench_models import runner
    from recompiler.errors import InfeasibleBudget, InvalidGraph, ModelTooLarge

    assert runner._status_of(ModelTooLarge("too big")) == "skipped"
    assert runner._status_of(InfeasibleBudget("no staged schedule fits")) == "no-plan"
    assert runner._status_of(InvalidGraph("bad schedule")) == "invalid"
    assert runner._status_of(RuntimeError("boom")) == "error"
    loaded = registry.load("graph:RL2", "full")
    assert runner.skip_reason("checkmate-milp", loaded, "full") == "too large (250 nodes > 150)"
    assert runner.skip_reason("checkmate-lp", loaded, "full") is None
    assert runner.skip_reason("torch-knapsack", loaded, "full").startswith("no fx graph")
