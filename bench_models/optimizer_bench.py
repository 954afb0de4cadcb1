"""Optimizer state in the budget (issue 17): state bytes and quality per optimizer, and what it does to a plan.

``--part train`` (measured, CPU): a small GPT-2-shaped LM (2 layers, d 128, vocabulary 512) on
synthetic sequences with a learnable signal (each token is the previous one + 1, mod the
vocabulary, with 10% of tokens random), ``--steps`` steps per optimizer: its state bytes
(``optimizer.state``, measured) beside what :mod:`recompiler.optim.state` counts, and the final loss.

``--part plan`` (simulated, meta device): LLaMA-7B (``LlamaConfig()`` defaults, fp32) at 8×2048
tokens: the store-all peak and the lower bound of the step with AdamW's state vs extreme
tensoring's, and FastSA at a grid of absolute budgets with each.

    python bench_models/optimizer_bench.py [--part train|plan|both] [--steps 300] [--time-limit 20]
"""

from __future__ import annotations

import copy
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

GIB = 2**30
#: Absolute budgets FastSA plans LLaMA-7B at (GiB).
GRID_GIB = (160, 128, 112, 96, 80, 64, 56, 48)


def _optimizers():
    import torch

    from recompiler.optim import ExtremeTensorAdagrad, ExtremeTensorAdam

    return [
        ("sgd", "sgd", lambda p: torch.optim.SGD(p, lr=0.3)),
        ("adagrad", "adagrad", lambda p: torch.optim.Adagrad(p, lr=0.05)),
        ("adam", "adam", lambda p: torch.optim.Adam(p, lr=3e-3)),
        ("adafactor", "adafactor", lambda p: torch.optim.Adafactor(p, lr=3e-2)),
        ("extreme-tensor adagrad p=2", "extreme-tensor:2", lambda p: ExtremeTensorAdagrad(p, lr=0.05, order=2)),
        ("extreme-tensor adagrad p=3", "extreme-tensor:3", lambda p: ExtremeTensorAdagrad(p, lr=0.05, order=3)),
        ("extreme-tensor adam p=2", None, lambda p: ExtremeTensorAdam(p, lr=3e-3, order=2)),
        ("extreme-tensor adam p=2, no 1st moment", None,
         lambda p: ExtremeTensorAdam(p, lr=3e-3, order=2, first_moment=False)),
    ]


def _batches(n: int, batch: int, seq: int, vocab: int, generator):
    import torch

    start = torch.randint(0, vocab, (n, batch, 1), generator=generator)
    ids = (start + torch.arange(seq)) % vocab
    noise = torch.rand(ids.shape, generator=generator) < 0.1
    return torch.where(noise, torch.randint(0, vocab, ids.shape, generator=generator), ids)


def train_part(console: Console, steps: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from recompiler.optim.state import state_bytes

    vocab, seq, batch = 512, 64, 16
    cfg = GPT2Config(vocab_size=vocab, n_positions=seq, n_embd=128, n_layer=2, n_head=4, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
    data = _batches(32, batch, seq, vocab, torch.Generator().manual_seed(0))
    table = Table(title=f"GPT-2-shaped LM (2 layers, d 128, vocab {vocab}), {steps} steps of {batch}×{seq} tokens, CPU")
    for col in ("optimizer", "state bytes (measured)", "counted by the planner", "× parameters' bytes",
                "final loss (last 30)"):
        table.add_column(col, justify="right")
    for label, spec, make in _optimizers():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(cfg).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = make(params)
        losses = []
        for step in range(steps):
            ids = data[step % len(data)]
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        measured = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                       if torch.is_tensor(t))
        counted = state_bytes(spec, [(tuple(p.shape), p.element_size()) for p in params]) if spec else None
        param_bytes = sum(p.numel() * p.element_size() for p in params)
        table.add_row(label, f"{measured:,}", "" if counted is None else f"{counted:,}",
                      f"{measured / param_bytes:.4f}", f"{sum(losses[-30:]) / 30:.3f}")
    console.print(table)


def plan_part(console: Console, time_limit: float) -> None:
    from bench_models.registry import build
    from recompiler.budget import format_bytes
    from recompiler.frontend.capture import capture
    from recompiler.optim.state import add_optimizer_state
    from recompiler.simulate import baseline
    from recompiler.solvers import solve
    from recompiler.solvers.fastsa import floor_bytes

    start = time.perf_counter()
    model, inputs = build("paper:llama-7b", "paper")
    table = Table(title="LLaMA-7B at 8×2048 (fp32, meta device, simulated): the step with each optimizer's state")
    for col in ("optimizer", "state", "store-all peak", "lower bound", "lowest grid budget met", "its overhead"):
        table.add_column(col, justify="right")
    captured = capture(model, inputs, compiler="eager")
    console.print(f"captured in {time.perf_counter() - start:.1f} s, {captured.graph.n} nodes")
    for spec in ("none", "adamw", "extreme-tensor"):
        cap = copy.copy(captured)
        state = add_optimizer_state(cap, spec) if spec != "none" else 0
        g = cap.graph
        met = None
        for gib in GRID_GIB:
            if gib * GIB < floor_bytes(g):
                break
            plan = solve(g, gib * GIB, "fastsa", seed=0, time_limit=time_limit)
            console.print(f"  {gib} GiB: peak {format_bytes(plan.peak_bytes)} +{100 * plan.overhead:.2f}% "
                          f"feasible={plan.feasible}")
            if not plan.feasible:
                break
            met = (gib, plan)
        table.add_row(spec, format_bytes(state), format_bytes(baseline(g).peak_bytes), format_bytes(floor_bytes(g)),
                      "none" if met is None else f"{met[0]} GiB", "" if met is None else f"+{100 * met[1].overhead:.2f}%")
    console.print(table)


@click.command()
@click.option("--part", type=click.Choice(["train", "plan", "both"]), default="both", show_default=True)
@click.option("--steps", type=int, default=300, show_default=True)
@click.option("--time-limit", type=float, default=20.0, show_default=True, help="Seconds a FastSA solve may take.")
def main(part, steps, time_limit):
    console = Console(width=200)
    if part in ("train", "both"):
        train_part(console, steps)
    if part in ("plan", "both"):
        plan_part(console, time_limit)


if __name__ == "__main__":
    main()
