// One generation request as the scheduler tracks it: tokens, sampling parameters, status and KV state.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/sampling_params.h"
#include "kv/kv_cache_manager.h"

namespace nf {

using request_id = uint64_t;

enum class request_status {
  waiting,    // queued, holds no KV
  running,    // admitted: holds KV blocks, is prefilling or decoding
  preempted,  // queued again after its KV was taken back; everything is recomputed on readmission
  finished,   // done (see finish_reason); holds no KV
};

enum class finish_reason {
  none,    // not finished
  stop,    // an EOS id, a stop token id, or a stop string (seen outside the scheduler)
  length,  // max_tokens reached
  abort,   // cancelled by the client or the engine
};

std::string_view to_string(request_status status);
std::string_view to_string(finish_reason reason);

struct request {
  request_id id = 0;
  std::vector<int32_t> token_ids;  // [num_prompt_tokens + num_output_tokens] prompt, then sampled tokens
  int num_prompt_tokens = 0;
  sampling_params params;
  int priority = 0;       // lower runs first (priority policy only)
  uint64_t arrival = 0;   // order of add_request, unique; the FCFS key
  request_status status = request_status::waiting;
  finish_reason reason = finish_reason::none;

  // Tokens whose KV is written or scheduled to be written (advanced when a step is scheduled).
  int num_computed_tokens = 0;
  // Sampled tokens scheduled but not yet delivered by update(): 0 in a synchronous loop between
  // steps, up to 2 when step i+1 is scheduled before step i's tokens are known. They occupy the
  // positions right after token_ids.
  int num_pending_tokens = 0;
  // Steps with a smaller step id were scheduled before this request's last preemption: their tokens
  // for it are stale and update() drops them.
  uint64_t first_valid_step = 0;
  int num_preemptions = 0;
  // Step id of the last plan that included this request (preemption picks only unscheduled victims).
  uint64_t last_scheduled_step = UINT64_MAX;
  // Tokens found in the prefix cache at the last admission.
  int num_cached_prompt_tokens = 0;

  kv_sequence kv;  // block table, block hashes

  std::span<const int32_t> prompt_token_ids() const {
    return std::span<const int32_t>(token_ids).first(static_cast<size_t>(num_prompt_tokens));
  }
  std::span<const int32_t> output_token_ids() const {
    return std::span<const int32_t>(token_ids).subspan(static_cast<size_t>(num_prompt_tokens));
  }
  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  // Known tokens plus the pending ones: the sequence length once every scheduled step is delivered.
  int num_tokens_with_pending() const { return num_tokens() + num_pending_tokens; }
  bool is_finished() const { return status == request_status::finished; }
};

}  // namespace nf
