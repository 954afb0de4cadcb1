#include "simulate.h"

#include <algorithm>

namespace recompiler {

SimOutcome simulate(const Graph& g, const int* s, int64_t T, bool want_live) {
    SimOutcome out;
    std::vector<int64_t> latest(g.n, -1);  // step of the latest occurrence of each node
    std::vector<int64_t> count(g.n, 0);
    std::vector<int64_t> end(T);           // last step each occurrence is live
    for (int64_t t = 0; t < T; ++t) {
        const int v = s[t];
        if (v < 0 || v >= g.n) {
            out.error = kOutOfRange; out.step = int(t); out.node = v; return out;
        }
        if (g.is_input[v]) {
            out.error = kInputScheduled; out.step = int(t); out.node = v; return out;
        }
        for (const int* d = g.deps_begin(v); d != g.deps_end(v); ++d) {
            if (g.is_input[*d]) continue;
            const int64_t occ = latest[*d];
            if (occ < 0) {
                out.error = kDepMissing; out.step = int(t); out.node = v; out.dep = *d; return out;
            }
            end[occ] = t;  // steps increase, so the last write is the last use
        }
        end[t] = t;
        latest[v] = t;
        ++count[v];
    }
    for (int v = 0; v < g.n; ++v) {
        if (!g.is_input[v] && count[v] == 0) {
            out.error = kNeverComputed; out.node = v; return out;
        }
        if (g.pinned[v] && count[v] > 1) {
            out.error = kPinnedRepeated; out.node = v; out.dep = int(count[v]); return out;
        }
        if (g.is_output[v] && latest[v] >= 0) end[latest[v]] = T - 1;
    }
    // Difference array over steps: +size at the occurrence, -size after its last use.
    std::vector<int64_t> diff(T + 1, 0);
    double cost = 0.0;
    for (int64_t t = 0; t < T; ++t) {
        const int v = s[t];
        diff[t] += g.memory[v];
        diff[end[t] + 1] -= g.memory[v];
        cost += g.compute[v];
    }
    int64_t running = 0, peak = T ? INT64_MIN : 0;
    if (want_live) out.live.resize(T);
    for (int64_t t = 0; t < T; ++t) {
        running += diff[t];
        const int64_t here = running + g.always_live;
        peak = std::max(peak, here);
        if (want_live) out.live[t] = here;
    }
    out.peak = T ? peak : g.always_live;
    out.cost = cost;
    return out;
}

}  // namespace recompiler
