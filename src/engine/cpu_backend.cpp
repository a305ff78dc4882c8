// One forward pass of a Llama-family decoder: embed, then per layer
// norm -> QKV -> RoPE -> KV append -> paged attention -> O -> add+norm -> gate/up -> SiLU*mul -> down,
// then the final norm and the LM head on the rows that need logits.
#include "engine/cpu_backend.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "model/rope.h"

namespace nf {

cpu_backend::cpu_backend(model_weights weights, int num_kv_blocks, int block_size)
    : weights_(std::move(weights)), num_kv_blocks_(num_kv_blocks) {
  const model_config& c = weights_.config;
  layout_ = {c.num_kv_heads, c.head_dim, block_size};
  inv_freq_ = rope_inverse_frequencies(c.rope, c.head_dim);
  kv_layers_.assign(c.num_layers, std::vector<float>(static_cast<size_t>(num_kv_blocks) * layout_.block_stride()));
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
  const int hidden = c.hidden_size, inter = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  std::vector<float> residual(size_t(n) * hidden);         // [n, hidden]
  std::vector<float> normed(size_t(n) * hidden);           // [n, hidden]
  std::vector<float> qkv(size_t(n) * c.qkv_size());        // [n, q_size + 2 * kv_size]
  std::vector<float> q(size_t(n) * c.q_size());            // [n, num_q_heads, head_dim]
  std::vector<float> k(size_t(n) * c.kv_size());           // [n, num_kv_heads, head_dim]
  std::vector<float> v(size_t(n) * c.kv_size());           // [n, num_kv_heads, head_dim]
  std::vector<float> attention(size_t(n) * c.q_size());    // [n, num_q_heads, head_dim]
  std::vector<float> projected(size_t(n) * hidden);        // [n, hidden]
  std::vector<float> gate_up(size_t(n) * 2 * inter);       // [n, 2 * intermediate]
  std::vector<float> activated(size_t(n) * inter);         // [n, intermediate]

  std::vector<ref::attention_sequence> sequences;
  for (const batch_sequence& seq : batch.sequences)
    sequences.push_back({seq.query_start, seq.num_queries, seq.context_len, seq.block_table.data()});
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));

  ref::embedding(batch.token_ids.data(), n, hidden, weights_.embed.data(), residual.data());
  for (int l = 0; l < c.num_layers; ++l) {
    const layer_weights& w = weights_.layers[l];
    if (l == 0) ref::rmsnorm(residual.data(), w.input_norm.data(), n, hidden, eps, normed.data());
    else ref::add_rmsnorm(residual.data(), projected.data(), w.input_norm.data(), n, hidden, eps, normed.data());

    ref::linear(normed.data(), w.qkv.data(), w.qkv_bias.empty() ? nullptr : w.qkv_bias.data(), n, c.qkv_size(), hidden,
                qkv.data());
    for (int t = 0; t < n; ++t) {
      const float* row = qkv.data() + size_t(t) * c.qkv_size();
      std::copy(row, row + c.q_size(), q.data() + size_t(t) * c.q_size());
      std::copy(row + c.q_size(), row + c.q_size() + c.kv_size(), k.data() + size_t(t) * c.kv_size());
      std::copy(row + c.q_size() + c.kv_size(), row + c.qkv_size(), v.data() + size_t(t) * c.kv_size());
    }
    ref::apply_rope(q.data(), batch.positions.data(), n, c.num_q_heads, c.head_dim, inv_freq_.data());
    ref::apply_rope(k.data(), batch.positions.data(), n, c.num_kv_heads, c.head_dim, inv_freq_.data());
    ref::kv_append(k.data(), v.data(), batch.slots.data(), n, layout_, kv_layers_[l].data());
    ref::paged_attention(q.data(), kv_layers_[l].data(), sequences, c.num_q_heads, layout_, scale, attention.data());
    ref::linear(attention.data(), w.o.data(), w.o_bias.empty() ? nullptr : w.o_bias.data(), n, hidden, c.q_size(),
                projected.data());

    ref::add_rmsnorm(residual.data(), projected.data(), w.post_attention_norm.data(), n, hidden, eps, normed.data());
    ref::linear(normed.data(), w.gate_up.data(), w.gate_up_bias.empty() ? nullptr : w.gate_up_bias.data(), n, 2 * inter,
                hidden, gate_up.data());
    ref::silu_and_mul(gate_up.data(), n, inter, activated.data());
    ref::linear(activated.data(), w.down.data(), w.down_bias.empty() ? nullptr : w.down_bias.data(), n, hidden, inter,
                projected.data());
  }

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

}  // namespace nf
