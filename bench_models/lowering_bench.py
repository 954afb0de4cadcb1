"""Lowerings off vs on (issue 12): what chunked attention buys, simulated at paper sizes and measured on CPU.

Simulated, at the FastSA paper's sizes (captured with fake activations; replayed RNG, each model's
default dropout): HF GPT-2 small at 8×1024 and BERT-base (masked LM) at 128×512 — both on the
SDPA math path PyTorch takes for attention with dropout — and timm ViT-B/16 at batch 512, with
its attention unfused (``fused_attn=False``: the math path) and fused (the flash kernel, already
out + lse: no group). Per setting: the smallest reachable peak (``CostGraph.floor`` under the
best variant FastSA may reach) and FastSA's plan at 50% and 25% (peak, roofline overhead,
groups lowered).

Measured, at CPU size, under ``check_step``, lowerings off vs on: a two-layer causal attention
stack (hand-written, 2×1024 tokens, the issue's "stalls at ~39%" decoder) at 25%, and the
Performer LM at the SLiM paper's config II (``slim_bench.py``: L = 1024, 3 layers, d 512, batch 1,
traced with SLiM's chunked op at C = 256) at 50% and 25%: the measured peak (tensor bytes),
simulate's prediction, median step time and gradient error.

    python bench_models/lowering_bench.py [--part sim|measured|both] [--time-limit 30] [--json out.json]
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

from bench_models.rng_bench import bert_base, gpt2_small, keep  # noqa: E402

BUDGETS = ("50%", "25%")


def vit_b16(fused: bool):
    def build():
        import timm
        import torch

        torch.manual_seed(0)
        model = timm.create_model("vit_base_patch16_224", pretrained=False).train()
        for block in model.blocks:
            block.attn.fused_attn = fused
        return model, (torch.randn(512, 3, 224, 224),)
    return build


SIMULATED = {"gpt2 8×1024": gpt2_small, "bert-base 128×512": bert_base,
             "vit-b/16 b512 unfused": vit_b16(False), "vit-b/16 b512 fused": vit_b16(True)}


def simulated(time_limit: float, records: list, json_out, models):
    import torch._dynamo

    from recompiler.frontend.capture import capture
    from recompiler.simulate import baseline
    from recompiler.solvers import solve
    from recompiler.solvers.fastsa import floor_bytes

    for name in models:
        model, inputs = SIMULATED[name]()
        for lowerings in (False, True):
            torch._dynamo.reset()
            start = time.perf_counter()
            cap = capture(model, inputs, name=name, lowerings=lowerings)
            seconds = time.perf_counter() - start
            g = cap.graph
            base = baseline(g).peak_bytes
            floor = floor_bytes(g)
            for budget in BUDGETS:
                want = int(base * float(budget[:-1]) / 100)
                plan = solve(g, max(want, floor), "fastsa", time_limit=time_limit)
                keep(records, {
                    "part": "simulated", "model": name, "lowerings": lowerings, "budget": budget, "nodes": g.n,
                    "groups": len(g.variant_groups), "lowered": sum(1 for v in plan.variant if v),
                    "options": sorted({g.variant_groups[k].options[v].name for k, v in enumerate(plan.variant) if v}),
                    "baseline_peak_bytes": base, "floor_pct": 100 * floor / base,
                    "peak_pct": 100 * plan.peak_fraction, "overhead_pct": 100 * plan.overhead,
                    "feasible": plan.peak_bytes <= want, "capture_seconds": seconds,
                    "solve_seconds": plan.solve_seconds}, json_out)
        del model


def causal_stack():
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "lowerings"))
    from attention_models import Stack

    torch.manual_seed(0)
    return Stack(layers=2, dim=64, heads=4, mask="causal-where"), (torch.randn(2, 1024, 64),)


def performer_lm():
    import torch
    from torch import nn

    from bench_models.slim_bench import CONFIG, PerformerLM

    c = CONFIG

    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lm = PerformerLM(c["vocab"], c["length"], c["layers"], c["dim"], c["heads"], feature_map="sqr",
                                  form="chunked", chunk_size=256)

        def forward(self, ids):
            logits = self.lm(ids[:, :-1])
            return nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())

    ids = torch.randint(0, c["vocab"], (c["batch"], c["length"] + 1), generator=torch.Generator().manual_seed(0))
    return WithLoss(), (ids,)


MEASURED = {"causal stack 2×1024": (causal_stack, ("25%",)), "performer LM (SLiM II)": (performer_lm, ("50%", "25%"))}


def measured(repeats: int, time_limit: float, records: list, json_out):
    from recompiler.runtime.check import check_step

    for name, (build, budgets) in MEASURED.items():
        model, inputs = build()
        for budget in budgets:
            for lowerings in (False, True):
                _measure(name, model, inputs, budget, lowerings, repeats, time_limit, records, json_out, check_step)


def _measure(name, model, inputs, budget, lowerings, repeats, time_limit, records, json_out, check_step):
    r = check_step(model, inputs, budget=budget, solver="fastsa", repeats=repeats, time_limit=time_limit,
                   lowerings=lowerings)
    keep(records, {
        "part": "measured", "model": name, "lowerings": lowerings, "budget": budget,
        "eager_peak_bytes": r.eager_peak_bytes, "plan_peak_bytes": r.plan_peak_bytes,
        "predicted_peak_bytes": r.predicted_peak_bytes,
        "simulated_pct": 100 * r.plan_simulated_peak_bytes / r.baseline_simulated_peak_bytes,
        "feasible": r.feasible, "eager_ms": 1e3 * r.eager_seconds, "plan_ms": 1e3 * r.plan_seconds,
        "max_grad_error": r.max_grad_error, "lowered": len(r.lowerings),
        "options": sorted({e["option"] for e in r.lowerings})}, json_out)


def tables(records: list) -> list[Table]:
    out = []
    sim = [r for r in records if r["part"] == "simulated"]
    if sim:
        t = Table(title="simulated (FastSA, roofline): lowerings off vs on", header_style="bold")
        for col in ("model", "budget", "lowerings", "floor %", "peak %", "overhead %", "feasible", "lowered",
                    "options"):
            t.add_column(col, justify="left" if col in ("model", "lowerings", "options") else "right")
        for r in sim:
            t.add_row(r["model"], r["budget"], "on" if r["lowerings"] else "off", f"{r['floor_pct']:.1f}",
                      f"{r['peak_pct']:.1f}", f"{r['overhead_pct']:.2f}", "yes" if r["feasible"] else "no",
                      f"{r['lowered']} of {r['groups']}", ", ".join(r["options"]))
        out.append(t)
    meas = [r for r in records if r["part"] == "measured"]
    if meas:
        t = Table(title="measured (CPU tracker): check_step", header_style="bold")
        for col in ("model", "budget", "lowerings", "eager peak MB", "plan peak MB", "predicted MB", "sim %",
                    "eager ms", "plan ms", "lowered", "grad error"):
            t.add_column(col, justify="left" if col in ("model", "lowerings") else "right")
        for r in meas:
            t.add_row(r["model"], r["budget"], "on" if r["lowerings"] else "off", f"{r['eager_peak_bytes'] / 1e6:.1f}",
                      f"{r['plan_peak_bytes'] / 1e6:.1f}", f"{r['predicted_peak_bytes'] / 1e6:.1f}",
                      f"{r['simulated_pct']:.1f}", f"{r['eager_ms']:.0f}", f"{r['plan_ms']:.0f}",
                      f"{r['lowered']} {', '.join(r.get('options', []))}", f"{r['max_grad_error']:.1e}")
        out.append(t)
    return out


@click.command()
@click.option("--part", type=click.Choice(["sim", "measured", "both"]), default="both", show_default=True)
@click.option("--models", default=",".join(SIMULATED), show_default=True, help="Simulated models, comma-separated.")
@click.option("--time-limit", type=float, default=30.0, show_default=True, help="FastSA seconds per solve.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed steps per measured cell.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
def main(part, models, time_limit, repeats, json_out):
    records: list = []
    if part in ("sim", "both"):
        simulated(time_limit, records, json_out, [m.strip() for m in models.split(",") if m.strip()])
    if part in ("measured", "both"):
        measured(repeats, min(time_limit, 20.0), records, json_out)
    console = Console(width=200)
    for t in tables(records):
        console.print(t)
    console.print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
