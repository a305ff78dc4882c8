// Paged decode attention: one query token per sequence over its whole cached context, GQA-aware.
// The context is split into chunks of tiles (16 tokens each); each warp streams the K and V tiles of one
// (sequence, KV head, chunk) through shared memory with cp.async, computes all query heads of the group on
// tensor cores, and writes a partial softmax result; a second kernel merges the chunks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace nf::kernels {

// L2 cache policy of the KV copies (bulk-copy variants). Evict-first keeps a GEMM running beside the kernel in L2
// (2-7% shorter together at 48-64 SMs in bench_overlap) but costs 3-5% when the kernel runs alone on the whole device.
enum class decode_l2_policy {
  automatic,    // evict-first when the kernel has an SM budget below the device (it is overlapped), else normal
  evict_first,
  normal,
};

struct decode_attention_args {
  const __nv_bfloat16* q = nullptr;         // [num_seqs, num_q_heads, head_dim]
  const __nv_bfloat16* kv_cache = nullptr;  // [num_blocks, 2, num_kv_heads, block_size, head_dim]
  const int32_t* block_tables = nullptr;    // [num_seqs, max_blocks_per_seq]
  const int32_t* context_lens = nullptr;    // [num_seqs], each in [0, max_context_len]
  __nv_bfloat16* out = nullptr;             // [num_seqs, num_q_heads, head_dim]
  float* workspace = nullptr;               // [decode_attention_workspace_bytes(...) / 4]
  size_t workspace_bytes = 0;
  int num_seqs = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;    // 64 or 128
  int block_size = 0;  // a multiple of 16
  int max_blocks_per_seq = 0;
  int max_context_len = 0;  // an upper bound of context_lens, known on the host
  float scale = 0.0f;       // softmax scale, usually 1 / sqrt(head_dim)
  int num_sms = 0;          // SM budget: the grid never exceeds it; <= 0: the whole device
  // Shared-memory pipeline for head_dim 128, for tuning benchmarks. 0: chosen by the SM budget (7 on at least 70% of
  // the device, 12 on 40-70%, else 5; 8 where no tensor map can be made). cp.async, warps x stages of one K and one
  // V tile:
  // 8: 14 x 2, 1: 7 x 4, 2: 4 x 6, 3: 9 x 3. Bulk tensor copies on mbarriers, warps x stages of two K and V tiles:
  // 4: 7 x 2 with 2 KiB boxes; 5: 7 x 2 with 4 KiB boxes; 6: as 5 with longer chunks; 7: 4 x 3 with 4 KiB boxes and
  // longer chunks. Shallow bulk-copy pipelines, 4 KiB boxes, at most 16 KiB x warps x stages in flight per SM, so that
  // the kernel asks the memory system for no more than its share beside a GEMM: 9: 2 x 2, 10: 3 x 2, 11: 4 x 2,
  // 12: 7 x 1. Deep bulk-copy pipelines with few warps, most of the shared memory in flight rather than held by a
  // warp's math (for small SM budgets, where bytes in flight per SM bound the rate): 13: 2 x 7, 14: 3 x 4. Other head
  // dims ignore it.
  int variant = 0;
  decode_l2_policy l2_policy = decode_l2_policy::automatic;
};

// Variants 0 .. num_decode_attention_variants - 1 exist for head_dim 128.
inline constexpr int num_decode_attention_variants = 15;

// Bytes of workspace decode_attention needs for these sizes (any SM budget).
size_t decode_attention_workspace_bytes(int num_seqs, int num_q_heads, int head_dim, int max_context_len);

cudaError_t decode_attention(const decode_attention_args& args, cudaStream_t stream);

}  // namespace nf::kernels
