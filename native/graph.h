// The node-cost graph as the C++ core sees it (DESIGN.md): plain arrays, CSR deps.
// No pybind11 here: bindings.cpp converts Python objects into this struct.
#pragma once
#include <cstdint>
#include <vector>

namespace recompiler {

struct Graph {
    int n = 0;
    std::vector<int> dep_ptr;      // deps of node i: dep_idx[dep_ptr[i] .. dep_ptr[i+1])
    std::vector<int> dep_idx;
    std::vector<double> compute;
    std::vector<int64_t> memory;
    std::vector<uint8_t> is_input;
    std::vector<uint8_t> pinned;
    std::vector<uint8_t> is_output;
    int64_t always_live = 0;       // bytes of all inputs + fixed_memory

    int num_deps(int v) const { return dep_ptr[v + 1] - dep_ptr[v]; }
    const int* deps_begin(int v) const { return dep_idx.data() + dep_ptr[v]; }
    const int* deps_end(int v) const { return dep_idx.data() + dep_ptr[v + 1]; }
};

}  // namespace recompiler
