// RoPE + paged KV append: one warp per (token, head) over the query and key heads; a query head's warp writes
// the rotated head to the packed query buffer, a key head's warp writes the rotated key and copies the matching
// value head into the cache. Angles are position * inv_freq in fp32 with the precise sincosf.
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/rope_kv.h"

namespace nf::kernels {
namespace {

constexpr int warps_per_block = 8;

__global__ void __launch_bounds__(warps_per_block * 32)
    rope_kv_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
                   const __nv_bfloat16* __restrict__ v, int64_t token_stride, __nv_bfloat16* __restrict__ q_out,
                   const int32_t* __restrict__ positions, const int64_t* __restrict__ slots,
                   const float* __restrict__ inv_freq, int num_tokens, int num_q_heads, int num_kv_heads,
                   int head_dim, int block_size, __nv_bfloat16* __restrict__ kv_cache) {
  const int lane = threadIdx.x & 31;
  const int heads = num_q_heads + num_kv_heads;
  const int64_t total = static_cast<int64_t>(num_tokens) * heads;
  const int half = head_dim / 2;
  for (int64_t item = blockIdx.x * static_cast<int64_t>(warps_per_block) + (threadIdx.x >> 5); item < total;
       item += static_cast<int64_t>(gridDim.x) * warps_per_block) {
    const int64_t token = item / heads;
    const int head = static_cast<int>(item - token * heads);
    const bool is_query = head < num_q_heads;
    const int kv_head = head - num_q_heads;
    const __nv_bfloat16* row = is_query ? q + token * token_stride + static_cast<int64_t>(head) * head_dim
                                        : k + token * token_stride + static_cast<int64_t>(kv_head) * head_dim;
    const float position = static_cast<float>(positions[token]);
    const int64_t slot = is_query ? -1 : slots[token];
    __nv_bfloat16* q_dst = is_query ? q_out + (token * num_q_heads + head) * head_dim : nullptr;
    __nv_bfloat16* k_dst = nullptr;
    __nv_bfloat16* v_dst = nullptr;
    if (slot >= 0) {
      const int64_t block = slot / block_size;
      const int64_t offset = slot - block * block_size;
      k_dst = kv_cache + block * 2 * num_kv_heads * block_size * head_dim +
              (static_cast<int64_t>(kv_head) * block_size + offset) * head_dim;
      v_dst = k_dst + static_cast<int64_t>(num_kv_heads) * block_size * head_dim;
    }
    for (int i = 2 * lane; i < half; i += 64) {
      const float2 first = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(row + i));
      const float2 second = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(row + i + half));
      float s0, c0, s1, c1;
      sincosf(position * inv_freq[i], &s0, &c0);
      sincosf(position * inv_freq[i + 1], &s1, &c1);
      const __nv_bfloat162 out_first = __floats2bfloat162_rn(first.x * c0 - second.x * s0, first.y * c1 - second.y * s1);
      const __nv_bfloat162 out_second =
          __floats2bfloat162_rn(second.x * c0 + first.x * s0, second.y * c1 + first.y * s1);
      if (q_dst) {
        *reinterpret_cast<__nv_bfloat162*>(q_dst + i) = out_first;
        *reinterpret_cast<__nv_bfloat162*>(q_dst + i + half) = out_second;
      }
      if (k_dst) {
        *reinterpret_cast<__nv_bfloat162*>(k_dst + i) = out_first;
        *reinterpret_cast<__nv_bfloat162*>(k_dst + i + half) = out_second;
      }
    }
    if (v_dst) {
      const __nv_bfloat16* v_row = v + token * token_stride + static_cast<int64_t>(kv_head) * head_dim;
      for (int i = 2 * lane; i < head_dim; i += 64)
        *reinterpret_cast<__nv_bfloat162*>(v_dst + i) = *reinterpret_cast<const __nv_bfloat162*>(v_row + i);
    }
  }
}

}  // namespace

cudaError_t rope_kv_append(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                           int64_t token_stride, __nv_bfloat16* q_out, const int32_t* positions, const int64_t* slots, const float* inv_freq, int num_tokens,
                           int num_q_heads, int num_kv_heads, int head_dim, int block_size, __nv_bfloat16* kv_cache,
                           int num_sms, cudaStream_t stream) {
  if (num_tokens < 0 || num_q_heads < 0 || num_kv_heads <= 0 || head_dim <= 0 || head_dim % 4 != 0 ||
      block_size <= 0 || token_stride % 2 != 0)
    return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  const int64_t total = static_cast<int64_t>(num_tokens) * (num_q_heads + num_kv_heads);
  const int grid = detail::grid_for_budget(num_sms, 8, (total + warps_per_block - 1) / warps_per_block);
  rope_kv_kernel<<<grid, warps_per_block * 32, 0, stream>>>(q, k, v, token_stride, q_out, positions, slots, inv_freq,
                                                            num_tokens, num_q_heads, num_kv_heads, head_dim,
                                                            block_size, kv_cache);
  return cudaGetLastError();
}

}  // namespace nf::kernels
