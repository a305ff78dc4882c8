// CPU reference operations in float32: clear loops, BLAS for the matrix products.
#include "kernels/ref/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace nf::ref {

void embedding(const int32_t* token_ids, int num_tokens, int hidden_size, const float* table, float* out) {
  for (int t = 0; t < num_tokens; ++t) {
    std::memcpy(out + static_cast<int64_t>(t) * hidden_size, table + static_cast<int64_t>(token_ids[t]) * hidden_size,
                sizeof(float) * hidden_size);
  }
}

void linear(const float* x, const float* w, const float* bias, int num_rows, int out_features, int in_features,
            float* y) {
  if (num_rows == 0) return;
  if (bias) {
    for (int r = 0; r < num_rows; ++r) std::memcpy(y + static_cast<int64_t>(r) * out_features, bias, sizeof(float) * out_features);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, num_rows, out_features, in_features, 1.0f, x, in_features, w,
              in_features, bias ? 1.0f : 0.0f, y, out_features);
}

void rmsnorm(const float* x, const float* weight, int num_tokens, int hidden_size, float eps, float* out) {
  for (int t = 0; t < num_tokens; ++t) {
    const float* row = x + static_cast<int64_t>(t) * hidden_size;
    float* dst = out + static_cast<int64_t>(t) * hidden_size;
    double sum_squares = 0.0;
    for (int i = 0; i < hidden_size; ++i) sum_squares += static_cast<double>(row[i]) * row[i];
    const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_squares / hidden_size + eps));
    for (int i = 0; i < hidden_size; ++i) dst[i] = row[i] * inv_rms * weight[i];
  }
}

void add_rmsnorm(float* residual, const float* delta, const float* weight, int num_tokens, int hidden_size, float eps,
                 float* out) {
  const int64_t count = static_cast<int64_t>(num_tokens) * hidden_size;
  for (int64_t i = 0; i < count; ++i) residual[i] += delta[i];
  rmsnorm(residual, weight, num_tokens, hidden_size, eps, out);
}

void apply_rope(float* heads, const int32_t* positions, int num_tokens, int num_heads, int head_dim,
                const float* inv_freq) {
  const int half = head_dim / 2;
  std::vector<float> cos_table(half), sin_table(half);
  for (int t = 0; t < num_tokens; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(positions[t]) * inv_freq[i];
      cos_table[i] = static_cast<float>(std::cos(angle));
      sin_table[i] = static_cast<float>(std::sin(angle));
    }
    for (int h = 0; h < num_heads; ++h) {
      float* head = heads + (static_cast<int64_t>(t) * num_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float first = head[i];
        const float second = head[i + half];
        head[i] = first * cos_table[i] - second * sin_table[i];
        head[i + half] = second * cos_table[i] + first * sin_table[i];
      }
    }
  }
}

void silu_and_mul(const float* gate_up, int num_tokens, int intermediate_size, float* out) {
  for (int t = 0; t < num_tokens; ++t) {
    const float* gate = gate_up + static_cast<int64_t>(t) * 2 * intermediate_size;
    const float* up = gate + intermediate_size;
    float* dst = out + static_cast<int64_t>(t) * intermediate_size;
    for (int i = 0; i < intermediate_size; ++i) dst[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
}

void kv_append(const float* k, const float* v, const int64_t* slots, int num_tokens, const paged_kv_layout& layout,
               float* kv_layer) {
  const int64_t row = static_cast<int64_t>(layout.num_kv_heads) * layout.head_dim;
  for (int t = 0; t < num_tokens; ++t) {
    const int64_t block = slots[t] / layout.block_size;
    const int slot = static_cast<int>(slots[t] % layout.block_size);
    for (int h = 0; h < layout.num_kv_heads; ++h) {
      std::memcpy(kv_layer + layout.offset(block, 0, h, slot), k + t * row + static_cast<int64_t>(h) * layout.head_dim,
                  sizeof(float) * layout.head_dim);
      std::memcpy(kv_layer + layout.offset(block, 1, h, slot), v + t * row + static_cast<int64_t>(h) * layout.head_dim,
                  sizeof(float) * layout.head_dim);
    }
  }
}

void paged_attention(const float* q, const float* kv_layer, std::span<const attention_sequence> sequences,
                     int num_q_heads, const paged_kv_layout& layout, float scale, float* out) {
  NF_CHECK(num_q_heads % layout.num_kv_heads == 0, "{} query heads do not group over {} KV heads", num_q_heads,
           layout.num_kv_heads);
  const int group = num_q_heads / layout.num_kv_heads;
  const int head_dim = layout.head_dim;
  std::vector<float> scores;
  for (const attention_sequence& seq : sequences) {
    scores.resize(seq.context_len);
    for (int i = 0; i < seq.num_queries; ++i) {
      const int token = seq.query_start + i;
      const int position = seq.context_len - seq.num_queries + i;
      const int num_keys = position + 1;
      for (int h = 0; h < num_q_heads; ++h) {
        const int kv_head = h / group;
        const float* query = q + (static_cast<int64_t>(token) * num_q_heads + h) * head_dim;
        float max_score = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < num_keys; ++j) {
          const float* key =
              kv_layer + layout.offset(seq.block_table[j / layout.block_size], 0, kv_head, j % layout.block_size);
          float dot = 0.0f;
          for (int d = 0; d < head_dim; ++d) dot += query[d] * key[d];
          scores[j] = dot * scale;
          max_score = std::max(max_score, scores[j]);
        }
        double denominator = 0.0;
        for (int j = 0; j < num_keys; ++j) {
          scores[j] = std::exp(scores[j] - max_score);
          denominator += scores[j];
        }
        float* dst = out + (static_cast<int64_t>(token) * num_q_heads + h) * head_dim;
        std::fill(dst, dst + head_dim, 0.0f);
        for (int j = 0; j < num_keys; ++j) {
          const float* value =
              kv_layer + layout.offset(seq.block_table[j / layout.block_size], 1, kv_head, j % layout.block_size);
          const float weight = static_cast<float>(scores[j] / denominator);
          for (int d = 0; d < head_dim; ++d) dst[d] += weight * value[d];
        }
      }
    }
  }
}

}  // namespace nf::ref
