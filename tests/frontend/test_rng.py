"""Replayable random ops (recompiler.frontend.rng): the ops, the rewrite, and capture's flags."""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recompiler.errors import SolverOptionError
from recompiler.frontend import capture
from recompiler.frontend.rng import DRAW_SEED, check_rng_mode, make_replayable, replayed_op, seeded
from recompiler.simulate import simulate

sys.path.insert(0, str(Path(__file__).parent))
from joint_helpers import by_op, run_schedule  # noqa: E402

DROPOUT = torch.ops.aten.native_dropout.default


def seed_tensor(value: int) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.int64)


# ------------------------------------------------------------------ the ops
def test_replayed_dropout_is_a_pure_function_of_its_seed():
    x = torch.randn(64, 64)
    drop = replayed_op(DROPOUT)
    out_a, mask_a = drop(seed_tensor(7), x, 0.5, True)
    torch.rand(1000)  # the user's stream moves: the replay does not care
    out_b, mask_b = drop(seed_tensor(7), x, 0.5, True)
    assert torch.equal(mask_a, mask_b) and torch.equal(out_a, out_b)
    _, mask_c = drop(seed_tensor(8), x, 0.5, True)
    assert not torch.equal(mask_a, mask_c)
    assert torch.equal(out_a, x * mask_a / 0.5)  # still dropout: the kept values scaled by 1/(1-p)


def test_replay_leaves_the_users_generator_untouched():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    replayed_op(torch.ops.aten.rand_like.default)(seed_tensor(1), torch.empty(100))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("op, args", [
    (torch.ops.aten.rand_like.default, (torch.empty(50),)),
    (torch.ops.aten.randn.default, ([3, 5],)),
    (torch.ops.aten.randint.low, (0, 100, [40])),
    (torch.ops.aten.randperm.default, (30,)),
    (torch.ops.aten.bernoulli.p, (torch.empty(50), 0.3)),
])
def test_every_kind_of_random_op_replays(op, args):
    f = replayed_op(op)
    a, b, c = f(seed_tensor(11), *args), f(seed_tensor(11), *args), f(seed_tensor(12), *args)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == op(*args).shape and a.dtype == op(*args).dtype


def test_dropout_keep_rate_within_four_sigma():
    n, p = 10**6, 0.3
    _, mask = replayed_op(DROPOUT)(seed_tensor(2024), torch.ones(n), p, True)
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(mask.float().mean().item() - (1 - p)) < 4 * sigma


def test_seeds_follow_manual_seed_in_program_order():
    torch.manual_seed(5)
    first = [int(DRAW_SEED()) for _ in range(4)]
    torch.manual_seed(5)
    again = [int(DRAW_SEED()) for _ in range(4)]
    assert first == again and len(set(first)) == 4 and all(0 <= s < 2**63 for s in first)


