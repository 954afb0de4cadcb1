"""Replayable random ops: every random op of a joint graph becomes a pure function of a seed.

Under ``rng="replay"`` (the default) :func:`make_replayable` rewrites the joint graph a
``partition_fn`` receives: before each random op (dropout, ``bernoulli``, ``rand*``,
``randperm``, attention with dropout, anything tagged ``nondeterministic_seeded``) it
inserts one ``recompiler::draw_seed`` node, and the op becomes ``recompiler::replay_<op>``:
the same op, same arguments, run with the device generators seeded from that seed and
restored afterwards. So

* the forward draws one 63-bit seed per random op from the user's default (CPU) generator,
  in program order — ``torch.manual_seed(s)`` before a step fixes every mask of the step;
* running a replayed op again with the same seed gives bit-identical values (the op's own
  random stream depends only on the seed, its shapes and its parameters), so the solver may
  recompute it: only the 8-byte seed has to be kept. ``draw_seed`` is the pinned node.

The rewrite changes the random numbers, not their distribution: a replayed step's masks are
not those of an eager step (that is ``rng="pin"``: no rewrite, random ops computed once, the
eager RNG stream). What it guarantees is that every plan of the rewritten graph — any
budget, any solver, with or without recomputation — computes the same numbers.

Mutating random ops (``bernoulli_``, ``rrelu_with_noise``) and ops handed an explicit
``torch.Generator`` are left as they are, pinned. Seeding swaps the state of the process's
default generators for the op's duration, so random ops must not run concurrently in other
threads of the same process (as with ``torch.random.fork_rng``).

Example
-------
>>> import torch
>>> x = torch.ones(4, 4)
>>> seed = torch.ops.recompiler.draw_seed()
>>> dropout = replayed_op(torch.ops.aten.native_dropout.default)
>>> a, b = dropout(seed, x, 0.5, True), dropout(seed, x, 0.5, True)
>>> torch.equal(a[1], b[1])
True
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.fx as fx

from ..errors import SolverOptionError

RNG_MODES = ("replay", "pin")
DEFAULT_RNG = "replay"

_LIB = torch.library.Library("recompiler", "FRAGMENT")  # noqa: TOR901 - ops defined once per process
_LIB.define("draw_seed() -> Tensor", tags=(torch.Tag.nondeterministic_seeded,))
_SEED_MASK = (1 << 63) - 1


def check_rng_mode(value) -> str:
    """``value`` if it names an RNG mode, else a one-line :class:`SolverOptionError`."""
    if value not in RNG_MODES:
        raise SolverOptionError(f"rng must be one of {', '.join(map(repr, RNG_MODES))}, not {value!r}")
    return value


def _draw_seed() -> torch.Tensor:
    # One draw from the default CPU generator: the only place replay mode advances the user's RNG.
    return torch.empty((), dtype=torch.int64).random_()


def _draw_seed_fake() -> torch.Tensor:
    return torch.empty((), dtype=torch.int64)


_LIB.impl("draw_seed", _draw_seed, "CompositeExplicitAutograd")
torch.library.register_fake("recompiler::draw_seed", _draw_seed_fake, lib=_LIB)
DRAW_SEED = torch.ops.recompiler.draw_seed.default


# --------------------------------------------------------------------------- seeding
def _devices(args, kwargs) -> set[torch.device]:
    found = {torch.device("cpu"), torch.get_default_device()}
    for a in torch.utils._pytree.tree_leaves((args, kwargs)):
        if isinstance(a, torch.Tensor):
            found.add(a.device)
        elif isinstance(a, torch.device):
            found.add(a)
    return found


def _generator(device: torch.device) -> torch.Generator | None:
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device() if device.index is None else device.index
        return torch.cuda.default_generators[index]
    return None  # meta / fake devices draw nothing


@contextlib.contextmanager
def seeded(seed: int, devices):
    """Run the body with the default generator of each device seeded by ``seed``; restore them after."""
    gens = [g for g in dict.fromkeys(_generator(d) for d in devices) if g is not None]
    states = [g.get_state() for g in gens]
    try:
        for g in gens:
            g.manual_seed(seed & _SEED_MASK)
        yield
    finally:
        for g, s in zip(gens, states):
            g.set_state(s)


# --------------------------------------------------------------------------- replayed ops
_REPLAYED: dict = {}


def _replay_name(op: torch._ops.OpOverload) -> str:
    ns, name = op._schema.name.split("::")
    overload = "" if op._overloadname == "default" else f"_{op._overloadname}"
    return f"replay_{ns}_{name}{overload}"


def replayed_op(op: torch._ops.OpOverload) -> torch._ops.OpOverload:
    """``recompiler::replay_<op>``: ``op`` with a leading ``Tensor rng_seed`` argument, defined on first use.

    ``replayed_op(op)(seed, *args, **kwargs)`` runs ``op(*args, **kwargs)`` seeded by ``seed``.
    """
    if op in _REPLAYED:
        return _REPLAYED[op]
    text = str(op._schema)
    head, returns = text.split(" -> ", 1)
    params = head[head.index("(") + 1:-1]
    name = _replay_name(op)
    _LIB.define(f"{name}(Tensor rng_seed{', ' + params if params else ''}) -> {returns}")

    def run(rng_seed, *args, **kwargs):
        seed = int(rng_seed)
        with seeded(seed, _devices(args, kwargs)):
            out = _no_alias(op(*args, **kwargs), args)
        if _RECORDS is not None:
            _RECORDS.append(Replay(name, seed, [t.clone() for t in torch.utils._pytree.tree_leaves(out)
                                                if isinstance(t, torch.Tensor)]))
        return out

    def fake(rng_seed, *args, **kwargs):
        return _no_alias(op(*args, **kwargs), args)

    _LIB.impl(name, run, "CompositeExplicitAutograd")
    torch.library.register_fake(f"recompiler::{name}", fake, lib=_LIB)
    replay = getattr(torch.ops.recompiler, name).default
    _REPLAYED[op] = replay
    _ORIGINAL[replay] = op
    return replay


_ORIGINAL: dict = {}
_RECORDS: list | None = None


@dataclass
class Replay:
    """One run of a replayed op, as :func:`recording` sees it."""

    op: str
    seed: int
    outputs: list


@contextlib.contextmanager
def recording():
    """Collect every run of a replayed op in the body (a copy of its outputs): for checks and debugging.

    >>> with recording() as runs:
    ...     _ = replayed_op(torch.ops.aten.rand_like.default)(torch.tensor(1), torch.empty(2))
    >>> runs[0].op, runs[0].seed
    ('replay_aten_rand_like', 1)
    """
    global _RECORDS
    outer, _RECORDS = _RECORDS, []
    try:
        yield _RECORDS
    finally:
        _RECORDS = outer


def original_op(target):
    """The random op a ``replay_*`` op runs; None for any other target."""
    return _ORIGINAL.get(target)


def _no_alias(out, args):
    # A custom op may not return one of its inputs (native_dropout with train=False does).
    inputs = {id(a) for a in torch.utils._pytree.tree_leaves(args) if isinstance(a, torch.Tensor)}
    return torch.utils._pytree.tree_map(
        lambda t: t.clone() if isinstance(t, torch.Tensor) and id(t) in inputs else t, out)


# --------------------------------------------------------------------------- the rewrite
def seeded_by_inputs(node: fx.Node) -> bool:
    """An op tagged random that takes its RNG state as inputs (CUDA attention backwards' philox seed and
    offset): a pure function of its arguments, so under replay it is neither rewritten nor pinned."""
    schema = getattr(node.target, "_schema", None)
    return schema is not None and any(a.name == "philox_seed" for a in schema.arguments)


def _inductor_seeds():
    try:
        import torch._inductor.inductor_prims  # noqa: F401 - defines prims.inductor_seeds

        return torch.ops.prims.inductor_seeds.default
    except (ImportError, AttributeError):
        return None


_INDUCTOR_SEEDS = _inductor_seeds()
_INDUCTOR_RANDOM = torch.ops.prims.inductor_random.default if _INDUCTOR_SEEDS is not None else None


def replayable(node: fx.Node) -> bool:
    """A random op the rewrite can replay: functional (no mutation, no alias) and not handed a Generator."""
    from .capture import is_random

    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    if node.target is DRAW_SEED or node.target in _ORIGINAL or not is_random(node) or seeded_by_inputs(node):
        return False
    if _INDUCTOR_SEEDS is not None and node.target is _INDUCTOR_SEEDS:
        # inductor's one draw of every seed of the step: pinned, it is what our draw_seed is; the
        # inductor_random ops it feeds are pure functions of their seed, recomputable as they are
        return False
    schema = node.target._schema
    if schema.is_mutable or any(r.alias_info is not None for r in schema.returns):
        return False
    leaves = torch.utils._pytree.tree_leaves((node.args, node.kwargs))
    return not any(isinstance(a, torch.Generator) for a in leaves)


def make_replayable(joint: fx.GraphModule) -> int:
    """Rewrite every replayable random op of ``joint`` in place; returns how many were rewritten.

    Idempotent: an already rewritten graph is left as it is. Node names are kept (the replayed
    op keeps its name and fake value), so plan tables still say ``native_dropout``.
    """
    count = 0
    for node in list(joint.graph.nodes):
        if not replayable(node):
            continue
        with joint.graph.inserting_before(node):
            seed = joint.graph.create_node("call_function", DRAW_SEED, (), {}, name=f"{node.name}_seed")
        seed.meta.update({k: node.meta[k] for k in ("nn_module_stack", "stack_trace", "partitioner_tag",
                                                    "fwd_nn_module_stack", "seq_nr") if k in node.meta})
        seed.meta["val"] = _seed_value(node)
        node.target = replayed_op(node.target)
        node.args = (seed, *node.args)
        count += 1
    if count:
        joint.graph.lint()
        joint.recompile()
    return count


def _seed_value(node: fx.Node):
    """A fake 0-dim int64 tensor in the graph's fake mode (for the cost model and the partitioner)."""
    vals = [v for v in torch.utils._pytree.tree_leaves(node.meta.get("val")) if isinstance(v, torch.Tensor)]
    mode = getattr(vals[0], "fake_mode", None) if vals else None
    if mode is not None:
        with mode:
            return torch.empty((), dtype=torch.int64)
    return torch.empty((), dtype=torch.int64, device="meta")


def random_nodes(nodes) -> list[int]:
    """Positions of the replayed random ops among ``nodes`` (fx nodes), inductor's seeded
    ``inductor_random`` included (a pure function of its seed, replayed the same way)."""
    return [i for i, n in enumerate(nodes)
            if n.op == "call_function" and (n.target in _ORIGINAL or n.target is _INDUCTOR_RANDOM)]
