// One forward pass of a Llama-family decoder: embed, then every layer's operations
// (norm -> QKV -> RoPE + KV append -> decode / prefill attention -> O -> add+norm -> gate/up -> SiLU*mul -> down)
// as the nano-ops of the backend's pipeline spec, then the final norm and the LM head on the rows that need logits.
#include "engine/cpu_backend.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "model/rope.h"
#include "pipeline/batch_rows.h"
#include "pipeline/cpu_executor.h"
#include "pipeline/validator.h"

namespace nf {

cpu_backend::cpu_backend(model_weights weights, int num_kv_blocks, int block_size, pipeline_spec spec,
                         uint64_t order_seed)
    : weights_(std::move(weights)), num_kv_blocks_(num_kv_blocks), spec_(std::move(spec)), order_seed_(order_seed) {
  const std::vector<std::string> problems = validate_spec(spec_, llama_op_graph());
  if (!problems.empty()) fail("pipeline spec \"{}\": {}", spec_.name, join_problems(problems));
  const model_config& c = weights_.config;
  layout_ = {c.num_kv_heads, c.head_dim, block_size};
  inv_freq_ = rope_inverse_frequencies(c.rope, c.head_dim);
  kv_layers_.assign(c.num_layers, std::vector<float>(static_cast<size_t>(num_kv_blocks) * layout_.block_stride()));
}

void cpu_backend::set_schedule(const pipeline_spec& spec) {
  const std::vector<std::string> problems = validate_spec(spec, llama_op_graph());
  if (!problems.empty()) fail("pipeline spec \"{}\": {}", spec.name, join_problems(problems));
  spec_ = spec;
}

void cpu_backend::check_batch(const model_batch& batch) const {
  const int num_tokens = batch.num_tokens();
  NF_CHECK(batch.positions.size() == static_cast<size_t>(num_tokens) && batch.slots.size() == static_cast<size_t>(num_tokens),
           "batch rows disagree");
  for (int32_t id : batch.token_ids) NF_CHECK(id >= 0 && id < config().vocab_size, "token id {} out of range", id);
  for (int64_t slot : batch.slots)
    NF_CHECK(slot >= 0 && slot < int64_t{num_kv_blocks_} * layout_.block_size, "KV slot {} out of range", slot);
  for (const batch_sequence& seq : batch.sequences) {
    NF_CHECK(seq.query_start >= 0 && seq.query_start + seq.num_queries <= num_tokens, "sequence rows out of range");
    NF_CHECK(seq.context_len >= seq.num_queries, "context shorter than the queries");
    NF_CHECK(static_cast<int64_t>(seq.block_table.size()) * layout_.block_size >= seq.context_len,
             "block table too short");
  }
  for (int32_t row : batch.logit_rows) NF_CHECK(row >= 0 && row < num_tokens, "logit row {} out of range", row);
}

void cpu_backend::forward(const model_batch& batch, std::vector<float>& logits) {
  check_batch(batch);
  const model_config& c = weights_.config;
  const int n = batch.num_tokens();
  const int hidden = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  const op_graph& graph = llama_op_graph();
  const step_rows rows = rows_of_batch(batch);
  const resolved_pipeline pipeline =
      resolve_pipeline(spec_for_step(spec_, sequential_, rows.num_decode, rows.num_prefill), graph, rows);
  const std::vector<std::string> gaps = check_coverage(pipeline, llama_op_graph());
  if (!gaps.empty()) fail("pipeline spec \"{}\": {}", spec_.name, join_problems(gaps));
  const uint64_t seed = order_seed_ == 0 ? 0 : order_seed_ + num_steps_++;
  const std::vector<int> order = topological_order(unroll(pipeline, c.num_layers), seed);
  NF_CHECK(!order.empty(), "the validated spec \"{}\" has a cycle", spec_.name);

  cpu_activations a(c, n);
  ref::embedding(batch.token_ids.data(), n, hidden, weights_.embed.data(), a.residual.data());
  cpu_executor(weights_, layout_, inv_freq_, kv_layers_).run_layers(pipeline, order, batch, a);
  const std::vector<float>& residual = a.residual;    // [n, hidden]
  const std::vector<float>& projected = a.projected;  // [n, hidden]: the last layer's output, not yet added

  const int num_sampled = static_cast<int>(batch.logit_rows.size());
  std::vector<float> last(size_t(num_sampled) * hidden);      // [num_sampled, hidden]
  std::vector<float> last_delta(size_t(num_sampled) * hidden);  // [num_sampled, hidden]
  for (int i = 0; i < num_sampled; ++i) {
    const size_t row = size_t(batch.logit_rows[i]) * hidden;
    std::copy(residual.begin() + row, residual.begin() + row + hidden, last.begin() + size_t(i) * hidden);
    std::copy(projected.begin() + row, projected.begin() + row + hidden, last_delta.begin() + size_t(i) * hidden);
  }
  std::vector<float> final_hidden(size_t(num_sampled) * hidden);  // [num_sampled, hidden]
  ref::add_rmsnorm(last.data(), last_delta.data(), weights_.final_norm.data(), num_sampled, hidden, eps,
                   final_hidden.data());
  logits.resize(size_t(num_sampled) * c.vocab_size);
  ref::linear(final_hidden.data(), weights_.lm_head_data(), nullptr, num_sampled, c.vocab_size, hidden, logits.data());
}

double cpu_backend::measure_gemm_flops(int num_tokens) {
  const model_config& c = weights_.config;
  const int m = std::max(1, num_tokens), k = c.hidden_size, out = 2 * c.intermediate_size;
  std::vector<float> x(size_t(m) * k, 0.5f), y(size_t(m) * out);  // [m, hidden], [m, 2 * intermediate]
  const auto& w = weights_.layers.at(0).gate_up;
  ref::linear(x.data(), w.data(), nullptr, m, out, k, y.data());
  int repeats = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0.0;
  do {
    ref::linear(x.data(), w.data(), nullptr, m, out, k, y.data());
    ++repeats;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < 0.2);
  return 2.0 * m * k * out * repeats / elapsed;
}

void cpu_backend::forward_sample(const model_batch& batch, std::span<const sampling_context> contexts,
                                 std::vector<sample_result>& results) {
  forward(batch, sample_logits_);
  sample_rows(sample_logits_, weights_.config.vocab_size, contexts, results);
}

}  // namespace nf
