"""The cost model: bytes from metadata, the roofline by hand, device profiles, --profile timing."""

import pytest
import torch
from torch import nn

from recompiler.frontend import capture
from recompiler.frontend.costs import PROFILES, UnknownDeviceProfile, get_profile, roofline, tensor_bytes


def test_tensor_bytes_sums_tuples_and_dtypes():
    t = (torch.empty(3, 4, dtype=torch.float16), torch.empty(5, dtype=torch.int64), None, 7)
    assert tensor_bytes(t) == 3 * 4 * 2 + 5 * 8


def test_datasheet_profiles():
    a100, h100 = PROFILES["a100"], PROFILES["h100"]
    assert (a100.peak("float32"), a100.peak("bfloat16"), a100.bandwidth) == (19.5e12, 312e12, 2.039e12)
    assert (h100.peak("float32"), h100.peak("float16"), h100.bandwidth) == (67e12, 989e12, 3.35e12)
    assert PROFILES["cpu"].peak("int8") == PROFILES["cpu"].peak("float32")
    with pytest.raises(UnknownDeviceProfile, match="known: a100, cpu, h100"):
        get_profile("tpu")


def test_roofline_by_hand():
    p = PROFILES["a100"]
    # compute-bound: 2 * 4096^3 FLOPs of fp32 matmul; memory-bound: a 1 GB copy
    assert roofline(p, flops=2 * 4096**3, bytes_moved=3 * 4096**2 * 4, dtype="float32") == \
        pytest.approx(2 * 4096**3 / 19.5e12 + 3e-6)
    assert roofline(p, flops=0, bytes_moved=1e9, dtype="float32") == pytest.approx(1e9 / 2.039e12 + 3e-6)


@pytest.fixture(scope="module")
def linear_caps():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 8))
    x = torch.randn(64, 256)
    return {name: capture(m, (x,), device_profile=name) for name in ("cpu", "h100")}, capture(m, (x,), profile=True)


def test_node_costs_follow_the_roofline(linear_caps):
    caps, _ = linear_caps
    cap = caps["h100"]
    g = cap.graph
    first = cap.ops.index("addmm")
    flops = 2 * 64 * 256 * 512
    moved = 4 * (512 * 256 + 512 + 64 * 256 + 64 * 512)   # W, b, x read; output written
    assert cap.flops[first] == flops
    assert g.compute[first] == pytest.approx(max(flops / 67e12, moved / 3.35e12) + 3e-6)
    # views and getitems cost nothing; the cpu profile is slower than the h100 on every op
    assert all(g.compute[i] == 0 for i, k in enumerate(cap.kinds) if k in ("view", "input"))
    ops = [i for i, k in enumerate(cap.kinds) if k == "op"]
    assert all(caps["cpu"].graph.compute[i] > g.compute[i] for i in ops)


def test_profile_mode_times_every_op(linear_caps):
    caps, timed = linear_caps
    g = timed.graph
    assert timed.profiled and timed.plan_stats()["device_profile"] == "profiled"
    ops = [i for i, k in enumerate(timed.kinds) if k == "op"]
    assert all(0 < g.compute[i] < 1.0 for i in ops)
    # the timed graph differs from the roofline one only in compute
    assert g.names == caps["cpu"].graph.names and (g.memory == caps["cpu"].graph.memory).all()
    # the big matmul (64x256x512) takes longer than the loss's sum over 64x8 values
    mm = timed.ops.index("addmm")
    loss = timed.ops.index("sum")
    assert g.compute[mm] > g.compute[loss]
