"""How fast the C++ simulator judges a long schedule (median of repeats), vs the Python reference.

    python bench_models/simulate_speed.py [--steps 1000000]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models.shared_graphs import graph_path  # noqa: E402
from recompiler.graph_io import read_graph  # noqa: E402
from recompiler.simulate import simulate, simulate_reference  # noqa: E402


def long_schedule(graph, steps: int, seed: int = 0) -> list[int]:
    """Valid schedule of about ``steps`` steps: the baseline with random recomputations (deps present)."""
    rng = np.random.default_rng(seed)
    base = graph.baseline_schedule()
    reps = max(1, steps // len(base))
    out = []
    for _ in range(reps):
        out.extend(base)
    extra = steps - len(out)
    if extra > 0:
        out.extend(rng.choice(base, extra).tolist())  # every node already computed once: all deps present
    return out


@click.command()
@click.option("--steps", default=1_000_000, show_default=True)
@click.option("--repeats", default=7, show_default=True)
def main(steps, repeats):
    g = read_graph(graph_path("resnet50"))
    sched = np.asarray(long_schedule(g, steps), dtype=np.int32)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = simulate(g, sched)
        times.append(time.perf_counter() - t)
    assert r.valid, r.reason
    print(f"native simulate, resnet50 graph, {len(sched):,} steps: median {1e3 * statistics.median(times):.1f} ms "
          f"(min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f}) over {repeats} runs")
    short = sched[:20_000]
    t = time.perf_counter()
    simulate_reference(g, short.tolist())
    ref = time.perf_counter() - t
    t = time.perf_counter()
    simulate(g, short)
    nat = time.perf_counter() - t
    print(f"20,000 steps: reference {ref:.2f} s, native {1e3 * nat:.2f} ms (x{ref / nat:,.0f})")


if __name__ == "__main__":
    main()
