// Weights made up on the device for `--load-format dummy`: the same values as the host's dummy_weights
// (a counter-based hash of seed, stream and index), rounded to bf16, so the CPU and CUDA backends hold the
// same dummy model.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace nf::cuda {

// out[i] = uniform in [-std * sqrt(3), std * sqrt(3)], from (seed, stream, i).
cudaError_t fill_uniform(__nv_bfloat16* out,  // [count]
                         size_t count, uint64_t seed, uint64_t stream_id, float std, cudaStream_t stream);

cudaError_t fill_constant(__nv_bfloat16* out,  // [count]
                          size_t count, float value, cudaStream_t stream);

}  // namespace nf::cuda
