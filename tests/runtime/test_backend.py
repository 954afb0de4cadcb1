"""Applied plans: gradients equal eager's, BatchNorm statistics too, memory as simulated."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recompiler.frontend.rng import recording
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
    r = check_step(model, inputs, budget=budget, solver=solver, repeats=1, time_limit=3, compiler="eager")
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
    r = check_step(model, inputs, budget="25%", solver="chen-greedy", repeats=1, compiler="eager")
    assert r.recomputations > 0
    assert r.plan_peak_bytes < 0.8 * r.eager_peak_bytes


def test_dropout_same_seed_same_gradients_across_runs():
    model, inputs = MODELS["transformer_dropout"]()
    a = check_step(model, inputs, budget="50%", solver="chen-greedy", repeats=1, seed=3, compiler="eager")
    assert a.max_grad_error <= 1e-5 and a.recomputations > 0


def test_backend_listed_and_usable_in_a_fresh_process():
    code = (
        "import sys, torch, torch._dynamo\n"
        "assert 'recompiler' in torch._dynamo.list_backends()\n"
        "m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))\n"
        "c = torch.compile(m, backend='recompiler', options={'compiler': 'eager', 'budget': '25%', 'solver': 'greedy-evict', "
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


def test_solver_options_reach_the_solver_and_clashes_are_clear_errors():
    from recompiler.errors import SolverOptionError
    from recompiler.runtime.backend import BackendOptions, make_backend

    torch._dynamo.reset()
    backend = make_backend({"compiler": "eager", "budget": "50%", "solver": "fastsa",
                            "solver_options": {"stage1_iterations": 20_000, "stage2_iterations": 30_000,
                                               "threads": 1, "restarts": 1, "baselines": False}})
    m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    torch.compile(m, backend=backend)(torch.randn(8, 16)).sum().backward()
    stats = backend.session.graphs[0].plan.stats
    assert stats["stage2_iterations"] == 30_000 and stats["baselines"] == {}
    with pytest.raises(SolverOptionError, match="give seed as backend options"):
        BackendOptions.from_dict({"solver_options": {"seed": 1}})
    with pytest.raises(SolverOptionError, match="solver_options is a dict"):
        BackendOptions.from_dict({"solver_options": [1]})
    with pytest.raises((SolverOptionError, torch._dynamo.exc.BackendCompilerFailed), match="takes no option stage9"):
        torch._dynamo.reset()
        bad = make_backend({"compiler": "eager", "solver": "fastsa", "solver_options": {"stage9": 1}})
        torch.compile(m, backend=bad)(torch.randn(8, 16)).sum().backward()


# ------------------------------------------------------------------ random ops: replay and pin
def tiny_dropout():
    """Small enough for every solver, Checkmate's exact MILP included."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(16, 32)]
    for p in (0.5, 0.3, 0.2, 0.5, 0.3, 0.2, 0.5, 0.3):
        layers += [torch.nn.Tanh(), torch.nn.Dropout(p), torch.nn.Linear(32, 32)]
    return torch.nn.Sequential(*layers, torch.nn.Linear(32, 1)), (torch.randn(1024, 16),)


def compiled_step(model, inputs, options, seed):
    """Loss and parameter gradients of one compiled step after ``torch.manual_seed(seed)``; and its session."""
    import torch._dynamo

    from recompiler.runtime.backend import make_backend

    torch._dynamo.reset()
    backend = make_backend({"compiler": "eager", **options})
    step = torch.compile(model, backend=backend, dynamic=False)
    step(*inputs).sum().backward()  # compile first
    return (*eager_step(model, inputs, seed, step=step), backend.session)