def test_seeded_restores_the_state_even_when_the_op_raises():
    before = torch.get_rng_state()
    with pytest.raises(RuntimeError):
        with seeded(1, [torch.device("cpu")]):
            raise RuntimeError("boom")
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replay_on_cuda():
    x = torch.randn(256, 256, device="cuda")
    drop = replayed_op(DROPOUT)
    _, a = drop(seed_tensor(9), x, 0.5, True)
    torch.rand(10, device="cuda")
    _, b = drop(seed_tensor(9), x, 0.5, True)
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad", ["Replay", "", None, 1, "pinned"])
def test_bad_rng_modes_are_one_line_errors(bad):
    with pytest.raises(SolverOptionError, match="rng must be one of 'replay', 'pin'") as e:
        check_rng_mode(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(SolverOptionError):
        capture(nn.Linear(2, 2), (torch.randn(1, 2),), rng=bad)


# ------------------------------------------------------------------ the rewrite, on captured graphs
class Block(nn.Module):
    """Attention with dropout on the probabilities, and dropout on the residual branch."""

    def __init__(self, C=16, H=2, p=0.5):
        super().__init__()
        self.H, self.p = H, p
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = [t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)
        return x + self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


def build(layers=2):
    torch.manual_seed(0)
    return nn.Sequential(*[Block() for _ in range(layers)]).train(), torch.randn(2, 16, 16, requires_grad=True)


def test_replay_capture_pins_only_the_seeds():
    m, x = build()
    cap = capture(m, (x,))
    g = cap.graph
    drops = by_op(cap, "native_dropout")
    assert len(drops) == 4 and cap.random_ops == drops and cap.rng == "replay"
    pinned = [i for i in range(g.n) if g.pinned[i]]
    assert [cap.ops[i] for i in pinned] == ["draw_seed"] * 4
    assert all(g.memory[i] == 8 for i in pinned)
    for d in drops:  # each dropout reads its own seed, drawn just before it
        (seed,) = [s for s in g.deps[d] if g.pinned[s]]
        assert cap.fx_nodes[seed].name == f"{g.names[d]}_seed"
        assert not g.pinned[d] and g.compute[d] > 0
    assert cap.plan_stats()["rng"] == "replay"


def test_pin_capture_is_todays_graph():
    m, x = build()
    pin = capture(m, (x,), rng="pin")
    assert pin.random_ops == [] and pin.rng == "pin"
    assert not any(o == "draw_seed" for o in pin.ops)
    drops = by_op(pin, "native_dropout")
    assert all(pin.graph.pinned[d] for d in drops)
    replay = capture(m, (x,))
    assert replay.graph.n == pin.graph.n + len(drops)  # one seed per random op, nothing else changes
    # a replayed dropout costs what generating its mask costs, plus seeding the generator; it stores
    # what the dropout stores
    launch = 5e-6  # the cpu profile's launch overhead
    for d in drops:
        r = replay.node_ids[pin.graph.names[d]]
        seed_read = 8 / 30.4e9  # the cpu profile's bandwidth: the op reads its 8-byte seed too
        assert replay.graph.compute[r] == pytest.approx(pin.graph.compute[d] + launch + seed_read, rel=1e-9)
        assert replay.graph.memory[r] == pin.graph.memory[d] > 0


def test_make_replayable_is_idempotent():
    m, x = build(1)
    cap = capture(m, (x,))
    before = [(n.name, n.target) for n in cap.joint.graph.nodes]
    assert make_replayable(cap.joint) == 0
    assert [(n.name, n.target) for n in cap.joint.graph.nodes] == before


def test_mutating_random_ops_stay_pinned():
    g = torch.fx.Graph()
    p = g.placeholder("primals_1")
    t = g.placeholder("tangents_1")
    b = g.call_function(torch.ops.aten.bernoulli_.float, (p, 0.5))
    s = g.call_function(torch.ops.aten.sum.default, (b,))
    m = g.call_function(torch.ops.aten.mul.Tensor, (t, p))
    g.output(([s, m],))
    for node, val in [(p, torch.empty(10)), (t, torch.empty(())), (b, torch.empty(10)), (s, torch.empty(())),
                      (m, torch.empty(10))]:
        node.meta["val"] = val
    from recompiler.frontend import lower

    cap = lower(torch.fx.GraphModule(nn.Module(), g), 1)
    assert cap.random_ops == [] and cap.graph.pinned[cap.node_ids[b.name]]


def test_a_recomputed_dropout_keeps_its_mask():
    """pytorch/pytorch#190758: a dropout recomputed for its backward must draw the same mask.

    The schedule recomputes the last dropout (and its output and mask) right before its
    backward — what pinning forbade, and what gave other masks and other gradients under "pin".
    """
    m, x = build()
    cap = capture(m, (x,))
    g = cap.graph
    drop = cap.random_ops[-1]
    items = [i for i in range(g.n) if cap.kinds[i] == "getitem" and g.deps[i] == [drop]]
    drop_bwd = next(i for i in by_op(cap, "native_dropout_backward") if any(d in items for d in g.deps[i]))
    sched = g.baseline_schedule()
    at = sched.index(drop_bwd)
    again = sched[:at] + [drop, *items] + sched[at:]
    assert simulate(g, again).valid  # the judge now allows it: nothing but the seed is pinned
    seen = {}
    ref = run_schedule(cap, sched, seed=1)
    got = run_schedule(cap, again, seed=1, seen=seen)
    (first_out, first_mask), (second_out, second_mask) = seen[g.names[drop]]
    assert first_mask is not second_mask and torch.equal(first_mask, second_mask)
    assert torch.equal(first_out, second_out)
    for a, b in zip(ref, got):
        assert (a is None and b is None) or torch.equal(a, b)
    other = run_schedule(cap, sched, seed=2)
    assert any(a is not None and not torch.equal(a, b) for a, b in zip(ref, other))  # seeds matter


def test_ops_seeded_by_their_inputs_are_deterministic_under_replay():
    """CUDA attention backwards take the forward's philox seed and offset: not random given their inputs."""
    from recompiler.frontend.rng import replayable, seeded_by_inputs

    g = torch.fx.Graph()
    args = [g.placeholder(f"a{i}") for i in range(3)]
    bwd = g.call_function(torch.ops.aten._scaled_dot_product_efficient_attention_backward.default, tuple(args))
    drop = g.call_function(DROPOUT, (args[0], 0.1, True))
    assert seeded_by_inputs(bwd) and not replayable(bwd)
    assert not seeded_by_inputs(drop) and replayable(drop)
