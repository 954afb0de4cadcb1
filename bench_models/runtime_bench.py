"""Applied plans, measured: peak memory and step time, eager vs recompiler vs PyTorch's own budget.

For each model and budget fraction: one eager step; the recompiler plan (``check_step``:
solve, partition, run; gradients compared with eager); PyTorch's min-cut partitioner
with ``torch._functorch.config.activation_memory_budget`` at the same fraction under
``aot_eager_decomp_partition`` (its budget is a fraction of saved-activation bytes, so
"same fraction" is not the same target: the measured peaks are what to compare).
Peaks are the tensor bytes a step allocates (parameters and inputs excluded), measured
by ``recompiler.runtime.memory``; times are medians of ``--repeats`` steps, all in one run.

    python bench_models/runtime_bench.py [--models mlp,cnn_bn,gpt2_2l] [--budgets 50,25] [--json out.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench_models" / "models"))
import _env  # noqa: E402,F401 - this machine's torchvision quirk

from recompiler.budget import format_bytes  # noqa: E402
from recompiler.fileio import write_json_atomic  # noqa: E402
from recompiler.frontend.capture import _split_inputs, _WithLoss, default_loss  # noqa: E402
from recompiler.frontend.modelfile import load_model_file  # noqa: E402
from recompiler.runtime.check import check_step  # noqa: E402
from recompiler.runtime.memory import measure_peak  # noqa: E402

MODELS = {
    "mlp": ROOT / "examples" / "mlp.py",
    "cnn_bn": ROOT / "tests" / "runtime" / "models.py:cnn_bn",
    "transformer": ROOT / "tests" / "runtime" / "models.py:transformer_dropout",
    "gpt2_2l": ROOT / "bench_models" / "runtime_models.py:gpt2_2l",
    "resnet18": ROOT / "bench_models" / "runtime_models.py:resnet18",
}


def load(name: str):
    path = str(MODELS[name])
    if ":" in path:
        file, fn = path.rsplit(":", 1)
        sys.path.insert(0, str(Path(file).parent))
        module = __import__(Path(file).stem)
        model, inputs = getattr(module, fn)()
        return model, inputs, None
    spec = load_model_file(path)
    return spec.model, spec.example_inputs, spec.loss_fn


def torch_budget_step(model, inputs, loss_fn, fraction: float, repeats: int):
    import torch._dynamo
    import torch._functorch.config as functorch_config

    torch._dynamo.reset()
    args, kwargs = _split_inputs(inputs)
    wrapper = _WithLoss(model, loss_fn or default_loss)
    old = functorch_config.activation_memory_budget
    functorch_config.activation_memory_budget = fraction
    try:
        compiled = torch.compile(wrapper, backend="aot_eager_decomp_partition", dynamic=False)
        compiled(args, kwargs).backward()  # compile outside the measurement
        model.zero_grad(set_to_none=True)
        peak = measure_peak(lambda: compiled(args, kwargs).backward()).peak_bytes
        times = []
        for _ in range(repeats):
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            compiled(args, kwargs).backward()
            times.append(time.perf_counter() - start)
    finally:
        functorch_config.activation_memory_budget = old
        model.zero_grad(set_to_none=True)
    return peak, statistics.median(times)


@click.command()
@click.option("--models", default=",".join(MODELS), show_default=True)
@click.option("--budgets", default="50,25", show_default=True, help="Percentages.")
@click.option("--solver", default=None, help="Our solver (default: the default solver).")
@click.option("--time-limit", default=30.0, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--json", "json_out", default=None)
def main(models, budgets, solver, time_limit, repeats, json_out):
    rows = []
    table = Table(title="measured peak (MiB) and step time (ms): eager | recompiler | torch activation_memory_budget")
    for col in ("model", "budget", "eager peak", "ours peak", "torch peak", "eager ms", "ours ms", "torch ms",
                "ours pred. err", "grad err", "ours sim %"):
        table.add_column(col, justify="right")
    for name in models.split(","):
        model, inputs, loss_fn = load(name)
        for pct in [int(b) for b in budgets.split(",")]:
            ours = check_step(model, inputs, loss_fn=loss_fn, budget=f"{pct}%", solver=solver,
                              time_limit=time_limit, repeats=repeats, compiler="eager")
            t_peak, t_time = torch_budget_step(model, inputs, loss_fn, pct / 100, repeats)
            row = {"model": name, "budget_pct": pct, "eager_peak_bytes": ours.eager_peak_bytes,
                   "ours_peak_bytes": ours.plan_peak_bytes, "torch_peak_bytes": t_peak,
                   "eager_seconds": ours.eager_seconds, "ours_seconds": ours.plan_seconds, "torch_seconds": t_time,
                   "ours_predicted_peak_bytes": ours.predicted_peak_bytes, "ours_predicted_error": ours.predicted_error,
                   "max_grad_error": ours.max_grad_error,
                   "ours_simulated_fraction": ours.plan_simulated_peak_bytes / ours.baseline_simulated_peak_bytes,
                   "feasible": ours.feasible}
            rows.append(row)
            mib = lambda b: f"{b / 2**20:.1f}"  # noqa: E731
            table.add_row(name, f"{pct}%", mib(ours.eager_peak_bytes), mib(ours.plan_peak_bytes), mib(t_peak),
                          f"{1e3 * ours.eager_seconds:.0f}", f"{1e3 * ours.plan_seconds:.0f}", f"{1e3 * t_time:.0f}",
                          f"{100 * ours.predicted_error:+.1f}%", f"{ours.max_grad_error:.1e}",
                          f"{100 * row['ours_simulated_fraction']:.0f}%")
            Console(stderr=True).print(f"{name} {pct}%: done ({format_bytes(ours.plan_peak_bytes)} vs eager "
                                       f"{format_bytes(ours.eager_peak_bytes)})")
    Console(width=200).print(table)
    if json_out:
        write_json_atomic(json_out, rows)


if __name__ == "__main__":
    main()
