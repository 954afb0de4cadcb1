"""Helpers of the frontend tests: run a schedule of a captured joint graph on real tensors."""

import torch


def by_op(cap, op):
    """CostGraph ids of the nodes running ``op`` (``"native_dropout"``, ``"addmm"``...)."""
    return [i for i, o in enumerate(cap.ops) if o == op]


def run_schedule(cap, schedule, seed=0, seen=None):
    """Execute a schedule of the joint graph on real tensors (a recomputation re-runs the op).

    Returns the graph's outputs: (loss, gradients...). ``seen[name]``, when given, collects the
    value of every occurrence of each node.
    """
    torch.manual_seed(seed)
    env = {}
    primals = iter(cap.flat_inputs)
    for node in cap.fx_nodes:
        if node.op == "placeholder":
            env[node] = next(primals) if node.name.startswith("primals") else torch.ones(())
    for v in schedule:
        node = cap.fx_nodes[v]
        args = torch.fx.node.map_arg(node.args, lambda a: env[a])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: env[a])
        env[node] = node.target(*args, **kwargs)
        if seen is not None:
            seen.setdefault(node.name, []).append(env[node])
    (out,) = cap.joint.graph.find_nodes(op="output")
    return [env[a] if a is not None else None for a in out.args[0]]
