"""Planned graphs compiled by inductor: gradients, the default partition at 100%, shapes, no_grad,
predicted vs profiler-measured peaks, and the eager compiler's bit-exactness."""

from collections import Counter

import pytest
import torch
from torch import nn

from recompiler.errors import RecompilerError
from recompiler.frontend.capture import capture
from recompiler.frontend.fusion import saved_inlined, solve_fused
from recompiler.runtime.backend import make_backend
from recompiler.runtime.memory import measure_peak


class PointwiseMLP(nn.Module):
    """Residual blocks whose activations are long pointwise chains (what inductor fuses)."""

    def __init__(self, d=128, blocks=4):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(blocks))

    def forward(self, x):
        for layer in self.layers:
            h = layer(x)
            x = x + torch.nn.functional.gelu(h) * torch.sigmoid(h) * 0.5 + torch.tanh(h)
        return x.pow(2).mean()


def _model():
    torch.manual_seed(0)
    return PointwiseMLP(), torch.randn(1024, 128)


def _grads(model, fn, x):
    model.zero_grad(set_to_none=True)
    loss = fn(x)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _rel(a, b):
    return max(((g - e).abs().max() / e.abs().max()).item() for g, e in zip(a, b))


@pytest.fixture(scope="module")
def inductor_tolerance():
    """How far inductor itself (torch.compile's default) is from eager on this model."""
    model, x = _model()
    _, eager = _grads(model, model, x)
    torch._dynamo.reset()
    _, compiled = _grads(model, torch.compile(model), x)
    return max(_rel(compiled, eager), 1e-6)


DETERMINISTIC = {"stage1_iterations": 200_000, "stage2_iterations": 200_000, "threads": 1}


def _compiled(model, **options):
    torch._dynamo.reset()
    backend = make_backend({"time_limit": 2, "compiler": "inductor", **options})
    return torch.compile(model, backend=backend), backend.session


@pytest.mark.parametrize("budget", ["100%", "50%", "25%"])
def test_gradients_within_inductors_own_tolerance(budget, inductor_tolerance):
    model, x = _model()
    loss0, eager = _grads(model, model, x)
    compiled, session = _compiled(model, budget=budget)
    loss, grads = _grads(model, compiled, x)
    assert session.compiler == "inductor" and len(session.graphs) == 1
    # measured here: inductor ~5e-7 from eager; the planned graphs no further than 10x that
    assert _rel(grads, eager) <= 10 * inductor_tolerance
    assert torch.allclose(loss, loss0, rtol=1e-5)
    if budget != "100%":
        assert session.graphs[0].recomputed > 0


def test_plan_at_100_percent_is_inductors_default_partition():
    model, x = _model()
    cap = capture(model, (x,), compiler="inductor")
    reference = cap.graph.reference
    assert reference is not None and sum(cap.inlined) > 0
    assert saved_inlined(cap, reference) == []  # what the reference saves was charged as a buffer
    from recompiler.frontend.capture import _WithLoss, default_loss

    step, session = _compiled(_WithLoss(model, default_loss), budget="100%")  # the module capture traces
    step(((x,)), {}).backward()
    plan = session.graphs[0].plan
    assert plan.stats.get("reference") is True
    assert plan.peak_fraction == 1.0 and plan.overhead == 0.0
    # the backend lowers the same joint graph (same ids): it runs exactly the default partition
    assert plan.schedule == reference
    assert Counter(reference) == Counter(plan.schedule)


@pytest.mark.parametrize("budget", ["100%", "50%"])
def test_predicted_peak_bounds_the_profiler(budget):
    # measured here: 100% -32%, 50% -13% (the static model charges the sigmoid/tanh a plan may
    # save, which inductor recomputes inside the gradient's kernel); never above the prediction
    # a fixed amount of search, so the plan (and what it saves) does not depend on the load: under
    # a 2 s limit a loaded machine once got a plan measured at 1.2x its prediction (issue 14)
    model, x = _model()
    compiled, session = _compiled(model, budget=budget, time_limit=None, solver_options=DETERMINISTIC)
    _grads(model, compiled, x)  # compile first
    model.zero_grad(set_to_none=True)
    measured = measure_peak(lambda: compiled(x).backward(), method="profiler").peak_bytes
    plan = session.graphs[0].plan
    predicted = plan.peak_bytes - plan.stats["input_bytes"]
    assert 0.6 * predicted <= measured <= 1.10 * predicted, (budget, measured, predicted)


def test_fused_solving_never_saves_an_inlined_value():
    model, x = _model()
    cap = capture(model, (x,), compiler="inductor")
    plan = solve_fused(cap, "40%", "fastsa", time_limit=2)
    assert saved_inlined(cap, plan.schedule, plan.variant) == []


def test_recompiles_on_a_new_shape_and_runs_without_grad():
    model, x = _model()
    compiled, session = _compiled(model, budget="50%")
    _grads(model, compiled, x)
    _, grads = _grads(model, compiled, x[:256])
    _, eager = _grads(model, model, x[:256])
    assert len(session.graphs) == 2
    assert _rel(grads, eager) < 1e-4
    with torch.no_grad():
        out = compiled(x[:64])
    assert torch.allclose(out, model(x[:64]), rtol=1e-5)
    assert len(session.graphs) == 2  # inference is not planned


def test_eager_compiler_is_bit_identical():
    model, x = _model()
    _, eager = _grads(model, model, x)
    compiled, session = _compiled(model, budget="50%", compiler="eager")
    _, grads = _grads(model, compiled, x)
    assert session.compiler == "eager" and session.graphs[0].recomputed > 0
    assert all(torch.equal(g, e) for g, e in zip(grads, eager))


def test_dropout_recomputed_under_inductor_replays_its_seeds(monkeypatch):
    # CI systems set CI, under which inductor refuses to make its own fallback for an op that
    # has a decomposition (dropout's backward, kept whole): ours must be registered beforehand.
    monkeypatch.setenv("CI", "true")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Dropout(0.2), nn.Linear(256, 64), nn.Dropout(0.2))
    x = torch.randn(512, 64)
    from recompiler.runtime.check import check_step

    r = check_step(model, (x,), budget="40%", repeats=1, time_limit=2, compiler="inductor")
    assert r.compiler == "inductor" and r.random_ops >= 2
    assert r.max_grad_error < 1e-4, r.reference


def test_bad_compiler_is_one_clear_error():
    with pytest.raises(RecompilerError, match="compiler is inductor or eager"):
        make_backend({"compiler": "tvm"})
    with pytest.raises(RecompilerError, match="unknown compiler"):
        capture(nn.Linear(2, 2), (torch.randn(1, 2),), compiler="tvm")


class _Attention(nn.Module):
    """One attention head over a long sequence: the L×L probabilities dominate the peak."""

    def __init__(self, d=16):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return (torch.softmax(q @ k.transpose(-1, -2) * 0.25, -1) @ v).pow(2).mean()


def test_lowerings_match_and_apply_under_inductor(inductor_tolerance):
    torch.manual_seed(0)
    model, x = _Attention(), torch.randn(2, 512, 16)
    cap = capture(model, (x,), compiler="inductor")
    assert [g.kind for g in cap.graph.variant_groups] == ["attention"]  # softmax kept whole for the matcher
    _, eager = _grads(model, model, x)
    compiled, session = _compiled(model, budget="20%")
    _, grads = _grads(model, compiled, x)
    assert [entry["kind"] for entry in session.graphs[0].lowerings] == ["attention"]
    assert _rel(grads, eager) <= 1e-4
