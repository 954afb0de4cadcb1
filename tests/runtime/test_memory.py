import torch

from recompiler.runtime.memory import LiveTensorTracker, measure_peak


def test_counts_allocations_and_frees():
    def step():
        a = torch.ones(1000)          # 4000 bytes
        b = torch.ones(2000)          # 8000 bytes, both alive: 12000
        del a
        c = torch.ones(500)           # 2000 bytes: 10000 alive
        return b, c

    tracker = LiveTensorTracker()
    with tracker:
        keep = step()
    assert tracker.peak == 12000
    assert tracker.live == 10000
    del keep
    assert tracker.live == 0


def test_views_and_inplace_are_free():
    base = torch.ones(1000)
    tracker = LiveTensorTracker()
    with tracker:
        v = base.view(10, 100)
        v.add_(1)
        t = base[:10]
    assert tracker.peak == 0
    del v, t


def test_training_step_peak_matches_saved_activations():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 256, bias=False)
    x = torch.randn(64, 256)

    def step():
        h = torch.relu(lin(x))        # relu saves its 64 KiB output; the linear output dies after relu
        h.sum().backward()

    r = measure_peak(step)
    act = 64 * 256 * 4
    assert act <= r.peak_bytes <= 2 * act + 256 * 256 * 4 + 4096
    assert r.end_bytes == 256 * 256 * 4  # only the weight gradient survives


def test_profiler_tracker_sees_what_the_allocator_does():
    from recompiler.runtime.memory import ProfilerTracker

    def step():
        a = torch.ones(1 << 18)       # 1 MiB
        b = torch.ones(1 << 19)       # 2 MiB, both alive: 3 MiB
        del a
        return b

    with ProfilerTracker() as t:
        keep = step()
    assert abs(t.peak - 3 * 2**20) < 4096  # a few bytes of the profiler's own
    assert abs(t.live - 2 * 2**20) < 4096
    del keep
    assert measure_peak(step, method="profiler").device == "cpu-profiler"
