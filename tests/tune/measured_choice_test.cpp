// The measured last stage of the search: the ranked results are sorted and hold the sequential schedule once,
// the timed candidates are valid specs (the ranked ones, the sequential one, and the best split at other SM
// partitions, without duplicates), and the fastest measured one is chosen; the decode ladder sets the threshold
// below which the chosen split gives way to the sequential spec.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <set>
#include <string>
#include <vector>

#include "pipeline/validator.h"
#include "synthetic_profile.h"
#include "tune/measured_choice.h"
#include "tune/search.h"

namespace nf {
namespace {

constexpr int num_sms = 64;

// Heavy memory operations that need an eighth of the SMs: overlapped splits are predicted to win.
operation_profile overlap_friendly_profile() {
  test::synthetic_options o;
  o.num_sms = num_sms;
  o.memory_saturation = 0.125;
  o.memory_weight = 3.0;
  return test::synthetic_profile(llama_op_graph(), o);
}

tune_options small_search() {
  tune_options o;
  o.workload = {128, 384, 1024.0};
  o.max_nano_batches = 2;
  o.stage1_time_limit_s = o.stage2_time_limit_s = 2.0;
  o.memory_stream_ops = {};
  return o;
}

int sms_of(const nano_op_spec& op) {
  return op.sm.count > 0 ? op.sm.count : static_cast<int>(op.sm.fraction * num_sms + 0.5);
}

TEST(search_ranked, sorts_every_candidate_and_holds_the_sequential_schedule_once) {
  const operation_profile profile = overlap_friendly_profile();
  const std::vector<tune_result> ranked = search_ranked(profile, llama_op_graph(), small_search());
  ASSERT_GE(ranked.size(), 2u);
  int num_sequential = 0;
  for (size_t i = 0; i < ranked.size(); ++i) {
    if (ranked[i].sequential) ++num_sequential;
    EXPECT_TRUE(validate_spec(ranked[i].spec, llama_op_graph()).empty()) << i;
    if (i > 0) {
      EXPECT_LE(ranked[i - 1].per_layer_us(), ranked[i].per_layer_us()) << i;
    }
    EXPECT_EQ(ranked[i].spec.name, "tuned");
  }
  EXPECT_EQ(num_sequential, 1);
  EXPECT_FALSE(ranked.front().sequential) << "this profile should make a split win";
  const tune_result best = search_pipeline(profile, llama_op_graph(), small_search());
  EXPECT_DOUBLE_EQ(best.per_layer_us(), ranked.front().per_layer_us());
}

TEST(measurement_candidates, are_valid_distinct_and_move_the_partition_of_the_best_split) {
  const std::vector<tune_result> ranked = search_ranked(overlap_friendly_profile(), llama_op_graph(), small_search());
  const std::vector<int> memory_sms{0, 8, 16, num_sms};  // 0 and the whole device are skipped
  const std::vector<timed_spec> specs = measurement_candidates(ranked, llama_op_graph(), num_sms, 1, memory_sms);
  std::set<std::string> labels;
  int num_sequential = 0, num_variants = 0;
  for (const timed_spec& s : specs) {
    EXPECT_TRUE(labels.insert(s.label).second) << s.label;
    EXPECT_TRUE(validate_spec(s.spec, llama_op_graph()).empty()) << s.label;
    ASSERT_GE(s.ranked_index, 0);
    ASSERT_LT(s.ranked_index, static_cast<int>(ranked.size()));
    if (s.label == "sequential") {
      ++num_sequential;
      EXPECT_TRUE(ranked[s.ranked_index].sequential);
      EXPECT_GT(s.predicted_step_us, 0.0);
    }
    if (s.predicted_step_us > 0) continue;
    ++num_variants;
    EXPECT_FALSE(ranked[s.ranked_index].sequential) << "variants come from the best split";
    for (int i = 0; i < s.ranked_index; ++i) EXPECT_TRUE(ranked[i].sequential) << i;
    const int m = s.label.ends_with("+ 8 SMs") ? 8 : 16;
    EXPECT_TRUE(s.label.ends_with("+ " + std::to_string(m) + " SMs")) << s.label;
    const pipeline_spec& base = ranked[s.ranked_index].spec;
    ASSERT_EQ(s.spec.nano_ops.size(), base.nano_ops.size());
    for (size_t i = 0; i < base.nano_ops.size(); ++i) {
      const nano_op_spec& before = base.nano_ops[i];
      const nano_op_spec& after = s.spec.nano_ops[i];
      EXPECT_EQ(after.order, before.order);
      EXPECT_EQ(after.stream, before.stream);
      if (sms_of(before) >= num_sms) {
        EXPECT_GE(sms_of(after), num_sms) << after.name;
        continue;
      }
      EXPECT_EQ(sms_of(after), after.stream == "memory" ? m : num_sms - m) << after.name;
    }
  }
  EXPECT_EQ(num_sequential, 1);
  EXPECT_LE(num_variants, 2);
  EXPECT_GE(specs.size(), 2u);
  // One ranked split at most besides the sequential one.
  int num_ranked_splits = 0;
  for (const timed_spec& s : specs) num_ranked_splits += s.predicted_step_us > 0 && s.label != "sequential";
  EXPECT_EQ(num_ranked_splits, 1);
}

TEST(time_and_choose, keeps_the_fastest_measured_spec) {
  const std::vector<tune_result> ranked = search_ranked(overlap_friendly_profile(), llama_op_graph(), small_search());
  std::vector<timed_spec> specs = measurement_candidates(ranked, llama_op_graph(), num_sms, 3, {8, 16, 24});
  ASSERT_GE(specs.size(), 3u);
  // A timer whose fastest answer comes last but one: the choice follows the measurement, not the ranking.
  std::vector<double> answers;
  for (size_t i = 0; i < specs.size(); ++i) answers.push_back(100.0 + double(i));
  const size_t fastest = specs.size() - 2;
  answers[fastest] = 50.0;
  size_t call = 0;
  const size_t chosen = time_and_choose(specs, [&](const pipeline_spec&) { return answers.at(call++); }, nullptr);
  EXPECT_EQ(call, specs.size());
  EXPECT_EQ(chosen, fastest);
  for (size_t i = 0; i < specs.size(); ++i) EXPECT_DOUBLE_EQ(specs[i].measured_step_us, answers[i]);

  const nlohmann::json doc = measurement_json(specs, chosen);
  EXPECT_EQ(doc["chosen"], specs[fastest].label);
  ASSERT_EQ(doc["specs"].size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(doc["specs"][i]["label"], specs[i].label);
    EXPECT_EQ(doc["specs"][i]["predicted_step_us"].is_null(), specs[i].predicted_step_us < 0);
  }
}

TEST(decode_ladder, is_below_the_workload_ascending_and_distinct) {
  EXPECT_EQ(decode_ladder(512), (std::vector<int>{64, 128, 256, 384}));
  EXPECT_EQ(decode_ladder(540), (std::vector<int>{68, 135, 270, 405}));
  EXPECT_EQ(decode_ladder(4), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(decode_ladder(2), (std::vector<int>{1}));
  EXPECT_TRUE(decode_ladder(1).empty());
  EXPECT_TRUE(decode_ladder(0).empty());
}

// Points as (decode rows, spec step time, sequential step time); the order given does not matter.
std::vector<step_mix_point> points_of(const std::vector<std::array<double, 3>>& rows) {
  std::vector<step_mix_point> points;
  for (const auto& r : rows) points.push_back({static_cast<int>(r[0]), 0, r[1], r[2]});
  return points;
}

TEST(min_decode_rows, starts_the_spec_where_it_wins_from_there_up) {
  EXPECT_EQ(min_decode_rows_from({}), 0);
  // Wins everywhere: no threshold.
  EXPECT_EQ(min_decode_rows_from(points_of({{64, 50, 60}, {128, 50, 60}, {512, 50, 60}})), 0);
  // Loses at the small counts: starts at the first winning point above the last loss.
  EXPECT_EQ(min_decode_rows_from(points_of({{512, 70, 77}, {64, 62, 56}, {256, 64, 65}, {128, 65, 60}})), 256);
  // A win below a loss does not count: the spec must win at every larger point.
  EXPECT_EQ(min_decode_rows_from(points_of({{64, 50, 60}, {128, 61, 60}, {256, 59, 60}, {512, 58, 60}})), 256);
  // A tie is not a win.
  EXPECT_EQ(min_decode_rows_from(points_of({{64, 60, 60}, {128, 59, 60}})), 128);
  // Loses at the largest point too: never.
  EXPECT_EQ(min_decode_rows_from(points_of({{64, 50, 60}, {512, 61, 60}})), 513);

  const nlohmann::json doc = ladder_json(points_of({{64, 62, 56}, {512, 70, 77}}), "min_decode_rows", 512);
  EXPECT_EQ(doc["min_decode_rows"], 512);
  EXPECT_EQ(doc["note"], "steps with fewer decode rows than min_decode_rows run the sequential spec");
  ASSERT_EQ(doc["points"].size(), 2u);
  EXPECT_EQ(doc["points"][1]["num_decode"], 512);
  EXPECT_DOUBLE_EQ(doc["points"][0]["sequential_step_us"].get<double>(), 56.0);
}

TEST(prefill_ladder, starts_at_a_decode_only_step_below_the_workload) {
  EXPECT_EQ(prefill_ladder(1536), (std::vector<int>{0, 192, 384, 768}));
  EXPECT_EQ(prefill_ladder(24), (std::vector<int>{0, 3, 6, 12}));
  EXPECT_EQ(prefill_ladder(3), (std::vector<int>{0, 1, 2}));  // 3/8 rounds to 0, a repeat
  EXPECT_EQ(prefill_ladder(1), (std::vector<int>{0}));
  EXPECT_TRUE(prefill_ladder(0).empty());
}

// Points as (prefill rows, spec step time, sequential step time) at 512 decode rows.
std::vector<step_mix_point> prefill_points_of(const std::vector<std::array<double, 3>>& rows) {
  std::vector<step_mix_point> points;
  for (const auto& r : rows) points.push_back({512, static_cast<int>(r[0]), r[1], r[2]});
  return points;
}

TEST(min_prefill_rows, starts_the_spec_where_it_wins_from_there_up) {
  // Wins at the decode-only step and above: no threshold.
  EXPECT_EQ(min_prefill_rows_from(prefill_points_of({{0, 30, 31}, {192, 40, 42}, {1536, 60, 66}})), 0);
  // Loses (or ties) only at the decode-only step: decode-only steps run the sequential spec, the rest the split.
  EXPECT_EQ(min_prefill_rows_from(prefill_points_of({{0, 31, 31}, {192, 40, 42}, {1536, 60, 66}})), 192);
  // Loses up to a quarter of the workload's prefill rows: the split starts at the next point up.
  EXPECT_EQ(min_prefill_rows_from(
                prefill_points_of({{1536, 60, 66}, {384, 49, 48}, {0, 33, 31}, {768, 52, 53}, {192, 44, 42}})),
            768);
  // A win at the decode-only step below a loss does not count.
  EXPECT_EQ(min_prefill_rows_from(prefill_points_of({{0, 30, 31}, {192, 43, 42}, {1536, 60, 66}})), 1536);
  // Loses at the workload's point too: never.
  EXPECT_EQ(min_prefill_rows_from(prefill_points_of({{0, 30, 31}, {1536, 67, 66}})), 1537);

  const nlohmann::json doc = ladder_json(prefill_points_of({{0, 33, 31}, {1536, 60, 66}}), "min_prefill_rows", 1536);
  EXPECT_EQ(doc["min_prefill_rows"], 1536);
  EXPECT_EQ(doc["note"], "steps with fewer prefill rows than min_prefill_rows run the sequential spec");
  ASSERT_EQ(doc["points"].size(), 2u);
  EXPECT_EQ(doc["points"][0]["num_prefill"], 0);
  EXPECT_EQ(doc["points"][1]["num_decode"], 512);
}

TEST(row_thresholds, time_both_ladders_at_their_mixes_and_follow_the_measurements) {
  // A synthetic device where the split wins by 5% only with at least 256 decode rows and at least 384 prefill rows.
  std::vector<std::array<int, 2>> timed;
  std::vector<std::string> ladders;
  const step_mix_timer time_mix = [&](int num_decode, int num_prefill, const char* ladder) {
    timed.push_back({num_decode, num_prefill});
    ladders.emplace_back(ladder);
    const double sequential = 1000.0 + num_decode + num_prefill;
    const bool wins = num_decode >= 256 && num_prefill >= 384;
    return step_mix_point{num_decode, num_prefill, sequential * (wins ? 0.95 : 1.05), sequential};
  };
  const step_mix_point workload{512, 1536, 2900.0, 3048.0};
  const row_thresholds t = measure_row_thresholds(512, 1536, workload, time_mix);

  const std::vector<std::array<int, 2>> expected = {
      {64, 1984}, {128, 1920}, {256, 1792}, {384, 1664},  // decode ladder: the step's tokens stay 2048
      {512, 0},   {512, 192},  {512, 384},  {512, 768}};  // prefill ladder at the workload's decode rows
  EXPECT_EQ(timed, expected);
  EXPECT_EQ(std::count(ladders.begin(), ladders.end(), "decode ladder"), 4);
  EXPECT_EQ(std::count(ladders.begin(), ladders.end(), "prefill ladder"), 4);
  EXPECT_EQ(t.min_decode_rows, 256);
  EXPECT_EQ(t.min_prefill_rows, 384);
  EXPECT_EQ(t.decode_ladder["min_decode_rows"], 256);
  EXPECT_EQ(t.prefill_ladder["min_prefill_rows"], 384);
  ASSERT_EQ(t.decode_ladder["points"].size(), 5u);  // the ladder and the workload's point
  ASSERT_EQ(t.prefill_ladder["points"].size(), 5u);
  EXPECT_EQ(t.prefill_ladder["points"][4]["num_prefill"], 1536);
  EXPECT_DOUBLE_EQ(t.prefill_ladder["points"][4]["spec_step_us"].get<double>(), 2900.0);

  // Without prefill rows in the workload there is no prefill ladder and no prefill threshold.
  timed.clear();
  const row_thresholds decode_only = measure_row_thresholds(8, 0, {8, 0, 90.0, 100.0}, time_mix);
  EXPECT_EQ(decode_only.min_prefill_rows, 0);
  EXPECT_EQ(decode_only.prefill_ladder["points"].size(), 1u);
  for (const auto& mix : timed) EXPECT_EQ(mix[1], 8 - mix[0]) << mix[0];
}

}  // namespace
}  // namespace nf
