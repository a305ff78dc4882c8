// The CUDA forward pass. Per step: the batch's metadata goes host -> device in one pinned buffer and one async
// copy; then embedding -> per layer (norm, fused QKV GEMM (+bias), rope_kv_append, decode attention over the
// leading decode sequences and prefill attention over the rest, O GEMM, add_rmsnorm, gate_up GEMM,
// silu_and_mul, down GEMM) -> final norm and LM head on the sampled rows only -> argmax or bf16 logits back.
#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/dtype.h"
#include "engine/cuda/argmax.h"
#include "engine/cuda/generic_kernels.h"
#include "engine/cuda/random_fill.h"
#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/prefill_attention.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope_kv.h"
#include "kernels/cuda/silu_and_mul.h"
#include "model/rope.h"

namespace nf {

using bf16 = __nv_bfloat16;
using cuda::step_op;

struct cuda_backend::step_metadata {
  const int32_t* token_ids = nullptr;   // [num_tokens]
  const int32_t* positions = nullptr;   // [num_tokens]
  const int64_t* slots = nullptr;       // [num_tokens]
  const int32_t* logit_rows = nullptr;  // [num_sampled]
  // Leading decode sequences (one query each, rows 0 .. num_decodes-1): tensor-core decode kernel.
  int num_decodes = 0, decode_max_blocks = 0, decode_max_context = 0;
  const int32_t* decode_block_tables = nullptr;  // [num_decodes, decode_max_blocks]
  const int32_t* decode_context_lens = nullptr;  // [num_decodes]
  // The remaining sequences: prefill kernel.
  int num_prefills = 0, prefill_max_blocks = 0, prefill_max_queries = 0;
  const int32_t* prefill_block_tables = nullptr;  // [num_prefills, prefill_max_blocks]
  const int32_t* prefill_query_starts = nullptr;  // [num_prefills]
  const int32_t* prefill_num_queries = nullptr;   // [num_prefills]
  const int32_t* prefill_context_lens = nullptr;  // [num_prefills]
  // Generic path (odd head_dim or block size): every row on its own.
  int generic_max_blocks = 0;
  const int32_t* generic_block_tables = nullptr;  // [num_seqs, generic_max_blocks]
  const int32_t* row_sequence = nullptr;          // [num_tokens]
  const int32_t* row_num_keys = nullptr;          // [num_tokens]
};

namespace {

// Appends arrays to a byte buffer at 16-byte alignment; returns their offsets.
class metadata_builder {
 public:
  explicit metadata_builder(std::vector<std::byte>& out) : out_(out) { out_.clear(); }
  template <typename T>
  size_t add(const T* data, size_t count) {
    const size_t offset = (out_.size() + 15) / 16 * 16;
    out_.resize(offset + count * sizeof(T));
    if (count) std::memcpy(out_.data() + offset, data, count * sizeof(T));
    return offset;
  }
  template <typename T>
  size_t add(const std::vector<T>& v) { return add(v.data(), v.size()); }

