// Steady-state layer schedules: constraints of fixed stream orders, earliest starts, orders from starts.
#include "tune/cyclic_schedule.h"

#include <algorithm>
#include <limits>
#include <tuple>

#include "core/error.h"

namespace nf {

double cyclic_schedule::span_us() const {
  double first = std::numeric_limits<double>::infinity(), last = 0.0;
  for (size_t i = 0; i < start_us.size(); ++i) {
    if (duration_us[i] <= 0.0) continue;
    first = std::min(first, start_us[i]);
    last = std::max(last, start_us[i] + duration_us[i]);
  }
  return last > first ? last - first : 0.0;
}

std::vector<timing_constraint> order_constraints(const schedule_problem& problem,
                                                 const std::vector<std::vector<int>>& stream_orders) {
  std::vector<timing_constraint> constraints;
  for (const std::vector<int>& sequence : stream_orders) {
    if (sequence.empty()) continue;
    for (size_t i = 0; i + 1 < sequence.size(); ++i) constraints.push_back({sequence[i], sequence[i + 1], 0});
    constraints.push_back({sequence.back(), sequence.front(), 1});
  }
  for (const precedence& e : problem.edges) constraints.push_back({e.from, e.to, e.layer_offset});
  return constraints;
}

std::vector<double> earliest_starts(int num_nodes, const std::vector<timing_constraint>& constraints,
                                    const std::vector<double>& durations, double period_us) {
  std::vector<double> start(num_nodes, 0.0);
  const double tolerance = 1e-12 * (1.0 + period_us);
  for (int round = 0; round <= num_nodes; ++round) {
    bool changed = false;
    for (const timing_constraint& c : constraints) {
      const double earliest = start[c.from] + durations[c.from] - c.layer_offset * period_us;
      if (earliest > start[c.to] + tolerance) {
        start[c.to] = earliest;
        changed = true;
      }
    }
    if (!changed) return start;
  }
  return {};
}

double shortest_period(int num_nodes, const std::vector<timing_constraint>& constraints,
                       const std::vector<double>& durations) {
  double hi = 1.0;
  for (double d : durations) hi += d;
  NF_CHECK(!earliest_starts(num_nodes, constraints, durations, hi).empty(),
           "constraints with a cycle inside one layer");
  double lo = 0.0;
  while (hi - lo > 1e-9 * hi) {
    const double mid = 0.5 * (lo + hi);
    if (earliest_starts(num_nodes, constraints, durations, mid).empty()) lo = mid;
    else hi = mid;
  }
  return hi;
}

std::vector<std::vector<int>> orders_by_start(const schedule_problem& problem, const std::vector<double>& start_us,
                                              const std::vector<double>& duration_us) {
  const int n = static_cast<int>(problem.nodes.size());
  std::vector<int> indegree(n, 0);
  std::vector<std::vector<int>> successors(n);
  for (const precedence& e : problem.edges)
    if (e.layer_offset == 0) {
      successors[e.from].push_back(e.to);
      ++indegree[e.to];
    }
  auto key = [&](int v) {
    return std::tuple(start_us[v], start_us[v] + duration_us[v], problem.nodes[v].op, problem.nodes[v].nano_batch);
  };
  std::vector<int> ready;
  for (int v = 0; v < n; ++v)
    if (indegree[v] == 0) ready.push_back(v);
  std::vector<std::vector<int>> orders(num_search_streams);
  while (!ready.empty()) {
    auto pick = std::min_element(ready.begin(), ready.end(), [&](int a, int b) { return key(a) < key(b); });
    const int v = *pick;
    ready.erase(pick);
    orders[problem.nodes[v].stream].push_back(v);
    for (int w : successors[v])
      if (--indegree[w] == 0) ready.push_back(w);
  }
  int placed = 0;
  for (const auto& order : orders) placed += static_cast<int>(order.size());
  NF_CHECK(placed == n, "the possible dependencies of a layer form a cycle");
  return orders;
}

}  // namespace nf
