"""capture(): node counts, bytes, flags and FLOPs of real models, checked by hand.

All sizes below are worked out from the shapes (fp32: 4 bytes per element).
"""

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from recompiler.errors import CaptureError
from recompiler.frontend import capture
from recompiler.frontend.capture import clean_module_path, reachable_floor
from recompiler.frontend.costs import EXTRA_FLOP_FORMULAS
from recompiler.simulate import baseline, simulate
from recompiler.solvers import solve

sys.path.insert(0, str(Path(__file__).parent))
from joint_helpers import by_op, run_schedule  # noqa: E402


# ------------------------------------------------------------------ models
class MLP(nn.Module):
    """Linear(4, 8) → ReLU → Linear(8, 2) in a ModuleList; batch 3."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 8), nn.Linear(8, 2)])

    def forward(self, x):
        return self.layers[1](torch.relu(self.layers[0](x)))


class CNN(nn.Module):
    """conv(3→4, 3x3) → BN → ReLU → flatten → linear; batch 2 of 3x8x8."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


class Block(nn.Module):
    """A pre-norm attention block with dropout; x is (B=2, T=8, C=16), 2 heads."""

    def __init__(self, C=16, H=2, p=0.1):
        super().__init__()
        self.H = H
        self.ln = nn.LayerNorm(C)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln(x)).split(C, dim=2)
        q, k, v = [t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Chain(nn.Module):
    """loss = sum(relu(relu(x * p))) with p a parameter of 1000 floats."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1000))

    def forward(self, x):
        return torch.relu(torch.relu(x * self.p))


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    m = MLP()
    x = torch.randn(3, 4)
    return m, x, capture(m, (x,))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    m = CNN().train()
    x = torch.randn(2, 3, 8, 8)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    return m, x, capture(m, (x,)), before


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    m = Block().train()
    x = torch.randn(2, 8, 16, requires_grad=True)
    return m, x, capture(m, (x,), rng="pin")


def eager_flops(model, x):
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as fc:
        model(x).sum().backward()
    model.zero_grad()
    return fc.get_total_flops()


# ------------------------------------------------------------------ MLP
def test_mlp_nodes_and_bytes(mlp):
    _, _, cap = mlp
    g = cap.graph
    kinds = Counter(cap.kinds)
    # 6 inputs: W1 (8x4), b1, x (3x4), W2 (2x8), b2, the loss tangent.
    # 10 ops: addmm, relu, addmm, sum | mm, mm, sum, threshold_backward, mm, sum.
    # 14 views: t x9, detach x2, expand, view x2.
    assert (g.n, kinds["input"], kinds["op"], kinds["view"]) == (30, 6, 10, 14)
    assert g.input_bytes == 4 * (32 + 8 + 12 + 16 + 2 + 1)
    # activations: 3x8 (addmm), 3x8 (relu), 3x2, loss; backward: 3x8 (mm), 2x8, 2, 3x8 (relu grad), 8x4, 8.
    assert int(g.memory[~g.is_input].sum()) == 4 * (24 + 24 + 6 + 1 + 24 + 16 + 2 + 24 + 32 + 8)
    assert all(g.memory[i] == 0 for i, k in enumerate(cap.kinds) if k == "view")
    # 7 forward nodes: t, addmm, relu, detach, t, addmm, sum; the rest is backward
    # outputs: the loss and one gradient per parameter (the input x needs none)
    assert int(g.memory[g.is_output].sum()) == 4 * (1 + 32 + 8 + 16 + 2)
    assert int(g.is_backward.sum()) == 30 - 6 - 7 and not g.pinned.any()
    assert cap.num_fwd_outputs == 1


def test_reachable_floor_counts_inputs_and_outputs_at_the_end(mlp):
    _, _, cap = mlp
    g = cap.graph
    at_end = 4 * (32 + 8 + 12 + 16 + 2 + 1) + 4 * (1 + 32 + 8 + 16 + 2)   # inputs + loss + gradients
    assert reachable_floor(g) == max(g.local_bound(), at_end)
    assert simulate(g, g.baseline_schedule()).live_bytes[-1] >= at_end


def test_mlp_flops_match_flop_counter(mlp):
    m, x, cap = mlp
    # addmm 3x4x8 and 3x8x2 forward; backward: dX of layer 1 (3x2x8), dW (2x3x8), dW (8x3x4) — x needs no grad.
    assert cap.total_flops == 2 * (96 + 48 + 48 + 48 + 96) == eager_flops(m, x)


def test_module_paths_forward_and_backward(mlp):
    _, _, cap = mlp
    addmm = by_op(cap, "addmm")
    assert [cap.module_paths[i] for i in addmm] == ["layers.0", "layers.1"]
    # the weight gradient of layers.0 (last mm of the backward) maps back to its module
    assert cap.module_paths[by_op(cap, "mm")[-1]] == "layers.0"
    assert clean_module_path("L['self']._modules['model'].layers[3]._modules['attn']") == "layers.3.attn"


def test_joint_graph_gives_eager_gradients(mlp):
    m, x, cap = mlp
    loss, *grads = run_schedule(cap, cap.graph.baseline_schedule())
    ref = m(x).sum()
    ref.backward()
    assert torch.allclose(loss, ref)
    expected = [m.layers[0].weight.grad, m.layers[0].bias.grad, None, m.layers[1].weight.grad, m.layers[1].bias.grad]
    for got, want in zip(grads, expected):
        assert (got is None) == (want is None)
        if want is not None:
            assert torch.allclose(got, want)
    m.zero_grad()


# ------------------------------------------------------------------ CNN + BatchNorm
def test_cnn_batchnorm_updates_pinned_and_bytes(cnn):
    m, x, cap, before = cnn
    g = cap.graph
    pinned = [cap.ops[i] for i in range(g.n) if g.pinned[i]]
    # the three buffer updates of BatchNorm (running_mean, running_var, num_batches_tracked), nothing else
    assert pinned == ["copy_"] * 3
    copied = {cap.fx_nodes[i].args[0].name for i in range(g.n) if g.pinned[i]}
    assert len(copied) == 3 and all(g.is_input[cap.node_ids[n]] for n in copied)
    (bn,) = by_op(cap, "_native_batch_norm_legit_functional")
    assert not g.pinned[bn]   # the op itself is functional: recomputing it updates nothing
    out, stat = 2 * 4 * 6 * 6 * 4, 4 * 4
    # one output tensor, save_mean, save_invstd, new running_mean, new running_var
    assert g.memory[bn] == out + 4 * stat
    items = [i for i in range(g.n) if cap.kinds[i] == "getitem" and bn in g.deps[i]]
    assert sorted(g.memory[i] for i in items) == [stat] * 4 + [out]
    (conv,) = by_op(cap, "convolution")
    assert g.memory[conv] == out
    # capture runs nothing: the running stats are untouched
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_cnn_node_counts(cnn):
    _, _, cap, _ = cnn
    g = cap.graph
    fwd = Counter(cap.ops[i] for i in range(g.n) if cap.kinds[i] == "op" and not g.is_backward[i])
    bwd = Counter(cap.ops[i] for i in range(g.n) if cap.kinds[i] == "op" and g.is_backward[i])
    # forward: conv, BN (+1 on num_batches_tracked), relu, linear, the sum loss
    assert fwd == Counter(["convolution", "add.Tensor", "_native_batch_norm_legit_functional", "relu", "addmm", "sum"])
    # backward: linear (dX and dW as mm, db as a sum), relu, BN, conv (dW and db only: x needs no grad)
    assert bwd == Counter(["mm", "mm", "sum.dim_IntList", "threshold_backward", "native_batch_norm_backward",
                           "convolution_backward"])
    # 11 inputs: conv w, b; x; BN num_batches_tracked, running mean, var, weight, bias; fc w, b; tangent.
    # getitems: 5 of BN, 3 of BN backward, 2 of conv backward (its grad_input is not asked for)
    assert Counter(cap.kinds) == Counter(input=11, op=12, getitem=10, view=14) and g.n == 47


def test_cnn_flops_match_flop_counter(cnn):
    m, x, cap, _ = cnn
    assert cap.total_flops == eager_flops(m, x) > 0


# ------------------------------------------------------------------ transformer block
def test_block_dropout_pinned_attention_not(block):
    _, _, cap = block
    g = cap.graph
    assert [cap.ops[i] for i in range(g.n) if g.pinned[i]] == ["native_dropout", "getitem", "getitem"]
    (drop,) = by_op(cap, "native_dropout")
    assert all(g.deps[i] == [drop] for i in range(g.n) if g.pinned[i] and i != drop)  # its output and mask
    (attn,) = by_op(cap, "_scaled_dot_product_flash_attention_for_cpu")
    assert not g.pinned[attn]


def test_block_multi_output_bytes(block):
    _, _, cap = block
    g = cap.graph
    x_bytes, stat = 2 * 8 * 16 * 4, 2 * 8 * 1 * 4
    (ln,) = by_op(cap, "native_layer_norm")
    assert g.memory[ln] == x_bytes + 2 * stat  # out, mean, rstd: each once
    assert sorted(g.memory[i] for i in range(g.n) if cap.kinds[i] == "getitem" and g.deps[i] == [ln]) \
        == [stat, stat, x_bytes]
    (attn,) = by_op(cap, "_scaled_dot_product_flash_attention_for_cpu")
    lse = 2 * 2 * 8 * 4                         # (B, H, T) logsumexp
    assert g.memory[attn] == x_bytes + lse
    (bwd,) = by_op(cap, "_scaled_dot_product_flash_attention_for_cpu_backward")
    assert g.memory[bwd] == 3 * x_bytes         # grad q, k, v
    # dropout returns (output, bool mask): 2x8x16 floats and 2x8x16 bytes
    (drop,) = by_op(cap, "native_dropout")
    assert g.memory[drop] == x_bytes + 2 * 8 * 16


def test_block_views_fold_onto_their_base(block):
    _, _, cap = block
    g = cap.graph
    (qkv,) = [i for i in by_op(cap, "addmm") if cap.module_paths[i] == "qkv"]
    views_of_qkv = [i for i in range(g.n) if cap.kinds[i] == "view" and qkv in g.deps[i]]
    # split, its three getitems, three views and three transposes: all free, all pinned to the base
    assert len(views_of_qkv) >= 10 and all(g.memory[i] == 0 for i in views_of_qkv)
    (attn,) = by_op(cap, "_scaled_dot_product_flash_attention_for_cpu")
    assert qkv in g.deps[attn]   # attention reads q, k, v: views of qkv, so qkv stays live
    # every consumer of a view depends on the view's root as well
    for i in range(g.n):
        for d in g.deps[i]:
            if cap.kinds[d] == "view":
                base = cap.fx_nodes[d]
                while cap.kinds[cap.node_ids[base.name]] == "view" and base.all_input_nodes:
                    base = base.all_input_nodes[0]
                assert cap.node_ids[base.name] in g.deps[i], (g.names[i], g.names[d])


def test_block_flops_match_flop_counter(block):
    m, x, cap = block
    # attention: 2*(B*H)*T*T*d forward twice (scores, values) = 8192; CPU flash is not counted by
    # FlopCounterMode itself, so both sides use the same extra formula for it
    assert cap.total_flops == eager_flops(m, x)
    with FlopCounterMode(display=False) as plain:
        m(x).sum().backward()
    m.zero_grad()
    assert cap.total_flops - plain.get_total_flops() == 8192 + 20480


def test_dropout_pinned_keeps_gradients_under_a_plan():
    """A tight plan recomputes around the pinned dropout; gradients match bit for bit.

    Re-running the dropout (what pinning forbids) changes its mask and hence the gradients.
    """
    torch.manual_seed(0)
    m = nn.Sequential(*[Block(p=0.5) for _ in range(4)]).train()
    cap = capture(m, (torch.randn(4, 128, 16, requires_grad=True),), rng="pin")
    g = cap.graph
    plan = solve(g, "70%", "chen-greedy")
    assert plan.feasible and len(plan.recomputed) > 20, "the plan must recompute for this test to mean anything"
    drops = by_op(cap, "native_dropout")
    assert len(drops) == 4 and all(plan.schedule.count(d) == 1 for d in drops)
    drop = drops[-1]
    ref = run_schedule(cap, g.baseline_schedule(), seed=1)
    got = run_schedule(cap, plan.schedule, seed=1)
    for a, b in zip(ref, got):
        assert (a is None and b is None) or torch.equal(a, b)
    # negative control: recompute the dropout (and its getitems) just before its backward
    drop_bwd = next(i for i in by_op(cap, "native_dropout_backward") if drop in g.deps[i] or
                    any(cap.kinds[d] == "getitem" and drop in g.deps[d] for d in g.deps[i]))
    items = [i for i in range(g.n) if cap.kinds[i] == "getitem" and g.deps[i] == [drop]]
    sched = g.baseline_schedule()
    at = sched.index(drop_bwd)
    bad = sched[:at] + [drop, *items] + sched[at:]
    assert not simulate(g, bad).valid   # the judge refuses it ...
    changed = run_schedule(cap, bad, seed=1)
    assert any(a is not None and not torch.equal(a, b) for a, b in zip(ref, changed))  # ... and rightly so


# ------------------------------------------------------------------ a chain, peak by hand
def test_chain_store_all_peak_by_hand():
    torch.manual_seed(0)
    cap = capture(Chain(), (torch.randn(1000),))
    g = cap.graph
    res = baseline(g)
    steps = g.baseline_schedule()
    A, inputs, loss = 4000, 4000 + 4000 + 4, 4   # p, x, the tangent
    # forward a = x*p, b = relu a, c = relu b, loss = sum c; relu saves its output, not its input.
    # Live bytes at each computing step (views are free and their position does not matter).
    order = [cap.ops[v] for v in steps if cap.kinds[v] == "op"]
    assert order == ["mul.Tensor", "relu", "relu", "sum", "threshold_backward", "threshold_backward",
                     "mul.Tensor"]
    got = [int(res.live_bytes[t]) for t, v in enumerate(steps) if cap.kinds[v] == "op"]
    assert got == [inputs + A,                   # a
                   inputs + 2 * A,               # a (read here, then freed), b
                   inputs + 2 * A,               # b, c
                   inputs + 2 * A + loss,        # b, c, the loss (an output: live to the end)
                   inputs + 3 * A + loss,        # b, c (read here), g1 = relu'(tangent, c)
                   inputs + 3 * A + loss,        # b (read here), g1 (read here), g2 = relu'(g1, b)
                   inputs + 2 * A + loss]        # g2 (read here), dp = g2 * x (a gradient: an output)
    assert res.peak_bytes == inputs + 3 * A + loss


# ------------------------------------------------------------------ errors
def test_no_grad_anywhere_is_a_capture_error():
    m = nn.Linear(4, 2).requires_grad_(False)
    with pytest.raises(CaptureError, match="requires a gradient"):
        capture(m, (torch.randn(3, 4),))


def test_model_raising_is_a_capture_error():
    with pytest.raises(CaptureError, match="could not trace"):
        capture(nn.Linear(4, 2), (torch.randn(3, 5),))


# ------------------------------------------------------------------ collectives (a hand-built joint graph)
def test_collectives_pinned_and_wait_is_an_alias():
    from recompiler.frontend import lower

    g = torch.fx.Graph()
    p, t = g.placeholder("primals_1"), g.placeholder("tangents_1")
    ar = g.call_function(torch.ops._c10d_functional.all_reduce.default, (p, "sum", "0"))
    w = g.call_function(torch.ops._c10d_functional.wait_tensor.default, (ar,))
    s = g.call_function(torch.ops.aten.sum.default, (w,))
    m = g.call_function(torch.ops.aten.mul.Tensor, (t, w))
    g.output(([s, m],))
    vec, scalar = torch.empty(10), torch.empty(())
    for node, val in [(p, vec), (t, scalar), (ar, vec), (w, vec), (s, scalar), (m, vec)]:
        node.meta["val"] = val
    cap = lower(torch.fx.GraphModule(nn.Module(), g), 1)
    G = cap.graph
    ids = cap.node_ids
    assert G.pinned[ids[ar.name]] and G.pinned[ids[w.name]] and not G.pinned[ids[s.name]]
    assert (G.memory[ids[ar.name]], G.memory[ids[w.name]]) == (40, 0)       # the reduced buffer, once
    assert ids[ar.name] in G.deps[ids[m.name]]                              # readers of the wait keep it
    assert G.is_backward[ids[m.name]] and not G.is_backward[ids[s.name]]
