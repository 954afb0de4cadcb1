"""The chunked linear + cross-entropy op, and the chunked-loss lowering that the solver chooses."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from attention_models import compiled_step  # noqa: E402

from recompiler import lowerings  # noqa: E402
from recompiler.frontend.capture import capture  # noqa: E402
from recompiler.lowerings.chunked_loss import chunked_linear_cross_entropy  # noqa: E402
from recompiler.runtime.check import max_relative_error  # noqa: E402
from recompiler.runtime.memory import measure_peak  # noqa: E402


def _data(N=200, H=16, V=300, ignored=True, dtype=torch.float32):
    torch.manual_seed(0)
    h = torch.randn(N, H, dtype=dtype, requires_grad=True)
    w = (torch.randn(V, H, dtype=dtype) * 0.3).requires_grad_()
    b = (torch.randn(V, dtype=dtype) * 0.1).requires_grad_()
    y = torch.randint(0, V, (N,))
    if ignored:
        y[::3] = -100
    return h, w, b, y


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignored", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("chunk", [1, 64, 200, 1000])
def test_op_equals_cross_entropy(reduction, ignored, with_bias, chunk):
    h, w, b, y = _data(ignored=ignored)
    bias = b if with_bias else None
    ref = F.cross_entropy(F.linear(h, w, bias), y, reduction=reduction)
    ref_grads = torch.autograd.grad(ref, [h, w] + ([b] if with_bias else []))
    got = chunked_linear_cross_entropy(h, w, bias, y, reduction=reduction, chunk_size=chunk)
    grads = torch.autograd.grad(got, [h, w] + ([b] if with_bias else []))
    assert torch.allclose(got, ref, rtol=1e-5, atol=0)
    assert max_relative_error(grads, ref_grads) <= 1e-5


def test_op_bf16_close_to_fp32():
    h, w, b, y = _data(dtype=torch.bfloat16)
    got = chunked_linear_cross_entropy(h, w, b, y, chunk_size=64)
    ref = F.cross_entropy(F.linear(h.float(), w.float(), b.float()), y)
    assert abs(got.float().item() - ref.item()) / ref.item() < 2e-2


def test_op_rejects_bad_arguments():
    h, w, b, y = _data()
    with pytest.raises(ValueError, match="reduction"):
        chunked_linear_cross_entropy(h, w, b, y, reduction="none")
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_linear_cross_entropy(h, w, b, y, chunk_size=0)


class TinyLM(torch.nn.Module):
    """A decoder-shaped LM: embedding, one block, an output projection (tied or with bias)."""

    def __init__(self, vocab=2000, dim=32, tied=True, bias=False, smoothing=0.0, return_logits=False):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.block = torch.nn.Linear(dim, dim)
        self.head = torch.nn.Linear(dim, vocab, bias=bias)
        if tied:
            self.head.weight = self.embed.weight
        self.smoothing, self.return_logits = smoothing, return_logits

    def forward(self, ids, labels):
        logits = self.head(torch.tanh(self.block(self.embed(ids)))).flatten(0, 1)
        loss = F.cross_entropy(logits, labels.flatten(), label_smoothing=self.smoothing)
        return (loss, logits) if self.return_logits else loss


def _lm_inputs(vocab=2000, B=2, L=128):
    torch.manual_seed(1)
    ids = torch.randint(0, vocab, (B, L))
    labels = torch.randint(0, vocab, (B, L))
    labels[:, :5] = -100
    return {"ids": ids, "labels": labels}


def _loss_groups(cap):
    return [k for k, g in enumerate(cap.graph.variant_groups) if g.kind == "loss"]


@pytest.mark.parametrize("tied, bias", [(True, False), (False, True), (False, False)])
def test_every_option_keeps_loss_and_gradients(tied, bias):
    torch.manual_seed(0)
    model = TinyLM(tied=tied, bias=bias)
    inputs = _lm_inputs()
    cap = capture(model, inputs)
    (k,) = _loss_groups(cap)
    assert cap.lowerings[k].module_path == "head"
    assert [o.name for o in cap.graph.variant_groups[k].options] == ["original", "chunked-256"]
    _, _, ref_loss, ref_grads = compiled_step(model, inputs, {"solver": "store-all"})
    _, record, loss, grads = compiled_step(model, inputs, {"solver": "store-all", "variants": ((1,),)})
    assert record.lowerings == [{"group": "chunked-loss:0", "kind": "loss", "option": "chunked-256", "exact": True,
                                 "module": "head"}]
    assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=0)
    assert max_relative_error(grads, ref_grads) <= 1e-5


def test_returned_logits_label_smoothing_are_left_alone():
    inputs = _lm_inputs()
    returned = TinyLM(return_logits=True)
    assert _loss_groups(capture(returned, inputs, loss_fn=lambda out: out[0] + out[1].sum() * 0)) == []
    assert _loss_groups(capture(TinyLM(smoothing=0.1), inputs)) == []


def test_each_option_peak_is_what_its_variant_says_and_the_floor_drops():
    torch.manual_seed(0)
    model = TinyLM(vocab=8000, dim=32, tied=False)
    inputs = _lm_inputs(vocab=8000, B=4, L=256)         # 1024 tokens × 8000 logits: 33 MB in fp32
    cap = capture(model, inputs)
    (k,) = _loss_groups(cap)
    options = cap.graph.variant_groups[k].options
    assert [o.name for o in options] == ["original", "chunked-256", "chunked-1024"]
    peaks = []
    for option in range(len(options)):
        compiled, record, _, _ = compiled_step(model, inputs, {"solver": "store-all", "variants": ((option,),)})
        measured = measure_peak(lambda: compiled((), inputs).backward()).peak_bytes
        predicted = record.plan.peak_bytes - record.plan.stats["input_bytes"]
        assert abs(measured / predicted - 1) <= 0.05, (option, measured, predicted)
        peaks.append(measured)
    assert peaks[1] < 0.3 * peaks[0]
    from recompiler.solvers.fastsa import floor_bytes

    assert floor_bytes(cap.graph) < 0.5 * cap.graph.floor()   # the logits no longer set the floor


def test_a_tight_plan_chooses_the_chunked_loss():
    from recompiler.solvers import solve

    model = TinyLM(vocab=8000, dim=32, tied=False)
    cap = capture(model, _lm_inputs(vocab=8000, B=4, L=256))
    plan = solve(cap.graph, "30%", "fastsa", seed=0, time_limit=5)
    chosen = lowerings.chosen(cap.graph, cap.lowerings, plan.variant)
    assert plan.feasible and [e["kind"] for e in chosen] == ["loss"]
