// `nanoflow tune` as a user runs it, on a synthetic profile (no GPU needed): `tune search` writes a spec that
// loads and validates and a prediction with the expected fields, agreeing with the library's search for the
// same inputs; bad input (a missing profile, another model's shape, another GPU, a workload past the budget,
// missing options) gives one clear error line and a non-zero exit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "e2e/run_command.h"
#include "pipeline/pipeline_spec.h"
#include "pipeline/validator.h"
#include "synthetic_profile.h"
#include "test_paths.h"
#include "tune/measured_choice.h"
#include "tune/search.h"

namespace nf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A temporary folder with a model config of the synthetic profile's shape and the profile itself.
class tune_cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nanoflow_tune_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "model");
    options_.shape.vocab = 2048;  // a small LM head keeps the CPU-timed steps of the measuring test quick
    const profile_shape& s = options_.shape;
    const json config = {{"architectures", {"LlamaForCausalLM"}},
                         {"model_type", "llama"},
                         {"hidden_size", s.hidden},
                         {"intermediate_size", s.intermediate},
                         {"num_attention_heads", s.num_q_heads},
                         {"num_key_value_heads", s.num_kv_heads},
                         {"head_dim", s.head_dim},
                         {"num_hidden_layers", s.num_layers},
                         {"vocab_size", s.vocab},
                         {"max_position_embeddings", 4096},
                         {"rms_norm_eps", 1e-5},
                         {"rope_theta", 500000.0}};
    std::ofstream(dir_ / "model" / "config.json") << config.dump(1);
    options_.num_sms = 32;
    options_.memory_saturation = 0.25;
    options_.memory_weight = 3.0;
    profile_ = test::synthetic_profile(llama_op_graph(), options_);
    save_operation_profile(profile_, dir_ / "profile.json");
  }
  void TearDown() override { fs::remove_all(dir_); }

  test::command_result tune(const std::string& arguments) const {
    return test::run_command(std::string(NANOFLOW_BINARY) + " tune " + arguments + " 2>&1");
  }
  std::string search_arguments(const std::string& workload) const {
    return "search --profile " + (dir_ / "profile.json").string() + " --model " + (dir_ / "model").string() + " " +
           workload + " --gpu 'Test GPU' --output-spec " + (dir_ / "spec.json").string() + " --output-prediction " +
           (dir_ / "prediction.json").string();
  }

  fs::path dir_;
  test::synthetic_options options_;
  operation_profile profile_;
};

TEST_F(tune_cli, search_writes_a_valid_spec_and_its_prediction) {
  const test::command_result result =
      tune(search_arguments("--decode-rows 128 --prefill-rows 384 --mean-context 1500 --max-nano-batches 2 --time-limit 5"));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  EXPECT_NE(result.out.find("tuned spec \"tuned\""), std::string::npos) << result.out;

  const pipeline_spec spec = load_pipeline_spec(dir_ / "spec.json", llama_op_graph());
  EXPECT_TRUE(validate_spec(spec, llama_op_graph()).empty());
  EXPECT_EQ(spec.name, "tuned");

  std::ifstream file(dir_ / "prediction.json");
  const json prediction = json::parse(file);
  EXPECT_EQ(prediction["spec"], "tuned");
  EXPECT_EQ(prediction["gpu"], "Test GPU");
  EXPECT_EQ(prediction["workload"]["num_decode"], 128);
  EXPECT_EQ(prediction["workload"]["num_prefill"], 384);
  EXPECT_DOUBLE_EQ(prediction["workload"]["mean_decode_context"].get<double>(), 1500.0);
  EXPECT_EQ(prediction["num_layers"], options_.shape.num_layers);
  const int num_nano_batches = prediction["num_nano_batches"].get<int>();
  EXPECT_TRUE(num_nano_batches == 1 || num_nano_batches == 2) << num_nano_batches;
  const double per_layer = prediction["per_layer_us"].get<double>();
  EXPECT_GT(per_layer, 0.0);
  EXPECT_GT(prediction["per_step_us"].get<double>(), (options_.shape.num_layers - 1) * per_layer);
  EXPECT_FALSE(prediction["candidates"].empty());
  ASSERT_TRUE(prediction["timeline"].is_object());
  size_t num_entries = 0;
  for (const auto& [stream, entries] : prediction["timeline"].items())
    for (const json& e : entries) {
      ++num_entries;
      EXPECT_GE(e["end_us"].get<double>(), e["start_us"].get<double>());
      EXPECT_GE(profile_.budget_index(e["sm_count"].get<int>()), 0) << e;
    }
  EXPECT_GE(num_entries, llama_op_graph().ops.size());

  // The command passes the workload and options through: the library gives the same optimum.
  tune_options options;
  options.workload = {128, 384, 1500.0};
  options.max_nano_batches = 2;
  options.stage1_time_limit_s = options.stage2_time_limit_s = 5.0;
  const tune_result direct = search_pipeline(profile_, llama_op_graph(), options);
  EXPECT_NEAR(per_layer, direct.per_layer_us(), 1e-6 * direct.per_layer_us());
}

