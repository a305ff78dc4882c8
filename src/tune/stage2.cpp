// Stage 2: partners from stage 1's overlaps, then the SM-budget MILP (see stage2.h).
#include "tune/stage2.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace nf {

namespace {

constexpr int max_layer_offset = 6;

}  // namespace

stage2_plan plan_stage2(const schedule_problem& problem, const cyclic_schedule& stage1) {
  stage2_plan plan;
  const int n = static_cast<int>(problem.nodes.size());
  const double period = stage1.period_us, tolerance = 1e-9 * (1.0 + stage1.period_us);
  const auto& s = stage1.start_us;
  const auto& d = stage1.duration_us;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      if (problem.nodes[i].stream != compute_stream || problem.nodes[j].stream != memory_stream) continue;
      if (d[i] <= 0.0 || d[j] <= 0.0) continue;
      // j's copy in layer offset o occupies [s_j + o T, s_j + d_j + o T).
      int first_overlap = max_layer_offset + 1, last_overlap = -max_layer_offset - 1, first_after = max_layer_offset + 1;
      for (int o = -max_layer_offset; o <= max_layer_offset; ++o) {
        const double begin = s[j] + o * period, end = begin + d[j];
        if (begin < s[i] + d[i] - tolerance && s[i] < end - tolerance) {
          first_overlap = std::min(first_overlap, o);
          last_overlap = std::max(last_overlap, o);
        } else if (begin >= s[i] + d[i] - tolerance) {
          first_after = std::min(first_after, o);
        }
      }
      int before = first_after - 1;
      if (first_overlap <= last_overlap) {
        plan.partners.emplace_back(i, j);
        first_after = last_overlap + 1;
        before = first_overlap - 1;
      }
      NF_CHECK(first_after <= max_layer_offset, "stage 1 schedule spans more than {} layers", max_layer_offset);
      // j's copy at offset first_after starts after i ends; its copy at offset `before` ends before i starts.
      plan.keep_order.push_back({i, j, first_after});
      plan.keep_order.push_back({j, i, -before});
    }
  return plan;
}

std::optional<std::vector<double>> stage2_durations(const budget_model& model, const stage2_plan& plan,
                                                    const std::vector<int>& budget) {
  const size_t n = model.time_us.size();
  std::vector<double> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = model.time_us[i][budget[i]];
  for (auto [c, m] : plan.partners) {
    if (model.sm_budgets[budget[c]] + model.sm_budgets[budget[m]] > model.num_sms) return std::nullopt;
    const std::optional<interference_factors> f = model.interference(c, m, budget[c], budget[m]);
    if (!f) return std::nullopt;
    d[c] = std::max(d[c], model.time_us[c][budget[c]] * f->compute_slowdown);
    d[m] = std::max(d[m], model.time_us[m][budget[m]] * f->memory_slowdown);
  }
  return d;
}

