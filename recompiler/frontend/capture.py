"""From a model to a node-cost graph: capture the AOTAutograd joint graph and lower it.

:func:`capture` wraps ``model`` and its loss in one module, compiles it with
``torch.compile(fullgraph=True, dynamic=False)`` and an ``aot_autograd`` backend whose
``partition_fn`` records the joint forward+backward graph it is handed — the very graph
(and ``num_fwd_outputs``) that the runtime's partition function will receive when it
applies a plan — then stops compilation. Nothing runs for real: dynamo and AOTAutograd
trace with fake tensors, so BatchNorm running stats and the RNG state are untouched.

Lowering rules (DESIGN.md, "The node-cost graph"):

* every fx node but ``output`` is one CostGraph node, in fx order (a topological order);
  placeholders (parameters, buffers, inputs, tangents) and ``get_attr`` constants are
  ``is_input``;
* **views and aliases** (ops whose schema says the result aliases an input, ``detach``,
  ``_unsafe_view``, in-place ops returning ``self``) get ``memory = 0`` and every consumer of
  a view also depends on the view's *root* (the first non-view producer it aliases), so the
  base is never freed while a view of it is in use;
* **multi-output ops** (a tuple + ``getitem``s): the producer's memory is the sum of the
  tensors it returns that the graph uses (all of them exist at once when it runs); each
  ``getitem`` depends on the producer and carries its own tensor's bytes from then on, so a
  small saved statistic (BatchNorm's mean, layer-norm's rstd) does not keep the big output
  alive. The tuple lives only until its last ``getitem`` ran, right after the producer;
  recomputing one output means rerunning the producer (its full cost) — which is what the
  runtime does;
* **random ops** (tagged ``nondeterministic_seeded``: dropout, ``rand*``, ``bernoulli``, attention
  with dropout): with ``rng="replay"`` (the default) :mod:`.rng` first rewrites each into a
  replayed op fed by a pinned 8-byte ``draw_seed`` node, so the op itself may be recomputed and
  reproduces its values bit for bit; with ``rng="pin"`` the op is pinned, so its mask and the
  gradients are exactly those of an eager step;
* **pinned** (computed exactly once): ops with a mutable schema (``copy_`` of BatchNorm
  running stats and ``num_batches_tracked``, any in-place op), random ops that are not replayed
  (and the seed draws of those that are), collectives (``_c10d_functional``/``c10d`` ops);
* **outputs** (loss, buffer updates, gradients): ``is_output``; for a view output, its root.

Example
-------
>>> import torch
>>> cap = capture(torch.nn.Linear(4, 2), (torch.randn(3, 4),))
>>> cap.graph.n > 0, cap.num_fwd_outputs
(True, 1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx

from ..errors import CaptureError
from ..graph import CostGraph
from . import costs, rng as rng_ops

_COLLECTIVE_NAMESPACES = ("_c10d_functional", "c10d_functional", "c10d", "_dtensor")
# wait_tensor hands back the tensor its collective produced: an alias, not a new buffer
_EXTRA_VIEWS = {"_unsafe_view", "detach", "alias", "lift_fresh", "wait_tensor"}


@dataclass(repr=False)
class Captured:
    """A captured training step: the fx joint graph, its CostGraph, and the maps between them.

    ``node_ids[fx_name]`` is the CostGraph id of an fx node; ``fx_nodes[i]`` the fx node of
    CostGraph node ``i`` (``graph.names[i]`` is its name). What issue 7's runtime needs to apply
    a plan: ``joint`` (the GraphModule a ``partition_fn`` receives), ``num_fwd_outputs``, and the
    id ↔ fx-node maps.
    """

    graph: CostGraph
    joint: torch.fx.GraphModule
    num_fwd_outputs: int
    fx_nodes: list[torch.fx.Node]
    node_ids: dict[str, int]
    module_paths: list[str]
    ops: list[str]
    flops: np.ndarray
    kinds: list[str]                  # "input", "view", "getitem", "op"
    input_names: dict[str, str] = field(default_factory=dict)  # placeholder -> dynamo's source name
    #: The real tensors dynamo passed for the graph's inputs (parameters, buffers, user inputs),
    #: in the order of the joint graph's ``primals_*`` placeholders.
    flat_inputs: list = field(default_factory=list)
    device_profile: str = "cpu"
    profiled: bool = False
    rng: str = rng_ops.DEFAULT_RNG
    #: CostGraph ids of the replayed random ops (empty under ``rng="pin"``).
    random_ops: list[int] = field(default_factory=list)
    #: One :class:`~recompiler.lowerings.Instance` per variant group of ``graph``, in group order.
    lowerings: list = field(default_factory=list)
    #: ``"eager"`` (the fx graphs run node by node) or ``"inductor"`` (fused: :mod:`.fusion`).
    compiler: str = "eager"
    #: Per node: inductor inlines it into its readers (no memory of its own); all False under eager.
    inlined: list = field(default_factory=list)
    #: Under inductor, the deps before :func:`.fusion.deferred_deps` (``graph.deps`` are deferred).
    unfused_deps: list | None = None
    #: Captured from a meta-device or fake model: it can be planned, not run (no data).
    planned_only: bool = False
    #: The ratios the approximate lowerings were offered at (empty: exact lowerings only).
    approx_ratios: tuple = ()

    def __repr__(self) -> str:
        return f"Captured({self.graph.summary()}, num_fwd_outputs={self.num_fwd_outputs})"

    @property
    def total_flops(self) -> int:
        return int(self.flops.sum())

    def module_of(self, name: str) -> str:
        return self.module_paths[self.node_ids[name]]

    def random_recomputed(self, schedule) -> int:
        """How many replayed random ops ``schedule`` runs more than once."""
        counts = np.bincount(np.asarray(schedule, dtype=np.int64), minlength=self.graph.n)
        return int(sum(counts[i] > 1 for i in self.random_ops))

    def plan_stats(self) -> dict:
        """What a plan JSON needs to be re-applied to this graph later (issue 7)."""
        return {
            "num_fwd_outputs": self.num_fwd_outputs,
            "node_names": list(self.graph.names),
            "module_paths": list(self.module_paths),
            "device_profile": "profiled" if self.profiled else self.device_profile,
            "rng": self.rng,
            "variant_groups": [g.name for g in self.graph.variant_groups],
            "compiler": self.compiler,
            "inputs": self.input_shapes(),
            "approx_ratios": list(self.approx_ratios),
        }

    def input_shapes(self) -> list[dict]:
        """``[{"name": ..., "shape": [...]}]`` per graph input (parameters, buffers, user inputs), in
        placeholder order: what a plan was made for, so a plan applied to other shapes says which."""
        out = []
        for node in self.fx_nodes:
            if node.op != "placeholder" or is_tangent(node):
                continue
            val = node.meta.get("val")
            shape = [int(d) if isinstance(d, int) else str(d) for d in val.shape] if isinstance(val, torch.Tensor) \
                else None
            out.append({"name": self.input_names.get(node.name, node.name), "shape": shape})
        return out


class _Recorded(Exception):
    """Raised from the partition function once the joint graph is recorded, to stop compiling."""


# --------------------------------------------------------------------------- the loss
def _tensor_leaves(out):
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _tensor_leaves(v)
    elif isinstance(out, (tuple, list)):
        for v in out:
            yield from _tensor_leaves(v)
    elif hasattr(out, "to_tuple"):  # HF ModelOutput
        yield from _tensor_leaves(out.to_tuple())


def default_loss(out):
    """``out.loss`` when the output has one, else the sum of every floating tensor it holds."""
    loss = getattr(out, "loss", None)
    if loss is None and isinstance(out, dict):
        loss = out.get("loss")
    if isinstance(loss, torch.Tensor):
        return loss
    leaves = [t for t in _tensor_leaves(out) if t.is_floating_point() or t.is_complex()]
    if not leaves:
        raise CaptureError("the model's output holds no floating-point tensor to take a loss of; pass loss_fn")
    total = leaves[0].sum()
    for t in leaves[1:]:
        total = total + t.sum()
    return total


class _WithLoss(torch.nn.Module):
    def __init__(self, model, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, args, kwargs):
        return self.loss_fn(self.model(*args, **kwargs))


def _split_inputs(example_inputs):
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    return (example_inputs,), {}


def _is_meta(t) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type == "meta"


def _is_fake(t) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor)


def _step_tensors(model: torch.nn.Module, args, kwargs) -> list:
    """The model's parameters and buffers, and every leaf of its inputs."""
    return [*model.parameters(), *model.buffers(), *torch.utils._pytree.tree_leaves((args, kwargs))]


