"""Pinned vs replayed random ops (issue 11): what replaying dropout buys, simulated and measured.

Simulated, at the FastSA paper's text sizes with each model's default dropout (captured with
fake activations, so nothing of that size is allocated): HF BERT-base (masked-LM head) at
128×512 tokens and GPT-2 small (LM head) at 8×1024. Per RNG mode: the smallest reachable peak
(``CostGraph.floor``) and FastSA's plan at 50% and 25% (peak, overhead, random ops recomputed).

Overheads are given twice: with the CPU roofline cost model (seconds) and with unit cost
(every computing node costs 1, views and tuple elements 0; the FastSA paper's measure).

Measured, at CPU size: the runtime bench's dropout models (``transformer``: a 2-layer
``nn.TransformerEncoder``, dropout 0.1; ``gpt2_2l``: HF GPT-2 with 2 layers at 4×256) under
``check_step`` at 50% and 25% in each mode: the measured peak of the planned step (tensor
bytes, parameters and inputs excluded), its median step time, eager's beside them.

    python bench_models/rng_bench.py [--part sim|measured|both] [--time-limit 60] [--json out.json]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench_models" / "models"))
import _env  # noqa: E402,F401 - this machine's torchvision quirk, before transformers

from recompiler.fileio import write_json_atomic  # noqa: E402

MODES = ("pin", "replay")
BUDGETS = ("50%", "25%")


def bert_base():
    """HF BERT-base, masked-LM head, 128×512 tokens (the FastSA paper's text size)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig()).train()
    ids = torch.randint(3, 30000, (128, 512))
    return model, {"input_ids": ids, "labels": ids}


def gpt2_small():
    """HF GPT-2 small, LM head, 8×1024 tokens."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(use_cache=False)).train()
    model.loss_type = "ForCausalLM"
    ids = torch.randint(0, 50257, (8, 1024))
    return model, {"input_ids": ids, "labels": ids}


SIMULATED = {"bert-base 128×512": bert_base, "gpt2 8×1024": gpt2_small}


def keep(records: list, row: dict, json_out) -> None:
    """Add a result row, print it, and checkpoint every row so far to ``json_out`` (atomically)."""
    records.append(row)
    print(row, flush=True)
    if json_out:
        write_json_atomic(json_out, {"load": os.getloadavg(), "records": records})


def unit_cost(graph):
    """The same graph where every computing node costs 1 (views and tuple elements 0)."""
    import dataclasses

    return dataclasses.replace(graph, compute=(graph.compute > 0).astype(float))


def simulated(time_limit: float, records: list, json_out):
    import torch._dynamo

    from recompiler.frontend.capture import capture
    from recompiler.simulate import baseline
    from recompiler.solvers import solve

    for name, build in SIMULATED.items():
        model, inputs = build()
        for mode in MODES:
            torch._dynamo.reset()
            start = time.perf_counter()
            cap = capture(model, inputs, rng=mode, name=name)
            seconds = time.perf_counter() - start
            for cost in ("roofline", "unit"):
                g = cap.graph if cost == "roofline" else unit_cost(cap.graph)
                base = baseline(g).peak_bytes
                floor = g.floor()
                for budget in BUDGETS:
                    plan = solve(g, max(int(base * float(budget[:-1]) / 100), floor), "fastsa",
                                 time_limit=time_limit)
                    keep(records, {
                        "part": "simulated", "model": name, "rng": mode, "budget": budget, "cost": cost, "nodes": g.n,
                        "random_ops": len(cap.random_ops), "baseline_peak_bytes": base, "floor_pct": 100 * floor / base,
                        "peak_pct": 100 * plan.peak_fraction, "overhead_pct": 100 * plan.overhead,
                        "feasible": plan.peak_bytes <= base * float(budget[:-1]) / 100,
                        "random_recomputed": cap.random_recomputed(plan.schedule), "capture_seconds": seconds,
                        "solve_seconds": plan.solve_seconds}, json_out)
        del model


MEASURED = {
    "transformer": ("tests/runtime/models.py", "transformer_dropout"),
    "gpt2_2l": ("bench_models/runtime_models.py", "gpt2_2l"),
}


def measured(repeats: int, time_limit: float, records: list, json_out):
    from recompiler.runtime.check import check_step

    for name, (file, fn) in MEASURED.items():
        sys.path.insert(0, str(ROOT / Path(file).parent))
        model, inputs = getattr(__import__(Path(file).stem), fn)()
        for budget in BUDGETS:
            for mode in MODES:
                r = check_step(model, inputs, budget=budget, solver="fastsa", rng=mode, repeats=repeats,
                               time_limit=time_limit)
                keep(records, {
                    "part": "measured", "model": name, "rng": mode, "budget": budget,
                    "eager_peak_bytes": r.eager_peak_bytes, "plan_peak_bytes": r.plan_peak_bytes,
                    "simulated_pct": 100 * r.plan_simulated_peak_bytes / r.baseline_simulated_peak_bytes,
                    "feasible": r.feasible, "eager_ms": 1e3 * r.eager_seconds, "plan_ms": 1e3 * r.plan_seconds,
                    "max_grad_error": r.max_grad_error, "reference": r.reference,
                    "random_ops": r.random_ops, "random_recomputed": r.random_recomputed}, json_out)


def tables(records: list) -> list[Table]:
    out = []
    sim = [r for r in records if r["part"] == "simulated"]
    if sim:
        t = Table(title="simulated (FastSA): pinned vs replayed random ops", header_style="bold")
        for col in ("model", "budget", "rng", "cost", "floor %", "peak %", "overhead %", "feasible",
                    "random recomputed"):
            t.add_column(col, justify="left" if col in ("model", "rng", "cost") else "right")
        for r in sim:
            t.add_row(r["model"], r["budget"], r["rng"], r["cost"], f"{r['floor_pct']:.1f}", f"{r['peak_pct']:.1f}",
                      f"{r['overhead_pct']:.2f}", "yes" if r["feasible"] else "no",
                      f"{r['random_recomputed']} of {r['random_ops']}")
        out.append(t)
    meas = [r for r in records if r["part"] == "measured"]
    if meas:
        t = Table(title="measured (CPU): peak and median step time", header_style="bold")
        for col in ("model", "budget", "rng", "eager peak MB", "plan peak MB", "replay/pin peak", "eager ms",
                    "plan ms", "feasible", "random recomputed", "grad error"):
            t.add_column(col, justify="left" if col in ("model", "rng") else "right")
        pin = {(r["model"], r["budget"]): r for r in meas if r["rng"] == "pin"}
        for r in meas:
            ratio = r["plan_peak_bytes"] / pin[(r["model"], r["budget"])]["plan_peak_bytes"] \
                if r["rng"] == "replay" and (r["model"], r["budget"]) in pin else None
            t.add_row(r["model"], r["budget"], r["rng"], f"{r['eager_peak_bytes'] / 1e6:.2f}",
                      f"{r['plan_peak_bytes'] / 1e6:.2f}", f"{ratio:.2f}" if ratio else "",
                      f"{r['eager_ms']:.1f}", f"{r['plan_ms']:.1f}", "yes" if r["feasible"] else "no",
                      f"{r['random_recomputed']} of {r['random_ops']}", f"{r['max_grad_error']:.1e}")
        out.append(t)
    return out


@click.command()
@click.option("--part", type=click.Choice(["sim", "measured", "both"]), default="both", show_default=True)
@click.option("--time-limit", type=float, default=60.0, show_default=True, help="FastSA seconds per solve.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed steps per measured cell.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
def main(part, time_limit, repeats, json_out):
    records: list = []
    if part in ("sim", "both"):
        simulated(time_limit, records, json_out)
    if part in ("measured", "both"):
        measured(repeats, min(time_limit, 20.0), records, json_out)
    console = Console(width=200)
    for t in tables(records):
        console.print(t)
    console.print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
