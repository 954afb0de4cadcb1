"""WTA-CRS (issue 16): what sampled weight gradients buy in memory, and what they cost in training.

``--part memory`` (simulated, meta device, eager compiler, CPU roofline): T5-base (12+12 layers,
d 768, d_ff 3072, vocab 32128) at batch 64 × 128 and 64 × 256 tokens, the paper's Fig. 2 setting.
The store-all peak with every matched linear exact vs at ratio 0.3 / 0.1 (the paper: 2.1× / 2.4×
lower on an A100), and the lowest budget of a grid FastSA meets with recomputation (and the exact
lowerings) alone vs with WTA-CRS allowed.

``--part fidelity`` (measured, CPU): a small BERT (4 layers, d 128, no dropout) fine-tuned on a
synthetic sequence-classification task with a learnable signal for ``--steps`` AdamW steps, exact
vs every matched linear at ratio 0.3 and 0.1 (store-all schedule, same data, same initialisation).

    python bench_models/wta_crs_bench.py [--part memory|fidelity|both] [--steps 400] [--time-limit 20]
"""

from __future__ import annotations

import math
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

RATIOS = (0.3, 0.1)
GRID = (50, 40, 30, 25, 20, 15, 10)


def t5_base(tokens: int):
    """T5-base at batch 64 × ``tokens`` on the meta device (planned only)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12,
                   num_heads=12, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                   use_cache=False)
    with torch.device("meta"):
        model = T5ForConditionalGeneration(cfg).train()
        ids = torch.empty(64, tokens, dtype=torch.long)
        labels = torch.empty(64, tokens, dtype=torch.long)
    return model, {"input_ids": ids, "labels": labels}


def _all_linear(graph, option: int) -> list[int]:
    return [option if g.kind == "linear" else 0 for g in graph.variant_groups]


def memory_part(console: Console, time_limit: float) -> None:
    from recompiler.budget import format_bytes
    from recompiler.frontend.capture import capture
    from recompiler.simulate import simulate
    from recompiler.solvers import solve
    from recompiler.solvers.fastsa import floor_bytes

    peaks = Table(title="T5-base, store-all: peak with every matched linear exact vs sampled (simulated)")
    for col in ("tokens", "linears matched", "exact", "ratio 0.3", "exact / 0.3", "ratio 0.1", "exact / 0.1",
                "paper"):
        peaks.add_column(col, justify="right")
    budgets = Table(title=f"T5-base: lowest budget of {', '.join(f'{b}%' for b in GRID)} FastSA meets "
                          f"(time limit {time_limit:g} s a solve)")
    for col in ("tokens", "lower bound, exact", "lower bound, WTA-CRS", "met, exact", "overhead",
                "met, WTA-CRS", "overhead ", "groups sampled"):
        budgets.add_column(col, justify="right")
    for tokens in (128, 256):
        start = time.perf_counter()
        model, inputs = t5_base(tokens)
        cap = capture(model, inputs, approx_ratios=RATIOS)
        g = cap.graph
        console.print(f"T5-base 64×{tokens}: {g.n} nodes, {len(g.variant_groups)} groups, "
                      f"captured in {time.perf_counter() - start:.1f} s")
        schedule = g.baseline_schedule()
        base = simulate(g, schedule, g.default_variant()).peak_bytes
        row = [str(tokens), str(sum(grp.kind == "linear" for grp in g.variant_groups)), format_bytes(base)]
        for k in (1, 2):
            p = simulate(g, schedule, _all_linear(g, k)).peak_bytes
            row += [format_bytes(p), f"{base / p:.2f}×"]
        peaks.add_row(*row, "2.1× / 2.4×")
        met = {}
        for approx in (False, True):
            met[approx] = None
            for b in GRID:
                plan = solve(g, f"{b}%", "fastsa", seed=0, time_limit=time_limit, allow_approx=approx)
                console.print(f"  {b}% allow_approx={approx}: peak {100 * plan.peak_fraction:.1f}% "
                              f"+{100 * plan.overhead:.2f}% feasible={plan.feasible}")
                if not plan.feasible:
                    break
                met[approx] = (b, plan)
        lb = [floor_bytes(g) / base, floor_bytes(g, allow_approx=True) / base]

        def cell(m):
            return ("none", "") if m is None else (f"{m[0]}%", f"+{100 * m[1].overhead:.2f}%")

        sampled = "" if met[True] is None else str(sum(1 for grp, v in zip(g.variant_groups, met[True][1].variant)
                                                       if grp.kind == "linear" and v))
        budgets.add_row(str(tokens), f"{100 * lb[0]:.1f}%", f"{100 * lb[1]:.1f}%", *cell(met[False]),
                        *cell(met[True]), sampled)
    console.print(peaks)
    console.print(budgets)


def _task(n: int, vocab: int, seq: int, generator):
    """Token ids, and a label learnable from them (is the second token in the vocabulary's lower
    half?), flipped for 10% of the examples: the loss cannot fall below ~0.325 nats, so final
    losses compare as ratios instead of as noise around zero."""
    import torch

    ids = torch.randint(0, vocab, (n, seq), generator=generator)
    labels = (ids[:, 1] < vocab // 2).long()
    flip = torch.rand(n, generator=generator) < 0.1
    return ids, torch.where(flip, 1 - labels, labels)


def fidelity_part(console: Console, steps: int, seeds=(0,)) -> None:
    from transformers import BertConfig

    vocab, seq, batch = 128, 64, 32
    cfg = BertConfig(vocab_size=vocab, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=512, max_position_embeddings=seq, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, num_labels=2)
    table = Table(title=f"BERT (4 layers, d 128) on a synthetic task, {steps} AdamW steps, batch {batch}×{seq}, "
                        "CPU: exact vs every matched linear sampled")
    for col in ("seed", "weight gradients", "final train loss (last 30)", "vs exact", "test loss", "vs exact ",
                "test accuracy", "ms / step"):
        table.add_column(col, justify="right")
    for seed in seeds:
        _fidelity_runs(table, cfg, vocab, seq, batch, steps, seed)
    console.print(table)


def _fidelity_runs(table, cfg, vocab, seq, batch, steps, seed):
    """One row per gradient mode for one seed (the model's initialisation and the data)."""
    import torch
    from transformers import BertForSequenceClassification

    import recompiler.runtime.backend as rb

    gen = torch.Generator().manual_seed(seed)
    train_ids, train_labels = _task(batch * 64, vocab, seq, gen)
    test_ids, test_labels = _task(1024, vocab, seq, gen)
    exact_loss = exact_test = None
    for ratio in (None, *RATIOS):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(cfg).train()
        options = {"compiler": "eager", "solver": "store-all", "budget": "100%"}
        if ratio is not None:
            options.update(allow_approx=True, approx_ratios=(ratio,))
            # find the groups once, then compile with every linear on its sampled option
            torch._dynamo.reset()
            probe = torch.compile(model, backend=rb.make_backend(options))
            probe(input_ids=train_ids[:batch], labels=train_labels[:batch]).loss.backward()
            names = rb.LAST_SESSION.graphs[0].plan.stats["variant_groups"]
            options["variants"] = (tuple(1 if name.startswith("wta-crs") else 0 for name in names),)
            model.zero_grad(set_to_none=True)
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=rb.make_backend(options))
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
        losses, start = [], None
        for step in range(steps):
            if step == 5:   # after compilation
                start = time.perf_counter()
            k = step % 64
            out = compiled(input_ids=train_ids[k * batch:(k + 1) * batch], labels=train_labels[k * batch:(k + 1) * batch])
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(out.loss.detach()))
        ms = 1000 * (time.perf_counter() - start) / (steps - 5) if start is not None else float("nan")
        if ratio is not None:
            lowered = rb.LAST_SESSION.graphs[0].lowerings
            assert lowered and all(not e["exact"] for e in lowered if e["kind"] == "linear")
        with torch.no_grad():
            model.eval()
            test = model(input_ids=test_ids, labels=test_labels)
            acc = float((test.logits.argmax(-1) == test_labels).float().mean())
        final, test_loss = sum(losses[-30:]) / len(losses[-30:]), float(test.loss)
        if ratio is None:
            exact_loss, exact_test = final, test_loss
        table.add_row(str(seed), "exact" if ratio is None else f"WTA-CRS {ratio}", f"{final:.4f}",
                      "" if ratio is None else f"{100 * (final / exact_loss - 1):+.1f}%", f"{test_loss:.4f}",
                      "" if ratio is None else f"{100 * (test_loss / exact_test - 1):+.1f}%", f"{100 * acc:.1f}%",
                      f"{ms:.1f}")
        assert math.isfinite(final)


@click.command()
@click.option("--part", type=click.Choice(["memory", "fidelity", "both"]), default="both", show_default=True)
@click.option("--steps", type=int, default=400, show_default=True)
@click.option("--seeds", default="0", show_default=True, help="Fidelity seeds (initialisation and data), comma-separated.")
@click.option("--time-limit", type=float, default=20.0, show_default=True, help="Seconds a FastSA solve may take.")
def main(part, steps, seeds, time_limit):
    console = Console(width=200)
    if part in ("fidelity", "both"):
        fidelity_part(console, steps, tuple(int(s) for s in seeds.split(",")))
    if part in ("memory", "both"):
        memory_part(console, time_limit)


if __name__ == "__main__":
    main()
