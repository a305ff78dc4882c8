// The CPU reference backend: every layer in float32 with the reference operations, on a paged KV cache
// of the same layout the GPU uses. Clear rather than fast; the ground truth for the CUDA backend.
#pragma once

#include <memory>
#include <vector>

#include "engine/backend.h"
#include "kernels/ref/ops.h"
#include "model/weights.h"

namespace nf {

class cpu_backend final : public backend {
 public:
  cpu_backend(model_weights weights, int num_kv_blocks, int block_size);

  const model_config& config() const override { return weights_.config; }
  std::string name() const override { return "cpu"; }
  int block_size() const override { return layout_.block_size; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  void forward(const model_batch& batch, std::vector<float>& logits) override;
  double measure_gemm_flops(int num_tokens) override;

 private:
  void check_batch(const model_batch& batch) const;

  model_weights weights_;
  ref::paged_kv_layout layout_;
  int num_kv_blocks_;
  std::vector<float> inv_freq_;                 // [head_dim / 2]
  std::vector<std::vector<float>> kv_layers_;   // per layer: [num_blocks, 2, num_kv_heads, block_size, head_dim]
};

}  // namespace nf
