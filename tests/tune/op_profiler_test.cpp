// The GPU operation profiler (label gpu; skipped without a device) on a small Llama shape: the profile it
// returns passes the loader's checks for this GPU and model, every time is positive and grows with the rows,
// decode attention slows down with longer contexts and with fewer SMs, and every interference split fits the GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "core/error.h"
#include "tune/cuda/op_profiler.h"

namespace nf {
namespace {

bool has_device() {
  int count = 0;
  const bool found = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  (void)cudaGetLastError();
  return found;
}

model_config small_config() {
  model_config c;
  c.architecture_name = "LlamaForCausalLM";
  c.hidden_size = 512;
  c.intermediate_size = 2048;
  c.num_layers = 2;
  c.num_q_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.vocab_size = 1000;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  c.rope.theta = 500000.0;
  return c;
}

TEST(op_profiler, profiles_a_small_model_into_a_loadable_profile) {
  if (!has_device()) GTEST_SKIP() << "no CUDA device";
  const model_config config = small_config();
  op_profiler_options options;
  options.dense_budget = 384;
  options.decode_context_lengths = {256, 2048};
  options.sm_budget_stride = 4;
  options.interference_memory_sms = {16, 32};
  const operation_profile profile = profile_operations(config, options);

  int device = 0, num_sms = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  EXPECT_EQ(profile.gpu, current_gpu_name());
  EXPECT_EQ(profile.num_sms, num_sms);
  EXPECT_EQ(profile.shape, shape_of(config));
  EXPECT_EQ(profile.token_counts, (std::vector<int>{128, 256, 384}));
  EXPECT_EQ(profile.sm_budgets, profile_sm_budgets(num_sms));

  // It loads as `nanoflow tune search` loads it, for this GPU and this model.
  const auto path = std::filesystem::temp_directory_path() / ("nanoflow_op_profile_" + std::to_string(::getpid()) + ".json");
  save_operation_profile(profile, path);
  const profile_expectation expected{profile.gpu, &config};
  EXPECT_NO_THROW(load_operation_profile(path, llama_op_graph(), expected));
  std::filesystem::remove(path);

  const op_graph& graph = llama_op_graph();
  const size_t num_counts = profile.token_counts.size(), num_budgets = profile.sm_budgets.size();
  for (const op_timing& t : profile.ops) {
    for (double us : t.time_us) EXPECT_TRUE(us > 0.0 && std::isfinite(us)) << t.op << " " << us;
    // Roughly monotone in rows: the most rows never take clearly less than the fewest.
    const size_t num_contexts = t.by_context ? profile.decode_context_lengths.size() : 1;
    for (size_t c = 0; c < num_contexts; ++c)
      for (size_t b = 0; b < num_budgets; ++b) {
        const double fewest = t.time_us[(c * num_counts) * num_budgets + b];
        const double most = t.time_us[(c * num_counts + num_counts - 1) * num_budgets + b];
        EXPECT_GE(most, 0.8 * fewest) << t.op << " at " << profile.sm_budgets[b] << " SMs, context " << c;
      }
  }
  // Decode attention streams 16x the KV at 384 rows x 2048 than at 128 x 256, and 8 SMs cannot stream it as
  // fast as the whole GPU.
  const int decode = graph.find_op("decode_attention");
  const double small = profile.time_us(graph, decode, 128, num_sms, 256.0);
  const double large = profile.time_us(graph, decode, 384, num_sms, 2048.0);
  EXPECT_GT(large, 2.0 * small) << small << " us vs " << large << " us";
  EXPECT_GT(profile.time_us(graph, decode, 384, 8, 2048.0), 1.5 * large);

  ASSERT_FALSE(profile.interference.empty());
  for (const interference_point& p : profile.interference) {
    EXPECT_LE(p.compute_sms + p.memory_sms, num_sms);
    EXPECT_GE(p.compute_slowdown, 1.0);
    EXPECT_GE(p.memory_slowdown, 1.0);
    EXPECT_LT(p.compute_slowdown, 20.0) << p.compute_op << " beside " << p.memory_op;
    EXPECT_LT(p.memory_slowdown, 20.0) << p.compute_op << " beside " << p.memory_op;
  }
  // Every compute operation has a measured split beside decode attention and beside any other memory operation.
  for (int c = 0; c < static_cast<int>(graph.ops.size()); ++c)
    if (graph.ops[c].resource == resource_class::compute)
      for (const char* memory : {"decode_attention", "activation", "attn_norm"}) {
        const interference_point& first = profile.interference.front();
        EXPECT_TRUE(profile.interference_at(graph, c, graph.find_op(memory), first.compute_sms, first.memory_sms))
            << graph.ops[c].name << " beside " << memory;
      }
}

TEST(op_profiler, refuses_shapes_and_options_it_cannot_profile) {
  if (!has_device()) GTEST_SKIP() << "no CUDA device";
  model_config config = small_config();
  op_profiler_options options;
  options.dense_budget = 128;
  options.decode_context_lengths = {256};
  options.progress = nullptr;
  config.head_dim = 96;
  EXPECT_THROW(profile_operations(config, options), error);
  config = small_config();
  options.decode_context_lengths = {1024, 512};
  EXPECT_THROW(profile_operations(config, options), error);
  options.decode_context_lengths = {512};
  options.dense_budget = 0;
  EXPECT_THROW(profile_operations(config, options), error);
}

}  // namespace
}  // namespace nf
