"""Capture without memory: models on the meta device (or of fake tensors) give the same joint graph
as the real model, gradients included, and are refused where a step would have to run."""

import numpy as np
import pytest
import torch
from torch import nn

from recompiler.errors import CaptureError, PlanOnly
from recompiler.frontend import capture
from recompiler.frontend.solve import solve_captured


def _llama(device):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, use_cache=False)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).train()
        ids = torch.randint(0, 128, (2, 24))
    return model, {"input_ids": ids, "labels": ids}


def _mlp(device):
    torch.manual_seed(0)
    with torch.device(device):
        model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 4))
        x = torch.randn(8, 16)
    return model, (x,)


def _same_graph(a, b):
    ga, gb = a.graph, b.graph
    assert ga.n == gb.n and ga.names == gb.names
    assert int(ga.is_output.sum()) == int(gb.is_output.sum()) > 1       # gradients, not a forward-only graph
    assert ga.deps == gb.deps
    np.testing.assert_array_equal(ga.memory, gb.memory)
    np.testing.assert_allclose(ga.compute, gb.compute)
    assert [g.kind for g in ga.variant_groups] == [g.kind for g in gb.variant_groups]


@pytest.mark.parametrize("compiler", ["eager", "inductor"])
def test_a_meta_llama_captures_the_real_models_joint_graph(compiler):
    real = capture(*_llama("cpu"), loss_fn=lambda o: o.loss, compiler=compiler)
    model, inputs = _llama("meta")
    meta = capture(model, inputs, loss_fn=lambda o: o.loss, compiler=compiler)
    _same_graph(real, meta)
    assert meta.planned_only and not real.planned_only
    assert next(model.parameters()).device.type == "meta"        # the user's model is left as it was
    plan = solve_captured(meta, "50%", "fastsa", time_limit=5)
    assert plan.peak_bytes < plan.baseline_peak_bytes


def test_a_model_built_under_fake_tensor_mode_captures_too():
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = capture(*_mlp("cpu"))
    with FakeTensorMode():
        model, inputs = _mlp("cpu")
    fake = capture(model, inputs)
    _same_graph(real, fake)
    assert fake.planned_only


def test_a_meta_model_is_refused_where_it_would_have_to_run():
    from recompiler.runtime.apply import compile as recompiler_compile
    from recompiler.runtime.check import check_step

    model, inputs = _mlp("meta")
    with pytest.raises(PlanOnly, match="can only be planned"):
        check_step(model, inputs, budget="50%")
    with pytest.raises(PlanOnly, match="can only be planned"):
        recompiler_compile(model, budget="50%")
    with pytest.raises(CaptureError, match="no data to time"):
        capture(model, inputs, profile=True)
