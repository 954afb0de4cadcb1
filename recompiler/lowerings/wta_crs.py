"""WTA-CRS sampled weight gradients (Liu et al., NeurIPS 2023): keep k rows of a linear's input, not all N.

A linear layer ``Y = X Wᵀ + b`` (X flattened to ``[N, D_in]``) keeps X only for its weight
gradient ``∇W = ∇Yᵀ X = Σ_i ∇Y_iᵀ X_i``. WTA-CRS ("winner-take-all column-row sampling")
keeps ``k = sample_count(N, ratio)`` rows of X and estimates that sum without bias:

* probabilities ``p_i ∝ ‖X_i‖`` — the paper's ``‖X_i‖·‖∇Y_i‖`` needs ∇Y, which the forward does
  not have; ``‖X_i‖`` alone is the paper's rule on a sample's first visit. All-zero X falls back to
  uniform (every term is zero then, so any distribution is exact);
* a deterministic winner set C (the |C| highest-probability rows), kept with scale 1;
* ``k − |C|`` rows drawn *with replacement* from the rest with probabilities ``p_j / (1 − P_C)``,
  each scaled by ``(1 − P_C) / ((k − |C|)·p_j)``; so each draw's expectation is
  ``Σ_{j∉C} ∇Y_jᵀ X_j / (k − |C|)`` and the estimate is unbiased for every X and every ∇Y;
* ``|C| ∈ 0..k−1`` minimises ``(1 − P_C)/(k − |C|)`` (ties go to the larger C: more of the sum is
  exact). When the rest has no mass (all its rows are zero) C alone is exact: the unused slots
  hold a row scaled by 0, so the output keeps its fixed shape and nothing divides by zero.

The public code's fallback (|C| = 0 with mixed replacement, rows stored unscaled) is biased and
is not reproduced.

``recompiler::wta_crs_sample(Tensor x, float ratio, Tensor seed) -> (Tensor rows, Tensor index)``
returns the k selected rows already multiplied by their scales, and their row ids, so the
estimate is ``wta_crs_weight_grad(grad_y, rows, index) = grad_y[index]ᵀ @ rows``. The draw uses
a private ``torch.Generator`` seeded from ``seed`` (the 0-dim int64 tensor
``torch.ops.recompiler.draw_seed()`` returns), so the op is a pure function of
``(x, ratio, seed)``: a recomputation samples the same rows. :func:`sampled_linear` is the
eager building block: exact forward, exact ∇X and ∇b, estimated ∇W, and saves only the
sampled rows and their indices (``k·D_in`` values plus ``k`` int64) besides the weight.

Example
-------
>>> import torch
>>> x, w = torch.randn(100, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
>>> y = sampled_linear(x, w, ratio=0.3)
>>> y.sum().backward()
>>> torch.allclose(x.grad, torch.ones(100, 4) @ w)      # ∇X exact; w.grad is an estimate
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import SolverOptionError
from ..frontend import rng  # noqa: F401 - defines recompiler::draw_seed

_SEED_MASK = (1 << 63) - 1
#: ``ratio·n_rows`` this close (relatively) to an integer counts as it: 0.07 × 100 is 7, not 8.
_COUNT_TOLERANCE = 1e-9


def check_ratio(ratio) -> float:
    """``ratio`` as a float if ``0 < ratio <= 1``, else a one-line :class:`SolverOptionError`."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise SolverOptionError(f"WTA-CRS ratio must be a number in (0, 1], not {ratio!r}") from None
    if not 0.0 < value <= 1.0:      # also refuses NaN
        raise SolverOptionError(f"WTA-CRS ratio must be in (0, 1], not {ratio!r}")
    return value


def sample_count(n_rows: int, ratio: float) -> int:
    """Rows WTA-CRS keeps of ``n_rows``: ``k = max(1, ceil(ratio·n_rows))``, at most ``n_rows``.

    At least one row so the estimate exists; a product within 1e-9 (relative) of an integer is
    that integer, so float rounding does not add a row. ``ratio`` must be in (0, 1].

    >>> sample_count(100, 0.3), sample_count(100, 0.07), sample_count(5, 0.01), sample_count(0, 0.5)
    (30, 7, 1, 0)
    """
    ratio = check_ratio(ratio)
    n_rows = int(n_rows)
    exact = ratio * n_rows
    nearest = round(exact)
    k = nearest if abs(exact - nearest) <= _COUNT_TOLERANCE * max(1.0, exact) else math.ceil(exact)
    return min(max(1, k), n_rows)


