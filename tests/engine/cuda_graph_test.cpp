// CUDA graphs of decode-only steps (label gpu; skipped without a device): a backend that replays graphs gives
// the logits and greedy tokens of one that launches every kernel eagerly, over decode steps whose sizes need
// padding (12, 11, 5, 3, 1 rows), a prefill step in between, contexts that cross the graph's context bound,
// and a large step that moves the activation buffers (captured graphs must be dropped, not replayed).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "engine/cuda/cuda_backend.h"
#include "pipeline/spec_helpers.h"

namespace nf {
namespace {

bool has_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

model_config small_config() {
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

std::unique_ptr<cuda_backend> make_backend(bool graphs, const pipeline_spec& spec) {
  cuda::weight_source dummy;
  dummy.dummy = true;
  dummy.dummy_seed = 4;
  dummy.dummy_std = 0.05f;
  cuda_backend_options options;
  options.kv_cache_tokens = 16 * 16 * 200;
  options.max_num_tokens = 256;
  options.show_progress = false;
  options.cuda_graphs = graphs;
  options.schedule = spec;
  return std::make_unique<cuda_backend>(small_config(), dummy, options);
}

// Sequences with 200 blocks each of 16 tokens; a step feeds (sequence, tokens) chunks, decodes first.
struct step_maker {
  std::mt19937 rng{9};
  std::vector<int> lengths = std::vector<int>(16, 0);
  model_batch step(const std::vector<std::pair<int, int>>& chunks) {
    model_batch batch;
    for (auto [seq, count] : chunks) {
      batch_sequence s;
      s.query_start = batch.num_tokens();
      s.num_queries = count;
      s.context_len = lengths[seq] + count;
      for (int b = 0; b * 16 < s.context_len; ++b) s.block_table.push_back(seq * 200 + b);
      for (int i = 0; i < count; ++i) {
        const int position = lengths[seq] + i;
        batch.token_ids.push_back(static_cast<int32_t>(rng() % 1000));
        batch.positions.push_back(position);
        batch.slots.push_back(int64_t{s.block_table[position / 16]} * 16 + position % 16);
      }
      batch.logit_rows.push_back(s.query_start + count - 1);
      lengths[seq] += count;
      batch.sequences.push_back(s);
    }
    return batch;
  }
};

std::vector<model_batch> steps() {
  step_maker maker;
  std::vector<std::pair<int, int>> prompts;
  for (int s = 0; s < 12; ++s) prompts.push_back({s, 20 + 170 * s});  // contexts 20 .. 1890, up to 3000 later
  std::vector<model_batch> out;
  out.push_back(maker.step(prompts));  // 11460 rows: grows the activation buffers past max_num_tokens
  auto decodes = [](std::initializer_list<int> seqs) {
    std::vector<std::pair<int, int>> chunks;
    for (int s : seqs) chunks.push_back({s, 1});
    return chunks;
  };
  out.push_back(maker.step(decodes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})));
  out.push_back(maker.step(decodes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})));
  out.push_back(maker.step(decodes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11})));
  auto mixed = decodes({0, 1, 2});
  mixed.push_back({11, 1200});  // a prefill chunk: eager; sequence 11 crosses the 2048 context bound
  out.push_back(maker.step(mixed));
  out.push_back(maker.step(decodes({0, 1, 2, 3, 11})));
  out.push_back(maker.step(decodes({0, 5, 11})));
  out.push_back(maker.step(decodes({11})));
  out.push_back(maker.step(decodes({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11})));
  return out;
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff += double(got[i] - want[i]) * (got[i] - want[i]);
    norm += double(want[i]) * want[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

TEST(cuda_graphs, graph_replays_match_eager_launches) {
  if (!has_device()) GTEST_SKIP() << "no CUDA device";
  for (const char* spec_name : {"sequential", "overlap"}) {
    const pipeline_spec spec = test::config_spec(spec_name);
    auto eager = make_backend(false, spec);
    auto graphs = make_backend(true, spec);
    size_t step_index = 0;
    for (const model_batch& batch : steps()) {
      std::vector<float> want, got;
      eager->forward(batch, want);
      graphs->forward(batch, got);
      ASSERT_EQ(got.size(), want.size());
      const double error = relative_error(got, want);
      EXPECT_LT(error, 1e-2) << spec_name << " step " << step_index;
      std::printf("%s, step %zu (%d rows): graph vs eager relative logit error %.2e\n", spec_name, step_index,
                  batch.num_tokens(), error);
      ++step_index;
    }
    EXPECT_EQ(eager->num_cuda_graphs(), 0u);
    EXPECT_GT(graphs->num_cuda_graphs(), 0u) << "decode-only steps should have been captured";
  }
}

TEST(cuda_graphs, greedy_tokens_from_graphs_equal_eager_tokens) {
  if (!has_device()) GTEST_SKIP() << "no CUDA device";
  auto eager = make_backend(false, test::config_spec("sequential"));
  auto graphs = make_backend(true, test::config_spec("sequential"));
  size_t equal = 0, total = 0;
  for (const model_batch& batch : steps()) {
    std::vector<int32_t> want, got;
    eager->forward_argmax(batch, want);
    graphs->forward_argmax(batch, got);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) equal += got[i] == want[i];
    total += got.size();
  }
  EXPECT_GE(double(equal), 0.95 * double(total));
  std::printf("greedy tokens: %zu of %zu equal between graphs and eager launches\n", equal, total);
}

}  // namespace
}  // namespace nf