 private:
  std::vector<std::byte>& out_;
};

int blocks_for(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

// [num_seqs, max_blocks] block tables of sequences [first, first + count), zero-padded.
std::vector<int32_t> pack_block_tables(const model_batch& batch, int first, int count, int max_blocks, int block_size) {
  std::vector<int32_t> tables(size_t(count) * max_blocks, 0);
  for (int s = 0; s < count; ++s) {
    const batch_sequence& seq = batch.sequences[first + s];
    const int needed = blocks_for(seq.context_len, block_size);
    std::copy(seq.block_table.begin(), seq.block_table.begin() + needed, tables.begin() + size_t(s) * max_blocks);
  }
  return tables;
}

}  // namespace

cuda_backend::cuda_backend(const model_config& config, const cuda::weight_source& weights,
                           const cuda_backend_options& options)
    : config_(config), options_(options), profiler_(options.profile_ops) {
  int num_devices = 0;
  if (cudaGetDeviceCount(&num_devices) != cudaSuccess || num_devices == 0) fail("the cuda backend needs a CUDA device; none was found");
  if (options.block_size <= 0) fail("--block-size must be positive");
  if (options.gpu_memory_utilization <= 0.0 || options.gpu_memory_utilization > 1.0)
    fail("--gpu-memory-utilization must be in (0, 1], got {}", options.gpu_memory_utilization);
  const model_config& c = config_;
  if (c.hidden_size % 8 != 0) fail("the cuda backend needs hidden_size to be a multiple of 8 (got {})", c.hidden_size);
  if (c.head_dim % 4 != 0 || c.head_dim > 512) fail("the cuda backend needs head_dim a multiple of 4 and at most 512 (got {})", c.head_dim);
  tuned_attention_ = (c.head_dim == 64 || c.head_dim == 128) && options.block_size % 16 == 0;
  tuned_activation_ = c.intermediate_size % 8 == 0;
  NF_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  NF_CUDA_CHECK(gemm_.init());

  weights_ = cuda::load_device_weights(c, weights, options.show_progress);
  const std::vector<float> inv_freq = rope_inverse_frequencies(c.rope, c.head_dim);  // [head_dim / 2]
  inv_freq_.reserve(inv_freq.size() * sizeof(float));
  NF_CUDA_CHECK(cudaMemcpy(inv_freq_.as<float>(), inv_freq.data(), inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice));
  reserve_activations(std::max(1, options.max_num_tokens), std::min(std::max(1, options.max_num_tokens), 512));

  // The KV cache takes what is left of the memory budget.
  const size_t block_bytes = size_t(c.num_layers) * 2 * c.num_kv_heads * options.block_size * c.head_dim * sizeof(bf16);
  size_t free_bytes = 0, total_bytes = 0;
  NF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const double used = double(total_bytes - free_bytes);
  const double budget = options.gpu_memory_utilization * double(total_bytes) - used;
  if (options.kv_cache_tokens > 0) {
    num_kv_blocks_ = static_cast<int>(blocks_for(static_cast<int>(std::min<int64_t>(options.kv_cache_tokens, INT32_MAX)), options.block_size));
    if (double(num_kv_blocks_) * block_bytes > double(free_bytes))
      fail("a KV cache of {} tokens needs {:.2f} GiB but only {:.2f} GiB of device memory is free", options.kv_cache_tokens,
           double(num_kv_blocks_) * block_bytes / double(1 << 30), double(free_bytes) / double(1 << 30));
  } else {
    num_kv_blocks_ = budget > 0 ? static_cast<int>(std::min(budget / double(block_bytes), double(INT32_MAX / options.block_size))) : 0;
    if (num_kv_blocks_ < 1)
      fail("no device memory is left for the KV cache with --gpu-memory-utilization {} (weights take {:.2f} GiB)",
           options.gpu_memory_utilization, weights_.storage.bytes() / double(1 << 30));
  }
  kv_cache_.allocate_exact(size_t(num_kv_blocks_) * block_bytes);
  // Zeroed so that never-written slots hold finite values (masked lanes still multiply them by zero).
  NF_CUDA_CHECK(cudaMemsetAsync(kv_cache_.as<void>(), 0, kv_cache_.bytes(), stream_));
  NF_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

cuda_backend::~cuda_backend() {
  profiler_.report(stderr);
  if (stream_) cudaStreamDestroy(stream_);
}

void cuda_backend::reserve_activations(int rows, int num_sampled) {
  const model_config& c = config_;
  const size_t r = rows, e = sizeof(bf16);
  for (cuda::memory_block* b : {&residual_, &normed_, &projected_}) b->reserve(r * c.hidden_size * e);
  qkv_.reserve(r * c.qkv_size() * e);
  q_.reserve(r * c.q_size() * e);
  attention_out_.reserve(r * c.q_size() * e);
  gate_up_.reserve(r * 2 * c.intermediate_size * e);
  activated_.reserve(r * c.intermediate_size * e);
  const size_t s = num_sampled;
  for (cuda::memory_block* b : {&sampled_residual_, &sampled_delta_, &sampled_normed_}) b->reserve(s * c.hidden_size * e);
  logits_.reserve(s * c.vocab_size * e);
  token_ids_.reserve(s * sizeof(int32_t));
}

void cuda_backend::check_batch(const model_batch& batch) const {
  const int num_tokens = batch.num_tokens();
  NF_CHECK(num_tokens > 0, "empty batch");
  NF_CHECK(batch.positions.size() == size_t(num_tokens) && batch.slots.size() == size_t(num_tokens), "batch rows disagree");
  for (int32_t id : batch.token_ids) NF_CHECK(id >= 0 && id < config_.vocab_size, "token id {} out of range", id);
  for (int64_t slot : batch.slots)
    NF_CHECK(slot >= 0 && slot < int64_t{num_kv_blocks_} * options_.block_size, "KV slot {} out of range", slot);
  for (const batch_sequence& seq : batch.sequences) {
    NF_CHECK(seq.query_start >= 0 && seq.num_queries > 0 && seq.query_start + seq.num_queries <= num_tokens,
             "sequence rows out of range");
    NF_CHECK(seq.context_len >= seq.num_queries, "context shorter than the queries");
    NF_CHECK(int64_t(seq.block_table.size()) * options_.block_size >= seq.context_len, "block table too short");
    for (int i = 0; i < blocks_for(seq.context_len, options_.block_size); ++i)
      NF_CHECK(seq.block_table[i] >= 0 && seq.block_table[i] < num_kv_blocks_, "block id {} out of range", seq.block_table[i]);
  }
  for (int32_t row : batch.logit_rows) NF_CHECK(row >= 0 && row < num_tokens, "logit row {} out of range", row);
}

void cuda_backend::attention(const model_batch& batch, const step_metadata& m, bf16* kv_layer) {
  const model_config& c = config_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int n = batch.num_tokens();
  if (!tuned_attention_) {
    profiler_.begin(step_op::prefill_attention);
    NF_CUDA_CHECK(cuda::generic_paged_attention(q_.as<bf16>(), kv_layer, m.generic_block_tables, m.row_sequence,
                                            m.row_num_keys, attention_out_.as<bf16>(), n, c.num_q_heads,
                                            c.num_kv_heads, c.head_dim, options_.block_size, m.generic_max_blocks,
                                            scale, stream_));
    profiler_.end();
    return;
  }
  if (m.num_decodes > 0) {
    kernels::decode_attention_args a;
    a.q = q_.as<bf16>();
    a.kv_cache = kv_layer;
    a.block_tables = m.decode_block_tables;
    a.context_lens = m.decode_context_lens;
    a.out = attention_out_.as<bf16>();
    a.workspace = decode_workspace_.as<float>();
    a.workspace_bytes = decode_workspace_.bytes();
    a.num_seqs = m.num_decodes;
    a.num_q_heads = c.num_q_heads;
    a.num_kv_heads = c.num_kv_heads;
    a.head_dim = c.head_dim;
    a.block_size = options_.block_size;
    a.max_blocks_per_seq = m.decode_max_blocks;
    a.max_context_len = m.decode_max_context;
    a.scale = scale;
    profiler_.begin(step_op::decode_attention);
    NF_CUDA_CHECK(kernels::decode_attention(a, stream_));
    profiler_.end();
  }
  if (m.num_prefills > 0) {
    kernels::prefill_attention_args a;
    a.q = q_.as<bf16>();
    a.kv_cache = kv_layer;
    a.block_tables = m.prefill_block_tables;
    a.query_starts = m.prefill_query_starts;
    a.num_queries = m.prefill_num_queries;
    a.context_lens = m.prefill_context_lens;
    a.out = attention_out_.as<bf16>();
    a.num_seqs = m.num_prefills;
    a.num_q_heads = c.num_q_heads;
    a.num_kv_heads = c.num_kv_heads;
    a.head_dim = c.head_dim;
    a.block_size = options_.block_size;
    a.max_blocks_per_seq = m.prefill_max_blocks;
    a.max_num_queries = m.prefill_max_queries;
    a.scale = scale;
    profiler_.begin(step_op::prefill_attention);
    NF_CUDA_CHECK(kernels::prefill_attention(a, stream_));
    profiler_.end();
  }
}

void cuda_backend::run(const model_batch& batch) {
  check_batch(batch);
  const model_config& c = config_;
  const int n = batch.num_tokens();
  const int num_sampled = static_cast<int>(batch.logit_rows.size());
  const int bs = options_.block_size;
  const int num_seqs = static_cast<int>(batch.sequences.size());
  reserve_activations(n, std::max(1, num_sampled));
  profiler_.begin_step(stream_);

  // Metadata: build on the host, one copy into pinned memory, one async copy to the device.
  metadata_builder builder(metadata_host_);
  step_metadata m;
  const size_t o_tokens = builder.add(batch.token_ids), o_positions = builder.add(batch.positions),
               o_slots = builder.add(batch.slots), o_rows = builder.add(batch.logit_rows);
  size_t o_dtables = 0, o_dlens = 0, o_ptables = 0, o_pstarts = 0, o_pnum = 0, o_plens = 0, o_gtables = 0, o_rseq = 0,
         o_rkeys = 0;
  if (tuned_attention_) {
    while (m.num_decodes < num_seqs && batch.sequences[m.num_decodes].num_queries == 1 &&
           batch.sequences[m.num_decodes].query_start == m.num_decodes)
      ++m.num_decodes;
    m.num_prefills = num_seqs - m.num_decodes;
    std::vector<int32_t> lens;  // [num_decodes]
    for (int s = 0; s < m.num_decodes; ++s) {
      const int len = batch.sequences[s].context_len;
      lens.push_back(len);
      m.decode_max_context = std::max(m.decode_max_context, len);
    }
    m.decode_max_blocks = std::max(1, blocks_for(m.decode_max_context, bs));
    o_dtables = builder.add(pack_block_tables(batch, 0, m.num_decodes, m.decode_max_blocks, bs));
    o_dlens = builder.add(lens);
    std::vector<int32_t> starts, nums, plens;  // [num_prefills] each
    for (int s = m.num_decodes; s < num_seqs; ++s) {
      const batch_sequence& seq = batch.sequences[s];
      starts.push_back(seq.query_start);
      nums.push_back(seq.num_queries);
      plens.push_back(seq.context_len);
      m.prefill_max_blocks = std::max(m.prefill_max_blocks, blocks_for(seq.context_len, bs));
      m.prefill_max_queries = std::max(m.prefill_max_queries, seq.num_queries);
    }
    m.prefill_max_blocks = std::max(1, m.prefill_max_blocks);
    o_ptables = builder.add(pack_block_tables(batch, m.num_decodes, m.num_prefills, m.prefill_max_blocks, bs));
    o_pstarts = builder.add(starts);
    o_pnum = builder.add(nums);
    o_plens = builder.add(plens);
    if (m.num_decodes > 0)
      decode_workspace_.reserve(std::max<size_t>(16, kernels::decode_attention_workspace_bytes(
                                                         m.num_decodes, c.num_q_heads, c.head_dim, m.decode_max_context)));
  } else {
    std::vector<int32_t> row_sequence(n, 0), row_num_keys(n, 0);  // [num_tokens] each
    for (int s = 0; s < num_seqs; ++s) {
      const batch_sequence& seq = batch.sequences[s];
      m.generic_max_blocks = std::max(m.generic_max_blocks, blocks_for(seq.context_len, bs));
      for (int i = 0; i < seq.num_queries; ++i) {
        row_sequence[seq.query_start + i] = s;
        row_num_keys[seq.query_start + i] = seq.context_len - seq.num_queries + i + 1;
      }
    }
    m.generic_max_blocks = std::max(1, m.generic_max_blocks);
    o_gtables = builder.add(pack_block_tables(batch, 0, num_seqs, m.generic_max_blocks, bs));
    o_rseq = builder.add(row_sequence);
    o_rkeys = builder.add(row_num_keys);
  }
  const size_t metadata_bytes = metadata_host_.size();
  metadata_staging_.reserve(metadata_bytes);
  metadata_.reserve(metadata_bytes);
  std::memcpy(metadata_staging_.as<void>(), metadata_host_.data(), metadata_bytes);
  profiler_.begin(step_op::metadata_copy);
  NF_CUDA_CHECK(cudaMemcpyAsync(metadata_.as<void>(), metadata_staging_.as<void>(), metadata_bytes,
                                cudaMemcpyHostToDevice, stream_));
  profiler_.end();
  const std::byte* base = metadata_.as<std::byte>();
  auto i32 = [&](size_t offset) { return reinterpret_cast<const int32_t*>(base + offset); };
  m.token_ids = i32(o_tokens);
  m.positions = i32(o_positions);
  m.slots = reinterpret_cast<const int64_t*>(base + o_slots);
  m.logit_rows = i32(o_rows);
  m.decode_block_tables = i32(o_dtables);
  m.decode_context_lens = i32(o_dlens);
  m.prefill_block_tables = i32(o_ptables);
  m.prefill_query_starts = i32(o_pstarts);
  m.prefill_num_queries = i32(o_pnum);
  m.prefill_context_lens = i32(o_plens);
  m.generic_block_tables = i32(o_gtables);
  m.row_sequence = i32(o_rseq);
  m.row_num_keys = i32(o_rkeys);

  const int hidden = c.hidden_size, inter = c.intermediate_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  bf16* residual = residual_.as<bf16>();    // [n, hidden]
  bf16* normed = normed_.as<bf16>();        // [n, hidden]
  bf16* projected = projected_.as<bf16>();  // [n, hidden]
  bf16* qkv = qkv_.as<bf16>();              // [n, qkv_size]
  const size_t layer_elements = size_t(num_kv_blocks_) * 2 * c.num_kv_heads * bs * c.head_dim;

  profiler_.begin(step_op::embedding);
  NF_CUDA_CHECK(kernels::embedding(m.token_ids, weights_.embed, residual, n, hidden, 0, stream_));
  profiler_.end();
  for (int l = 0; l < c.num_layers; ++l) {
    const cuda::device_layer_weights& w = weights_.layers[l];
    bf16* kv_layer = kv_cache_.as<bf16>() + l * layer_elements;
    profiler_.begin(step_op::norms);
    if (l == 0) NF_CUDA_CHECK(kernels::rmsnorm(residual, w.input_norm, normed, n, hidden, eps, 0, stream_));
    else NF_CUDA_CHECK(kernels::add_rmsnorm(residual, projected, w.input_norm, normed, n, hidden, eps, 0, stream_));
    profiler_.end();
    profiler_.begin(step_op::qkv_gemm);
    NF_CUDA_CHECK(gemm_.run(normed, w.qkv, w.qkv_bias, qkv, n, c.qkv_size(), hidden, 0, stream_));
    profiler_.end();
    profiler_.begin(step_op::rope_kv_append);
    NF_CUDA_CHECK(kernels::rope_kv_append(qkv, qkv + c.q_size(), qkv + c.q_size() + c.kv_size(), c.qkv_size(), m.positions,
                                      m.slots, inv_freq_.as<float>(), n, c.num_q_heads, c.num_kv_heads, c.head_dim, bs,
                                      kv_layer, 0, stream_));
    profiler_.end();
    profiler_.begin(step_op::q_copy);
    NF_CUDA_CHECK(cudaMemcpy2DAsync(q_.as<bf16>(), c.q_size() * sizeof(bf16), qkv, c.qkv_size() * sizeof(bf16),
                                    c.q_size() * sizeof(bf16), n, cudaMemcpyDeviceToDevice, stream_));
    profiler_.end();
    attention(batch, m, kv_layer);
    profiler_.begin(step_op::o_gemm);
    NF_CUDA_CHECK(gemm_.run(attention_out_.as<bf16>(), w.o, w.o_bias, projected, n, hidden, c.q_size(), 0, stream_));
    profiler_.end();
    profiler_.begin(step_op::norms);
    NF_CUDA_CHECK(kernels::add_rmsnorm(residual, projected, w.post_attention_norm, normed, n, hidden, eps, 0, stream_));
    profiler_.end();
    profiler_.begin(step_op::gate_up_gemm);
    NF_CUDA_CHECK(gemm_.run(normed, w.gate_up, w.gate_up_bias, gate_up_.as<bf16>(), n, 2 * inter, hidden, 0, stream_));
    profiler_.end();
    profiler_.begin(step_op::activation);
    if (tuned_activation_) NF_CUDA_CHECK(kernels::silu_and_mul(gate_up_.as<bf16>(), activated_.as<bf16>(), n, inter, 0, stream_));
    else NF_CUDA_CHECK(cuda::generic_silu_and_mul(gate_up_.as<bf16>(), activated_.as<bf16>(), n, inter, stream_));
    profiler_.end();
    profiler_.begin(step_op::down_gemm);
    NF_CUDA_CHECK(gemm_.run(activated_.as<bf16>(), w.down, w.down_bias, projected, n, hidden, inter, 0, stream_));
    profiler_.end();
  }

  // Only the rows that are sampled go through the final norm and the LM head (a row gather is an embedding lookup).
  profiler_.begin(step_op::lm_head);
  if (num_sampled > 0) {
    NF_CUDA_CHECK(kernels::embedding(m.logit_rows, residual, sampled_residual_.as<bf16>(), num_sampled, hidden, 0, stream_));
    NF_CUDA_CHECK(kernels::embedding(m.logit_rows, projected, sampled_delta_.as<bf16>(), num_sampled, hidden, 0, stream_));
    NF_CUDA_CHECK(kernels::add_rmsnorm(sampled_residual_.as<bf16>(), sampled_delta_.as<bf16>(), weights_.final_norm,
                                   sampled_normed_.as<bf16>(), num_sampled, hidden, eps, 0, stream_));
    NF_CUDA_CHECK(gemm_.run(sampled_normed_.as<bf16>(), weights_.lm_head, nullptr, logits_.as<bf16>(), num_sampled,
                        c.vocab_size, hidden, 0, stream_));
  }
  profiler_.end();
}

void cuda_backend::finish_step(const model_batch& batch) {
  NF_CUDA_CHECK(cudaStreamSynchronize(stream_));
  int num_decodes = 0;
  while (num_decodes < int(batch.sequences.size()) && batch.sequences[num_decodes].num_queries == 1 &&
         batch.sequences[num_decodes].query_start == num_decodes)
    ++num_decodes;
  profiler_.end_step(batch.num_tokens(), num_decodes, batch.num_tokens() - num_decodes);
}

void cuda_backend::forward(const model_batch& batch, std::vector<float>& logits) {
  run(batch);
  const size_t count = batch.logit_rows.size() * size_t(config_.vocab_size);
  host_out_.reserve(std::max<size_t>(count * sizeof(bf16), 16));
  profiler_.begin(step_op::sampling);
  NF_CUDA_CHECK(cudaMemcpyAsync(host_out_.as<void>(), logits_.as<void>(), count * sizeof(bf16), cudaMemcpyDeviceToHost, stream_));
  profiler_.end();
  finish_step(batch);
  logits.resize(count);
  const uint16_t* bits = host_out_.as<uint16_t>();
  for (size_t i = 0; i < count; ++i) logits[i] = bf16_to_float(bits[i]);
}

void cuda_backend::forward_argmax(const model_batch& batch, std::vector<int32_t>& token_ids) {
  run(batch);
  const int num_sampled = static_cast<int>(batch.logit_rows.size());
  host_out_.reserve(std::max<size_t>(num_sampled * sizeof(int32_t), 16));
  profiler_.begin(step_op::sampling);
  NF_CUDA_CHECK(cuda::argmax_rows(logits_.as<bf16>(), token_ids_.as<int32_t>(), num_sampled, config_.vocab_size, stream_));
  NF_CUDA_CHECK(cudaMemcpyAsync(host_out_.as<void>(), token_ids_.as<void>(), num_sampled * sizeof(int32_t),
                                cudaMemcpyDeviceToHost, stream_));
  profiler_.end();
  finish_step(batch);
  token_ids.assign(host_out_.as<int32_t>(), host_out_.as<int32_t>() + num_sampled);
}

double cuda_backend::measure_gemm_flops(int num_tokens) {
  const int m = std::max(1, num_tokens), k = config_.hidden_size, n = 2 * config_.intermediate_size;
  cuda::memory_block x, w, y;
  x.allocate_exact(size_t(m) * k * sizeof(bf16));  // [m, hidden]
  w.allocate_exact(size_t(n) * k * sizeof(bf16));  // [2 * intermediate, hidden]
  y.allocate_exact(size_t(m) * n * sizeof(bf16));  // [m, 2 * intermediate]
  NF_CUDA_CHECK(cuda::fill_uniform(x.as<bf16>(), size_t(m) * k, 1, 1, 1.0f, stream_));
  NF_CUDA_CHECK(cuda::fill_uniform(w.as<bf16>(), size_t(n) * k, 2, 2, 0.02f, stream_));
  cudaEvent_t start, stop;
  NF_CUDA_CHECK(cudaEventCreate(&start));
  NF_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) NF_CUDA_CHECK(gemm_.run(x.as<bf16>(), w.as<bf16>(), nullptr, y.as<bf16>(), m, n, k, 0, stream_));
  std::vector<float> times;
  for (int i = 0; i < 15; ++i) {
    NF_CUDA_CHECK(cudaEventRecord(start, stream_));
    NF_CUDA_CHECK(gemm_.run(x.as<bf16>(), w.as<bf16>(), nullptr, y.as<bf16>(), m, n, k, 0, stream_));
    NF_CUDA_CHECK(cudaEventRecord(stop, stream_));
    NF_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    NF_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return 2.0 * m * double(n) * k / (times[times.size() / 2] * 1e-3);
}

}  // namespace nf
