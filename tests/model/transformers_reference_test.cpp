// The CPU engine against Hugging Face transformers: for each reference checkpoint, the last-token logits
// (computed by transformers in float64) and 24-token greedy continuations.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/cpu_backend.h"
#include "engine/generate.h"
#include "model/weights.h"
#include "test_paths.h"

namespace nf {
namespace {

struct reference_case {
  std::vector<int32_t> prompt;
  std::vector<double> logits;
  std::vector<int32_t> greedy;
  double min_margin;
};

std::vector<reference_case> read_reference(const std::filesystem::path& dir) {
  std::ifstream file(dir / "reference.json");
  const auto json = nlohmann::json::parse(file);
  std::vector<reference_case> cases;
  for (const auto& c : json["cases"])
    cases.push_back({c["prompt_token_ids"].get<std::vector<int32_t>>(), c["last_logits"].get<std::vector<double>>(),
                     c["greedy_token_ids"].get<std::vector<int32_t>>(), c["min_greedy_margin"].get<double>()});
  return cases;
}

std::unique_ptr<cpu_backend> load_backend(const std::filesystem::path& dir) {
  const model_config config = load_model_config(dir);
  const int block_size = 16;
  const int num_blocks = (config.max_position_embeddings + block_size - 1) / block_size;
  return std::make_unique<cpu_backend>(load_weights(dir, config), num_blocks, block_size);
}

double relative_error(const std::vector<float>& actual, const std::vector<double>& expected) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff += (actual[i] - expected[i]) * (actual[i] - expected[i]);
    norm += expected[i] * expected[i];
  }
  return std::sqrt(diff / norm);
}

std::vector<float> last_logits(backend& model, const std::vector<int32_t>& prompt, int chunk) {
  std::vector<float> captured;
  sampling_params params;
  params.temperature = 0.0f;
  params.max_tokens = 1;
  // Logits are recovered from a one-token run through a backend wrapper that records them.
  class recording_backend final : public backend {
   public:
    recording_backend(backend& inner, std::vector<float>& sink) : inner_(inner), sink_(sink) {}
    const model_config& config() const override { return inner_.config(); }
    std::string name() const override { return inner_.name(); }
    int block_size() const override { return inner_.block_size(); }
    int num_kv_blocks() const override { return inner_.num_kv_blocks(); }
    void forward(const model_batch& batch, std::vector<float>& logits) override {
      inner_.forward(batch, logits);
      if (!batch.logit_rows.empty()) sink_ = logits;
    }
    double measure_gemm_flops(int n) override { return inner_.measure_gemm_flops(n); }
    const pipeline_spec& schedule() const override { return inner_.schedule(); }
    void set_schedule(const pipeline_spec& spec) override { inner_.set_schedule(spec); }

   private:
    backend& inner_;
    std::vector<float>& sink_;
  } recorder(model, captured);
  generate_one(recorder, prompt, params, 0, {}, chunk);
  return captured;
}

class transformers_reference : public ::testing::TestWithParam<const char*> {};

TEST_P(transformers_reference, last_token_logits_match) {
  const auto dir = test::model_dir(GetParam());
  auto model = load_backend(dir);
  for (const auto& c : read_reference(dir)) {
    const std::vector<float> logits = last_logits(*model, c.prompt, 0);
    ASSERT_EQ(logits.size(), c.logits.size());
    EXPECT_LT(relative_error(logits, c.logits), 1e-4) << "prompt of " << c.prompt.size() << " tokens";
  }
}

TEST_P(transformers_reference, chunked_prefill_gives_the_same_logits) {
  const auto dir = test::model_dir(GetParam());
  auto model = load_backend(dir);
  for (const auto& c : read_reference(dir)) {
    const std::vector<float> chunked = last_logits(*model, c.prompt, 7);
    EXPECT_LT(relative_error(chunked, c.logits), 1e-4) << "prompt of " << c.prompt.size() << " tokens";
  }
}

TEST_P(transformers_reference, greedy_continuations_match) {
  const auto dir = test::model_dir(GetParam());
  auto model = load_backend(dir);
  for (const auto& c : read_reference(dir)) {
    sampling_params params;
    params.temperature = 0.0f;
    params.max_tokens = static_cast<int>(c.greedy.size());
    params.ignore_eos = true;
    const generation_result result = generate_one(*model, c.prompt, params, 0);
    EXPECT_EQ(result.token_ids, c.greedy) << "prompt of " << c.prompt.size() << " tokens; smallest top-2 margin "
                                          << c.min_margin;
    EXPECT_EQ(result.finish_reason, "length");
  }
}

INSTANTIATE_TEST_SUITE_P(checkpoints, transformers_reference,
                         ::testing::Values("llama3-gqa", "qwen2-bias-tied", "mistral-headdim", "llama2-mha"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace nf
