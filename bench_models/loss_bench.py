"""The chunked vocabulary loss (issue 13): what it does to the floor and to tight plans.

Simulated (activations fake, replayed RNG, CPU roofline, FastSA): HF GPT-2 small at 8×1024, BERT-base
(masked LM) at 128×512 and LLaMA-7B's shape (32 layers, d 4096, vocabulary 32000, bf16 weights left uninitialised: their
values never matter to a plan) at 8×2048. Per setting — no lowerings, attention lowerings only,
attention + chunked loss — the smallest reachable peak (``fastsa.floor_bytes``) and FastSA's plan
at 25%.

Measured (CPU tracker, ``check_step``): a small decoder with a 32k vocabulary at 4×512 tokens
(the issue's "cannot be planned below ~96%"), at 50% and 25%, lowerings off vs on.

    python bench_models/loss_bench.py [--part sim|measured|both] [--models gpt2,llama7b] [--time-limit 30]
"""

from __future__ import annotations

import dataclasses
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


def llama7b():
    """LLaMA-7B's shape at 8×2048, bf16, parameters allocated but never initialised."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=2048, use_cache=False,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, attention_dropout=0.0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(default)
    model = model.to_empty(device="cpu").train()
    model.loss_type = "ForCausalLM"
    ids = torch.randint(0, 32000, (8, 2048))
    return model, {"input_ids": ids, "labels": ids}


SIMULATED = {"gpt2 8×1024": gpt2_small, "bert-base 128×512": bert_base, "llama-7b shape 8×2048": llama7b}
SETTINGS = ("none", "attention", "attention + loss")


def _only(graph, kinds):
    return dataclasses.replace(graph, variant_groups=[g for g in graph.variant_groups if g.kind in kinds])


def simulated(time_limit, records, json_out, models):
    import torch._dynamo

    from recompiler.frontend.capture import capture
    from recompiler.simulate import baseline
    from recompiler.solvers import solve
    from recompiler.solvers.fastsa import floor_bytes

    for name in models:
        model, inputs = SIMULATED[name]()
        torch._dynamo.reset()
        start = time.perf_counter()
        cap = capture(model, inputs, name=name)
        seconds = time.perf_counter() - start
        del model
        for setting in SETTINGS:
            kinds = {"none": (), "attention": ("attention",), "attention + loss": ("attention", "loss")}[setting]
            g = _only(cap.graph, kinds)
            base = baseline(g).peak_bytes
            floor = floor_bytes(g)
            want = base // 4
            plan = solve(g, max(want, floor), "fastsa", time_limit=time_limit)
            chosen = [g.variant_groups[k].kind for k, v in enumerate(plan.variant) if v]
            keep(records, {"part": "simulated", "model": name, "setting": setting, "nodes": g.n,
                           "groups": len(g.variant_groups), "baseline_peak_bytes": base, "floor_pct": 100 * floor / base,
                           "peak_pct": 100 * plan.peak_fraction, "overhead_pct": 100 * plan.overhead,
                           "feasible": plan.peak_bytes <= want, "lowered": {k: chosen.count(k) for k in set(chosen)},
                           "capture_seconds": seconds, "solve_seconds": plan.solve_seconds}, json_out)


def big_vocab_decoder():
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "lowerings"))
    from test_chunked_loss import TinyLM

    torch.manual_seed(0)
    model = TinyLM(vocab=32000, dim=64, tied=True)
    ids = torch.randint(0, 32000, (4, 512))
    return model, {"ids": ids, "labels": torch.roll(ids, -1, dims=1)}


def measured(repeats, time_limit, records, json_out):
    from recompiler.runtime.check import check_step

    model, inputs = big_vocab_decoder()
    for budget in ("50%", "25%"):
        for lowerings in (False, True):
            r = check_step(model, inputs, budget=budget, solver="fastsa", repeats=repeats, time_limit=time_limit,
                           lowerings=lowerings)
            keep(records, {"part": "measured", "model": "decoder 32k vocab 4×512", "budget": budget,
                           "lowerings": lowerings, "eager_peak_bytes": r.eager_peak_bytes,
                           "plan_peak_bytes": r.plan_peak_bytes, "predicted_peak_bytes": r.predicted_peak_bytes,
                           "simulated_pct": 100 * r.plan_simulated_peak_bytes / r.baseline_simulated_peak_bytes,
                           "feasible": r.feasible, "eager_ms": 1e3 * r.eager_seconds, "plan_ms": 1e3 * r.plan_seconds,
                           "max_grad_error": r.max_grad_error,
                           "lowerings_chosen": sorted({e["option"] for e in r.lowerings})}, json_out)


def tables(records):
    out = []
    sim = [r for r in records if r["part"] == "simulated"]
    if sim:
        t = Table(title="simulated (FastSA, roofline) at 25%", header_style="bold")
        for col in ("model", "lowerings", "floor %", "peak %", "overhead %", "feasible", "lowered"):
            t.add_column(col, justify="left" if col in ("model", "lowerings", "lowered") else "right")
        for r in sim:
            t.add_row(r["model"], r["setting"], f"{r['floor_pct']:.1f}", f"{r['peak_pct']:.1f}",
                      f"{r['overhead_pct']:.2f}", "yes" if r["feasible"] else "no",
                      ", ".join(f"{v} {k}" for k, v in sorted(r["lowered"].items())))
        out.append(t)
    meas = [r for r in records if r["part"] == "measured"]
    if meas:
        t = Table(title="measured (CPU tracker): check_step", header_style="bold")
        for col in ("model", "budget", "lowerings", "eager peak MB", "plan peak MB", "predicted MB", "sim %",
                    "feasible", "eager ms", "plan ms", "chosen", "grad error"):
            t.add_column(col, justify="left" if col in ("model", "lowerings", "chosen") else "right")
        for r in meas:
            t.add_row(r["model"], r["budget"], "on" if r["lowerings"] else "off", f"{r['eager_peak_bytes'] / 1e6:.1f}",
                      f"{r['plan_peak_bytes'] / 1e6:.1f}", f"{r['predicted_peak_bytes'] / 1e6:.1f}",
                      f"{r['simulated_pct']:.1f}", "yes" if r["feasible"] else "no", f"{r['eager_ms']:.0f}",
                      f"{r['plan_ms']:.0f}", ", ".join(r["lowerings_chosen"]), f"{r['max_grad_error']:.1e}")
        out.append(t)
    return out


@click.command()
@click.option("--part", type=click.Choice(["sim", "measured", "both"]), default="both", show_default=True)
@click.option("--models", default=",".join(SIMULATED), show_default=True)
@click.option("--time-limit", type=float, default=30.0, show_default=True, help="FastSA seconds per solve.")
@click.option("--repeats", type=int, default=3, show_default=True)
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
