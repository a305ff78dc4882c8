// Plain CUDA kernels for shapes the tuned kernels in kernels/cuda do not take: paged attention for any head_dim
// or block size, and SwiGLU for any intermediate size. Correct and simple, not fast; the tiny test models use them.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace nf::cuda {

// Causal paged attention, one query row at a time: row t attends to keys 0 .. num_keys[t]-1 of its sequence.
cudaError_t generic_paged_attention(const __nv_bfloat16* q,         // [num_tokens, num_q_heads, head_dim]
                                    const __nv_bfloat16* kv_cache,  // [num_blocks, 2, num_kv_heads, block_size, head_dim]
                                    const int32_t* block_tables,    // [num_seqs, max_blocks_per_seq]
                                    const int32_t* row_sequence,    // [num_tokens]: the sequence of each row
                                    const int32_t* row_num_keys,    // [num_tokens]: keys visible to each row
                                    __nv_bfloat16* out,             // [num_tokens, num_q_heads, head_dim]
                                    int num_tokens, int num_q_heads, int num_kv_heads, int head_dim, int block_size,
                                    int max_blocks_per_seq, float scale, cudaStream_t stream);

// out = silu(gate) * up for rows [gate | up], any intermediate size.
cudaError_t generic_silu_and_mul(const __nv_bfloat16* gate_up,  // [num_tokens, 2 * intermediate_size]
                                 __nv_bfloat16* out,            // [num_tokens, intermediate_size]
                                 int num_tokens, int intermediate_size, cudaStream_t stream);

}  // namespace nf::cuda
