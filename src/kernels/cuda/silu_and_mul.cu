// silu(gate) * up: a grid-stride loop over 16-byte pieces of the output.
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/silu_and_mul.h"

namespace nf::kernels {
namespace {

using detail::bf16x8;

__global__ void silu_and_mul_kernel(const bf16x8* __restrict__ gate_up, bf16x8* __restrict__ out, int num_tokens,
                                    int vectors_per_row) {
  const int64_t total = static_cast<int64_t>(num_tokens) * vectors_per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t token = i / vectors_per_row;
    const int64_t column = i - token * vectors_per_row;
    const int64_t in = token * 2 * vectors_per_row + column;
    float gate[8], up[8];
    detail::unpack(gate_up[in], gate);
    detail::unpack(gate_up[in + vectors_per_row], up);
#pragma unroll
    for (int e = 0; e < 8; ++e) gate[e] = gate[e] / (1.0f + __expf(-gate[e])) * up[e];
    out[i] = detail::pack(gate);
  }
}

}  // namespace

cudaError_t silu_and_mul(const __nv_bfloat16* gate_up, __nv_bfloat16* out, int num_tokens, int intermediate_size,
                         int num_sms, cudaStream_t stream) {
  if (num_tokens < 0 || intermediate_size <= 0 || intermediate_size % 8 != 0) return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  const int vectors_per_row = intermediate_size / 8;
  const int64_t total = static_cast<int64_t>(num_tokens) * vectors_per_row;
  constexpr int threads = 256;
  const int grid = detail::grid_for_budget(num_sms, 8, (total + threads - 1) / threads);
  silu_and_mul_kernel<<<grid, threads, 0, stream>>>(reinterpret_cast<const bf16x8*>(gate_up),
                                                    reinterpret_cast<bf16x8*>(out), num_tokens, vectors_per_row);
  return cudaGetLastError();
}

}  // namespace nf::kernels
