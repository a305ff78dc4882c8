// Sampling test cases shared by the device sampler's GPU test and its host emulation test: random
// bf16-valued logits (flat, peaked, and with exact ties at the top), every sampling knob alone and all
// together, and the rule that judges a token that differs from the host sampler's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/sampling_params.h"
#include "engine/sampler.h"

namespace nf::test {

struct sampling_case {
  std::string name;  // the parameter combination
  sampling_params params;
  uint64_t seed = 0;
  uint32_t stream = 0;
  std::vector<int32_t> prompt, outputs, eos;
  std::vector<float> logits;  // [vocab], every value exactly a bf16

  sampling_context context() const { return {&params, seed, stream, prompt, outputs, eos}; }
};

// Round to nearest even bf16 (finite inputs), without CUDA headers.
inline float round_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&value, &bits, sizeof(bits));
  return value;
}

struct named_params {
  std::string name;
  sampling_params params;
};

inline std::vector<named_params> sampling_combinations(int vocab) {
  std::vector<named_params> combos;
  auto add = [&](std::string name, auto&& set) {
    sampling_params p;
    set(p);
    combos.push_back({std::move(name), p});
  };
  add("greedy", [](sampling_params& p) { p.temperature = 0.0f; });
  add("greedy_penalties_min_tokens", [](sampling_params& p) {
    p.temperature = 0.0f;
    p.repetition_penalty = 1.5f;
    p.frequency_penalty = 0.5f;
    p.min_tokens = 1000;
  });
  add("plain", [](sampling_params&) {});
  add("temperature", [](sampling_params& p) { p.temperature = 0.6f; });
  add("hot", [](sampling_params& p) { p.temperature = 1.7f; });
  add("top_k_1", [](sampling_params& p) { p.top_k = 1; });
  add("top_k_40", [](sampling_params& p) { p.top_k = 40; });
  add("top_k_700", [](sampling_params& p) { p.top_k = 700; });
  add("top_k_past_vocab", [vocab](sampling_params& p) { p.top_k = vocab + 3; });
  add("top_p_0.9", [](sampling_params& p) { p.top_p = 0.9f; });
  add("top_p_0.3", [](sampling_params& p) { p.top_p = 0.3f; });
  add("min_p_0.1", [](sampling_params& p) { p.min_p = 0.1f; });
  add("min_p_0.01", [](sampling_params& p) { p.min_p = 0.01f; });
  add("repetition", [](sampling_params& p) { p.repetition_penalty = 1.3f; });
  add("repetition_below_1", [](sampling_params& p) { p.repetition_penalty = 0.8f; });
  add("presence", [](sampling_params& p) { p.presence_penalty = 1.5f; });
  add("frequency", [](sampling_params& p) { p.frequency_penalty = -0.7f; });
  add("min_tokens", [](sampling_params& p) {
    p.min_tokens = 1000;
    p.stop_token_ids = {3, 17, -5, 1 << 30};
  });
  add("min_tokens_ignore_eos", [](sampling_params& p) {
    p.min_tokens = 1000;
    p.ignore_eos = true;
    p.stop_token_ids = {4};
  });
  add("logprobs_0", [](sampling_params& p) { p.logprobs = 0; });
  add("logprobs_20", [](sampling_params& p) {
    p.logprobs = 20;
    p.temperature = 0.0f;
  });
  add("all_together", [](sampling_params& p) {
    p.temperature = 0.8f;
    p.top_k = 300;
    p.top_p = 0.92f;
    p.min_p = 0.02f;
    p.repetition_penalty = 1.2f;
    p.presence_penalty = 0.4f;
    p.frequency_penalty = 0.3f;
    p.min_tokens = 1000;
    p.stop_token_ids = {5};
    p.logprobs = 7;
  });
  add("all_but_top_k", [](sampling_params& p) {
    p.temperature = 1.1f;
    p.top_p = 0.97f;
    p.min_p = 0.001f;
    p.repetition_penalty = 1.1f;
    p.frequency_penalty = 0.2f;
    p.logprobs = 20;
  });
  return combos;
}

