// The device sampler's per-row algorithm run on the host: the kernel's steps one after another (the same
// float operations, the same candidate keys and the same radix bucket scans from sampling_radix.h, with
// block-wide passes as plain loops), checked against the host sampler. Runs without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/philox.h"
#include "engine/sampler.h"
#include "kernels/cuda/sampling_radix.h"
#include "kernels/sampling_cases.h"

namespace nf {
namespace {

using namespace kernels::sampling_radix;

constexpr int max_top = 20;

// A count select: the bound above which exactly `count` keys lie.
uint64_t count_select(const std::vector<uint64_t>& keys, uint32_t count, int num_key_bits) {
  radix_descent d = start_count_select(num_key_bits, count);
  while (!d.done) {
    std::array<uint32_t, radix_buckets> counts{};
    for (uint64_t key : keys)
      if (in_prefix(d, key)) ++counts[bucket_of(d, key)];
    scan_count(d, counts.data());
  }
  return d.result;
}

// A weighted select over keys[i] with probabilities[i] (< 0: not a candidate).
uint64_t weighted_select(const std::vector<uint64_t>& keys, const std::vector<double>& probabilities, double fraction,
                         bool strict, int num_key_bits) {
  radix_descent d = start_weighted_select(num_key_bits, fraction, strict);
  while (!d.done) {
    std::array<uint32_t, radix_buckets> counts{};
    std::array<double, radix_buckets> sums{};
    for (size_t i = 0; i < keys.size(); ++i) {
      if (probabilities[i] < 0.0 || !in_prefix(d, keys[i])) continue;
      ++counts[bucket_of(d, keys[i])];
      sums[bucket_of(d, keys[i])] += probabilities[i];
    }
    scan_weighted(d, counts.data(), sums.data());
  }
  if (!d.find) return d.result;
  uint64_t best = 0;
  for (size_t i = 0; i < keys.size(); ++i)
    if (probabilities[i] >= 0.0 && in_prefix(d, keys[i])) best = std::max(best, keys[i]);
  return best;
}

sample_result emulate_row(const test::sampling_case& c) {
  const sampling_params& p = c.params;
  const int vocab = static_cast<int>(c.logits.size());
  const int id_bits = id_bits_for(vocab);
  const int num_key_bits = 32 + id_bits;
  std::vector<float> row = c.logits;  // [vocab]

  // Penalty entries as the device sampler packs them: distinct ids with their output counts.
  const bool repetition = p.repetition_penalty != 1.0f;
  const bool additive = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  std::map<int32_t, int32_t> entries;
  if (repetition)
    for (int32_t id : c.prompt) entries.emplace(id, 0);
  if (repetition || additive)
    for (int32_t id : c.outputs) ++entries[id];
  for (const auto& [id, count] : entries) {
    float x = row[id];
    if (repetition) x = x > 0.0f ? x / p.repetition_penalty : x * p.repetition_penalty;
    if (additive && count > 0) x = x - (p.presence_penalty + p.frequency_penalty * static_cast<float>(count));
    row[id] = x;
  }
  if (static_cast<int>(c.outputs.size()) < p.min_tokens) {
    if (!p.ignore_eos)
      for (int32_t id : c.eos) row[id] = -INFINITY;
    for (int32_t id : p.stop_token_ids)
      if (id >= 0 && id < vocab) row[id] = -INFINITY;
  }

  const bool greedy = !(p.temperature > 0.0f);
  std::vector<uint64_t> keys(vocab);
  uint64_t best = 0;
  for (int i = 0; i < vocab; ++i) {
    if (!greedy) row[i] = row[i] / p.temperature;
    keys[i] = candidate_key(row[i], i, id_bits);
    best = std::max(best, keys[i]);
  }
  int32_t chosen = key_token(best, id_bits);
  if (!greedy) {
    const float max_logit = row[chosen];
    uint64_t lower_key = 0;
    if (p.top_k > 0 && p.top_k < vocab) lower_key = count_select(keys, static_cast<uint32_t>(p.top_k), num_key_bits);
    auto probabilities_for = [&](double min_probability) {
      std::vector<double> probabilities(vocab, -1.0);
      for (int i = 0; i < vocab; ++i) {
        if (keys[i] < lower_key) continue;
        const double probability = std::exp(static_cast<double>(row[i]) - static_cast<double>(max_logit));
        if (probability >= min_probability) probabilities[i] = probability;
      }
      return probabilities;
    };
    if (p.top_p < 1.0f) lower_key = std::max(lower_key, weighted_select(keys, probabilities_for(0.0), p.top_p, false, num_key_bits));
    const double min_probability = p.min_p > 0.0f ? static_cast<double>(p.min_p) : 0.0;
    const double uniform = philox_uniform(c.seed, c.stream, static_cast<uint32_t>(c.outputs.size()));
    chosen = key_token(weighted_select(keys, probabilities_for(min_probability), uniform, true, num_key_bits), id_bits);
  }

  sample_result result;
  result.token_id = chosen;
  if (p.logprobs >= 0) {
    const float max_raw = *std::max_element(c.logits.begin(), c.logits.end());
    double sum = 0.0;
    for (float x : c.logits) sum += std::exp(static_cast<double>(x) - static_cast<double>(max_raw));
    const float log_sum = static_cast<float>(std::log(sum)) + max_raw;
    result.logprob = c.logits[chosen] - log_sum;
    const int num_top = std::min(p.logprobs, vocab);
    if (num_top > 0) {
      std::vector<uint64_t> logprob_keys(vocab);
      for (int i = 0; i < vocab; ++i) logprob_keys[i] = candidate_key(c.logits[i] - log_sum, i, id_bits);
      const uint64_t bound = num_top < vocab ? count_select(logprob_keys, static_cast<uint32_t>(num_top), num_key_bits) : 0;
      std::vector<uint64_t> top;
      for (uint64_t key : logprob_keys)
        if (key >= bound) top.push_back(key);
      EXPECT_EQ(static_cast<int>(top.size()), num_top);
      std::sort(top.rbegin(), top.rend());
      for (int j = 0; j < std::min<int>(num_top, max_top); ++j) {
        const int32_t id = key_token(top[j], id_bits);
        result.top_logprobs.push_back({id, c.logits[id] - log_sum});
      }
    }
  }
  return result;
}

TEST(sampling_radix, keys_order_like_the_host) {
  const int id_bits = id_bits_for(1000);
  EXPECT_EQ(id_bits, 10);
  EXPECT_GT(candidate_key(1.0f, 5, id_bits), candidate_key(0.5f, 1, id_bits));
  EXPECT_GT(candidate_key(1.0f, 5, id_bits), candidate_key(1.0f, 6, id_bits));  // ties: lower id first
  EXPECT_EQ(candidate_key(-0.0f, 7, id_bits), candidate_key(0.0f, 7, id_bits));
  EXPECT_GT(candidate_key(-1e30f, 999, id_bits), candidate_key(-INFINITY, 0, id_bits));
  EXPECT_GT(candidate_key(-INFINITY, 999, id_bits), uint64_t{0});
  EXPECT_EQ(key_token(candidate_key(-3.5f, 999, id_bits), id_bits), 999);
  EXPECT_EQ(id_bits_for(128256), 17);
  EXPECT_EQ(id_bits_for(1), 1);
}

TEST(sampling_radix, count_select_takes_exactly_k_with_ties) {
  std::vector<uint64_t> keys;
  const int id_bits = id_bits_for(600);
  for (int i = 0; i < 600; ++i) keys.push_back(candidate_key(static_cast<float>(i % 7), i, id_bits));
  for (uint32_t k : {1u, 2u, 85u, 86u, 87u, 599u, 600u}) {
    const uint64_t bound = count_select(keys, k, 32 + id_bits);
    EXPECT_EQ(std::count_if(keys.begin(), keys.end(), [&](uint64_t key) { return key >= bound; }), k) << k;
  }
}

class sampling_emulation : public ::testing::TestWithParam<int> {};

TEST_P(sampling_emulation, matches_host_sampler) {
  const int vocab = GetParam();
  const int num_rows = vocab > 100000 ? 4 : vocab > 10000 ? 12 : 24;
  int num_rows_checked = 0, num_boundary = 0;
  for (const auto& combo : test::sampling_combinations(vocab)) {
    for (const auto& c : test::make_sampling_cases(combo, vocab, num_rows, static_cast<uint32_t>(vocab + combo.name.size()))) {
      const sample_result host = sample_token(c.logits, c.context());
      const sample_result emulated = emulate_row(c);
      ++num_rows_checked;
      if (emulated.token_id != host.token_id) {
        ++num_boundary;
        EXPECT_TRUE(test::equally_likely(c, host.token_id, emulated.token_id))
            << c.name << ": host " << host.token_id << ", emulated " << emulated.token_id;
      }
      if (c.params.logprobs < 0) continue;
      if (emulated.token_id == host.token_id) {
        EXPECT_NEAR(emulated.logprob, host.logprob, 1e-4) << c.name;
      }
      ASSERT_EQ(emulated.top_logprobs.size(), host.top_logprobs.size()) << c.name;
      for (size_t j = 0; j < host.top_logprobs.size(); ++j) {
        EXPECT_EQ(emulated.top_logprobs[j].token_id, host.top_logprobs[j].token_id) << c.name << " top " << j;
        EXPECT_NEAR(emulated.top_logprobs[j].logprob, host.top_logprobs[j].logprob, 1e-4) << c.name << " top " << j;
      }
    }
  }
  std::printf("vocab %d: %d rows, %d float-boundary token differences\n", vocab, num_rows_checked, num_boundary);
  EXPECT_LE(num_boundary * 200, num_rows_checked) << num_boundary << " boundary cases in " << num_rows_checked << " rows";
}

INSTANTIATE_TEST_SUITE_P(vocab_sizes, sampling_emulation, ::testing::Values(1000, 32003, 128256));

}  // namespace
}  // namespace nf
