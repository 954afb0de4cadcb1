"""Synthetic node-cost graphs for tests and benchmarks.

>>> g = training_chain(4)
>>> g.n, int(g.is_backward.sum())
(9, 5)
"""

from __future__ import annotations

import numpy as np

from .graph import CostGraph


def linear_chain(n: int, *, memory: int = 1, compute: float = 1.0) -> CostGraph:
    """n nodes, each depending on the one before; the last is the output."""
    out = np.zeros(n, dtype=bool)
    out[-1] = True
    return CostGraph(names=[f"n{i}" for i in range(n)], deps=[[i - 1] if i else [] for i in range(n)],
                     compute=[compute] * n, memory=[memory] * n, is_output=out, name=f"chain{n}")


def training_chain(n: int, *, memory: int = 1, compute: float = 1.0, with_input: bool = False) -> CostGraph:
    """A forward chain f0..f{n-1}, a loss, and a mirrored backward b{n-1}..b0.

    Backward node b_i depends on the gradient from above and on the forward
    activation f_i (as a real layer's backward reads its saved input/output).
    Gradient nodes b_i are outputs (weight gradients live to the end of the step)
    only for the first one, so the graph stays small; the loss is an output too.
    """
    names, deps, bwd = [], [], []
    first = 0
    if with_input:
        names.append("x"); deps.append([]); bwd.append(False); first = 1
    for i in range(n):
        names.append(f"f{i}")
        deps.append([first + i - 1] if (i or with_input) else [])
        bwd.append(False)
    loss = len(names)
    names.append("loss"); deps.append([loss - 1]); bwd.append(True)
    prev = loss
    for i in reversed(range(n)):
        names.append(f"b{i}")
        deps.append([prev, first + i])
        bwd.append(True)
        prev = len(names) - 1
    k = len(names)
    out = np.zeros(k, dtype=bool)
    out[loss] = True
    out[-1] = True
    is_input = np.zeros(k, dtype=bool)
    is_input[0] = with_input
    return CostGraph(names=names, deps=deps, compute=[compute] * k, memory=[memory] * k, is_backward=bwd,
                     is_input=is_input, is_output=out, name=f"train_chain{n}")


def random_layered(n: int, *, width: int = 4, edge_prob: float = 0.3, seed: int = 0,
                   max_memory: int = 1000, max_compute: float = 10.0) -> CostGraph:
    """A seeded random layered DAG: each node depends on 1..3 nodes of earlier layers.

    Mostly on the layer just above, sometimes (``edge_prob``) further back, which
    gives the long-lived values that make recomputation interesting.
    """
    rng = np.random.default_rng(seed)
    deps: list[list[int]] = []
    for i in range(n):
        layer = i // width
        if layer == 0:
            deps.append([])
            continue
        # Layer L-1 is nodes [(L-1)·width, L·width) and every older layer is [0, (L-1)·width):
        # drawing an index into these ranges keeps the graphs of the former version, which
        # listed them and called rng.choice(list), seed for seed, in O(n) (rng.integers(0, k)
        # draws what rng.choice(k) and rng.choice(range(k)) draw).
        prev0 = older = (layer - 1) * width  # first node of layer L-1; count of older nodes
        chosen = {prev0 + int(rng.integers(0, width))}
        if older and rng.random() < edge_prob:
            chosen.add(int(rng.integers(0, older)))
        if rng.random() < edge_prob:
            chosen.add(prev0 + int(rng.integers(0, width)))
        deps.append(sorted(chosen))
    users = [0] * n
    for ds in deps:
        for d in ds:
            users[d] += 1
    out = np.array([users[i] == 0 for i in range(n)])
    return CostGraph(names=[f"v{i}" for i in range(n)], deps=deps,
                     compute=rng.uniform(0.1, max_compute, n).round(3),
                     memory=rng.integers(1, max_memory + 1, n), is_output=out, name=f"random_layered{n}_s{seed}")


