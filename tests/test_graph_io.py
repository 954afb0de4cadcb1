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
