// The CUDA backend against independent references (label gpu; skipped without a device):
// - the four transformers checkpoints: last-token logits within bf16 tolerance of transformers' float64 logits,
//   and greedy continuations equal to the CPU backend's until the first near tie;
// - dummy weights generated on the device equal the host's dummy weights (CPU backend logits), on a head_dim 128
//   model that runs the tensor-core attention kernels;
// - realistic shapes (Llama-3-8B width, Qwen2-7B width with bias), checkpoints and transformers float32 logits
//   made at test time by scripts/reference/make_realistic_refs.py into $NANOFLOW_REALISTIC_REFS;
// - sampling on the device (forward_sample) draws what the host sampler draws from forward()'s logits;
// - continuous batching (chunked prompts, a prefix-cache hit, mixed lengths) gives each request's solo tokens
//   until the first near tie.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "core/dtype.h"
#include "engine/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/llm_engine.h"
#include "model/weights.h"
#include "test_paths.h"

namespace nf {
namespace {

constexpr double logits_tolerance = 2e-2;  // relative L2 error of bf16 logits, tiny reference models
// Several layers of 3584-4096 wide bf16 activations (residual stream rounded after every add) against float32.
constexpr double wide_logits_tolerance = 3e-2;
constexpr float near_tie = 0.05f;          // top-2 logit margin below which greedy paths may part

bool has_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!has_device()) GTEST_SKIP() << "no CUDA device"

std::unique_ptr<cuda_backend> make_cuda(const model_config& config, const cuda::weight_source& source, int num_blocks) {
  cuda_backend_options options;
  options.kv_cache_tokens = int64_t{num_blocks} * options.block_size;
  options.max_num_tokens = 512;
  options.show_progress = false;
  return std::make_unique<cuda_backend>(config, source, options);
}

double relative_error(const std::vector<float>& out, const std::vector<double>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    diff += (out[i] - ref[i]) * (out[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// Top-1 id and its margin over the runner-up.
std::pair<int32_t, float> top_with_margin(const float* logits, int vocab) {
  const int32_t best = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  float second = -INFINITY;
  for (int i = 0; i < vocab; ++i)
    if (i != best) second = std::max(second, logits[i]);
  return {best, logits[best] - second};
}

// One sequence on blocks 0, 1, ... of a backend: feed tokens (a chunk), get the last row's logits or argmax.
class solo_sequence {
 public:
  explicit solo_sequence(backend& model) : model_(model) {}
  model_batch next_batch(const std::vector<int32_t>& tokens) {
    model_batch batch;
    const int bs = model_.block_size();
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int position = length_ + static_cast<int>(i);
      batch.token_ids.push_back(tokens[i]);
      batch.positions.push_back(position);
      batch.slots.push_back(position);  // block b holds positions b*bs .. b*bs+bs-1
    }
    length_ += static_cast<int>(tokens.size());
    std::vector<int32_t> table((length_ + bs - 1) / bs);
    for (size_t b = 0; b < table.size(); ++b) table[b] = static_cast<int32_t>(b);
    batch.sequences.push_back({0, static_cast<int>(tokens.size()), length_, table});
    batch.logit_rows.push_back(static_cast<int32_t>(tokens.size()) - 1);
    return batch;
  }
  std::vector<float> logits(const std::vector<int32_t>& tokens) {
    std::vector<float> out;
    model_.forward(next_batch(tokens), out);
    return out;
  }
  int32_t argmax(const std::vector<int32_t>& tokens) {
    std::vector<int32_t> out;
    model_.forward_argmax(next_batch(tokens), out);
    return out.at(0);
  }

 private:
  backend& model_;
  int length_ = 0;
};

struct greedy_run {
  std::vector<int32_t> tokens;
  std::vector<float> margins;  // top-2 margin at each step
};

greedy_run solo_greedy(backend& model, const std::vector<int32_t>& prompt, int num_tokens) {
  solo_sequence seq(model);
  greedy_run run;
  std::vector<int32_t> feed = prompt;
  for (int i = 0; i < num_tokens; ++i) {
    const std::vector<float> logits = seq.logits(feed);
    const auto [token, margin] = top_with_margin(logits.data(), model.config().vocab_size);
    run.tokens.push_back(token);
    run.margins.push_back(margin);
    feed = {token};
  }
  return run;
}

// Tokens agree until the first step where the reference's top-2 margin is a near tie; returns that step.
size_t expect_equal_until_near_tie(const std::vector<int32_t>& got, const greedy_run& reference, const std::string& what) {
  const size_t n = std::min(got.size(), reference.tokens.size());
  for (size_t i = 0; i < n; ++i) {
    if (got[i] == reference.tokens[i]) continue;
    EXPECT_LT(reference.margins[i], near_tie) << what << ": tokens part at step " << i << " (" << got[i] << " vs "
                                              << reference.tokens[i] << ") where the reference margin is "
                                              << reference.margins[i];
    return i;
  }
  return n;
}

TEST(cuda_backend, reference_checkpoints_match_transformers_and_the_cpu_engine) {
  SKIP_WITHOUT_GPU();
  for (const char* name : {"llama3-gqa", "qwen2-bias-tied", "mistral-headdim", "llama2-mha"}) {
    const auto dir = test::model_dir(name);
    const model_config config = load_model_config(dir);
    std::ifstream file(dir / "reference.json");
    const auto reference = nlohmann::json::parse(file);
    cuda::weight_source source;
    source.model_dir = dir;
    auto gpu = make_cuda(config, source, 16);
    cpu_backend cpu(load_weights(dir, config), 16, 16);
    for (const auto& c : reference["cases"]) {
      const auto prompt = c["prompt_token_ids"].get<std::vector<int32_t>>();
      const auto expected = c["last_logits"].get<std::vector<double>>();
      const std::vector<float> logits = solo_sequence(*gpu).logits(prompt);
      ASSERT_EQ(logits.size(), expected.size());
      const double error = relative_error(logits, expected);
      EXPECT_LT(error, logits_tolerance) << name << " prompt of " << prompt.size();
      std::printf("%s, prompt of %zu: relative error of the last-token logits %.2e\n", name, prompt.size(), error);

      // Greedy: the CUDA backend's device argmax step by step against the CPU engine's logits.
      const int num_tokens = static_cast<int>(c["greedy_token_ids"].size());
      const greedy_run on_cpu = solo_greedy(cpu, prompt, num_tokens);
      solo_sequence seq(*gpu);
      std::vector<int32_t> on_gpu;
      std::vector<int32_t> feed = prompt;
      for (int i = 0; i < num_tokens; ++i) {
        on_gpu.push_back(seq.argmax(feed));
        feed = {on_gpu.back()};
      }
      const size_t agreed = expect_equal_until_near_tie(on_gpu, on_cpu, name);
      std::printf("%s, prompt of %zu: greedy tokens agree with the CPU engine for %zu of %d steps\n", name,
                  prompt.size(), agreed, num_tokens);
    }
  }
}

// Random weights generated on the device: N(0, std^2) from `seed`.
cuda::weight_source dummy_source(uint64_t seed, float std) {
  cuda::weight_source source;
  source.dummy = true;
  source.dummy_seed = seed;
  source.dummy_std = std;
  return source;
}

model_config tuned_test_config() {
  model_config c;
  c.architecture_name = "LlamaForCausalLM";
  c.hidden_size = 512;
  c.intermediate_size = 1024;
  c.num_layers = 2;
  c.num_q_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.vocab_size = 1000;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  c.rope.theta = 500000.0;
  c.rope.type = rope_config::scaling::llama3;
  c.rope.factor = 8.0;
  c.rope.original_max_position_embeddings = 1024;
  return c;
}

TEST(cuda_backend, device_dummy_weights_equal_host_dummy_weights_on_tensor_core_kernels) {
  SKIP_WITHOUT_GPU();
  const model_config config = tuned_test_config();
  auto gpu = make_cuda(config, dummy_source(5, 0.02f), 64);
  // The host copy rounded to bf16 as the device holds it: what remains is activation rounding and the kernels.
  model_weights host = dummy_weights(config, 5, 0.02f);
  auto round = [](std::vector<float>& v) {
    for (float& x : v) x = bf16_to_float(float_to_bf16(x));
  };
  round(host.embed);
  round(host.lm_head);
  for (layer_weights& l : host.layers)
    for (auto* v : {&l.qkv, &l.o, &l.gate_up, &l.down}) round(*v);
  cpu_backend cpu(std::move(host), 64, 16);
  std::mt19937 rng(3);
  std::vector<int32_t> prompt(300);
  for (auto& id : prompt) id = static_cast<int32_t>(rng() % config.vocab_size);
  // A chunked prefill (the second chunk over a cached prefix), then decode steps.
  solo_sequence on_gpu(*gpu), on_cpu(cpu);
  std::vector<std::vector<int32_t>> feeds = {{prompt.begin(), prompt.begin() + 133}, {prompt.begin() + 133, prompt.end()}};
  for (int i = 0; i < 6; ++i) feeds.push_back({static_cast<int32_t>(rng() % config.vocab_size)});
  for (size_t step = 0; step < feeds.size(); ++step) {
    const std::vector<float> a = on_gpu.logits(feeds[step]), b = on_cpu.logits(feeds[step]);
    const double error = relative_error(a, std::vector<double>(b.begin(), b.end()));
    EXPECT_LT(error, wide_logits_tolerance) << "step " << step;
    std::printf("head_dim 128 dummy model, step %zu (%zu tokens): relative error vs CPU %.2e\n", step,
                feeds[step].size(), error);
  }
}

TEST(cuda_backend, device_sampling_matches_the_host_sampler_on_the_same_logits) {
  SKIP_WITHOUT_GPU();
  const model_config config = tuned_test_config();
  auto gpu = make_cuda(config, dummy_source(11, 0.05f), 64);  // logits wide enough that top-k / top-p / min-p cut
  std::mt19937 rng(23);
  std::vector<int32_t> prompt(96);
  for (auto& id : prompt) id = static_cast<int32_t>(rng() % config.vocab_size);
  solo_sequence seq(*gpu);
  model_batch batch = seq.next_batch(prompt);
  batch.logit_rows.clear();
  for (int32_t row = 5; row < 96; row += 12) batch.logit_rows.push_back(row);  // 8 rows
  std::vector<sampling_params> params(batch.logit_rows.size());
  params[0].temperature = 0.8f;
  params[1].temperature = 1.0f, params[1].top_k = 20;
  params[2].temperature = 0.7f, params[2].top_p = 0.9f;
  params[3].temperature = 1.2f, params[3].min_p = 0.05f;
  params[4].temperature = 0.9f, params[4].repetition_penalty = 1.3f, params[4].logprobs = 5;
  params[5].temperature = 0.0f, params[5].presence_penalty = 0.5f, params[5].frequency_penalty = 0.3f;
  params[6].temperature = 1.0f, params[6].top_k = 50, params[6].top_p = 0.8f, params[6].logprobs = 0;
  params[7].temperature = 0.0f, params[7].logprobs = 3;
  const std::vector<int32_t> outputs = {prompt[3], prompt[7], prompt[7], 17};  // tokens "generated so far"
  std::vector<int32_t> eos = {2};
  size_t num_rows = 0, num_different = 0;
  for (uint64_t trial = 0; trial < 6; ++trial) {
    std::vector<sampling_context> contexts;
    for (size_t r = 0; r < params.size(); ++r)
      contexts.push_back({&params[r], 1000 + trial, static_cast<uint32_t>(r), prompt, outputs, eos});
    std::vector<sample_result> on_device;
    gpu->forward_sample(batch, contexts, on_device);
    std::vector<float> logits;
    gpu->forward(batch, logits);  // the same batch again: the same KV writes, the same logits
    ASSERT_EQ(on_device.size(), params.size());
    const size_t vocab = static_cast<size_t>(config.vocab_size);
    for (size_t r = 0; r < params.size(); ++r) {
      const sample_result on_host = sample_token(std::span<const float>(logits.data() + r * vocab, vocab), contexts[r]);
      ++num_rows;
      if (on_host.token_id != on_device[r].token_id) {
        ++num_different;
        continue;
      }
      EXPECT_NEAR(on_host.logprob, on_device[r].logprob, 2e-3) << "row " << r << " trial " << trial;
      ASSERT_EQ(on_host.top_logprobs.size(), on_device[r].top_logprobs.size()) << "row " << r;
      for (size_t k = 0; k < on_host.top_logprobs.size(); ++k)
        EXPECT_NEAR(on_host.top_logprobs[k].logprob, on_device[r].top_logprobs[k].logprob, 2e-3) << "row " << r;
    }
  }
  std::printf("device sampling: %zu of %zu rows drew another token than the host sampler\n", num_different, num_rows);
  EXPECT_LE(num_different, 1u) << "only a draw that lands on a float boundary may differ";
}

// Realistic shapes: reference checkpoints and float32 transformers logits made on the GPU machine at test time.
TEST(cuda_backend, realistic_shapes_match_transformers) {
  SKIP_WITHOUT_GPU();
  const char* root = std::getenv("NANOFLOW_REALISTIC_REFS");
  if (!root || !*root) GTEST_SKIP() << "NANOFLOW_REALISTIC_REFS is not set (see scripts/reference/make_realistic_refs.py)";
  int num_models = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (!std::filesystem::exists(entry.path() / "reference.json")) continue;
    ++num_models;
    const std::string name = entry.path().filename().string();
    const model_config config = load_model_config(entry.path());
    std::ifstream file(entry.path() / "reference.json");
    const auto reference = nlohmann::json::parse(file);
    cuda::weight_source source;
    source.model_dir = entry.path();
    auto gpu = make_cuda(config, source, 128);
    // Every case runs at once: step 0 prefills the first chunk of every prompt, step 1 the rest, then one token
    // per sequence per step (decode). Each case's logits rows are the positions len(prompt)-1 onward.
    const auto& cases = reference["cases"];
    const int num_cases = static_cast<int>(cases.size());
    std::vector<std::vector<int32_t>> sequences;
    std::vector<int> prompt_lens;
    for (const auto& c : cases) {
      auto tokens = c["prompt_token_ids"].get<std::vector<int32_t>>();
      prompt_lens.push_back(static_cast<int>(tokens.size()));
      for (int32_t t : c["extra_token_ids"].get<std::vector<int32_t>>()) tokens.push_back(t);
      sequences.push_back(tokens);
    }
    const int num_extra = static_cast<int>(cases[0]["extra_token_ids"].size());
    const int bs = gpu->block_size();
    const int blocks_per_seq = 40;
    std::vector<int> done(num_cases, 0);
    double worst = 0.0;
    for (int step = 0; step < 2 + num_extra; ++step) {
      model_batch batch;
      std::vector<int> row_case, row_position;
      // Decodes first (steps >= 2), as the engine orders them.
      for (int k = 0; k < num_cases; ++k) {
        const int end = step == 0 ? prompt_lens[k] / 2 : step == 1 ? prompt_lens[k] : prompt_lens[k] + step - 1;
        const int start = done[k];
        std::vector<int32_t> table(blocks_per_seq);
        for (int b = 0; b < blocks_per_seq; ++b) table[b] = k * blocks_per_seq + b;
        batch.sequences.push_back({batch.num_tokens(), end - start, end, table});
        for (int p = start; p < end; ++p) {
          batch.token_ids.push_back(sequences[k][p]);
          batch.positions.push_back(p);
          batch.slots.push_back(int64_t{table[p / bs]} * bs + p % bs);
        }
        done[k] = end;
        if (step >= 1) {
          batch.logit_rows.push_back(batch.num_tokens() - 1);
          row_case.push_back(k);
          row_position.push_back(end - 1 - (prompt_lens[k] - 1));
        }
      }
      std::vector<float> logits;
      gpu->forward(batch, logits);
      const int vocab = config.vocab_size;
      for (size_t r = 0; r < row_case.size(); ++r) {
        const auto expected = cases[row_case[r]]["logits"][row_position[r]].get<std::vector<double>>();
        const std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
        const double error = relative_error(row, expected);
        worst = std::max(worst, error);
        EXPECT_LT(error, wide_logits_tolerance) << name << " case " << row_case[r] << " position " << row_position[r];
      }
    }
    std::printf("%s: worst relative error of %d x %d logits rows vs transformers float32: %.2e\n", name.c_str(), num_cases,
                num_extra + 1, worst);
  }
  EXPECT_GT(num_models, 0) << "no reference.json under " << root;
}

struct workload_request {
  std::vector<int32_t> prompt;
  int max_tokens = 0;
  int arrival_step = 0;
};

TEST(cuda_backend, continuous_batching_gives_solo_tokens) {
  SKIP_WITHOUT_GPU();
  struct model_case {
    std::string name;
    model_config config;
    cuda::weight_source source;
  };
  std::vector<model_case> models;
  {
    const auto dir = test::model_dir("llama3-gqa");
    cuda::weight_source source;
    source.model_dir = dir;
    models.push_back({"llama3-gqa", load_model_config(dir), source});
    models.push_back({"head_dim 128 dummy", tuned_test_config(), dummy_source(9, 0.1f)});
  }
  for (const model_case& m : models) {
    std::mt19937_64 rng(17);
    const int vocab = m.config.vocab_size;
    std::vector<int32_t> shared(40);
    for (auto& id : shared) id = static_cast<int32_t>(rng() % vocab);
    std::vector<workload_request> workload;
    for (int i = 0; i < 14; ++i) {
      workload_request r;
      if (i % 3 == 0) r.prompt = shared;
      const int extra = 1 + static_cast<int>(rng() % 90);
      for (int j = 0; j < extra; ++j) r.prompt.push_back(static_cast<int32_t>(rng() % vocab));
      r.max_tokens = 4 + static_cast<int>(rng() % 28);
      r.arrival_step = i == 0 ? 0 : 3 + static_cast<int>(rng() % 8);  // request 0 fills the prefix cache first
      workload.push_back(r);
    }
    engine_options options;
    options.async_loop = true;
    options.scheduling.max_num_batched_tokens = 64;  // prompts are chunked
    options.scheduling.max_num_seqs = 16;
    options.scheduling.kv.num_tokens = 200 * 16;
    llm_engine engine(make_cuda(m.config, m.source, 200), options);
    std::map<request_id, std::vector<int32_t>> tokens;
    size_t added = 0;
    for (int step = 0; (added < workload.size() || engine.has_unfinished()) && step < 5000; ++step) {
      for (size_t i = 0; i < workload.size(); ++i)
        if (workload[i].arrival_step == step) {
          completion_request request;
          request.prompt_token_ids = workload[i].prompt;
          request.params.temperature = 0.0f;
          request.params.ignore_eos = true;
          request.params.max_tokens = workload[i].max_tokens;
          engine.add_request(i, std::move(request));
          ++added;
        }
      for (const completion_delta& delta : engine.step())
        for (int32_t t : delta.token_ids) tokens[delta.request_id].push_back(t);
    }
    EXPECT_GT(engine.stats().prefix_cache_hit_rate, 0.0) << m.name << ": shared prefixes should hit the cache";
    auto solo_model = make_cuda(m.config, m.source, 32);
    size_t total = 0, agreed = 0;
    for (size_t i = 0; i < workload.size(); ++i) {
      ASSERT_EQ(tokens[i].size(), static_cast<size_t>(workload[i].max_tokens)) << m.name << " request " << i;
      const greedy_run solo = solo_greedy(*solo_model, workload[i].prompt, workload[i].max_tokens);
      agreed += expect_equal_until_near_tie(tokens[i], solo, m.name + " request " + std::to_string(i));
      total += tokens[i].size();
    }
    std::printf("%s: batched greedy tokens equal solo tokens for %zu of %zu tokens (the rest after a near tie)\n",
                m.name.c_str(), agreed, total);
  }
}

}  // namespace
}  // namespace nf
