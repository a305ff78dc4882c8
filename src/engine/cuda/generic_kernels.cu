// Plain kernels for odd shapes. Attention: one block per (row, query head); keys in tiles of blockDim, one key
// per thread for the scores, online softmax across tiles, each thread owning output dims tid, tid + blockDim.
#include "engine/cuda/generic_kernels.h"

#include <algorithm>
#include <cfloat>

namespace nf::cuda {
namespace {

constexpr int attention_threads = 128;
constexpr int max_dims_per_thread = 4;  // head_dim <= 512

__device__ float block_reduce(float value, bool is_max, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = is_max ? fmaxf(value, other) : value + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  float total = scratch[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) total = is_max ? fmaxf(total, scratch[w]) : total + scratch[w];
  return total;
}

__global__ void generic_attention_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ kv_cache,
                                         const int32_t* __restrict__ block_tables,
                                         const int32_t* __restrict__ row_sequence,
                                         const int32_t* __restrict__ row_num_keys, __nv_bfloat16* __restrict__ out,
                                         int num_q_heads, int num_kv_heads, int head_dim, int block_size,
                                         int max_blocks_per_seq, float scale) {
  extern __shared__ float shared[];
  float* q_row = shared;                       // [head_dim]
  float* probabilities = shared + head_dim;    // [attention_threads]
  __shared__ float scratch[attention_threads / 32];
  const int row = blockIdx.x, head = blockIdx.y, tid = threadIdx.x;
  const int kv_head = head / (num_q_heads / num_kv_heads);
  const int32_t* table = block_tables + static_cast<int64_t>(row_sequence[row]) * max_blocks_per_seq;
  const int num_keys = row_num_keys[row];
  const int64_t head_stride = static_cast<int64_t>(block_size) * head_dim;
  for (int d = tid; d < head_dim; d += blockDim.x)
    q_row[d] = __bfloat162float(q[(static_cast<int64_t>(row) * num_q_heads + head) * head_dim + d]);
  __syncthreads();
  float running_max = -FLT_MAX, running_sum = 0.0f;
  float acc[max_dims_per_thread] = {};
  for (int tile = 0; tile < num_keys; tile += blockDim.x) {
    const int key = tile + tid;
    float score = -FLT_MAX;
    if (key < num_keys) {
      const int64_t block = table[key / block_size];
      const __nv_bfloat16* k = kv_cache + ((block * 2) * num_kv_heads + kv_head) * head_stride +
                               static_cast<int64_t>(key % block_size) * head_dim;
      float dot = 0.0f;
      for (int d = 0; d < head_dim; ++d) dot += q_row[d] * __bfloat162float(k[d]);
      score = dot * scale;
    }
    const float new_max = fmaxf(running_max, block_reduce(score, true, scratch));
    const float p = key < num_keys ? __expf(score - new_max) : 0.0f;
    probabilities[tid] = p;
    const float tile_sum = block_reduce(p, false, scratch);
    const float correction = __expf(running_max - new_max);
    running_sum = running_sum * correction + tile_sum;
    running_max = new_max;
    const int tile_keys = min(static_cast<int>(blockDim.x), num_keys - tile);
    for (int i = 0; i * static_cast<int>(blockDim.x) + tid < head_dim; ++i) {
      const int d = i * blockDim.x + tid;
      float sum = acc[i] * correction;
      for (int j = 0; j < tile_keys; ++j) {
        const int key_j = tile + j;
        const int64_t block = table[key_j / block_size];
        const __nv_bfloat16* v = kv_cache + ((block * 2 + 1) * num_kv_heads + kv_head) * head_stride +
                                 static_cast<int64_t>(key_j % block_size) * head_dim;
        sum += probabilities[j] * __bfloat162float(v[d]);
      }
      acc[i] = sum;
    }
    __syncthreads();
  }
  for (int i = 0; i * static_cast<int>(blockDim.x) + tid < head_dim; ++i) {
    const int d = i * blockDim.x + tid;
    out[(static_cast<int64_t>(row) * num_q_heads + head) * head_dim + d] = __float2bfloat16(acc[i] / running_sum);
  }
}

__global__ void generic_silu_kernel(const __nv_bfloat16* __restrict__ gate_up, __nv_bfloat16* __restrict__ out,
                                    int num_tokens, int intermediate_size) {
  const int64_t total = static_cast<int64_t>(num_tokens) * intermediate_size;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t token = i / intermediate_size, column = i % intermediate_size;
    const __nv_bfloat16* row = gate_up + token * 2 * intermediate_size;
    const float gate = __bfloat162float(row[column]), up = __bfloat162float(row[intermediate_size + column]);
    out[i] = __float2bfloat16(gate / (1.0f + __expf(-gate)) * up);
  }
}

}  // namespace

cudaError_t generic_paged_attention(const __nv_bfloat16* q, const __nv_bfloat16* kv_cache, const int32_t* block_tables,
                                    const int32_t* row_sequence, const int32_t* row_num_keys, __nv_bfloat16* out,
                                    int num_tokens, int num_q_heads, int num_kv_heads, int head_dim, int block_size,
                                    int max_blocks_per_seq, float scale, cudaStream_t stream) {
  if (head_dim <= 0 || head_dim > attention_threads * max_dims_per_thread || num_kv_heads <= 0 ||
      num_q_heads % num_kv_heads != 0)
    return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  const dim3 grid(num_tokens, num_q_heads);
  const size_t shared_bytes = (head_dim + attention_threads) * sizeof(float);
  generic_attention_kernel<<<grid, attention_threads, shared_bytes, stream>>>(
      q, kv_cache, block_tables, row_sequence, row_num_keys, out, num_q_heads, num_kv_heads, head_dim, block_size,
      max_blocks_per_seq, scale);
  return cudaGetLastError();
}

cudaError_t generic_silu_and_mul(const __nv_bfloat16* gate_up, __nv_bfloat16* out, int num_tokens,
                                 int intermediate_size, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  const int64_t total = static_cast<int64_t>(num_tokens) * intermediate_size;
  const int grid = static_cast<int>(std::min<int64_t>((total + 255) / 256, 4096));
  generic_silu_kernel<<<grid, 256, 0, stream>>>(gate_up, out, num_tokens, intermediate_size);
  return cudaGetLastError();
}

}  // namespace nf::cuda
