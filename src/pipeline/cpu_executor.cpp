// Nano-ops on the CPU: each operation of the op graph over a row range [begin, end) of the step.
#include "pipeline/cpu_executor.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "pipeline/op_graph.h"

namespace nf {

namespace {

const float* bias_or_null(const std::vector<float>& bias) { return bias.empty() ? nullptr : bias.data(); }

}  // namespace

cpu_activations::cpu_activations(const model_config& c, int n)
    : residual(size_t(n) * c.hidden_size),
      normed(size_t(n) * c.hidden_size),
      qkv(size_t(n) * c.qkv_size()),
      q(size_t(n) * c.q_size()),
      attention(size_t(n) * c.q_size()),
      projected(size_t(n) * c.hidden_size),
      gate_up(size_t(n) * 2 * c.intermediate_size),
      activated(size_t(n) * c.intermediate_size) {}

cpu_executor::cpu_executor(const model_weights& weights, const ref::paged_kv_layout& layout,
                           std::span<const float> inv_freq, std::vector<std::vector<float>>& kv_layers)
    : weights_(weights), layout_(layout), inv_freq_(inv_freq), kv_layers_(kv_layers) {}

void cpu_executor::run_layers(const resolved_pipeline& pipeline, std::span<const int> order, const model_batch& batch,
                              cpu_activations& activations) const {
  const int num_nano_ops = static_cast<int>(pipeline.nano_ops.size());
  NF_CHECK(order.size() == size_t(num_nano_ops) * weights_.config.num_layers, "the order has {} nodes, not {} x {}",
           order.size(), num_nano_ops, weights_.config.num_layers);
  for (int node : order) run_nano_op(pipeline.nano_ops[node % num_nano_ops], node / num_nano_ops, batch, activations);
}

void cpu_executor::run_nano_op(const nano_op& op, int layer, const model_batch& batch, cpu_activations& a) const {
  const model_config& c = weights_.config;
  const layer_weights& w = weights_.layers[layer];
  const int hidden = c.hidden_size, inter = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const row_range r = op.rows;
  const size_t first = r.begin, n = r.size();
  switch (llama_op_graph().ops[op.op].kind) {
    case op_kind::attn_norm:
      if (layer == 0) ref::rmsnorm(&a.residual[first * hidden], w.input_norm.data(), n, hidden, eps, &a.normed[first * hidden]);
      else ref::add_rmsnorm(&a.residual[first * hidden], &a.projected[first * hidden], w.input_norm.data(), n, hidden, eps,
                            &a.normed[first * hidden]);
      break;
    case op_kind::qkv_gemm:
      ref::linear(&a.normed[first * hidden], w.qkv.data(), bias_or_null(w.qkv_bias), n, c.qkv_size(), hidden,
                  &a.qkv[first * c.qkv_size()]);
      break;
    case op_kind::rope_kv_append:
      rope_kv_append(r, layer, batch, a);
      break;
    case op_kind::decode_attention:
    case op_kind::prefill_attention:
      attention(r, layer, batch, a);
      break;
    case op_kind::o_gemm:
      ref::linear(&a.attention[first * c.q_size()], w.o.data(), bias_or_null(w.o_bias), n, hidden, c.q_size(),
                  &a.projected[first * hidden]);
      break;
    case op_kind::ffn_norm:
      ref::add_rmsnorm(&a.residual[first * hidden], &a.projected[first * hidden], w.post_attention_norm.data(), n, hidden,
                       eps, &a.normed[first * hidden]);
      break;
    case op_kind::gate_up_gemm:
      ref::linear(&a.normed[first * hidden], w.gate_up.data(), bias_or_null(w.gate_up_bias), n, 2 * inter, hidden,
                  &a.gate_up[first * 2 * inter]);
      break;
    case op_kind::activation:
      ref::silu_and_mul(&a.gate_up[first * 2 * inter], n, inter, &a.activated[first * inter]);
      break;
    case op_kind::down_gemm:
      ref::linear(&a.activated[first * inter], w.down.data(), bias_or_null(w.down_bias), n, hidden, inter,
                  &a.projected[first * hidden]);
      break;
  }
}

// q rows = rope(q part of qkv); the k part is rotated and appended with the v part to the KV cache.
void cpu_executor::rope_kv_append(row_range rows, int layer, const model_batch& batch, cpu_activations& a) const {
  const model_config& c = weights_.config;
  const int n = rows.size();
  std::vector<float> k(size_t(n) * c.kv_size());  // [n, num_kv_heads, head_dim]
  std::vector<float> v(size_t(n) * c.kv_size());  // [n, num_kv_heads, head_dim]
  for (int i = 0; i < n; ++i) {
    const float* row = &a.qkv[size_t(rows.begin + i) * c.qkv_size()];
    std::copy(row, row + c.q_size(), &a.q[size_t(rows.begin + i) * c.q_size()]);
    std::copy(row + c.q_size(), row + c.q_size() + c.kv_size(), &k[size_t(i) * c.kv_size()]);
    std::copy(row + c.q_size() + c.kv_size(), row + c.qkv_size(), &v[size_t(i) * c.kv_size()]);
  }
  const int32_t* positions = batch.positions.data() + rows.begin;
  ref::apply_rope(&a.q[size_t(rows.begin) * c.q_size()], positions, n, c.num_q_heads, c.head_dim, inv_freq_.data());
  ref::apply_rope(k.data(), positions, n, c.num_kv_heads, c.head_dim, inv_freq_.data());
  ref::kv_append(k.data(), v.data(), batch.slots.data() + rows.begin, n, layout_, kv_layers_[layer].data());
}

// Attention of the rows: every sequence is cut to its rows inside the range. A query keeps its position, so
// the cut sequence ends its context where its last kept query sits.
void cpu_executor::attention(row_range rows, int layer, const model_batch& batch, cpu_activations& a) const {
  const model_config& c = weights_.config;
  std::vector<ref::attention_sequence> sequences;
  for (const batch_sequence& seq : batch.sequences) {
    const int begin = std::max(seq.query_start, rows.begin);
    const int end = std::min(seq.query_start + seq.num_queries, rows.end);
    if (begin >= end) continue;
    const int context_len = seq.context_len - (seq.query_start + seq.num_queries - end);
    sequences.push_back({begin, end - begin, context_len, seq.block_table.data()});
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ref::paged_attention(a.q.data(), kv_layers_[layer].data(), sequences, c.num_q_heads, layout_, scale,
                       a.attention.data());
}

}  // namespace nf