TEST_F(tune_cli, search_with_measure_writes_the_fastest_measured_candidate) {
  const test::command_result result = tune(search_arguments(
      "--decode-rows 8 --prefill-rows 24 --mean-context 64 --max-nano-batches 2 --time-limit 2 --measure 1 "
      "--measure-backend cpu --measure-memory-sms 8 --measure-repeats 1"));
  ASSERT_EQ(result.exit_code, 0) << result.out;
  std::ifstream file(dir_ / "prediction.json");
  const json prediction = json::parse(file);
  ASSERT_TRUE(prediction.contains("measured")) << prediction.dump(1);
  const json& measured = prediction["measured"];
  ASSERT_GE(measured["specs"].size(), 2u);
  std::string fastest;
  double fastest_us = 0.0;
  bool has_sequential = false;
  for (const json& s : measured["specs"]) {
    const double us = s["measured_step_us"].get<double>();
    EXPECT_GT(us, 0.0) << s;
    if (fastest.empty() || us < fastest_us) {
      fastest = s["label"];
      fastest_us = us;
    }
    has_sequential = has_sequential || s["label"] == "sequential";
  }
  EXPECT_TRUE(has_sequential) << measured.dump(1);
  EXPECT_EQ(measured["chosen"], fastest);
  const pipeline_spec spec = load_pipeline_spec(dir_ / "spec.json", llama_op_graph());
  EXPECT_NE(spec.description.find("chosen by timing"), std::string::npos) << spec.description;
  EXPECT_NE(spec.description.find(fastest), std::string::npos) << spec.description;
  EXPECT_NE(result.out.find("measured sequential"), std::string::npos) << result.out;
  if (fastest != "sequential") {  // a split won: its row thresholds come from the decode and prefill ladders
    ASSERT_TRUE(prediction.contains("prefill_ladder")) << prediction.dump(1);
    const json& ladder = prediction["prefill_ladder"];
    EXPECT_EQ(ladder["min_prefill_rows"], spec.min_prefill_rows);
    std::vector<step_mix_point> points;
    for (const json& p : ladder["points"]) {
      EXPECT_EQ(p["num_decode"], 8) << p;
      points.push_back({p["num_decode"].get<int>(), p["num_prefill"].get<int>(), p["spec_step_us"].get<double>(),
                        p["sequential_step_us"].get<double>()});
    }
    ASSERT_EQ(points.size(), prefill_ladder(24).size() + 1);
    EXPECT_EQ(points.front().num_prefill, 0);
    EXPECT_EQ(points.back().num_prefill, 24);
    EXPECT_EQ(spec.min_prefill_rows, min_prefill_rows_from(points));
    EXPECT_EQ(prediction["decode_ladder"]["min_decode_rows"], spec.min_decode_rows);
  }
}

// Lines of the output that start with "error: ".
int num_error_lines(const std::string& out) {
  int count = out.rfind("error: ", 0) == 0 ? 1 : 0;
  for (size_t at = out.find("\nerror: "); at != std::string::npos; at = out.find("\nerror: ", at + 1)) ++count;
  return count;
}

void expect_error(const test::command_result& result, const std::string& expected) {
  EXPECT_NE(result.exit_code, 0) << result.out;
  EXPECT_EQ(num_error_lines(result.out), 1) << result.out;
  EXPECT_NE(result.out.find(expected), std::string::npos) << "expected \"" << expected << "\" in:\n" << result.out;
}

TEST_F(tune_cli, bad_input_gives_one_clear_error) {
  const std::string workload = "--decode-rows 128 --prefill-rows 128";
  fs::remove(dir_ / "profile.json");
  expect_error(tune(search_arguments(workload)), "cannot open the file");
  save_operation_profile(profile_, dir_ / "profile.json");

  // Another model: the profile is stale.
  const std::string other_model = (test::source_dir() / "configs/models/llama3-8b").string();
  expect_error(tune("search --profile " + (dir_ / "profile.json").string() + " --model " + other_model + " " + workload +
                    " --gpu 'Test GPU' --output-spec " + (dir_ / "s.json").string() + " --output-prediction " +
                    (dir_ / "p.json").string()),
               "model hidden is 256, but the model config says 4096");
  // Another GPU.
  std::string args = search_arguments(workload);
  args.replace(args.find("'Test GPU'"), 10, "'Other GPU'");
  expect_error(tune(args), "measured on \"Test GPU\", not on this \"Other GPU\"");
  // More rows than the profile's dense budget.
  expect_error(tune(search_arguments("--decode-rows 500 --prefill-rows 100")), "more than the profile's dense budget");
  // A missing required option (CLI11 reports it).
  const test::command_result no_rows = tune(search_arguments("--decode-rows 16"));
  EXPECT_NE(no_rows.exit_code, 0);
  EXPECT_NE(no_rows.out.find("--prefill-rows"), std::string::npos) << no_rows.out;
  // The combined command names what it misses.
  expect_error(tune("--model " + (dir_ / "model").string()), "needs --output, --decode-rows");
  // An output folder that does not exist.
  expect_error(tune("search --profile " + (dir_ / "profile.json").string() + " --model " + (dir_ / "model").string() +
                    " " + workload + " --gpu 'Test GPU' --output-spec " + (dir_ / "missing/s.json").string() +
                    " --output-prediction " + (dir_ / "p.json").string()),
               "does not exist");
  EXPECT_FALSE(fs::exists(dir_ / "s.json"));
}

TEST_F(tune_cli, profile_refuses_clearly_when_it_cannot_profile) {
  // head_dim 32 has no tensor-core attention kernel. Depending on the build and the machine the refusal is:
  // no CUDA in this build, no device, or the shape; each is one error line that says profiling cannot run.
  const test::command_result result =
      tune("profile --model " + (dir_ / "model").string() + " --output " + (dir_ / "p.json").string());
  EXPECT_NE(result.exit_code, 0) << result.out;
  EXPECT_EQ(num_error_lines(result.out), 1) << result.out;
  EXPECT_NE(result.out.find("profil"), std::string::npos) << result.out;
  EXPECT_FALSE(fs::exists(dir_ / "p.json"));
}

}  // namespace
}  // namespace nf
