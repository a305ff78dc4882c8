// The `nanoflow` binary as a user runs it: generation output against the transformers references, seeded
// sampling, and one clear error line with a non-zero exit for each kind of bad input.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "run_command.h"
#include "test_paths.h"

namespace nf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using run_result = test::command_result;

run_result run(const std::string& arguments) {
  return test::run_command(std::string(NANOFLOW_BINARY) + " " + arguments + " 2>&1");
}

// The JSON object is the one line of output that starts with '{'.
json json_line(const std::string& out) {
  size_t start = 0;
  while (start < out.size()) {
    const size_t end = out.find('\n', start);
    const std::string line = out.substr(start, end - start);
    if (!line.empty() && line[0] == '{') return json::parse(line);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  ADD_FAILURE() << "no JSON in output:\n" << out;
  return {};
}

std::string ids_argument(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids) text += (text.empty() ? "" : ",") + std::to_string(id);
  return text;
}

TEST(cli, greedy_generation_matches_transformers) {
  const fs::path dir = test::model_dir("llama3-gqa");
  std::ifstream file(dir / "reference.json");
  const json reference = json::parse(file);
  for (const auto& c : reference["cases"]) {
    const auto prompt = c["prompt_token_ids"].get<std::vector<int32_t>>();
    const run_result result = run("generate --model " + dir.string() + " --prompt-token-ids " + ids_argument(prompt) +
                                  " --max-tokens 24 --ignore-eos --json");
    ASSERT_EQ(result.exit_code, 0) << result.out;
    const json output = json_line(result.out);
    EXPECT_EQ(output["prompt_token_ids"].get<std::vector<int32_t>>(), prompt);
    EXPECT_EQ(output["token_ids"].get<std::vector<int32_t>>(), c["greedy_token_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(output["finish_reason"], "length");
  }
}

TEST(cli, seeded_sampling_is_reproducible) {
  const std::string base = "generate --model " + test::model_dir("qwen2-bias-tied").string() +
                           " --prompt-token-ids 5,6,7 --max-tokens 12 --ignore-eos --temperature 1.5 --json";
  const json a = json_line(run(base + " --seed 1").out), b = json_line(run(base + " --seed 1").out);
  const json c = json_line(run(base + " --seed 2").out);
  EXPECT_EQ(a["token_ids"], b["token_ids"]);
  EXPECT_NE(a["token_ids"], c["token_ids"]);
}

TEST(cli, stop_token_ids_end_generation) {
  // The fourth token of the greedy reference is made a stop token: generation ends at its first occurrence.
  const fs::path dir = test::model_dir("llama3-gqa");
  std::ifstream file(dir / "reference.json");
  const json reference = json::parse(file);
  const auto& c = reference["cases"][0];
  const auto greedy = c["greedy_token_ids"].get<std::vector<int32_t>>();
  const int32_t stop_id = greedy[3];
  const size_t first = std::find(greedy.begin(), greedy.end(), stop_id) - greedy.begin();
  const json output = json_line(run("generate --model " + dir.string() + " --prompt-token-ids " +
                                    ids_argument(c["prompt_token_ids"].get<std::vector<int32_t>>()) +
                                    " --max-tokens 24 --json --stop-token-ids " + std::to_string(stop_id))
                                    .out);
  EXPECT_EQ(output["finish_reason"], "stop");
  EXPECT_EQ(output["token_ids"].size(), first + 1);
}

TEST(cli, bench_throughput_reports_consistent_numbers) {
  const std::string model = test::model_dir("llama3-gqa").string();
  for (const std::string& workload : {std::string("--input-len 40 --output-len 12"),
                                     "--trace " + (test::source_dir() / "data/traces/lmsys.csv").string()}) {
    const run_result result = run("bench throughput --model " + model + " " + workload +
                                  " --num-prompts 24 --max-num-batched-tokens 128 --no-progress");
    ASSERT_EQ(result.exit_code, 0) << result.out;
    const json output = json_line(result.out);
    EXPECT_EQ(output["num_requests"], 24);
    const double elapsed = output["elapsed_s"];
    const double tokens = output["input_tokens"].get<double>() + output["output_tokens"].get<double>();
    EXPECT_NEAR(output["total_tokens_per_s"].get<double>(), tokens / elapsed, 1e-6 * tokens / elapsed);
    EXPECT_GT(output["ceiling_tokens_per_s"].get<double>(), 0.0);
    EXPECT_NEAR(output["fraction_of_ceiling"].get<double>(),
                output["total_tokens_per_s"].get<double>() / output["ceiling_tokens_per_s"].get<double>(), 1e-9);
    if (workload.find("--input-len") != std::string::npos) {
      EXPECT_EQ(output["input_tokens"], 24 * 40);
      EXPECT_EQ(output["output_tokens"], 24 * 12);
    }
  }
}

TEST(cli, bench_throughput_rejects_a_missing_trace) {
  const run_result result = run("bench throughput --model " + test::model_dir("llama3-gqa").string() +
                                " --trace /nonexistent/trace.csv --num-prompts 2");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.out.find("cannot open trace"), std::string::npos) << result.out;
}

struct bad_input {
  const char* name;
  std::string arguments;
  const char* message;
};

TEST(cli, bad_input_gives_one_clear_error) {
  const std::string qwen = test::model_dir("qwen2-bias-tied").string();
  const std::vector<bad_input> cases = {
      {"missing model", "generate --model /nonexistent/model --prompt-token-ids 1", "config.json"},
      {"prompt past the context", "generate --model " + qwen + " --prompt-token-ids " + ids_argument(std::vector<int32_t>(600, 3)),
       "context is 512 tokens"},
      {"token id outside the vocabulary", "generate --model " + qwen + " --prompt-token-ids 1,99999", "outside the vocabulary"},
      {"malformed token ids", "generate --model " + qwen + " --prompt-token-ids 1,x", "'x' is not"},
      {"text prompt without a tokenizer", "generate --model " + qwen + " --prompt hello", "needs a tokenizer"},
      {"bad sampling parameter", "generate --model " + qwen + " --prompt-token-ids 1 --top-p 0", "top_p"},
      {"unknown option", "generate --model " + qwen + " --prompt-token-ids 1 --frobnicate", "frobnicate"},
  };
  for (const auto& c : cases) {
    const run_result result = run(c.arguments);
    EXPECT_NE(result.exit_code, 0) << c.name;
    EXPECT_NE(result.out.find(c.message), std::string::npos) << c.name << ":\n" << result.out;
  }
}

TEST(cli, corrupt_checkpoints_give_one_clear_error) {
  const fs::path scratch = fs::temp_directory_path() / ("nanoflow-cli-" + std::to_string(::getpid()));
  fs::remove_all(scratch);
  fs::create_directories(scratch);
  fs::copy(test::model_dir("mistral-headdim"), scratch / "truncated", fs::copy_options::recursive);
  fs::resize_file(scratch / "truncated/model.safetensors", 1000);
  fs::copy(test::model_dir("mistral-headdim"), scratch / "unknown", fs::copy_options::recursive);
  {
    std::ifstream in(scratch / "unknown/config.json");
    json config = json::parse(in);
    config["architectures"] = {"FalconForCausalLM"};
    std::ofstream(scratch / "unknown/config.json") << config.dump();
  }
  fs::copy(test::model_dir("mistral-headdim"), scratch / "nolayers", fs::copy_options::recursive);
  {
    std::ifstream in(scratch / "nolayers/config.json");
    json config = json::parse(in);
    config.erase("num_hidden_layers");
    std::ofstream(scratch / "nolayers/config.json") << config.dump();
  }
  const std::vector<bad_input> cases = {
      {"truncated safetensors", "generate --model " + (scratch / "truncated").string() + " --prompt-token-ids 1", "truncated"},
      {"unknown architecture", "generate --model " + (scratch / "unknown").string() + " --prompt-token-ids 1",
       "FalconForCausalLM"},
      {"missing config field", "generate --model " + (scratch / "nolayers").string() + " --prompt-token-ids 1",
       "num_hidden_layers"},
  };
  for (const auto& c : cases) {
    const run_result result = run(c.arguments);
    EXPECT_EQ(result.exit_code, 1) << c.name;
    EXPECT_NE(result.out.find("error: "), std::string::npos) << c.name;
    EXPECT_NE(result.out.find(c.message), std::string::npos) << c.name << ":\n" << result.out;
  }
  fs::remove_all(scratch);
}

}  // namespace
}  // namespace nf
