// The CUDA forward pass. Per step: the batch's metadata (rows, KV slots, block tables, and each attention
// nano-op's sequences cut to its rows) goes host -> device in one pinned buffer and one async copy; then the
// embedding on the main stream; then every layer's nano-ops as the pipeline spec's stream schedule orders them
// (norm, fused QKV GEMM (+bias), rope_kv_append writing packed Q and the paged KV, decode attention over the
// leading decode sequences and prefill attention over the rest, O GEMM, add_rmsnorm, gate_up GEMM,
// silu_and_mul, down GEMM), each over its rows with its SM budget; then the final norm and LM head on the
// sampled rows only -> argmax or bf16 logits back.
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
#include "pipeline/batch_rows.h"
#include "pipeline/validator.h"

namespace nf {

using bf16 = __nv_bfloat16;
using cuda::step_op;

struct cuda_backend::attention_slice {
  // Decode: sequences [first, first + count) of the decode list (decode row i is sequence i).
  // Prefill: sequences [first, first + count) of the prefill list, each cut to the nano-op's rows; a cut
  // sequence keeps its positions, so its context ends at its last kept query.
  int first = 0, count = 0;
  int max_context = 0;  // decode: the longest context of the slice
  int max_queries = 0;  // prefill: the most queries of a cut sequence
  size_t starts_offset = 0, nums_offset = 0, lens_offset = 0;  // prefill: offsets in the metadata block
  size_t workspace_offset = 0, workspace_bytes = 0;             // decode: bytes of decode_workspace_
};

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
  int num_prefills = 0, prefill_max_blocks = 0;
  const int32_t* prefill_block_tables = nullptr;  // [num_prefills, prefill_max_blocks]; rows are cut per nano-op
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
  int device = 0;
  NF_CUDA_CHECK(cudaGetDevice(&device));
  NF_CUDA_CHECK(cudaDeviceGetAttribute(&num_sms_, cudaDevAttrMultiProcessorCount, device));
  if (const std::vector<std::string> problems = validate_spec(options_.schedule, llama_op_graph()); !problems.empty())
    fail("pipeline spec \"{}\": {}", options_.schedule.name, join_problems(problems));
  NF_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  make_executor();

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
  clear_graphs();
  executor_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

void cuda_backend::make_executor() {
  std::vector<bool> memory_only(options_.schedule.streams.size(), true);
  for (const nano_op_spec& op : options_.schedule.nano_ops) {
    const int stream = options_.schedule.find_stream(op.stream);
    const resource_class resource = op.resource.value_or(llama_op_graph().ops[llama_op_graph().find_op(op.op)].resource);
    if (stream >= 0 && resource != resource_class::memory) memory_only[stream] = false;
  }
  const size_t max_nano_ops = std::max(options_.schedule.nano_ops.size(), sequential_.nano_ops.size());
  executor_ = std::make_unique<cuda::stream_executor>(stream_, memory_only, max_nano_ops * config_.num_layers);
}

void cuda_backend::set_schedule(const pipeline_spec& spec) {
  if (const std::vector<std::string> problems = validate_spec(spec, llama_op_graph()); !problems.empty())
    fail("pipeline spec \"{}\": {}", spec.name, join_problems(problems));
  NF_CUDA_CHECK(cudaStreamSynchronize(stream_));
  clear_graphs();  // captured with the old spec's streams and events
  schedules_.clear();
  executor_.reset();
  options_.schedule = spec;
  make_executor();
}

const stream_schedule& cuda_backend::schedule_for(step_rows rows) {
  const std::pair<int, int> key{rows.num_decode, rows.num_prefill};
  if (auto it = schedules_.find(key); it != schedules_.end()) return it->second;
  if (schedules_.size() >= 4096) schedules_.clear();
  const op_graph& graph = llama_op_graph();
  const pipeline_spec& spec = spec_for_step(options_.schedule, sequential_, rows.num_decode, rows.num_prefill);
  return schedules_.emplace(key, make_stream_schedule(resolve_pipeline(spec, graph, rows), config_.num_layers))
      .first->second;
}

int cuda_backend::sm_budget_of(const nano_op& op) const {
  const int sms = op.sm.count > 0 ? op.sm.count : static_cast<int>(std::lround(op.sm.fraction * num_sms_));
  return sms >= num_sms_ ? 0 : std::max(1, sms);
}

void cuda_backend::reserve_activations(int rows, int num_sampled) {
  const model_config& c = config_;
  const std::vector<const void*> before = {residual_.as<void>(), normed_.as<void>(), projected_.as<void>(), qkv_.as<void>(),
                                           q_.as<void>(), attention_out_.as<void>(), gate_up_.as<void>(),
                                           activated_.as<void>(), sampled_residual_.as<void>(),
                                           sampled_delta_.as<void>(), sampled_normed_.as<void>(), logits_.as<void>(),
                                           token_ids_.as<void>()};
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
  const std::vector<const void*> after = {residual_.as<void>(), normed_.as<void>(), projected_.as<void>(), qkv_.as<void>(),
                                          q_.as<void>(), attention_out_.as<void>(), gate_up_.as<void>(),
                                          activated_.as<void>(), sampled_residual_.as<void>(),
                                          sampled_delta_.as<void>(), sampled_normed_.as<void>(), logits_.as<void>(),
                                          token_ids_.as<void>()};
  if (before != after) clear_graphs();  // captured graphs hold the old addresses
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

void cuda_backend::attention(const nano_op& op, int index, bf16* kv_layer, int num_sms, const cuda::stream_lane& lane,
                             const step_metadata& m) {
  const model_config& c = config_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int first = op.rows.begin, n = op.rows.size();
  if (!tuned_attention_) {
    NF_CUDA_CHECK(cuda::generic_paged_attention(q_.as<bf16>() + size_t(first) * c.q_size(), kv_layer,
                                                m.generic_block_tables, m.row_sequence + first, m.row_num_keys + first,
                                                attention_out_.as<bf16>() + size_t(first) * c.q_size(), n, c.num_q_heads,
                                                c.num_kv_heads, c.head_dim, options_.block_size, m.generic_max_blocks,
                                                scale, lane.stream));
    return;
  }
  const attention_slice& slice = slices_[index];
  if (slice.count == 0) return;
  if (llama_op_graph().ops[op.op].kind == op_kind::decode_attention) {
    kernels::decode_attention_args a;
    a.q = q_.as<bf16>() + size_t(slice.first) * c.q_size();
    a.kv_cache = kv_layer;
    a.block_tables = m.decode_block_tables + size_t(slice.first) * m.decode_max_blocks;
    a.context_lens = m.decode_context_lens + slice.first;
    a.out = attention_out_.as<bf16>() + size_t(slice.first) * c.q_size();
    a.workspace = reinterpret_cast<float*>(step_workspace_ + slice.workspace_offset);
    a.workspace_bytes = slice.workspace_bytes;
    a.num_seqs = slice.count;
    a.num_q_heads = c.num_q_heads;
    a.num_kv_heads = c.num_kv_heads;
    a.head_dim = c.head_dim;
    a.block_size = options_.block_size;
    a.max_blocks_per_seq = m.decode_max_blocks;
    a.max_context_len = slice.max_context;
    a.scale = scale;
    a.num_sms = num_sms;
    NF_CUDA_CHECK(kernels::decode_attention(a, lane.stream));
    return;
  }
  const std::byte* base = step_metadata_base_;
  kernels::prefill_attention_args a;
  a.q = q_.as<bf16>();
  a.kv_cache = kv_layer;
  a.block_tables = m.prefill_block_tables + size_t(slice.first) * m.prefill_max_blocks;
  a.query_starts = reinterpret_cast<const int32_t*>(base + slice.starts_offset);
  a.num_queries = reinterpret_cast<const int32_t*>(base + slice.nums_offset);
  a.context_lens = reinterpret_cast<const int32_t*>(base + slice.lens_offset);
  a.out = attention_out_.as<bf16>();
  a.num_seqs = slice.count;
  a.num_q_heads = c.num_q_heads;
  a.num_kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.block_size = options_.block_size;
  a.max_blocks_per_seq = m.prefill_max_blocks;
  a.max_num_queries = slice.max_queries;
  a.scale = scale;
  a.num_sms = num_sms;
  NF_CUDA_CHECK(kernels::prefill_attention(a, lane.stream));
}

namespace {

step_op profiled_op_of(op_kind kind) {
  switch (kind) {
    case op_kind::attn_norm:
    case op_kind::ffn_norm: return step_op::norms;
    case op_kind::qkv_gemm: return step_op::qkv_gemm;
    case op_kind::rope_kv_append: return step_op::rope_kv_append;
    case op_kind::decode_attention: return step_op::decode_attention;
    case op_kind::prefill_attention: return step_op::prefill_attention;
    case op_kind::o_gemm: return step_op::o_gemm;
    case op_kind::gate_up_gemm: return step_op::gate_up_gemm;
    case op_kind::activation: return step_op::activation;
    case op_kind::down_gemm: return step_op::down_gemm;
  }
  return step_op::norms;
}

}  // namespace

void cuda_backend::run_nano_op(const nano_op& op, int index, int layer, const cuda::stream_lane& lane,
                               const step_metadata& m) {
  const model_config& c = config_;
  const cuda::device_layer_weights& w = weights_.layers[layer];
  const int hidden = c.hidden_size, inter = c.intermediate_size, bs = options_.block_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const size_t first = op.rows.begin;
  const int n = op.rows.size();
  const int sms = sm_budget_of(op);
  const size_t layer_elements = size_t(num_kv_blocks_) * 2 * c.num_kv_heads * bs * c.head_dim;
  bf16* kv_layer = kv_cache_.as<bf16>() + layer * layer_elements;
  bf16* residual = residual_.as<bf16>() + first * hidden;    // [n, hidden]
  bf16* normed = normed_.as<bf16>() + first * hidden;        // [n, hidden]
  bf16* projected = projected_.as<bf16>() + first * hidden;  // [n, hidden]
  bf16* qkv = qkv_.as<bf16>() + first * c.qkv_size();        // [n, qkv_size]
  bf16* attention_out = attention_out_.as<bf16>() + first * c.q_size();  // [n, q_size]
  bf16* gate_up = gate_up_.as<bf16>() + first * 2 * inter;   // [n, 2 * intermediate]
  bf16* activated = activated_.as<bf16>() + first * inter;   // [n, intermediate]
  kernels::gemm_runner& gemm = *lane.gemm;
  const op_kind kind = llama_op_graph().ops[op.op].kind;
  profiler_.begin(profiled_op_of(kind), lane.stream, lane.index, &op.name, layer);
  switch (kind) {
    case op_kind::attn_norm:
      if (layer == 0) NF_CUDA_CHECK(kernels::rmsnorm(residual, w.input_norm, normed, n, hidden, eps, sms, lane.stream));
      else NF_CUDA_CHECK(kernels::add_rmsnorm(residual, projected, w.input_norm, normed, n, hidden, eps, sms, lane.stream));
      break;
    case op_kind::qkv_gemm:
      NF_CUDA_CHECK(gemm.run(normed, w.qkv, w.qkv_bias, qkv, n, c.qkv_size(), hidden, sms, lane.stream));
      break;
    case op_kind::rope_kv_append:
      NF_CUDA_CHECK(kernels::rope_kv_append(qkv, qkv + c.q_size(), qkv + c.q_size() + c.kv_size(), c.qkv_size(),
                                            q_.as<bf16>() + first * c.q_size(), m.positions + first, m.slots + first,
                                            inv_freq_.as<float>(), n, c.num_q_heads, c.num_kv_heads, c.head_dim, bs,
                                            kv_layer, sms, lane.stream));
      break;
    case op_kind::decode_attention:
    case op_kind::prefill_attention:
      attention(op, index, kv_layer, sms, lane, m);
      break;
    case op_kind::o_gemm:
      NF_CUDA_CHECK(gemm.run(attention_out, w.o, w.o_bias, projected, n, hidden, c.q_size(), sms, lane.stream));
      break;
    case op_kind::ffn_norm:
      NF_CUDA_CHECK(kernels::add_rmsnorm(residual, projected, w.post_attention_norm, normed, n, hidden, eps, sms, lane.stream));
      break;
    case op_kind::gate_up_gemm:
      NF_CUDA_CHECK(gemm.run(normed, w.gate_up, w.gate_up_bias, gate_up, n, 2 * inter, hidden, sms, lane.stream));
      break;
    case op_kind::activation:
      if (tuned_activation_) NF_CUDA_CHECK(kernels::silu_and_mul(gate_up, activated, n, inter, sms, lane.stream));
      else NF_CUDA_CHECK(cuda::generic_silu_and_mul(gate_up, activated, n, inter, lane.stream));
      break;
    case op_kind::down_gemm:
      NF_CUDA_CHECK(gemm.run(activated, w.down, w.down_bias, projected, n, hidden, inter, sms, lane.stream));
      break;
  }
  profiler_.end();
}

namespace {

// Decode-only steps run as CUDA graphs of these padded sizes (rows) ...
constexpr int graph_row_buckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256,
                                     320, 384, 448, 512, 640, 768, 896, 1024};
// ... and of the longest context rounded up to a multiple of this (the decode kernel skips empty chunks).
constexpr int graph_context_quantum = 2048;
constexpr int graph_max_context = 16384;

int graph_rows_for(int rows) {
  for (int bucket : graph_row_buckets)
    if (rows <= bucket) return bucket;
  return 0;
}

// The batch with `rows - batch rows` padding decodes appended: one token at position 0 over a one-token context
// on block 0 (finite data, never written: the slot is -1), its logits computed and ignored.
model_batch padded_decode_batch(const model_batch& batch, int rows) {
  model_batch padded = batch;
  for (int r = batch.num_tokens(); r < rows; ++r) {
    padded.token_ids.push_back(0);
    padded.positions.push_back(0);
    padded.slots.push_back(-1);
    padded.sequences.push_back({r, 1, 1, {0}});
    padded.logit_rows.push_back(r);
  }
  return padded;
}

}  // namespace

bool cuda_backend::graph_eligible(const model_batch& batch, step_rows rows) const {
  if (!options_.cuda_graphs || !tuned_attention_ || profiler_.enabled() || rows.num_prefill != 0) return false;
  if (graph_rows_for(rows.num_decode) == 0 || batch.logit_rows.size() != size_t(rows.num_decode)) return false;
  for (const batch_sequence& seq : batch.sequences)
    if (seq.context_len > graph_max_context) return false;
  return true;
}

void cuda_backend::run(const model_batch& batch, bool argmax) {
  check_batch(batch);
  const step_rows rows = rows_of_batch(batch);
  if (graph_eligible(batch, rows)) {
    run_graph(batch, rows, argmax);
    return;
  }
  const int num_sampled = static_cast<int>(batch.logit_rows.size());
  reserve_activations(batch.num_tokens(), std::max(1, num_sampled));
  profiler_.begin_step(stream_);
  const stream_schedule& schedule = schedule_for(rows);
  step_metadata m;
  prepare(batch, schedule, 0, metadata_, decode_workspace_, m);
  enqueue(batch.num_tokens(), num_sampled, schedule, m, argmax);
}

void cuda_backend::run_graph(const model_batch& batch, step_rows rows, bool argmax) {
  const int padded_rows = graph_rows_for(rows.num_decode);
  int max_context = 0;
  for (const batch_sequence& seq : batch.sequences) max_context = std::max(max_context, seq.context_len);
  const int context = (max_context + graph_context_quantum - 1) / graph_context_quantum * graph_context_quantum;
  const model_batch padded = padded_decode_batch(batch, padded_rows);
  reserve_activations(padded_rows, padded_rows);
  const stream_schedule& schedule = schedule_for({padded_rows, 0});
  // Every graph reads the one graph metadata block and writes the one graph workspace: when either must grow,
  // the graphs captured with the old addresses go.
  const void* metadata_before = graph_metadata_.as<void>();
  const void* workspace_before = graph_workspace_.as<void>();
  step_metadata m;
  prepare(padded, schedule, context, graph_metadata_, graph_workspace_, m);
  if (graph_metadata_.as<void>() != metadata_before || graph_workspace_.as<void>() != workspace_before) clear_graphs();
  const auto key = std::make_tuple(padded_rows, context, argmax);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    NF_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    enqueue(padded_rows, padded_rows, schedule, m, argmax);
    NF_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    NF_CUDA_CHECK(status);
    it = graphs_.emplace(key, exec).first;
  }
  NF_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
}