def without_memory(model: torch.nn.Module, args, kwargs) -> bool:
    """The step has no data: some parameter, buffer or input is a meta or fake tensor (planned only)."""
    return any(_is_meta(t) or _is_fake(t) for t in _step_tensors(model, args, kwargs))


def _fake_on_cpu(model: torch.nn.Module, args, kwargs):
    """A meta-device model and inputs as fake CPU tensors: shapes, dtypes and strides, no memory.

    Meta tensors carry no device a backward can be traced for (autograd has no meta kernels
    for some ops, and a model's constants made on the meta device are not fake), so a meta
    model becomes an uninitialised copy on a fake CPU, in one ``FakeTensorMode`` that dynamo
    then traces in. Fake models and inputs are used as they are.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    if not any(_is_meta(t) for t in _step_tensors(model, args, kwargs)):
        return model, args, kwargs
    import copy

    mode = FakeTensorMode(allow_non_fake_inputs=True)

    made: dict[int, torch.Tensor] = {}

    def fake(t):  # one fake per meta tensor: an input passed twice stays one graph input
        if not _is_meta(t):
            return t
        if id(t) not in made:
            out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")
            made[id(t)] = out.requires_grad_(t.requires_grad)
        return made[id(t)]

    model = copy.deepcopy(model)  # the user's model stays on meta; copying meta tensors is free
    with mode:
        model = model.to_empty(device="cpu")
        args, kwargs = torch.utils._pytree.tree_map(fake, (args, kwargs))
    return model, args, kwargs


# --------------------------------------------------------------------------- capture
def capture(model: torch.nn.Module, example_inputs, *, loss_fn=None, device_profile: str = "cpu",
            profile: bool = False, name: str | None = None, profile_runs: int = 5,
            rng: str = rng_ops.DEFAULT_RNG, lowerings: bool = True, compiler: str = "eager",
            approx_ratios=()) -> Captured:
    """Trace one training step of ``model`` on ``example_inputs`` and lower it to a CostGraph.

    ``example_inputs`` is a tensor, a tuple of positional args, or a dict of keyword args.
    ``loss_fn(output) -> scalar`` defaults to :func:`default_loss`. ``device_profile`` names a
    roofline profile in :data:`costs.PROFILES`; ``profile=True`` times every node here instead.
    ``rng`` is ``"replay"`` (random ops recomputable, :mod:`.rng`) or ``"pin"`` (computed once).
    ``lowerings=False`` leaves out the variant groups of :mod:`recompiler.lowerings`.
    ``approx_ratios`` (e.g. ``(0.3, 0.1)``) also offers the approximate lowerings at those ratios
    (:mod:`recompiler.lowerings.sampled_linear`); empty: exact lowerings only.
    ``compiler="inductor"`` captures the joint graph inductor's partitioner receives (after its
    decompositions and joint-graph passes) and costs it as inductor fuses it (:mod:`.fusion`),
    with the default partitioner's schedule as the graph's reference; ``"eager"`` the graph
    ``aot_eager`` partitions, run node by node, with store-all as reference.
    Raises :class:`~recompiler.errors.CaptureError` when the step cannot be traced as one graph.
    """
    import torch._dynamo
    import torch._functorch.config  # noqa: F401 - must be imported before aot_autograd reads it
    from torch._dynamo.backends.common import aot_autograd

    prof = costs.get_profile(device_profile)
    rng_ops.check_rng_mode(rng)
    check_compiler(compiler)
    args, kwargs = _split_inputs(example_inputs)
    planned_only = without_memory(model, args, kwargs)
    if planned_only:
        if profile:
            raise CaptureError("a model on the meta device (or of fake tensors) has no data to time: "
                               "capture it without profile=True (roofline costs)")
        model, args, kwargs = _fake_on_cpu(model, args, kwargs)
    wrapper = _WithLoss(model, loss_fn or default_loss)
    record: dict = {}

    def partition(joint, joint_inputs, *, num_fwd_outputs, **_):
        record["joint"], record["num_fwd_outputs"] = joint, num_fwd_outputs
        raise _Recorded

    def forward_only(gm, example):
        raise CaptureError("nothing in the step requires a gradient (no parameter or input has requires_grad)")

    def backend(gm, example):
        record["input_names"] = [n.name for n in gm.graph.find_nodes(op="placeholder")]
        record["flat_inputs"] = list(example)
        if compiler == "inductor":
            if not any(isinstance(t, torch.Tensor) and t.requires_grad for t in example):
                forward_only(gm, example)  # inductor would compile an inference graph: say why not
            with inductor_partitioner(partition):
                return compile_inductor(gm, example)
        return aot_autograd(fw_compiler=forward_only, bw_compiler=forward_only, partition_fn=partition,
                            keep_inference_input_mutations=True)(gm, example)

    compiled = torch.compile(wrapper, backend=backend, fullgraph=True, dynamic=False)
    try:
        compiled(args, kwargs)
    except BaseException as e:  # noqa: BLE001 - unwrap: dynamo re-raises backend errors wrapped
        inner = _find_cause(e, (_Recorded, CaptureError))
        if isinstance(inner, CaptureError):
            raise inner from None
        if not isinstance(inner, _Recorded):
            if isinstance(e, KeyboardInterrupt):
                raise
            raise CaptureError(f"could not trace the model's training step: {_one_line(e)}") from e
    finally:
        torch._dynamo.reset()  # drop the half-compiled frame so a later capture starts clean
    if "joint" not in record:
        raise CaptureError("the model's training step produced no joint graph")
    cap = lower(record["joint"], record["num_fwd_outputs"], profile=prof, timed=profile,
                name=name or type(model).__name__, input_names=record.get("input_names", []),
                profile_runs=profile_runs, rng=rng, lowerings=lowerings, compiler=compiler,
                approx_ratios=approx_ratios)
    cap.flat_inputs = record.get("flat_inputs", [])
    cap.planned_only = planned_only
    return cap


def _find_cause(e: BaseException, kinds):
    seen = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, kinds):
            return x
        stack += [getattr(x, "inner_exception", None), x.__cause__, x.__context__]
    return None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = next((line.strip() for line in text if line.strip()), "")
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# --------------------------------------------------------------------------- lowering
def _schema(node: torch.fx.Node):
    return getattr(node.target, "_schema", None)


def is_view(node: torch.fx.Node) -> bool:
    """The node's result aliases (part of) an input: a view, ``detach``, or an in-place op."""
    if node.op != "call_function" or node.target is _getitem:
        return False
    schema = _schema(node)
    if schema is None:
        return False
    if schema.name.split("::")[-1] in _EXTRA_VIEWS:
        return True
    return any(r.alias_info is not None for r in schema.returns)


