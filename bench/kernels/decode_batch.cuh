// A decode attention batch for the benchmarks, at the Llama-3-8B shape (32 query heads, 8 KV heads, head_dim 128,
// block 16): the paged cache, block tables, context lengths, queries, output and workspace on the device, and the
// kernel arguments over them. Blocks are scattered over the cache (as after many allocations and frees) unless asked
// to be contiguous.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "bench_common.cuh"
#include "kernels/cuda/decode_attention.h"

namespace nf::bench {

struct decode_batch {
  static constexpr int num_q_heads = 32, num_kv_heads = 8, head_dim = 128, block_size = 16;
  double kv_bytes = 0.0;  // every K and V element of every context once
  size_t q_elems = 0;     // num_seqs * num_q_heads * head_dim
  std::unique_ptr<device_memory> cache;      // [total blocks + 1, 2, num_kv_heads, block_size, head_dim]
  std::unique_ptr<device_memory> tables;     // [num_seqs, max blocks per sequence]
  std::unique_ptr<device_memory> lens;       // [num_seqs]
  std::unique_ptr<device_memory> q, out;     // [num_seqs, num_q_heads, head_dim]
  std::unique_ptr<device_memory> workspace;  // [decode_attention_workspace_bytes]
  kernels::decode_attention_args args;

  decode_batch(const std::vector<int32_t>& contexts, bool scattered) {
    const int num_seqs = static_cast<int>(contexts.size());
    const int max_context = contexts.empty() ? 0 : *std::max_element(contexts.begin(), contexts.end());
    const int max_blocks = (max_context + block_size - 1) / block_size;
    int64_t total_blocks = 0;
    for (int32_t context : contexts) {
      total_blocks += (context + block_size - 1) / block_size;
      kv_bytes += double(context) * num_kv_heads * head_dim * 2 * sizeof(bf16);
    }
    const size_t block_elems = 2ull * num_kv_heads * block_size * head_dim;
    cache = std::make_unique<device_memory>((total_blocks + 1) * block_elems * sizeof(bf16));
    fill(cache->as<bf16>(), (total_blocks + 1) * block_elems, 7, 1.0f);
    std::vector<int32_t> physical(total_blocks);  // [total_blocks]: block 0 is never used
    std::iota(physical.begin(), physical.end(), 1);
    std::mt19937 rng(42);
    if (scattered) std::shuffle(physical.begin(), physical.end(), rng);
    std::vector<int32_t> table(size_t(num_seqs) * max_blocks, 0);  // [num_seqs, max_blocks]
    size_t next = 0;
    for (int i = 0; i < num_seqs; ++i)
      for (int b = 0; b < (contexts[i] + block_size - 1) / block_size; ++b) table[size_t(i) * max_blocks + b] = physical[next++];
    tables = std::make_unique<device_memory>(table.size() * sizeof(int32_t));
    NF_BENCH_CHECK(cudaMemcpy(tables->ptr, table.data(), table.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    lens = std::make_unique<device_memory>(contexts.size() * sizeof(int32_t));
    NF_BENCH_CHECK(cudaMemcpy(lens->ptr, contexts.data(), contexts.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    q_elems = size_t(num_seqs) * num_q_heads * head_dim;
    q = std::make_unique<device_memory>(q_elems * sizeof(bf16));
    out = std::make_unique<device_memory>(q_elems * sizeof(bf16));
    fill(q->as<bf16>(), q_elems, 3, 1.0f);
    const size_t ws_bytes = kernels::decode_attention_workspace_bytes(num_seqs, num_q_heads, head_dim, max_context);
    workspace = std::make_unique<device_memory>(ws_bytes);
    args.q = q->as<bf16>();
    args.kv_cache = cache->as<bf16>();
    args.block_tables = tables->as<int32_t>();
    args.context_lens = lens->as<int32_t>();
    args.out = out->as<bf16>();
    args.workspace = workspace->as<float>();
    args.workspace_bytes = ws_bytes;
    args.num_seqs = num_seqs;
    args.num_q_heads = num_q_heads;
    args.num_kv_heads = num_kv_heads;
    args.head_dim = head_dim;
    args.block_size = block_size;
    args.max_blocks_per_seq = max_blocks;
    args.max_context_len = max_context;
    args.scale = 0.08838834764831845f;  // 1 / sqrt(128)
  }
};

}  // namespace nf::bench
