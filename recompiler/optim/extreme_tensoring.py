"""Extreme tensoring (Chen, Agarwal, Hazan, Zhang & Zhang, ICLR 2020, arXiv 1902.04620).

AdaGrad (and an Adam-family variant) whose diagonal preconditioner is a Kronecker
product of per-mode diagonal factors, so that its state is Σdᵢ numbers per
parameter instead of Πdᵢ.

Reshaping
    A parameter of ``d`` entries is flattened, padded with zeros at the end to
    ``Πdᵢ >= d`` entries and viewed as an order-``p`` tensor of mode sizes
    ``d₁..d_p`` (:func:`mode_dims`). The padding entries have zero gradient, so
    they never add to an accumulator and are never written back.

The order / max_dim rule (:func:`mode_dims`)
    ``order=None``: ``p`` is the smallest ``p >= 1`` with ``ceil(d^(1/p)) <= max_dim``.
    Given ``p``, every mode is ``k = ceil(d^(1/p))`` (exact integer root), then modes
    are lowered to ``k - 1`` one at a time, from the last, while the product stays
    ``>= d``. So the sizes differ by at most one, are non-increasing, and the padding
    ``Πdᵢ - d`` is small. ``order=1`` gives ``(d,)``: diagonal AdaGrad / Adam.
    A parameter with no entries gets ``p`` modes of size 0 (no state, no update).

ExtremeTensorAdagrad (Algorithm 1 of the paper)
    ``S⁽ⁱ⁾ += Σ_{all indices but the i-th} G²`` and
    ``x ← x − η · G / Πᵢ (ε + S⁽ⁱ⁾)^{1/(2p)}``:
    ε is added to every mode's accumulator *inside* the ``1/(2p)`` power (the
    paper's placement). With ``p = 1`` this is ``G / sqrt(ε + S)``;
    ``torch.optim.Adagrad`` uses ``G / (sqrt(S) + ε)``; the two agree as ε → 0.
    Default ``eps=1e-10`` (so with ``p = 1`` the denominator's floor is 1e-5).
    ``weight_decay`` adds ``wd · x`` to the gradient first (as torch's Adagrad).

ExtremeTensorAdam
    ``V⁽ⁱ⁾ ← β₂ V⁽ⁱ⁾ + (1 − β₂) · mean_{all indices but the i-th} G²`` (the mean,
    i.e. the paper's per-mode sum divided by ``Πⱼ≠ᵢ dⱼ`` -- a constant per
    parameter, so the denominator has the scale of ``|G|`` and Adam's learning
    rates carry over for every ``p``), bias-corrected ``V̂⁽ⁱ⁾ = V⁽ⁱ⁾ / (1 − β₂ᵗ)``;
    ``m ← β₁ m + (1 − β₁) G``, ``m̂ = m / (1 − β₁ᵗ)`` (``first_moment=False``: ``m̂ = G``);
    ``x ← x − η · m̂ / (Πᵢ (V̂⁽ⁱ⁾)^{1/(2p)} + ε)``: ε outside, as torch's Adam, so
    ``order=1`` is exactly ``torch.optim.Adam``. ``weight_decay`` is decoupled
    (AdamW): ``x ← x · (1 − η · wd)`` before the step.

Exact state layout (``optimizer.state[param]``), per parameter of shape ``s``
    ExtremeTensorAdagrad: ``"mode_sums"``: 1-D, ``Σdᵢ`` entries, the parameter's
    dtype and device (the modes' accumulators concatenated in mode order). Nothing
    else (no step counter): ``Σdᵢ`` numbers, ``Σdᵢ · itemsize`` bytes.
    ExtremeTensorAdam: ``"step"``: 0-d float32 tensor on the CPU (4 bytes, whatever
    the parameter's dtype); ``"mode_avgs"``: 1-D, ``Σdᵢ`` entries, parameter
    dtype; with ``first_moment=True`` also ``"exp_avg"``: the parameter's shape and
    dtype. Numbers: ``Σdᵢ + 1 (+ Πsⱼ)``; bytes ``(Σdᵢ (+ Πsⱼ)) · itemsize + 4``.
    :func:`state_numbers` and ``state_bytes_for`` count exactly this without
    instantiating an optimizer. State is created lazily, at a parameter's first
    step with a gradient (as torch's optimizers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import torch

from ..errors import OptimizerError

__all__ = [
    "DEFAULT_MAX_DIM",
    "ExtremeTensorAdagrad",
    "ExtremeTensorAdam",
    "mode_dims",
    "state_numbers",
]

#: Default largest mode size when ``order=None``.
DEFAULT_MAX_DIM = 1024

#: Bytes of ExtremeTensorAdam's per-parameter ``step`` (a float32 scalar).
STEP_BYTES = 4


# ----------------------------------------------------------------------------- validation


def _check_order(order) -> int | None:
    if order is None:
        return None
    if isinstance(order, bool) or not isinstance(order, int):
        raise OptimizerError(f"extreme tensoring's order is a whole number >= 1 or None, not {order!r}")
    if order < 1:
        raise OptimizerError(f"extreme tensoring's order must be >= 1, not {order}")
    return order


def _check_max_dim(max_dim) -> int:
    if isinstance(max_dim, bool) or not isinstance(max_dim, int) or max_dim < 2:
        raise OptimizerError(f"extreme tensoring's max_dim is a whole number >= 2, not {max_dim!r}")
    return max_dim


def _check_number(name: str, value, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptimizerError(f"{name} must be a finite number, not {value!r}")
    if positive and value <= 0:
        raise OptimizerError(f"{name} must be > 0, not {value!r}")
    if not positive and value < 0:
        raise OptimizerError(f"{name} must be >= 0, not {value!r}")
    return float(value)


def _check_betas(betas) -> tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise OptimizerError(f"betas must be a pair (beta1, beta2), not {betas!r}") from None
    for name, b in (("beta1", b1), ("beta2", b2)):
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b < 1.0:
            raise OptimizerError(f"{name} must be in [0, 1), not {b!r}")
    return float(b1), float(b2)


# ----------------------------------------------------------------------------- shapes


def _numel(shape_or_numel) -> int:
    if isinstance(shape_or_numel, torch.Tensor):
        return shape_or_numel.numel()
    if isinstance(shape_or_numel, int) and not isinstance(shape_or_numel, bool):
        n = shape_or_numel
    else:
        try:
            dims = [int(s) for s in shape_or_numel]
        except TypeError:
            raise OptimizerError(f"a shape is a tuple of whole numbers, not {shape_or_numel!r}") from None
        if any(s < 0 for s in dims):
            raise OptimizerError(f"a shape has no negative sizes: {tuple(dims)}")
        n = math.prod(dims)
    if n < 0:
        raise OptimizerError(f"a parameter has >= 0 entries, not {n}")
    return n


def _ceil_root(d: int, p: int) -> int:
    """The smallest integer k with k**p >= d (d >= 1)."""
    k = max(1, int(round(d ** (1.0 / p))))
    while k ** p < d:
        k += 1
    while k > 1 and (k - 1) ** p >= d:
        k -= 1
    return k


@lru_cache(maxsize=4096)
def _mode_dims(d: int, order: int | None, max_dim: int) -> tuple[int, ...]:
    if d == 0:
        return (0,) * (order or 1)
    p = order
    if p is None:
        p = 1
        while _ceil_root(d, p) > max_dim:
            p += 1
    k = _ceil_root(d, p)
    dims = [k] * p
    for i in range(p - 1, -1, -1):
        if k > 1 and math.prod(dims) // k * (k - 1) >= d:
            dims[i] = k - 1
        else:
            break
    return tuple(dims)


def mode_dims(shape, order: int | None = None, max_dim: int = DEFAULT_MAX_DIM) -> tuple[int, ...]:
    """The mode sizes ``(d₁..d_p)`` a parameter of ``shape`` (or ``numel``) is reshaped to (module docstring)."""
    return _mode_dims(_numel(shape), _check_order(order), _check_max_dim(max_dim))


def state_numbers(shape, order: int | None = None, max_dim: int = DEFAULT_MAX_DIM) -> int:
    """``Σdᵢ``: the accumulator entries extreme tensoring keeps for one parameter of ``shape``.

    This is ExtremeTensorAdagrad's whole state for that parameter; ExtremeTensorAdam
    adds 1 (its step) and, with ``first_moment=True``, ``Πshape`` (see
    :meth:`ExtremeTensorAdam.state_numbers_for`).
    """
    return sum(mode_dims(shape, order, max_dim))


def _itemsize(item, dtype, itemsize) -> int:
    if itemsize is not None:
        return int(itemsize)
    if dtype is not None:
        return torch.empty((), dtype=dtype).element_size()
    if isinstance(item, torch.Tensor):
        return item.element_size()
    return torch.empty((), dtype=torch.get_default_dtype()).element_size()


def _shape_of(item):
    return tuple(item.shape) if isinstance(item, torch.Tensor) else item


# ----------------------------------------------------------------------------- the kernels


def _per_mode_sq_sums(g: torch.Tensor, dims: tuple[int, ...]) -> list[torch.Tensor]:
    """Σ of G² over all modes but the i-th, for each mode i, of the padded reshaped ``g``."""
    sq = g.square()
    p = len(dims)
    if p == 1:
        return [sq]
    return [sq.sum(dim=[j for j in range(p) if j != i]) for i in range(p)]


def _padded(grad: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    flat = grad.reshape(-1)
    total = math.prod(dims)
    if total != flat.numel():
        flat = torch.cat([flat, flat.new_zeros(total - flat.numel())])
    return flat.view(dims)


def _kron_denominator(factors: list[torch.Tensor], dims: tuple[int, ...]) -> torch.Tensor:
    """The outer product of the per-mode factors, broadcast to ``dims``."""
    p = len(dims)
    out = None
    for i, f in enumerate(factors):
        shape = [1] * p
        shape[i] = dims[i]
        f = f.view(shape)
        out = f if out is None else out * f
    return out.expand(dims)


class _ExtremeTensorBase(torch.optim.Optimizer):
    _buffer: str = ""

    def _dims(self, p: torch.Tensor, group) -> tuple[int, ...]:
        return _mode_dims(p.numel(), group["order"], group["max_dim"])

    def _grad(self, p: torch.Tensor) -> torch.Tensor:
        if p.grad.is_sparse:
            raise OptimizerError(f"{type(self).__name__} does not take sparse gradients")
        return p.grad

    def add_param_group(self, param_group: dict) -> None:
        for key, check in self._group_checks().items():
            if key in param_group:
                param_group[key] = check(param_group[key])
        super().add_param_group(param_group)

    def state_size(self) -> int:
        """Numbers held in ``self.state`` now (Σ of its tensors' numel)."""
        return sum(v.numel() for st in self.state.values() for v in st.values() if torch.is_tensor(v))


class ExtremeTensorAdagrad(_ExtremeTensorBase):
    """AdaGrad with an extreme-tensoring preconditioner (module docstring: update, rule, state layout).

    ``params`` and param groups as any ``torch.optim.Optimizer``; every option can be
    set per group. ``lr`` >= 0; ``eps`` > 0 (inside each mode's power, per the paper);
    ``order`` None or a whole number >= 1; ``max_dim`` >= 2 (used when ``order`` is None).
    """

    def __init__(self, params, lr: float = 1e-2, order: int | None = None, eps: float = 1e-10,
                 max_dim: int = DEFAULT_MAX_DIM, weight_decay: float = 0.0):
        defaults = dict(lr=_check_number("lr", lr), order=_check_order(order),
                        eps=_check_number("eps", eps, positive=True), max_dim=_check_max_dim(max_dim),
                        weight_decay=_check_number("weight_decay", weight_decay))
        super().__init__(params, defaults)

    @staticmethod
    def _group_checks():
        return dict(lr=lambda v: _check_number("lr", v), order=_check_order,
                    eps=lambda v: _check_number("eps", v, positive=True), max_dim=_check_max_dim,
                    weight_decay=lambda v: _check_number("weight_decay", v))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = self._grad(p)
                dims = self._dims(p, group)
                state = self.state[p]
                if "mode_sums" not in state:
                    state["mode_sums"] = torch.zeros(sum(dims), dtype=p.dtype, device=p.device)
                if p.numel() == 0:
                    continue
                if wd != 0:
                    grad = grad.add(p, alpha=wd)
                g = _padded(grad, dims)
                sums = state["mode_sums"]
                for acc, inc in zip(sums.split(list(dims)), _per_mode_sq_sums(g, dims)):
                    acc.add_(inc)
                power = 1.0 / (2 * len(dims))
                factors = [acc.add(eps).pow_(power) for acc in sums.split(list(dims))]
                update = (g / _kron_denominator(factors, dims)).reshape(-1)[: p.numel()]
                p.add_(update.view_as(p), alpha=-lr)
        return loss

    @staticmethod
    def state_numbers_for(params_or_shapes: Iterable, order: int | None = None,
                          max_dim: int = DEFAULT_MAX_DIM) -> int:
        """Numbers of state for these parameters (tensors or shapes): Σ over them of Σdᵢ."""
        return sum(state_numbers(_shape_of(x), order, max_dim) for x in params_or_shapes)

    @staticmethod
    def state_bytes_for(params_or_shapes: Iterable, dtype: torch.dtype | None = None, *,
                        itemsize: int | None = None, order: int | None = None,
                        max_dim: int = DEFAULT_MAX_DIM) -> int:
        """Bytes of state: Σdᵢ · itemsize per parameter (itemsize from ``itemsize``, else
        ``dtype``, else a tensor's own dtype, else the default dtype)."""
        return sum(state_numbers(_shape_of(x), order, max_dim) * _itemsize(x, dtype, itemsize)
                   for x in params_or_shapes)


class ExtremeTensorAdam(_ExtremeTensorBase):
    """Adam with extreme-tensored second moments (module docstring: update, rule, state layout)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 order: int | None = None, max_dim: int = DEFAULT_MAX_DIM, first_moment: bool = True,
                 weight_decay: float = 0.0):
        defaults = dict(lr=_check_number("lr", lr), betas=_check_betas(betas),
                        eps=_check_number("eps", eps, positive=True), order=_check_order(order),
                        max_dim=_check_max_dim(max_dim), first_moment=_check_bool(first_moment),
                        weight_decay=_check_number("weight_decay", weight_decay))
        super().__init__(params, defaults)

    @staticmethod
    def _group_checks():
        return dict(lr=lambda v: _check_number("lr", v), betas=_check_betas, order=_check_order,
                    eps=lambda v: _check_number("eps", v, positive=True), max_dim=_check_max_dim,
                    first_moment=_check_bool, weight_decay=lambda v: _check_number("weight_decay", v))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = self._grad(p)
                dims = self._dims(p, group)
                state = self.state[p]
                if "mode_avgs" not in state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["mode_avgs"] = torch.zeros(sum(dims), dtype=p.dtype, device=p.device)
                    if group["first_moment"]:
                        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                if p.numel() == 0:
                    continue
                t = state["step"].item()
                if wd != 0:
                    p.mul_(1 - lr * wd)
                g = _padded(grad, dims)
                total = math.prod(dims)
                avgs = state["mode_avgs"]
                for acc, inc, d in zip(avgs.split(list(dims)), _per_mode_sq_sums(g, dims), dims):
                    acc.mul_(beta2).add_(inc, alpha=(1 - beta2) * d / total)
                bc2 = 1 - beta2 ** t
                power = 1.0 / (2 * len(dims))
                factors = [acc.div(bc2).pow_(power) for acc in avgs.split(list(dims))]
                denom = _kron_denominator(factors, dims).reshape(-1)[: p.numel()].view_as(p).add(eps)
                if "exp_avg" in state:
                    m = state["exp_avg"]
                    m.lerp_(grad, 1 - beta1)
                    p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))
                else:
                    p.addcdiv_(grad, denom, value=-lr)
        return loss

    @staticmethod
    def state_numbers_for(params_or_shapes: Iterable, order: int | None = None,
                          max_dim: int = DEFAULT_MAX_DIM, first_moment: bool = True) -> int:
        """Numbers of state: per parameter Σdᵢ + 1 (step) + Πshape if ``first_moment``."""
        total = 0
        for x in params_or_shapes:
            shape = _shape_of(x)
            total += state_numbers(shape, order, max_dim) + 1 + (_numel(shape) if first_moment else 0)
        return total

    @staticmethod
    def state_bytes_for(params_or_shapes: Iterable, dtype: torch.dtype | None = None, *,
                        itemsize: int | None = None, order: int | None = None,
                        max_dim: int = DEFAULT_MAX_DIM, first_moment: bool = True) -> int:
        """Bytes of state: per parameter (Σdᵢ + Πshape if ``first_moment``) · itemsize + 4 (float32 step)."""
        total = 0
        for x in params_or_shapes:
            shape = _shape_of(x)
            n = state_numbers(shape, order, max_dim) + (_numel(shape) if first_moment else 0)
            total += n * _itemsize(x, dtype, itemsize) + STEP_BYTES
        return total


def _check_bool(value) -> bool:
    if not isinstance(value, bool):
        raise OptimizerError(f"first_moment is True or False, not {value!r}")
    return value
