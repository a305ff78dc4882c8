// Host sampler. Order of processing follows common practice (vLLM, HF): penalties, min_tokens masking,
// temperature, then top-k, top-p and min-p over the tempered distribution, then the draw.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/philox.h"

namespace nf {
namespace {

constexpr float minus_infinity = -std::numeric_limits<float>::infinity();

void apply_penalties(std::vector<float>& logits, const sampling_context& context) {
  const sampling_params& p = *context.params;
  if (p.repetition_penalty != 1.0f) {
    // Only the tokens seen, not the whole vocabulary: a sequence is far shorter than the vocabulary.
    std::unordered_set<int32_t> seen(context.prompt_token_ids.begin(), context.prompt_token_ids.end());
    seen.insert(context.output_token_ids.begin(), context.output_token_ids.end());
    for (int32_t id : seen) logits[id] = logits[id] > 0 ? logits[id] / p.repetition_penalty : logits[id] * p.repetition_penalty;
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t id : context.output_token_ids) ++counts[id];
    for (const auto& [id, count] : counts) logits[id] -= p.presence_penalty + p.frequency_penalty * count;
  }
}

void log_softmax(std::span<const float> logits, std::vector<float>& out) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max_logit);
  const float log_sum = static_cast<float>(std::log(sum)) + max_logit;
  out.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - log_sum;
}

}  // namespace

sample_result sample_token(std::span<const float> raw_logits, const sampling_context& context) {
  NF_CHECK(context.params != nullptr && !raw_logits.empty(), "sampler needs parameters and logits");
  const sampling_params& p = *context.params;
  const int vocab = static_cast<int>(raw_logits.size());
  std::vector<float> logits(raw_logits.begin(), raw_logits.end());
  apply_penalties(logits, context);
  if (static_cast<int>(context.output_token_ids.size()) < p.min_tokens) {
    if (!p.ignore_eos)
      for (int32_t id : context.eos_token_ids) logits[id] = minus_infinity;
    for (int32_t id : p.stop_token_ids)
      if (id >= 0 && id < vocab) logits[id] = minus_infinity;
  }

  int32_t chosen = 0;
  if (p.greedy()) {
    chosen = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  } else {
    for (float& x : logits) x /= p.temperature;
    // Candidates sorted by logit, best first (ties by lower id), then cut by top-k, top-p and min-p.
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    const int keep_k = p.top_k > 0 ? std::min(p.top_k, vocab) : vocab;
    auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + keep_k, order.end(), better);
    order.resize(keep_k);
    const float max_logit = logits[order[0]];
    std::vector<double> probabilities(order.size());
    double total = 0.0;
    for (size_t i = 0; i < order.size(); ++i) total += probabilities[i] = std::exp(double(logits[order[i]]) - max_logit);
    size_t kept = order.size();
    if (p.top_p < 1.0f) {
      double cumulative = 0.0;
      for (size_t i = 0; i < order.size(); ++i) {
        cumulative += probabilities[i] / total;
        if (cumulative >= p.top_p) {
          kept = i + 1;
          break;
        }
      }
    }
    if (p.min_p > 0.0f) {
      const double threshold = p.min_p * probabilities[0];
      size_t above = 0;
      while (above < kept && probabilities[above] >= threshold) ++above;
      kept = std::max<size_t>(above, 1);
    }
    double kept_total = 0.0;
    for (size_t i = 0; i < kept; ++i) kept_total += probabilities[i];
    const uint32_t position = static_cast<uint32_t>(context.output_token_ids.size());
    const double target = philox_uniform(context.seed, context.stream, position) * kept_total;
    double cumulative = 0.0;
    chosen = order[kept - 1];
    for (size_t i = 0; i < kept; ++i) {
      cumulative += probabilities[i];
      if (target < cumulative) {
        chosen = order[i];
        break;
      }
    }
  }

  sample_result result;
  result.token_id = chosen;
  if (p.logprobs >= 0) {
    std::vector<float> logprobs;
    log_softmax(raw_logits, logprobs);
    result.logprob = logprobs[chosen];
    const int top = std::min(p.logprobs, vocab);
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top, order.end(), [&](int32_t a, int32_t b) {
      return logprobs[a] > logprobs[b] || (logprobs[a] == logprobs[b] && a < b);
    });
    for (int i = 0; i < top; ++i) result.top_logprobs.push_back({order[i], logprobs[order[i]]});
  }
  return result;
}

}  // namespace nf
