// Row argmax: one block per row; each thread scans a strided slice, then a warp-shuffle and shared-memory reduce.
#include "engine/cuda/argmax.h"

#include <cfloat>

namespace nf::cuda {
namespace {

constexpr int threads = 512;

__device__ void keep_better(float& value, int& index, float other_value, int other_index) {
  if (other_value > value || (other_value == value && other_index < index)) {
    value = other_value;
    index = other_index;
  }
}

__global__ void argmax_kernel(const __nv_bfloat16* __restrict__ logits, int32_t* __restrict__ token_ids, int vocab_size) {
  __shared__ float best_values[threads / 32];
  __shared__ int best_indices[threads / 32];
  const __nv_bfloat16* row = logits + static_cast<int64_t>(blockIdx.x) * vocab_size;
  float value = -FLT_MAX;
  int index = vocab_size;
  for (int i = threadIdx.x; i < vocab_size; i += threads) {
    const float x = __bfloat162float(row[i]);
    if (x > value) {  // strictly greater: the first (lowest) index of this thread's slice wins ties
      value = x;
      index = i;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2)
    keep_better(value, index, __shfl_xor_sync(0xffffffffu, value, offset), __shfl_xor_sync(0xffffffffu, index, offset));
  if (threadIdx.x % 32 == 0) {
    best_values[threadIdx.x / 32] = value;
    best_indices[threadIdx.x / 32] = index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < threads / 32; ++w) keep_better(value, index, best_values[w], best_indices[w]);
    // A row of NaNs keeps index vocab_size: report 0 like a host max_element over NaNs would.
    token_ids[blockIdx.x] = index < vocab_size ? index : 0;
  }
}

}  // namespace

cudaError_t argmax_rows(const __nv_bfloat16* logits, int32_t* token_ids, int num_rows, int vocab_size,
                        cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (vocab_size <= 0) return cudaErrorInvalidValue;
  argmax_kernel<<<num_rows, threads, 0, stream>>>(logits, token_ids, vocab_size);
  return cudaGetLastError();
}

}  // namespace nf::cuda
