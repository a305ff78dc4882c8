// What the engine needs from a device: run a batch over the paged KV cache and return logits.
#pragma once

#include <string>
#include <vector>

#include "engine/model_batch.h"
#include "model/model_config.h"

namespace nf {

class backend {
 public:
  virtual ~backend() = default;
  virtual const model_config& config() const = 0;
  virtual std::string name() const = 0;
  virtual int block_size() const = 0;
  virtual int num_kv_blocks() const = 0;
  // Runs every layer for the batch and writes logits of its logit_rows: [num_sampled, vocab_size].
  virtual void forward(const model_batch& batch, std::vector<float>& logits) = 0;
  // Dense GEMM rate of this backend at the given batch shape, in FLOP/s, measured now (the compute ceiling).
  virtual double measure_gemm_flops(int num_tokens) = 0;
};

}  // namespace nf