// `num_rows` cases of one combination: logits of three shapes, with prompt and output ids that repeat.
inline std::vector<sampling_case> make_sampling_cases(const named_params& combo, int vocab, int num_rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int32_t> any_token(0, vocab - 1);
  std::vector<sampling_case> cases(num_rows);
  for (int r = 0; r < num_rows; ++r) {
    sampling_case& c = cases[r];
    c.name = combo.name;
    c.params = combo.params;
    c.seed = (uint64_t{rng()} << 32) | rng();
    c.stream = static_cast<uint32_t>(r % 3);
    c.logits.resize(vocab);
    const int shape = r % 3;
    for (float& x : c.logits) x = shape == 0 ? 3.0f * normal(rng) : normal(rng);
    if (shape == 1) {  // peaked: a handful of likely tokens
      for (int j = 0; j < 8; ++j) c.logits[any_token(rng)] = 6.0f + 2.0f * normal(rng);
    } else if (shape == 2) {  // exact ties at the top, spread over low and high ids
      const float top = 9.0f;
      for (int j = 0; j < 12; ++j) c.logits[any_token(rng)] = top;
    }
    for (float& x : c.logits) x = round_to_bf16(x);
    const int num_prompt = 1 + r % 50, num_outputs = r % 30;
    for (int j = 0; j < num_prompt; ++j) c.prompt.push_back(any_token(rng));
    for (int j = 0; j < num_outputs; ++j)  // likely tokens and repeats, so penalties change the outcome
      c.outputs.push_back(j % 3 == 0 && !c.outputs.empty() ? c.outputs.back() : any_token(rng));
    if (num_outputs > 0) c.outputs.push_back(static_cast<int32_t>(std::max_element(c.logits.begin(), c.logits.end()) - c.logits.begin()));
    c.eos = {std::min(2, vocab - 1), std::min(vocab - 1, 1000)};
    c.eos.push_back(static_cast<int32_t>(std::max_element(c.logits.begin(), c.logits.end()) - c.logits.begin()));
  }
  return cases;
}

// The logits the host sampler draws from (penalties, masking, temperature), to judge a differing token.
inline std::vector<float> processed_logits(const sampling_case& c) {
  const sampling_params& p = c.params;
  const int vocab = static_cast<int>(c.logits.size());
  std::vector<float> logits = c.logits;
  if (p.repetition_penalty != 1.0f) {
    std::vector<int32_t> seen = c.prompt;
    seen.insert(seen.end(), c.outputs.begin(), c.outputs.end());
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t id : seen) logits[id] = logits[id] > 0 ? logits[id] / p.repetition_penalty : logits[id] * p.repetition_penalty;
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::vector<int32_t> out = c.outputs;
    std::sort(out.begin(), out.end());
    for (size_t i = 0; i < out.size();) {
      size_t j = i;
      while (j < out.size() && out[j] == out[i]) ++j;
      logits[out[i]] -= p.presence_penalty + p.frequency_penalty * static_cast<int>(j - i);
      i = j;
    }
  }
  if (static_cast<int>(c.outputs.size()) < p.min_tokens) {
    if (!p.ignore_eos)
      for (int32_t id : c.eos) logits[id] = -INFINITY;
    for (int32_t id : p.stop_token_ids)
      if (id >= 0 && id < vocab) logits[id] = -INFINITY;
  }
  if (!p.greedy())
    for (float& x : logits) x /= p.temperature;
  return logits;
}

// A token that differs from the host's is a float-boundary case only when both tokens are about equally
// likely under the processed distribution (1e-6 relative).
inline bool equally_likely(const sampling_case& c, int32_t a, int32_t b) {
  if (a < 0 || b < 0 || a >= static_cast<int>(c.logits.size()) || b >= static_cast<int>(c.logits.size())) return false;
  const std::vector<float> logits = processed_logits(c);
  const double pa = std::exp(static_cast<double>(logits[a])), pb = std::exp(static_cast<double>(logits[b]));
  return std::abs(pa - pb) <= 1e-6 * std::max(pa, pb);
}

}  // namespace nf::test
