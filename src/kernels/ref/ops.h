// CPU reference of every model operation, float32, raw pointers in and out.
// These are the ground truth for the CUDA kernels and the operations of the CPU backend.
// Matrices are row-major; a weight of a linear layer is stored as HF stores it: [out_features, in_features].
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace nf::ref {

// out[t, :] = table[token_ids[t], :]
void embedding(const int32_t* token_ids,  // [num_tokens]
               int num_tokens, int hidden_size,
               const float* table,  // [vocab_size, hidden_size]
               float* out);         // [num_tokens, hidden_size]

// y = x * w^T (+ bias): the product of every linear layer, through BLAS.
void linear(const float* x,     // [num_rows, in_features]
            const float* w,     // [out_features, in_features]
            const float* bias,  // [out_features] or nullptr
            int num_rows, int out_features, int in_features,
            float* y);  // [num_rows, out_features]

// out = x / rms(x) * weight, per row.
void rmsnorm(const float* x,       // [num_tokens, hidden_size]
             const float* weight,  // [hidden_size]
             int num_tokens, int hidden_size, float eps,
             float* out);  // [num_tokens, hidden_size]

// residual += delta; out = rmsnorm(residual) * weight. The fused pre-norm of every sub-layer after the first.
void add_rmsnorm(float* residual,      // [num_tokens, hidden_size], updated in place
                 const float* delta,   // [num_tokens, hidden_size]
                 const float* weight,  // [hidden_size]
                 int num_tokens, int hidden_size, float eps,
                 float* out);  // [num_tokens, hidden_size]

// Rotary embedding in the half-split ("rotate_half") convention of HF Llama, Mistral and Qwen2:
// dimension i pairs with i + rotary_dim/2. inv_freq comes from rope_inverse_frequencies().
void apply_rope(float* heads,              // [num_tokens, num_heads, head_dim], rotated in place
                const int32_t* positions,  // [num_tokens]
                int num_tokens, int num_heads, int head_dim,
                const float* inv_freq);  // [head_dim / 2]

// out = silu(gate) * up, where gate_up holds [gate | up] per row.
void silu_and_mul(const float* gate_up,  // [num_tokens, 2 * intermediate_size]
                  int num_tokens, int intermediate_size,
                  float* out);  // [num_tokens, intermediate_size]

// The paged KV cache of one layer: [num_blocks, 2 (K then V), num_kv_heads, block_size, head_dim].
struct paged_kv_layout {
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 0;
  int64_t block_stride() const { return 2LL * num_kv_heads * block_size * head_dim; }
  // Offset of element (head, slot, 0) of the K (kv = 0) or V (kv = 1) half of `block`.
  int64_t offset(int64_t block, int kv, int head, int slot) const {
    return block * block_stride() + ((static_cast<int64_t>(kv) * num_kv_heads + head) * block_size + slot) * head_dim;
  }
};

// Writes the K and V rows of each token into its slot: token t goes to logical position positions[t]
// of its sequence, i.e. block block_table[pos / block_size], slot pos % block_size.
void kv_append(const float* k,  // [num_tokens, num_kv_heads, head_dim]
               const float* v,  // [num_tokens, num_kv_heads, head_dim]
               const int64_t* slots,  // [num_tokens]: physical block * block_size + slot
               int num_tokens, const paged_kv_layout& layout,
               float* kv_layer);  // [num_blocks, 2, num_kv_heads, block_size, head_dim]

// One sequence's share of a step for attention: its queries are the rows [query_start, query_start + num_queries)
// of q, and sit at positions [context_len - num_queries, context_len) of the sequence.
struct attention_sequence {
  int query_start = 0;
  int num_queries = 0;
  int context_len = 0;
  const int32_t* block_table = nullptr;  // [ceil(context_len / block_size)]
};

// Causal attention over the paged cache (which already holds this step's K and V), GQA-aware.
void paged_attention(const float* q,  // [num_tokens, num_q_heads, head_dim]
                     const float* kv_layer,  // [num_blocks, 2, num_kv_heads, block_size, head_dim]
                     std::span<const attention_sequence> sequences, int num_q_heads, const paged_kv_layout& layout,
                     float scale,
                     float* out);  // [num_tokens, num_q_heads, head_dim]

}  // namespace nf::ref
