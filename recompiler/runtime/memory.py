"""Measure the peak of live tensor bytes during a training step.

On CPU torch keeps no memory statistics. :class:`ProfilerTracker` replays the allocator's
``[memory]`` events that ``torch.profiler`` records (every allocation and free, inductor's
own buffers included): what ``measure_peak(..., method="profiler")`` uses for compiled
graphs. :class:`LiveTensorTracker` (a TorchDispatchMode, the default for eager runs) counts every tensor storage an op allocates and puts a
``weakref.finalize`` on it, so the count drops the moment the storage dies. Inside the
``recompiler::`` custom ops (Python over aten ops) it counts every allocation, temporaries
included; inside aten kernels it sees only their outputs. On
CUDA :func:`measure_peak` uses ``torch.cuda.max_memory_allocated`` instead.

Example
-------
>>> import torch
>>> def step():
...     x = torch.ones(1024, requires_grad=True)
...     (x * 2).sum().backward()
>>> report = measure_peak(step)
>>> report.peak_bytes >= 1024 * 4
True
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass(frozen=True)
class MemoryReport:
    """``peak_bytes``: the highest total of tensor bytes allocated during the step and alive together
    (tensors that existed before the step — parameters, inputs — are not in it; ``device`` says how measured)."""

    peak_bytes: int
    end_bytes: int
    device: str


class LiveTensorTracker(TorchDispatchMode):
    """Counts the bytes of storages created by ops while the mode is active, until each storage dies."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()  # ids of storages counted and still alive
        self._lock = threading.Lock()  # finalizers may run on the autograd engine's threads

    @classmethod
    def ignore_compile_internals(cls) -> bool:
        # Without this dynamo silently runs compiled frames eagerly while the mode is active.
        return True

    def _release(self, key: int, nbytes: int) -> None:
        with self._lock:
            self.live -= nbytes
            self._seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        python_impl = _python_impl(func)
        if python_impl is not None:
            # Our own ops are Python over aten ops: count what they allocate inside (a chunked
            # attention's per-chunk scores), as a device allocator would see it.
            with self:
                return python_impl(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t.device.type != "meta" and _has_storage(t)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta" or not _has_storage(t):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr in inputs or ptr == 0:  # a view or an in-place result: no new memory
                continue
            key = ptr  # unique among live storages; reused only after the finalizer released it
            with self._lock:
                if key in self._seen:
                    continue
                self._seen.add(key)
                nbytes = storage.nbytes()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key, nbytes)
        return out


def _python_impl(func):
    """The Python function behind a ``recompiler::`` ``torch.library.custom_op``, else None."""
    if getattr(func, "namespace", None) != "recompiler":
        return None
    from torch._library.custom_ops import OPDEFS

    opdef = OPDEFS.get(func._schema.name)
    return getattr(opdef, "_init_fn", None)


def _has_storage(t: torch.Tensor) -> bool:
    try:
        t.untyped_storage()
        return True
    except (RuntimeError, NotImplementedError):
        return False


class ProfilerTracker:
    """Peak and end bytes of CPU allocations during the ``with`` block, from ``torch.profiler``'s
    memory events (allocations minus frees, in time order). Sees every allocation the CPU
    allocator makes — inductor's buffers, kernels' temporaries — which the dispatch mode cannot.

    >>> with ProfilerTracker() as t:
    ...     y = torch.ones(1 << 20) * 2
    >>> t.peak >= 4 << 20
    True
    """

    def __init__(self):
        self.peak = 0
        self.live = 0
        self._prof = None

    def __enter__(self):
        import logging

        from torch.profiler import ProfilerActivity, profile

        logging.getLogger("torch.profiler").setLevel(logging.ERROR)
        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc):
        self._prof.__exit__(*exc)
        events = [(e.start_ns(), e.nbytes()) for e in self._prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and e.device_type() == torch._C._autograd.DeviceType.CPU]
        live = peak = 0
        for _, nbytes in sorted(events):
            live += nbytes
            peak = max(peak, live)
        self.peak, self.live = peak, live
        return False


def measure_peak(step: Callable[[], object], *, device: str | torch.device = "cpu",
                 method: str = "dispatch") -> MemoryReport:
    """Run ``step()`` once and report the peak of the tensor bytes it allocated.

    CPU: counted by :class:`LiveTensorTracker` (``method="dispatch"``) or :class:`ProfilerTracker`
    (``method="profiler"``: needed for inductor-compiled steps). CUDA: ``torch.cuda.max_memory_allocated``
    minus what was allocated before the step.
    """
    if method not in ("dispatch", "profiler"):
        raise ValueError(f"method is dispatch or profiler, not {method!r}")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return MemoryReport(torch.cuda.max_memory_allocated(device) - before,
                            torch.cuda.memory_allocated(device) - before, "cuda")
    tracker = LiveTensorTracker() if method == "dispatch" else ProfilerTracker()
    with tracker:
        step()
    return MemoryReport(tracker.peak, tracker.live, "cpu" if method == "dispatch" else "cpu-profiler")
