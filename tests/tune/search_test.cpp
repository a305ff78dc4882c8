// The whole search on the Llama op graph with synthetic profiles: every emitted spec validates, survives its
// JSON round trip, never runs concurrent nano-ops past the GPU's SMs in its own predicted timeline, and gives
// the serial pass's logits on the CPU executor; bad workloads are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "engine/cpu_backend.h"
#include "model/weights.h"
#include "pipeline/validator.h"
#include "synthetic_profile.h"
#include "test_paths.h"
#include "tune/search.h"

namespace nf {
namespace {

using json = nlohmann::json;

// Short solver limits keep the test quick; a stopped solve still yields a valid (if not optimal) spec.
tune_options options_for(int num_decode, int num_prefill, int max_nano_batches = 3) {
  tune_options o;
  o.workload = {num_decode, num_prefill, 1024.0};
  o.max_nano_batches = max_nano_batches;
  o.stage1_time_limit_s = 1.0;
  o.stage2_time_limit_s = 1.0;
  o.memory_stream_ops = {};  // every memory-class operation may overlap the GEMMs: the widest search
  return o;
}

// A GPU of 64 SMs whose memory operations are heavy but need only an eighth of the SMs: overlap pays.
operation_profile profile_with(uint64_t seed) {
  test::synthetic_options o;
  o.seed = seed;
  o.num_sms = 64;
  o.memory_saturation = 0.125;
  o.memory_weight = 3.0;
  return test::synthetic_profile(llama_op_graph(), o);
}

// Over layer copies of the predicted timeline, any two nano-ops of different streams that run at once fit
// in the GPU's SMs together.
void expect_budgets_fit(const tune_result& r, int num_sms) {
  if (r.sequential) return;  // one stream
  const json timeline = r.prediction_json()["timeline"];
  const json& c = timeline["compute"];
  const json& m = timeline["memory"];
  const double period = r.per_layer_us();
  for (const json& a : c)
    for (const json& b : m)
      for (int offset = -4; offset <= 4; ++offset) {
        const double b_start = b["start_us"].get<double>() + offset * period;
        const double b_end = b["end_us"].get<double>() + offset * period;
        const bool overlap = b_start < a["end_us"].get<double>() - 1e-6 && a["start_us"].get<double>() < b_end - 1e-6;
        if (overlap) {
          EXPECT_LE(a["sm_count"].get<int>() + b["sm_count"].get<int>(), num_sms) << a << " " << b;
        }
      }
  for (const json* stream : {&c, &m})
    for (size_t i = 0; i + 1 < stream->size(); ++i)
      EXPECT_LE((*stream)[i]["end_us"].get<double>(), (*stream)[i + 1]["start_us"].get<double>() + 1e-6);
}

TEST(search_pipeline, emits_valid_specs_with_consistent_predictions) {
  const std::vector<std::pair<int, int>> workloads{{64, 448}, {0, 512}, {512, 0}, {100, 300}, {256, 256}};
  int num_multi_batch = 0;
  for (size_t w = 0; w < workloads.size(); ++w) {
    const operation_profile profile = profile_with(w + 1);
    const tune_result r = search_pipeline(profile, llama_op_graph(),
                                          options_for(workloads[w].first, workloads[w].second, w == 0 ? 3 : 2));
    SCOPED_TRACE(to_json(r.spec).dump());
    EXPECT_TRUE(validate_spec(r.spec, llama_op_graph()).empty());
    const pipeline_spec again = parse_pipeline_spec(to_json(r.spec));
    EXPECT_EQ(to_json(again), to_json(r.spec));
    EXPECT_TRUE(validate_spec(again, llama_op_graph()).empty());
    // The winner is the best candidate, and no worse than one nano-batch.
    ASSERT_FALSE(r.candidates.empty());
    for (const tune_candidate& c : r.candidates)
      if (c.stage2_period_us > 0) {
        EXPECT_LE(r.per_layer_us(), c.stage2_period_us + 1e-9);
      }
    EXPECT_GE(r.per_layer_us(), r.stage1.period_us - 1e-9);
    EXPECT_NEAR(r.per_step_us(), (profile.shape.num_layers - 1) * r.per_layer_us() + r.schedule.span_us(), 1e-9);
    expect_budgets_fit(r, profile.num_sms);
    num_multi_batch += r.problem.num_nano_batches() > 1 ? 1 : 0;
  }
  EXPECT_GE(num_multi_batch, 2) << "overlap should win on some workloads";
}

// Interference so heavy that no two nano-ops gain from running together, and a fixed cost per launch that makes
// every split dearer: the search must not emit a spec predicted slower than the plain sequential schedule.
TEST(search_pipeline, falls_back_to_the_sequential_schedule_when_overlap_does_not_pay) {
  operation_profile profile = profile_with(3);
  for (interference_point& p : profile.interference) p.compute_slowdown = p.memory_slowdown = 8.0;
  const workload_point w{128, 384, 1024.0};
  tune_options o = options_for(w.num_decode, w.num_prefill, 2);
  o.spec_name = "fallback";
  const tune_result r = search_pipeline(profile, llama_op_graph(), o);
  EXPECT_TRUE(r.sequential);
  EXPECT_EQ(r.spec.name, "fallback");
  EXPECT_EQ(r.spec.streams.size(), 1u);
  EXPECT_TRUE(validate_spec(r.spec, llama_op_graph()).empty());
  const double sequential = sequential_layer_us(profile, llama_op_graph(), w);
  EXPECT_NEAR(r.per_layer_us(), sequential, 1e-6 * sequential);
  EXPECT_NEAR(r.sequential_per_layer_us, sequential, 1e-9);
  for (const tune_candidate& c : r.candidates)
    if (c.stage2_period_us > 0) {
      EXPECT_GE(c.stage2_period_us, sequential - 1e-6) << "a candidate beat sequential, yet it fell back";
    }
  const json prediction = r.prediction_json();
  EXPECT_TRUE(prediction["sequential"].get<bool>());
  EXPECT_EQ(prediction["timeline"]["main"].size(), llama_op_graph().ops.size());
  // Where overlap pays (the profile as made), the search keeps its split.
  const tune_result overlapped = search_pipeline(profile_with(3), llama_op_graph(), o);
  EXPECT_FALSE(overlapped.sequential);
  EXPECT_LT(overlapped.per_layer_us(), overlapped.sequential_per_layer_us);
}

TEST(search_pipeline, refuses_bad_workloads) {
  const operation_profile profile = profile_with(1);
  auto error_of = [&](const tune_options& o) -> std::string {
    try {
      search_pipeline(profile, llama_op_graph(), o);
    } catch (const error& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_EQ(error_of(options_for(0, 0)), "tune: the workload has no rows");
  EXPECT_EQ(error_of(options_for(300, 300)), "tune: the workload has 600 rows, more than the profile's dense budget of 512");
  tune_options no_time = options_for(10, 10);
  no_time.stage1_time_limit_s = 0.0;
  EXPECT_EQ(error_of(no_time), "tune: the solver time limits must be positive");
  EXPECT_EQ(error_of(options_for(-1, 3)), "tune: negative decode or prefill row count");
  EXPECT_EQ(error_of(options_for(10, 10, 5)), "tune: the number of nano-batches must be 1 to 4, not 5");
  tune_options no_context = options_for(10, 10);
  no_context.workload.mean_decode_context = 0.0;
  EXPECT_EQ(error_of(no_context), "tune: give the mean decode context of the 10 decode rows");
}

TEST(search_pipeline, writes_the_spec_and_the_prediction) {
  const tune_result r = search_pipeline(profile_with(2), llama_op_graph(), options_for(64, 448, 2));
  const auto dir = std::filesystem::temp_directory_path();
  write_tune_result(r, dir / "nanoflow_tuned_spec.json", dir / "nanoflow_tuned_prediction.json");
  const pipeline_spec loaded = load_pipeline_spec(dir / "nanoflow_tuned_spec.json", llama_op_graph());
  EXPECT_EQ(to_json(loaded), to_json(r.spec));
  std::ifstream file(dir / "nanoflow_tuned_prediction.json");
  const json prediction = json::parse(file);
  EXPECT_EQ(prediction["gpu"], "Test GPU");
  EXPECT_DOUBLE_EQ(prediction["per_layer_us"].get<double>(), r.per_layer_us());
  EXPECT_EQ(prediction["workload"]["num_decode"], 64);
  EXPECT_TRUE(prediction["timeline"].contains("compute") && prediction["timeline"].contains("memory"));
  std::filesystem::remove(dir / "nanoflow_tuned_spec.json");
  std::filesystem::remove(dir / "nanoflow_tuned_prediction.json");
  EXPECT_THROW(write_tune_result(r, dir / "no such dir" / "x.json", dir / "y.json"), error);
}

// Steps over a 16-token block size: prompts, then decodes beside new prompt chunks (decodes first).
std::vector<model_batch> test_steps(int vocab) {
  std::mt19937 rng(5);
  std::vector<int> lengths;
  auto step = [&](const std::vector<std::pair<int, int>>& chunks) {
    model_batch batch;
    for (auto [seq, count] : chunks) {
      if (seq >= int(lengths.size())) lengths.resize(seq + 1, 0);
      batch_sequence s;
      s.query_start = batch.num_tokens();
      s.num_queries = count;
      s.context_len = lengths[seq] + count;
      for (int b = 0; b * 16 < s.context_len; ++b) s.block_table.push_back(seq * 8 + b);
      for (int i = 0; i < count; ++i) {
        const int position = lengths[seq] + i;
        batch.token_ids.push_back(int32_t(rng() % vocab));
        batch.positions.push_back(position);
        batch.slots.push_back(int64_t{s.block_table[position / 16]} * 16 + position % 16);
      }
      batch.logit_rows.push_back(s.query_start + count - 1);
      lengths[seq] += count;
      batch.sequences.push_back(s);
    }
    return batch;
  };
  return {step({{0, 7}, {1, 13}}), step({{0, 1}, {1, 1}, {2, 9}}), step({{0, 1}, {1, 1}, {2, 1}, {3, 5}}),
          step({{0, 1}, {1, 1}, {2, 1}, {3, 1}})};
}

std::vector<std::vector<float>> run_steps(const pipeline_spec& spec, uint64_t order_seed) {
  const auto dir = test::model_dir("llama3-gqa");
  model_weights weights = load_weights(dir, load_model_config(dir));
  const int vocab = weights.config.vocab_size;
  cpu_backend backend(std::move(weights), 64, 16, spec, order_seed);
  std::vector<std::vector<float>> logits;
  for (const model_batch& batch : test_steps(vocab)) {
    logits.emplace_back();
    backend.forward(batch, logits.back());
  }
  return logits;
}

TEST(search_pipeline, searched_specs_give_the_serial_logits_on_the_cpu_executor) {
  const auto serial = run_steps(sequential_spec(llama_op_graph()), 0);
  const std::vector<std::pair<int, int>> workloads{{64, 448}, {256, 256}, {100, 300}};
  for (size_t w = 0; w < workloads.size(); ++w) {
    const tune_result r = search_pipeline(profile_with(w + 1), llama_op_graph(),
                                          options_for(workloads[w].first, workloads[w].second, w == 0 ? 3 : 2));
    EXPECT_GT(r.problem.num_nano_batches(), 1) << "the test wants overlapped specs";
    for (uint64_t seed : {0, 17}) {
      const auto logits = run_steps(r.spec, seed);
      ASSERT_EQ(logits.size(), serial.size());
      float worst = 0.0f;
      for (size_t s = 0; s < serial.size(); ++s) {
        ASSERT_EQ(logits[s].size(), serial[s].size());
        float scale = 1.0f;
        for (float x : serial[s]) scale = std::max(scale, std::abs(x));
        for (size_t i = 0; i < serial[s].size(); ++i) worst = std::max(worst, std::abs(logits[s][i] - serial[s][i]) / scale);
      }
      // Splitting a GEMM into nano-batches moves logits by a few float ulps (BLAS rounds by call shape).
      EXPECT_LE(worst, 2e-6f) << to_json(r.spec).dump();
    }
  }
}

}  // namespace
}  // namespace nf
