// The search driver: candidates, both stages, the winning spec and its prediction.
#include "tune/search.h"

#include <algorithm>
#include <fstream>

#include "core/error.h"
#include "pipeline/validator.h"
#include "tune/stage1.h"
#include "tune/stage2.h"

namespace nf {

namespace {

void check_inputs(const operation_profile& profile, const op_graph& graph, const tune_options& options) {
  const workload_point& w = options.workload;
  if (options.max_nano_batches < 1 || options.max_nano_batches > 4)
    fail("tune: the number of nano-batches must be 1 to 4, not {}", options.max_nano_batches);
  if (w.num_decode < 0 || w.num_prefill < 0) fail("tune: negative decode or prefill row count");
  if (w.num_decode + w.num_prefill == 0) fail("tune: the workload has no rows");
  if (w.num_decode + w.num_prefill > profile.dense_budget)
    fail("tune: the workload has {} rows, more than the profile's dense budget of {}", w.num_decode + w.num_prefill,
         profile.dense_budget);
  if (!(w.mean_decode_context >= 0.0)) fail("tune: the mean decode context must be at least 0");
  if (w.num_decode > 0 && !(w.mean_decode_context >= 1.0))
    fail("tune: give the mean decode context of the {} decode rows", w.num_decode);
  if (!(options.stage1_time_limit_s > 0.0 && options.stage2_time_limit_s > 0.0))
    fail("tune: the solver time limits must be positive");
  for (const op_node& op : graph.ops)
    if (!profile.timing_of(op.name)) fail("tune: the profile has no timing of operation \"{}\"", op.name);
}

budget_model budgets_of(const operation_profile& profile, const op_graph& graph, const schedule_problem& problem,
                        double mean_context, bool margin) {
  budget_model model;
  model.num_sms = profile.num_sms;
  model.sm_budgets = profile.sm_budgets;
  for (const search_node& node : problem.nodes) {
    std::vector<double> times;
    for (int budget : profile.sm_budgets)
      times.push_back(profile.time_us(graph, node.op, node.num_rows, budget, mean_context));
    model.time_us.push_back(std::move(times));
  }
  model.interference = [&profile, &graph, &problem, margin](int c, int m, int bc, int bm) {
    const int compute_op = problem.nodes[c].op, memory_op = problem.nodes[m].op;
    const int compute_sms = profile.sm_budgets[bc], memory_sms = profile.sm_budgets[bm];
    auto lookup = [&](int op) {
      return margin ? profile.interference_envelope(graph, op, memory_op, compute_sms, memory_sms)
                    : profile.interference_at(graph, op, memory_op, compute_sms, memory_sms);
    };
    if (graph.ops[compute_op].resource == resource_class::compute) return lookup(compute_op);
    // A memory-class operation kept on the compute stream (a norm beside the GEMMs) is priced as the worst
    // compute operation measured at this split.
    std::optional<interference_factors> worst;
    for (int op = 0; op < static_cast<int>(graph.ops.size()); ++op) {
      if (graph.ops[op].resource != resource_class::compute) continue;
      const std::optional<interference_factors> f = lookup(op);
      if (!f) continue;
      if (!worst) worst = f;
      worst->compute_slowdown = std::max(worst->compute_slowdown, f->compute_slowdown);
      worst->memory_slowdown = std::max(worst->memory_slowdown, f->memory_slowdown);
    }
    return worst;
  };
  return model;
}

// The sequential schedule as a search result: one nano-batch, every nano-op on the first stream in program order
// on the whole GPU.
void make_sequential(const operation_profile& profile, const op_graph& graph, const workload_point& w,
                     const std::string& name, const std::string& reason, tune_result& result) {
  result.problem = make_schedule_problem(graph, {0.0, 1.0}, {w.num_decode, w.num_prefill});
  const int num_nodes = static_cast<int>(result.problem.nodes.size());
  cyclic_schedule& s = result.schedule;
  s.stream_orders.assign(num_search_streams, {});
  for (int node = 0; node < num_nodes; ++node) {
    s.stream_orders[0].push_back(node);
    const search_node& n = result.problem.nodes[node];
    s.duration_us.push_back(profile.time_us(graph, n.op, n.num_rows, profile.num_sms, w.mean_decode_context));
    s.sm_counts.push_back(profile.num_sms);
  }
  const std::vector<timing_constraint> constraints = order_constraints(result.problem, s.stream_orders);
  s.period_us = shortest_period(num_nodes, constraints, s.duration_us);
  s.start_us = earliest_starts(num_nodes, constraints, s.duration_us, s.period_us);
  s.status = milp_status::optimal;
  result.stage1 = s;
  result.sequential = true;
  result.spec = sequential_spec(graph);
  result.spec.name = name;
  result.spec.description = fmt::format(
      "searched for {} decode rows (mean context {}) and {} prefill rows on {}: {}, so the sequential schedule "
      "({:.1f} us per layer)",
      w.num_decode, w.mean_decode_context, w.num_prefill, profile.gpu, reason, s.period_us);
}

}  // namespace

double sequential_layer_us(const operation_profile& profile, const op_graph& graph, const workload_point& w) {
  double total = 0.0;
  for (int op = 0; op < static_cast<int>(graph.ops.size()); ++op) {
    const row_class rows = graph.ops[op].rows;
    const int num_rows = rows == row_class::decode    ? w.num_decode
                         : rows == row_class::prefill ? w.num_prefill
                                                      : w.num_decode + w.num_prefill;
    total += profile.time_us(graph, op, num_rows, profile.num_sms, w.mean_decode_context);
  }
  return total;
}

nlohmann::json tune_result::prediction_json() const {
  using json = nlohmann::json;
  json doc;
  doc["spec"] = spec.name;
  doc["gpu"] = gpu;
  doc["workload"] = {{"num_decode", workload.num_decode},
                     {"num_prefill", workload.num_prefill},
                     {"mean_decode_context", workload.mean_decode_context}};
  doc["num_nano_batches"] = problem.num_nano_batches();
  doc["cuts"] = problem.cuts;
  doc["num_layers"] = num_layers;
  doc["per_layer_us"] = per_layer_us();
  doc["per_step_us"] = per_step_us();
  doc["per_step_note"] = "decoder layers only: (num_layers - 1) * per_layer_us + one layer's span";
  doc["stage1_per_layer_us"] = stage1.period_us;
  doc["sequential_per_layer_us"] = sequential_per_layer_us;
  doc["sequential"] = sequential;
  json timeline = json::object();
  const int num_streams = std::min<int>(num_search_streams, static_cast<int>(spec.streams.size()));
  for (int stream = 0; stream < num_streams; ++stream) {
    json entries = json::array();
    for (int node : schedule.stream_orders[stream]) {
      if (schedule.duration_us[node] <= 0.0) continue;
      entries.push_back({{"nano_op", problem.nodes[node].name},
                         {"rows", problem.nodes[node].num_rows},
                         {"start_us", schedule.start_us[node]},
                         {"end_us", schedule.start_us[node] + schedule.duration_us[node]},
                         {"sm_count", schedule.sm_counts[node]}});
    }
    timeline[spec.streams[stream]] = entries;
  }
  doc["timeline"] = timeline;
  json all = json::array();
  for (const tune_candidate& c : candidates)
    all.push_back({{"cuts", c.cuts},
                   {"stage1_per_layer_us", c.stage1_period_us},
                   {"stage2_per_layer_us", c.stage2_period_us},
                   {"stage1_optimal", c.stage1_optimal},
                   {"stage2_optimal", c.stage2_optimal}});
  doc["candidates"] = all;
  return doc;
}

std::vector<tune_result> search_ranked(const operation_profile& profile, const op_graph& graph,
                                       const tune_options& options) {
  check_inputs(profile, graph, options);
  const workload_point& w = options.workload;
  const step_rows rows{w.num_decode, w.num_prefill};
  std::vector<tune_result> ranked;
  std::vector<tune_candidate> candidates;
  for (const std::vector<double>& cuts : candidate_cuts(options.max_nano_batches, rows)) {
    tune_result trial;
    trial.problem = make_schedule_problem(graph, cuts, rows, options.memory_stream_ops);
    std::vector<double> alone;
    for (const search_node& node : trial.problem.nodes)
      alone.push_back(profile.time_us(graph, node.op, node.num_rows, profile.num_sms, w.mean_decode_context));
    tune_candidate candidate{cuts};
    trial.stage1 = solve_stage1(trial.problem, alone, options.stage1_time_limit_s);
    if (trial.stage1.stream_orders.empty()) {
      candidates.push_back(candidate);
      continue;
    }
    candidate.stage1_period_us = trial.stage1.period_us;
    candidate.stage1_optimal = trial.stage1.status == milp_status::optimal;
    const budget_model budgets = budgets_of(profile, graph, trial.problem, w.mean_decode_context, options.interference_margin);
    trial.schedule = solve_stage2(trial.problem, trial.stage1, budgets, options.stage2_time_limit_s);
    candidates.push_back(candidate);
    if (trial.schedule.stream_orders.empty()) continue;
    candidates.back().stage2_period_us = trial.schedule.period_us;
    candidates.back().stage2_optimal = trial.schedule.status == milp_status::optimal;
    const std::string description = fmt::format(
        "searched for {} decode rows (mean context {}) and {} prefill rows on {}: {} nano-batches, predicted {:.1f} "
        "us per layer",
        w.num_decode, w.mean_decode_context, w.num_prefill, profile.gpu, trial.problem.num_nano_batches(),
        trial.per_layer_us());
    trial.spec = make_spec(graph, trial.problem, trial.schedule.stream_orders, trial.schedule.sm_counts,
                           options.spec_name, description);
    const std::vector<std::string> problems = validate_spec(trial.spec, graph);
    NF_CHECK(problems.empty(), "the searched spec is invalid: {}", join_problems(problems));
    ranked.push_back(std::move(trial));
  }
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const tune_result& a, const tune_result& b) { return a.per_layer_us() < b.per_layer_us(); });
  const double sequential_us = sequential_layer_us(profile, graph, w);
  const bool split_wins = !ranked.empty() && ranked.front().per_layer_us() < sequential_us;
  const std::string reason = split_wins        ? "kept for comparison; a split was predicted faster"
                             : ranked.empty() ? "the solver found no split in its time limits"
                                              : "no split was predicted faster";
  tune_result sequential;
  make_sequential(profile, graph, w, options.spec_name, reason, sequential);
  const auto position = std::find_if(ranked.begin(), ranked.end(), [&](const tune_result& r) {
    return r.per_layer_us() >= sequential.per_layer_us();
  });
  ranked.insert(position, std::move(sequential));
  for (tune_result& r : ranked) {
    r.candidates = candidates;
    r.gpu = profile.gpu;
    r.workload = w;
    r.num_layers = profile.shape.num_layers;
    r.sequential_per_layer_us = sequential_us;
  }
  return ranked;
}

tune_result search_pipeline(const operation_profile& profile, const op_graph& graph, const tune_options& options) {
  std::vector<tune_result> ranked = search_ranked(profile, graph, options);
  return std::move(ranked.front());
}

void write_tune_files(const pipeline_spec& spec, const nlohmann::json& prediction, const std::filesystem::path& spec_path,
                      const std::filesystem::path& prediction_path) {
  auto write = [](const std::filesystem::path& path, const nlohmann::json& doc) {
    std::ofstream file(path);
    if (!file) fail("tune: cannot write {}", path.string());
    file << doc.dump(2) << "\n";
    if (!file) fail("tune: writing {} failed", path.string());
  };
  write(spec_path, to_json(spec));
  write(prediction_path, prediction);
}

void write_tune_result(const tune_result& result, const std::filesystem::path& spec_path,
                       const std::filesystem::path& prediction_path) {
  write_tune_files(result.spec, result.prediction_json(), spec_path, prediction_path);
}

}  // namespace nf
