// FastSA: see fastsa.h and ../shared/papers/NOTES.md ("FastSA").
//
// Every op produces exactly one value, and an op's id is the id of the node whose value it
// produces (a group made by Algorithm 1 produces the value of its last node: with single-output
// nodes, out(g) = (out(n1) \ in(n2)) ∪ out(n2) = out(n2) because n1 is only fused into nodes that
// consume its output). Values of graph inputs are always live and are not tracked.
#include "fastsa.h"
#include "simulate.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <functional>
#include <memory>
#include <thread>

#include <time.h>

namespace recompiler {
namespace {

using Clock = std::chrono::steady_clock;

// xoshiro256** seeded by splitmix64: fast, and identical on every platform.
struct Rng {
    uint64_t s[4];
    explicit Rng(uint64_t seed) {
        for (auto& x : s) {
            seed += 0x9E3779B97F4A7C15ULL;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            x = z ^ (z >> 31);
        }
    }
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t next() {
        const uint64_t r = rotl(s[1] * 5, 7) * 9;
        const uint64_t t = s[1] << 17;
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
        s[2] ^= t; s[3] = rotl(s[3], 45);
        return r;
    }
    // Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-32 for our n).
    uint32_t below(uint32_t n) { return uint32_t(((next() >> 32) * uint64_t(n)) >> 32); }
    double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
};

// Range-add / range-max over T slots, iterative (no recursion, no push-down): mx[i] is the max
// of node i's range including the adds stored at i; ad[i] the add pending on internal node i.
class SegTree {
public:
    void init(int n) {
        N = 1;
        while (N < n) N <<= 1;
        mx.assign(2 * size_t(N), 0);
        ad.assign(size_t(N), 0);
    }
    void add(int l, int r, int64_t x) {  // inclusive [l, r]
        if (l > r || x == 0) return;
        int a = l + N, b = r + N + 1;
        const int la = a, lb = b - 1;
        while (a < b) {
            if (a & 1) apply(a++, x);
            if (b & 1) apply(--b, x);
            a >>= 1; b >>= 1;
        }
        pull(la, lb);
    }
    int64_t max() const { return mx[1]; }

private:
    int N = 1;
    std::vector<int64_t> mx, ad;
    void apply(int i, int64_t x) {
        mx[i] += x;
        if (i < N) ad[i] += x;
    }
    void fix(int i) { mx[i] = std::max(mx[2 * i], mx[2 * i + 1]) + ad[i]; }
    // Recompute the ancestors of leaves a <= b bottom-up; above their common ancestor, once.
    void pull(int a, int b) {
        for (a >>= 1, b >>= 1; a != b; a >>= 1, b >>= 1) {
            fix(a);
            fix(b);
        }
        for (; a >= 1; a >>= 1) fix(a);
    }
};

// Costs of every node with one option chosen per variant group.
struct Resolved {
    std::vector<double> compute;
    std::vector<int64_t> memory;
    std::vector<std::vector<int>> deps;  // non-input deps, deduplicated, ascending
};

std::vector<int> clean_deps(const Graph& g, const int* b, const int* e) {
    std::vector<int> out;
    for (const int* d = b; d != e; ++d)
        if (!g.is_input[*d]) out.push_back(*d);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Resolved resolve(const Graph& g, const std::vector<VariantGroupSpec>& groups, const std::vector<int>& variant) {
    Resolved r;
    r.compute = g.compute;
    r.memory = g.memory;
    r.deps.resize(g.n);
    for (int v = 0; v < g.n; ++v) r.deps[v] = clean_deps(g, g.deps_begin(v), g.deps_end(v));
    for (size_t gi = 0; gi < groups.size(); ++gi) {
        const VariantOptionSpec& o = groups[gi].options[variant[gi]];
        for (size_t k = 0; k < groups[gi].nodes.size(); ++k) {
            const int v = groups[gi].nodes[k];
            r.compute[v] = o.compute[k];
            r.memory[v] = o.memory[k];
            if (o.has_deps) r.deps[v] = clean_deps(g, o.deps[k].data(), o.deps[k].data() + o.deps[k].size());
        }
    }
    return r;
}

// The ops one stage anneals over; op id == node id == id of the value it produces.
struct OpSet {
    int n = 0;
    std::vector<uint8_t> exists, pinned, is_out;
    std::vector<double> cost;
    std::vector<int64_t> size;   // bytes of value v
    std::vector<int64_t> inner;  // bytes live inside a grouped op besides its inputs and output
    std::vector<int> in_off, in_len, pool;  // input values of op v: pool[in_off[v] .. + in_len[v])
    std::vector<std::vector<int>> seq;      // nodes an op runs, in order (stage 1 groups)
    // Stage 2 only: input lists of every (group, option, node), so a variant switch is a pointer swap.
    std::vector<std::vector<std::vector<std::pair<int, int>>>> opt_in;  // [group][option][k] -> (off, len)
};

void set_inputs(OpSet& ops, int v, const std::vector<int>& in) {
    ops.in_off[v] = int(ops.pool.size());
    ops.in_len[v] = int(in.size());
    ops.pool.insert(ops.pool.end(), in.begin(), in.end());
}

OpSet base_ops(const Graph& g, const Resolved& r) {
    OpSet ops;
    ops.n = g.n;
    ops.exists.assign(g.n, 0);
    ops.pinned = g.pinned;
    ops.is_out = g.is_output;
    ops.cost = r.compute;
    ops.size = r.memory;
    ops.inner.assign(g.n, 0);
    ops.in_off.assign(g.n, 0);
    ops.in_len.assign(g.n, 0);
    ops.seq.resize(g.n);
    for (int v = 0; v < g.n; ++v) {
        if (g.is_input[v]) continue;
        ops.exists[v] = 1;
        set_inputs(ops, v, r.deps[v]);
        ops.seq[v] = {v};
    }
    return ops;
}

// Bytes live inside a group while it runs, beyond its inputs and its output (Appendix B.1).
int64_t inner_bytes(const std::vector<int>& seq, const Resolved& r) {
    const size_t L = seq.size();
    if (L < 2) return 0;
    std::vector<size_t> end(L);
    for (size_t k = 0; k < L; ++k) {
        end[k] = k;
        for (size_t j = k + 1; j < L && seq[j] != seq[k]; ++j) {
            const auto& d = r.deps[seq[j]];
            if (std::binary_search(d.begin(), d.end(), seq[k])) end[k] = j;
        }
    }
    // The tree counts the group's inputs and its output at the group's slot; inside, step k also
    // holds the internal values live there, but the output only exists from the last step on.
    int64_t best = 0;
    for (size_t k = 0; k < L; ++k) {
        int64_t live = 0;
        for (size_t j = 0; j + 1 < L && j <= k; ++j)
            if (end[j] >= k) live += r.memory[seq[j]];
        if (k + 1 < L) live -= r.memory[seq[L - 1]];
        best = std::max(best, live);
    }
    return best;
}

// Algorithm 1 (node grouping): a node whose inputs are no larger than its output is fused into
// every later node that consumes it, and dropped. Never fuses pinned nodes, model outputs, nodes
// without consumers, or beyond max_group_size nodes per group.
OpSet grouped_ops(const Graph& g, const Resolved& r, int max_group) {
    const int n = g.n;
    std::vector<std::vector<int>> in(n), users(n), seq(n);
    std::vector<uint8_t> alive(n, 0);
    for (int v = 0; v < n; ++v) {
        if (g.is_input[v]) continue;
        alive[v] = 1;
        in[v] = r.deps[v];
        seq[v] = {v};
        for (int d : in[v]) users[d].push_back(v);
    }
    for (int i = 0; i < n; ++i) {
        if (!alive[i] || g.pinned[i] || g.is_output[i] || users[i].empty()) continue;
        int64_t in_bytes = 0;
        for (int d : in[i]) in_bytes += r.memory[d];
        if (in_bytes > r.memory[i]) continue;
        bool fits = true;
        for (int j : users[i])
            if (int(seq[i].size() + seq[j].size()) > max_group) fits = false;
        if (!fits) continue;
        const std::vector<int> consumers = users[i];
        for (int j : consumers) {
            std::vector<int> merged;
            std::set_union(in[i].begin(), in[i].end(), in[j].begin(), in[j].end(), std::back_inserter(merged));
            merged.erase(std::remove(merged.begin(), merged.end(), i), merged.end());
            for (int d : in[i])
                if (!std::binary_search(in[j].begin(), in[j].end(), d)) users[d].push_back(j);
            in[j] = std::move(merged);
            std::vector<int> s = seq[i];
            s.insert(s.end(), seq[j].begin(), seq[j].end());
            seq[j] = std::move(s);
        }
        for (int d : in[i]) {
            auto& u = users[d];
            u.erase(std::remove(u.begin(), u.end(), i), u.end());
        }
        users[i].clear();
        alive[i] = 0;
    }
    OpSet ops = base_ops(g, r);
    ops.pool.clear();
    for (int v = 0; v < n; ++v) {
        ops.exists[v] = alive[v];
        if (!alive[v]) continue;
        set_inputs(ops, v, in[v]);
        ops.seq[v] = seq[v];
        double c = 0.0;
        for (int x : seq[v]) c += r.compute[x];
        ops.cost[v] = c;
        ops.inner[v] = inner_bytes(seq[v], r);
    }
    return ops;
}

// The annealing state: slot array, per-value sorted production / use times, live-bytes tree.
class State {
public:
    State(OpSet ops_in, const std::vector<int>& order, int64_t T_, int64_t always_live, int64_t budget)
        : ops(std::move(ops_in)), T(int(T_)), base(always_live), budget(budget) {
        slot.assign(T, -1);
        occ_pos.assign(T, -1);
        prod.resize(ops.n);
        uses.resize(ops.n);
        tree.init(T);
        for (int v = 0; v < ops.n; ++v)
            if (ops.exists[v] && !ops.pinned[v]) movable.push_back(v);
        const int64_t L = int64_t(order.size());
        for (int64_t k = 0; k < L; ++k) apply_add(order[k], int(((2 * k + 1) * int64_t(T - 1)) / (2 * L)));
    }

    OpSet ops;
    const int T;
    const int64_t base, budget;
    std::vector<int> slot, occ, occ_pos, movable;
    std::vector<std::vector<int>> prod, uses;
    SegTree tree;
    double cost = 0.0;

    int64_t peak() const { return tree.max() + base; }
    // The paper's max(budget, M) * C, plus over_weight * (M - budget) * C above the budget. Stage 2
    // sets over_weight > 0: with the pure form, a plan slightly over the budget but cheaper scores
    // better than the feasible one, so stage 2 drifts out of the budget it is meant to keep.
    double objective() const {
        const int64_t m = peak();
        if (m <= budget) return double(budget) * cost;
        return (double(m) + over_weight * double(m - budget)) * cost;
    }
    double over_weight = 0.0;
    int length() const { return int(occ.size()); }

    const int* in_begin(int v) const { return ops.pool.data() + ops.in_off[v]; }
    const int* in_end(int v) const { return ops.pool.data() + ops.in_off[v] + ops.in_len[v]; }

    bool can_add(int op, int t) const {
        if (ops.pinned[op]) return false;
        for (const int* d = in_begin(op); d != in_end(op); ++d)
            if (prod[*d].empty() || prod[*d][0] >= t) return false;
        return true;
    }
    bool can_remove(int op, int t) const {
        if (ops.pinned[op]) return false;
        const auto& P = prod[op];
        if (P.size() < 2) return false;  // every op keeps an occurrence
        if (P[0] == t) {
            const auto& U = uses[op];
            if (!U.empty() && U[0] < P[1]) return false;
        }
        return true;
    }

    void apply_add(int op, int t) {
        slot[t] = op;
        occ_pos[t] = int(occ.size());
        occ.push_back(t);
        for (const int* d = in_begin(op); d != in_end(op); ++d) add_use(*d, t);
        add_prod(op, t);
        if (ops.inner[op]) tree.add(t, t, ops.inner[op]);
        cost += ops.cost[op];
    }
    void apply_remove(int op, int t) {
        if (ops.inner[op]) tree.add(t, t, -ops.inner[op]);
        remove_prod(op, t);
        for (const int* d = in_begin(op); d != in_end(op); ++d) remove_use(*d, t);
        const int i = occ_pos[t], last = occ.back();
        occ[i] = last;
        occ_pos[last] = i;
        occ.pop_back();
        occ_pos[t] = -1;
        slot[t] = -1;
        cost -= ops.cost[op];
    }

    // Segment add: recompute `op` just before its use at time u, together with up to k - 1 of its
    // ancestors (each step the input whose latest value before u is oldest), in dependency order
    // in the free slots just below u (at most `scan` slots looked at). One node at a time cannot
    // find deep checkpointing: recomputing one node stretches its inputs' lifetimes, which only
    // recomputing those too undoes. `added` gets the slots filled; false (nothing added) if no
    // such segment fits.
    bool add_segment(int op, int u, int k, int scan, std::vector<int>& added) {
        added.clear();
        chain.clear();
        chain.push_back(op);
        for (int cur = op; int(chain.size()) < k;) {
            int pick = -1, oldest = INT_MAX;
            for (const int* d = in_begin(cur); d != in_end(cur); ++d) {
                if (ops.pinned[*d] || std::find(chain.begin(), chain.end(), *d) != chain.end()) continue;
                const int i = index_before(prod[*d], u);
                if (i < 0) continue;
                if (prod[*d][i] < oldest) oldest = prod[*d][i], pick = *d;
            }
            if (pick < 0) break;
            chain.push_back(pick);
            cur = pick;
        }
        free_slots.clear();
        for (int t = u - 1; t >= 0 && u - t <= scan && free_slots.size() < chain.size(); --t)
            if (slot[t] < 0) free_slots.push_back(t);
        const int len = int(free_slots.size());  // the chain's head (op and its nearest ancestors)
        for (int i = len - 1; i >= 0; --i) {
            if (!can_add(chain[i], free_slots[i])) {
                for (auto it = added.rbegin(); it != added.rend(); ++it) apply_remove(slot[*it], *it);
                added.clear();
                return false;
            }
            apply_add(chain[i], free_slots[i]);
            added.push_back(free_slots[i]);
        }
        return len > 0;
    }
    // Segment remove: drop the recomputation at t1 and then, walking back over at most `scan` slots,
    // the recomputations of its inputs that feed it (up to k in all): the inverse of add_segment.
    // `removed` gets (slot, op) in removal order; false if nothing was removed.
    bool remove_segment(int t1, int k, int scan, std::vector<std::pair<int, int>>& removed) {
        removed.clear();
        int op = slot[t1];
        if (op < 0 || !can_remove(op, t1)) return false;
        apply_remove(op, t1);
        removed.emplace_back(t1, op);
        for (int t = t1 - 1; t >= 0 && t1 - t <= scan && int(removed.size()) < k; --t) {
            const int x = slot[t];
            if (x < 0) continue;
            const int last = removed.back().second;
            if (std::find(in_begin(last), in_end(last), x) == in_end(last)) continue;
            if (!can_remove(x, t)) break;
            apply_remove(x, t);
            removed.emplace_back(t, x);
        }
        return true;
    }

    // The ops in time order.
    std::vector<int> sequence() const {
        std::vector<int> ts = occ;
        std::sort(ts.begin(), ts.end());
        std::vector<int> out;
        out.reserve(ts.size());
        for (int t : ts) out.push_back(slot[t]);
        return out;
    }

    // Variant switch (stage 2): group gi's nodes take option o's costs, bytes and inputs.
    bool can_switch(const std::vector<VariantGroupSpec>& groups, int gi, int o) const {
        const auto& nodes = groups[gi].nodes;
        for (size_t k = 0; k < nodes.size(); ++k) {
            const int u = nodes[k];
            if (!ops.exists[u]) continue;
            const auto [off, len] = ops.opt_in[gi][o][k];
            for (int t : prod[u])
                for (int j = off; j < off + len; ++j) {
                    const int d = ops.pool[j];
                    if (prod[d].empty() || prod[d][0] >= t) return false;
                }
        }
        return true;
    }
    void apply_switch(const std::vector<VariantGroupSpec>& groups, int gi, int o) {
        const auto& nodes = groups[gi].nodes;
        const auto& opt = groups[gi].options[o];
        for (int u : nodes)
            if (ops.exists[u])
                for (int t : prod[u])
                    for (const int* d = in_begin(u); d != in_end(u); ++d) remove_use(*d, t);
        for (int u : nodes)
            if (ops.exists[u]) add_intervals(u, -ops.size[u]);
        for (size_t k = 0; k < nodes.size(); ++k) {
            const int u = nodes[k];
            if (!ops.exists[u]) continue;
            cost += (opt.compute[k] - ops.cost[u]) * double(prod[u].size());
            ops.cost[u] = opt.compute[k];
            ops.size[u] = opt.memory[k];
            ops.in_off[u] = ops.opt_in[gi][o][k].first;
            ops.in_len[u] = ops.opt_in[gi][o][k].second;
        }
        for (int u : nodes)
            if (ops.exists[u]) add_intervals(u, ops.size[u]);
        for (int u : nodes)
            if (ops.exists[u])
                for (int t : prod[u])
                    for (const int* d = in_begin(u); d != in_end(u); ++d) add_use(*d, t);
    }

private:
    std::vector<int> chain, free_slots;  // scratch of add_segment
    static int index_before(const std::vector<int>& P, int t) {  // largest index with P[i] < t, or -1
        return int(std::lower_bound(P.begin(), P.end(), t) - P.begin()) - 1;
    }
    // Last step the i-th production of v is live (DESIGN.md liveness).
    int end_of(int v, int i) const {
        const auto& P = prod[v];
        const int p = P[i];
        const bool last = i + 1 == int(P.size());
        if (last && ops.is_out[v]) return T - 1;
        const int next = last ? INT_MAX : P[i + 1];
        const auto& U = uses[v];
        auto it = std::lower_bound(U.begin(), U.end(), next);
        if (it != U.begin() && *(it - 1) > p) return *(it - 1);
        return p;
    }
    void add_intervals(int v, int64_t x) {
        for (int i = 0; i < int(prod[v].size()); ++i) tree.add(prod[v][i], end_of(v, i), x);
    }
    void add_use(int v, int t) {
        const int i = index_before(prod[v], t);
        const int e = end_of(v, i);
        auto& U = uses[v];
        U.insert(std::lower_bound(U.begin(), U.end(), t), t);
        if (t > e) tree.add(e + 1, t, ops.size[v]);
    }
    void remove_use(int v, int t) {
        const int i = index_before(prod[v], t);
        const int e_old = end_of(v, i);
        auto& U = uses[v];
        U.erase(std::lower_bound(U.begin(), U.end(), t));
        const int e_new = end_of(v, i);
        if (e_new < e_old) tree.add(e_new + 1, e_old, -ops.size[v]);
    }
    // Slot T-1 is never occupied, so an output's last interval always ends after its start.
    void add_prod(int v, int t) {
        auto& P = prod[v];
        const int i = int(std::lower_bound(P.begin(), P.end(), t) - P.begin());
        const int64_t s = ops.size[v];
        if (i > 0) {
            const int ep = end_of(v, i - 1);
            P.insert(P.begin() + i, t);
            if (ep >= t) tree.add(end_of(v, i - 1) + 1, t - 1, -s);  // split
            else tree.add(t, t, s);                                  // a fresh, unused interval
        } else {
            P.insert(P.begin(), t);
            tree.add(t, end_of(v, 0), s);
        }
    }
    void remove_prod(int v, int t) {
        auto& P = prod[v];
        const int i = int(std::lower_bound(P.begin(), P.end(), t) - P.begin());
        const int64_t s = ops.size[v];
        const int et = end_of(v, i);
        if (i > 0) {
            if (et > t) tree.add(end_of(v, i - 1) + 1, t - 1, s);  // merge with the previous interval
            else tree.add(t, t, -s);
        } else {
            tree.add(t, et, -s);
        }
        P.erase(P.begin() + i);
    }
};

int64_t auto_slots(int64_t length, int64_t configured) {
    int64_t want = configured > 0 ? configured : std::max<int64_t>(1024, 16 * length);
    want = std::max<int64_t>(want, 2 * length + 2);
    int64_t T = 1;
    while (T < want) T <<= 1;
    return T;
}

// Over the budget the lower peak is better, but peaks within 0.1% of each other tie and the cheaper
// plan wins: a plan a few bytes lower is not worth a few percent more compute when neither fits.
// (fastsa.py's _better_rank is the same rule.)
bool over_budget_better(int64_t p, double c, int64_t best_p, double best_c) {
    constexpr double tie = 1e-3;
    if (double(p) < double(best_p) * (1.0 - tie)) return true;
    if (double(best_p) < double(p) * (1.0 - tie)) return false;
    if (c < best_c * (1.0 - 1e-12)) return true;
    if (best_c < c * (1.0 - 1e-12)) return false;
    return p < best_p;
}

// The best stage-2 state seen: feasible and cheapest, else the lowest peak (see over_budget_better).
struct Best {
    bool has = false, feasible = false;
    double cost = 0.0;
    int64_t peak = 0;
    std::vector<std::pair<int, int>> snap;  // (slot, op)
    std::vector<int> variant;

    void offer(const State& s, const std::vector<int>& variant_now) {
        const int64_t p = s.peak();
        const bool f = p <= s.budget;
        bool better;
        if (!has) better = true;
        else if (f != feasible) better = f;
        else if (f) better = s.cost < cost * (1.0 - 1e-12);
        else better = over_budget_better(p, s.cost, peak, cost);
        if (!better) return;
        has = true; feasible = f; cost = s.cost; peak = p;
        snap.clear();
        for (int t : s.occ) snap.emplace_back(t, s.slot[t]);
        variant = variant_now;
    }
    std::vector<int> schedule() const {
        auto v = snap;
        std::sort(v.begin(), v.end());
        std::vector<int> out;
        for (auto& [t, op] : v) out.push_back(op);
        return out;
    }
};

struct StageRun {
    int64_t iterations = 0, accepted = 0;
    double final_temp = 0.0;
    bool met = false, timed_out = false;
};

struct VariantMoves {
    const std::vector<VariantGroupSpec>* groups = nullptr;
    std::vector<std::vector<int>> allowed;  // options allowed per group
    std::vector<int> switchable;            // groups with more than one allowed option
    std::vector<int>* current = nullptr;
};

using ExactCheck = std::function<bool(const State&)>;

// One annealing stage. With stop_when_met it ends once the budget holds, judged by the state's own
// peak or, each time that peak reaches a new low, by `exact` (stage 1: the ungrouped schedule's
// true peak, since the grouped model over-counts memory inside groups).
StageRun anneal(State& s, Rng& rng, int64_t iterations, double temp0, double temp1, bool stop_when_met,
                bool has_deadline, Clock::time_point deadline, Best* best, VariantMoves* vm, const FastSAConfig& mix,
                const ExactCheck* exact = nullptr) {
    const double local_share = mix.local_rotate, near_use = mix.near_use;
    const int max_segment = std::max(2, mix.max_segment);
    std::vector<int> seg_added;
    std::vector<std::pair<int, int>> seg_removed;
    StageRun run;
    double temp = temp0;
    const double factor = iterations > 0 ? std::pow(temp1 / temp0, 1.0 / double(iterations)) : 1.0;
    double f = s.objective();
    int64_t low = s.peak();
    if (best) best->offer(s, *vm->current);
    if (stop_when_met && (s.peak() <= s.budget || (exact && (*exact)(s)))) {
        run.met = true;
        run.final_temp = temp;
        return run;
    }
    const bool variants = vm && !vm->switchable.empty();
    const uint32_t Tm1 = uint32_t(s.T - 1);  // slots 0 .. T-2 may hold ops
    auto random_nop = [&](int& t) {
        for (int tries = 0; tries < 64; ++tries) {
            t = int(rng.below(Tm1));
            if (s.slot[t] < 0) return true;
        }
        return false;
    };
    // A slot that holds an op, preferring (a few draws) one whose op is computed more than once.
    auto random_recomputation = [&]() {
        int t = -1;
        for (int tries = 0; tries < 4; ++tries) {
            t = s.occ[rng.below(uint32_t(s.occ.size()))];
            if (s.prod[s.slot[t]].size() > 1) break;
        }
        return t;
    };
    int64_t i = 0;
    for (; i < iterations; ++i, temp *= factor) {
        if ((i & 1023) == 0 && has_deadline && Clock::now() > deadline) {
            run.timed_out = true;
            break;
        }
        const uint64_t r = rng.next();
        uint32_t kind = uint32_t(r % 3);
        bool applied = false;
        int op = -1, t1 = -1, t2 = -1, vg = -1, vold = -1;
        if (mix.segment_moves > 0.0 && rng.uniform() < mix.segment_moves) {
            // Segment moves (kinds 3 and 4): several nodes recomputed, or un-recomputed, at once.
            const int k = 2 + int(rng.below(uint32_t(max_segment - 1)));
            const int scan = int(std::max<int64_t>(4, 4 * int64_t(s.T) / std::max(1, s.length()))) * k;
            const uint32_t which = (mix.swap_share > 0.0 && rng.uniform() < mix.swap_share) ? 2u : uint32_t((r >> 20) & 1);
            if (which == 2) {
                // Swap: drop one recomputation, then recompute one of its inputs (with a chain of
                // ancestors) just before a later use instead: trades a costly recomputation for a
                // cheaper one further up, which no single move reaches without a large uphill step.
                kind = 5;
                t1 = random_recomputation();
                op = s.slot[t1];
                if (!s.can_remove(op, t1) || s.ops.in_len[op] == 0) continue;
                const int d = s.in_begin(op)[rng.below(uint32_t(s.ops.in_len[op]))];
                if (s.ops.pinned[d]) continue;
                s.apply_remove(op, t1);
                const auto& U = s.uses[d];
                const auto later = std::upper_bound(U.begin(), U.end(), t1);
                if (later == U.end()) { s.apply_add(op, t1); continue; }
                const int u = later[rng.below(uint32_t(U.end() - later))];
                applied = s.add_segment(d, u, k - 1, scan, seg_added);
                if (!applied) { s.apply_add(op, t1); continue; }
            } else if (which == 0) {
                kind = 3;
                if (s.movable.empty()) continue;
                op = s.movable[rng.below(uint32_t(s.movable.size()))];
                const auto& U = s.uses[op];
                // An output may also be recomputed at the very end, so that it is live only there.
                const bool at_end = s.ops.is_out[op] && (U.empty() || (r >> 21) & 1);
                if (U.empty() && !at_end) continue;
                const int u = at_end ? s.T - 1 : U[rng.below(uint32_t(U.size()))];
                applied = s.add_segment(op, u, k, scan, seg_added);
            } else {
                kind = 4;
                t1 = random_recomputation();
                applied = s.remove_segment(t1, k, scan, seg_removed);
            }
            if (!applied) continue;
        } else if (variants && ((r >> 8) & 63) == 0) {
            vg = vm->switchable[rng.below(uint32_t(vm->switchable.size()))];
            const auto& al = vm->allowed[vg];
            const int o = al[rng.below(uint32_t(al.size()))];
            vold = (*vm->current)[vg];
            if (o == vold || !s.can_switch(*vm->groups, vg, o)) continue;
            s.apply_switch(*vm->groups, vg, o);
            (*vm->current)[vg] = o;
            applied = true;
            t1 = -2;  // marks a variant move
            t2 = o;
        } else if (kind == 0) {  // add
            if (s.movable.empty()) continue;
            op = s.movable[rng.below(uint32_t(s.movable.size()))];
            const auto& U = s.uses[op];
            if (!U.empty() && rng.uniform() < near_use) {
                // Just before one of its uses: the recomputation that can shorten a lifetime.
                const int u = U[rng.below(uint32_t(U.size()))];
                const int span = int(std::max<int64_t>(2, 2 * int64_t(s.T) / std::max(1, s.length())));
                t2 = u - 1 - int(rng.below(uint32_t(span)));
                if (t2 < 0 || s.slot[t2] >= 0) continue;
            } else if (!random_nop(t2)) {
                continue;
            }
            if (!s.can_add(op, t2)) continue;
            s.apply_add(op, t2);
            applied = true;
        } else if (kind == 1) {  // remove (a few draws to find a node computed more than once)
            t1 = random_recomputation();
            op = s.slot[t1];
            if (!s.can_remove(op, t1)) continue;
            s.apply_remove(op, t1);
            applied = true;
        } else {  // rotate: move an op to a nop slot (add there, then remove here)
            t1 = s.occ[rng.below(uint32_t(s.occ.size()))];
            op = s.slot[t1];
            if (s.ops.pinned[op]) continue;
            if (rng.uniform() < local_share) {
                const int span = int(std::max<int64_t>(4, 4 * int64_t(s.T) / std::max(1, s.length())));
                t2 = t1 + int(rng.below(uint32_t(2 * span + 1))) - span;
                if (t2 < 0 || t2 >= int(Tm1) || s.slot[t2] >= 0) continue;
            } else if (!random_nop(t2)) {
                continue;
            }
            if (!s.can_add(op, t2)) continue;
            s.apply_add(op, t2);
            if (!s.can_remove(op, t1)) {
                s.apply_remove(op, t2);
                continue;
            }
            s.apply_remove(op, t1);
            applied = true;
        }
        if (!applied) continue;
        const double fn = s.objective();
        const double drop = (f - fn) / temp;  // <= 0 for an uphill move
        if (fn <= f || (drop > -40.0 && rng.uniform() < std::exp(drop))) {
            f = fn;
            ++run.accepted;
            if (best) best->offer(s, *vm->current);
            if (stop_when_met) {
                const int64_t p = s.peak();
                bool met = p <= s.budget;
                if (!met && exact && p < low) {
                    low = p;
                    met = (*exact)(s);
                }
                if (met) {
                    run.met = true;
                    ++i;
                    break;
                }
            }
        } else if (t1 == -2) {  // undo by the inverse move
            s.apply_switch(*vm->groups, vg, vold);
            (*vm->current)[vg] = vold;
        } else if (kind == 3 || kind == 5) {
            for (auto it = seg_added.rbegin(); it != seg_added.rend(); ++it) s.apply_remove(s.slot[*it], *it);
            if (kind == 5) s.apply_add(op, t1);
        } else if (kind == 4) {
            for (auto it = seg_removed.rbegin(); it != seg_removed.rend(); ++it) s.apply_add(it->second, it->first);
        } else if (kind == 0) {
            s.apply_remove(op, t2);
        } else if (kind == 1) {
            s.apply_add(op, t1);
        } else {
            s.apply_add(op, t1);
            s.apply_remove(op, t2);
        }
    }
    run.iterations = i;
    run.final_temp = temp;
    return run;
}

// Polish: drop, to a fixpoint, every recomputation whose removal keeps the plan within its bound
// (the budget when it fits, else its own peak). Annealing ends with such leftovers — moves that
// were accepted uphill and never undone — and removing one never raises the cost.
void polish(State& s) {
    const int64_t bound = s.peak() <= s.budget ? s.budget : s.peak();
    for (int pass = 0; pass < 8; ++pass) {
        std::vector<int> ts = s.occ;
        std::sort(ts.begin(), ts.end());
        bool changed = false;
        for (int t : ts) {
            const int op = s.slot[t];
            if (op < 0 || !s.can_remove(op, t)) continue;
            s.apply_remove(op, t);
            if (s.peak() <= bound) changed = true;
            else s.apply_add(op, t);
        }
        if (!changed) break;
    }
}

double thread_cpu_seconds();

struct RestartResult {
    Best best;
    int64_t iterations = 0, accepted = 0, stage1 = 0, stage2 = 0, slots = 0;
    int groups = 0;
    double seconds = 0.0, cpu_seconds = 0.0;
    bool timed_out = false, met = false;
};

RestartResult run_restart(const Graph& g, const std::vector<VariantGroupSpec>& groups, int64_t budget,
                          const FastSAConfig& cfg, uint64_t seed, const std::vector<int>& variant0,
                          bool grouping, bool has_deadline, Clock::time_point deadline,
                          const std::vector<int>* initial = nullptr) {
    const auto start = Clock::now();
    const double cpu_start = thread_cpu_seconds();
    RestartResult out;
    Rng rng(seed);
    std::vector<int> variant = variant0;
    const Resolved r = resolve(g, groups, variant);

    // Stage 1 (skipped when starting from a given schedule): grouped ops, the original order spread
    // over the slots; stops once the budget is met.
    std::vector<int> order2;
    double temp2 = 0.0;
    StageRun st1;
    if (initial) {
        order2 = *initial;
    } else {
        OpSet ops1 = grouping ? grouped_ops(g, r, std::max(1, cfg.max_group_size)) : base_ops(g, r);
        std::vector<int> order1;
        for (int v = 0; v < g.n; ++v)
            if (ops1.exists[v]) order1.push_back(v);
        out.groups = int(order1.size());
        if (order1.empty()) {
            out.best.has = true;
            out.best.feasible = g.always_live <= budget;
            out.best.peak = g.always_live;
            out.best.variant = variant;
            return out;
        }
        const int64_t T1 = auto_slots(int64_t(order1.size()), cfg.slots);
        auto s1 = std::make_unique<State>(std::move(ops1), order1, T1, g.always_live, budget);
        // The paper's h_i is 0.1% of the initial objective, tuned on graphs of thousands of nodes; on
        // small graphs one node is a far larger share of the cost, so h_i is at least the objective
        // change of adding one average op (same as the paper's from ~1000 ops up).
        const double h_i = std::max(1e-3, 1.0 / double(order1.size())) * std::max(s1->objective(), 1e-300);
        const double h_f = 1e-4 * h_i;
        // Stage 1 may use most of the time left, stage 2 always gets a share.
        Clock::time_point dl1 = deadline;
        if (has_deadline) dl1 = start + (deadline - start) * 7 / 10;
        // The true peak of a grouped state: expand its groups and simulate.
        Graph gv = g;
        for (int v = 0; v < g.n; ++v) gv.dep_ptr[v + 1] = gv.dep_ptr[v] + int(r.deps[v].size());
        gv.dep_idx.clear();
        for (int v = 0; v < g.n; ++v) gv.dep_idx.insert(gv.dep_idx.end(), r.deps[v].begin(), r.deps[v].end());
        gv.compute = r.compute;
        gv.memory = r.memory;
        std::vector<int> expanded;
        const ExactCheck exact = [&](const State& s) {
            expanded.clear();
            for (int op : s.sequence())
                for (int x : s.ops.seq[op]) expanded.push_back(x);
            const SimOutcome o = simulate(gv, expanded.data(), int64_t(expanded.size()), false);
            return o.error == kOk && o.peak <= budget;
        };
        int64_t n_nodes = 0;
        for (int v = 0; v < g.n; ++v) n_nodes += !g.is_input[v];
        const int64_t iters1 = cfg.stage1_iterations > 0
                                   ? cfg.stage1_iterations
                                   : std::min<int64_t>(20000000, std::max<int64_t>(2000000, 20000 * n_nodes));
        st1 = anneal(*s1, rng, iters1, h_i, h_f, true, has_deadline, dl1, nullptr, nullptr,
                     cfg, grouping ? &exact : nullptr);
        temp2 = st1.iterations >= iters1 ? h_f : st1.final_temp;

        // Ungroup: each group expands into its nodes; stage 2 anneals the exact problem.
        for (int op : s1->sequence())
            for (int x : s1->ops.seq[op]) order2.push_back(x);
        s1.reset();
    }
    OpSet ops2 = base_ops(g, r);
    // Input lists of every variant option, for the switch move.
    VariantMoves vm;
    vm.groups = &groups;
    vm.current = &variant;
    vm.allowed.resize(groups.size());
    ops2.opt_in.resize(groups.size());
    for (size_t gi = 0; gi < groups.size(); ++gi) {
        const auto& G = groups[gi];
        ops2.opt_in[gi].resize(G.options.size());
        bool touches_input = false;
        for (int u : G.nodes) touches_input |= bool(g.is_input[u]);
        for (size_t o = 0; o < G.options.size(); ++o) {
            for (size_t k = 0; k < G.nodes.size(); ++k) {
                const int u = G.nodes[k];
                std::vector<int> d;
                if (G.options[o].has_deps) d = clean_deps(g, G.options[o].deps[k].data(),
                                                          G.options[o].deps[k].data() + G.options[o].deps[k].size());
                else d = clean_deps(g, g.deps_begin(u), g.deps_end(u));
                ops2.opt_in[gi][o].emplace_back(int(ops2.pool.size()), int(d.size()));
                ops2.pool.insert(ops2.pool.end(), d.begin(), d.end());
            }
            if (G.options[o].exact || cfg.allow_approx || int(o) == variant[gi]) vm.allowed[gi].push_back(int(o));
        }
        if (!touches_input && vm.allowed[gi].size() > 1) vm.switchable.push_back(int(gi));
    }
    const int64_t T2 = auto_slots(int64_t(order2.size()), cfg.slots);
    State s2(std::move(ops2), order2, T2, g.always_live, budget);
    s2.over_weight = cfg.over_weight;
    int64_t n_sched = 0;
    for (int v = 0; v < g.n; ++v) n_sched += !g.is_input[v];
    if (initial) {
        // Refine the given schedule: stage 1's h_i rule on its objective, scaled down so that the
        // walk stays near the start instead of forgetting it.
        const double h = std::max(1e-3, 1.0 / double(std::max<int64_t>(1, n_sched))) * std::max(s2.objective(), 1e-300);
        temp2 = cfg.initial_temperature * h;
    }
    const int64_t iters2 = cfg.stage2_iterations > 0 ? cfg.stage2_iterations
                                                     : std::max<int64_t>(2000000, 8000 * n_sched);
    StageRun st2 = anneal(s2, rng, iters2, temp2, temp2 * 1e-4, false, has_deadline, deadline,
                          &out.best, &vm, cfg);
    if (cfg.polish && out.best.has && !out.best.snap.empty()) {
        // the best state seen, rebuilt with its own variant, then polished
        State sb(base_ops(g, resolve(g, groups, out.best.variant)), out.best.schedule(), T2, g.always_live, budget);
        polish(sb);
        out.best.offer(sb, out.best.variant);
    }
    out.iterations = st1.iterations + st2.iterations;
    out.accepted = st1.accepted + st2.accepted;
    out.stage1 = st1.iterations;
    out.stage2 = st2.iterations;
    out.slots = T2;
    out.timed_out = st1.timed_out || st2.timed_out;
    out.met = st1.met;
    out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    out.cpu_seconds = thread_cpu_seconds() - cpu_start;
    return out;
}

// CPU seconds of the calling thread (POSIX), so moves per second do not depend on the machine's load.
double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

uint64_t restart_seed(uint64_t seed, int r) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL * uint64_t(r + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

}  // namespace

FastSAResult fastsa_solve(const Graph& g, const std::vector<VariantGroupSpec>& groups, int64_t budget,
                          const FastSAConfig& cfg) {
    const auto start = Clock::now();
    const bool has_deadline = cfg.time_limit >= 0.0;
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(has_deadline ? cfg.time_limit : 0.0));
    int n_sched = 0;
    for (int v = 0; v < g.n; ++v) n_sched += !g.is_input[v];
    // Small graphs anneal fast and gain most from extra restarts.
    const int R = cfg.restarts > 0 ? cfg.restarts : (n_sched <= 200 ? 4 : 2);
    const int threads = std::max(1, std::min(cfg.threads, R + (cfg.initial_schedule.empty() ? 0 : 1)));

    // Initial variants: option 0 everywhere; odd restarts start from the leanest allowed options.
    std::vector<int> plain(groups.size(), 0), lean(groups.size(), 0);
    for (size_t gi = 0; gi < groups.size(); ++gi) {
        int64_t best = INT64_MAX;
        for (size_t o = 0; o < groups[gi].options.size(); ++o) {
            const auto& opt = groups[gi].options[o];
            if (!opt.exact && !cfg.allow_approx) continue;
            int64_t m = 0;
            for (size_t k = 0; k < opt.memory.size(); ++k)
                if (!g.is_input[groups[gi].nodes[k]]) m += opt.memory[k];
            if (m < best) { best = m; lean[gi] = int(o); }
        }
    }

    // One more restart, last, refines the given initial schedule (it skips stage 1).
    const bool seeded = !cfg.initial_schedule.empty();
    const int runs = R + (seeded ? 1 : 0);
    std::vector<RestartResult> results(runs);
    auto worker = [&](int tid) {
        std::vector<int> mine;
        for (int r = tid; r < runs; r += threads) mine.push_back(r);
        for (size_t k = 0; k < mine.size(); ++k) {
            const int r = mine[k];
            Clock::time_point dl = deadline;
            if (has_deadline) {
                const auto now = Clock::now();
                dl = now + (deadline - now) / int64_t(mine.size() - k);
            }
            // Restarts differ in how they start: with grouping (even r) or without (odd r; the
            // grouped model over-counts memory inside groups, which can stall stage 1 on small
            // graphs), and from option 0 or the leanest options (r % 4 in {1, 2}).
            if (r == R) {
                results[r] = run_restart(g, groups, budget, cfg, restart_seed(cfg.seed, r), cfg.initial_variant,
                                         false, has_deadline, dl, &cfg.initial_schedule);
                continue;
            }
            const bool use_lean = (r % 4 == 1 || r % 4 == 2) && lean != plain;
            const bool grouping = cfg.grouping && (r % 2 == 0 || R == 1);
            results[r] = run_restart(g, groups, budget, cfg, restart_seed(cfg.seed, r), use_lean ? lean : plain,
                                     grouping, has_deadline, dl);
        }
    };
    if (threads == 1) {
        worker(0);
    } else {
        std::vector<std::thread> pool;
        for (int tid = 0; tid < threads; ++tid) pool.emplace_back(worker, tid);
        for (auto& th : pool) th.join();
    }

    FastSAResult out;
    int bi = -1;
    for (int r = 0; r < runs; ++r) {
        const Best& b = results[r].best;
        out.iterations += results[r].iterations;
        out.accepted += results[r].accepted;
        out.cpu_seconds += results[r].cpu_seconds;
        out.thread_seconds += results[r].seconds;
        out.timed_out |= results[r].timed_out;
        if (!b.has) continue;
        ++out.restarts_done;
        if (bi < 0) { bi = r; continue; }
        const Best& c = results[bi].best;
        const bool better = b.feasible != c.feasible ? b.feasible
                            : b.feasible ? b.cost < c.cost
                                         : over_budget_better(b.peak, b.cost, c.peak, c.cost);
        if (better) bi = r;
    }
    if (bi >= 0) {
        const RestartResult& w = results[bi];
        out.schedule = w.best.schedule();
        out.variant = w.best.variant;
        out.peak = w.best.peak;
        out.cost = w.best.cost;
        out.feasible = w.best.feasible;
        out.best_restart = bi;
        out.stage1_iterations = w.stage1;
        out.stage2_iterations = w.stage2;
        out.slots = w.slots;
        out.groups = w.groups;
        out.stage1_met_budget = w.met;
        out.from_initial = bi == R;
    }
    out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return out;
}

}  // namespace recompiler
