"""The prefix-attention lowering: CausalLinearAttention's slice lengths and its cumsum form, chosen by the solver."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from attention_models import compiled_step  # noqa: E402

from recompiler.frontend.capture import capture  # noqa: E402
from recompiler.nn import CausalLinearAttention  # noqa: E402
from recompiler.runtime.check import max_relative_error  # noqa: E402
from recompiler.runtime.memory import measure_peak  # noqa: E402


def _model(form="chunked", feature_map="sqr"):
    torch.manual_seed(0)
    return torch.nn.Sequential(CausalLinearAttention(32, heads=4, feature_map=feature_map, form=form, chunk_size=32),
                               torch.nn.Tanh(),
                               CausalLinearAttention(32, heads=4, feature_map=feature_map, form=form, chunk_size=32))


def test_each_layer_is_a_group_with_its_slice_lengths_and_the_cumsum_form():
    cap = capture(_model(), (torch.randn(2, 256, 32),))
    assert [inst.module_path for inst in cap.lowerings] == ["0", "2"]
    assert [o.name for o in cap.graph.variant_groups[0].options] == ["chunked-32", "chunked-64", "chunked-256",
                                                                      "cumsum"]
    cumsum = cap.graph.variant_groups[0].options[-1]
    state = cap.graph.variant_groups[0].nodes.index(cap.node_ids[cap.lowerings[0].state.name])
    assert cumsum.memory[state] == 2 * 4 * 256 * 8 * 9 * 4     # B·H·L·M·(d + 1) prefix states, fp32


def test_the_plain_cumsum_module_is_left_as_traced():
    assert capture(_model(form="cumsum"), (torch.randn(2, 64, 32),)).graph.variant_groups == []


@pytest.mark.parametrize("feature_map", ["sqr", "favor+"])
def test_every_option_keeps_loss_and_gradients(feature_map):
    model = _model(feature_map=feature_map)
    inputs = (torch.randn(2, 256, 32),)
    _, _, ref_loss, ref_grads = compiled_step(model, inputs, {"solver": "store-all", "variants": ((0, 0),)})
    for option in (1, 2, 3):
        _, record, loss, grads = compiled_step(model, inputs, {"solver": "store-all", "variants": ((option, option),)})
        assert record.lowerings and record.lowerings[0]["module"] == "0"
        assert torch.allclose(loss, ref_loss, rtol=1e-5, atol=0)
        assert max_relative_error(grads, ref_grads) <= 1e-5


def test_each_option_peak_is_what_its_variant_says():
    model = _model()
    inputs = (torch.randn(2, 512, 32),)
    peaks = []
    for option in range(4):
        compiled, record, _, _ = compiled_step(model, inputs, {"solver": "store-all", "variants": ((option, option),)})
        measured = measure_peak(lambda: compiled(inputs, {}).backward()).peak_bytes
        predicted = record.plan.peak_bytes - record.plan.stats["input_bytes"]
        assert abs(measured / predicted - 1) <= 0.05, (option, measured, predicted)
        peaks.append(measured)
    assert peaks[3] > 2 * peaks[0]      # the cumsum form keeps the L·M·d states
