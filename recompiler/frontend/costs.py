"""The cost model: bytes from fake-tensor metadata, seconds from a roofline or a stopwatch.

Bytes of a node are ``numel × itemsize`` of each tensor in ``node.meta["val"]`` (summed
over a tuple). Time is a roofline over a device profile::

    time = max(flops / peak_flops[dtype], bytes_moved / bandwidth) + launch_overhead

with FLOPs from ``torch.utils.flop_counter``'s per-op formulas (the ones FlopCounterMode
uses, so the graph's total equals FlopCounterMode's for the same step) and bytes moved =
bytes read (tensor inputs) + bytes written (outputs). Views and ``getitem`` move nothing
and cost nothing. :func:`profile_node` instead times a node on this machine with real
random tensors (median of several runs).

Example
-------
>>> PROFILES["h100"].peak("bfloat16") / 1e12
989.0
>>> roofline(PROFILES["a100"], flops=0, bytes_moved=2.039e9, dtype="float32") > 1e-3
True
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count, shape_wrapper

from ..errors import CaptureError, RecompilerError


@dataclass(frozen=True)
class DeviceProfile:
    """Peak rates of one device for the roofline."""

    name: str
    #: Dense peak FLOP/s per dtype name (``"float32"``, ``"bfloat16"``, ...); ``"default"`` for the rest.
    peak_flops: dict = field(default_factory=dict)
    #: Main-memory bandwidth in bytes/s.
    bandwidth: float = 1e11
    #: Fixed seconds added to every kernel that does work (launch / dispatch).
    launch_overhead: float = 0.0
    #: Where the numbers come from.
    source: str = ""

    def peak(self, dtype: str) -> float:
        return self.peak_flops.get(dtype, self.peak_flops["default"])


PROFILES: dict[str, DeviceProfile] = {
    # Measured once on the 2-core development machine (torch 2.13 CPU, 2026-11-25):
    # median of 7 runs of a 2048x2048 @ 2048x2048 matmul -> 141 GFLOP/s fp32, 410 GFLOP/s bf16;
    # y.copy_(x) on 64 MiB fp32 tensors, counting read + write -> 30.4 GB/s;
    # a tiny eager op (relu of a 1-element tensor) -> ~2.5 us, doubled for dispatch + allocation.
    "cpu": DeviceProfile("cpu", {"float32": 141e9, "bfloat16": 410e9, "float16": 141e9, "default": 141e9},
                         bandwidth=30.4e9, launch_overhead=5e-6,
                         source="measured on the dev machine: fp32/bf16 2048^3 matmul, 64 MiB copy"),
    # NVIDIA A100 SXM datasheet: 19.5 TF fp32, 156 TF tf32, 312 TF bf16/fp16 dense, 2.039 TB/s HBM2e.
    # fp32 matmuls use the fp32 rate (PyTorch leaves TF32 matmul off by default).
    "a100": DeviceProfile("a100", {"float32": 19.5e12, "tf32": 156e12, "bfloat16": 312e12, "float16": 312e12,
                                   "default": 19.5e12},
                          bandwidth=2.039e12, launch_overhead=3e-6, source="NVIDIA A100 SXM datasheet"),
    # NVIDIA H100 SXM datasheet: 67 TF fp32, 494.7 TF tf32, 989 TF bf16/fp16 dense, 3.35 TB/s HBM3.
    "h100": DeviceProfile("h100", {"float32": 67e12, "tf32": 494.7e12, "bfloat16": 989e12, "float16": 989e12,
                                   "default": 67e12},
                          bandwidth=3.35e12, launch_overhead=3e-6, source="NVIDIA H100 SXM datasheet"),
}


class UnknownDeviceProfile(RecompilerError):
    """A device profile name that is not in :data:`PROFILES`."""


def get_profile(name: str | DeviceProfile) -> DeviceProfile:
    if isinstance(name, DeviceProfile):
        return name
    if name not in PROFILES:
        raise UnknownDeviceProfile(f"unknown device profile {name!r}; known: {', '.join(sorted(PROFILES))}")
    return PROFILES[name]


def roofline(profile: DeviceProfile, *, flops: float, bytes_moved: float, dtype: str) -> float:
    """Seconds for one kernel: the slower of compute and memory traffic, plus the launch overhead."""
    return max(flops / profile.peak(dtype), bytes_moved / profile.bandwidth) + profile.launch_overhead


# ------------------------------------------------------------------------------ bytes
def tensor_bytes(val) -> int:
    """Bytes of a (fake) tensor, or of every tensor in a tuple/list; 0 for anything else."""
    if isinstance(val, torch.Tensor):
        numel = val.numel()
        if not isinstance(numel, int):
            try:
                numel = int(numel)
            except Exception:  # noqa: BLE001 - an unbacked symbol: the size depends on the data
                raise CaptureError("the model makes a tensor whose size depends on the data (boolean-mask "
                                   "indexing, nonzero, unique ...); recompiler plans static shapes only") from None
        return numel * val.element_size()
    if isinstance(val, (tuple, list)):
        return sum(tensor_bytes(v) for v in val)
    return 0


#: Bytes an op allocates and frees inside itself (its per-chunk temporaries), by qualified op
#: name: ``fn(*args, **kwargs) -> bytes`` over the node's fake arguments. Aten kernels are
#: counted by their outputs only; our own Python ops register theirs where they are defined.
WORKSPACE: dict = {}


def workspace_bytes(node: torch.fx.Node) -> int:
    """The registered workspace of ``node``'s op (0 for everything else)."""
    schema = getattr(node.target, "_schema", None)
    fn = WORKSPACE.get(schema.name) if schema is not None else None
    if fn is None:
        return 0
    args, kwargs = _meta_args(node)
    return int(fn(*args, **kwargs))


