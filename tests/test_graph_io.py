import json

import numpy as np
import pytest

from bench_models.shared_graphs import SHARED_GRAPHS as SHARED
from recompiler.builders import random_layered, transformer_block
from recompiler.errors import GraphFormatError, InvalidGraph
from recompiler.graph_io import graph_to_dict, read_graph, write_graph

SHARED_FILES = sorted(SHARED.glob("*/*.json"))


def same_graph(a, b):
    return (a.names == b.names and a.deps == b.deps and np.array_equal(a.compute, b.compute)
            and np.array_equal(a.memory, b.memory) and np.array_equal(a.is_backward, b.is_backward)
            and np.array_equal(a.is_input, b.is_input) and np.array_equal(a.pinned, b.pinned)
            and np.array_equal(a.is_output, b.is_output) and a.fixed_memory == b.fixed_memory
            and a.variant_groups == b.variant_groups and a.name == b.name)


@pytest.mark.parametrize("g", [random_layered(30, seed=4), transformer_block(2, with_variants=True)],
                         ids=["random", "transformer"])
def test_round_trip_own_format(tmp_path, g):
    p = tmp_path / "g.json"
    write_graph(g, p)
    assert same_graph(read_graph(p), g)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic writer left no temp file


def test_shared_graphs_present():
    assert len(SHARED_FILES) == 11


@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.stem[:30])
def test_read_shared_graphs_and_round_trip(tmp_path, path):
    g = read_graph(path)
    raw = json.loads(path.read_text())
    assert g.n == len(raw["nodes"])
    assert g.num_edges == len({(e.get("source", e.get("0")), e.get("target", e.get("1"))) for e in raw["links"]})
    assert g.is_output.sum() == 1 and g.is_output[-1]
    write_graph(g, tmp_path / "g.json")
    assert same_graph(read_graph(tmp_path / "g.json"), g)


def test_checkmate_fields_mapped():
    g = read_graph(SHARED / "checkmate" / "vgg16.train.json")
    assert g.names[0] == "block1_conv1" and g.compute[0] == 385 and g.memory[0] == 3288334336
    assert not g.is_backward[0] and g.is_backward[-1]


def test_random_layered_uses_its_order():
    path = next(SHARED.glob("random_layered/*n100_*.json"))
    raw = json.loads(path.read_text())
    g = read_graph(path)
    assert g.names == [str(k) for k in raw["graph"]["order"]]
    assert g.names[-1] == str(raw["graph"]["target_node"])


def test_errors(tmp_path):
    with pytest.raises(GraphFormatError, match="not found"):
        read_graph(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GraphFormatError, match="not valid JSON"):
        read_graph(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(GraphFormatError, match="unknown graph format"):
        read_graph(bad)
    cyc = {"directed": True, "graph": {"name": "c"}, "links": [{"source": 0, "target": 1}, {"source": 1, "target": 0}],
           "nodes": [{"id": i, "name": f"n{i}", "cost_cpu": 1, "cost_ram": 1, "backward": False} for i in range(2)]}
    bad.write_text(json.dumps(cyc))
    with pytest.raises(InvalidGraph, match="cycle"):
        read_graph(bad)
    d = graph_to_dict(random_layered(5, seed=0))
    d["deps"][1] = [3]
    bad.write_text(json.dumps(d))
    with pytest.raises(InvalidGraph, match="later node"):
        read_graph(bad)
    d["deps"][1] = []
    d.pop("memory")
    bad.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError, match="memory"):
        read_graph(bad)


def test_unknown_fields_in_a_graph_file_are_one_line_errors_naming_them(tmp_path):
    p = tmp_path / "g.json"
    d = graph_to_dict(random_layered(5, seed=0))
    d["pined"] = [False] * 5
    d["colour"] = "red"
    p.write_text(json.dumps(d))
    with pytest.raises(GraphFormatError, match="unknown fields 'colour', 'pined'") as e:
        read_graph(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("key,value,msg", [("is_input", ["false"] * 5, r"is_input\[0\] is 'false'"),
                                           ("memory", [1.9, 1, 1, 1, 1], r"memory\[0\] is 1.9"),
                                           ("memory", [2**70, 1, 1, 1, 1], r"2\*\*63"),
                                           ("deps", "nope", "must be a list")])
def test_graph_files_are_read_with_strict_types(tmp_path, key, value, msg):
    p = tmp_path / "g.json"
    d = graph_to_dict(random_layered(5, seed=0))
    d[key] = value
    p.write_text(json.dumps(d))
    with pytest.raises((InvalidGraph, GraphFormatError), match=msg):
        read_graph(p)


def test_node_link_fields_are_read_with_strict_types(tmp_path):
    p = tmp_path / "g.json"
    base = {"directed": True, "graph": {"name": "c"}, "links": [{"source": 0, "target": 1}]}
    for field, value, msg in [("backward", "false", "backward is 'false'"), ("cost_ram", 1.9, "cost_ram is 1.9"),
                              ("cost_cpu", "3", "cost_cpu is '3'")]:
        nodes = [{"id": i, "name": f"n{i}", "cost_cpu": 1, "cost_ram": 1, "backward": False} for i in range(2)]
        nodes[1][field] = value
        p.write_text(json.dumps(dict(base, nodes=nodes)))
        with pytest.raises(GraphFormatError, match=msg):
            read_graph(p)


def test_reference_schedule_round_trips(tmp_path):
    g = random_layered(6, seed=1)
    g.reference = g.baseline_schedule()
    write_graph(g, tmp_path / "g.json")
    assert read_graph(tmp_path / "g.json").reference == g.reference
