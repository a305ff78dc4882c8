// The CPU executor: the sequential, nano-batch and overlapped specs, and random valid specs run in random
// dependency orders, give the logits and greedy tokens of the serial pass on the reference checkpoints; a
// spec with a dependency removed is flagged by the validator, and an order it permits changes the result.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <random>

#include "engine/cpu_backend.h"
#include "engine/llm_engine.h"
#include "model/rope.h"
#include "model/weights.h"
#include "pipeline/batch_rows.h"
#include "pipeline/cpu_executor.h"
#include "spec_helpers.h"

namespace nf {
namespace {

using nlohmann::json;

model_weights weights_of(const char* name) {
  const auto dir = test::model_dir(name);
  return load_weights(dir, load_model_config(dir));
}

// Hand-made steps over a 16-token block size: two prompts, then their decodes beside a third prompt's chunk,
// then decodes beside the rest of it (decodes first, as the planner orders them).
struct step_maker {
  explicit step_maker(int vocab_size) : vocab(vocab_size) {}

  int vocab;
  std::mt19937 rng{5};
  std::vector<int> lengths;  // tokens in each sequence's KV so far

  model_batch step(const std::vector<std::pair<int, int>>& chunks) {  // (sequence, num_tokens)
    model_batch batch;
    for (auto [seq, count] : chunks) {
      if (seq >= static_cast<int>(lengths.size())) lengths.resize(seq + 1, 0);
      batch_sequence s;
      s.query_start = batch.num_tokens();
      s.num_queries = count;
      s.context_len = lengths[seq] + count;
      for (int b = 0; b * 16 < s.context_len; ++b) s.block_table.push_back(seq * 8 + b);
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
  }
};

std::vector<model_batch> test_steps(int vocab) {
  step_maker maker(vocab);
  std::vector<model_batch> steps;
  steps.push_back(maker.step({{0, 7}, {1, 13}}));
  steps.push_back(maker.step({{0, 1}, {1, 1}, {2, 9}}));
  steps.push_back(maker.step({{0, 1}, {1, 1}, {2, 1}, {3, 5}}));
  steps.push_back(maker.step({{0, 1}, {1, 1}, {2, 1}, {3, 1}}));
  return steps;
}

std::vector<std::vector<float>> run_steps(const char* model, const pipeline_spec& spec, uint64_t order_seed = 0) {
  model_weights weights = weights_of(model);
  const int vocab = weights.config.vocab_size;
  cpu_backend backend(std::move(weights), 64, 16, spec, order_seed);
  std::vector<std::vector<float>> logits;
  for (const model_batch& batch : test_steps(vocab)) {
    logits.emplace_back();
    backend.forward(batch, logits.back());
  }
  return logits;
}

// Largest difference between two runs' logits, relative to the largest logit of its step. Not bitwise: the
// BLAS sgemm rounds a row differently depending on how many rows the call has, so splitting a GEMM into
// nano-batches moves logits by a few float ulps (about 1e-6 of the largest logit).
float max_difference(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  float worst = 0.0f;
  EXPECT_EQ(a.size(), b.size());
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_EQ(a[s].size(), b[s].size());
    float scale = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < a[s].size() && i < b[s].size(); ++i) {
      scale = std::max(scale, std::abs(a[s][i]));
      diff = std::max(diff, std::abs(a[s][i] - b[s][i]));
    }
    worst = std::max(worst, diff / std::max(scale, 1.0f));
  }
  return worst;
}

constexpr float logit_tolerance = 2e-6f;

TEST(cpu_executor, test_steps_mix_decode_and_prefill_rows) {
  const auto steps = test_steps(100);
  EXPECT_EQ(rows_of_batch(steps[0]).num_decode, 0);
  EXPECT_EQ(rows_of_batch(steps[1]).num_decode, 2);
  EXPECT_EQ(rows_of_batch(steps[1]).num_prefill, 9);
  EXPECT_EQ(rows_of_batch(steps[3]).num_prefill, 0);
}

TEST(cpu_executor, three_specs_give_the_same_logits) {
  for (const char* model : {"llama3-gqa", "qwen2-bias-tied", "mistral-headdim"}) {
    const auto sequential = run_steps(model, test::config_spec("sequential"));
    for (const std::string& name : test::shipped_spec_names()) {
      const float diff = max_difference(sequential, run_steps(model, test::config_spec(name)));
      EXPECT_LE(diff, logit_tolerance) << model << " " << name;
    }
    // A random dependency order of the overlapped spec changes nothing either.
    EXPECT_LE(max_difference(sequential, run_steps(model, test::config_spec("overlap-halves"), 99)), logit_tolerance) << model;
  }
}

struct workload_request {
  std::vector<int32_t> prompt;
  int max_tokens = 0;
  int arrival_step = 0;
};

std::vector<workload_request> make_workload(int vocab) {
  std::mt19937_64 rng(11);
  std::vector<workload_request> workload;
  for (int i = 0; i < 10; ++i) {
    workload_request r;
    const int length = 1 + static_cast<int>(rng() % 30);
    for (int j = 0; j < length; ++j) r.prompt.push_back(static_cast<int32_t>(rng() % vocab));
    r.max_tokens = 3 + static_cast<int>(rng() % 8);
    r.arrival_step = static_cast<int>(rng() % 5);
    workload.push_back(r);
  }
  return workload;
}

// Greedy tokens of every request of the workload, through the engine (chunked prefill beside decodes).
std::map<request_id, std::vector<int32_t>> engine_tokens(const char* model, const pipeline_spec& spec,
                                                         uint64_t order_seed = 0) {
  model_weights weights = weights_of(model);
  const auto workload = make_workload(weights.config.vocab_size);
  engine_options options;
  options.async_loop = false;
  options.scheduling.max_num_batched_tokens = 24;
  options.scheduling.max_num_seqs = 16;
  options.scheduling.kv.num_tokens = 64 * 16;
  llm_engine engine(std::make_unique<cpu_backend>(std::move(weights), 64, 16, spec, order_seed), options);
  std::map<request_id, std::vector<int32_t>> tokens;
  size_t added = 0;
  for (int step = 0; step < 1000 && (added < workload.size() || engine.has_unfinished()); ++step) {
    for (size_t i = 0; i < workload.size(); ++i)
      if (workload[i].arrival_step == step) {
        sampling_params params;
        params.temperature = 0.0f;
        params.max_tokens = workload[i].max_tokens;
        params.ignore_eos = true;
        engine.add_request(i, {workload[i].prompt, params});
        ++added;
      }
    for (const completion_delta& delta : engine.step())
      for (int32_t token : delta.token_ids) tokens[delta.request_id].push_back(token);
  }
  EXPECT_FALSE(engine.has_unfinished());
  return tokens;
}

TEST(cpu_executor, three_specs_give_the_same_greedy_tokens_through_the_engine) {
  for (const char* model : {"llama3-gqa", "qwen2-bias-tied"}) {
    const auto sequential = engine_tokens(model, test::config_spec("sequential"));
    ASSERT_EQ(sequential.size(), 10u);
    EXPECT_EQ(engine_tokens(model, test::config_spec("nanobatch-halves")), sequential) << model;
    EXPECT_EQ(engine_tokens(model, test::config_spec("overlap-halves")), sequential) << model;
    EXPECT_EQ(engine_tokens(model, test::config_spec("overlap")), sequential) << model;
    EXPECT_EQ(engine_tokens(model, test::config_spec("overlap-split-decode")), sequential) << model;
    // Steps below the threshold run the sequential spec, the others the overlap: the mix agrees too.
    pipeline_spec switching = test::config_spec("overlap-halves");
    switching.min_decode_rows = 3;
    EXPECT_EQ(engine_tokens(model, switching), sequential) << model;
    // Decode-only steps (no prefill rows) run the sequential spec, mixed steps the overlap.
    pipeline_spec mixed_only = test::config_spec("overlap");
    mixed_only.min_prefill_rows = 1;
    EXPECT_EQ(engine_tokens(model, mixed_only), sequential) << model;
  }
}

// A random spec: every op split into 1-3 nano-ops at random cuts (attention also in its own row frame, other
// ops sometimes as decode rows + prefill rows), on 1-3 streams with random SM budgets, in a random order
// that keeps each op within a few places of its program position. Retried until valid.
TEST(cpu_executor, random_valid_specs_give_the_same_tokens_and_logits) {
  const auto sequential_tokens = engine_tokens("llama3-gqa", test::config_spec("sequential"));
  const auto sequential_logits = run_steps("llama3-gqa", test::config_spec("sequential"));
  std::mt19937_64 rng(2024);
  int num_multi_stream = 0;
  for (int i = 0; i < 16; ++i) {
    const pipeline_spec spec = test::random_spec(rng, i);
    num_multi_stream += spec.streams.size() > 1 ? 1 : 0;
    const uint64_t order_seed = 1 + rng() % 1000;
    EXPECT_EQ(engine_tokens("llama3-gqa", spec, order_seed), sequential_tokens) << to_json(spec).dump();
    EXPECT_LE(max_difference(sequential_logits, run_steps("llama3-gqa", spec, order_seed)), logit_tolerance)
        << to_json(spec).dump();
  }
  EXPECT_GE(num_multi_stream, 4);
}

// Runs all layers of `pipeline` in `order` on fresh state after a prompt step, and returns the final
// residual and layer output of the decode-and-prefill step.
std::vector<float> run_with_order(const model_weights& weights, const model_batch& prompt, const model_batch& batch,
                                  const resolved_pipeline& pipeline, const std::vector<int>& order) {
  const model_config& c = weights.config;
  const ref::paged_kv_layout layout{c.num_kv_heads, c.head_dim, 16};
  const std::vector<float> inv_freq = rope_inverse_frequencies(c.rope, c.head_dim);
  std::vector<std::vector<float>> kv(c.num_layers, std::vector<float>(64 * layout.block_stride()));
  const cpu_executor executor(weights, layout, inv_freq, kv);
  auto run = [&](const model_batch& b, const resolved_pipeline& p, const std::vector<int>& o) {
    cpu_activations a(c, b.num_tokens());
    ref::embedding(b.token_ids.data(), b.num_tokens(), c.hidden_size, weights.embed.data(), a.residual.data());
    executor.run_layers(p, o, b, a);
    std::vector<float> out = a.residual;
    out.insert(out.end(), a.projected.begin(), a.projected.end());
    return out;
  };
  const resolved_pipeline first =
      resolve_pipeline(sequential_spec(llama_op_graph()), llama_op_graph(), rows_of_batch(prompt));
  run(prompt, first, topological_order(unroll(first, c.num_layers)));
  return run(batch, pipeline, order);
}

TEST(cpu_executor, a_missing_dependency_is_flagged_and_its_race_is_observable) {
  const model_weights weights = weights_of("llama3-gqa");
  step_maker maker(weights.config.vocab_size);
  const model_batch prompt = maker.step({{0, 7}, {1, 13}, {2, 4}});
  const model_batch batch = maker.step({{0, 1}, {1, 1}, {2, 1}, {3, 6}});
  resolved_pipeline pipeline =
      resolve_pipeline(test::config_spec("overlap-halves"), llama_op_graph(), rows_of_batch(batch));
  ASSERT_TRUE(check_resolved(pipeline, llama_op_graph()).empty());
  const int producer = pipeline.find_nano_op("decode_attention@nb0");
  const int consumer = pipeline.find_nano_op("o_gemm@nb0");
  const auto correct = run_with_order(weights, prompt, batch, pipeline,
                                      topological_order(unroll(pipeline, weights.config.num_layers)));

  // Remove the cross-stream edge from the memory stream's decode attention to the compute stream's O GEMM.
  std::erase_if(pipeline.edges, [&](const pipeline_edge& e) { return e.from == producer && e.to == consumer; });
  // (a) The validator sees the race.
  const std::vector<std::string> races = find_races(pipeline, llama_op_graph());
  ASSERT_FALSE(races.empty());
  EXPECT_EQ(races.front(),
            "missing dependency: \"decode_attention@nb0\" (rows [0, 3), layer 0) and \"o_gemm@nb0\" (rows [0, 5), "
            "layer 0) touch the same rows of \"attention\", one writing, with no path from the first to the second "
            "(a race)");
  // (b) An order the broken graph permits: every decode attention of nano-batch 0 as late as possible, so
  // the O GEMM reads attention rows nobody wrote yet.
  const unrolled_graph graph = unroll(pipeline, weights.config.num_layers);
  std::vector<int> indegree(graph.num_nodes(), 0);
  for (const auto& next : graph.successors)
    for (int w : next) ++indegree[w];
  std::vector<int> ready, order;
  for (int v = 0; v < graph.num_nodes(); ++v)
    if (indegree[v] == 0) ready.push_back(v);
  while (!ready.empty()) {
    auto pick = std::find_if(ready.begin(), ready.end(), [&](int v) { return graph.nano_op_of(v) != producer; });
    if (pick == ready.end()) pick = ready.begin();
    const int v = *pick;
    ready.erase(pick);
    order.push_back(v);
    for (int w : graph.successors[v])
      if (--indegree[w] == 0) ready.push_back(w);
  }
  ASSERT_EQ(order.size(), size_t(graph.num_nodes()));
  const auto position = [&](int layer, int nano_op) {
    return std::find(order.begin(), order.end(), graph.node(layer, nano_op)) - order.begin();
  };
  ASSERT_LT(position(0, consumer), position(0, producer)) << "the order must run the consumer first";
  const auto racy = run_with_order(weights, prompt, batch, pipeline, order);
  float worst = 0.0f;
  for (size_t i = 0; i < correct.size(); ++i) worst = std::max(worst, std::abs(correct[i] - racy[i]));
  EXPECT_GT(worst, 1e-3f) << "the race should change the layer outputs";
  // The same order over the intact graph is impossible: the executor's orders respect the edge.
  const resolved_pipeline intact = resolve_pipeline(test::config_spec("overlap-halves"), llama_op_graph(), rows_of_batch(batch));
  const auto intact_order = topological_order(unroll(intact, weights.config.num_layers), 7);
  EXPECT_LT(std::find(intact_order.begin(), intact_order.end(), graph.node(0, producer)) - intact_order.begin(),
            std::find(intact_order.begin(), intact_order.end(), graph.node(0, consumer)) - intact_order.begin());
}

}  // namespace
}  // namespace nf