cyclic_schedule solve_stage2(const schedule_problem& problem, const cyclic_schedule& stage1, const budget_model& bm,
                             double time_limit_s) {
  const int n = static_cast<int>(problem.nodes.size());
  const int num_budgets = static_cast<int>(bm.sm_budgets.size());
  NF_CHECK(static_cast<int>(bm.time_us.size()) == n, "one time table per node");
  const stage2_plan plan = plan_stage2(problem, stage1);
  std::vector<timing_constraint> constraints = order_constraints(problem, stage1.stream_orders);
  constraints.insert(constraints.end(), plan.keep_order.begin(), plan.keep_order.end());

  double worst_factor = 1.0;
  for (auto [c, m] : plan.partners)
    for (int k = 0; k < num_budgets; ++k)
      for (int q = 0; q < num_budgets; ++q)
        if (auto f = bm.interference(c, m, k, q)) worst_factor = std::max({worst_factor, f->compute_slowdown, f->memory_slowdown});
  double max_time = 0.0, sum_max = 0.0;
  for (int i = 0; i < n; ++i) {
    const double t = *std::max_element(bm.time_us[i].begin(), bm.time_us[i].end());
    max_time = std::max(max_time, t);
    sum_max += t;
  }
  const double duration_bound = max_time * worst_factor + 1.0;
  const double horizon = 4.0 * max_layer_offset * (sum_max * worst_factor + 1.0);

  milp model;
  const int period = model.add_variable(0.0, horizon, 1.0, false);
  std::vector<int> s(n), d(n), first_x(n, -1);
  for (int i = 0; i < n; ++i) {
    s[i] = model.add_variable(0.0, horizon, 0.0, false);
    const bool works = stage1.duration_us[i] > 0.0;
    d[i] = model.add_variable(0.0, works ? duration_bound : 0.0, 0.0, false);
    if (!works) continue;
    std::vector<std::pair<int, double>> one, alone{{d[i], 1.0}};
    for (int k = 0; k < num_budgets; ++k) {
      const int x = model.add_variable(0.0, 1.0, 0.0, true);
      if (k == 0) first_x[i] = x;
      one.emplace_back(x, 1.0);
      alone.emplace_back(x, -bm.time_us[i][k]);
    }
    model.add_eq(one, 1.0);
    model.add_ge(alone, 0.0);
  }
  for (const timing_constraint& c : constraints) {
    std::vector<std::pair<int, double>> terms{{s[c.to], 1.0}, {s[c.from], -1.0}, {d[c.from], -1.0}};
    if (c.layer_offset != 0) terms.emplace_back(period, static_cast<double>(c.layer_offset));
    model.add_ge(terms, 0.0);
  }
  for (auto [c, m] : plan.partners) {
    std::vector<std::vector<std::pair<int, double>>> by_c(num_budgets), by_m(num_budgets);
    std::vector<std::pair<int, double>> slow_c{{d[c], 1.0}}, slow_m{{d[m], 1.0}};
    for (int k = 0; k < num_budgets; ++k)
      for (int q = 0; q < num_budgets; ++q) {
        if (bm.sm_budgets[k] + bm.sm_budgets[q] > bm.num_sms) continue;
        const std::optional<interference_factors> f = bm.interference(c, m, k, q);
        if (!f) continue;
        const int z = model.add_variable(0.0, 1.0, 0.0, false);
        by_c[k].emplace_back(z, 1.0);
        by_m[q].emplace_back(z, 1.0);
        slow_c.emplace_back(z, -bm.time_us[c][k] * f->compute_slowdown);
        slow_m.emplace_back(z, -bm.time_us[m][q] * f->memory_slowdown);
      }
    for (int k = 0; k < num_budgets; ++k) {
      by_c[k].emplace_back(first_x[c] + k, -1.0);
      model.add_eq(by_c[k], 0.0);
      by_m[k].emplace_back(first_x[m] + k, -1.0);
      model.add_eq(by_m[k], 0.0);
    }
    model.add_ge(slow_c, 0.0);
    model.add_ge(slow_m, 0.0);
  }

  const milp_solution solution = model.solve(time_limit_s);
  cyclic_schedule result;
  result.status = solution.status;
  if (!solution.has_values()) return result;
  std::vector<int> budget(n, num_budgets - 1);
  for (int i = 0; i < n; ++i)
    if (first_x[i] >= 0)
      for (int k = 0; k < num_budgets; ++k)
        if (solution.values[first_x[i] + k] > 0.5) budget[i] = k;
  const std::optional<std::vector<double>> durations = stage2_durations(bm, plan, budget);
  NF_CHECK(durations.has_value(), "stage 2 chose an unmeasured or oversubscribed SM split");
  result.duration_us = *durations;
  for (int i = 0; i < n; ++i)
    if (stage1.duration_us[i] <= 0.0) result.duration_us[i] = 0.0;
  result.stream_orders = stage1.stream_orders;
  for (int k : budget) result.sm_counts.push_back(bm.sm_budgets[k]);
  // The exact period of the budgets chosen, from their exact durations.
  result.period_us = shortest_period(n, constraints, result.duration_us);
  result.start_us = earliest_starts(n, constraints, result.duration_us, result.period_us);
  return result;
}

}  // namespace nf