def is_random(node: torch.fx.Node) -> bool:
    """Draws random numbers: tagged ``nondeterministic_seeded``, except attention with dropout_p = 0."""
    if torch.Tag.nondeterministic_seeded not in getattr(node.target, "tags", ()):
        return False
    schema = _schema(node)
    names = [a.name for a in schema.arguments] if schema is not None else []
    if "dropout_p" in names:  # scaled-dot-product attention: random only with dropout
        k = names.index("dropout_p")
        p = node.kwargs.get("dropout_p", node.args[k] if k < len(node.args) else schema.arguments[k].default_value)
        return bool(p)
    return True


def is_mutating(node: torch.fx.Node) -> bool:
    schema = _schema(node)
    return bool(schema is not None and schema.is_mutable)


def is_collective(node: torch.fx.Node) -> bool:
    ns = getattr(node.target, "namespace", None)
    return ns in _COLLECTIVE_NAMESPACES


from operator import getitem as _getitem  # noqa: E402


def _op_name(node: torch.fx.Node) -> str:
    """``mm``, ``sum.dim_IntList``...; a replayed random op is named as the op it runs."""
    if node.op != "call_function":
        return node.op
    if node.target is _getitem:
        return "getitem"
    target = rng_ops.original_op(node.target) or node.target
    schema = getattr(target, "_schema", None)
    if schema is None:
        return str(getattr(target, "__name__", target))
    overload = getattr(target, "_overloadname", "default")
    return schema.name.split("::")[-1] + ("" if overload == "default" else f".{overload}")


