// The scheduler's output for one step: the only thing the backend sees of the scheduler.
//
// Entries are ordered decodes first, then prefill chunks. Positions are absolute token positions in the
// request's sequence; the KV of token j lives in block_table[j / block_size] at slot j % block_size.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/block_pool.h"
#include "sched/request.h"

namespace nf {

// Stands for a token the backend sampled in the previous step but the scheduler has not seen yet
// (asynchronous loop): the backend substitutes its own last sampled token of that request.
inline constexpr int32_t placeholder_token = -1;

struct scheduled_request {
  request_id id = 0;
  std::vector<int32_t> token_ids;  // [num_tokens] a prompt chunk, or the one token of a decode
  int32_t position = 0;            // position of token_ids[0] (= num_computed_tokens before the step)
  std::vector<block_id> block_table;  // [ceil((position + num_tokens) / block_size)] all blocks so far
  bool needs_logits = false;       // the chunk ends the known sequence: sample one token from its last row

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
};

struct step_plan {
  uint64_t step_id = 0;                      // increases by one per schedule() call, from 0
  std::vector<scheduled_request> requests;   // decodes first, then prefill chunks
  int32_t num_scheduled_tokens = 0;          // sum of token_ids sizes; <= max_num_batched_tokens
  int32_t num_decode_requests = 0;           // requests[0, num_decode_requests) are decodes
  std::vector<request_id> finished_ids;      // finished or aborted since the previous plan: drop their state
  std::vector<request_id> preempted_ids;     // preempted while forming this plan: KV taken back, they restart
                                             // later from their known tokens (drop their on-device last token)

  bool empty() const { return requests.empty(); }
  // Requests whose logits are needed, in order: update() expects one sampled token for each.
  int32_t num_logits() const {
    int32_t n = 0;
    for (const auto& r : requests) n += r.needs_logits ? 1 : 0;
    return n;
  }
};

// What update() reports per request that received tokens or finished in the step.
struct request_output {
  request_id id = 0;
  std::vector<int32_t> new_token_ids;  // [0 or 1] tokens accepted this step (a stop token is included)
  bool finished = false;
  finish_reason reason = finish_reason::none;
  int num_cached_prompt_tokens = 0;    // prompt tokens reused from the prefix cache (usage reporting)
};

}  // namespace nf
