"""What the lowering matchers share: walking a joint graph and giving up cleanly.

A matcher walks out from an anchor node (a softmax, an ``nll_loss_forward``), collects the
group's ``members`` and calls :meth:`Matcher.expect` on everything it relies on; the first
surprise raises :class:`NoMatch` and :meth:`Matcher.run` returns None — the graph keeps its own
lowering, never an approximate rewrite.

>>> number(0.125), number(True)
(True, False)
"""

from __future__ import annotations

import torch
import torch.fx as fx

#: Ops autograd puts on activations it saves for the backward: views, not new tensors.
ALIASES = ("detach", "alias")


class NoMatch(Exception):
    """The walk met something the lowering does not reproduce exactly."""


def shape(node) -> tuple:
    """The shape of ``node``'s fake tensor value (``()`` for anything else)."""
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    return tuple(val.shape) if isinstance(val, torch.Tensor) else ()


def number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def op_name(captured, node) -> str:
    """The capture's op name of ``node`` (``"bmm"``, ``"mul.Tensor"``...); ``""`` for non-nodes."""
    i = captured.node_ids.get(node.name) if isinstance(node, fx.Node) else None
    return captured.ops[i] if i is not None else ""


def through_aliases(captured, node) -> tuple[list, list]:
    """``(aliases, readers)``: the detach/alias views on ``node``, transitively, and the nodes that
    read ``node`` or one of those views (the views themselves excluded)."""
    aliases, readers, stack = [], [], list(node.users)
    while stack:
        u = stack.pop()
        if op_name(captured, u) in ALIASES:
            aliases.append(u)
            stack.extend(u.users)
        else:
            readers.append(u)
    return aliases, readers


class Matcher:
    """Base of a lowering's matcher: ``members`` collected so far, and the checks every walk uses.

    A subclass implements ``_run(anchor) -> dict`` (raising :class:`NoMatch`); :meth:`run`
    turns any mismatch — also an unpacking or lookup that finds another graph shape — into None.
    """

    def __init__(self, captured):
        self.cap = captured
        self.members: set = set()

    def op(self, node) -> str:
        return op_name(self.cap, node)

    def backward(self, node) -> bool:
        return bool(self.cap.graph.is_backward[self.cap.node_ids[node.name]])

    def expect(self, cond) -> None:
        if not cond:
            raise NoMatch

    def is_t(self, node) -> bool:
        """``node`` transposes a matrix: ``t``, or the ``permute(x, [1, 0])`` inductor's joint-graph
        passes write for it."""
        name = self.op(node)
        return name == "t" or (name == "permute" and [int(d) for d in node.args[1]] in ([1, 0], [-1, -2]))

    def aliases(self, node) -> list:
        """``node``'s detach/alias views, transitively, taken into the group."""
        aliases, _ = through_aliases(self.cap, node)
        self.members.update(aliases)
        return aliases

    def run(self, anchor):
        try:
            return self._run(anchor)
        except (NoMatch, IndexError, KeyError, TypeError, ValueError):
            return None

    def _run(self, anchor) -> dict:
        raise NotImplementedError