def eager_step(model, inputs, seed, step=None):
    """Loss and parameter gradients of ``step`` (default: the model itself) after ``torch.manual_seed(seed)``."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = (model if step is None else step)(*inputs).sum()
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def assert_bit_identical(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_b))


def test_replay_same_seed_same_numbers_at_every_budget_and_solver():
    from recompiler.errors import InfeasibleBudget, ModelTooLarge
    from recompiler.runtime.backend import unwrap_backend_errors
    from recompiler.solvers import known_solvers

    model, inputs = tiny_dropout()
    loss, grads, _ = compiled_step(model, inputs, {"solver": "store-all", "budget": "100%"}, seed=7)
    reference = (loss, grads)
    random_recomputed = 0
    for solver in known_solvers():
        for budget in ("100%", "50%", "25%"):
            try:
                with unwrap_backend_errors():
                    loss, grads, session = compiled_step(model, inputs, {"solver": solver, "budget": budget,
                                                                         "time_limit": 1}, seed=7)
            except (ModelTooLarge, InfeasibleBudget):  # too big for an exact model; below the floor
                continue
            (record,) = session.graphs
            assert record.random_ops == 8
            random_recomputed += record.random_recomputed
            assert_bit_identical((loss, grads), reference)
    assert random_recomputed > 0, "some plan must recompute a dropout for this test to mean anything"


def test_replay_recomputed_masks_equal_their_first_draw():
    model, inputs = MODELS["transformer_dropout"]()
    with recording() as runs:
        _, _, session = compiled_step(model, inputs, {"solver": "chen-greedy", "budget": "50%"}, seed=3)
    assert session.graphs[0].random_recomputed > 0
    by_seed = {}
    for run in runs[len(runs) // 2:]:  # the measured step (the first half is the compiling call)
        by_seed.setdefault((run.op, run.seed), []).append(run.outputs)
    again = {k: v for k, v in by_seed.items() if len(v) > 1}
    assert again, "the plan recomputes dropouts, so some seed must be replayed"
    for runs in again.values():
        for outs in runs[1:]:
            assert all(torch.equal(a, b) for a, b in zip(runs[0], outs))
    assert len(by_seed) == session.graphs[0].random_ops  # one seed per random op


def test_replay_two_seeds_two_masks():
    model, inputs = tiny_dropout()
    a = compiled_step(model, inputs, {"budget": "50%"}, seed=1)[:2]
    b = compiled_step(model, inputs, {"budget": "50%"}, seed=2)[:2]
    c = compiled_step(model, inputs, {"budget": "50%"}, seed=1)[:2]
    assert not torch.equal(a[0], b[0])
    assert_bit_identical(a, c)


@pytest.mark.parametrize("budget", ["100%", "50%"])
def test_pin_is_bit_identical_to_eager(budget):
    model, inputs = MODELS["transformer_dropout"]()
    loss, grads, session = compiled_step(model, inputs, {"budget": budget, "rng": "pin", "solver": "chen-greedy"},
                                         seed=5)
    assert session.graphs[0].random_ops == 0 and session.graphs[0].plan.stats["rng"] == "pin"
    assert_bit_identical((loss, grads), eager_step(model, inputs, seed=5))


def test_replay_meets_a_budget_pin_cannot():
    model, inputs = MODELS["transformer_dropout"]()
    pin = check_step(model, inputs, budget="50%", rng="pin", repeats=1, time_limit=3, compiler="eager")
    replay = check_step(model, inputs, budget="50%", rng="replay", repeats=1, time_limit=3, compiler="eager")
    assert not pin.feasible and replay.feasible
    assert replay.reference == "store-all, replayed RNG" and replay.max_grad_error == 0.0
    assert pin.reference == "eager" and pin.max_grad_error == 0.0
    assert replay.plan_peak_bytes < pin.plan_peak_bytes


def test_bad_rng_option_is_a_clear_error():
    from recompiler.errors import SolverOptionError
    from recompiler.runtime.backend import BackendOptions

    with pytest.raises(SolverOptionError, match="rng must be one of"):
        BackendOptions.from_dict({"rng": "philox"})


@pytest.mark.parametrize("rng, random_ops", [("pin", 0), ("replay", 8)])
def test_recompiler_compile_takes_rng(rng, random_ops):
    import torch._dynamo

    import recompiler

    torch._dynamo.reset()
    model, (x,) = tiny_dropout()
    step = recompiler.compile(model, budget="50%", rng=rng, solver="chen-greedy", compiler="eager")
    step(x).sum().backward()
    (record,) = step.recompiler_session.graphs
    assert step.recompiler_session.options.rng == rng and record.plan.stats["rng"] == rng
    assert record.random_ops == random_ops


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                               torch.nn.Linear(64, 1))


def test_a_missed_budget_warns_under_torch_compile():
    """Issue 20: "5%" under torch.compile was missed in silence (the CLI exits 3)."""
    import recompiler.runtime.backend as rb

    model = _mlp()
    compiled = torch.compile(model, backend=rb.make_backend({"budget": "5%", "compiler": "eager"}))
    with pytest.warns(UserWarning, match=r"not reached: best peak found .* a lower bound"):
        compiled(torch.randn(16, 32)).sum().backward()
    assert not rb.LAST_SESSION.graphs[0].plan.feasible


@pytest.mark.parametrize("budget", [0, True, "0%", "5 apples"])
def test_a_budget_the_cli_refuses_is_refused_by_the_backend_before_tracing(budget):
    """Issue 20: the integer 0 was accepted under torch.compile while the CLI rejects it."""
    import recompiler
    from recompiler.errors import BudgetError
    from recompiler.runtime.backend import make_backend

    with pytest.raises(BudgetError):
        make_backend({"budget": budget})
    with pytest.raises(BudgetError):
        recompiler.compile(_mlp(), budget)


class _Broken(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(16, 16), torch.nn.Linear(16, 1)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        torch._dynamo.graph_break()
        return self.b(h)


@pytest.mark.parametrize("budget", ["1GiB", 10**9])
def test_an_absolute_budget_over_several_graphs_warns_whatever_its_type(budget):
    """Issue 20: the several-graphs warning fired for integer budgets only, not for "12GiB"."""
    import recompiler.runtime.backend as rb

    compiled = torch.compile(_Broken(), backend=rb.make_backend({"budget": budget, "compiler": "eager"}))
    with pytest.warns(UserWarning, match="several graphs"):
        compiled(torch.randn(4, 16)).sum().backward()
    assert len(rb.LAST_SESSION.graphs) == 2


def test_an_extreme_overhead_warns_under_torch_compile():
    """Issue 20: a +842% plan was applied without a word. The backend warns as the CLI does, with a
    cheaper nearby budget (the check every planned graph goes through, on a plan known to be extreme)."""
    from types import SimpleNamespace

    import recompiler.runtime.backend as rb
    from recompiler.builders import training_chain
    from recompiler.solvers import solve

    g = training_chain(32)
    plan = solve(g, "20%", "checkmate-lp")
    assert plan.feasible and plan.overhead > 1
    with pytest.warns(UserWarning, match=r"adds \d+% to the step's compute .* a budget of \d+%"):
        rb._warn_about(plan, SimpleNamespace(graph=g))
