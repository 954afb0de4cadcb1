// pybind11 bindings: conversions only, no algorithms (those live in the .cpp files beside).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "fastsa.h"
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

// groups: [(nodes, [(exact, compute, memory, deps or None), ...]), ...]; config: a dict of FastSAConfig fields.
static py::dict py_fastsa(const Graph& g, const py::list& groups, int64_t budget, const py::dict& config) {
    std::vector<VariantGroupSpec> specs;
    for (const auto& item : groups) {
        auto gt = item.cast<py::tuple>();
        VariantGroupSpec spec;
        spec.nodes = gt[0].cast<std::vector<int>>();
        for (const auto& o : gt[1].cast<py::list>()) {
            auto ot = o.cast<py::tuple>();
            VariantOptionSpec opt;
            opt.exact = ot[0].cast<bool>();
            opt.compute = ot[1].cast<std::vector<double>>();
            opt.memory = ot[2].cast<std::vector<int64_t>>();
            opt.has_deps = !ot[3].is_none();
            if (opt.has_deps) opt.deps = ot[3].cast<std::vector<std::vector<int>>>();
            spec.options.push_back(std::move(opt));
        }
        specs.push_back(std::move(spec));
    }
    FastSAConfig c;
    c.stage1_iterations = config["stage1_iterations"].cast<int64_t>();
    c.stage2_iterations = config["stage2_iterations"].cast<int64_t>();
    c.slots = config["slots"].cast<int64_t>();
    c.seed = config["seed"].cast<uint64_t>();
    c.time_limit = config["time_limit"].cast<double>();
    c.restarts = config["restarts"].cast<int>();
    c.threads = config["threads"].cast<int>();
    c.grouping = config["grouping"].cast<bool>();
    c.max_group_size = config["max_group_size"].cast<int>();
    c.allow_approx = config["allow_approx"].cast<bool>();
    c.local_rotate = config["local_rotate"].cast<double>();
    c.near_use = config["near_use"].cast<double>();
    c.segment_moves = config["segment_moves"].cast<double>();
    c.max_segment = config["max_segment"].cast<int>();
    c.swap_share = config["swap_share"].cast<double>();
    c.over_weight = config["over_weight"].cast<double>();
    c.polish = config["polish"].cast<bool>();
    if (config.contains("initial_schedule")) {
        c.initial_schedule = config["initial_schedule"].cast<std::vector<int>>();
        c.initial_variant = config["initial_variant"].cast<std::vector<int>>();
        c.initial_temperature = config["initial_temperature"].cast<double>();
    }
    FastSAResult r;
    {
        py::gil_scoped_release release;
        r = fastsa_solve(g, specs, budget, c);
    }
    py::dict out;
    out["schedule"] = py::array_t<int>(r.schedule.size(), r.schedule.data());
    out["variant"] = r.variant;
    out["peak"] = r.peak;
    out["cost"] = r.cost;
    out["feasible"] = r.feasible;
    out["best_restart"] = r.best_restart;
    out["restarts_done"] = r.restarts_done;
    out["iterations"] = r.iterations;
    out["accepted"] = r.accepted;
    out["stage1_iterations"] = r.stage1_iterations;
    out["stage2_iterations"] = r.stage2_iterations;
    out["slots"] = r.slots;
    out["groups"] = r.groups;
    out["seconds"] = r.seconds;
    out["cpu_seconds"] = r.cpu_seconds;
    out["thread_seconds"] = r.thread_seconds;
    out["timed_out"] = r.timed_out;
    out["stage1_met_budget"] = r.stage1_met_budget;
    out["from_initial"] = r.from_initial;
    return out;
}

PYBIND11_MODULE(_native, m) {
    m.doc() = "recompiler's C++ core: the fast simulator and the FastSA solver";
    py::class_<Graph>(m, "Graph").def_readonly("n", &Graph::n);
    m.def("make_graph", &make_graph);
    m.def("simulate", &py_simulate, py::arg("graph"), py::arg("schedule"), py::arg("want_live") = true);
    m.def("fastsa", &py_fastsa, py::arg("graph"), py::arg("groups"), py::arg("budget"), py::arg("config"));
}
