// Stage 2 of the pipeline search (NanoFlow section 4.1), with interference: stage 1's stream orders fixed,
// choose each nano-op's SM budget so that the steady-state layer time is shortest.
//
// Concurrency comes from stage 1's schedule: a compute nano-op i and a memory nano-op j (of this layer or a
// copy of it in a neighbouring layer) are *partners* when their stage-1 intervals overlap; every other
// cross-stream pair keeps its stage-1 order, so only partners can run together.
//
// MILP, over nano-ops i with non-zero work, budgets k of the profile (8, 16, ..., num_sms):
//   variables  T, s_i, d_i continuous; x_ik binary (i runs on k SMs), sum_k x_ik = 1;
//              for partners (i, j), z_ijkm in [0, 1] for every measured split (k, m) with k + m <= num_sms,
//              sum_m z_ijkm = x_ik and sum_k z_ijkm = x_jm (so z is the product x_ik x_jm, integral without
//              being declared so, and unmeasured or oversubscribed splits are impossible);
//   minimise   T
//   subject to d_i >= sum_k x_ik t_i(k)                             (alone),
//              d_i >= sum_km z_ijkm t_i(k) c_ij(k, m),
//              d_j >= sum_km z_ijkm t_j(m) m_ij(k, m)                for partners (interference slowdowns),
//              the stream orders, data edges and wrap-around of stage 1 (as in stage 1, orders fixed),
//              s_j + δ T >= s_i + d_i (or the reverse) for a non-partner pair whose stage-1 copy in layer
//              offset δ came after i (before i).
// A nano-op with several partners takes the largest of their slowdowns for its whole run.
#pragma once

#include <functional>
#include <optional>

#include "tune/cyclic_schedule.h"
#include "tune/operation_profile.h"

namespace nf {

struct budget_model {
  int num_sms = 0;
  std::vector<int> sm_budgets;             // [num_budgets]
  std::vector<std::vector<double>> time_us;  // [num_nodes][num_budgets]: alone
  // The slowdowns of compute node c beside memory node m at budgets (indices) bc, bm, or none when unmeasured.
  std::function<std::optional<interference_factors>(int c, int m, int bc, int bm)> interference;
};

// A cross-stream pair of stage 1: partners, or the order to keep at layer offsets.
struct stage2_plan {
  std::vector<std::pair<int, int>> partners;     // (compute node, memory node)
  std::vector<timing_constraint> keep_order;      // start[to] + offset T >= start[from] + duration[from]
};

// The partners and kept orders of a stage-1 schedule.
stage2_plan plan_stage2(const schedule_problem& problem, const cyclic_schedule& stage1);

// The durations a budget choice gives (alone or slowed by the worst partner); none when a partner split is not
// measured or oversubscribes the GPU.
std::optional<std::vector<double>> stage2_durations(const budget_model& model, const stage2_plan& plan,
                                                    const std::vector<int>& budget_indices);

cyclic_schedule solve_stage2(const schedule_problem& problem, const cyclic_schedule& stage1,
                             const budget_model& model, double time_limit_s);

}  // namespace nf
