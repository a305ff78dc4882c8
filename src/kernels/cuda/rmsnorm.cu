// RMSNorm kernels: one block per row in a persistent loop; rows of up to 4 * 256 * 8 elements are held in
// registers between the sum of squares and the scaling, longer rows are read twice.
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/rmsnorm.h"

#include <type_traits>

namespace nf::kernels {
namespace {

using detail::bf16x8;
constexpr int cached_vectors = 4;  // 16-byte vectors per thread kept in registers

// Loads one 16-byte vector of the row to normalize; with ADD, first stores residual + delta (rounded to bf16).
template <bool ADD>
__device__ __forceinline__ void load_row_vector(const bf16x8* x, bf16x8* residual, const bf16x8* delta, int64_t i,
                                                float (&values)[8]) {
  if constexpr (ADD) {
    float d[8];
    detail::unpack(residual[i], values);
    detail::unpack(delta[i], d);
#pragma unroll
    for (int e = 0; e < 8; ++e) values[e] += d[e];
    const bf16x8 rounded = detail::pack(values);
    residual[i] = rounded;
    detail::unpack(rounded, values);
  } else {
    detail::unpack(x[i], values);
  }
}

__device__ __forceinline__ bf16x8 scale_vector(const float (&values)[8], bf16x8 weight, float inv_rms) {
  float w[8], scaled[8];
  detail::unpack(weight, w);
#pragma unroll
  for (int e = 0; e < 8; ++e) scaled[e] = values[e] * inv_rms * w[e];
  return detail::pack(scaled);
}

template <int threads, bool ADD>
__global__ void __launch_bounds__(threads) rmsnorm_kernel(const bf16x8* x, bf16x8* residual,
                                                          const bf16x8* __restrict__ delta,
                                                          const bf16x8* __restrict__ weight, bf16x8* __restrict__ out,
                                                          int num_tokens, int vectors_per_row, float inv_hidden,
                                                          float eps) {
  __shared__ float scratch[32];
  for (int row = blockIdx.x; row < num_tokens; row += gridDim.x) {
    const int64_t base = static_cast<int64_t>(row) * vectors_per_row;
    float cache[cached_vectors][8];
    float sum_squares = 0.0f;
    // The first cached_vectors vectors of this thread stay in registers (compile-time indices only).
#pragma unroll
    for (int j = 0; j < cached_vectors; ++j) {
      const int v = threadIdx.x + j * threads;
      if (v < vectors_per_row) {
        load_row_vector<ADD>(x, residual, delta, base + v, cache[j]);
#pragma unroll
        for (int e = 0; e < 8; ++e) sum_squares += cache[j][e] * cache[j][e];
      }
    }
    for (int v = threadIdx.x + cached_vectors * threads; v < vectors_per_row; v += threads) {
      float values[8];
      load_row_vector<ADD>(x, residual, delta, base + v, values);
#pragma unroll
      for (int e = 0; e < 8; ++e) sum_squares += values[e] * values[e];
    }
    const float inv_rms = rsqrtf(detail::block_sum(sum_squares, scratch) * inv_hidden + eps);
#pragma unroll
    for (int j = 0; j < cached_vectors; ++j) {
      const int v = threadIdx.x + j * threads;
      if (v < vectors_per_row) out[base + v] = scale_vector(cache[j], weight[v], inv_rms);
    }
    for (int v = threadIdx.x + cached_vectors * threads; v < vectors_per_row; v += threads) {
      float values[8];
      detail::unpack(ADD ? residual[base + v] : x[base + v], values);
      out[base + v] = scale_vector(values, weight[v], inv_rms);
    }
  }
}

template <bool ADD>
cudaError_t launch(const __nv_bfloat16* x, __nv_bfloat16* residual, const __nv_bfloat16* delta,
                   const __nv_bfloat16* weight, __nv_bfloat16* out, int num_tokens, int hidden_size, float eps,
                   int num_sms, cudaStream_t stream) {
  if (num_tokens < 0 || hidden_size <= 0 || hidden_size % 8 != 0) return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  // The smallest block that keeps a row in registers, so that more rows (more bytes) are in flight per SM.
  const int vectors_per_row = hidden_size / 8;
  const auto run = [&](auto threads_constant) {
    constexpr int threads = decltype(threads_constant)::value;
    const int grid = detail::grid_for_budget(num_sms, 2048 / threads, num_tokens);
    rmsnorm_kernel<threads, ADD><<<grid, threads, 0, stream>>>(
        reinterpret_cast<const bf16x8*>(x), reinterpret_cast<bf16x8*>(residual),
        reinterpret_cast<const bf16x8*>(delta), reinterpret_cast<const bf16x8*>(weight),
        reinterpret_cast<bf16x8*>(out), num_tokens, vectors_per_row, 1.0f / hidden_size, eps);
  };
  if (vectors_per_row <= 64 * cached_vectors) {
    run(std::integral_constant<int, 64>{});
  } else if (vectors_per_row <= 128 * cached_vectors) {
    run(std::integral_constant<int, 128>{});
  } else {
    run(std::integral_constant<int, 256>{});
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t rmsnorm(const __nv_bfloat16* x, const __nv_bfloat16* weight, __nv_bfloat16* out, int num_tokens,
                    int hidden_size, float eps, int num_sms, cudaStream_t stream) {
  return launch<false>(x, nullptr, nullptr, weight, out, num_tokens, hidden_size, eps, num_sms, stream);
}

cudaError_t add_rmsnorm(__nv_bfloat16* residual, const __nv_bfloat16* delta, const __nv_bfloat16* weight,
                        __nv_bfloat16* out, int num_tokens, int hidden_size, float eps, int num_sms,
                        cudaStream_t stream) {
  return launch<true>(nullptr, residual, delta, weight, out, num_tokens, hidden_size, eps, num_sms, stream);
}

}  // namespace nf::kernels
