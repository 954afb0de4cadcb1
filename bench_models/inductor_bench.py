"""Inductor under the plan, measured: step time and profiler peak for every way to run a step.

Per model, side by side in one run: eager, ``aot_eager``, ``inductor``, ``recompiler`` with
the eager and the inductor compiler at 100/50/25%, and PyTorch's own
``activation_memory_budget`` under inductor at a grid of fractions (compare at matching
measured peaks). Peaks are the CPU allocator's, replayed from ``torch.profiler``'s memory
events (``recompiler.runtime.memory.ProfilerTracker``: inductor's buffers included;
parameters and inputs, alive before the step, excluded); step times are medians of
``--rounds`` steps, the modes interleaved round by round. "pred" is ``simulate``'s peak of
the plan, minus what is alive before the step.

    python bench_models/inductor_bench.py [--models pointwise_mlp,mlp,gpt2_2l] [--json out.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench_models"))
from runtime_bench import MODELS as RUNTIME_MODELS, load  # noqa: E402 - sets up this machine's quirks

from recompiler.fileio import write_json_atomic  # noqa: E402
from recompiler.frontend.capture import _split_inputs, _WithLoss, default_loss  # noqa: E402
from recompiler.runtime.backend import make_backend  # noqa: E402
from recompiler.runtime.memory import measure_peak  # noqa: E402


class PointwiseMLP(torch.nn.Module):
    """Residual blocks of long pointwise chains: where inductor's fusion matters most."""

    def __init__(self, d=512, blocks=8):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(d, d) for _ in range(blocks))

    def forward(self, x):
        for layer in self.layers:
            h = layer(x)
            x = x + torch.nn.functional.gelu(h) * torch.sigmoid(h) * 0.5 + torch.tanh(h)
        return x.pow(2).mean()


def _load(name):
    if name == "pointwise_mlp":
        torch.manual_seed(0)
        return PointwiseMLP(), (torch.randn(2048, 512),), None
    return load(name)


def _modes(budgets, torch_fractions):
    modes = [("eager", None), ("aot_eager", {}), ("inductor", {})]
    for compiler in ("eager", "inductor"):
        modes += [(f"recompiler-{compiler} {b}%", {"budget": f"{b}%", "compiler": compiler}) for b in budgets]
    modes += [(f"torch-budget {f:g}", {"torch_budget": f}) for f in torch_fractions]
    return modes


def _compile(wrapper, args, kwargs, label, spec, time_limit):
    """A step callable for one mode (compiled and run once), and the plan it made if any."""
    import torch._functorch.config as fconfig

    if spec is None:
        return (lambda: wrapper(args, kwargs)), None
    if label == "aot_eager":
        step = torch.compile(wrapper, backend="aot_eager", dynamic=False)
        session = None
    elif label == "inductor":
        step = torch.compile(wrapper, dynamic=False)
        session = None
    elif "torch_budget" in spec:
        with fconfig.patch(activation_memory_budget=spec["torch_budget"]):
            step = torch.compile(wrapper, dynamic=False)
            step(args, kwargs).backward()
        return (lambda: step(args, kwargs)), None
    else:
        backend = make_backend({**spec, "time_limit": time_limit})
        step = torch.compile(wrapper, backend=backend, dynamic=False)
        session = backend.session
    step(args, kwargs).backward()
    return (lambda: step(args, kwargs)), session


@click.command()
@click.option("--models", default="pointwise_mlp,mlp,transformer,gpt2_2l", show_default=True,
              help=f"Comma-separated: pointwise_mlp, {', '.join(RUNTIME_MODELS)}.")
@click.option("--budgets", default="100,50,25", show_default=True)
@click.option("--torch-fractions", default="0.5,0.25,0.1,0", show_default=True)
@click.option("--rounds", default=5, show_default=True)
@click.option("--time-limit", default=10.0, show_default=True)
@click.option("--json", "json_out", default=None)
def main(models, budgets, torch_fractions, rounds, time_limit, json_out):
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = 64  # every mode keeps its own compiled entry
    torch._dynamo.config.recompile_limit = 64
    rows = []
    for name in models.split(","):
        model, inputs, loss_fn = _load(name)
        args, kwargs = _split_inputs(inputs)
        wrapper = _WithLoss(model, loss_fn or default_loss)
        torch._dynamo.reset()
        modes = _modes([int(b) for b in budgets.split(",")], [float(f) for f in torch_fractions.split(",")])
        steps = {}
        for label, spec in modes:
            torch.manual_seed(0)
            start = time.perf_counter()
            steps[label] = _compile(wrapper, args, kwargs, label, spec, time_limit)
            print(f"{name} {label}: compiled in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        peaks = {}
        for label, (fn, _) in steps.items():
            model.zero_grad(set_to_none=True)
            peaks[label] = measure_peak(lambda: fn().backward(), method="profiler").peak_bytes
        times = {label: [] for label in steps}
        for _ in range(rounds):
            for label, (fn, _) in steps.items():
                model.zero_grad(set_to_none=True)
                start = time.perf_counter()
                fn().backward()
                times[label].append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
        for label, (fn, session) in steps.items():
            row = {"model": name, "mode": label, "peak_bytes": peaks[label],
                   "seconds": statistics.median(times[label])}
            if session is not None and session.graphs:
                plans = [r.plan for r in session.graphs]
                row["predicted_bytes"] = sum(p.peak_bytes - p.stats.get("input_bytes", 0) for p in plans)
                row["baseline_predicted_bytes"] = sum(p.baseline_peak_bytes - p.stats.get("input_bytes", 0)
                                                      for p in plans)
                row["recomputations"] = sum(r.recomputed for r in session.graphs)
                row["feasible"] = all(p.feasible for p in plans)
            rows.append(row)
        print(table([r for r in rows if r["model"] == name]), flush=True)
    if json_out:
        write_json_atomic(json_out, rows)


def table(rows) -> str:
    """A markdown table of one model's rows."""
    eager = next(r for r in rows if r["mode"] == "eager")
    inductor = next(r for r in rows if r["mode"] == "inductor")
    out = [f"### {rows[0]['model']}", "",
           "| mode | peak MiB | % of eager | % of inductor | pred MiB | pred err | step ms | × inductor |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pred = r.get("predicted_bytes")
        err = f"{100 * (r['peak_bytes'] / pred - 1):+.1f}%" if pred else ""
        out.append(f"| {r['mode']} | {r['peak_bytes'] / 2**20:.1f} | {100 * r['peak_bytes'] / eager['peak_bytes']:.0f}% "
                   f"| {100 * r['peak_bytes'] / inductor['peak_bytes']:.0f}% | "
                   f"{'' if pred is None else f'{pred / 2**20:.1f}'} | {err} | {1e3 * r['seconds']:.0f} | "
                   f"{r['seconds'] / inductor['seconds']:.2f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
