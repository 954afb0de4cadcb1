"""The chunked-attention lowering: what it matches, that every option keeps the numbers, and its bytes."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from attention_models import HandAttention, Stack, compiled_step  # noqa: E402

from recompiler import lowerings  # noqa: E402
from recompiler.frontend.capture import _WithLoss, capture, default_loss  # noqa: E402
from recompiler.lowerings.chunked_attention import chunked_attention  # noqa: E402
from recompiler.runtime.backend import make_backend  # noqa: E402
from recompiler.runtime.check import check_step, max_relative_error  # noqa: E402
from recompiler.runtime.memory import measure_peak  # noqa: E402

MASKS = [None, "causal-where", "causal-fill", "additive", "padding"]


def _inputs(mask, B=2, L=48, dim=32, dtype=torch.float32):
    torch.manual_seed(1)
    x = torch.randn(B, L, dim, dtype=dtype)
    if mask == "additive":
        return (x, torch.randn(B, 1, L, L, dtype=dtype))
    return (x,)


def _eager(model, inputs):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss = default_loss(model(*inputs))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _option_count(model, inputs):
    cap = capture(model, inputs)
    return cap, [len(g.options) for g in cap.graph.variant_groups]


# ------------------------------------------------------------------ matching
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("scale_first", [False, True])
def test_every_hand_written_attention_is_one_group(mask, scale_first):
    model = Stack(layers=2, dim=32, heads=4, mask=mask, scale_first=scale_first)
    cap, counts = _option_count(model, _inputs(mask))
    assert len(cap.graph.variant_groups) == 2 == len(cap.lowerings)
    for group, inst in zip(cap.graph.variant_groups, cap.lowerings):
        assert group.kind == "attention" and group.options[0].name == "original"
        assert [o.name for o in group.options[1:]] == ["chunked-32", "chunked-48"]   # 128, 512 ≥ L: once
        assert all(o.exact for o in group.options)
        assert inst.module_path.startswith("layers.")
        assert (inst.mask is None) == (mask is None)


def test_lowerings_off_gives_no_group():
    model = Stack(layers=1, mask="causal-where")
    assert capture(model, _inputs("causal-where"), lowerings=False).graph.variant_groups == []


def test_probabilities_used_elsewhere_are_left_alone():
    class Leaky(HandAttention):
        def forward(self, x, bias=None):
            B, L, C = x.shape
            q, k, v = self.qkv(x).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
            p = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
            return (p @ v).sum() + p.square().sum()   # the probabilities feed the loss too

    assert capture(Leaky(), _inputs(None)).graph.variant_groups == []


def test_a_cnn_has_no_group():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 2), torch.nn.Softmax(-1))
    cap = capture(model, (torch.randn(2, 3, 8, 8),))
    assert cap.graph.variant_groups == [] and cap.lowerings == []


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize("mask", MASKS)
def test_every_option_keeps_loss_and_gradients(mask):
    torch.manual_seed(0)
    model = Stack(layers=2, dim=32, heads=4, mask=mask)
    inputs = _inputs(mask)
    ref_loss, ref_grads = _eager(model, inputs)
    _, counts = _option_count(model, inputs)
    for option in range(1, counts[0]):
        _, record, loss, grads = compiled_step(model, inputs, {"solver": "store-all",
                                                               "variants": ((option, option),)})
        assert record.lowerings[0]["option"].startswith("chunked-")
        assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=0)
        assert max_relative_error(grads, ref_grads) <= 1e-5


def test_bf16_option_close_to_the_original():
    torch.manual_seed(0)
    model = Stack(layers=1, dim=32, heads=4, mask="causal-where").to(torch.bfloat16)
    inputs = _inputs("causal-where", dtype=torch.bfloat16)
    ref_loss, ref_grads = _eager(model, inputs)
    _, record, loss, grads = compiled_step(model, inputs, {"solver": "store-all", "variants": ((1,),)})
    assert record.lowerings
    assert torch.allclose(loss.float(), ref_loss.float(), rtol=2e-2)
    assert max_relative_error([g.float() for g in grads], [g.float() for g in ref_grads]) <= 5e-2


class _ChunkedReference(HandAttention):
    """The same attention through chunked_attention itself, dropout seeded as the replayed graph seeds it."""

    def __init__(self, chunk, **kw):
        super().__init__(**kw)
        self.chunk = chunk

    def forward(self, x, bias=None):
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        seed = torch.ops.recompiler.draw_seed()
        out = chunked_attention(q, k, v, scale=(C // self.heads) ** -0.5, dropout_p=self.drop.p, seed=seed,
                                chunk_size=self.chunk)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


def test_dropout_option_equals_a_reference_with_the_same_masks():
    torch.manual_seed(0)
    model = HandAttention(dim=32, heads=4, dropout=0.2)
    inputs = _inputs(None)
    reference = _ChunkedReference(32, dim=32, heads=4, dropout=0.2)
    reference.load_state_dict(model.state_dict())
    ref_loss, ref_grads = _eager(reference, inputs)
    _, record, loss, grads = compiled_step(model, inputs, {"solver": "store-all", "variants": ((1,),)})
    assert record.lowerings[0]["option"] == "chunked-32"
    assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=0)
    assert max_relative_error(grads, ref_grads) <= 1e-5
    # and it really drops: the plain attention without dropout gives another loss
    assert not torch.allclose(loss, _eager(HandAttention(dim=32, heads=4).requires_grad_(), inputs)[0])


def test_a_recomputing_plan_with_chunked_dropout_changes_no_number():
    torch.manual_seed(0)
    model = Stack(layers=2, dim=32, heads=4, mask="causal-where", dropout=0.1)
    report = check_step(model, _inputs(None, L=128), budget="30%", repeats=1, compiler="eager")
    assert report.reference == "store-all, replayed RNG"
    assert report.lowerings and all(e["kind"] == "attention" for e in report.lowerings)
    assert report.max_grad_error <= 1e-6 and report.loss_equal


# ------------------------------------------------------------------ bytes
def test_each_option_peak_is_what_its_variant_says():
    torch.manual_seed(0)
    model = Stack(layers=2, dim=64, heads=4, mask="causal-where")
    inputs = (torch.randn(2, 512, 64),)
    cap, counts = _option_count(model, inputs)
    wrapper = _WithLoss(model, default_loss)
    peaks = []
    for option in range(counts[0]):
        torch._dynamo.reset()
        backend = make_backend({"compiler": "eager", "solver": "store-all", "variants": ((option, option),)})
        compiled = torch.compile(wrapper, backend=backend, dynamic=False)
        compiled(inputs, {}).backward()
        record = backend.session.graphs[0]
        measured = measure_peak(lambda: compiled(inputs, {}).backward()).peak_bytes
        predicted = record.plan.peak_bytes - record.plan.stats["input_bytes"]
        assert abs(measured / predicted - 1) <= 0.05, (option, measured, predicted)
        peaks.append(measured)
    # small chunks save most of the L×L bytes; one chunk over all queries has the largest workspace
    assert peaks[1] < 0.25 * peaks[0] and peaks[1] < peaks[2] < peaks[-1]


def test_rewrites_only_for_chosen_groups():
    model = Stack(layers=2, mask=None)
    cap = capture(model, _inputs(None))
    assert lowerings.rewrites(cap.lowerings, [0, 0]) == {}
    chosen = lowerings.rewrites(cap.lowerings, [0, 1])
    assert set(chosen) == set(cap.lowerings[1].nodes)
    entries = lowerings.chosen(cap.graph, cap.lowerings, [0, 1])
    assert entries == [{"group": "chunked-attention:1", "kind": "attention", "option": "chunked-32", "exact": True,
                        "module": "layers.1"}]


def test_attention_over_step_inputs_whose_gradients_are_outputs():
    class Attn(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.softmax(q @ k.transpose(-1, -2) * 0.125, -1) @ v

    torch.manual_seed(0)
    qkv = tuple(torch.randn(2, 4, 64, 16, requires_grad=True) for _ in range(3))
    cap = capture(Attn(), qkv)
    assert [g.kind for g in cap.graph.variant_groups] == ["attention"]
    ref = torch.autograd.grad(Attn()(*qkv).sum(), qkv)
    torch._dynamo.reset()
    backend = make_backend({"compiler": "eager", "solver": "store-all", "variants": ((1,),)})
    out = torch.compile(_WithLoss(Attn(), default_loss), backend=backend, dynamic=False)(qkv, {})
    assert backend.session.graphs[0].lowerings
    assert max_relative_error(torch.autograd.grad(out, qkv), ref) <= 1e-5
