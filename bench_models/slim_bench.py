"""SLiM's chunked causal linear attention against the cumsum form, measured on CPU.

A Performer LM at the SLiM paper's config II shape (L = 1024, 3 layers, d = 512, 8 heads,
batch 1, ``sqr`` features, a 10,000-word vocabulary as PTB's): one training step per form,
the peak of live tensor bytes (``recompiler.runtime.memory``; allocations made inside the
custom op's own loop are transient per slice and not counted) and the median step time.

    python bench_models/slim_bench.py [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recompiler.fileio import write_json_atomic  # noqa: E402
from recompiler.nn import CausalLinearAttention  # noqa: E402
from recompiler.runtime.memory import measure_peak  # noqa: E402

CONFIG = dict(vocab=10_000, length=1024, layers=3, dim=512, heads=8, batch=1)


class Block(nn.Module):
    def __init__(self, dim, heads, **attention):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalLinearAttention(dim, heads, **attention)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class PerformerLM(nn.Module):
    def __init__(self, vocab, length, layers, dim, heads, **attention):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, dim), nn.Parameter(torch.zeros(length, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, **attention) for _ in range(layers)])
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids):
        return self.head(self.blocks(self.embed(ids) + self.pos[: ids.shape[1]]))


FORMS = {"cumsum": dict(form="cumsum"), "chunked C=512": dict(form="chunked", chunk_size=512),
         "chunked C=256": dict(form="chunked", chunk_size=256)}


@click.command()
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
def main(repeats, json_out):
    c = CONFIG
    ids = torch.randint(0, c["vocab"], (c["batch"], c["length"] + 1), generator=torch.Generator().manual_seed(0))
    records = []
    for name, attention in FORMS.items():
        torch.manual_seed(0)
        model = PerformerLM(c["vocab"], c["length"], c["layers"], c["dim"], c["heads"], feature_map="sqr",
                            **attention)

        def step():
            logits = model(ids[:, :-1])
            nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()

        step()  # warm-up
        model.zero_grad(set_to_none=True)
        peak = measure_peak(step).peak_bytes
        times = []
        for _ in range(repeats):
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        records.append({"form": name, "peak_bytes": peak, "step_ms": 1e3 * statistics.median(times),
                        "grad_norm": grads.norm().item()})
        print(records[-1], flush=True)
    if json_out:
        write_json_atomic(json_out, {"config": c, "load": os.getloadavg(), "records": records})
    t = Table(title="Performer LM, SLiM config II (L=1024, 3 layers, d=512, batch 1), CPU", header_style="bold")
    for col in ("form", "peak MB", "vs cumsum", "step ms", "grad norm"):
        t.add_column(col, justify="left" if col == "form" else "right")
    for r in records:
        t.add_row(r["form"], f"{r['peak_bytes'] / 1e6:.1f}", f"{r['peak_bytes'] / records[0]['peak_bytes']:.2f}",
                  f"{r['step_ms']:.0f}", f"{r['grad_norm']:.6f}")
    Console(width=160).print(t)
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
