"""apply_plan: a plan written by `recompile plan` applies verbatim to the same model and loss."""

import sys
from pathlib import Path

import pytest
import torch

from recompiler.frontend.capture import capture
from recompiler.runtime.apply import apply_plan
from recompiler.runtime.check import max_relative_error
from recompiler.runtime.partition import PlanMismatch
from recompiler.solvers import solve

sys.path.insert(0, str(Path(__file__).parent))
from models import MODELS  # noqa: E402


def loss_fn(out):
    return out.square().mean()


def grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def write_plan(name, budget, path, rng="replay"):
    """What `recompile plan` does: capture, solve, save with the graph's node names."""
    torch._dynamo.reset()
    model, (x,) = MODELS[name]()
    cap = capture(model, (x,), loss_fn=loss_fn, rng=rng)
    plan = solve(cap.graph, budget, "chen-greedy")
    plan.stats.update(cap.plan_stats())
    plan.save(path)
    return model, x, plan


def test_apply_plan_gradients_and_schedule(tmp_path):
    path = tmp_path / "plan.json"
    model, x, plan = write_plan("cnn_bn", "40%", path)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    loss_fn(model(x)).backward()
    expected, expected_stats = grads(model), [b.clone() for b in model.buffers()]
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)

    step = apply_plan(model, path, loss_fn=loss_fn)
    step(x).backward()
    assert max_relative_error(grads(model), expected) <= 1e-5
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), expected_stats))
    (record,) = step.recompiler_session.graphs
    assert record.plan.schedule == plan.schedule and record.recomputed > 0


def test_plan_for_another_graph_is_refused(tmp_path):
    write_plan("mlp", "50%", tmp_path / "plan.json")
    other, (y,) = MODELS["cnn_bn"]()
    step = apply_plan(other, tmp_path / "plan.json", loss_fn=loss_fn)
    with pytest.raises(PlanMismatch, match="made for another graph"):
        step(y)


def test_a_plan_applied_at_another_batch_names_the_shapes_it_was_made_for(tmp_path):
    """Issue 20: a plan made at batch 4 and applied at batch 2 said "(901 nodes; this one has 902) ...
    or apply it with apply_plan()" to a user already calling apply_plan; it names the input shapes."""
    model, x, _ = write_plan("transformer_dropout", "50%", tmp_path / "plan.json")
    step = apply_plan(model, tmp_path / "plan.json", loss_fn=loss_fn)
    with pytest.raises(PlanMismatch, match=r"inputs of other shapes \(.*was \(4, 32, 32\), is \(1, 32, 32\)") as e:
        step(x[:1])
    assert "apply_plan" not in str(e.value)


@pytest.mark.parametrize("rng", ["replay", "pin"])
def test_a_plan_applies_with_its_own_rng_mode(tmp_path, rng):
    """A plan replays random ops when it was made so, pins them when made so; same seed, same numbers."""
    path = tmp_path / "plan.json"
    model, x, plan = write_plan("transformer_dropout", "60%", path, rng=rng)
    assert plan.stats["rng"] == rng

    def run_once(fn):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(4)
        fn(x).backward()
        return grads(model)

    step = apply_plan(model, path, loss_fn=loss_fn)
    first, second = run_once(step), run_once(step)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    (record,) = step.recompiler_session.graphs
    assert record.plan.schedule == plan.schedule
    eager = run_once(lambda x: loss_fn(model(x)))
    if rng == "pin":  # eager's RNG stream, bit for bit
        assert all(torch.equal(a, b) for a, b in zip(first, eager))
        assert record.random_ops == 0
    else:             # per-op seeds: other masks than eager's, the plan recomputing some of them
        assert record.random_ops == 8 and record.random_recomputed > 0
        assert not all(torch.equal(a, b) for a, b in zip(first, eager))
