// The steady state of a layer pipeline: every layer runs the same schedule shifted by one period T, so a
// nano-op of layer l starts at start[i] + l * T. Constraints between nano-ops are difference constraints
// "start[to] >= start[from] + gap - layer_offset * T"; the stages of the search produce such schedules.
#pragma once

#include <vector>

#include "tune/milp.h"
#include "tune/search_problem.h"

namespace nf {

// start[to] + layer_offset * T >= start[from] + duration[from].
struct timing_constraint {
  int from = 0;
  int to = 0;
  int layer_offset = 0;
};

struct cyclic_schedule {
  milp_status status = milp_status::no_solution;
  double period_us = 0.0;                        // T: the time of one layer in the steady state
  std::vector<double> start_us, duration_us;     // [num_nodes], one layer's
  std::vector<int> sm_counts;                    // [num_nodes]
  std::vector<std::vector<int>> stream_orders;   // [num_search_streams][nano-ops of the stream, in order]

  // From the first start to the last end of one layer.
  double span_us() const;
  // L layers: the last layer starts (L - 1) periods after the first.
  double step_us(int num_layers) const { return (num_layers - 1) * period_us + span_us(); }
};

// The constraints of fixed stream orders: consecutive nano-ops of a stream, and the last of a layer before the
// first of the next; plus the data edges.
std::vector<timing_constraint> order_constraints(const schedule_problem& problem,
                                                 const std::vector<std::vector<int>>& stream_orders);

// The earliest starts (all >= 0) meeting the constraints at period T, by longest paths; empty when T is too
// short (a positive cycle).
std::vector<double> earliest_starts(int num_nodes, const std::vector<timing_constraint>& constraints,
                                    const std::vector<double>& durations, double period_us);

// The shortest period T at which the constraints hold (within 1e-9 relative), by bisection on earliest_starts.
// The stream wrap-around constraints keep it at least the busiest stream's total.
double shortest_period(int num_nodes, const std::vector<timing_constraint>& constraints,
                       const std::vector<double>& durations);

// Per stream, the nano-ops in the order of their starts: a list schedule over the data edges of the problem,
// always taking the ready nano-op that starts first (ties: program order, then nano-batch). Consistent with
// every possible dependency, so the orders never make a cycle.
std::vector<std::vector<int>> orders_by_start(const schedule_problem& problem, const std::vector<double>& start_us,
                                              const std::vector<double>& duration_us);

}  // namespace nf
