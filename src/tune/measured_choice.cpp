// Timing the search's candidates on the device and keeping the fastest (see measured_choice.h).
#include "tune/measured_choice.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "core/error.h"
#include "pipeline/validator.h"

namespace nf {

namespace {

bool same_spec(const pipeline_spec& a, const pipeline_spec& b) {
  nlohmann::json ja = to_json(a), jb = to_json(b);
  for (nlohmann::json* j : {&ja, &jb}) {
    j->erase("name");
    j->erase("description");
  }
  return ja == jb;
}

// The spec with its budgeted nano-ops moved to memory_sms (those on a stream of memory-class nano-ops only) and
// num_sms - memory_sms (the rest).
pipeline_spec with_partition(const pipeline_spec& spec, const op_graph& graph, int num_sms, int memory_sms) {
  auto resource_of = [&](const nano_op_spec& op) {
    return op.resource.value_or(graph.ops[graph.find_op(op.op)].resource);
  };
  std::vector<bool> memory_only(spec.streams.size(), true);  // [num_streams]
  for (const nano_op_spec& op : spec.nano_ops)
    if (resource_of(op) != resource_class::memory) memory_only[spec.find_stream(op.stream)] = false;
  pipeline_spec result = spec;
  for (nano_op_spec& op : result.nano_ops) {
    const int sms = op.sm.count > 0 ? op.sm.count : static_cast<int>(op.sm.fraction * num_sms + 0.5);
    if (sms >= num_sms) continue;
    op.sm.count = memory_only[spec.find_stream(op.stream)] ? memory_sms : num_sms - memory_sms;
  }
  return result;
}

}  // namespace

std::vector<timed_spec> measurement_candidates(const std::vector<tune_result>& ranked, const op_graph& graph,
                                               int num_sms, int max_ranked, const std::vector<int>& memory_sms) {
  NF_CHECK(!ranked.empty(), "measurement_candidates needs search results");
  std::vector<timed_spec> specs;
  auto add = [&](timed_spec candidate) {
    for (const timed_spec& s : specs)
      if (same_spec(s.spec, candidate.spec)) return;
    const std::vector<std::string> problems = validate_spec(candidate.spec, graph);
    NF_CHECK(problems.empty(), "tune: candidate \"{}\" is invalid: {}", candidate.label, join_problems(problems));
    specs.push_back(std::move(candidate));
  };
  int best_split = -1;
  for (int i = 0; i < static_cast<int>(ranked.size()); ++i) {
    const tune_result& r = ranked[i];
    if (!r.sequential && best_split < 0) best_split = i;
    if (i >= max_ranked && !r.sequential) continue;
    const std::string label = r.sequential ? "sequential"
                                           : fmt::format("rank {}: {} nano-batches", i + 1, r.problem.num_nano_batches());
    add({label, r.spec, i, r.per_step_us()});
  }
  if (best_split >= 0) {
    for (int m : memory_sms) {
      if (m <= 0 || m >= num_sms) continue;
      const pipeline_spec variant = with_partition(ranked[best_split].spec, graph, num_sms, m);
      add({fmt::format("rank {} at {} + {} SMs", best_split + 1, num_sms - m, m), variant, best_split, -1.0});
    }
  }
  return specs;
}

size_t time_and_choose(std::vector<timed_spec>& specs, const step_timer& timer, std::FILE* progress) {
  NF_CHECK(!specs.empty(), "time_and_choose needs specs to time");
  size_t best = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    specs[i].measured_step_us = timer(specs[i].spec);
    if (progress) {
      std::fprintf(progress, "measured %-34s %9.3f ms per step", specs[i].label.c_str(), specs[i].measured_step_us / 1e3);
      if (specs[i].predicted_step_us > 0)
        std::fprintf(progress, "  (predicted %.3f ms for the layers)", specs[i].predicted_step_us / 1e3);
      std::fprintf(progress, "\n");
    }
    if (specs[i].measured_step_us < specs[best].measured_step_us) best = i;
  }
  return best;
}

