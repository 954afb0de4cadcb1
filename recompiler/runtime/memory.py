"""Measure the peak of live tensor bytes during a training step.

On CPU torch keeps no memory statistics, so :class:`LiveTensorTracker` (a
TorchDispatchMode) counts every tensor storage an op allocates and puts a
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


def measure_peak(step: Callable[[], object], *, device: str | torch.device = "cpu") -> MemoryReport:
    """Run ``step()`` once and report the peak of the tensor bytes it allocated.

    CPU: counted by :class:`LiveTensorTracker`. CUDA: ``torch.cuda.max_memory_allocated``
    minus what was allocated before the step.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return MemoryReport(torch.cuda.max_memory_allocated(device) - before,
                            torch.cuda.memory_allocated(device) - before, "cuda")
    tracker = LiveTensorTracker()
    with tracker:
        step()
    return MemoryReport(tracker.peak, tracker.live, "cpu")
