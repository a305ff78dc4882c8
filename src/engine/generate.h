// One request, start to finish, on a backend of its own: the simplest driver of a backend, used by
// `nanoflow generate` and as the "run alone" reference for batching tests.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/sampling_params.h"
#include "engine/backend.h"
#include "engine/sampler.h"

namespace nf {

struct generation_result {
  std::vector<int32_t> token_ids;      // generated, without the prompt
  std::vector<sample_result> samples;  // per generated token, with logprobs when asked
  std::string finish_reason;           // "stop" or "length"
};

// Called after each generated token; returning true stops generation with reason "stop" (stop strings).
using token_callback = std::function<bool(int32_t token_id)>;

// Throws nf::error when the prompt is empty, has ids outside the vocabulary, or leaves no room in the context.
// `prefill_chunk` > 0 splits the prompt into chunks of that many tokens (same result, other code path).
generation_result generate_one(backend& model, std::span<const int32_t> prompt, const sampling_params& params,
                               uint64_t seed, const token_callback& on_token = {}, int prefill_chunk = 0);

// Checks a prompt against a model before any work is done; throws nf::error naming the problem.
void validate_prompt(const model_config& config, std::span<const int32_t> prompt);

}  // namespace nf