def _dtype_name(val) -> str:
    if isinstance(val, torch.Tensor):
        return str(val.dtype).removeprefix("torch.")
    if isinstance(val, (tuple, list)):
        for v in val:
            if isinstance(v, torch.Tensor):
                return _dtype_name(v)
    return "float32"


# ------------------------------------------------------------------------------ flops
def _meta_args(node: torch.fx.Node):
    """The node's args with every input node replaced by its fake value."""
    def get(a):
        return a.meta.get("val") if isinstance(a, torch.fx.Node) else a
    return torch.fx.node.map_aggregate(node.args, get), torch.fx.node.map_aggregate(node.kwargs, get)


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


#: FLOP formulas for ops FlopCounterMode does not count by itself (CPU flash attention, which
#: torch 2.13 leaves at 0 FLOPs). Pass it as ``FlopCounterMode(custom_mapping=EXTRA_FLOP_FORMULAS)``
#: to count the same total as the cost model.
EXTRA_FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}


def node_flops(node: torch.fx.Node) -> int:
    """FLOPs of one aten node by FlopCounterMode's formula for its op (0 for ops it does not count)."""
    packet = getattr(node.target, "overloadpacket", None)
    if node.op != "call_function" or packet is None:
        return 0
    formula = flop_registry.get(packet)
    if packet in EXTRA_FLOP_FORMULAS:
        formula = shape_wrapper(EXTRA_FLOP_FORMULAS[packet])
    if formula is None:
        return 0
    args, kwargs = _meta_args(node)
    return int(formula(*args, **kwargs, out_val=node.meta.get("val")))


def bytes_moved(node: torch.fx.Node) -> int:
    """Bytes read (each distinct tensor input once) plus bytes written (the outputs)."""
    read = sum(tensor_bytes(a.meta.get("val")) for a in node.all_input_nodes)
    return read + tensor_bytes(node.meta.get("val"))


def estimate_seconds(node: torch.fx.Node, profile: DeviceProfile, flops: int | None = None) -> float:
    flops = node_flops(node) if flops is None else flops
    return roofline(profile, flops=flops, bytes_moved=bytes_moved(node), dtype=_dtype_name(node.meta.get("val")))


# ------------------------------------------------------------------------------ profiling
def _materialize(val, generator: torch.Generator):
    """A real tensor like the fake ``val`` (same shape and strides): random floats, zeros for
    integer/bool (safe as indices)."""
    if isinstance(val, torch.Tensor):
        shape, stride, dtype = tuple(int(s) for s in val.shape), tuple(int(s) for s in val.stride()), val.dtype
        extent = 1 + sum((n - 1) * st for n, st in zip(shape, stride)) if all(shape) else 0
        if dtype.is_floating_point or dtype.is_complex:
            flat = torch.randn(extent, dtype=dtype, generator=generator)
        else:
            flat = torch.zeros(extent, dtype=dtype)
        return flat.as_strided(shape, stride)
    if isinstance(val, (tuple, list)):
        return type(val)(_materialize(v, generator) for v in val)
    return val


def profile_node(node: torch.fx.Node, *, runs: int = 5, warmup: int = 1, seed: int = 0,
                 max_seconds: float = 0.5) -> float | None:
    """Median wall seconds of running the node's op on real random inputs; None if it cannot run.

    Stops early (after at least one timed run) once the node has used ``max_seconds``, so
    that big ops do not dominate the profiling time.

    Inputs are drawn fresh from the node's fake-tensor metadata, so ops whose result depends
    on the values (indexing with data-dependent sizes) may fail and fall back to the roofline.
    """
    if node.op != "call_function" or not callable(node.target):
        return None
    gen = torch.Generator().manual_seed(seed)
    mutable = getattr(getattr(node.target, "_schema", None), "is_mutable", False)
    times = []
    try:
        env = {a: _materialize(a.meta.get("val"), gen) for a in node.all_input_nodes}
        args = torch.fx.node.map_arg(node.args, lambda a: env[a])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: env[a])
        for i in range(warmup + runs):
            if mutable:  # an in-place op gets fresh copies so repeated runs see the same input
                args = torch.fx.node.map_aggregate(args, lambda a: a.clone() if isinstance(a, torch.Tensor) else a)
            start = time.perf_counter()
            node.target(*args, **kwargs)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times.append(elapsed)
                if sum(times) > max_seconds:
                    break
    except Exception:  # noqa: BLE001 - any op that cannot run on random data falls back to the roofline
        return None
    return statistics.median(times)
