// Sampling on the device for the CUDA backend: turns the host sampler's per-row contexts into the kernel's
// parameters and token lists, uploads them with one async copy from pinned staging, runs the sampling
// kernel on the bf16 logits already on the device, and brings back only token ids and logprobs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <span>
#include <vector>

#include "engine/cuda/device_memory.h"
#include "engine/sampler.h"

namespace nf::cuda {

class device_sampler {
 public:
  device_sampler() = default;
  device_sampler(const device_sampler&) = delete;
  device_sampler& operator=(const device_sampler&) = delete;

  // Samples row r of `logits` with rows[r], as sample_token(row r as float, rows[r]) would, and waits for
  // the results on `stream`. Throws nf::error for a token id outside [0, vocab) or a bad parameter.
  void sample(const __nv_bfloat16* logits,  // [rows.size(), vocab] on the device
              int vocab, std::span<const sampling_context> rows, cudaStream_t stream,
              std::vector<sample_result>& results);

 private:
  std::vector<int32_t> token_counts_;  // [vocab] output count of an id while packing a row; -1 elsewhere
  memory_block staging_{true};         // pinned: parameters and lists going up, results coming back
  memory_block device_inputs_;         // the same parameters and lists on the device
  memory_block device_outputs_;        // token ids and logprobs
  memory_block workspace_;             // the kernel's processed rows
};

}  // namespace nf::cuda
