"""Extreme tensoring optimizers (recompiler.optim): exactness, state layout, convergence, errors."""

import copy
import math

import pytest
import torch

from recompiler.errors import OptimizerError, RecompilerError
from recompiler.optim import ExtremeTensorAdagrad, ExtremeTensorAdam, mode_dims, state_numbers

SHAPES = [(17,), (12, 9), (4, 5, 6), (97,), (64, 64), (3,)]


def _params(shapes, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


def _loss(params):
    # non-separable, non-quadratic, so each step's gradient differs in every entry
    return sum((p ** 4).sum() * 0.1 + (p.sin() * p.reshape(-1).roll(1).view_as(p)).sum() for p in params)


def _run(opt, params, steps):
    for _ in range(steps):
        opt.zero_grad()
        _loss(params).backward()
        opt.step()


def _make(kind, params, order, **kw):
    if kind == "adagrad":
        return ExtremeTensorAdagrad(params, lr=kw.pop("lr", 0.05), order=order, **kw)
    return ExtremeTensorAdam(params, lr=kw.pop("lr", 0.01), order=order, **kw)


# ----------------------------------------------------------------------------- exactness at p = 1


def test_order1_equals_torch_adagrad_20_steps():
    a, b = _params(SHAPES), _params(SHAPES)
    # ε inside the root (ours, per the paper) vs outside (torch): with ε → 0 they agree
    ours = ExtremeTensorAdagrad(a, lr=0.1, order=1, eps=1e-20)
    ref = torch.optim.Adagrad(b, lr=0.1, eps=1e-20)
    _run(ours, a, 20)
    _run(ref, b, 20)
    moved = max((x - y).abs().max().item() for x, y in zip(a, _params(SHAPES)))
    assert moved > 1e-2  # the parameters did move
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_order1_adam_equals_torch_adam_20_steps():
    a, b = _params(SHAPES), _params(SHAPES)
    ours = ExtremeTensorAdam(a, lr=0.01, order=1, weight_decay=0.1)
    ref = torch.optim.AdamW(b, lr=0.01, weight_decay=0.1)
    _run(ours, a, 20)
    _run(ref, b, 20)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_order2_matches_a_direct_transcription_of_algorithm_1():
    (x,) = _params([(6, 4)])
    y = x.detach().clone()
    opt = ExtremeTensorAdagrad([x], lr=0.1, order=2, eps=1e-3)
    s1, s2 = torch.zeros(5, dtype=x.dtype), torch.zeros(5, dtype=x.dtype)  # 24 -> 5 x 5, one padded
    for _ in range(5):
        opt.zero_grad()
        (x ** 3).sum().backward()
        g = torch.cat([x.grad.reshape(-1), x.grad.new_zeros(1)]).view(5, 5)
        opt.step()
        s1 += (g ** 2).sum(1)
        s2 += (g ** 2).sum(0)
        den = (1e-3 + s1)[:, None] ** 0.25 * (1e-3 + s2)[None, :] ** 0.25
        y -= 0.1 * (g / den).reshape(-1)[:24].view(6, 4)
        torch.testing.assert_close(x.detach(), y, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape,order", [((8, 8), 2), ((4, 4, 4), 3), ((9, 9), 4)])
def test_adam_first_step_is_lr_for_every_order(shape, order):
    # Adam's first step moves each entry by lr·sign(g); the per-mode means keep that for every p
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    opt = ExtremeTensorAdam([x], lr=0.01, order=order, max_dim=1 << 20)
    assert math.prod(mode_dims(shape, order)) == x.numel()  # no padding: exact
    (x * -3.0).sum().backward()
    opt.step()
    torch.testing.assert_close(x.detach(), torch.full(shape, 0.01, dtype=torch.float64), atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------- state layout


@pytest.mark.parametrize("order", [None, 1, 2, 3])
def test_adagrad_state_is_sum_of_mode_sizes(order):
    params = _params(SHAPES)
    opt = ExtremeTensorAdagrad(params, order=order)
    _run(opt, params, 1)
    for p in params:
        dims = mode_dims(p.shape, order)
        assert math.prod(dims) >= p.numel() and (order is None or len(dims) == order)
        st = opt.state[p]
        assert set(st) == {"mode_sums"}
        assert sum(v.numel() for v in st.values()) == sum(dims) == state_numbers(p.shape, order)
        assert st["mode_sums"].dtype == p.dtype
    measured = sum(v.numel() for st in opt.state.values() for v in st.values())
    assert measured == ExtremeTensorAdagrad.state_numbers_for([p.shape for p in params], order=order)
    assert opt.state_size() == measured
    nbytes = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values())
    assert nbytes == ExtremeTensorAdagrad.state_bytes_for(params, order=order)
    assert nbytes == ExtremeTensorAdagrad.state_bytes_for([p.shape for p in params], torch.float64, order=order)
    assert nbytes == ExtremeTensorAdagrad.state_bytes_for([p.shape for p in params], itemsize=8, order=order)
    if order == 3:  # far below the Πdᵢ of diagonal AdaGrad
        assert measured < sum(p.numel() for p in params) / 3


@pytest.mark.parametrize("first_moment", [True, False])
@pytest.mark.parametrize("order", [None, 2])
def test_adam_state_layout(order, first_moment):
    params = _params(SHAPES, dtype=torch.float32)
    opt = ExtremeTensorAdam(params, order=order, first_moment=first_moment)
    _run(opt, params, 2)
    for p in params:
        st = opt.state[p]
        assert set(st) == {"step", "mode_avgs"} | ({"exp_avg"} if first_moment else set())
        assert st["mode_avgs"].numel() == state_numbers(p.shape, order)
    measured = sum(v.numel() for st in opt.state.values() for v in st.values())
    assert measured == ExtremeTensorAdam.state_numbers_for(params, order=order, first_moment=first_moment)
    nbytes = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values())
    assert nbytes == ExtremeTensorAdam.state_bytes_for([p.shape for p in params], torch.float32,
                                                       order=order, first_moment=first_moment)


def test_mode_dims_rule():
    assert mode_dims((64, 64)) == (64, 64)  # 4096 > 1024: smallest p is 2
    assert mode_dims((768,)) == (768,)
    assert mode_dims((4096, 4096)) == (256, 256, 256)
    assert mode_dims((100, 30), max_dim=100) == (55, 55)
    assert mode_dims(1000, max_dim=10) == (10, 10, 10)
    assert mode_dims(1001, max_dim=10) == (6, 6, 6, 5)  # near-equal, non-increasing, minimal p
    for n in [1, 2, 7, 97, 1000, 12345]:
        for order in [1, 2, 3, 5]:
            dims = mode_dims(n, order)
            assert len(dims) == order and math.prod(dims) >= n and max(dims) - min(dims) <= 1
        dims = mode_dims(n, max_dim=8)
        assert max(dims) <= 8 and (len(dims) == 1 or math.ceil(n ** (1 / (len(dims) - 1)) - 1e-9) > 8)
    assert state_numbers((4096, 4096)) == 768


def test_prime_size_parameter_is_padded():
    (p,) = _params([(97,)])
    ref = p.detach().clone()
    opt = ExtremeTensorAdagrad([p], lr=0.1, order=2)
    assert mode_dims(97, 2) == (10, 10)  # 3 padded entries
    target = torch.linspace(-1, 1, 97, dtype=p.dtype)
    for _ in range(50):
        opt.zero_grad()
        ((p - target) ** 2).sum().backward()
        opt.step()
    assert p.shape == (97,) and torch.isfinite(p).all()
    assert opt.state[p]["mode_sums"].numel() == 20
    assert ((p - target) ** 2).sum() < 0.5 * ((ref - target) ** 2).sum()


# ----------------------------------------------------------------------------- Optimizer conventions


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_state_dict_round_trip_gives_identical_steps(kind):
    a = _params(SHAPES)
    opt = _make(kind, [{"params": a[:3], "order": 2}, {"params": a[3:], "lr": 0.02}], order=3)
    _run(opt, a, 5)
    b = [x.detach().clone().requires_grad_() for x in a]
    opt_b = _make(kind, [{"params": b[:3], "order": 2}, {"params": b[3:], "lr": 0.02}], order=3)
    sd = copy.deepcopy(opt.state_dict())
    opt_b.load_state_dict(sd)
    fresh = [x.detach().clone().requires_grad_() for x in a]
    opt_fresh = _make(kind, [{"params": fresh[:3], "order": 2}, {"params": fresh[3:], "lr": 0.02}], order=3)
    _run(opt, a, 5)
    _run(opt_b, b, 5)
    _run(opt_fresh, fresh, 5)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(a, fresh))  # the loaded state mattered
    assert opt_b.param_groups[0]["order"] == 2 and opt_b.param_groups[1]["order"] == 3


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_closure_zero_grad_and_untouched_params(kind):
    a, idle = _params([(5, 5)]), _params([(3,)], seed=1)
    opt = _make(kind, a + idle, order=2)

    def closure():
        opt.zero_grad()
        loss = _loss(a)
        loss.backward()
        return loss

    before = idle[0].detach().clone()
    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad
    assert torch.equal(idle[0], before) and idle[0] not in opt.state
    opt.zero_grad()
    assert a[0].grad is None


