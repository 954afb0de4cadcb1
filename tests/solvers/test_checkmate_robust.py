"""checkmate-lp / checkmate-milp on the cases issue 20 found: pinned repairs, huge sizes, variant groups."""

import time

import numpy as np
import pytest

from recompiler.errors import InfeasibleBudget
from recompiler.graph import CostGraph
from recompiler.simulate import simulate
from recompiler.solvers import solve
from recompiler.solvers.checkmate_model import Formulation


def test_cheapest_r_repairs_pinned_nodes_to_a_fixpoint():
    # Holding pinned node 1 for its readers changes which inputs are held lazily, which then
    # makes pinned node 0 recompute: two repair passes left [0, 1, 0, 2, 0, 3, 4, 0, 1, 2, 5].
    g = CostGraph(names=[f"v{i}" for i in range(6)], deps=[[], [0], [0, 1], [0, 2], [1, 3], [4]],
                  compute=[1.0] * 6, memory=[1] * 6, pinned=[False, True, False, True, True, False],
                  is_output=[False, False, True, False, False, True])
    S = np.array([[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0],
                  [0, 1, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0], [0, 0, 0, 0, 1, 0]], dtype=bool)
    form = Formulation(g, 100)
    for lazy in (False, True):
        R = form.cheapest_r(S, lazy=lazy)
        r = simulate(g, form.schedule_from_r(R))
        assert r.valid, (lazy, r.reason)
        assert (R.sum(axis=0)[g.pinned] == 1).all()


def test_cheapest_r_never_recomputes_a_pinned_node_on_random_roundings():
    rng = np.random.default_rng(1)
    for _ in range(3000):
        n = int(rng.integers(4, 8))
        deps = [[]] + [sorted(set(rng.choice(i, size=rng.integers(1, min(i, 3) + 1), replace=False).tolist()))
                       for i in range(1, n)]
        pinned = rng.random(n) < 0.3
        out = rng.random(n) < 0.2
        out[-1] = True
        g = CostGraph(names=[f"v{i}" for i in range(n)], deps=deps, compute=[1.0] * n, memory=[1] * n,
                      pinned=pinned, is_output=out)
        form = Formulation(g, 100)
        S = np.tril(rng.random((n + 1, n)) < rng.random(), -1)
        for lazy in (False, True):
            R = form.cheapest_r(S, lazy=lazy)
            assert (R.sum(axis=0)[pinned] == 1).all()
