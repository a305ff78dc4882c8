// The CUDA executor of pipeline specs (label gpu; skipped without a device): the nano-batch and overlapped
// specs and random valid specs (1-3 streams, ops cut into pieces, random SM budgets) give the logits of the
// sequential schedule within bf16 tolerance on steps that mix decode rows, chunked prefill over a cached
// prefix and fresh prompts; on a reference checkpoint (generic attention kernels) and on a head_dim 128 model
// (tensor-core attention kernels, so decode and prefill attention are cut by rows). And an engine run with
// the overlapped spec gives the sequential spec's greedy tokens until the first near tie.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "engine/cuda/cuda_backend.h"
#include "engine/llm_engine.h"
#include "pipeline/spec_helpers.h"
#include "test_paths.h"

namespace nf {
namespace {

bool has_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!has_device()) GTEST_SKIP() << "no CUDA device"

// Logits of different schedules differ only where cuBLASLt picks another algorithm for a cut GEMM, or the
// decode kernel another split of the context: bf16 rounding of intermediate activations.
constexpr double schedule_tolerance = 1e-2;

model_config head_dim_128_config() {
  model_config c;
  c.architecture_name = "LlamaForCausalLM";
  c.hidden_size = 512;
  c.intermediate_size = 1024;
  c.num_layers = 3;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.vocab_size = 1000;
  c.max_position_embeddings = 8192;
  c.rms_norm_eps = 1e-5;
  c.rope.theta = 500000.0;
  return c;
}

struct model_case {
  std::string name;
  model_config config;
  cuda::weight_source source;
};

std::vector<model_case> model_cases() {
  std::vector<model_case> cases;
  const auto dir = test::model_dir("llama3-gqa");
  cuda::weight_source checkpoint;
  checkpoint.model_dir = dir;
  cases.push_back({"llama3-gqa", load_model_config(dir), checkpoint});
  cuda::weight_source dummy;
  dummy.dummy = true;
  dummy.dummy_seed = 11;
  dummy.dummy_std = 0.05f;
  cases.push_back({"head_dim 128 dummy", head_dim_128_config(), dummy});
  return cases;
}

std::unique_ptr<cuda_backend> make_backend(const model_case& m, const pipeline_spec& spec) {
  cuda_backend_options options;
  options.kv_cache_tokens = 512 * 16;
  options.max_num_tokens = 512;
  options.show_progress = false;
  options.schedule = spec;
  return std::make_unique<cuda_backend>(m.config, m.source, options);
}

// Steps over a 16-token block size, 24 blocks per sequence: prompts, then decodes (first) beside chunks of
// other prompts, one of them over a cached prefix, with contexts long enough to split the decode kernel.
std::vector<model_batch> mixed_steps(int vocab) {
  std::mt19937 rng(5);
  std::vector<int> lengths(12, 0);
  auto step = [&](const std::vector<std::pair<int, int>>& chunks) {
    model_batch batch;
    for (auto [seq, count] : chunks) {
      batch_sequence s;
      s.query_start = batch.num_tokens();
      s.num_queries = count;
      s.context_len = lengths[seq] + count;
      for (int b = 0; b * 16 < s.context_len; ++b) s.block_table.push_back(seq * 24 + b);
      for (int i = 0; i < count; ++i) {
        const int position = lengths[seq] + i;
        batch.token_ids.push_back(static_cast<int32_t>(rng() % vocab));
        batch.positions.push_back(position);
        batch.slots.push_back(int64_t{s.block_table[position / 16]} * 16 + position % 16);
      }
      batch.logit_rows.push_back(s.query_start + count - 1);
      lengths[seq] += count;
      batch.sequences.push_back(s);
    }
    return batch;
  };
  std::vector<model_batch> steps;
  steps.push_back(step({{0, 130}, {1, 61}, {2, 17}, {3, 200}}));
  steps.push_back(step({{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 90}, {5, 33}}));
  steps.push_back(step({{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 40}, {6, 150}}));
  steps.push_back(step({{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 3}}));
  steps.push_back(step({{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}}));
  return steps;
}

std::vector<std::vector<float>> run_steps(const model_case& m, const pipeline_spec& spec) {
  auto model = make_backend(m, spec);
  std::vector<std::vector<float>> logits;
  for (const model_batch& batch : mixed_steps(m.config.vocab_size)) {
    logits.emplace_back();
    model->forward(batch, logits.back());
  }
  return logits;
}

double worst_relative_error(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& want) {
  double worst = 0.0;
  EXPECT_EQ(got.size(), want.size());
  for (size_t s = 0; s < got.size() && s < want.size(); ++s) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < want[s].size(); ++i) {
      if (!std::isfinite(got[s][i])) return INFINITY;
      diff += double(got[s][i] - want[s][i]) * (got[s][i] - want[s][i]);
      norm += double(want[s][i]) * want[s][i];
    }
    worst = std::max(worst, std::sqrt(diff / std::max(norm, 1e-30)));
  }
  return worst;
}

