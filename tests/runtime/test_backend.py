"""Applied plans: gradients equal eager's, BatchNorm statistics too, memory as simulated."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recompiler.runtime.check import check_step
from recompiler.solvers import DEFAULT_SOLVER

sys.path.insert(0, str(Path(__file__).parent))
from models import MODELS  # noqa: E402

RESULTS = {}


@pytest.mark.parametrize("solver", sorted({DEFAULT_SOLVER, "chen-greedy"}))
@pytest.mark.parametrize("budget", ["100%", "50%", "25%"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_plan_gradients_equal_eager(name, budget, solver):
    model, inputs = MODELS[name]()
    r = check_step(model, inputs, budget=budget, solver=solver, repeats=1, time_limit=3)
    RESULTS[(name, budget, solver)] = r
    assert r.graphs == 1
    assert r.max_grad_error <= 1e-5
    assert r.loss_equal
    assert r.buffers_equal  # BatchNorm running statistics updated exactly once, as in eager
    # measured peak of the planned step within ±10% of the simulated prediction
    assert abs(r.predicted_error) <= 0.10, (r.plan_peak_bytes, r.predicted_peak_bytes)
    assert r.plan_peak_bytes <= r.eager_peak_bytes * 1.02  # a plan never costs memory over eager


def test_recomputation_really_happens_and_saves_memory():
    model, inputs = MODELS["mlp"]()
    r = check_step(model, inputs, budget="25%", solver="chen-greedy", repeats=1)
    assert r.recomputations > 0
    assert r.plan_peak_bytes < 0.8 * r.eager_peak_bytes


def test_dropout_same_seed_same_gradients_across_runs():
    model, inputs = MODELS["transformer_dropout"]()
    a = check_step(model, inputs, budget="50%", solver="chen-greedy", repeats=1, seed=3)
    assert a.max_grad_error <= 1e-5 and a.recomputations > 0


def test_backend_listed_and_usable_in_a_fresh_process():
    code = (
        "import sys, torch, torch._dynamo\n"
        "assert 'recompiler' in torch._dynamo.list_backends()\n"
        "m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))\n"
        "c = torch.compile(m, backend='recompiler', options={'budget': '25%', 'solver': 'greedy-evict', "
        "'device_profile': 'cpu'})\n"
        "c(torch.randn(8, 16)).sum().backward()\n"
        "assert m[0].weight.grad is not None\n"
        "with torch.no_grad():\n"
        "    assert c(torch.randn(2, 16)).shape == (2, 1)\n"
        "print('recompiler' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_unknown_backend_option_is_a_clear_error():
    from recompiler.errors import SolverOptionError
    from recompiler.runtime.backend import BackendOptions

    with pytest.raises(SolverOptionError, match="takes no option budgt"):
        BackendOptions.from_dict({"budgt": "50%"})
