// A random paged KV cache for the attention tests: each sequence's blocks are scattered over the cache in a
// random order, positions past a sequence's context (and unused blocks) hold NaN so any stray read shows.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/ref/ops.h"
#include "kernels/cuda_test_utils.h"

namespace nf::test {

struct paged_kv_fixture {
  ref::paged_kv_layout layout;
  std::vector<int> context_lens;       // [num_seqs]
  int max_blocks_per_seq = 0;
  std::vector<int32_t> block_tables;   // [num_seqs, max_blocks_per_seq]
  std::vector<float> cache;            // [num_blocks, 2, num_kv_heads, block_size, head_dim]

  paged_kv_fixture(const ref::paged_kv_layout& l, std::vector<int> lens, std::mt19937& rng)
      : layout(l), context_lens(std::move(lens)) {
    int num_blocks = 1;  // block 0 stays unused
    for (int len : context_lens) {
      const int blocks = (len + layout.block_size - 1) / layout.block_size;
      max_blocks_per_seq = std::max(max_blocks_per_seq, blocks);
      num_blocks += blocks;
    }
    max_blocks_per_seq = std::max(max_blocks_per_seq, 1);
    std::vector<int32_t> physical(num_blocks - 1);
    std::iota(physical.begin(), physical.end(), 1);
    std::shuffle(physical.begin(), physical.end(), rng);
    block_tables.assign(context_lens.size() * max_blocks_per_seq, 0);
    cache.assign(static_cast<size_t>(num_blocks) * layout.block_stride(), NAN);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    size_t next = 0;
    for (size_t s = 0; s < context_lens.size(); ++s) {
      for (int pos = 0; pos < context_lens[s]; ++pos) {
        if (pos % layout.block_size == 0) block_tables[s * max_blocks_per_seq + pos / layout.block_size] = physical[next++];
        const int block = block_tables[s * max_blocks_per_seq + pos / layout.block_size];
        for (int kv = 0; kv < 2; ++kv) {
          for (int h = 0; h < layout.num_kv_heads; ++h) {
            float* row = cache.data() + layout.offset(block, kv, h, pos % layout.block_size);
            for (int d = 0; d < layout.head_dim; ++d) row[d] = __bfloat162float(__float2bfloat16(dist(rng)));
          }
        }
      }
    }
  }

  int max_context_len() const { return *std::max_element(context_lens.begin(), context_lens.end()); }
  const int32_t* table(size_t seq) const { return block_tables.data() + seq * max_blocks_per_seq; }
};

}  // namespace nf::test