nlohmann::json measurement_json(const std::vector<timed_spec>& specs, size_t chosen) {
  nlohmann::json all = nlohmann::json::array();
  for (const timed_spec& s : specs) {
    nlohmann::json entry = {{"label", s.label}, {"measured_step_us", s.measured_step_us}};
    entry["predicted_step_us"] = s.predicted_step_us > 0 ? nlohmann::json(s.predicted_step_us) : nlohmann::json();
    all.push_back(entry);
  }
  return {{"chosen", specs.at(chosen).label},
          {"note", "measured: the whole step (layers, embedding, LM head, host) as the engine runs it; predicted: "
                   "the decoder layers only"},
          {"specs", all}};
}

namespace {

// Counts at the given fractions (in eighths) of `workload_rows`, rounded, distinct, ascending, below the workload's
// and at least `smallest`.
std::vector<int> ladder_at(int workload_rows, std::initializer_list<int> eighths, int smallest) {
  std::vector<int> ladder;
  for (int e : eighths) {
    const int rows = static_cast<int>(std::lround(workload_rows * e / 8.0));
    if (rows >= smallest && rows < workload_rows && (ladder.empty() || rows > ladder.back())) ladder.push_back(rows);
  }
  return ladder;
}

// The smallest count (`rows` of each point) from which the spec measured faster at every larger point; 0 when it
// won everywhere; one past the largest count when it lost there.
int threshold_from(std::vector<step_mix_point> points, int step_mix_point::*rows) {
  if (points.empty()) return 0;
  std::sort(points.begin(), points.end(),
            [&](const step_mix_point& a, const step_mix_point& b) { return a.*rows < b.*rows; });
  int threshold = 0;
  for (const step_mix_point& p : points)
    if (p.spec_us >= p.sequential_us) threshold = -1;  // lost here: the threshold is above
    else if (threshold < 0) threshold = p.*rows;
  if (threshold < 0) return points.back().*rows + 1;  // lost at the largest point too
  return threshold;
}

}  // namespace

std::vector<int> decode_ladder(int workload_decode_rows) { return ladder_at(workload_decode_rows, {1, 2, 4, 6}, 1); }

std::vector<int> prefill_ladder(int workload_prefill_rows) {
  return ladder_at(workload_prefill_rows, {0, 1, 2, 4}, 0);
}

int min_decode_rows_from(std::vector<step_mix_point> points) {
  return threshold_from(std::move(points), &step_mix_point::num_decode);
}

int min_prefill_rows_from(std::vector<step_mix_point> points) {
  return threshold_from(std::move(points), &step_mix_point::num_prefill);
}

nlohmann::json ladder_json(const std::vector<step_mix_point>& points, const char* rows_key, int threshold) {
  nlohmann::json all = nlohmann::json::array();
  for (const step_mix_point& p : points)
    all.push_back({{"num_decode", p.num_decode}, {"num_prefill", p.num_prefill}, {"spec_step_us", p.spec_us},
                   {"sequential_step_us", p.sequential_us}});
  std::string rows = std::string(rows_key).substr(4);  // "decode_rows" or "prefill_rows"
  std::replace(rows.begin(), rows.end(), '_', ' ');
  return {{rows_key, threshold},
          {"note", fmt::format("steps with fewer {} than {} run the sequential spec", rows, rows_key)},
          {"points", all}};
}

row_thresholds measure_row_thresholds(int decode_rows, int prefill_rows, const step_mix_point& at_workload,
                                      const step_mix_timer& time_mix) {
  std::vector<step_mix_point> decode_points, prefill_points;
  for (int d : decode_ladder(decode_rows))
    decode_points.push_back(time_mix(d, decode_rows + prefill_rows - d, "decode ladder"));
  decode_points.push_back(at_workload);
  for (int p : prefill_ladder(prefill_rows)) prefill_points.push_back(time_mix(decode_rows, p, "prefill ladder"));
  prefill_points.push_back(at_workload);
  row_thresholds t;
  t.min_decode_rows = min_decode_rows_from(decode_points);
  t.min_prefill_rows = min_prefill_rows_from(prefill_points);
  t.decode_ladder = ladder_json(decode_points, "min_decode_rows", t.min_decode_rows);
  t.prefill_ladder = ladder_json(prefill_points, "min_prefill_rows", t.min_prefill_rows);
  return t;
}

}  // namespace nf
