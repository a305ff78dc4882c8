// Stage 1: the order MILP (see stage1.h), then the earliest starts of the orders it found.
#include "tune/stage1.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace nf {

namespace {

// reach[a][b]: a path of same-layer dependencies leads from a to b.
std::vector<std::vector<char>> same_layer_reach(const schedule_problem& problem) {
  const size_t n = problem.nodes.size();
  std::vector<std::vector<char>> reach(n, std::vector<char>(n, 0));
  for (const precedence& e : problem.edges)
    if (e.layer_offset == 0) reach[e.from][e.to] = 1;
  for (size_t k = 0; k < n; ++k)
    for (size_t i = 0; i < n; ++i)
      if (reach[i][k])
        for (size_t j = 0; j < n; ++j)
          if (reach[k][j]) reach[i][j] = 1;
  return reach;
}

}  // namespace

cyclic_schedule solve_stage1(const schedule_problem& problem, const std::vector<double>& d, double time_limit_s) {
  const int n = static_cast<int>(problem.nodes.size());
  NF_CHECK(static_cast<int>(d.size()) == n, "one duration per node");
  const double total = std::accumulate(d.begin(), d.end(), 0.0);
  const double horizon = 3.0 * total + 1.0;
  const double max_period = total + 1.0;  // every nano-op after the other

  milp model;
  const int period = model.add_variable(0.0, max_period, 1.0, false);
  std::vector<int> s(n);
  for (int i = 0; i < n; ++i) s[i] = model.add_variable(0.0, horizon, 0.0, false);

  for (const precedence& e : problem.edges) {
    if (e.layer_offset == 0) model.add_ge({{s[e.to], 1.0}, {s[e.from], -1.0}}, d[e.from]);
    else model.add_ge({{s[e.to], 1.0}, {period, 1.0}, {s[e.from], -1.0}}, d[e.from]);
  }
  const auto reach = same_layer_reach(problem);
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) {
      if (problem.nodes[a].stream != problem.nodes[b].stream) continue;
      model.add_ge({{s[b], 1.0}, {period, 1.0}, {s[a], -1.0}}, d[a]);
      // A nano-op with no rows at this workload takes no time and may sit anywhere its dependencies allow.
      if (b <= a || reach[a][b] || reach[b][a] || d[a] <= 0.0 || d[b] <= 0.0) continue;
      // Both lie within one period window of their stream: s_b - s_a >= d_b - T, so M = d_a - d_b + T_max
      // makes the constraint of the other order slack.
      const double big_m = max_period + std::max(d[a], d[b]);
      const int y = model.add_variable(0.0, 1.0, 0.0, true);
      model.add_ge({{s[b], 1.0}, {s[a], -1.0}, {y, -big_m}}, d[a] - big_m);
      model.add_ge({{s[a], 1.0}, {s[b], -1.0}, {y, big_m}}, d[b]);
    }

  const milp_solution solution = model.solve(time_limit_s);
  cyclic_schedule result;
  result.status = solution.status;
  if (!solution.has_values()) return result;
  std::vector<double> starts(n);
  for (int i = 0; i < n; ++i) starts[i] = solution.values[s[i]];
  result.stream_orders = orders_by_start(problem, starts, d);
  result.duration_us = d;
  // The exact period of the orders found (the solver's value carries its tolerances).
  const std::vector<timing_constraint> constraints = order_constraints(problem, result.stream_orders);
  result.period_us = shortest_period(n, constraints, d);
  result.start_us = earliest_starts(n, constraints, d, result.period_us);
  return result;
}

}  // namespace nf
