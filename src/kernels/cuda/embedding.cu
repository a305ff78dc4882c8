// Embedding gather: a grid-stride loop over 16-byte pieces of the output rows.
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/embedding.h"

namespace nf::kernels {
namespace {

__global__ void embedding_kernel(const int32_t* __restrict__ token_ids, const uint4* __restrict__ table,
                                 uint4* __restrict__ out, int num_tokens, int vectors_per_row) {
  const int64_t total = static_cast<int64_t>(num_tokens) * vectors_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t token = i / vectors_per_row;
    const int64_t column = i - token * vectors_per_row;
    out[i] = table[static_cast<int64_t>(token_ids[token]) * vectors_per_row + column];
  }
}

}  // namespace

cudaError_t embedding(const int32_t* token_ids, const __nv_bfloat16* table, __nv_bfloat16* out, int num_tokens,
                      int hidden_size, int num_sms, cudaStream_t stream) {
  if (num_tokens < 0 || hidden_size <= 0 || hidden_size % 8 != 0) return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  const int vectors_per_row = hidden_size / 8;
  const int64_t total = static_cast<int64_t>(num_tokens) * vectors_per_row;
  constexpr int threads = 256;
  const int grid = detail::grid_for_budget(num_sms, 8, (total + threads - 1) / threads);
  embedding_kernel<<<grid, threads, 0, stream>>>(token_ids, reinterpret_cast<const uint4*>(table),
                                                 reinterpret_cast<uint4*>(out), num_tokens, vectors_per_row);
  return cudaGetLastError();
}

}  // namespace nf::kernels