def transformer_block(layers: int = 2, *, seq: int = 128, hidden: int = 256, heads: int = 4,
                      batch: int = 1, dtype_bytes: int = 4, with_variants: bool = False) -> CostGraph:
    """A transformer-shaped training graph: per layer ln → qkv → attention → proj → +res → ln → mlp → +res.

    Bytes follow the shapes (attention probabilities are batch·heads·seq² entries),
    compute follows matmul FLOPs (seconds at 1 TFLOP/s). With ``with_variants`` each
    attention gets a chunked-attention option (exact) that drops the probability
    matrix at the price of recomputing scores in the backward.
    """
    from .graph import VariantGroup, VariantOption

    act = batch * seq * hidden * dtype_bytes
    probs = batch * heads * seq * seq * dtype_bytes
    flops = lambda m, k, n: 2.0 * m * k * n / 1e12  # noqa: E731 - tiny local helper
    tok = batch * seq
    names, deps, comp, mem, bwd = [], [], [], [], []
    is_input, out = [], []

    def add(name, ds, c, m, backward=False, inp=False, output=False):
        names.append(name); deps.append(list(ds)); comp.append(c); mem.append(m)
        bwd.append(backward); is_input.append(inp); out.append(output)
        return len(names) - 1

    x = add("x", [], 0.0, act, inp=True)
    fwd = []  # per layer: dict of node ids
    h = x
    for i in range(layers):
        w = add(f"l{i}.w", [], 0.0, 12 * hidden * hidden * dtype_bytes, inp=True)
        ln1 = add(f"l{i}.ln1", [h], act / 1e12, act)
        qkv = add(f"l{i}.qkv", [ln1, w], flops(tok, hidden, 3 * hidden), 3 * act)
        attn = add(f"l{i}.attn", [qkv], 2 * flops(tok, seq, hidden), act + probs)
        proj = add(f"l{i}.proj", [attn, w], flops(tok, hidden, hidden), act)
        res1 = add(f"l{i}.res1", [h, proj], act / 1e12, act)
        ln2 = add(f"l{i}.ln2", [res1], act / 1e12, act)
        fc1 = add(f"l{i}.fc1", [ln2, w], flops(tok, hidden, 4 * hidden), 4 * act)
        gelu = add(f"l{i}.gelu", [fc1], 4 * act / 1e12, 4 * act)
        fc2 = add(f"l{i}.fc2", [gelu, w], flops(tok, 4 * hidden, hidden), act)
        res2 = add(f"l{i}.res2", [res1, fc2], act / 1e12, act)
        fwd.append(dict(h=h, w=w, ln1=ln1, qkv=qkv, attn=attn, proj=proj, res1=res1, ln2=ln2, fc1=fc1,
                        gelu=gelu, fc2=fc2))
        h = res2
    loss = add("loss", [h], act / 1e12, dtype_bytes, backward=True, output=True)
    g = loss
    attn_bwd = {}
    for i in reversed(range(layers)):
        f = fwd[i]
        g_fc2 = add(f"l{i}.fc2_bwd", [g, f["gelu"], f["w"]], 2 * flops(tok, 4 * hidden, hidden), 4 * act, True)
        g_gelu = add(f"l{i}.gelu_bwd", [g_fc2, f["fc1"]], 4 * act / 1e12, 4 * act, True)
        g_fc1 = add(f"l{i}.fc1_bwd", [g_gelu, f["ln2"], f["w"]], 2 * flops(tok, hidden, 4 * hidden), act, True)
        g_ln2 = add(f"l{i}.ln2_bwd", [g_fc1, f["res1"], g], act / 1e12, act, True)
        g_proj = add(f"l{i}.proj_bwd", [g_ln2, f["attn"], f["w"]], 2 * flops(tok, hidden, hidden), act, True)
        g_attn = add(f"l{i}.attn_bwd", [g_proj, f["attn"], f["qkv"]], 4 * flops(tok, seq, hidden), 3 * act, True)
        attn_bwd[i] = g_attn
        g_qkv = add(f"l{i}.qkv_bwd", [g_attn, f["ln1"], f["w"]], 2 * flops(tok, hidden, 3 * hidden), act, True)
        g_ln1 = add(f"l{i}.ln1_bwd", [g_qkv, f["h"], g_ln2], act / 1e12, act, True)
        add(f"l{i}.w_grad", [g_fc2, g_fc1, g_proj, g_qkv], 0.0, 12 * hidden * hidden * dtype_bytes, True,
            output=True)
        g = g_ln1
    out[g] = True
    groups = []
    if with_variants:
        for i in range(layers):
            a, b = fwd[i]["attn"], attn_bwd[i]
            groups.append(VariantGroup(
                name=f"l{i}.attn", kind="attention", nodes=[a, b],
                options=[VariantOption("eager", True, [comp[a], comp[b]], [mem[a], mem[b]]),
                         VariantOption("chunked", True, [comp[a], comp[b] + comp[a]],
                                       [act + batch * heads * seq * dtype_bytes, mem[b]])]))
    return CostGraph(names=names, deps=deps, compute=comp, memory=mem, is_backward=bwd, is_input=is_input,
                     is_output=out, variant_groups=groups, name=f"transformer{layers}x{hidden}")
