// The CPU executor: runs a resolved pipeline's nano-ops, layer after layer, in a dependency order, each on
// its rows with the float32 reference operations. Any topological order gives the same result as the
// sequential pass; the executor is how the tests prove that of a spec.
#pragma once

#include <span>
#include <vector>

#include "engine/model_batch.h"
#include "kernels/ref/ops.h"
#include "model/weights.h"
#include "pipeline/resolved_pipeline.h"

namespace nf {

// Every buffer of the op graph but the KV cache, for one step.
struct cpu_activations {
  std::vector<float> residual;   // [num_tokens, hidden]
  std::vector<float> normed;     // [num_tokens, hidden]
  std::vector<float> qkv;        // [num_tokens, q_size + 2 * kv_size]
  std::vector<float> q;          // [num_tokens, num_q_heads, head_dim]
  std::vector<float> attention;  // [num_tokens, num_q_heads, head_dim]
  std::vector<float> projected;  // [num_tokens, hidden]
  std::vector<float> gate_up;    // [num_tokens, 2 * intermediate]
  std::vector<float> activated;  // [num_tokens, intermediate]

  cpu_activations(const model_config& config, int num_tokens);
};

class cpu_executor {
 public:
  // The model lives elsewhere; the executor only points at it for one forward pass.
  cpu_executor(const model_weights& weights, const ref::paged_kv_layout& layout,
               std::span<const float> inv_freq,  // [head_dim / 2]
               std::vector<std::vector<float>>& kv_layers);  // per layer: [num_blocks, 2, num_kv_heads, block_size, head_dim]

  // Runs every layer: the nodes of unroll(pipeline, num_layers) in `order`, which must be one of its
  // topological orders (see topological_order).
  void run_layers(const resolved_pipeline& pipeline, std::span<const int> order, const model_batch& batch,
                  cpu_activations& activations) const;
  // Runs one nano-op (its op over its rows) of one layer.
  void run_nano_op(const nano_op& op, int layer, const model_batch& batch, cpu_activations& activations) const;

 private:
  void attention(row_range rows, int layer, const model_batch& batch, cpu_activations& a) const;
  void rope_kv_append(row_range rows, int layer, const model_batch& batch, cpu_activations& a) const;

  const model_weights& weights_;
  const ref::paged_kv_layout& layout_;
  std::span<const float> inv_freq_;
  std::vector<std::vector<float>>& kv_layers_;
};

}  // namespace nf
