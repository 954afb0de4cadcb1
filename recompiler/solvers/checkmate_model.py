"""The Checkmate formulation (Jain et al., MLSys 2020) on a CostGraph, shared by
``checkmate-milp`` and ``checkmate-lp``; read to understand parasj/checkmate, written anew.

Stages and variables
--------------------
The scheduled (non-input) nodes, renumbered 0..m-1 in the graph's own topological
order, give m stages. Stage t computes the nodes i ≤ t with ``R[t,i] = 1`` in index
order and ends with its *frontier* node t (``R[t,t] = 1``). ``S[t,i]`` (i < t) says
that a value of i computed before stage t is still held when stage t starts; a
virtual row ``S[m,i]`` is fixed to ``is_output[i]`` (outputs are held to the end).
``FREE[t,i,k]`` says the value of i is dropped right after step k of stage t (k is i
itself or a user of i); ``U[t,k]`` is the memory in bytes at step k of stage t.
Inputs are never scheduled: they and ``fixed_memory`` are a constant subtracted
from the budget. Variant groups are not explored: the formulation uses option 0.

Constraints: ``S[t+1,i] ≤ S[t,i] + R[t,i]``; ``R[t,j] ≤ R[t,u] + S[t,u]`` for each
dependency u of j; pinned nodes are computed only in their own stage
(``R[t,i] = 0`` for t ≠ i, so Σ_t R[t,i] = 1); ``FREE[t,i,k] ≤ R[t,k]``,
``FREE[t,i,k] ≤ 1 − S[t+1,i]`` and ``FREE[t,i,k] ≤ 1 − R[t,j]`` for each user j of i
with k < j ≤ t; ``U[t,0] = Σ_i M_i S[t,i] + M_0 R[t,0]``,
``U[t,k] = U[t,k−1] − Σ_i M_i FREE[t,i,k−1] + M_k R[t,k]`` and ``0 ≤ U[t,k] ≤ budget −
inputs − fixed_memory``. Objective: Σ cost_i R[t,i].

How the memory model matches ``simulate``
-----------------------------------------
:func:`schedule_from_r` turns R into our schedule (the stages concatenated).
Under our liveness a value is live from its computation to its last use before its
next computation, outputs to the end; in stage terms that is exactly "held at step
k of stage t" when FREE is the product ``R[t,k]·(1−S[t+1,i])·Π_j (1−R[t,j])`` and
S marks the stages a value is carried into. Checkmate forces FREE to equal that
product; we only bound it from above (the three ``≤`` rows): keeping a value
longer than needed is then a choice the model may make (it can only cost memory),
never a constraint. So for every R/S/FREE the model's U is ≥ the bytes ``simulate``
finds at that step, and for every staged schedule there is an S/FREE whose U equals
simulate's bytes exactly (S = "still needed later", FREE = the product). Two more
differences from Checkmate, both exact for our semantics: outputs are pinned in
memory by the virtual row ``S[m,·]`` (Checkmate has no notion of outputs), and
``U ≥ 0`` (true of any live set). Hence the MILP optimum is the cheapest staged
schedule under our semantics, its cost is simulate's cost, and simulate's peak is ≤
the budget. Staged schedules compute each node at most once per stage and in index
order; schedules outside that family (a recomputation ordered against the graph's
order, or the same node twice between two frontier nodes) are not in the
formulation, so its optimum can exceed the best schedule of all.

>>> from recompiler.builders import linear_chain
>>> f = Formulation(linear_chain(3, memory=10), 30)
>>> f.m, f.capacity
(3, 30)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from ..errors import InfeasibleBudget, ModelTooLarge, RecompilerError
from ..graph import CostGraph

#: Rough bytes a MIP/LP backend spends per variable and per nonzero of the
#: constraint matrix (SCIP and CP-SAT both keep several copies: presolve, LP, ...).
BYTES_PER_VARIABLE = 600
BYTES_PER_NONZERO = 120
#: Default cap on the estimated model memory.
DEFAULT_MEMORY_CAP = 6 * 2**30
#: Floating-point backends get sizes rounded up to 1/MAX_UNITS of the largest when some size is
#: under 1/MAX_SIZE_SPREAD of it (see Formulation.rounded). The Checkmate graphs have at most
#: 1.6e7 units and are never rounded.
MAX_UNITS = 2**26
MAX_SIZE_SPREAD = 10**8


@dataclass(frozen=True)
class ModelSize:
    """Counts of the model before it is built, and the memory estimate from them."""

    variables: int
    constraints: int
    nonzeros: int

    @property
    def estimated_bytes(self) -> int:
        return self.variables * BYTES_PER_VARIABLE + self.nonzeros * BYTES_PER_NONZERO


class Formulation:
    """The index sets of the Checkmate model for one graph and budget (module docstring)."""

    def __init__(self, graph: CostGraph, budget_bytes: int, *, exact: bool = False):
        """``exact``: memory in gcd units whatever their spread (for CP-SAT, exact in integers); else
        sizes may be rounded up to a coarser unit for floating-point backends (:attr:`rounded`)."""
        self.graph = graph
        self.budget_bytes = int(budget_bytes)
        self.nodes = [v for v in range(graph.n) if not graph.is_input[v]]
        local = {v: k for k, v in enumerate(self.nodes)}
        m = self.m = len(self.nodes)
        self.deps = [sorted({local[d] for d in graph.deps[v] if not graph.is_input[d]}) for v in self.nodes]
        self.users: list[list[int]] = [[] for _ in range(m)]
        for j, ds in enumerate(self.deps):
            for d in ds:
                self.users[d].append(j)
        idx = np.asarray(self.nodes, dtype=np.int64)
        self.compute = graph.compute[idx].astype(np.float64) if m else np.zeros(0)
        self.memory = graph.memory[idx].astype(np.int64) if m else np.zeros(0, dtype=np.int64)
        self.pinned = graph.pinned[idx] if m else np.zeros(0, dtype=bool)
        self.output = graph.is_output[idx] if m else np.zeros(0, dtype=bool)
        self.capacity = self.budget_bytes - graph.input_bytes - graph.fixed_memory
        positive = [int(x) for x in self.memory if x > 0]
        #: memory unit: the gcd of all sizes, so that U is an exact integer in these units.
        self.unit = reduce(math.gcd, positive) if positive else 1
        #: True when sizes were rounded up to a coarser unit: the model then over-counts memory,
        #: so its schedules fit, but its "infeasible" is no proof.
        self.rounded = False
        if positive and not exact:
            largest = max(positive) // self.unit
            if min(positive) // self.unit * MAX_SIZE_SPREAD < largest and largest > MAX_UNITS:
                # Why: after to_pywraplp's scaling a size is its share of the largest, and HiGHS drops
                # coefficients under 1e-9: with 2**40-byte tensors beside small ones the small ones
                # vanish from the memory rows. Rounded up to largest/MAX_UNITS, every size keeps a
                # coefficient of at least 1/MAX_UNITS (and the tolerance stays a few units).
                self.unit = -(-max(positive) // MAX_UNITS)
                self.rounded = True
        #: each node's size in units (rounded up when :attr:`rounded`).
        self.mem_units = [-(-int(x) // self.unit) for x in self.memory]
        # S[t,i] can matter only for values someone reads or that must reach the end.
        self.storable = np.array([bool(self.users[i]) or bool(self.output[i]) for i in range(m)], dtype=bool)

    # ------------------------------------------------------------ index sets
    def r_is_var(self, t: int, i: int) -> bool:
        return i < t and not self.pinned[i]

    def s_is_var(self, t: int, i: int) -> bool:
        return 0 < t < self.m and i < t and self.storable[i]

    def free_hazards(self, t: int, i: int, k: int) -> list[int] | None:
        """Users j of i after k in stage t whose R is a variable; None when FREE is fixed at 0."""
        if self.memory[i] == 0:
            return None
        if k < t and self.pinned[k]:
            return None  # R[t,k] = 0
        if t + 1 == self.m and self.output[i]:
            return None  # S[m,i] = 1
        hazards = []
        for j in self.users[i]:
            if k < j <= t:
                if j == t:
                    return None  # R[t,t] = 1
                if not self.pinned[j]:
                    hazards.append(j)
        return hazards

    def free_triples(self, t: int):
        """(i, k, hazards) for each FREE[t,i,k] variable of stage t."""
        for k in range(t + 1):
            for i in [k, *self.deps[k]]:
                h = self.free_hazards(t, i, k)
                if h is not None:
                    yield i, k, h

    def size(self) -> ModelSize:
        """Variables and constraints of :meth:`build` (exact) and nonzeros (close), without building."""
        m = self.m
        nv = nc = nz = 0
        for t in range(m):
            s_vars = sum(1 for i in range(t) if self.s_is_var(t, i))
            nv += sum(1 for i in range(t) if self.r_is_var(t, i)) + s_vars + (t + 1)  # R, S, U
            chain = sum(1 for i in range(t) if self.s_is_var(t + 1, i) or (t + 1 == m and self.output[i]))
            nc += chain + (t + 1)  # S chain + U recurrence
            nz += 3 * chain + 3 * (t + 1) + s_vars
            for j in range(t + 1):
                if j == t or self.r_is_var(t, j):
                    nc += len(self.deps[j])
                    nz += 3 * len(self.deps[j])
            for i, k, h in self.free_triples(t):
                rows = int(k < t) + int(self.s_is_var(t + 1, i)) + len(h)
                nv += 1
                nc += rows
                nz += 2 * rows + 1
        return ModelSize(nv, nc, nz)

    def check_size(self, memory_cap_bytes: int) -> ModelSize:
        size = self.size()
        if size.estimated_bytes > memory_cap_bytes:
            raise ModelTooLarge(
                f"the Checkmate model of {self.graph.name!r} ({self.m} scheduled nodes) has "
                f"{size.variables:,} variables and {size.constraints:,} constraints, about "
                f"{size.estimated_bytes / 2**30:.1f} GiB, over the cap of {memory_cap_bytes / 2**30:.1f} GiB; "
                "raise memory_cap_bytes or use a heuristic solver (greedy-evict, fastsa)")
        return size

    # ------------------------------------------------------------- building
    def build(self, *, integer: bool = True) -> "LinearModel":
        """The model as plain arrays, memory in units of :attr:`unit`."""
        m, unit = self.m, self.unit
        mem = self.mem_units
        cap = self.capacity // unit
        lm = LinearModel()
        R: dict[tuple[int, int], int] = {}
        S: dict[tuple[int, int], int] = {}
        for t in range(m):
            for i in range(t):
                if self.r_is_var(t, i):
                    R[t, i] = lm.var(0, 1, integer, self.compute[i])
                if self.s_is_var(t, i):
                    S[t, i] = lm.var(0, 1, integer, 0.0)
        lm.obj_const = float(self.compute.sum())  # the frontier R[t,t] = 1
        lm.obj_scale = float(self.compute.max()) if m and self.compute.max() > 0 else 1.0
        lm.R, lm.S = R, S

        def r_term(t, i):  # (var or None, constant)
            if i == t:
                return None, 1
            return (R[t, i], 0) if (t, i) in R else (None, 0)

        def s_term(t, i):
            if t == m:
                return None, int(self.output[i])
            return (S[t, i], 0) if (t, i) in S else (None, 0)

        for t in range(m):
            # S[t+1,i] - S[t,i] - R[t,i] <= 0
            for i in range(t):
                sv, sc = s_term(t + 1, i)
                if sv is None and sc == 0:
                    continue
                terms, const = [], sc
                if sv is not None:
                    terms.append((sv, 1))
                pv, pc = s_term(t, i)
                rv, rc = r_term(t, i)
                const -= pc + rc
                if pv is not None:
                    terms.append((pv, -1))
                if rv is not None:
                    terms.append((rv, -1))
                if not terms:
                    if const > 0:
                        raise AssertionError("an output cannot reach the end")  # cannot happen: R[t,i] var or S var
                    continue
                lm.row(terms, -math.inf, -const)
            # R[t,j] - R[t,u] - S[t,u] <= 0
            for j in range(t + 1):
                jv, jc = r_term(t, j)
                if jv is None and jc == 0:
                    continue
                for u in self.deps[j]:
                    terms, const = ([(jv, 1)] if jv is not None else []), jc
                    uv, uc = r_term(t, u)
                    pv, pc = s_term(t, u)
                    const -= uc + pc
                    if uv is not None:
                        terms.append((uv, -1))
                    if pv is not None:
                        terms.append((pv, -1))
                    lm.row(terms, -math.inf, -const)
            # FREE upper bounds
            frees: dict[int, list[tuple[int, int]]] = {}
            for i, k, hazards in self.free_triples(t):
                f = lm.var(0, 1, integer, 0.0)
                lm.F[t, i, k] = f
                frees.setdefault(k, []).append((f, mem[i]))
                kv, _ = r_term(t, k)
                if kv is not None:
                    lm.row([(f, 1), (kv, -1)], -math.inf, 0)
                sv, _ = s_term(t + 1, i)
                if sv is not None:
                    lm.row([(f, 1), (sv, 1)], -math.inf, 1)
                for j in hazards:
                    lm.row([(f, 1), (R[t, j], 1)], -math.inf, 1)
            # U recurrence; U[t,k] in [0, cap]
            prev = None
            for k in range(t + 1):
                u = lm.var(0, cap, integer, 0.0, is_memory=True)
                lm.U[t, k] = u
                terms, const = [(u, 1)], 0
                if prev is None:
                    for i in range(t):
                        pv, _ = s_term(t, i)
                        if pv is not None and mem[i]:
                            terms.append((pv, -mem[i]))
                else:
                    terms.append((prev, -1))
                    terms.extend((f, mi) for f, mi in frees.get(k - 1, ()) if mi)
                kv, kc = r_term(t, k)
                if kv is not None and mem[k]:
                    terms.append((kv, -mem[k]))
                const += kc * mem[k]
                lm.row(terms, const, const)
                prev = u
        return lm

    # ------------------------------------------------------------ schedules
    def schedule_from_r(self, R: np.ndarray) -> list[int]:
        """Our schedule for a 0/1 matrix ``R[t,i]`` (m×m): the stages concatenated.

        Stage t runs its nodes in index order; our liveness then frees each value
        after its last use before its next computation.
        """
        out: list[int] = []
        for t in range(self.m):
            out.extend(self.nodes[i] for i in np.flatnonzero(R[t, :t + 1]))
        return out

    def exact_values(self, R: np.ndarray, lm: "LinearModel") -> list[float]:
        """A full assignment of ``lm``'s variables for the staged schedule R, with our liveness.

        S[t,i] = 1 when i is not computed in stage t and its latest value is read in
        stage t or later before i is computed again (or i is an output never computed
        again); FREE is the product of the module docstring; U follows. For a schedule
        that ``simulate`` finds within the budget this satisfies every row (the
        exactness argument of the module docstring), so it is a valid MIP start.
        """
        m, unit = self.m, self.unit
        used = np.zeros((m, m), dtype=bool)  # used[t,i]: some user of i is computed in stage t
        for j in range(m):
            for i in self.deps[j]:
                used[:, i] |= R[:, j]
        S = np.zeros((m + 1, m), dtype=bool)
        S[m] = self.output
        for i in range(m):
            need = bool(self.output[i])  # held into stage t+1 (walking t downwards)
            for t in range(m - 1, i, -1):
                if R[t, i]:
                    need = False
                    continue
                need = need or bool(used[t, i])
                S[t, i] = need
        values = [0.0] * lm.num_vars
        for (t, i), v in lm.R.items():
            values[v] = float(R[t, i])
        for (t, i), v in lm.S.items():
            values[v] = float(S[t, i])
        free = {}
        for (t, i, k), v in lm.F.items():
            later = any(R[t, j] for j in self.users[i] if k < j <= t)
            free[t, i, k] = bool(R[t, k] and not S[t + 1, i] and not later)
            values[v] = float(free[t, i, k])
        mem = self.mem_units
        for t in range(m):
            u = sum(mem[i] for i in range(t) if S[t, i])
            for k in range(t + 1):
                if k:
                    u -= sum(mem[i] for i in [k - 1, *self.deps[k - 1]] if free.get((t, i, k - 1)))
                u += mem[k] * int(R[t, k])
                if (t, k) in lm.U:
                    values[lm.U[t, k]] = float(u)
        return values

    def cheapest_r(self, S: np.ndarray, *, lazy: bool = False) -> np.ndarray:
        """The cheapest R for a 0/1 matrix ``S[t,i]`` ((m+1)×m, row m the outputs), in closed form.

        Stage by stage, from the frontier down: node i is computed in stage t when it
        is the frontier, or when it must be held into stage t+1 but is not held now,
        or when a node computed later in the stage reads it and it is not held.
        Pinned nodes never recompute: where one would, it is held instead (S is
        extended from its own stage up to that stage) and R is rebuilt, until no pinned
        node recomputes. A fixed number of passes is not enough: with ``lazy`` a hold
        added for one pinned node changes which of its inputs are held, which can make
        another pinned node recompute. Each pass sets at least one more bit of S (a
        recomputation happens only where the pinned node is not held), so this ends.

        ``lazy``: a hold S[t+1,i] that i's values cannot reach (i neither held in nor
        computed in stage t) is dropped instead of refilled by recomputing i in stage
        t, so i is recomputed where it is read (outputs are still refilled at the end).
        Checkmate's rule is ``lazy=False``; under our liveness the lazy R is often the
        one with the lower peak, so the rounding tries both.
        """
        m = self.m
        S = S.astype(bool).copy()
        S[m, :] = self.output
        none = np.zeros(m, dtype=bool)
        while True:
            R = np.zeros((m, m), dtype=bool)
            held = S[0]
            for t in range(m):
                Rt = R[t]
                St = held if lazy else S[t]
                Sn = S[t + 1] if (not lazy or t + 1 == m) else none
                Rt[t] = True
                for i in range(t - 1, -1, -1):
                    if St[i]:
                        continue
                    if Sn[i] or any(Rt[j] for j in self.users[i] if j <= t):
                        Rt[i] = True
                held = S[t + 1] & (St | Rt)
            bad = False
            for i in np.flatnonzero(self.pinned):
                stages = np.flatnonzero(R[i + 1:, i])
                if stages.size:
                    S[i + 1:i + 2 + int(stages[-1]), i] = True
                    bad = True
            if not bad:
                return R


class LinearModel:
    """A linear model as plain lists, turned into a backend model by the solvers.

    Variables have bounds, an integrality flag and an objective coefficient; rows are
    ``lb ≤ Σ coef·var ≤ ub`` with integer coefficients (memory in units).
    """

    def __init__(self):
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.integer: list[bool] = []
        self.obj: list[float] = []
        self.memory_vars: list[int] = []
        self.rows: list[tuple[list[tuple[int, int]], float, float]] = []
        self.obj_const = 0.0
        #: objective divisor for floating-point backends (costs of 1e12 upset GLOP)
        self.obj_scale = 1.0
        self.R: dict[tuple[int, int], int] = {}
        self.S: dict[tuple[int, int], int] = {}
        self.F: dict[tuple[int, int, int], int] = {}
        self.U: dict[tuple[int, int], int] = {}

    @property
    def num_vars(self) -> int:
        return len(self.lb)

    def var(self, lb, ub, integer: bool, obj: float, *, is_memory: bool = False) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(integer)
        self.obj.append(float(obj))
        if is_memory:
            self.memory_vars.append(len(self.lb) - 1)
        return len(self.lb) - 1

    def row(self, terms: list[tuple[int, int]], lb: float, ub: float) -> None:
        self.rows.append((terms, lb, ub))

    def r_matrix(self, values, m: int, *, threshold: float = 0.5) -> np.ndarray:
        """R as an m×m 0/1 matrix from variable values (the frontier set)."""
        R = np.eye(m, dtype=bool)
        for (t, i), v in self.R.items():
            R[t, i] = values[v] > threshold
        return R

    def s_matrix(self, values, m: int) -> np.ndarray:
        """S as an (m+1)×m matrix of floats (row m left at 0; callers set the outputs)."""
        S = np.zeros((m + 1, m))
        for (t, i), v in self.S.items():
            S[t, i] = values[v]
        return S


#: LP backends; HiGHS is the default: on RL1 (30k variables) it solved the relaxation
#: in 5.4 s where GLOP took 58.7 s and PDLP had not converged after 60 s.
LP_BACKENDS = ("HIGHS", "GLOP", "PDLP")


def require_reachable(graph: CostGraph, budget_bytes: int) -> int:
    """The graph's local bound (default lowerings); a budget below it is refused before any model is built.

    The model knows only option 0 of each variant group: with groups, a budget below this bound
    may still be met by other (exact) options, so the message says what is proved, and
    ``floor_bytes`` is the bound over every exact option (fastsa's floor).
    """
    floor = graph.local_bound()
    if budget_bytes < floor:
        if not graph.variant_groups:
            raise InfeasibleBudget(f"budget {budget_bytes:,} B is below the local bound {floor:,} B of "
                                   f"{graph.name!r}: no schedule can fit", floor_bytes=floor)
        from .fastsa import floor_bytes

        raise InfeasibleBudget(
            f"budget {budget_bytes:,} B is below the local bound {floor:,} B of {graph.name!r} with its default "
            f"lowerings, the only ones Checkmate's model has: no schedule with them can fit (other lowerings "
            f"of its {len(graph.variant_groups)} variant groups may: try fastsa)", floor_bytes=floor_bytes(graph))
    return floor


def solve_lp(form: Formulation, *, time_limit: float | None, backend: str = "HIGHS"):
    """Solve the LP relaxation with pywraplp; returns (objective or None, S values or None, status)."""
    import time

    from ortools.linear_solver import pywraplp

    t_end = None if time_limit is None else time.monotonic() + time_limit  # building counts too
    lm = form.build(integer=False)
    solver = pywraplp.Solver.CreateSolver(backend)
    if solver is None:
        raise RecompilerError(f"OR-Tools backend {backend} is not available")
    x = to_pywraplp(solver, lm)
    if backend == "HIGHS":
        solver.SetSolverSpecificParametersAsString("output_flag=false")  # else a banner on stdout
    if t_end is not None:
        solver.SetTimeLimit(max(1, int((t_end - time.monotonic()) * 1000)))
    status = solver.Solve()
    names = {pywraplp.Solver.OPTIMAL: "optimal", pywraplp.Solver.FEASIBLE: "feasible",
             pywraplp.Solver.INFEASIBLE: "infeasible", pywraplp.Solver.UNBOUNDED: "unbounded",
             pywraplp.Solver.NOT_SOLVED: "not solved", pywraplp.Solver.ABNORMAL: "abnormal"}
    if status != pywraplp.Solver.OPTIMAL:
        return None, None, names.get(status, "time limit")
    values = [v.solution_value() for v in x]
    return solver.Objective().Value() * lm.obj_scale, lm.s_matrix(values, form.m), "optimal"


def memory_scale(lm: LinearModel) -> float:
    """The divisor of the memory variables in :func:`to_pywraplp`: the largest coefficient (≥ 1)."""
    memory = set(lm.memory_vars)
    return max(1.0, float(max((abs(c) for terms, _, _ in lm.rows for v, c in terms if v not in memory), default=1)))


def to_pywraplp(solver, lm: LinearModel) -> list:
    """Load a LinearModel into a pywraplp solver (minimization); returns its variables.

    The memory rows are scaled for these floating-point backends: each U is loaded as
    U' = U / scale, continuous, with scale the largest size in units, so that every memory
    coefficient is at most 1. Why: with sizes of 10^7 units HiGHS's presolve proved a wrong
    optimum (vgg_unet at 90%: "optimal" +1.290% while a staged schedule at +1.129% fits).
    Nothing is lost: U is a sum of integer sizes times binaries, so it is integral whenever the
    binaries are, and a feasibility tolerance of 1e-7 on U' is 1e-7·scale units, well under the
    one unit that separates a fitting sum from one over ``cap``. ``simulate`` re-judges anyway.
    """
    inf = solver.infinity()
    solver.SuppressOutput()
    memory = set(lm.memory_vars)
    scale = memory_scale(lm)
    x = [solver.Var(lb / scale, ub / scale, False, "") if v in memory else solver.Var(lb, ub, integer, "")
         for v, (lb, ub, integer) in enumerate(zip(lm.lb, lm.ub, lm.integer))]
    for terms, lb, ub in lm.rows:
        div = scale if any(v in memory for v, _ in terms) else 1.0
        c = solver.RowConstraint(-inf if lb == -math.inf else lb / div, inf if ub == math.inf else ub / div, "")
        for v, coef in terms:
            c.SetCoefficient(x[v], coef if v in memory else coef / div)
    obj = solver.Objective()
    for v, coef in enumerate(lm.obj):
        if coef:
            obj.SetCoefficient(x[v], coef / lm.obj_scale)
    obj.SetOffset(lm.obj_const / lm.obj_scale)
    obj.SetMinimization()
    return x
