// The CUDA backend: the same forward pass as the CPU reference backend, in bf16 on one GPU with the kernels
// of kernels/cuda (cuBLASLt GEMMs, fused RoPE + paged KV write, paged decode and prefill attention) and a
// paged KV cache sized from the memory left after weights and activations. The layers run as a pipeline spec
// (sequential, nano-batch or overlapped) through the stream executor, each nano-op on its rows, stream and SM
// budget. Sampling (greedy and random) runs on the device.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <map>
#include <tuple>
#include <memory>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/device_sampler.h"
#include "engine/cuda/device_weights.h"
#include "engine/cuda/step_profiler.h"
#include "engine/cuda/stream_executor.h"
#include "pipeline/pipeline_spec.h"
#include "pipeline/stream_schedule.h"

namespace nf {

struct cuda_backend_options {
  int block_size = 16;
  int64_t kv_cache_tokens = 0;          // 0: every block that fits in gpu_memory_utilization
  double gpu_memory_utilization = 0.90;  // share of the device's memory the backend may use in all
  int max_num_tokens = 8192;            // batch rows the activation buffers hold from the start (they grow past it)
  bool profile_ops = false;             // CUDA events around every op; a per-op table on stderr at the end
  bool show_progress = true;            // progress bar of the weight upload when stderr is a terminal
  pipeline_spec schedule = sequential_spec(llama_op_graph());  // how each layer's operations run
  bool cuda_graphs = true;  // decode-only steps replay CUDA graphs captured per padded size (off: every launch eager)
};

class cuda_backend final : public backend {
 public:
  cuda_backend(const model_config& config, const cuda::weight_source& weights, const cuda_backend_options& options);
  ~cuda_backend() override;
  cuda_backend(const cuda_backend&) = delete;
  cuda_backend& operator=(const cuda_backend&) = delete;

  const model_config& config() const override { return config_; }
  std::string name() const override { return "cuda"; }
  int block_size() const override { return options_.block_size; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  void forward(const model_batch& batch, std::vector<float>& logits) override;
  void forward_argmax(const model_batch& batch, std::vector<int32_t>& token_ids) override;
  void forward_sample(const model_batch& batch, std::span<const sampling_context> contexts,
                      std::vector<sample_result>& results) override;
  double measure_gemm_flops(int num_tokens) override;

  size_t weight_bytes() const { return weights_.storage.bytes(); }
  size_t kv_cache_bytes() const { return kv_cache_.bytes(); }
  const pipeline_spec& schedule() const override { return options_.schedule; }
  void set_schedule(const pipeline_spec& spec) override;
  size_t num_cuda_graphs() const { return graphs_.size(); }

 private:
  struct step_metadata;     // device pointers into the step's metadata block
  struct attention_slice;   // an attention nano-op's sequences, cut to its rows
  void check_batch(const model_batch& batch) const;
  // The executor of options_.schedule: its lanes, a stream that runs only memory-bound nano-ops at high priority.
  void make_executor();
  void reserve_activations(int num_rows, int num_sampled);
  // The stream schedule of the spec for a step of these rows (cached per row counts).
  const stream_schedule& schedule_for(step_rows rows);
  // Runs every layer and the LM head; leaves bf16 logits of the logit rows in logits_ (and, with argmax, their
  // argmax in token_ids_), eagerly or by replaying the CUDA graph of its padded size.
  void run(const model_batch& batch, bool argmax);
  bool graph_eligible(const model_batch& batch, step_rows rows) const;
  void run_graph(const model_batch& batch, step_rows rows, bool argmax);
  void clear_graphs();
  // Builds the step's metadata into `metadata` (host -> device copy on the stream) and sizes `workspace` for the
  // decode attention nano-ops; fixed_context > 0 pins the decode context bound (graphs).
  void prepare(const model_batch& batch, const stream_schedule& schedule, int fixed_context,
               cuda::memory_block& metadata, cuda::memory_block& workspace, step_metadata& meta);
  // Enqueues embedding, the layers and the LM head (and argmax) for n rows, num_sampled of them sampled.
  void enqueue(int n, int num_sampled, const stream_schedule& schedule, const step_metadata& meta, bool argmax);
  void run_nano_op(const nano_op& op, int nano_op_index, int layer, const cuda::stream_lane& lane,
                   const step_metadata& meta);
  void attention(const nano_op& op, int nano_op_index, __nv_bfloat16* kv_layer, int num_sms,
                 const cuda::stream_lane& lane, const step_metadata& meta);
  // A nano-op's SM budget as a kernel argument: <= 0 means the whole device.
  int sm_budget_of(const nano_op& op) const;
  void finish_step(const model_batch& batch);

  model_config config_;
  cuda_backend_options options_;
  bool tuned_attention_ = false;  // head_dim and block size fit the tensor-core kernels
  bool tuned_activation_ = false;
  int num_sms_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::stream_executor> executor_;
  const pipeline_spec sequential_ = sequential_spec(llama_op_graph());  // for steps below the spec's row thresholds
  std::map<std::pair<int, int>, stream_schedule> schedules_;  // (decode rows, prefill rows) -> schedule
  std::vector<attention_slice> slices_;                       // [num_nano_ops] of the current step
  cuda::device_weights weights_;
  cuda::memory_block inv_freq_;         // [head_dim / 2] float
  cuda::memory_block kv_cache_;         // [num_layers, num_kv_blocks, 2, num_kv_heads, block_size, head_dim] bf16
  int num_kv_blocks_ = 0;
  // Activations, [rows, width] bf16 each; rows grow with the largest batch.
  cuda::memory_block residual_, normed_, projected_;  // [rows, hidden]
  cuda::memory_block qkv_;                            // [rows, q_size + 2 * kv_size]
  cuda::memory_block q_, attention_out_;              // [rows, num_q_heads, head_dim] (q_: rotated queries)
  cuda::memory_block gate_up_;                        // [rows, 2 * intermediate]
  cuda::memory_block activated_;                      // [rows, intermediate]
  cuda::memory_block sampled_residual_, sampled_delta_, sampled_normed_;  // [num_sampled, hidden]
  cuda::memory_block logits_;                         // [num_sampled, vocab] bf16
  cuda::memory_block token_ids_;                      // [num_sampled] int32
  cuda::memory_block decode_workspace_;               // decode_attention's split-KV partials, one slice per nano-op
  cuda::memory_block metadata_;                       // the step's metadata on the device
  cuda::memory_block graph_metadata_, graph_workspace_;  // the same two, at the fixed addresses graphs read
  const std::byte* step_metadata_base_ = nullptr;     // the metadata block of the step being enqueued
  std::byte* step_workspace_ = nullptr;               // the decode workspace of the step being enqueued
  std::map<std::tuple<int, int, bool>, cudaGraphExec_t> graphs_;  // (padded rows, context bound, argmax) -> graph
  cuda::memory_block metadata_staging_{true};         // the same, pinned on the host
  cuda::memory_block host_out_{true};                 // pinned: logits (bf16) or token ids coming back
  std::vector<std::byte> metadata_host_;              // built here, then one memcpy into the pinned staging
  cuda::step_profiler profiler_;
  cuda::device_sampler sampler_;  // sampling of non-greedy rows on the device
};

}  // namespace nf
