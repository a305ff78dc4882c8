// Synthetic operation profiles for the search tests: times from a simple analytic model (compute operations
// scale with their SMs, memory operations saturate at a fraction of the GPU) and split-dependent slowdowns, so
// the optimum of a small instance is non-trivial but can be found by enumeration.
#pragma once

#include <algorithm>
#include <random>
#include <string>

#include "tune/operation_profile.h"

namespace nf::test {

struct synthetic_options {
  std::string gpu = "Test GPU";
  int num_sms = 32;
  int dense_budget = 512;
  profile_shape shape{256, 768, 8, 2, 32, 4, 128256};
  uint64_t seed = 1;                     // varies each operation's cost
  double memory_saturation = 1.0 / 3.0;  // memory operations reach full speed on this fraction of the SMs
  double memory_weight = 1.0;            // scales the memory operations' per-token cost
};

inline operation_profile synthetic_profile(const op_graph& graph, const synthetic_options& o) {
  operation_profile p;
  p.gpu = o.gpu;
  p.num_sms = o.num_sms;
  p.shape = o.shape;
  p.dense_budget = o.dense_budget;
  p.token_counts = profile_token_counts(o.dense_budget);
  p.sm_budgets = profile_sm_budgets(o.num_sms);
  p.decode_context_lengths = {256.0, 1024.0, 4096.0};
  std::mt19937_64 rng(o.seed);
  auto uniform = [&rng](double lo, double hi) { return lo + (hi - lo) * static_cast<double>(rng() % 10000) / 10000.0; };
  for (const op_node& op : graph.ops) {
    op_timing t{op.name, op.kind == op_kind::decode_attention, {}};
    const bool compute = op.resource == resource_class::compute;
    const double fixed = uniform(2.0, 6.0), per_token = compute ? uniform(0.05, 0.2) : o.memory_weight * uniform(0.01, 0.06);
    const int num_contexts = t.by_context ? static_cast<int>(p.decode_context_lengths.size()) : 1;
    for (int c = 0; c < num_contexts; ++c)
      for (int tokens : p.token_counts)
        for (int sms : p.sm_budgets) {
          const double context = t.by_context ? p.decode_context_lengths[c] / 1024.0 : 1.0;
          const double scaling = compute ? double(o.num_sms) / sms : std::max(1.0, o.num_sms * o.memory_saturation / sms);
          t.time_us.push_back(fixed + per_token * tokens * context * scaling);
        }
    p.ops.push_back(std::move(t));
  }
  for (int c : p.sm_budgets)
    for (int m : p.sm_budgets)
      if (c + m <= o.num_sms)
        p.interference.push_back({"*", "*", c, m, 1.0 + 0.4 * m / o.num_sms, 1.0 + 0.6 * c / o.num_sms});
  return p;
}

}  // namespace nf::test
