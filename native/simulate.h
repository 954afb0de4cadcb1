// Fast schedule simulator: validity, peak bytes, cost, live bytes per step.
// Must agree exactly with recompiler/simulate.py:simulate_reference.
#pragma once
#include <cstdint>
#include <vector>

#include "graph.h"

namespace recompiler {

enum SimError : int {
    kOk = 0,
    kOutOfRange = 1,      // step, node
    kInputScheduled = 2,  // step, node
    kDepMissing = 3,      // step, node, dep
    kNeverComputed = 4,   // node
    kPinnedRepeated = 5,  // node, count (in dep)
};

struct SimOutcome {
    int error = kOk;
    int step = -1;
    int node = -1;
    int dep = -1;
    int64_t peak = 0;
    double cost = 0.0;
    std::vector<int64_t> live;  // bytes live at each step (inputs and fixed memory included)
};

// O(T + sum of deps over the schedule). Byte sums are exact in int64: at most one value of each
// node is live at a step, and CostGraph refuses graphs whose sizes (each node at its largest
// variant option) plus fixed memory add up to more than 2**63 - 1 (recompiler/graph.py MAX_BYTES).
SimOutcome simulate(const Graph& g, const int* schedule, int64_t T, bool want_live);

}  // namespace recompiler
