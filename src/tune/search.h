// The automatic pipeline search (`nanoflow tune`): from an operation profile and a workload point, the pipeline
// spec with the shortest predicted layer time. Every candidate split (1..max_nano_batches nano-batches) gets a
// stage-1 order and stage-2 SM budgets; the best stage-2 result wins, written as a spec plus its prediction, unless
// the plain sequential schedule is predicted at least as fast.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/pipeline_spec.h"
#include "tune/cyclic_schedule.h"
#include "tune/operation_profile.h"

namespace nf {

// The step the pipeline is tuned for.
struct workload_point {
  int num_decode = 0;               // decode rows (one per decode sequence)
  int num_prefill = 0;              // prefill rows
  double mean_decode_context = 0.0; // mean KV length of the decode sequences
};

struct tune_options {
  workload_point workload;
  int max_nano_batches = 4;           // 1..4
  double stage1_time_limit_s = 10.0;  // per candidate
  double stage2_time_limit_s = 10.0;  // per candidate
  std::string spec_name = "tuned";
  bool interference_margin = true;    // price splits by interference_envelope (false: the raw reading)
  // Operations on the memory stream (empty: every memory-class operation). By default only decode attention:
  // the norms, RoPE and SiLU are short beside the GEMMs and cost several times more on a small SM budget.
  std::vector<std::string> memory_stream_ops{"decode_attention"};
};

// One candidate split and what the stages predicted for it.
struct tune_candidate {
  std::vector<double> cuts;
  double stage1_period_us = 0.0;
  double stage2_period_us = 0.0;
  bool stage1_optimal = false;
  bool stage2_optimal = false;
};

struct tune_result {
  pipeline_spec spec;
  schedule_problem problem;   // the winning split's nano-ops
  cyclic_schedule stage1;     // its stage-1 schedule (alone, whole GPU)
  cyclic_schedule schedule;   // its stage-2 schedule: the prediction
  std::string gpu;
  workload_point workload;
  int num_layers = 0;
  std::vector<tune_candidate> candidates;
  double sequential_per_layer_us = 0.0;  // every operation over all rows on the whole GPU, one after another
  bool sequential = false;               // no candidate was predicted faster: the spec is the sequential one

  double per_layer_us() const { return schedule.period_us; }
  double per_step_us() const { return schedule.step_us(num_layers); }
  // Workload, times, candidates and the timeline (per stream: nano-op, start, end, SMs) as JSON.
  nlohmann::json prediction_json() const;
};

// One layer of the sequential schedule (each operation over all its rows on the whole GPU, in program order) at
// the workload point, from the profile.
double sequential_layer_us(const operation_profile& profile, const op_graph& graph, const workload_point& workload);

// Every candidate that got a stage-2 schedule, and the sequential schedule, each as a result with its spec (all
// named options.spec_name), fastest predicted first; the sequential one comes before splits predicted no faster.
// Throws as search_pipeline does.
std::vector<tune_result> search_ranked(const operation_profile& profile, const op_graph& graph,
                                       const tune_options& options);

// The first of search_ranked: when no candidate is predicted faster than the sequential schedule, the result is
// the sequential spec (renamed) with its own prediction. Throws nf::error for a workload the profile cannot price (no rows, more rows than the dense budget, a
// negative context) or bad options. The spec passes validate_spec.
tune_result search_pipeline(const operation_profile& profile, const op_graph& graph, const tune_options& options);

// Writes a spec (to_json) and a prediction document; errors name the file.
void write_tune_files(const pipeline_spec& spec, const nlohmann::json& prediction, const std::filesystem::path& spec_path,
                      const std::filesystem::path& prediction_path);
// Writes the result's spec and prediction_json().
void write_tune_result(const tune_result& result, const std::filesystem::path& spec_path,
                       const std::filesystem::path& prediction_path);

}  // namespace nf
