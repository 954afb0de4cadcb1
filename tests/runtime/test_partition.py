"""partition_with_schedule: the fx graphs run the plan's schedule, with the plan's lifetimes."""

import sys
from pathlib import Path

import pytest
import torch

from recompiler.frontend.capture import capture
from recompiler.runtime.partition import PlanMismatch, partition_with_schedule
from recompiler.simulate import simulate
from recompiler.solvers import solve

sys.path.insert(0, str(Path(__file__).parent))
from models import MODELS  # noqa: E402

_captured = {}


def captured(name):
    """Without lowerings: these tests follow schedule occurrences one to one (the rewrites of chosen
    lowerings emit several nodes per occurrence; tests/lowerings measure those plans instead)."""
    if name not in _captured:
        model, inputs = MODELS[name]()
        _captured[name] = capture(model, inputs, lowerings=False)
    return _captured[name]


def executed_schedule(cap, part):
    """The CostGraph ids the two fx graphs run, in order."""
    ids = cap.node_ids
    return [ids[n.meta["recompiler_origin"]] for gm in (part.fw_module, part.bw_module)
            for n in gm.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("solver", ["chen-greedy", "greedy-evict", "fastsa"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_executed_order_simulates_to_the_plan(name, solver):
    cap = captured(name)
    # fixed iteration counts, not a time limit: the plan (and so this check) must not depend on the load
    options = {"stage1_iterations": 200_000, "stage2_iterations": 400_000} if solver == "fastsa" else {"time_limit": 3}
    plan = solve(cap.graph, "40%", solver, seed=0, **options)
    part = partition_with_schedule(cap.joint, num_fwd_outputs=cap.num_fwd_outputs, schedule=plan.schedule)
    run = executed_schedule(cap, part)
    r = simulate(cap.graph, run)
    assert r.valid, r.reason
    # Dead copies are dropped and stale views re-derived (free): the same peak up to 5%. Not
    # exactly: when the plan takes an element of a multi-output op again, the runtime reuses the
    # element it took first, and simulating that order counts the element beside its still-live
    # tuple (really one storage), while the plan counts the tuple alone.
    assert 0.95 * plan.peak_bytes <= r.peak_bytes <= 1.05 * plan.peak_bytes
    assert r.cost <= plan.cost * (1 + 1e-9)
    # every saved value is a tensor: a tuple never crosses the boundary
    fw_out = next(iter(part.fw_module.graph.find_nodes(op="output"))).args[0]
    assert all(not isinstance(x.meta.get("val"), (tuple, list)) for x in fw_out if isinstance(x, torch.fx.Node))


def test_backward_starts_after_forward_outputs_and_mutations():
    cap = captured("cnn_bn")
    plan = solve(cap.graph, "50%", "fastsa", time_limit=3)
    part = partition_with_schedule(cap.joint, num_fwd_outputs=cap.num_fwd_outputs, schedule=plan.schedule)
    bw_targets = {str(n.target) for n in part.bw_module.graph.nodes}
    assert "aten.copy_.default" not in bw_targets  # BatchNorm running stats are updated in the forward


def test_bad_schedules_are_refused():
    cap = captured("mlp")
    good = cap.graph.baseline_schedule()
    with pytest.raises(PlanMismatch, match="never computes"):
        partition_with_schedule(cap.joint, num_fwd_outputs=1, schedule=good[:-1])
    with pytest.raises(PlanMismatch, match="outside this graph"):
        partition_with_schedule(cap.joint, num_fwd_outputs=1, schedule=good + [10**6])
    with pytest.raises(PlanMismatch, match="not computed before it"):
        partition_with_schedule(cap.joint, num_fwd_outputs=1, schedule=good[::-1])


def _split(cap, schedule):
    from recompiler.frontend.capture import depends_on_tangents

    tangent = depends_on_tangents(cap.fx_nodes)
    return next(t for t, v in enumerate(schedule) if tangent[v])


def test_forward_outputs_are_the_occurrences_computed_before_the_backward():
    cap = captured("mlp")
    (out,) = cap.joint.graph.find_nodes(op="output")
    loss = out.args[0][0]
    schedule = cap.graph.baseline_schedule()
    schedule = schedule + [cap.node_ids[loss.name]]  # the loss once more, at the very end
    part = partition_with_schedule(cap.joint, num_fwd_outputs=cap.num_fwd_outputs, schedule=schedule)
    runs = [n for n in part.fw_module.graph.nodes if n.meta.get("recompiler_origin") == loss.name]
    assert len(runs) == 1  # the late copy is not pulled into the forward (with what it reads)
    assert part.recomputed == 1


def test_a_fused_value_read_in_the_backward_is_computed_there_not_saved():
    from recompiler.frontend.fusion import rederived

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    cap = capture(model, (torch.randn(8, 16),), compiler="inductor", lowerings=False)
    schedule = cap.graph.baseline_schedule()
    split = _split(cap, schedule)
    # a materialised forward op that reads inlined ones (GELU's last multiply), run again in the backward
    nodes, inlined = cap.fx_nodes, cap.inlined
    reader = next(i for i, x in enumerate(nodes) if not inlined[i] and not cap.graph.is_backward[i]
                  and any(inlined[cap.node_ids[a.name]] for a in x.all_input_nodes))
    fused_inputs = {a.name for a in nodes[reader].all_input_nodes if inlined[cap.node_ids[a.name]]}
    schedule = schedule[:split + 1] + [reader] + schedule[split + 1:]  # after the first backward node

    def saved_origins(part):
        return {n.meta.get("recompiler_origin", n.name) for n in part.fw_module.graph.nodes if n.name in part.saved}

    plain = partition_with_schedule(cap.joint, num_fwd_outputs=cap.num_fwd_outputs, schedule=schedule)
    assert fused_inputs <= saved_origins(plain)  # without the rule inductor would write them out
    part = partition_with_schedule(cap.joint, num_fwd_outputs=cap.num_fwd_outputs, schedule=schedule,
                                   fused=rederived(cap))
    assert not fused_inputs & saved_origins(part)
    assert simulate(cap.graph, schedule).valid
