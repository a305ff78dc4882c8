// The step loop on the CPU backend with real (reference) checkpoints: continuous batching, chunked prefill,
// prefix-cache hits and preemption change no greedy output; the asynchronous loop gives the same tokens as
// the synchronous one; aborts and completions leave no KV block behind.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "engine/cpu_backend.h"
#include "engine/generate.h"
#include "engine/llm_engine.h"
#include "model/weights.h"
#include "test_paths.h"

namespace nf {
namespace {

std::unique_ptr<cpu_backend> load(const char* name, int num_blocks, int block_size = 16) {
  const auto dir = test::model_dir(name);
  const model_config config = load_model_config(dir);
  return std::make_unique<cpu_backend>(load_weights(dir, config), num_blocks, block_size);
}

struct workload_request {
  std::vector<int32_t> prompt;
  sampling_params params;
  int arrival_step = 0;
};

// Random prompts, a third of them sharing a 40-token prefix with the first, arriving over the first steps.
std::vector<workload_request> make_workload(int vocab, int count, uint64_t seed, bool sampled, int max_output = 24) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> shared(40);
  for (auto& id : shared) id = static_cast<int32_t>(rng() % vocab);
  std::vector<workload_request> workload;
  for (int i = 0; i < count; ++i) {
    workload_request r;
    if (i % 3 == 0) r.prompt = shared;
    const int extra = 1 + static_cast<int>(rng() % 45);
    for (int j = 0; j < extra; ++j) r.prompt.push_back(static_cast<int32_t>(rng() % vocab));
    r.params.max_tokens = 4 + static_cast<int>(rng() % (max_output - 4));
    r.params.ignore_eos = true;
    if (sampled) {
      r.params.temperature = 0.8f;
      r.params.top_k = 40;
      r.params.top_p = 0.9f;
      r.params.repetition_penalty = 1.1f;
      r.params.frequency_penalty = 0.2f;
      r.params.seed = 1000 + i;
    } else {
      r.params.temperature = 0.0f;
    }
    r.arrival_step = static_cast<int>(rng() % 6);
    workload.push_back(r);
  }
  return workload;
}

struct run_outcome {
  std::map<request_id, std::vector<int32_t>> tokens;
  engine_stats stats;
  int max_step_tokens = 0;
};

run_outcome run_engine(llm_engine& engine, const std::vector<workload_request>& workload) {
  run_outcome outcome;
  int step = 0;
  size_t added = 0;
  while (added < workload.size() || engine.has_unfinished()) {
    for (size_t i = 0; i < workload.size(); ++i)
      if (workload[i].arrival_step == step) {
        engine.add_request(i, {workload[i].prompt, workload[i].params});
        ++added;
      }
    for (const completion_delta& delta : engine.step())
      for (int32_t token : delta.token_ids) outcome.tokens[delta.request_id].push_back(token);
    EXPECT_EQ(engine.scheduling().check_invariants(), "");
    ++step;
    EXPECT_LT(step, 10000) << "the loop does not finish";
    if (step >= 10000) break;
  }
  outcome.stats = engine.stats();
  return outcome;
}

engine_options small_options(bool async, int budget, int num_kv_tokens) {
  engine_options options;
  options.async_loop = async;
  options.scheduling.max_num_batched_tokens = budget;
  options.scheduling.max_num_seqs = 64;
  options.scheduling.kv.num_tokens = num_kv_tokens;
  return options;
}

TEST(engine, batched_greedy_outputs_equal_solo_outputs) {
  for (const char* name : {"llama3-gqa", "qwen2-bias-tied"}) {
    auto solo_model = load(name, 64);
    const auto workload = make_workload(solo_model->config().vocab_size, 18, 7, false, 64);
    // Small budget: prompts are chunked; small pool: requests get preempted and recomputed.
    engine_options options = small_options(false, 48, 24 * 16);
    options.scheduling.output_len_prior = 1;  // an optimistic admission estimate, so KV does run out
    options.scheduling.output_len_prior_weight = 1000;
    llm_engine engine(load(name, 24), options);
    const run_outcome outcome = run_engine(engine, workload);
    EXPECT_GT(outcome.stats.num_preemptions, 0) << name << ": the pool should force preemption";
    EXPECT_GT(outcome.stats.prefix_cache_hit_rate, 0.0) << name << ": shared prefixes should hit the cache";
    for (size_t i = 0; i < workload.size(); ++i) {
      const generation_result solo = generate_one(*solo_model, workload[i].prompt, workload[i].params, 0);
      EXPECT_EQ(outcome.tokens.at(i), solo.token_ids) << name << " request " << i;
    }
    EXPECT_EQ(outcome.stats.num_free_kv_blocks, outcome.stats.num_kv_blocks) << "blocks leaked";
  }
}

TEST(engine, reference_prompts_batched_match_transformers) {
  const auto dir = test::model_dir("llama3-gqa");
  std::ifstream file(dir / "reference.json");
  const auto reference = nlohmann::json::parse(file);
  std::vector<workload_request> workload;
  for (const auto& c : reference["cases"]) {
    workload_request r;
    r.prompt = c["prompt_token_ids"].get<std::vector<int32_t>>();
    r.params.temperature = 0.0f;
    r.params.ignore_eos = true;
    r.params.max_tokens = static_cast<int>(c["greedy_token_ids"].size());
    workload.push_back(r);
  }
  llm_engine engine(load("llama3-gqa", 64), small_options(true, 16, 64 * 16));
  const run_outcome outcome = run_engine(engine, workload);
  for (size_t i = 0; i < workload.size(); ++i)
    EXPECT_EQ(outcome.tokens.at(i), reference["cases"][i]["greedy_token_ids"].get<std::vector<int32_t>>()) << i;
}

TEST(engine, async_loop_gives_the_same_tokens_as_sync) {
  for (bool sampled : {false, true}) {
    const auto workload = make_workload(640, 15, 11, sampled);
    llm_engine sync_engine(load("llama3-gqa", 40), small_options(false, 40, 40 * 16));
    llm_engine async_engine(load("llama3-gqa", 40), small_options(true, 40, 40 * 16));
    const run_outcome a = run_engine(sync_engine, workload), b = run_engine(async_engine, workload);
    EXPECT_EQ(a.tokens, b.tokens) << (sampled ? "sampled" : "greedy");
    for (size_t i = 0; i < workload.size(); ++i)
      EXPECT_EQ(b.tokens.at(i).size(), static_cast<size_t>(workload[i].params.max_tokens)) << i;
  }
}

TEST(engine, eos_ends_a_request_in_both_loops_without_extra_tokens) {
  // Take the greedy continuation of a prompt and declare one of its tokens a stop id: both loops stop there.
  const std::vector<int32_t> prompt = {5, 17, 300, 42, 8};
  auto solo_model = load("llama3-gqa", 64);
  sampling_params greedy;
  greedy.temperature = 0.0f;
  greedy.max_tokens = 20;
  greedy.ignore_eos = true;
  const auto full = generate_one(*solo_model, prompt, greedy, 0).token_ids;
  sampling_params stopping = greedy;
  stopping.ignore_eos = false;
  stopping.stop_token_ids = {full[5]};
  const size_t expected = std::find(full.begin(), full.end(), full[5]) - full.begin() + 1;
  for (bool async : {false, true}) {
    llm_engine engine(load("llama3-gqa", 64), small_options(async, 64, 64 * 16));
    const run_outcome outcome = run_engine(engine, {{prompt, stopping, 0}, {prompt, greedy, 0}});
    EXPECT_EQ(outcome.tokens.at(0), std::vector<int32_t>(full.begin(), full.begin() + expected)) << async;
    EXPECT_EQ(outcome.tokens.at(1), full) << async;
  }
}

TEST(engine, abort_frees_blocks_and_reports_once) {
  for (bool async : {false, true}) {
    llm_engine engine(load("qwen2-bias-tied", 32), small_options(async, 32, 32 * 16));
    sampling_params params;
    params.temperature = 0.0f;
    params.max_tokens = 100;
    params.ignore_eos = true;
    engine.add_request(1, {std::vector<int32_t>(70, 9), params});
    engine.add_request(2, {std::vector<int32_t>(20, 4), params});
    int aborts_seen = 0, tokens_after_abort = 0;
    bool aborted = false;
    for (int step = 0; step < 400 && engine.has_unfinished(); ++step) {
      if (step == 6) {
        EXPECT_TRUE(engine.abort(1));
        EXPECT_FALSE(engine.abort(1));
        aborted = true;
      }
      for (const auto& delta : engine.step()) {
        if (delta.request_id != 1) continue;
        if (delta.finish_reason == "abort") ++aborts_seen;
        else if (aborted) tokens_after_abort += static_cast<int>(delta.token_ids.size());
      }
      if (step == 7) EXPECT_EQ(engine.scheduling().find(1), nullptr);
    }
    EXPECT_EQ(aborts_seen, 1);
    EXPECT_EQ(tokens_after_abort, 0);
    EXPECT_EQ(engine.stats().num_free_kv_blocks, engine.stats().num_kv_blocks);
  }
}

TEST(engine, rejects_requests_it_cannot_serve_and_stays_usable) {
  llm_engine engine(load("qwen2-bias-tied", 8), small_options(false, 32, 8 * 16));
  sampling_params params;
  params.max_tokens = 8;
  EXPECT_THROW(engine.add_request(1, {{}, params}), nf::error);
  EXPECT_THROW(engine.add_request(2, {{1, 100000}, params}), nf::error);
  EXPECT_THROW(engine.add_request(3, {std::vector<int32_t>(200, 1), params}), nf::error);  // past the KV pool
  params.max_tokens = 600;
  EXPECT_THROW(engine.add_request(4, {{1, 2}, params}), nf::error);  // past the context of 512
  params.max_tokens = 3;
  params.temperature = 0.0f;
  params.ignore_eos = true;
  engine.add_request(5, {{1, 2, 3}, params});
  int produced = 0;
  while (engine.has_unfinished())
    for (const auto& delta : engine.step()) produced += static_cast<int>(delta.token_ids.size());
  EXPECT_EQ(produced, 3);
  EXPECT_FALSE(engine.has_unfinished());
}

}  // namespace
}  // namespace nf
