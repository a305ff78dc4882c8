// The batch a backend runs in one step: flat token rows of every scheduled sequence, their KV slots,
// each sequence's page table, and which rows need logits. Built by the planner from the scheduler's plan.
#pragma once

#include <cstdint>
#include <vector>

namespace nf {

struct batch_sequence {
  int query_start = 0;   // first row of this sequence in the batch
  int num_queries = 0;   // rows this step (a prompt chunk, or 1 for decode)
  int context_len = 0;   // tokens in the KV cache after this step (cached prefix + num_queries)
  std::vector<int32_t> block_table;  // [ceil(context_len / block_size)] physical block ids
};

struct model_batch {
  std::vector<int32_t> token_ids;  // [num_tokens]
  std::vector<int32_t> positions;  // [num_tokens]
  std::vector<int64_t> slots;      // [num_tokens] physical block * block_size + offset in block
  std::vector<batch_sequence> sequences;
  std::vector<int32_t> logit_rows;  // [num_sampled] rows whose logits the step returns

  int num_tokens() const { return static_cast<int>(token_ids.size()); }
};

}  // namespace nf
