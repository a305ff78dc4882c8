// The CPU reference backend: every layer in float32 with the reference operations, on a paged KV cache
// of the same layout the GPU uses, run as a pipeline spec by the CPU executor (the sequential spec by
// default). Clear rather than fast; the ground truth for the CUDA backend.
#pragma once

#include <memory>
#include <vector>

#include "engine/backend.h"
#include "kernels/ref/ops.h"
#include "model/weights.h"
#include "pipeline/pipeline_spec.h"

namespace nf {

class cpu_backend final : public backend {
 public:
  // Throws nf::error when the spec is not valid for the model's op graph. order_seed 0 runs the nano-ops
  // in the executor's fixed order; another seed picks a random dependency order every step (for tests).
  cpu_backend(model_weights weights, int num_kv_blocks, int block_size,
              pipeline_spec spec = sequential_spec(llama_op_graph()), uint64_t order_seed = 0);

  const model_config& config() const override { return weights_.config; }
  std::string name() const override { return "cpu"; }
  int block_size() const override { return layout_.block_size; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  void forward(const model_batch& batch, std::vector<float>& logits) override;
  void forward_sample(const model_batch& batch, std::span<const sampling_context> contexts,
                      std::vector<sample_result>& results) override;
  double measure_gemm_flops(int num_tokens) override;
  const pipeline_spec& schedule() const override { return spec_; }
  void set_schedule(const pipeline_spec& spec) override;

 private:
  void check_batch(const model_batch& batch) const;

  model_weights weights_;
  ref::paged_kv_layout layout_;
  int num_kv_blocks_;
  std::vector<float> inv_freq_;                 // [head_dim / 2]
  std::vector<float> sample_logits_;            // [num_sampled, vocab]: forward_sample's, kept between steps
  std::vector<std::vector<float>> kv_layers_;   // per layer: [num_blocks, 2, num_kv_heads, block_size, head_dim]
  pipeline_spec spec_;
  const pipeline_spec sequential_ = sequential_spec(llama_op_graph());  // for steps below spec_'s row thresholds
  uint64_t order_seed_;
  uint64_t num_steps_ = 0;
};

}  // namespace nf
