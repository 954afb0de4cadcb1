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


# ------------------------------------------------------------ strict types, byte range (issue 20)
@pytest.mark.parametrize("field,value,msg", [
    ("is_input", ["false", "false"], r"is_input\[0\] is 'false'"),
    ("pinned", [0, 1], r"pinned\[0\] is 0"),
    ("is_output", "tt", "must be a list"),
    ("memory", [1.9, 2], r"memory\[0\] is 1.9"),
    ("memory", [True, 1], "boolean"),
    ("memory", ["3", 1], r"memory\[0\] is '3'"),
    ("memory", np.array([1.5, 2.0]), "expected an integer"),
    ("compute", ["1.0", 1.0], r"compute\[0\] is '1.0'"),
    ("compute", [True, 1.0], r"compute\[0\] is True"),
    ("fixed_memory", 2.5, "fixed_memory is 2.5"),
])
def test_strict_types_when_building_a_cost_graph(field, value, msg):
    with pytest.raises(InvalidGraph, match=msg):
        make([[], [0]], **{field: value})


def test_strict_types_accept_ints_integral_floats_and_numpy():
    g = make([[], [0.0 + 0]], memory=[3.0, np.int64(4)], is_input=np.array([True, False]),
             pinned=[np.bool_(False), False], fixed_memory=np.int32(2))
    assert g.memory.tolist() == [3, 4] and g.deps == [[], [0]] and g.fixed_memory == 2
    with pytest.raises(InvalidGraph, match=r"deps\[1\] is 0.5"):
        make([[], [0.5]])
    with pytest.raises(InvalidGraph, match=r"deps\[1\] is True"):
        make([[], [True]])


def test_memory_of_2_to_the_70_is_an_invalid_graph_not_an_overflow_error():
    with pytest.raises(InvalidGraph, match=r"more than 2\*\*63 - 1"):
        make([[]], memory=[2**70])
    with pytest.raises(InvalidGraph, match=r"more than 2\*\*63 - 1"):
        make([[]], memory=np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(InvalidGraph, match=r"more than 2\*\*63 - 1"):
        make([[]], memory=np.array([1e19]))


def test_sizes_adding_up_past_2_to_the_63_are_refused():
    with pytest.raises(InvalidGraph, match=r"add up to 9,223,372,036,854,775,809 B"):
        make([[], [0], [0, 1]], memory=[2**62, 2**62, 1])
    with pytest.raises(InvalidGraph, match="add up to"):
        make([[]], memory=[2**62], fixed_memory=2**62)
    # a variant option counts at its own size: the largest option of each node is what can be live
    big = VariantGroup("g", "attention", [1], [VariantOption("a", True, [1.0], [1]),
                                               VariantOption("b", True, [1.0], [2**63 - 2])])
    with pytest.raises(InvalidGraph, match="add up to"):
        make([[], [0]], memory=[2, 1], variant_groups=[big])
    assert make([[], [0]], memory=[2**62, 2**62 - 1]).memory.sum() == 2**63 - 1


def test_variant_option_types_are_strict():
    opt = {"name": "o", "exact": "yes", "compute": [1.0], "memory": [1]}
    grp = {"name": "g", "kind": "attention", "nodes": [1], "options": [dict(opt, exact=True), opt]}
    with pytest.raises(InvalidGraph, match="exact is 'yes'"):
        make([[], [0]], variant_groups=[grp])
    grp["options"][1] = dict(opt, exact=False, memory=[1.9])
    with pytest.raises(InvalidGraph, match=r"memory\[0\] is 1.9"):
        make([[], [0]], variant_groups=[grp])
    grp["options"][1] = dict(opt, exact=False, colour="red")
    with pytest.raises(InvalidGraph, match="unknown field colour"):
        make([[], [0]], variant_groups=[grp])
