// The two MILP stages against brute force: small instances whose every stream order (stage 1) or every SM
// budget choice (stage 2) is enumerated, each priced by its own shortest period (bisection over longest paths,
// written here independently of the library), must reach exactly the MILP's objective. Also: the possible
// dependencies cover every dependency resolve_pipeline derives at any step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "pipeline/resolved_pipeline.h"
#include "synthetic_profile.h"
#include "core/error.h"
#include "tune/stage1.h"
#include "tune/stage2.h"

namespace nf {
namespace {

// up (compute, x -> h), mix (memory, h -> g), down (compute, g -> x): a layer whose output feeds the next.
op_graph three_op_graph() {
  op_graph g;
  g.family = "three";
  g.buffers = {{"x", "[num_tokens, hidden]", false}, {"h", "[num_tokens, hidden]", false}, {"g", "[num_tokens, hidden]", false}};
  g.ops = {{"up", op_kind::qkv_gemm, resource_class::compute, row_class::all, {{0}}, {{1}}},
           {"mix", op_kind::activation, resource_class::memory, row_class::all, {{1}}, {{2}}},
           {"down", op_kind::down_gemm, resource_class::compute, row_class::all, {{2}}, {{0}}}};
  return g;
}

struct constraint {
  int from, to, offset;
  double weight;  // start[to] >= start[from] + weight - offset * T
};

// Earliest starts exist at period T (no positive cycle).
bool feasible(int n, const std::vector<constraint>& cs, double period) {
  std::vector<double> start(n, 0.0);
  for (int round = 0; round <= n + 1; ++round) {
    bool changed = false;
    for (const constraint& c : cs) {
      const double t = start[c.from] + c.weight - c.offset * period;
      if (t > start[c.to] + 1e-12 * (1 + period)) start[c.to] = t, changed = true;
    }
    if (!changed) return true;
  }
  return false;
}

// The least feasible period, or infinity when none (a cycle within a layer).
double least_period(int n, const std::vector<constraint>& cs) {
  double hi = 1.0;
  for (const constraint& c : cs) hi += std::max(c.weight, 0.0);
  if (!feasible(n, cs, hi)) return std::numeric_limits<double>::infinity();
  double lo = 0.0;
  for (int i = 0; i < 100 && hi - lo > 1e-10 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (feasible(n, cs, mid) ? hi : lo) = mid;
  }
  return hi;
}

// Constraints of given stream sequences and the problem's edges, with durations d.
std::vector<constraint> sequence_constraints(const schedule_problem& p, const std::vector<std::vector<int>>& orders,
                                             const std::vector<double>& d) {
  std::vector<constraint> cs;
  for (const auto& seq : orders) {
    for (size_t i = 0; i + 1 < seq.size(); ++i) cs.push_back({seq[i], seq[i + 1], 0, d[seq[i]]});
    if (!seq.empty()) cs.push_back({seq.back(), seq.front(), 1, d[seq.back()]});
  }
  for (const precedence& e : p.edges) cs.push_back({e.from, e.to, e.layer_offset, d[e.from]});
  return cs;
}

// The best period over every pair of stream orders.
double brute_force_stage1(const schedule_problem& p, const std::vector<double>& d) {
  std::vector<int> compute, memory;
  for (size_t i = 0; i < p.nodes.size(); ++i) (p.nodes[i].stream == compute_stream ? compute : memory).push_back(int(i));
  double best = std::numeric_limits<double>::infinity();
  std::sort(compute.begin(), compute.end());
  do {
    std::sort(memory.begin(), memory.end());
    do {
      best = std::min(best, least_period(int(p.nodes.size()), sequence_constraints(p, {compute, memory}, d)));
    } while (std::next_permutation(memory.begin(), memory.end()));
  } while (std::next_permutation(compute.begin(), compute.end()));
  return best;
}

std::vector<double> random_durations(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> d(n);
  for (double& x : d) x = 1.0 + static_cast<double>(rng() % 1000) / 100.0;
  return d;
}

TEST(stage1, matches_brute_force_over_every_stream_order) {
  const op_graph g = three_op_graph();
  int num_overlapping = 0;
  for (const std::vector<double>& cuts : {std::vector<double>{0, 0.5, 1}, {0, 0.25, 1}, {0, 1.0 / 3, 2.0 / 3, 1}}) {
    const schedule_problem p = make_schedule_problem(g, cuts, {0, 512});
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      const std::vector<double> d = random_durations(p.nodes.size(), seed * 7 + cuts.size());
      const cyclic_schedule s = solve_stage1(p, d, 30.0);
      ASSERT_EQ(s.status, milp_status::optimal);
      const double expected = brute_force_stage1(p, d);
      ASSERT_TRUE(std::isfinite(expected));
      EXPECT_NEAR(s.period_us, expected, 1e-6 * expected) << "cuts " << cuts.size() - 1 << " seed " << seed;
      // The schedule's own orders give the period it reports.
      EXPECT_NEAR(least_period(int(p.nodes.size()), sequence_constraints(p, s.stream_orders, d)), s.period_us,
                  1e-6 * expected);
      const double serial = std::accumulate(d.begin(), d.end(), 0.0);
      num_overlapping += s.period_us < serial - 1e-6 ? 1 : 0;
    }
  }
  EXPECT_GE(num_overlapping, 6) << "nano-batching should let mix overlap the GEMMs of another nano-batch";
}

TEST(stage1, one_nano_batch_of_llama_overlaps_only_the_two_attentions) {
  const op_graph& g = llama_op_graph();
  const schedule_problem p = make_schedule_problem(g, {0, 1}, {100, 300});
  const std::vector<double> d = random_durations(p.nodes.size(), 5);
  const cyclic_schedule s = solve_stage1(p, d, 30.0);
  const double expected = std::accumulate(d.begin(), d.end(), 0.0) -
                          std::min(d[g.find_op("decode_attention")], d[g.find_op("prefill_attention")]);
  EXPECT_NEAR(s.period_us, expected, 1e-6 * expected);
}

TEST(make_schedule_problem, puts_only_the_named_operations_on_the_memory_stream) {
  const op_graph& g = llama_op_graph();
  const schedule_problem by_class = make_schedule_problem(g, {0, 0.5, 1}, {100, 300});
  const schedule_problem named = make_schedule_problem(g, {0, 0.5, 1}, {100, 300}, {"decode_attention"});
  ASSERT_EQ(by_class.nodes.size(), named.nodes.size());
  for (size_t i = 0; i < named.nodes.size(); ++i) {
    const op_node& op = g.ops[named.nodes[i].op];
    EXPECT_EQ(by_class.nodes[i].stream, op.resource == resource_class::compute ? compute_stream : memory_stream) << op.name;
    EXPECT_EQ(named.nodes[i].stream, op.name == "decode_attention" ? memory_stream : compute_stream) << op.name;
  }
  EXPECT_THROW(make_schedule_problem(g, {0, 1}, {1, 1}, {"no_such_op"}), error);
}

TEST(possible_dependencies, cover_every_dependency_of_every_step) {
  const op_graph& g = llama_op_graph();
  std::mt19937_64 rng(3);
  std::vector<std::vector<double>> all_cuts = candidate_cuts(4, {300, 1700});
  for (const auto& more : candidate_cuts(4, {7, 2}))
    all_cuts.push_back(more);
  all_cuts.push_back({0, 0.1, 0.7, 1});
  for (const std::vector<double>& cuts : all_cuts) {
    const schedule_problem p = make_schedule_problem(g, cuts, {1, 1});
    std::vector<std::vector<int>> orders(num_search_streams);
    for (size_t i = 0; i < p.nodes.size(); ++i) orders[p.nodes[i].stream].push_back(int(i));
    const pipeline_spec spec = make_spec(g, p, orders, std::vector<int>(p.nodes.size(), 8), "probe", "");
    for (int trial = 0; trial < 300; ++trial) {
      const int num_tokens = trial < 100 ? 1 + trial % 20 : 1 + int(rng() % 2048);
      const int num_decode = int(rng() % (num_tokens + 1));
      const resolved_pipeline r = resolve_pipeline(spec, g, {num_decode, num_tokens - num_decode});
      for (const pipeline_edge& e : r.edges) {
        const precedence want{r.nano_ops[e.from].spec_index, r.nano_ops[e.to].spec_index, e.next_layer ? 1 : 0};
        ASSERT_NE(std::find(p.edges.begin(), p.edges.end(), want), p.edges.end())
            << r.nano_ops[e.from].name << " -> " << r.nano_ops[e.to].name << " at " << num_decode << " + "
            << num_tokens - num_decode;
      }
    }
  }
}

TEST(possible_dependencies, do_not_tie_unrelated_nano_batches) {
  const schedule_problem p = make_schedule_problem(llama_op_graph(), {0, 0.5, 1}, {10, 10});
  auto has = [&](const char* from, const char* to, int offset) {
    int a = -1, b = -1;
    for (size_t i = 0; i < p.nodes.size(); ++i) {
      if (p.nodes[i].name == from) a = int(i);
      if (p.nodes[i].name == to) b = int(i);
    }
    return std::find(p.edges.begin(), p.edges.end(), precedence{a, b, offset}) != p.edges.end();
  };
  EXPECT_TRUE(has("qkv_gemm@nb0", "rope_kv_append@nb0", 0));
  EXPECT_FALSE(has("qkv_gemm@nb0", "rope_kv_append@nb1", 0));
  EXPECT_TRUE(has("rope_kv_append@nb0", "prefill_attention@nb1", 0));  // the KV of earlier prefill rows
  EXPECT_FALSE(has("rope_kv_append@nb1", "prefill_attention@nb0", 0));
  EXPECT_TRUE(has("down_gemm@nb1", "attn_norm@nb1", 1));
  EXPECT_FALSE(has("down_gemm@nb1", "attn_norm@nb0", 1));
}

// Stage 2 by enumeration: every budget of every working nano-op, durations alone or slowed by the worst
// partner (unmeasured or oversubscribed splits are not allowed), priced with stage 1's orders and kept orders.
double brute_force_stage2(const schedule_problem& p, const cyclic_schedule& stage1, const operation_profile& profile,
                          const op_graph& g, double context) {
  const stage2_plan plan = plan_stage2(p, stage1);
  const int n = int(p.nodes.size());
  const int num_budgets = int(profile.sm_budgets.size());
  std::vector<int> working;
  for (int i = 0; i < n; ++i)
    if (stage1.duration_us[i] > 0) working.push_back(i);
  std::vector<int> budget(n, num_budgets - 1);  // idle nano-ops: the whole GPU
  for (int i : working) budget[i] = 0;
  double best = std::numeric_limits<double>::infinity();
  for (;;) {
    std::vector<double> d(n, 0.0);
    bool allowed = true;
    for (int i : working) d[i] = profile.time_us(g, p.nodes[i].op, p.nodes[i].num_rows, profile.sm_budgets[budget[i]], context);
    for (auto [c, m] : plan.partners) {
      const int bc = profile.sm_budgets[budget[c]], bm = profile.sm_budgets[budget[m]];
      const auto f = profile.interference_at(g, p.nodes[c].op, p.nodes[m].op, bc, bm);
      if (bc + bm > profile.num_sms || !f) {
        allowed = false;
        break;
      }
      d[c] = std::max(d[c], profile.time_us(g, p.nodes[c].op, p.nodes[c].num_rows, bc, context) * f->compute_slowdown);
      d[m] = std::max(d[m], profile.time_us(g, p.nodes[m].op, p.nodes[m].num_rows, bm, context) * f->memory_slowdown);
    }
    if (allowed) {
      std::vector<constraint> cs = sequence_constraints(p, stage1.stream_orders, d);
      for (const timing_constraint& k : plan.keep_order) cs.push_back({k.from, k.to, k.layer_offset, d[k.from]});
      best = std::min(best, least_period(n, cs));
    }
    size_t w = 0;
    while (w < working.size() && ++budget[working[w]] == num_budgets) budget[working[w++]] = 0;
    if (w == working.size()) break;
  }
  return best;
}

budget_model model_of(const operation_profile& profile, const op_graph& g, const schedule_problem& p, double context) {
  budget_model m;
  m.num_sms = profile.num_sms;
  m.sm_budgets = profile.sm_budgets;
  for (const search_node& node : p.nodes) {
    std::vector<double> t;
    for (int b : profile.sm_budgets) t.push_back(profile.time_us(g, node.op, node.num_rows, b, context));
    m.time_us.push_back(t);
  }
  m.interference = [&](int c, int mem, int bc, int bm) {
    return profile.interference_at(g, p.nodes[c].op, p.nodes[mem].op, profile.sm_budgets[bc], profile.sm_budgets[bm]);
  };
  return m;
}

TEST(stage2, matches_brute_force_over_every_budget_choice) {
  const op_graph g = three_op_graph();
  int num_with_partners = 0;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    test::synthetic_options options;
    options.num_sms = 32;  // budgets 8, 16, 24, 32
    options.memory_saturation = 0.5;
    options.seed = seed;
    operation_profile profile = test::synthetic_profile(g, options);
    // Slowdowns that differ by split and by seed, so the budgets chosen matter.
    for (interference_point& f : profile.interference) {
      f.compute_slowdown = 1.0 + 0.2 * seed * f.memory_sms / options.num_sms;
      f.memory_slowdown = 1.0 + (1.0 + 0.1 * seed) * f.compute_sms / options.num_sms;
    }
    const schedule_problem p = make_schedule_problem(g, seed % 2 ? std::vector<double>{0, 0.5, 1} : std::vector<double>{0, 0.25, 1}, {0, 512});
    std::vector<double> alone;
    for (const search_node& node : p.nodes) alone.push_back(profile.time_us(g, node.op, node.num_rows, 32, 0));
    const cyclic_schedule s1 = solve_stage1(p, alone, 30.0);
    ASSERT_EQ(s1.status, milp_status::optimal);
    const cyclic_schedule s2 = solve_stage2(p, s1, model_of(profile, g, p, 0), 30.0);
    ASSERT_EQ(s2.status, milp_status::optimal);
    const double expected = brute_force_stage2(p, s1, profile, g, 0);
    ASSERT_TRUE(std::isfinite(expected));
    EXPECT_NEAR(s2.period_us, expected, 1e-6 * expected) << "seed " << seed;
    EXPECT_GE(s2.period_us, s1.period_us - 1e-9) << "interference and smaller budgets never make it faster";
    num_with_partners += plan_stage2(p, s1).partners.empty() ? 0 : 1;
  }
  EXPECT_GE(num_with_partners, 4);
}

}  // namespace
}  // namespace nf
