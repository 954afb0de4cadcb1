import numpy as np
import pytest

from recompiler.builders import linear_chain, random_layered, training_chain, transformer_block
from recompiler.errors import InvalidGraph
from recompiler.graph import CostGraph, VariantGroup, VariantOption


def make(deps, **kw):
    n = len(deps)
    return CostGraph(names=[f"v{i}" for i in range(n)], deps=deps, compute=kw.pop("compute", [1.0] * n),
                     memory=kw.pop("memory", [1] * n), **kw)


def test_valid_graph_fields():
    g = make([[], [0], [0, 1]], is_output=[False, False, True])
    assert g.n == 3 and g.num_edges == 3
    assert g.users() == [[1, 2], [2], []]
    assert g.baseline_schedule() == [0, 1, 2]


def test_dependency_on_later_node_names_it():
    with pytest.raises(InvalidGraph, match=r"node 0 \('v0'\) depends on later node 1"):
        make([[1], []])


def test_cycle_is_named():
    with pytest.raises(InvalidGraph, match="cycle"):
        make([[2], [0], [1]])
    with pytest.raises(InvalidGraph, match="depends on itself"):
        make([[0]])


def test_out_of_range_dependency():
    with pytest.raises(InvalidGraph, match="out-of-range node id 7"):
        make([[], [7]])


@pytest.mark.parametrize("field,value,msg", [
    ("compute", [1.0, -1.0], "negative or non-finite compute"),
    ("compute", [1.0, float("nan")], "negative or non-finite compute"),
    ("memory", [1, -5], "negative size"),
])
def test_negative_costs_rejected(field, value, msg):
    with pytest.raises(InvalidGraph, match=msg):
        make([[], [0]], **{field: value})


def test_wrong_lengths_rejected():
    with pytest.raises(InvalidGraph, match="expected 2"):
        make([[], [0]], is_output=[True])


def test_variant_group_checks():
    opt0 = VariantOption("eager", True, [1.0], [4])
    chunked = VariantOption("c", True, [2.0], [1])
    ok = make([[], [0]], memory=[1, 4], variant_groups=[VariantGroup("a", "attention", [1], [opt0, chunked])])
    r = ok.resolve([1])
    assert r.memory.tolist() == [1, 1] and r.compute.tolist() == [1.0, 2.0]
    assert ok.resolve([0]).memory.tolist() == [1, 4]
    with pytest.raises(InvalidGraph, match="original lowering"):
        make([[], [0]], memory=[1, 5], variant_groups=[VariantGroup("a", "attention", [1], [opt0, chunked])])
    with pytest.raises(InvalidGraph, match="kind"):
        make([[], [0]], memory=[1, 4], variant_groups=[VariantGroup("a", "conv", [1], [opt0])])
    with pytest.raises(InvalidGraph, match="earlier nodes"):
        make([[], [0]], memory=[1, 4], variant_groups=[VariantGroup("a", "linear", [1], [opt0, VariantOption("s", False, [1.0], [1], deps=[[1]])])])


def test_floor_counts_outputs_live_at_the_end():
    g = make([[], [0], [0]], memory=[5, 2, 3], is_output=[False, True, True], fixed_memory=1)
    assert g.local_bound() == 5 + 3 + 1
    assert g.floor() == max(g.local_bound(), 2 + 3 + 1)
    g2 = make([[], [], []], memory=[4, 4, 4], is_output=[True, True, True])
    assert g2.local_bound() == 4 and g2.floor() == 12


def test_local_bound_counts_node_plus_inputs():
    g = make([[], [0], [1]], memory=[5, 2, 3], is_input=[True, False, False], fixed_memory=7)
    # max(2 (+ input 0 not counted twice), 3 + 2) + inputs 5 + fixed 7
    assert g.local_bound() == 5 + 5 + 7


@pytest.mark.parametrize("builder", [lambda: linear_chain(10), lambda: training_chain(6, with_input=True),
                                     lambda: random_layered(60, seed=3), lambda: transformer_block(2, with_variants=True)])
def test_builders_make_valid_graphs(builder):
    g = builder()
    assert g.n > 0
    assert all(d < i for i, ds in enumerate(g.deps) for d in ds)
    assert g.is_output.any()


def test_training_chain_shape():
    g = training_chain(3)
    assert g.names == ["f0", "f1", "f2", "loss", "b2", "b1", "b0"]
    assert g.deps[4] == [3, 2] and g.deps[6] == [5, 0]
    assert g.is_backward.tolist() == [False] * 3 + [True] * 4


def test_random_layered_is_seeded():
    a, b, c = random_layered(40, seed=1), random_layered(40, seed=1), random_layered(40, seed=2)
    assert a.deps == b.deps and np.array_equal(a.memory, b.memory)
    assert a.deps != c.deps or not np.array_equal(a.memory, c.memory)