TEST(cuda_pipeline, shipped_and_random_specs_match_the_sequential_schedule) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(31);
  for (const model_case& m : model_cases()) {
    const auto sequential = run_steps(m, test::config_spec("sequential"));
    std::vector<pipeline_spec> specs = {test::config_spec("nanobatch"), test::config_spec("overlap"),
                                       test::config_spec("overlap-split-decode"), test::config_spec("overlap-halves")};
    for (int i = 0; i < 6; ++i) specs.push_back(test::random_spec(rng, i));
    pipeline_spec switching = test::config_spec("overlap-a56");  // steps with a few decodes run sequentially
    switching.min_decode_rows = 3;
    specs.push_back(switching);
    for (const pipeline_spec& spec : specs) {
      const double error = worst_relative_error(run_steps(m, spec), sequential);
      EXPECT_LT(error, schedule_tolerance) << m.name << ", spec " << to_json(spec).dump();
      std::printf("%s, spec %s (%zu streams): worst relative logit error vs sequential %.2e\n", m.name.c_str(),
                  spec.name.c_str(), spec.streams.size(), error);
    }
  }
}

// Greedy tokens of 20 random requests through the engine; prompts of min_prompt to min_prompt + prompt_span - 1
// tokens.
// graphs_captured: how many CUDA graphs the backend holds at the end.
std::map<request_id, std::vector<int32_t>> greedy_tokens(const model_case& m, const pipeline_spec& spec, int min_prompt,
                                                         int prompt_span, int max_batched_tokens,
                                                         size_t* graphs_captured = nullptr) {
  engine_options options;
  options.scheduling.max_num_batched_tokens = max_batched_tokens;
  options.scheduling.max_num_seqs = 32;
  auto backend = make_backend(m, spec);
  const cuda_backend* backend_view = backend.get();
  llm_engine engine(std::move(backend), options);
  std::mt19937 rng(8);
  for (int i = 0; i < 20; ++i) {
    completion_request request;
    for (int j = 0, n = min_prompt + static_cast<int>(rng() % prompt_span); j < n; ++j)
      request.prompt_token_ids.push_back(static_cast<int32_t>(rng() % m.config.vocab_size));
    request.params.temperature = 0.0f;
    request.params.ignore_eos = true;
    request.params.max_tokens = 8 + static_cast<int>(rng() % 24);
    engine.add_request(i, std::move(request));
  }
  std::map<request_id, std::vector<int32_t>> out;
  for (int step = 0; engine.has_unfinished() && step < 5000; ++step)
    for (const completion_delta& delta : engine.step())
      for (int32_t t : delta.token_ids) out[delta.request_id].push_back(t);
  if (graphs_captured) *graphs_captured = backend_view->num_cuda_graphs();
  return out;
}

// Tokens equal before each request's first difference, over all tokens of `reference`.
std::pair<size_t, size_t> agreeing_prefix(const std::map<request_id, std::vector<int32_t>>& reference,
                                          const std::map<request_id, std::vector<int32_t>>& other) {
  size_t total = 0, equal = 0;
  for (const auto& [id, tokens] : reference) {
    const std::vector<int32_t>& o = other.at(id);
    EXPECT_EQ(o.size(), tokens.size()) << "request " << id;
    const size_t n = std::min(o.size(), tokens.size());
    equal += std::mismatch(tokens.begin(), tokens.begin() + n, o.begin()).first - tokens.begin();
    total += tokens.size();
  }
  return {equal, total};
}

TEST(cuda_pipeline, overlapped_engine_gives_sequential_greedy_tokens) {
  SKIP_WITHOUT_GPU();
  const model_case m = model_cases()[1];
  const auto sequential = greedy_tokens(m, test::config_spec("sequential"), 5, 120, 96);
  const auto overlapped = greedy_tokens(m, test::config_spec("overlap"), 5, 120, 96);
  ASSERT_EQ(sequential.size(), 20u);
  ASSERT_EQ(overlapped.size(), 20u);
  const auto [equal, total] = agreeing_prefix(sequential, overlapped);
  // Random weights make near ties rare but not impossible: nearly every token must agree.
  EXPECT_GE(double(equal), 0.9 * double(total));
  std::printf("overlapped vs sequential engine: %zu of %zu greedy tokens equal before the first difference\n", equal,
              total);
}

// Short prompts that all fit the first step, then decode-only steps: the first step runs the sequential spec (no
// decode rows), the first overlapped step is a decode-only one captured into a CUDA graph. The overlapped spec's
// second stream and its cuBLASLt workspace must exist by then (no allocation is allowed while capturing).
TEST(cuda_pipeline, switching_spec_first_overlaps_inside_a_graph_capture) {
  SKIP_WITHOUT_GPU();
  const model_case m = model_cases()[1];
  pipeline_spec switching = test::config_spec("overlap-a56");
  switching.min_decode_rows = 2;
  size_t graphs = 0;
  const auto sequential = greedy_tokens(m, test::config_spec("sequential"), 1, 16, 512);
  const auto switched = greedy_tokens(m, switching, 1, 16, 512, &graphs);
  ASSERT_EQ(switched.size(), 20u);
  EXPECT_GT(graphs, 0u);
  const auto [equal, total] = agreeing_prefix(sequential, switched);
  EXPECT_GE(double(equal), 0.9 * double(total));
  std::printf("switching spec inside graphs (%zu captured) vs sequential: %zu of %zu greedy tokens equal\n", graphs,
              equal, total);
}

}  // namespace
}  // namespace nf
