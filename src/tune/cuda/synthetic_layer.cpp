// The profiler's synthetic layer: allocation, random contents, scattered block tables, and per-op launches that
// mirror the CUDA backend's (engine/cuda/cuda_backend.cpp, run_nano_op).
#include "tune/cuda/synthetic_layer.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"
#include "engine/cuda/random_fill.h"
#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda/prefill_attention.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope_kv.h"
#include "kernels/cuda/silu_and_mul.h"
#include "model/rope.h"

namespace nf::cuda {

using bf16 = __nv_bfloat16;

namespace {

int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

void allocate_random(memory_block& block, size_t count, uint64_t seed, uint64_t stream_id, float std) {
  block.allocate_exact(count * sizeof(bf16));
  NF_CUDA_CHECK(fill_uniform(block.as<bf16>(), count, seed, stream_id, std, nullptr));
}

template <typename T>
void upload(memory_block& block, const std::vector<T>& values) {
  block.allocate_exact(std::max<size_t>(1, values.size()) * sizeof(T));
  if (!values.empty())
    NF_CUDA_CHECK(cudaMemcpy(block.as<void>(), values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice));
}

void check_gemm(cudaError_t status, const kernels::gemm_runner& gemm, const char* op) {
  if (status != cudaSuccess)
    fail("{}: cuBLASLt matmul failed: {} (cuBLAS status {})", op, cudaGetErrorString(status),
         static_cast<int>(gemm.last_status()));
}

}  // namespace

synthetic_layer::synthetic_layer(const model_config& c, const synthetic_layer_options& o) : config_(c), options_(o) {
  if (c.head_dim != 64 && c.head_dim != 128)
    fail("profiling needs head_dim 64 or 128 (the tensor-core attention kernels), the model has {}", c.head_dim);
  if (c.hidden_size <= 0 || c.hidden_size % 8 != 0)
    fail("profiling needs hidden_size to be a multiple of 8, the model has {}", c.hidden_size);
  if (c.intermediate_size <= 0 || c.intermediate_size % 8 != 0)
    fail("profiling needs intermediate_size to be a multiple of 8, the model has {}", c.intermediate_size);
  if (c.num_kv_heads <= 0 || c.num_q_heads % c.num_kv_heads != 0)
    fail("num_attention_heads {} is not a multiple of num_key_value_heads {}", c.num_q_heads, c.num_kv_heads);
  if (o.block_size <= 0 || o.block_size % 16 != 0)
    fail("profiling needs a KV block size that is a multiple of 16, got {}", o.block_size);
  if (o.max_rows <= 0) fail("the dense token budget must be positive, got {}", o.max_rows);
  if (o.prefill_chunk <= 0) fail("the prefill prompt length must be positive, got {}", o.prefill_chunk);
  if (o.decode_contexts.empty()) fail("profiling needs at least one decode context length");
  for (int context : o.decode_contexts)
    if (context <= 0) fail("decode context lengths must be positive, got {}", context);
  if (!(o.kv_memory_fraction > 0.0 && o.kv_memory_fraction <= 0.9))
    fail("the KV cache's share of free memory must be in (0, 0.9], got {}", o.kv_memory_fraction);

  const size_t rows = o.max_rows;
  const size_t hidden = c.hidden_size, inter = c.intermediate_size;
  uint64_t stream_id = 0;
  for (memory_block* b : {&residual_, &normed_, &projected_}) allocate_random(*b, rows * hidden, o.seed, ++stream_id, 1.0f);
  allocate_random(qkv_, rows * c.qkv_size(), o.seed, ++stream_id, 1.0f);
  allocate_random(q_, rows * c.q_size(), o.seed, ++stream_id, 1.0f);
  allocate_random(attention_out_, rows * c.q_size(), o.seed, ++stream_id, 1.0f);
  allocate_random(decode_out_, rows * c.q_size(), o.seed, ++stream_id, 1.0f);
  allocate_random(gate_up_, rows * 2 * inter, o.seed, ++stream_id, 1.0f);
  allocate_random(activated_, rows * inter, o.seed, ++stream_id, 1.0f);
  norm_weight_.allocate_exact(hidden * sizeof(bf16));
  NF_CUDA_CHECK(fill_constant(norm_weight_.as<bf16>(), hidden, 1.0f, nullptr));
  allocate_random(bias_, std::max({size_t(c.qkv_size()), 2 * inter, hidden}), o.seed, ++stream_id, 0.02f);

  // Weight copies: enough that the copies of one GEMM span several L2 caches, so consecutive launches read
  // their weights from HBM as consecutive layers do.
  int device = 0, l2_bytes = 0;
  NF_CUDA_CHECK(cudaGetDevice(&device));
  NF_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  const size_t shapes[4][2] = {{size_t(c.qkv_size()), hidden}, {hidden, size_t(c.q_size())}, {2 * inter, hidden}, {hidden, inter}};
  size_t largest = 0;
  for (int i = 0; i < 4; ++i) largest = std::max(largest, weight_elements_[i] = shapes[i][0] * shapes[i][1]);
  const size_t pool_bytes = std::max(2 * largest * sizeof(bf16), 4 * size_t(std::max(l2_bytes, 0)));
  size_t pool_elements = 0;
  for (int i = 0; i < 4; ++i) {
    weight_copies_[i] = static_cast<int>(std::clamp<size_t>(pool_bytes / (weight_elements_[i] * sizeof(bf16)), 1, 16));
    pool_elements = std::max(pool_elements, weight_copies_[i] * weight_elements_[i]);
  }
  allocate_random(weights_, pool_elements, o.seed, ++stream_id, 0.02f);

  const std::vector<float> inv_freq = rope_inverse_frequencies(c.rope, c.head_dim);  // [head_dim / 2]
  upload(inv_freq_, inv_freq);

  // The KV cache: scattered blocks, as many distinct ones as the longest decode shape needs and memory allows.
  const int max_context = *std::max_element(o.decode_contexts.begin(), o.decode_contexts.end());
  const int max_prefill_rows =
      o.prefill_row_counts.empty() ? 0 : *std::max_element(o.prefill_row_counts.begin(), o.prefill_row_counts.end());
  const int max_prompts = ceil_div(std::max(1, max_prefill_rows), o.prefill_chunk);
  decode_max_blocks_ = ceil_div(max_context, o.block_size);
  prefill_max_blocks_ = ceil_div(o.prefill_chunk, o.block_size);
  const int64_t decode_entries = int64_t(o.max_rows) * decode_max_blocks_;
  const int64_t needed = decode_entries + int64_t(max_prompts) * prefill_max_blocks_;
  const size_t block_bytes = size_t(2) * c.num_kv_heads * o.block_size * c.head_dim * sizeof(bf16);
  size_t free_bytes = 0, total_bytes = 0;
  NF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  double kv_bytes = o.kv_memory_fraction * double(free_bytes);
  if (o.kv_max_bytes > 0) kv_bytes = std::min(kv_bytes, double(o.kv_max_bytes));
  const int64_t affordable = static_cast<int64_t>(kv_bytes / double(block_bytes));
  if (affordable < 1)
    fail("no device memory is left for a KV cache ({:.2f} GiB free)", free_bytes / double(1 << 30));
  num_kv_blocks_ = static_cast<int>(std::min<int64_t>({needed, affordable, INT32_MAX / o.block_size}));
  kv_blocks_distinct_ = num_kv_blocks_ >= needed;
  allocate_random(kv_cache_, size_t(num_kv_blocks_) * block_bytes / sizeof(bf16), o.seed, ++stream_id, 1.0f);

  std::mt19937_64 rng(o.seed + 17);
  std::vector<int32_t> ids(num_kv_blocks_);  // [num_kv_blocks]: a random order of the blocks
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  auto block_at = [&](int64_t entry) { return ids[entry % num_kv_blocks_]; };

  std::vector<int32_t> decode_tables(static_cast<size_t>(decode_entries));  // [max_rows, decode_max_blocks]
  for (int64_t e = 0; e < decode_entries; ++e) decode_tables[e] = block_at(e);
  upload(decode_tables_, decode_tables);
  std::vector<int32_t> lens;  // [num_contexts, max_rows]
  for (int context : o.decode_contexts) lens.insert(lens.end(), rows, context);
  upload(decode_lens_, lens);
  decode_workspace_.allocate_exact(std::max<size_t>(
      16, kernels::decode_attention_workspace_bytes(o.max_rows, c.num_q_heads, c.head_dim, max_context)));

  std::vector<int32_t> positions(rows);  // [max_rows]
  std::vector<int64_t> slots(rows);      // [max_rows]: each row's new KV in its decode sequence's first block
  for (size_t i = 0; i < rows; ++i) {
    positions[i] = static_cast<int32_t>(i % size_t(std::max(1, c.max_position_embeddings)));
    slots[i] = int64_t{decode_tables[i * decode_max_blocks_]} * o.block_size + int64_t(i % o.block_size);
  }
  upload(positions_, positions);
  upload(slots_, slots);

  std::vector<int32_t> prefill_tables(size_t(max_prompts) * prefill_max_blocks_);  // [max_prompts, prefill_max_blocks]
  for (size_t e = 0; e < prefill_tables.size(); ++e) prefill_tables[e] = block_at(decode_entries + int64_t(e));
  upload(prefill_tables_, prefill_tables);
  std::vector<int32_t> metadata;
  for (int n : o.prefill_row_counts) {
    if (n <= 0 || n > o.max_rows) fail("prefill row count {} is outside 1..{}", n, o.max_rows);
    prefill_metadata m{n, ceil_div(n, o.prefill_chunk), std::min(n, o.prefill_chunk), metadata.size()};
    std::vector<int32_t> starts, nums;
    for (int s = 0; s < m.num_seqs; ++s) {
      starts.push_back(s * o.prefill_chunk);
      nums.push_back(std::min(o.prefill_chunk, n - s * o.prefill_chunk));
    }
    metadata.insert(metadata.end(), starts.begin(), starts.end());
    metadata.insert(metadata.end(), nums.begin(), nums.end());
    metadata.insert(metadata.end(), nums.begin(), nums.end());  // fresh prompts: context = queries
    prefill_.push_back(m);
  }
  upload(prefill_metadata_, metadata);
  NF_CUDA_CHECK(cudaDeviceSynchronize());
}

const bf16* synthetic_layer::weight(int index, int rotation) const {
  const size_t copy = static_cast<size_t>(rotation % weight_copies_[index]);
  return weights_.as<bf16>() + copy * weight_elements_[index];
}

void synthetic_layer::launch(op_kind kind, int n, int sms, int context_index, int rotation, kernels::gemm_runner& gemm,
                             cudaStream_t stream) {
  const model_config& c = config_;
  NF_CHECK(n > 0 && n <= options_.max_rows, "{} rows outside 1..{}", n, options_.max_rows);
  const int hidden = c.hidden_size, inter = c.intermediate_size, bs = options_.block_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const bf16* bias = bias_.as<bf16>();
  switch (kind) {
    case op_kind::attn_norm:
    case op_kind::ffn_norm:
      NF_CUDA_CHECK(kernels::add_rmsnorm(residual_.as<bf16>(), projected_.as<bf16>(), norm_weight_.as<bf16>(),
                                         normed_.as<bf16>(), n, hidden, eps, sms, stream));
      return;
    case op_kind::qkv_gemm:
      check_gemm(gemm.run(normed_.as<bf16>(), weight(0, rotation), c.qkv_bias ? bias : nullptr, qkv_.as<bf16>(), n,
                          c.qkv_size(), hidden, sms, stream),
                 gemm, "qkv_gemm");
      return;
    case op_kind::rope_kv_append: {
      bf16* qkv = qkv_.as<bf16>();
      NF_CUDA_CHECK(kernels::rope_kv_append(qkv, qkv + c.q_size(), qkv + c.q_size() + c.kv_size(), c.qkv_size(),
                                            q_.as<bf16>(), positions_.as<int32_t>(), slots_.as<int64_t>(),
                                            inv_freq_.as<float>(), n, c.num_q_heads, c.num_kv_heads, c.head_dim, bs,
                                            kv_cache_.as<bf16>(), sms, stream));
      return;
    }
    case op_kind::decode_attention: {
      NF_CHECK(context_index >= 0 && context_index < int(options_.decode_contexts.size()), "no context {}", context_index);
      kernels::decode_attention_args a;
      a.q = q_.as<bf16>();
      a.kv_cache = kv_cache_.as<bf16>();
      a.block_tables = decode_tables_.as<int32_t>();
      a.context_lens = decode_lens_.as<int32_t>() + size_t(context_index) * options_.max_rows;
      a.out = decode_out_.as<bf16>();
      a.workspace = decode_workspace_.as<float>();
      a.workspace_bytes = decode_workspace_.bytes();
      a.num_seqs = n;
      a.num_q_heads = c.num_q_heads;
      a.num_kv_heads = c.num_kv_heads;
      a.head_dim = c.head_dim;
      a.block_size = bs;
      a.max_blocks_per_seq = decode_max_blocks_;
      a.max_context_len = options_.decode_contexts[context_index];
      a.scale = scale;
      a.num_sms = sms;
      NF_CUDA_CHECK(kernels::decode_attention(a, stream));
      return;
    }
    case op_kind::prefill_attention: {
      const auto it = std::find_if(prefill_.begin(), prefill_.end(), [n](const prefill_metadata& m) { return m.num_rows == n; });
      NF_CHECK(it != prefill_.end(), "prefill over {} rows was not prepared", n);
      const int32_t* base = prefill_metadata_.as<int32_t>() + it->offset;
      kernels::prefill_attention_args a;
      a.q = q_.as<bf16>();
      a.kv_cache = kv_cache_.as<bf16>();
      a.block_tables = prefill_tables_.as<int32_t>();
      a.query_starts = base;
      a.num_queries = base + it->num_seqs;
      a.context_lens = base + 2 * it->num_seqs;
      a.out = attention_out_.as<bf16>();
      a.num_seqs = it->num_seqs;
      a.num_q_heads = c.num_q_heads;
      a.num_kv_heads = c.num_kv_heads;
      a.head_dim = c.head_dim;
      a.block_size = bs;
      a.max_blocks_per_seq = prefill_max_blocks_;
      a.max_num_queries = it->max_queries;
      a.scale = scale;
      a.num_sms = sms;
      NF_CUDA_CHECK(kernels::prefill_attention(a, stream));
      return;
    }
    case op_kind::o_gemm:
      check_gemm(gemm.run(attention_out_.as<bf16>(), weight(1, rotation), c.o_bias ? bias : nullptr,
                          projected_.as<bf16>(), n, hidden, c.q_size(), sms, stream),
                 gemm, "o_gemm");
      return;
    case op_kind::gate_up_gemm:
      check_gemm(gemm.run(normed_.as<bf16>(), weight(2, rotation), c.mlp_bias ? bias : nullptr, gate_up_.as<bf16>(), n,
                          2 * inter, hidden, sms, stream),
                 gemm, "gate_up_gemm");
      return;
    case op_kind::activation:
      NF_CUDA_CHECK(kernels::silu_and_mul(gate_up_.as<bf16>(), activated_.as<bf16>(), n, inter, sms, stream));
      return;
    case op_kind::down_gemm:
      check_gemm(gemm.run(activated_.as<bf16>(), weight(3, rotation), c.mlp_bias ? bias : nullptr,
                          projected_.as<bf16>(), n, hidden, inter, sms, stream),
                 gemm, "down_gemm");
      return;
  }
  NF_CHECK(false, "unknown operation kind");
}

}  // namespace nf::cuda
