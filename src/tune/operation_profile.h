// The measured cost model the pipeline search works from: for one GPU and one model shape, every operation's
// time over token counts and SM budgets, and the slowdown of a compute operation and a memory operation that
// share the GPU at an SM split. Read from and written to JSON; loading needs no GPU.
#pragma once

#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "pipeline/op_graph.h"

namespace nf {

// Token counts are profiled at multiples of this (and at the dense budget), SM budgets at multiples of
// profile_sm_step (and at the GPU's SM count).
inline constexpr int profile_token_step = 128;
inline constexpr int profile_sm_step = 8;

// The model dimensions a profile was measured for.
struct profile_shape {
  int hidden = 0;
  int intermediate = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int num_layers = 0;
  int vocab = 0;
  bool operator==(const profile_shape&) const = default;
};

profile_shape shape_of(const model_config& config);

// One operation's measured times.
struct op_timing {
  std::string op;        // an operation of the op graph
  bool by_context = false;  // decode attention: one table per decode context length
  // Microseconds; [num_context_lengths, num_token_counts, num_sm_budgets] for decode attention (the token axis
  // counts decode rows), [1, num_token_counts, num_sm_budgets] for every other operation (prefill attention:
  // prefill rows).
  std::vector<double> time_us;
};

// A compute operation beside a memory (or network) operation at an SM split: each one's time relative to
// running alone at its own budget. "*" stands for any operation of that class.
struct interference_point {
  std::string compute_op;
  std::string memory_op;
  int compute_sms = 0;
  int memory_sms = 0;
  double compute_slowdown = 1.0;
  double memory_slowdown = 1.0;
};

struct interference_factors {
  double compute_slowdown = 1.0;
  double memory_slowdown = 1.0;
};

struct operation_profile {
  std::string gpu;  // as the device reports it, e.g. "NVIDIA H200"
  int num_sms = 0;
  profile_shape shape;
  int dense_budget = 0;                       // the most tokens of one step
  std::vector<int> token_counts;              // profile_token_counts(dense_budget)
  std::vector<int> sm_budgets;                // profile_sm_budgets(num_sms)
  std::vector<double> decode_context_lengths; // mean decode contexts decode attention was measured at, increasing
  std::vector<op_timing> ops;                 // one per operation of the op graph
  std::vector<interference_point> interference;

  // Time of `op` (graph index) over `num_rows` rows at SM budget `sm_budget` (one of sm_budgets), alone.
  // Linear between measured token counts (and decode contexts); below the smallest count a kernel costs what
  // the smallest count costs; 0 rows cost nothing. `mean_context` matters for decode attention only.
  double time_us(const op_graph& graph, int op, int num_rows, int sm_budget, double mean_context) const;
  // The slowdowns of compute op `compute_op` and memory op `memory_op` (graph indices) at this split, or none
  // when the split was not measured. An exact pair wins over "*" entries.
  std::optional<interference_factors> interference_at(const op_graph& graph, int compute_op, int memory_op,
                                                      int compute_sms, int memory_sms) const;
  // As interference_at, but each slowdown is the largest of this split's and of the measured splits next to it
  // (the next smaller and larger measured memory budget, each at the largest compute budget beside it): a margin
  // for the spread of the measurement, so that a search does not pick a split for a reading that was merely
  // lucky. None when this split was not measured.
  std::optional<interference_factors> interference_envelope(const op_graph& graph, int compute_op, int memory_op,
                                                            int compute_sms, int memory_sms) const;
  int budget_index(int sm_budget) const;  // index into sm_budgets, or -1
  const op_timing* timing_of(const std::string& op) const;
};

// 128, 256, ..., up to the budget (and the budget itself when it is not a multiple of 128).
std::vector<int> profile_token_counts(int dense_budget);
// 8, 16, ..., up to num_sms (and num_sms itself when it is not a multiple of 8).
std::vector<int> profile_sm_budgets(int num_sms);

// Parses and checks a profile against the op graph: every field present and well-formed, one timing table per
// operation of the graph with every token count and budget, positive times, interference entries on measured
// budgets with a split of at most num_sms. Throws nf::error naming the problem.
operation_profile parse_operation_profile(const nlohmann::json& json, const op_graph& graph);
nlohmann::json to_json(const operation_profile& profile);

// What a profile must match to be used: the GPU it runs on and the model it serves.
struct profile_expectation {
  std::string gpu;           // empty: any
  const model_config* model = nullptr;  // null: any shape
};

// Reads a profile file; every error is an nf::error beginning "operation profile PATH:". A profile of another
// GPU or another model shape is stale and rejected.
operation_profile load_operation_profile(const std::filesystem::path& path, const op_graph& graph,
                                         const profile_expectation& expected);
void save_operation_profile(const operation_profile& profile, const std::filesystem::path& path);
// The checks of load_operation_profile against an expectation, for a profile already in memory.
void check_profile_matches(const operation_profile& profile, const profile_expectation& expected);

}  // namespace nf