void cuda_backend::clear_graphs() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
}

void cuda_backend::prepare(const model_batch& batch, const stream_schedule& schedule, int fixed_context,
                           cuda::memory_block& metadata, cuda::memory_block& workspace, step_metadata& m) {
  const model_config& c = config_;
  const int n = batch.num_tokens();
  const int bs = options_.block_size;
  const int num_seqs = static_cast<int>(batch.sequences.size());
  const int num_nano_ops = schedule.num_nano_ops();
  const step_rows rows = schedule.pipeline.rows;

  // Metadata: build on the host, one copy into pinned memory, one async copy to the device.
  metadata_builder builder(metadata_host_);
  const size_t o_tokens = builder.add(batch.token_ids), o_positions = builder.add(batch.positions),
               o_slots = builder.add(batch.slots), o_rows = builder.add(batch.logit_rows);
  size_t o_dtables = 0, o_dlens = 0, o_ptables = 0, o_gtables = 0, o_rseq = 0, o_rkeys = 0;
  slices_.assign(num_nano_ops, attention_slice{});
  if (tuned_attention_) {
    m.num_decodes = rows.num_decode;
    m.num_prefills = num_seqs - m.num_decodes;
    std::vector<int32_t> lens;  // [num_decodes]
    for (int s = 0; s < m.num_decodes; ++s) {
      const int len = batch.sequences[s].context_len;
      lens.push_back(len);
      m.decode_max_context = std::max(m.decode_max_context, len);
    }
    if (fixed_context > 0) m.decode_max_context = fixed_context;
    m.decode_max_blocks = std::max(1, blocks_for(m.decode_max_context, bs));
    o_dtables = builder.add(pack_block_tables(batch, 0, m.num_decodes, m.decode_max_blocks, bs));
    o_dlens = builder.add(lens);
    for (int s = m.num_decodes; s < num_seqs; ++s)
      m.prefill_max_blocks = std::max(m.prefill_max_blocks, blocks_for(batch.sequences[s].context_len, bs));
    m.prefill_max_blocks = std::max(1, m.prefill_max_blocks);
    o_ptables = builder.add(pack_block_tables(batch, m.num_decodes, m.num_prefills, m.prefill_max_blocks, bs));
    size_t workspace_bytes = 0;
    for (int i = 0; i < num_nano_ops; ++i) {
      const nano_op& op = schedule.pipeline.nano_ops[i];
      attention_slice& slice = slices_[i];
      const op_kind kind = llama_op_graph().ops[op.op].kind;
      if (kind == op_kind::decode_attention) {
        slice.first = op.rows.begin;
        slice.count = op.rows.size();
        for (int s = op.rows.begin; s < op.rows.end; ++s) slice.max_context = std::max(slice.max_context, lens[s]);
        if (fixed_context > 0) slice.max_context = fixed_context;
        slice.workspace_offset = workspace_bytes;
        slice.workspace_bytes = std::max<size_t>(16, kernels::decode_attention_workspace_bytes(
                                                         slice.count, c.num_q_heads, c.head_dim, slice.max_context));
        workspace_bytes += (slice.workspace_bytes + 255) / 256 * 256;
      } else if (kind == op_kind::prefill_attention) {
        std::vector<int32_t> starts, nums, plens;  // [cut sequences] each
        for (int s = m.num_decodes; s < num_seqs; ++s) {
          const batch_sequence& seq = batch.sequences[s];
          const int begin = std::max(seq.query_start, op.rows.begin);
          const int end = std::min(seq.query_start + seq.num_queries, op.rows.end);
          if (begin >= end) continue;
          if (starts.empty()) slice.first = s - m.num_decodes;
          starts.push_back(begin);
          nums.push_back(end - begin);
          plens.push_back(seq.context_len - (seq.query_start + seq.num_queries - end));
          slice.max_queries = std::max(slice.max_queries, end - begin);
        }
        slice.count = static_cast<int>(starts.size());
        slice.starts_offset = builder.add(starts);
        slice.nums_offset = builder.add(nums);
        slice.lens_offset = builder.add(plens);
      }
    }
    workspace.reserve(std::max<size_t>(16, workspace_bytes));
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
  metadata.reserve(metadata_bytes);
  std::memcpy(metadata_staging_.as<void>(), metadata_host_.data(), metadata_bytes);
  profiler_.begin(step_op::metadata_copy, stream_);
  NF_CUDA_CHECK(cudaMemcpyAsync(metadata.as<void>(), metadata_staging_.as<void>(), metadata_bytes,
                                cudaMemcpyHostToDevice, stream_));
  profiler_.end();
  const std::byte* base = metadata.as<std::byte>();
  step_metadata_base_ = base;
  step_workspace_ = workspace.as<std::byte>();
  auto i32 = [&](size_t offset) { return reinterpret_cast<const int32_t*>(base + offset); };
  m.token_ids = i32(o_tokens);
  m.positions = i32(o_positions);
  m.slots = reinterpret_cast<const int64_t*>(base + o_slots);
  m.logit_rows = i32(o_rows);
  m.decode_block_tables = i32(o_dtables);
  m.decode_context_lens = i32(o_dlens);
  m.prefill_block_tables = i32(o_ptables);
  m.generic_block_tables = i32(o_gtables);
  m.row_sequence = i32(o_rseq);
  m.row_num_keys = i32(o_rkeys);
}

void cuda_backend::enqueue(int n, int num_sampled, const stream_schedule& schedule, const step_metadata& m, bool argmax) {
  const model_config& c = config_;
  const int hidden = c.hidden_size;
  const int num_nano_ops = schedule.num_nano_ops();
  const float eps = static_cast<float>(c.rms_norm_eps);
  bf16* residual = residual_.as<bf16>();    // [n, hidden]
  bf16* projected = projected_.as<bf16>();  // [n, hidden]

  profiler_.begin(step_op::embedding, stream_);
  NF_CUDA_CHECK(kernels::embedding(m.token_ids, weights_.embed, residual, n, hidden, 0, stream_));
  profiler_.end();
  executor_->run(schedule, [&](int node, const cuda::stream_lane& lane) {
    run_nano_op(schedule.nano_op_of(node), node % num_nano_ops, schedule.layer_of(node), lane, m);
  });

  // Only the rows that are sampled go through the final norm and the LM head (a row gather is an embedding lookup).
  profiler_.begin(step_op::lm_head, stream_);
  if (num_sampled > 0) {
    kernels::gemm_runner& gemm = *executor_->main_lane().gemm;
    NF_CUDA_CHECK(kernels::embedding(m.logit_rows, residual, sampled_residual_.as<bf16>(), num_sampled, hidden, 0, stream_));
    NF_CUDA_CHECK(kernels::embedding(m.logit_rows, projected, sampled_delta_.as<bf16>(), num_sampled, hidden, 0, stream_));
    NF_CUDA_CHECK(kernels::add_rmsnorm(sampled_residual_.as<bf16>(), sampled_delta_.as<bf16>(), weights_.final_norm,
                                       sampled_normed_.as<bf16>(), num_sampled, hidden, eps, 0, stream_));
    NF_CUDA_CHECK(gemm.run(sampled_normed_.as<bf16>(), weights_.lm_head, nullptr, logits_.as<bf16>(), num_sampled,
                           c.vocab_size, hidden, 0, stream_));
  }
  profiler_.end();
  if (argmax && num_sampled > 0) {
    profiler_.begin(step_op::sampling, stream_);
    NF_CUDA_CHECK(cuda::argmax_rows(logits_.as<bf16>(), token_ids_.as<int32_t>(), num_sampled, c.vocab_size, stream_));
    profiler_.end();
  }
}

void cuda_backend::finish_step(const model_batch& batch) {
  NF_CUDA_CHECK(cudaStreamSynchronize(stream_));
  const step_rows rows = rows_of_batch(batch);
  profiler_.end_step(batch.num_tokens(), rows.num_decode, rows.num_prefill);
}

void cuda_backend::forward(const model_batch& batch, std::vector<float>& logits) {
  run(batch, false);
  const size_t count = batch.logit_rows.size() * size_t(config_.vocab_size);
  host_out_.reserve(std::max<size_t>(count * sizeof(bf16), 16));
  profiler_.begin(step_op::sampling, stream_);
  NF_CUDA_CHECK(cudaMemcpyAsync(host_out_.as<void>(), logits_.as<void>(), count * sizeof(bf16), cudaMemcpyDeviceToHost, stream_));
  profiler_.end();
  finish_step(batch);
  logits.resize(count);
  const uint16_t* bits = host_out_.as<uint16_t>();
  for (size_t i = 0; i < count; ++i) logits[i] = bf16_to_float(bits[i]);
}

void cuda_backend::forward_argmax(const model_batch& batch, std::vector<int32_t>& token_ids) {
  run(batch, true);
  const int num_sampled = static_cast<int>(batch.logit_rows.size());
  host_out_.reserve(std::max<size_t>(num_sampled * sizeof(int32_t), 16));
  profiler_.begin(step_op::sampling, stream_);
  NF_CUDA_CHECK(cudaMemcpyAsync(host_out_.as<void>(), token_ids_.as<void>(), num_sampled * sizeof(int32_t),
                                cudaMemcpyDeviceToHost, stream_));
  profiler_.end();
  finish_step(batch);
  token_ids.assign(host_out_.as<int32_t>(), host_out_.as<int32_t>() + num_sampled);
}

void cuda_backend::forward_sample(const model_batch& batch, std::span<const sampling_context> contexts,
                                  std::vector<sample_result>& results) {
  NF_CHECK(contexts.size() == batch.logit_rows.size(), "one sampling context per logit row");
  run(batch, false);
  profiler_.begin(step_op::sampling, stream_);
  sampler_.sample(logits_.as<bf16>(), config_.vocab_size, contexts, stream_, results);
  profiler_.end();
  finish_step(batch);
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
  kernels::gemm_runner& gemm = *executor_->main_lane().gemm;
  for (int i = 0; i < 3; ++i) NF_CUDA_CHECK(gemm.run(x.as<bf16>(), w.as<bf16>(), nullptr, y.as<bf16>(), m, n, k, 0, stream_));
  std::vector<float> times;
  for (int i = 0; i < 15; ++i) {
    NF_CUDA_CHECK(cudaEventRecord(start, stream_));
    NF_CUDA_CHECK(gemm.run(x.as<bf16>(), w.as<bf16>(), nullptr, y.as<bf16>(), m, n, k, 0, stream_));
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