# ----------------------------------------------------------------------------- convergence


CASES = [("adagrad", 1), ("adagrad", 2), ("adagrad", 3), ("adam", 1), ("adam", 2), ("adam", 3)]


@pytest.mark.parametrize("kind,order", CASES)
def test_convex_quadratic_loss_down_100x(kind, order):
    g = torch.Generator().manual_seed(3)
    n = 60
    scales = torch.logspace(-1, 1, n, dtype=torch.float64)  # ill-conditioned diagonal quadratic
    target = torch.randn(n, generator=g, dtype=torch.float64)
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    lr = 1.0 if kind == "adagrad" else 0.1
    opt = _make(kind, [x], order=order, lr=lr)

    def f():
        return 0.5 * (scales * (x - target) ** 2).sum()

    start = f().item()
    for _ in range(400):
        opt.zero_grad()
        f().backward()
        opt.step()
    assert f().item() < start / 100


@pytest.fixture(autouse=True)
def one_thread():
    # tiny tensors: extra intra-op threads only contend with each other on a busy machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("kind,order", CASES)
def test_small_mlp_loss_drops(kind, order):
    torch.manual_seed(0)
    X = torch.randn(128, 10)
    y = (X[:, :3].sum(1, keepdim=True) > 0).float()
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = _make(kind, model.parameters(), order=order, lr=0.05 if kind == "adagrad" else 0.01)
    lossf = torch.nn.BCEWithLogitsLoss()
    with torch.no_grad():
        start = lossf(model(X), y).item()
    for _ in range(100):
        opt.zero_grad()
        lossf(model(X), y).backward()
        opt.step()
    with torch.no_grad():
        end = lossf(model(X), y).item()
    assert end < 0.35 * start


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_compiled_model_trains_like_eager(kind):
    torch.manual_seed(0)
    X, y = torch.randn(64, 8), torch.randn(64, 1)
    eager = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, backend="aot_eager")
    opt_e = _make(kind, eager.parameters(), order=2)
    opt_c = _make(kind, twin.parameters(), order=2)
    losses = []
    for _ in range(5):
        for model, opt in ((eager, opt_e), (compiled, opt_c)):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(X), y)
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for pe, pc in zip(eager.parameters(), twin.parameters()):
        torch.testing.assert_close(pe, pc, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs", [
    dict(order=0), dict(order=-2), dict(order=2.0), dict(order="2"), dict(order=True),
    dict(lr=-1.0), dict(eps=0.0), dict(eps=-1e-8), dict(max_dim=1), dict(weight_decay=-0.1),
])
@pytest.mark.parametrize("cls", [ExtremeTensorAdagrad, ExtremeTensorAdam])
def test_bad_input_is_a_one_line_error(cls, kwargs):
    with pytest.raises(OptimizerError) as info:
        cls(_params([(3,)]), **kwargs)
    assert isinstance(info.value, RecompilerError)
    msg = str(info.value)
    assert msg and "\n" not in msg and list(kwargs)[0] in msg


def test_bad_adam_input_and_bad_group_and_helpers():
    for kwargs in (dict(betas=(0.9, 1.0)), dict(betas=(-0.1, 0.9)), dict(betas=0.9), dict(first_moment=1)):
        with pytest.raises(OptimizerError, match=r"^[^\n]+$"):
            ExtremeTensorAdam(_params([(3,)]), **kwargs)
    with pytest.raises(OptimizerError, match="order"):
        ExtremeTensorAdagrad([{"params": _params([(3,)]), "order": 0}])
    with pytest.raises(OptimizerError, match="order"):
        state_numbers((4, 4), order=0)
    with pytest.raises(OptimizerError, match="max_dim"):
        mode_dims((4, 4), max_dim=0)
