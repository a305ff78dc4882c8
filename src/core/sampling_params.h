// What a request asks of generation: sampling knobs and stop conditions. Plain data, validated once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nf {

struct sampling_params {
  float temperature = 1.0f;   // 0 means greedy
  int top_k = 0;              // 0 or less: off
  float top_p = 1.0f;         // 1: off
  float min_p = 0.0f;         // 0: off
  float repetition_penalty = 1.0f;  // 1: off; applies to prompt and output tokens
  float presence_penalty = 0.0f;    // applies to output tokens
  float frequency_penalty = 0.0f;   // applies to output tokens
  std::optional<uint64_t> seed;     // unset: the engine draws one per request
  int max_tokens = 16;
  int min_tokens = 0;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids
  std::vector<std::string> stop;        // stop strings; the matched text is not returned
  int logprobs = -1;                    // -1: none; 0: the sampled token's; N: also the top N

  bool greedy() const { return temperature <= 0.0f; }
  // Throws nf::error naming the first field out of range.
  void validate() const;
};

}  // namespace nf
