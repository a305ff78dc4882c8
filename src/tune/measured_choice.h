// The last stage of `nanoflow tune`: the search's best candidates timed on the device itself, the fastest kept.
// The profile prices operations one at a time and interference from short two-kernel loops; a whole step of
// the engine (every layer, its launches, the LM head, the host) is what the spec is for, so the tuner times
// the step for the few specs the search ranks best, the sequential spec, and the best split with its SM
// partition moved to each of a list of memory-side budgets (the search's orders kept), and writes the fastest.
// Then, since the chosen split only pays where there is enough decode attention to hide and enough prefill work to
// hide it under, it and the sequential spec are timed at fewer decode rows and at fewer prefill rows (ladders below
// the workload's) to set the spec's min_decode_rows and min_prefill_rows.
#pragma once

#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/op_graph.h"
#include "pipeline/pipeline_spec.h"
#include "tune/search.h"

namespace nf {

struct timed_spec {
  std::string label;               // e.g. "rank 1: 2 nano-batches", "sequential", "rank 1 at 104 + 28 SMs"
  pipeline_spec spec;
  int ranked_index = -1;           // the search result it comes from (index into the ranked list)
  double predicted_step_us = -1.0;  // the search's prediction of the decoder layers; < 0: none (a budget variant)
  double measured_step_us = 0.0;    // the whole step, timed
};

// Measured time of one step, in microseconds, with the given spec.
using step_timer = std::function<double(const pipeline_spec&)>;

// The specs to time: the first `max_ranked` results of `ranked` (search_ranked's order), the sequential result
// wherever it ranks, and for the best-predicted split every variant with its budgeted nano-ops on the memory
// side (a stream of memory-class nano-ops only) on m SMs and the other budgeted ones on num_sms - m, for m in
// memory_sms (0 < m < num_sms). A nano-op is budgeted when it has fewer SMs than the device. Specs equal to an
// earlier one are left out.
std::vector<timed_spec> measurement_candidates(const std::vector<tune_result>& ranked, const op_graph& graph,
                                               int num_sms, int max_ranked, const std::vector<int>& memory_sms);

// Times every spec (a progress line each to `progress` when not null) and returns the index of the fastest.
size_t time_and_choose(std::vector<timed_spec>& specs, const step_timer& timer, std::FILE* progress);

// The measurements as JSON: every spec's label, predicted and measured step time, and which was chosen.
nlohmann::json measurement_json(const std::vector<timed_spec>& specs, size_t chosen);

// One step mix of a ladder, with the measured step time of the chosen spec and of the sequential one.
struct step_mix_point {
  int num_decode = 0;
  int num_prefill = 0;
  double spec_us = 0.0;
  double sequential_us = 0.0;
};

// Decode counts below the workload's to time the chosen spec at: 1/8, 1/4, 1/2 and 3/4 of `workload_decode_rows`,
// rounded, positive and distinct, ascending (empty below 2 decode rows).
std::vector<int> decode_ladder(int workload_decode_rows);

// Prefill counts below the workload's to time the chosen spec at (the decode rows kept at the workload's): 0 (a
// decode-only step), then 1/8, 1/4 and 1/2 of `workload_prefill_rows`, rounded, distinct, ascending (empty without
// prefill rows).
std::vector<int> prefill_ladder(int workload_prefill_rows);

// The min_decode_rows for the chosen spec: the smallest decode count from which it measured faster than the
// sequential spec at every larger point; 0 when it won at every point (or there are none). A point where it lost
// puts the threshold at the next point above, so the spec runs only where it was seen to win.
int min_decode_rows_from(std::vector<step_mix_point> points);

// The min_prefill_rows for the chosen spec, by the same rule over the points' prefill counts; a loss at the
// decode-only point (0 prefill rows) gives at least 1, so decode-only steps run the sequential spec.
int min_prefill_rows_from(std::vector<step_mix_point> points);

// A ladder's points and the threshold chosen from them, `rows_key` naming the threshold ("min_decode_rows" or
// "min_prefill_rows").
nlohmann::json ladder_json(const std::vector<step_mix_point>& points, const char* rows_key, int threshold);

// Times the chosen spec and the sequential one at one step mix; `ladder` ("decode ladder" or "prefill ladder")
// names the ladder the mix belongs to, for progress output.
using step_mix_timer = std::function<step_mix_point(int num_decode, int num_prefill, const char* ladder)>;

struct row_thresholds {
  int min_decode_rows = 0;
  int min_prefill_rows = 0;
  nlohmann::json decode_ladder;   // ladder_json of the decode ladder's points
  nlohmann::json prefill_ladder;  // and of the prefill ladder's
};

// Times the decode ladder (decode_ladder(decode_rows) decode rows, the rest of the workload's tokens prefill) and
// the prefill ladder (the workload's decode rows, prefill_ladder(prefill_rows) prefill rows) with `time_mix`, adds
// the workload's own point `at_workload` to both, and derives both thresholds.
row_thresholds measure_row_thresholds(int decode_rows, int prefill_rows, const step_mix_point& at_workload,
                                      const step_mix_timer& time_mix);

}  // namespace nf
