// Turns one row of logits into the next token: penalties, min_tokens, temperature, top-k, top-p, min-p,
// then greedy or a seeded draw; plus the logprobs the request asked for.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/sampling_params.h"

namespace nf {

struct token_logprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
};

struct sample_result {
  int32_t token_id = 0;
  float logprob = 0.0f;                       // of the sampled token under the model's distribution
  std::vector<token_logprob> top_logprobs;    // the `logprobs` most likely tokens, best first
};

// Everything about a request the sampler needs at one position.
struct sampling_context {
  const sampling_params* params = nullptr;
  uint64_t seed = 0;        // the request's seed (params->seed, or one drawn by the engine)
  uint32_t stream = 0;      // tells apart requests that share a seed
  std::span<const int32_t> prompt_token_ids;
  std::span<const int32_t> output_token_ids;  // generated so far; its size is the position sampled now
  std::span<const int32_t> eos_token_ids;     // suppressed, with stop_token_ids, until min_tokens are out
};

// Samples from `logits` ([vocab_size], not modified). Logprobs are those of the raw model distribution
// (log-softmax of the logits before penalties and temperature), as vLLM reports them by default.
sample_result sample_token(std::span<const float> logits, const sampling_context& context);

}  // namespace nf
