// FastSA (Imanishi et al., NeurIPS 2023): simulated annealing over a slot array with
// recomputations, node grouping, and a range-add / range-max segment tree for the peak.
// Plain C++17, no pybind11: bindings.cpp converts Python objects into these structs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "graph.h"

namespace recompiler {

// One lowering of a variant group (DESIGN.md): per-node compute, bytes and, optionally, deps.
// Option 0 carries the graph's own values (the caller fills them in).
struct VariantOptionSpec {
    bool exact = true;
    std::vector<double> compute;           // one per group node
    std::vector<int64_t> memory;           // one per group node
    bool has_deps = false;
    std::vector<std::vector<int>> deps;    // one list per group node when has_deps
};

struct VariantGroupSpec {
    std::vector<int> nodes;
    std::vector<VariantOptionSpec> options;
};

struct FastSAConfig {
    int64_t stage1_iterations = 0;         // grouped stage, stops once the budget is met; 0 = 20000 per node in [2e6, 2e7]
    int64_t stage2_iterations = 0;         // ungrouped stage, fixed length; 0 = max(2e6, 8000 per node)
    int64_t slots = 0;                     // slot-array length T; 0 = automatic (scales with the schedule)
    uint64_t seed = 0;
    double time_limit = -1.0;              // seconds for the whole solve; < 0 = none
    int restarts = 0;                      // independent runs, best kept; 0 = 4 up to 200 nodes, else 2
    int threads = 2;                       // restarts run on this many std::threads
    bool grouping = true;                  // Algorithm 1 for stage 1
    int max_group_size = 64;               // cap on the nodes one group may hold
    bool allow_approx = false;             // variant options with exact == false allowed
    double local_rotate = 0.9;             // share of rotate moves that stay near their slot
    double near_use = 0.5;                 // share of add moves placed just before a use of the node
    double segment_moves = 0.1;            // share of moves that recompute (or drop) a chain of nodes at once
    int max_segment = 16;                  // most nodes one segment move touches
    double swap_share = 0.33;              // share of segment moves that swap a recomputation for one further up
    bool polish = true;                    // end each restart by dropping recomputations that cost bytes nothing
    double over_weight = 10.0;             // stage 2: extra weight of bytes over the budget in the objective
    // A valid schedule (node ids, recomputations repeated) to start one extra restart from: it
    // skips stage 1 and refines this schedule in stage 2 at a low temperature, so the result is
    // never worse than it. Empty = no such restart. initial_variant: its option per group.
    std::vector<int> initial_schedule;
    std::vector<int> initial_variant;
    double initial_temperature = 0.1;      // stage 2's starting temperature there, as a share of stage 1's h_i
};

struct FastSAResult {
    std::vector<int> schedule;   // node ids in execution order
    std::vector<int> variant;    // option per variant group
    int64_t peak = 0;            // the solver's own peak (bytes, always_live included); simulate re-judges
    double cost = 0.0;
    bool feasible = false;
    int best_restart = -1;
    int restarts_done = 0;
    int64_t iterations = 0;      // all restarts
    int64_t accepted = 0;
    int64_t stage1_iterations = 0;
    int64_t stage2_iterations = 0;
    int64_t slots = 0;
    int groups = 0;              // grouped ops in stage 1 of the best restart
    double seconds = 0.0;        // wall clock of the whole solve
    double cpu_seconds = 0.0;    // thread CPU time, summed over restarts
    double thread_seconds = 0.0; // wall time of each restart, summed
    bool timed_out = false;
    bool stage1_met_budget = false;
    bool from_initial = false;   // the kept plan came from the restart seeded with initial_schedule
};

// Run FastSA on `g` (option 0 of every variant group already applied) under `budget` bytes
// (a peak including g.always_live). Deterministic for a seed unless the time limit cuts it short.
FastSAResult fastsa_solve(const Graph& g, const std::vector<VariantGroupSpec>& groups, int64_t budget,
                          const FastSAConfig& config);

}  // namespace recompiler
