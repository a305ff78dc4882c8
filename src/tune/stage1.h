// Stage 1 of the pipeline search (NanoFlow section 4.1), ignoring interference: for one candidate split, the
// order of the nano-ops on the compute and memory streams that minimises the steady-state time of a layer,
// every nano-op taking its time alone on the whole GPU.
//
// MILP, over the nano-ops i of one layer with durations d_i:
//   variables  T >= 0 (the period: one layer's time in the steady state), start s_i in [0, H],
//              y_ab binary for two nano-ops of one stream that no dependency orders (1: a before b);
//   minimise   T
//   subject to s_b >= s_a + d_a                    for a dependency a -> b within a layer,
//              s_b + T >= s_a + d_a                for a dependency a -> b into the next layer,
//              s_b >= s_a + d_a - M (1 - y_ab),
//              s_a >= s_b + d_b - M y_ab           for an unordered pair of one stream (no overlap),
//              s_b + T >= s_a + d_a                for every a, b of one stream (the stream finishes a layer
//                                                  before it starts the next).
// Layer l runs the same schedule shifted by l * T (a cyclic steady state, not two unrolled layers): the edges
// into the next layer and the stream wrap-around are what let one layer's memory work overlap the next
// layer's compute work. H = 3 * sum d; T <= T_max = sum d + 1 (the serial order) and, as two nano-ops of a
// stream lie within one period of each other, M = T_max + max(d_a, d_b). Nano-ops with no rows at the
// workload (d = 0) get no order variables.
#pragma once

#include "tune/cyclic_schedule.h"
#include "tune/search_problem.h"

namespace nf {

// Solves stage 1 with per-node durations [num_nodes]; the result's starts are the earliest ones of the orders
// found, its SM counts empty.
cyclic_schedule solve_stage1(const schedule_problem& problem, const std::vector<double>& durations_us,
                             double time_limit_s);

}  // namespace nf
