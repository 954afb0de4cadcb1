// pybind11 bindings: conversions only, no algorithms (those live in the .cpp files beside).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "graph.h"
#include "simulate.h"

namespace py = pybind11;
using namespace recompiler;

template <typename T>
static std::vector<T> to_vec(const py::array_t<T, py::array::c_style | py::array::forcecast>& a) {
    return std::vector<T>(a.data(), a.data() + a.size());
}

static Graph make_graph(py::array_t<int> dep_ptr, py::array_t<int> dep_idx, py::array_t<double> compute,
                        py::array_t<int64_t> memory, py::array_t<uint8_t> is_input, py::array_t<uint8_t> pinned,
                        py::array_t<uint8_t> is_output, int64_t always_live) {
    Graph g;
    g.compute = to_vec<double>(compute);
    g.n = int(g.compute.size());
    g.dep_ptr = to_vec<int>(dep_ptr);
    g.dep_idx = to_vec<int>(dep_idx);
    g.memory = to_vec<int64_t>(memory);
    g.is_input = to_vec<uint8_t>(is_input);
    g.pinned = to_vec<uint8_t>(pinned);
    g.is_output = to_vec<uint8_t>(is_output);
    g.always_live = always_live;
    return g;
}

static py::tuple py_simulate(const Graph& g, py::array_t<int, py::array::c_style | py::array::forcecast> schedule,
                             bool want_live) {
    SimOutcome r;
    {
        py::gil_scoped_release release;
        r = simulate(g, schedule.data(), schedule.size(), want_live);
    }
    py::array_t<int64_t> live(r.live.size(), r.live.data());
    return py::make_tuple(r.error, r.step, r.node, r.dep, r.peak, r.cost, live);
}

PYBIND11_MODULE(_native, m) {
    m.doc() = "recompiler's C++ core: the fast simulator and the FastSA solver";
    py::class_<Graph>(m, "Graph").def_readonly("n", &Graph::n);
    m.def("make_graph", &make_graph);
    m.def("simulate", &py_simulate, py::arg("graph"), py::arg("schedule"), py::arg("want_live") = true);
}