def _plan(x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row ids [k] and their scales [k] (float64); no host synchronisation beyond the seed."""
    n = x.shape[0]
    norms = torch.linalg.vector_norm(x, dim=1, dtype=torch.promote_types(x.dtype, torch.float32)).double()
    total = norms.sum()
    weights = torch.where(total > 0, norms, torch.ones_like(norms))    # all-zero X: uniform
    w_sorted, order = torch.sort(weights, descending=True, stable=True)   # ties: lower row id first
    # rest[c] = mass outside the top c rows, summed from the tail so an all-zero tail is exactly 0.
    rest = torch.flip(torch.cumsum(torch.flip(w_sorted, (0,)), 0), (0,))[:k]
    slots = torch.arange(k, device=x.device)
    objective = rest / (k - slots)
    # The largest |C| attaining the minimum (up to rounding): more of the sum kept exactly.
    c = torch.where(objective <= objective.min() * (1 + 1e-12), slots, 0).amax()

    # Inverse-CDF draws from the sorted rows at positions >= c: zero-weight rows are never picked.
    masked = torch.where(torch.arange(n, device=x.device) >= c, w_sorted, 0.0)
    cdf = torch.cumsum(masked, 0)
    mass = cdf[-1]
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed & _SEED_MASK)
    u = torch.rand(k, generator=gen, dtype=torch.float64, device=x.device)
    picked = torch.searchsorted(cdf, u * mass, right=True).clamp_(max=n - 1)

    winner = slots < c
    position = torch.where(winner, slots, picked)
    m = (k - c).double()
    # (1 − P_C)/((k − |C|)·p_j) in unnormalised weights; 0 when the rest is empty (C is exact).
    drawn_scale = torch.where(mass > 0, mass / (m * w_sorted[picked].clamp_min(1e-300)), 0.0)
    scale = torch.where(winner, 1.0, drawn_scale)
    return order[position], scale


@torch.library.custom_op(
    "recompiler::wta_crs_sample", mutates_args=(),
    schema="(Tensor x, float ratio, Tensor seed) -> (Tensor rows, Tensor index)")
def _sample(x: torch.Tensor, ratio: float, seed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() != 2:
        raise ValueError(f"wta_crs_sample takes a 2-D input [N, D], not shape {tuple(x.shape)}")
    k = sample_count(x.shape[0], ratio)
    if k == 0:
        return x.new_empty((0, x.shape[1])), torch.empty(0, dtype=torch.int64, device=x.device)
    index, scale = _plan(x, k, int(seed))
    acc = torch.promote_types(x.dtype, torch.float32)
    rows = (x.index_select(0, index).to(acc) * scale.to(acc)[:, None]).to(x.dtype)
    return rows, index


@_sample.register_fake
def _sample_fake(x, ratio, seed):
    if x.dim() != 2:
        raise ValueError(f"wta_crs_sample takes a 2-D input [N, D], not shape {tuple(x.shape)}")
    k = sample_count(int(x.shape[0]), ratio)     # a symbolic N specialises: k is a function of it
    return x.new_empty((k, x.shape[1])), x.new_empty(k, dtype=torch.int64)


def wta_crs_weight_grad(grad_y2d: torch.Tensor, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The WTA-CRS weight-gradient estimate ``grad_y2d[index]ᵀ @ rows``, shape ``[D_out, D_in]``.

    ``grad_y2d`` is ``[N, D_out]``; ``rows, index`` come from ``recompiler::wta_crs_sample``.

    >>> x, g = torch.randn(50, 8), torch.randn(50, 4)
    >>> rows, index = torch.ops.recompiler.wta_crs_sample(x, 1.0, torch.tensor(0))
    >>> torch.allclose(wta_crs_weight_grad(g, rows, index), g.t() @ x, atol=1e-5)   # ratio 1: exact
    True
    """
    return grad_y2d.index_select(0, index).t() @ rows


class _SampledLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, ratio, seed):
        rows, index = torch.ops.recompiler.wta_crs_sample(x.reshape(-1, x.shape[-1]), ratio, seed)
        # The weight is kept for ∇X (a parameter, held anyway); x itself is not.
        ctx.save_for_backward(weight, rows, index)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_y):
        weight, rows, index = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        grad_y2d = grad_y.reshape(-1, grad_y.shape[-1])
        if ctx.needs_input_grad[0]:
            grad_x = grad_y @ weight
        if ctx.needs_input_grad[1]:
            grad_w = wta_crs_weight_grad(grad_y2d, rows, index).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y2d.sum(0)
        return grad_x, grad_w, grad_b, None, None


def sampled_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, ratio: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` whose weight gradient is the WTA-CRS estimate from ``ratio``·N rows.

    ``x`` may have any leading dims (N is their product). ∇X and ∇b are exact; ∇W is unbiased.
    The seed of the row draw comes from ``generator`` (default: the default CPU generator, one
    draw, as ``recompiler::draw_seed``), so ``torch.manual_seed`` before a step fixes the rows.

    >>> x, w, b = torch.randn(2, 30, 8), torch.randn(4, 8, requires_grad=True), torch.zeros(4)
    >>> y = sampled_linear(x, w, b, ratio=0.1, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(y, x @ w.T), y.shape
    (True, torch.Size([2, 30, 4]))
    """
    ratio = check_ratio(ratio)
    if generator is None:
        seed = torch.ops.recompiler.draw_seed()
    else:
        seed = torch.empty((), dtype=torch.int64, device=generator.device).random_(generator=generator).cpu()
    return _SampledLinear.apply(x, weight, bias, ratio, seed)
