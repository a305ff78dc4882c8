// Rotary embedding (half-split "rotate_half" convention) of the step's queries and keys, fused with writing
// the rotated keys and the values into the paged KV cache.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace nf::kernels {

// The rotated q goes to q_out (packed rows); the rotated k and v are written to the cache at
// slots[t] = block * block_size + offset (a negative slot skips the cache write); q, k and v are only read.
// Rows of q, k and v are `token_stride` elements apart, so one fused qkv buffer
// [num_tokens, (num_q_heads + 2 * num_kv_heads) * head_dim] can be passed as three pointers into it.
// inv_freq holds the inverse frequencies (llama3 or other scaling already applied). head_dim must be a
// multiple of 4. num_sms <= 0: the whole device.
cudaError_t rope_kv_append(const __nv_bfloat16* q,  // [num_tokens, num_q_heads, head_dim] (row stride token_stride)
                           const __nv_bfloat16* k,  // [num_tokens, num_kv_heads, head_dim] (row stride token_stride)
                           const __nv_bfloat16* v,  // [num_tokens, num_kv_heads, head_dim] (row stride token_stride)
                           int64_t token_stride,
                           __nv_bfloat16* q_out,      // [num_tokens, num_q_heads, head_dim]
                           const int32_t* positions,  // [num_tokens]
                           const int64_t* slots,      // [num_tokens]
                           const float* inv_freq,     // [head_dim / 2]
                           int num_tokens, int num_q_heads, int num_kv_heads, int head_dim, int block_size,
                           __nv_bfloat16* kv_cache,  // [num_blocks, 2, num_kv_heads, block_size, head_dim]
                           int num_sms, cudaStream_t stream);

}  // namespace nf::kernels
