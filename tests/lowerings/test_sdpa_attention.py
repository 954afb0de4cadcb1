"""The chunked-sdpa lowering: fused SDPA kernels (no dropout) as groups with chunk-size options."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from attention_models import compiled_step  # noqa: E402

from recompiler.frontend.capture import capture  # noqa: E402
from recompiler.runtime.check import max_relative_error  # noqa: E402
from recompiler.runtime.memory import measure_peak  # noqa: E402


class SDPA(torch.nn.Module):
    def __init__(self, mask=None, dropout=0.0, kv_heads=4):
        super().__init__()
        self.qkv = torch.nn.Linear(32, 32 + 2 * 8 * kv_heads)
        self.mask, self.dropout, self.kv_heads = mask, dropout, kv_heads

    def forward(self, x):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).split([32, 8 * self.kv_heads, 8 * self.kv_heads], dim=-1)
        q = q.view(B, L, 4, 8).transpose(1, 2)
        k, v = (t.view(B, L, self.kv_heads, 8).transpose(1, 2) for t in (k, v))
        if self.kv_heads != 4:
            k, v = (t.repeat_interleave(4 // self.kv_heads, dim=1) for t in (k, v))
        kw = {"is_causal": True} if self.mask == "causal" else {}
        if self.mask == "bool":
            kw["attn_mask"] = torch.ones(L, L, dtype=torch.bool).tril()
        elif self.mask == "float":
            kw["attn_mask"] = torch.linspace(-1, 0, L * L).view(L, L)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout, **kw)
        return out.transpose(1, 2).reshape(B, L, 32)


@pytest.mark.parametrize("mask", [None, "causal", "bool", "float"])
def test_fused_kernel_options_keep_the_gradients(mask):
    torch.manual_seed(0)
    model = torch.nn.Sequential(SDPA(mask), torch.nn.Tanh(), SDPA(mask, kv_heads=2))
    x = torch.randn(2, 96, 32)
    cap = capture(model, (x,))
    assert [i.lowering.name for i in cap.lowerings] == ["chunked-sdpa"] * 2
    assert [o.name for o in cap.graph.variant_groups[0].options] == ["fused", "chunked-32", "chunked-96"]
    _, _, ref_loss, ref_grads = compiled_step(model, (x,), {"solver": "store-all"})
    for option in (1, 2):
        compiled, record, loss, grads = compiled_step(model, (x,), {"solver": "store-all", "variants": ((option, option),)})
        assert len(record.lowerings) == 2
        assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=0)
        assert max_relative_error(grads, ref_grads) <= 1e-5
        measured = measure_peak(lambda: compiled((x,), {}).backward()).peak_bytes
        predicted = record.plan.peak_bytes - record.plan.stats["input_bytes"]
        assert abs(measured / predicted - 1) <= 0.05, (option, measured, predicted)


def test_fused_kernel_with_dropout_is_left_alone():
    model = SDPA("causal", dropout=0.1)
    cap = capture(model, (torch.randn(2, 32, 32),))
    assert not any(i.lowering.name == "chunked-sdpa" for i in cap.lowerings)


def test_an_element_of_the_chunked_kernel_taken_again_in_the_backward_is_not_a_saved_tuple():
    """Issue 20 (an OPT's sdpa under a plan: "expected all tensors_saved_with_vc_check to be
    Tensors, got ... tuple"): an element of a rewritten multi-output op taken again in the
    backward part is taken in its producer's part, so the element crosses the boundary, never
    the tuple."""
    from recompiler import lowerings as registry
    from recompiler.frontend.capture import depends_on_tangents
    from recompiler.runtime.partition import partition_with_schedule
    from recompiler.simulate import simulate

    torch.manual_seed(0)
    cap = capture(SDPA(), (torch.randn(2, 16, 32),))
    (group,) = cap.lowerings
    variant = [1]
    out_item = cap.node_ids[group.fwd_items[0].name]
    schedule = cap.graph.baseline_schedule()
    tangent = depends_on_tangents(cap.fx_nodes)
    split = next(t for t, v in enumerate(schedule) if tangent[v])
    schedule = schedule[:split + 1] + [out_item] + schedule[split + 1:]
    assert simulate(cap.graph, schedule, variant).valid
    part = partition_with_schedule(cap.joint, num_fwd_outputs=cap.num_fwd_outputs, schedule=schedule,
                                   rewrites=registry.rewrites(cap.lowerings, variant))
    fw_out = next(iter(part.fw_module.graph.find_nodes(op="output"))).args[0]
    saved = [n for n in fw_out[cap.num_fwd_outputs:] if isinstance(n, torch.fx.Node)]
    assert saved and all(isinstance(n.meta.get("val"), torch.Tensor) for n in saved), \
        [(n.name, type(n.meta.get("val"))) for n in saved]
