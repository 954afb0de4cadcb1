"""The fusion cost model: which nodes inductor inlines, their deferred reads, charging, fused solving."""

import torch

from recompiler.frontend.capture import capture
from recompiler.frontend.fusion import charge, charge_named, deferred_deps, rederived, saved_inlined, solve_fused


def _gelu_mlp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    return capture(model, (torch.randn(8, 16),), compiler="inductor", lowerings=False)


def _named(cap, flags):
    return {x.name for x, f in zip(cap.fx_nodes, flags) if f}


def test_the_gelu_chain_is_inlined_except_what_the_matmul_reads():
    cap = _gelu_mlp()
    inlined = _named(cap, cap.inlined)
    assert {"mul", "mul_1", "erf", "add"} <= inlined  # GELU's decomposition, inside one loop
    assert "mul_2" not in inlined and "addmm" not in inlined  # read by addmm_1 / an extern kernel
    for i, fused in enumerate(cap.inlined):
        assert (cap.graph.memory[i] == 0) or not fused


def test_a_reader_of_an_inlined_node_keeps_its_inputs_alive():
    cap = _gelu_mlp()
    ids = cap.node_ids
    # mul_2 = mul * add reads, through the inlined chain, the matmul's output
    assert ids["addmm"] in cap.graph.deps[ids["mul_2"]]
    assert ids["addmm"] not in cap.unfused_deps[ids["mul_2"]]
    assert deferred_deps([[], [0], [1], [2]], [False, True, True, False]) == [[], [0], [0, 1], [0, 2]]


def test_sigmoid_read_twice_is_written_out_on_cpu():
    class Swish2(torch.nn.Module):
        def forward(self, x):
            s = torch.sigmoid(x)
            return (s * x + s * 2).sum()

    cap = capture(Swish2(), (torch.randn(8, 8, requires_grad=True),), compiler="inductor", lowerings=False)
    sigmoid = next(i for i, x in enumerate(cap.fx_nodes) if "sigmoid" in str(x.target) and not cap.graph.is_backward[i])
    assert len(cap.fx_nodes[sigmoid].users) > 1 and not cap.inlined[sigmoid]


def test_charging_restores_bytes_and_drops_deferred_reads():
    cap = _gelu_mlp()
    add = cap.node_ids["add"]
    reader = cap.node_ids["mul_2"]
    charge_named(cap, ["add"])
    assert not cap.inlined[add] and cap.graph.memory[add] == 8 * 32 * 4
    assert cap.graph.deps[reader] == sorted(set(cap.unfused_deps[reader]) | {cap.node_ids["addmm"]})  # via mul
    charge(cap, [])  # nothing to do, nothing replaced
    assert not cap.inlined[add]


def test_fused_solving_charges_only_what_cannot_be_computed_again():
    cap = _gelu_mlp()
    assert rederived(cap) == {cap.fx_nodes[i] for i, f in enumerate(cap.inlined) if f}  # nothing random here
    plan = solve_fused(cap, "50%", "fastsa", time_limit=1)
    assert saved_inlined(cap, plan.schedule, plan.variant) == []
    assert plan.baseline_peak_bytes > 0 and "charged" in plan.stats
