import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recompiler.builders import linear_chain, training_chain, transformer_block
from recompiler.graph import CostGraph, VariantGroup, VariantOption
from recompiler.simulate import baseline, simulate, simulate_reference


def test_chain_store_all_by_hand():
    g = linear_chain(4, memory=10)
    r = simulate(g, [0, 1, 2, 3])
    # each value lives until its consumer runs; the output to the end
    assert r.live_bytes.tolist() == [10, 20, 20, 20]
    assert r.peak_bytes == 20 and r.cost == 4.0


def test_recomputation_frees_across_the_gap():
    g = training_chain(3, memory=10)  # f0 f1 f2 loss b2 b1 b0
    store_all = simulate(g, g.baseline_schedule())
    # recompute f0 right before b0 instead of keeping it through the backward
    sched = [0, 1, 2, 3, 4, 5, 0, 6]
    r = simulate(g, sched)
    assert r.valid and r.cost == store_all.cost + 1
    assert r.live_bytes[4] == store_all.live_bytes[4] - 10


def test_inputs_and_fixed_memory_always_live():
    g = CostGraph(names=["x", "a", "b"], deps=[[], [0], [1]], compute=[0, 1, 1], memory=[100, 1, 1],
                  is_input=[True, False, False], is_output=[False, False, True], fixed_memory=1000)
    r = simulate(g, [1, 2])
    assert r.live_bytes.tolist() == [1101, 1102]


def test_output_lives_to_end_from_last_occurrence():
    g = CostGraph(names=["a", "b", "c"], deps=[[], [], []], compute=[1, 1, 1], memory=[1, 10, 100],
                  is_output=[True, False, False])
    assert simulate(g, [0, 1, 2]).live_bytes.tolist() == [1, 11, 101]
    assert simulate(g, [0, 1, 0, 2]).live_bytes.tolist() == [1, 10, 1, 101]


@pytest.mark.parametrize("sched,reason", [
    ([1, 0, 2, 3], "needs node 0"),
    ([0, 1, 2], "node 3 ('n3') is never computed"),
    ([0, 1, 2, 9], "out of range"),
])
def test_invalid_schedules(sched, reason):
    g = linear_chain(4)
    for sim in (simulate, simulate_reference):
        r = sim(g, sched)
        assert not r.valid and reason in r.reason


def test_pinned_and_input_rules():
    g = CostGraph(names=["x", "a", "b"], deps=[[], [0], [1]], compute=[0, 1, 1], memory=[1, 1, 1],
                  is_input=[True, False, False], pinned=[False, True, False])
    assert "computed 2 times" in simulate(g, [1, 1, 2]).reason
    assert "is an input" in simulate(g, [0, 1, 2]).reason


def test_variant_changes_costs_and_deps():
    g = transformer_block(1, seq=512, hidden=64, with_variants=True)
    base, chunked = simulate(g, g.baseline_schedule(), [0]), simulate(g, g.baseline_schedule(), [1])
    assert chunked.peak_bytes < base.peak_bytes and chunked.cost > base.cost
    assert "no option 5" in simulate(g, g.baseline_schedule(), [5]).reason
    assert "variant has 0 entries" in simulate(g, g.baseline_schedule(), []).reason


def test_baseline_helper():
    g = linear_chain(3)
    assert baseline(g).peak_bytes == simulate(g, [0, 1, 2]).peak_bytes


# ----------------------------------------------------------------- property tests
@st.composite
def graphs(draw):
    n = draw(st.integers(2, 14))
    deps = []
    for i in range(n):
        k = draw(st.integers(0, min(i, 3)))
        deps.append(sorted(set(draw(st.lists(st.integers(0, i - 1), min_size=k, max_size=k)))) if i else [])
    memory = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    compute = draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=n, max_size=n))
    flags = [draw(st.lists(st.booleans(), min_size=n, max_size=n)) for _ in range(3)]
    is_input = [f and not deps[i] for i, f in enumerate(flags[0])]
    pinned = [f and not is_input[i] for i, f in enumerate(flags[1])]
    groups = []
    candidates = [i for i in range(n) if not is_input[i]]
    if candidates and draw(st.booleans()):
        node = draw(st.sampled_from(candidates))
        alt = VariantOption("alt", True, [compute[node] * 2], [memory[node] // 2],
                            deps=[deps[node][:1]])
        groups.append(VariantGroup("g", "attention", [node], [
            VariantOption("orig", True, [compute[node]], [memory[node]]), alt]))
    return CostGraph(names=[f"v{i}" for i in range(n)], deps=deps, compute=compute, memory=memory,
                     is_input=is_input, pinned=pinned, is_output=flags[2], variant_groups=groups,
                     fixed_memory=draw(st.integers(0, 5)))


@st.composite
def graph_and_schedule(draw):
    g = draw(graphs())
    variant = [draw(st.integers(0, len(vg.options) - 1)) for vg in g.variant_groups]
    sched = g.baseline_schedule()
    if draw(st.booleans()):
        # valid-ish: insert recomputations of non-pinned nodes after their deps' first computation
        for _ in range(draw(st.integers(0, 8))):
            movable = [v for v in sched if not g.pinned[v]]
            if not movable:
                break
            v = draw(st.sampled_from(movable))
            first = sched.index(v)
            pos = draw(st.integers(first + 1, len(sched)))
            sched.insert(pos, v)
    else:
        # anything at all: shuffled, dropped, repeated, out-of-range ids
        sched = draw(st.lists(st.integers(-1, g.n), max_size=3 * g.n))
    return g, sched, variant


@settings(max_examples=400, deadline=None)
@given(graph_and_schedule())
def test_native_agrees_with_reference(case):
    g, sched, variant = case
    fast, ref = simulate(g, sched, variant), simulate_reference(g, sched, variant)
    assert fast.valid == ref.valid
    assert fast.reason == ref.reason
    assert fast.peak_bytes == ref.peak_bytes
    assert fast.cost == pytest.approx(ref.cost)
    assert np.array_equal(fast.live_bytes, ref.live_bytes) or not ref.valid


@settings(max_examples=200, deadline=None)
@given(graph_and_schedule())
def test_no_valid_schedule_beats_the_local_bound(case):
    g, sched, variant = case
    r = simulate(g, sched, variant)
    if r.valid:
        assert r.peak_bytes >= g.local_bound(variant)


def test_peaks_are_exact_up_to_2_to_the_63():
    # two live tensors of 2**62 - 1 and 2**62 bytes: the peak is their sum, 2**63 - 1, in both simulators
    g = CostGraph(names=list("abc"), deps=[[], [0], [0, 1]], compute=[1.0] * 3, memory=[2**62 - 1, 2**62, 0],
                  is_output=[False, False, True])
    for sim in (simulate, simulate_reference):
        r = sim(g, [0, 1, 2])
        assert r.valid and r.peak_bytes == 2**63 - 1 and r.live_bytes.tolist() == [2**62 - 1, 2**63 - 1, 2**63 - 1]


def test_ids_beyond_int32_are_out_of_range_not_an_overflow_error():
    g = linear_chain(3)
    for bad in (2**40, 2**70, -2**40):
        r = simulate(g, [0, bad, 1])
        assert not r.valid and r.reason == simulate_reference(g, [0, bad, 1]).reason == f"step 1: node id {bad} is out of range"
