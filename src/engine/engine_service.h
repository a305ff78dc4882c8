// The engine as a service for front ends (the HTTP server, offline drivers): submit token-level requests,
// receive per-step deltas through a callback, abort. Text (tokenizing, detokenizing, stop strings) is the
// front end's business; the engine works in token ids.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/sampling_params.h"
#include "engine/sampler.h"
#include "model/model_config.h"

namespace nf {

struct completion_request {
  std::vector<int32_t> prompt_token_ids;
  sampling_params params;
  int priority = 0;  // lower runs first when the engine is configured for priorities
  uint32_t sampling_stream = 0;  // tells apart requests that share a seed (the choices of n > 1)
};

// What one step produced for one request.
struct completion_delta {
  uint64_t request_id = 0;
  std::vector<int32_t> token_ids;      // new tokens, usually one
  std::vector<sample_result> samples;  // one per token, with logprobs when asked
  bool finished = false;
  std::string finish_reason;           // when finished: "stop", "length" or "abort"
  int num_prompt_tokens = 0;
  int num_cached_prompt_tokens = 0;    // prompt tokens served by the prefix cache
};

// Called on the engine's thread; must return quickly and must not call back into the engine.
using delta_callback = std::function<void(const completion_delta&)>;

struct engine_stats {
  int num_running = 0;
  int num_waiting = 0;
  int num_kv_blocks = 0;
  int num_free_kv_blocks = 0;
  int block_size = 0;
  double prefix_cache_hit_rate = 0.0;  // hit tokens / queried tokens since start
  int64_t num_preemptions = 0;
  int64_t num_prompt_tokens = 0;       // processed since start
  int64_t num_generation_tokens = 0;   // generated since start
  int64_t num_steps = 0;
};

class engine_service {
 public:
  virtual ~engine_service() = default;
  virtual const model_config& config() const = 0;
  // Queues a request and returns its id. Throws nf::error, changing nothing, when the request is invalid
  // (empty prompt, ids outside the vocabulary, prompt + max_tokens past the context, bad sampling parameters).
  virtual uint64_t submit(completion_request request, delta_callback on_delta) = 0;
  // Cancels a request wherever it is; its KV blocks are freed within one step. The callback sees one last
  // delta with finish_reason "abort" unless the request had already finished. Unknown ids are ignored.
  virtual void abort(uint64_t request_id) = 0;
  virtual engine_stats stats() const = 0;
};

}  // namespace nf
