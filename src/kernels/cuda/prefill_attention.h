// Paged prefill attention: causal attention of each sequence's new query tokens (the last num_queries positions
// of its context) over the paged KV cache, which already holds this step's keys and values (cached prefix
// included). FlashAttention-2 style on tensor cores (mma.sync bf16 m16n8k16, or Hopper wgmma for head_dim 128),
// online softmax in fp32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace nf::kernels {

struct prefill_attention_args {
  const __nv_bfloat16* q = nullptr;         // [num_tokens, num_q_heads, head_dim]
  const __nv_bfloat16* kv_cache = nullptr;  // [num_blocks, 2, num_kv_heads, block_size, head_dim]
  const int32_t* block_tables = nullptr;    // [num_seqs, max_blocks_per_seq]
  const int32_t* query_starts = nullptr;    // [num_seqs]: first row of the sequence's queries in q and out
  const int32_t* num_queries = nullptr;     // [num_seqs], each in [0, min(max_num_queries, context_len)]
  const int32_t* context_lens = nullptr;    // [num_seqs]: cached prefix + new tokens
  __nv_bfloat16* out = nullptr;             // [num_tokens, num_q_heads, head_dim]
  int num_seqs = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // 64 or 128
  int block_size = 0;
  int max_blocks_per_seq = 0;
  int max_num_queries = 0;  // an upper bound of num_queries, known on the host
  float scale = 0.0f;
  int num_sms = 0;  // SM budget: the grid never exceeds one block (two for variants 1, 2) per budgeted SM; <= 0: all
  // Query tile and K/V pipeline: 0: mma.sync, 8 warps x 16 rows, 3 stages; 1: mma.sync, 4 warps x 16 rows, 3
  // stages; 2: mma.sync, 4 warps x 32 rows (two m-tiles per warp), 2 stages; 3: Hopper warpgroup MMA, two
  // warpgroups x 64 rows in lockstep, 128-key tiles, 2 stages; 4: warpgroup MMA, warp-specialised (a producer
  // warpgroup and two free-running consumer warpgroups), 3 stages; 5: as 4, the consumers taking turns to issue
  // their MMAs; 6: as 3, each tile's copies issued under the Q K^T MMAs; 7: as 6
  // with 3 stages; 8: as 7, each warpgroup's softmax overlapping its previous tile's P V MMAs; 9: as 8 with K/V by
  // bulk tensor copies (TMA; as 8 where the block size is not a multiple of 16); 10: as 5 with 8's pipelining, each
  // consumer's turn covering the issue of both its MMA groups (default, the fastest measured at 4k tokens). Variants 3-10
  // need head_dim 128; other head dims run variant 0.
  int variant = 10;
};

// Variants 0 .. num_prefill_attention_variants - 1 exist; tests and benchmarks run every one.
inline constexpr int num_prefill_attention_variants = 11;

cudaError_t prefill_attention(const prefill_attention_args& args, cudaStream_t stream);

}  // namespace nf::kernels