_L_PREFIX = re.compile(r"^L\['[^']*'\]")
_ITEM = re.compile(r"\._modules\['([^']*)'\]|\['([^']*)'\]|\[(\d+)\]")


def clean_module_path(raw: str, wrapper_attr: str = "model") -> str:
    """``L['self']._modules['model'].layers[3]._modules['attn']`` → ``layers.3.attn``."""
    s = _L_PREFIX.sub("", raw)
    s = _ITEM.sub(lambda m: "." + (m.group(1) or m.group(2) or m.group(3)), s).lstrip(".")
    parts = [p for p in s.split(".") if p]
    if parts and parts[0] == wrapper_attr:
        parts = parts[1:]
    return ".".join(parts)


def module_path(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or node.meta.get("fwd_nn_module_stack") or {}
    if not stack:
        return ""
    raw = list(stack.values())[-1]
    raw = raw[0] if isinstance(raw, tuple) else raw
    return clean_module_path(str(raw))


def is_tangent(node: torch.fx.Node) -> bool:
    """A tangent placeholder of the joint graph (the gradient of a forward output)."""
    return node.op == "placeholder" and node.name.startswith("tangents")


def depends_on_tangents(nodes: list[torch.fx.Node]) -> list[bool]:
    """Per node: it is computed from a tangent, so it can only run in the backward graph
    (placeholders, tangents included, are False: they are never computed)."""
    marked: set[torch.fx.Node] = set()
    for x in nodes:
        if is_tangent(x) or (x.op != "placeholder" and any(a in marked for a in x.all_input_nodes)):
            marked.add(x)
    return [x in marked and x.op != "placeholder" for x in nodes]


def ordered_nodes(joint: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """The joint graph's nodes (output excluded) in the order CostGraph ids follow.

    The fx order, except that the forward's mutations which AOTAutograd puts after the
    backward (BatchNorm's running-stat ``copy_``), with whatever they need that comes that
    late, move right before the first node that reads a tangent: they must run in the
    forward graph, and the schedule has to say so. Still a topological order. The runtime
    maps a schedule's ids back to fx nodes through this same function.
    """
    nodes = [n for n in joint.graph.nodes if n.op != "output"]
    tangent = depends_on_tangents(nodes)
    reads = {n for n, t in zip(nodes, tangent) if t}
    first = next((i for i, t in enumerate(tangent) if t), len(nodes))
    tail = set(nodes[first:])
    early: set[torch.fx.Node] = set()
    stack = [n for n in nodes[first:] if n not in reads and is_mutating(n)]
    while stack:
        n = stack.pop()
        if n in tail and n not in early:
            early.add(n)
            stack.extend(n.all_input_nodes)
    return nodes[:first] + [n for n in nodes[first:] if n in early] + [n for n in nodes[first:] if n not in early]


def lower(joint: torch.fx.GraphModule, num_fwd_outputs: int, *, profile: costs.DeviceProfile | str = "cpu",
          timed: bool = False, name: str = "graph", input_names=(), profile_runs: int = 5,
          rng: str = rng_ops.DEFAULT_RNG, lowerings: bool = True, compiler: str = "eager",
          approx_ratios=()) -> Captured:
    """Turn a joint fx graph (as a ``partition_fn`` receives it) into a :class:`Captured`.

    With ``lowerings`` every instance the registry (:mod:`recompiler.lowerings`) finds becomes a
    variant group of the graph.

    Under ``rng="replay"`` the random ops of ``joint`` are first rewritten in place
    (:func:`.rng.make_replayable`), so the graph the runtime later partitions is the one planned.
    """
    prof = costs.get_profile(profile)
    check_compiler(compiler)
    if rng_ops.check_rng_mode(rng) == "replay":
        rng_ops.make_replayable(joint)
    nodes = ordered_nodes(joint)
    (out_node,) = joint.graph.find_nodes(op="output")
    ids = {n: i for i, n in enumerate(nodes)}
    n = len(nodes)
    kinds: list[str] = []
    root: list[int] = list(range(n))       # the non-view node whose storage node i aliases
    memory = np.zeros(n, dtype=np.int64)
    compute = np.zeros(n, dtype=np.float64)
    flops = np.zeros(n, dtype=np.int64)
    is_input = np.zeros(n, dtype=bool)
    pinned = np.zeros(n, dtype=bool)
    deps: list[list[int]] = []

    placeholders = [x for x in nodes if x.op == "placeholder"]
    input_map = {p.name: src for p, src in zip((p for p in placeholders if p.name.startswith("primals")),
                                               input_names)}

    for i, node in enumerate(nodes):
        direct = [ids[a] for a in node.all_input_nodes]
        if node.op in ("placeholder", "get_attr"):
            kinds.append("input")
            is_input[i] = True
            memory[i] = costs.tensor_bytes(node.meta.get("val"))
            deps.append([])
            continue
        # consumers of a view also depend on the view's root (DESIGN.md)
        ds = list(dict.fromkeys(direct + [root[d] for d in direct]))
        deps.append(sorted(ds))
        if node.target is _getitem:
            kinds.append("getitem")
            producer = ids[node.args[0]]
            # An element of a pinned op (dropout's output and mask) is taken once: taking it
            # again would only keep the whole tuple alive, as the producer cannot rerun.
            pinned[i] = pinned[producer]
            if kinds[producer] == "view":        # an element of split/unbind: a view as well
                root[i] = root[producer]
                kinds[-1] = "view"
            else:
                memory[i] = costs.tensor_bytes(node.meta.get("val"))
            continue
        if is_view(node):
            kinds.append("view")
            base = node.all_input_nodes[0] if node.all_input_nodes else None
            if base is not None:
                root[i] = root[ids[base]]
        else:
            kinds.append("op")
            # an op's own temporaries live while it runs: a tuple result lives only until its
            # elements are taken, so they ride on it (a single tensor result keeps them longer)
            memory[i] = _output_bytes(node) + costs.workspace_bytes(node)
            flops[i] = costs.node_flops(node)
            seconds = None
            if timed:
                with torch.random.fork_rng(devices=[]):  # timing random ops must not move the user's RNG
                    seconds = costs.profile_node(node, runs=profile_runs)
            compute[i] = seconds if seconds is not None else costs.estimate_seconds(node, prof, int(flops[i]))
            if seconds is None and rng_ops.original_op(node.target) is not None:
                compute[i] += prof.launch_overhead  # seeding and restoring the generators around the op
        random = is_random(node) and not (rng == "replay" and rng_ops.seeded_by_inputs(node))
        if is_mutating(node) or random or is_collective(node):
            pinned[i] = True

    is_output = np.zeros(n, dtype=bool)
    for a in torch.fx.node.map_aggregate(out_node.args[0], lambda x: x) or ():
        if isinstance(a, torch.fx.Node):
            for j in {ids[a], root[ids[a]]}:
                if not is_input[j]:
                    is_output[j] = True

    # A tangent exists only once the forward has produced its outputs, so every direct consumer
    # of a tangent depends on the forward outputs, and on the forward's mutations (BatchNorm's
    # running-stat copy_, which AOTAutograd must run in the forward graph): no schedule can start
    # the backward early. Exact for memory: forward outputs live to the end anyway, and a
    # mutation's result is a zero-byte alias of an input.
    leaves = [a for a in torch.utils._pytree.tree_leaves(out_node.args[0]) if isinstance(a, torch.fx.Node)]
    fwd_outputs = {j for a in leaves[:num_fwd_outputs] for j in (ids[a], root[ids[a]]) if not is_input[j]}
    reads_tangent = depends_on_tangents(nodes)
    fwd_outputs |= {i for i, node in enumerate(nodes) if is_mutating(node) and not reads_tangent[i]}
    for i, node in enumerate(nodes):
        if any(is_tangent(a) for a in node.all_input_nodes):
            # ordered_nodes puts all of these before any tangent reader, so j < i holds
            deps[i] = sorted(set(deps[i]) | fwd_outputs)

    is_backward = _backward_nodes(nodes, ids)
    inlined = [False] * n
    unfused_deps = None
    if compiler == "inductor":
        from . import fusion

        inlined = fusion.inlined_nodes(nodes, kinds, is_backward, set(np.flatnonzero(is_output).tolist()))
        unfused_deps, deps = deps, fusion.deferred_deps(deps, inlined)
        for i, node in enumerate(nodes):
            if kinds[i] == "op":
                if inlined[i]:
                    memory[i] = costs.workspace_bytes(node)
                if not timed and (fusion.is_pointwise(node) or fusion.is_reduction(node)):
                    compute[i] = fusion.fused_seconds(node, inlined[i], [inlined[ids[a]] for a in node.all_input_nodes],
                                                      prof, int(flops[i]))
    graph = CostGraph(names=[x.name for x in nodes], deps=deps, compute=compute, memory=memory,
                      is_backward=is_backward, is_input=is_input, pinned=pinned, is_output=is_output,
                      name=name)
    cap = Captured(graph=graph, joint=joint, num_fwd_outputs=num_fwd_outputs, fx_nodes=nodes,
                   node_ids={x.name: i for i, x in enumerate(nodes)},
                   module_paths=[module_path(x) for x in nodes], ops=[_op_name(x) for x in nodes],
                   flops=flops, kinds=kinds, input_names=input_map, device_profile=prof.name, profiled=timed,
                   rng=rng, random_ops=rng_ops.random_nodes(nodes), compiler=compiler, inlined=inlined,
                   unfused_deps=unfused_deps)
    if lowerings:
        from .. import lowerings as registry

        cap.approx_ratios = check_approx_ratios(approx_ratios)
        cap.lowerings = registry.find_instances(cap, prof)
        if cap.lowerings:
            cap.graph = registry.attach(graph, cap, cap.lowerings)
    if compiler == "inductor":
        import warnings

        from .fusion import charge, saved_inlined
        from .torch_knapsack import TorchPartitionError, reference_schedule

        # the percentages of a budget are of what inductor's own partition of this graph uses
        try:
            cap.graph.reference = reference_schedule(cap)
            charge(cap, saved_inlined(cap, cap.graph.reference))  # what it saves is a buffer
        except TorchPartitionError as e:
            warnings.warn(f"recompiler: {e}; budgets of {name} are percentages of store-all instead", stacklevel=2)
    return cap


COMPILERS = ("inductor", "eager")


def check_approx_ratios(ratios) -> tuple:
    """``ratios`` as a tuple of floats in (0, 1], else a one-line :class:`SolverOptionError`."""
    from ..errors import SolverOptionError

    if isinstance(ratios, (int, float)) and not isinstance(ratios, bool):
        ratios = (ratios,)
    try:
        out = tuple(float(r) for r in ratios or ())
    except (TypeError, ValueError):
        raise SolverOptionError(f"approximation ratios are numbers in (0, 1], not {ratios!r}") from None
    bad = [r for r in out if not 0 < r <= 1]
    if bad:
        raise SolverOptionError(f"an approximation ratio is a share of the rows kept, in (0, 1], not {bad[0]:g}")
    return tuple(dict.fromkeys(out))


def check_compiler(value) -> str:
    """``value`` if it names a compiler the planned graphs can be compiled with, else a one-line error."""
    if value not in COMPILERS:
        raise CaptureError(f"unknown compiler {value!r}: use inductor (fused kernels) or eager (fx graphs run "
                           "node by node)")
    return value


def compile_inductor(gm, example_inputs):
    """Inductor's ``compile_fx`` with its caches off, so the partitioner runs on every compile.

    Each graph inductor compiles (the forward now, the backward when it first runs) is compiled
    under :func:`_plan_fusion_choices` and without the FX-graph cache: the backward is compiled
    lazily, outside this call, where a cache would serve code made for another plan.
    """
    import torch._functorch.config as fconfig
    import torch._inductor.config as iconfig
    from torch._inductor.compile_fx import compile_fx

    with iconfig.patch(fx_graph_cache=False), fconfig.patch(enable_autograd_cache=False):
        return compile_fx(gm, example_inputs, inner_compile=_compile_planned, decompositions=_decompositions())


#: Ops inductor would decompose that the lowering registry matches whole (attention's softmax and
#: dropout, the loss's log-softmax and NLL): kept in the joint graph, run as aten kernels where no
#: lowering rewrites them (and dropout replayable as in eager, DESIGN.md "random ops").
KEPT_WHOLE = ("_softmax", "_safe_softmax", "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data",
              "nll_loss_forward", "nll_loss_backward", "native_dropout", "native_dropout_backward")


def _decompositions() -> dict:
    from torch._inductor.decomposition import select_decomp_table

    _register_kept_whole_fallbacks()
    kept = {getattr(torch.ops.aten, name).default for name in KEPT_WHOLE}
    return {op: fn for op, fn in select_decomp_table().items() if op not in kept}


def _register_kept_whole_fallbacks() -> None:
    """Give every op of :data:`KEPT_WHOLE` that inductor has no lowering for an aten-kernel fallback.

    Inductor would create these fallbacks itself, on first sight, but where the environment sets
    ``CI`` (GitHub Actions and most CI systems do) its implicit fallback for an op that has a
    decomposition is an error meant for PyTorch's own CI ("a decomposition exists, we should
    switch to it"). Registered here with ``override_decomp``, as inductor's own allow-list does,
    and with the layout rule inductor's implicit fallback picks: contiguous inputs for backward
    kernels, the op's default tag otherwise. Ops decomposed as usual never reach these lowerings.
    """
    from torch._inductor import lowering

    for name in KEPT_WHOLE:
        op = getattr(torch.ops.aten, name).default
        if op in lowering.lowerings:
            continue
        if name.endswith("backward") or name.endswith("backward_data"):
            constraint = lowering.require_contiguous
        else:
            constraint = lowering.tag_to_layout_constraint(lowering.get_layout_constraint_tag(op, with_default=True))
        lowering.make_fallback(op, layout_constraint=constraint, warn=False, override_decomp=True)


def _compile_planned(*args, **kwargs):
    import torch._inductor.config as iconfig
    from torch._inductor.compile_fx import compile_fx_inner
    from torch._inductor.virtualized import V

    with iconfig.patch(fx_graph_cache=False), V.set_choices_handler(_plan_fusion_choices()):
        return compile_fx_inner(*args, **kwargs)


def _plan_fusion_choices():
    """Inductor's fusion heuristics, restricted so that the compiled code keeps the plan's order.

    A plan decides *when* each value exists; a fusion runs its two kernels as one, at the
    earlier one's place, so it moves the later kernel (and the inputs it needs) up. Two rules
    keep that from undoing the plan:

    * no fusion across an extern kernel (a matmul, a custom op): those are the plan's
      allocations between which a value's lifetime is decided;
    * no horizontal fusion (kernels that only share inputs) with a recomputation: two
      recomputations of a value from the same kept input, at different steps, would become one
      kernel writing both copies at the earlier step (measured: 7 copies of a GELU at once).
    """
    import bisect

    from torch._inductor.choices import InductorChoices
    from torch._inductor.scheduler import ExternKernelSchedulerNode

    extern_orders: dict[int, list[int]] = {}

    def crosses_extern(scheduler, node1, node2) -> bool:
        key = id(scheduler)
        if key not in extern_orders:  # externs never fuse, so their places stay as first seen
            extern_orders.clear()
            extern_orders[key] = sorted(x.min_order for x in scheduler.nodes
                                        if isinstance(x, ExternKernelSchedulerNode))
        first, second = sorted((node1, node2), key=lambda x: x.min_order)
        lo, hi = first.max_order, second.min_order
        orders = extern_orders[key]
        k = bisect.bisect_right(orders, lo)
        return lo < hi and k < len(orders) and orders[k] < hi

    class PlanFusionChoices(InductorChoices):
        @staticmethod
        def can_fuse(scheduler, node1, node2, shared_data_score):
            if crosses_extern(scheduler, node1, node2):
                return False
            return InductorChoices.can_fuse(scheduler, node1, node2, shared_data_score)

        @staticmethod
        def can_fuse_horizontal(scheduler, node1, node2, shared_data_score):
            if _runs_recomputation(node1) or _runs_recomputation(node2):
                return False
            return InductorChoices.can_fuse_horizontal(scheduler, node1, node2, shared_data_score)

    return PlanFusionChoices()


def _runs_recomputation(scheduler_node) -> bool:
    """Does this (possibly fused) inductor scheduler node run a plan's recomputation?"""
    for snode in scheduler_node.get_nodes():
        for origin in getattr(snode.node, "origins", None) or ():
            if origin.meta.get("recompiler_recompute"):
                return True
    return False


def inductor_partitioner(fn):
    """``torch._inductor.config.patch(custom_partitioner_fn=...)`` calling ``fn(joint, inputs, num_fwd_outputs=)``.

    Inductor calls it on the joint graph after its own joint-graph passes; ``uuid()`` is None, so
    inductor never serves a cached partition made for another plan.
    """
    import torch._inductor.config as iconfig
    from torch._inductor.custom_graph_pass import CustomPartitionerFn

    class RecompilerPartitioner(CustomPartitionerFn):
        def __call__(self, gm, joint_inputs, **kwargs):
            return fn(gm, joint_inputs, **kwargs)

        def uuid(self):
            return None

    return iconfig.patch(custom_partitioner_fn=RecompilerPartitioner())


def reachable_floor(graph: CostGraph, variant=None) -> int:
    """The smallest peak any schedule can reach (:meth:`CostGraph.floor`)."""
    return graph.floor(variant)


def _output_bytes(node: torch.fx.Node) -> int:
    """Bytes a node allocates: for a tuple, only the elements some ``getitem`` takes."""
    val = node.meta.get("val")
    if isinstance(val, (tuple, list)):
        users = list(node.users)
        if users and all(u.target is _getitem for u in users):
            used = {u.args[1] for u in users}
            return sum(costs.tensor_bytes(v) for k, v in enumerate(val) if k in used)
    return costs.tensor_bytes(val)


def _backward_nodes(nodes, ids) -> np.ndarray:
    """The partitioner's own tag where present, else: everything reachable from a tangent."""
    out = np.zeros(len(nodes), dtype=bool)
    tags = [x.meta.get("partitioner_tag") for x in nodes]
    if any(t in ("is_forward", "is_backward", "must_be_in_forward") for t in tags):
        for i, t in enumerate(tags):
            out[i] = t == "is_backward" and nodes[i].op != "placeholder"
        return out
    for i, x in enumerate(nodes):
        if x.op == "placeholder":
            continue
        out[i] = any((a.op == "placeholder" and a.name.startswith("tangents")) or out[ids[a]]
                     for a in x.all_input_nodes)
    return out
