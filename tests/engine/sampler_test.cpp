// The sampler: Philox against the published known-answer vectors of Random123, and each sampling rule
// against distributions worked out independently here.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/philox.h"
#include "engine/sampler.h"

namespace nf {
namespace {

TEST(philox, matches_random123_known_answers) {
  // kat_vectors of Random123 (Salmon et al.): philox4x32, 10 rounds: counter words, key words -> output words.
  const philox_output zero = philox4x32(0, 0, 0, 0, 0);
  EXPECT_EQ(zero.words[0], 0x6627e8d5u);
  EXPECT_EQ(zero.words[1], 0xe169c58du);
  EXPECT_EQ(zero.words[2], 0xbc57ac4cu);
  EXPECT_EQ(zero.words[3], 0x9b00dbd8u);
  const philox_output ones = philox4x32(~0ull, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  EXPECT_EQ(ones.words[0], 0x408f276du);
  EXPECT_EQ(ones.words[1], 0x41c83b0eu);
  EXPECT_EQ(ones.words[2], 0xa20bc7c6u);
  EXPECT_EQ(ones.words[3], 0x6d5451fdu);
  const philox_output pi = philox4x32((uint64_t{0x299f31d0u} << 32) | 0xa4093822u, 0x243f6a88u, 0x85a308d3u,
                                      0x13198a2eu, 0x03707344u);
  EXPECT_EQ(pi.words[0], 0xd16cfe09u);
  EXPECT_EQ(pi.words[1], 0x94fdccebu);
  EXPECT_EQ(pi.words[2], 0x5001e420u);
  EXPECT_EQ(pi.words[3], 0x24126ea1u);
}

struct fixture {
  sampling_params params;
  std::vector<int32_t> prompt, output, eos;
  sample_result sample(const std::vector<float>& logits, uint64_t seed = 1, uint32_t stream = 0) const {
    return sample_token(logits, {&params, seed, stream, prompt, output, eos});
  }
};

TEST(sampler, greedy_takes_the_largest_logit_and_the_lowest_id_on_ties) {
  fixture f;
  f.params.temperature = 0.0f;
  EXPECT_EQ(f.sample({0.1f, 2.0f, -1.0f, 1.9f}).token_id, 1);
  EXPECT_EQ(f.sample({3.0f, 1.0f, 3.0f}).token_id, 0);
}

// Frequencies over many seeds approach the expected distribution.
std::vector<double> frequencies(const fixture& f, const std::vector<float>& logits, int draws) {
  std::vector<double> counts(logits.size(), 0.0);
  for (int seed = 0; seed < draws; ++seed) counts[f.sample(logits, seed).token_id] += 1.0 / draws;
  return counts;
}

TEST(sampler, temperature_sampling_follows_the_softmax) {
  fixture f;
  f.params.temperature = 2.0f;
  const std::vector<float> logits = {0.0f, std::log(2.0f) * 2, std::log(3.0f) * 2, -100.0f};  // p ~ 1:2:3:0
  const auto freq = frequencies(f, logits, 30000);
  EXPECT_NEAR(freq[0], 1.0 / 6, 0.01);
  EXPECT_NEAR(freq[1], 2.0 / 6, 0.01);
  EXPECT_NEAR(freq[2], 3.0 / 6, 0.01);
  EXPECT_EQ(freq[3], 0.0);
}

TEST(sampler, top_k_top_p_and_min_p_cut_the_tail) {
  const std::vector<float> logits = {std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)};
  fixture f;
  f.params.temperature = 1.0f;
  f.params.top_k = 2;  // keeps 0.4 and 0.3: renormalised 4/7 and 3/7
  auto freq = frequencies(f, logits, 20000);
  EXPECT_NEAR(freq[3], 4.0 / 7, 0.015);
  EXPECT_NEAR(freq[2], 3.0 / 7, 0.015);
  EXPECT_EQ(freq[0] + freq[1], 0.0);
  f.params.top_k = 0;
  f.params.top_p = 0.65f;  // 0.4 + 0.3 reaches 0.7 >= 0.65: the same two survive
  freq = frequencies(f, logits, 20000);
  EXPECT_NEAR(freq[3], 4.0 / 7, 0.015);
  EXPECT_EQ(freq[0] + freq[1], 0.0);
  f.params.top_p = 1.0f;
  f.params.min_p = 0.6f;  // threshold 0.24: 0.4 and 0.3 survive
  freq = frequencies(f, logits, 20000);
  EXPECT_NEAR(freq[2], 3.0 / 7, 0.015);
  EXPECT_EQ(freq[0] + freq[1], 0.0);
}

TEST(sampler, penalties_change_the_greedy_choice_as_defined) {
  fixture f;
  f.params.temperature = 0.0f;
  f.prompt = {0};
  f.params.repetition_penalty = 2.0f;  // token 0 (seen): 3.0 -> 1.5, below token 1's 2.0
  EXPECT_EQ(f.sample({3.0f, 2.0f, 0.0f}).token_id, 1);
  f.params.repetition_penalty = 1.0f;
  f.output = {1, 1};
  f.params.frequency_penalty = 0.6f;  // token 1: 2.5 - 2 * 0.6 = 1.3 < 1.5
  EXPECT_EQ(f.sample({1.5f, 2.5f}).token_id, 0);
  f.params.frequency_penalty = 0.0f;
  f.params.presence_penalty = 0.9f;  // token 1: 2.5 - 0.9 = 1.6 > 1.5
  EXPECT_EQ(f.sample({1.5f, 2.5f}).token_id, 1);
}

TEST(sampler, min_tokens_hides_eos_and_stop_ids) {
  fixture f;
  f.params.temperature = 0.0f;
  f.eos = {0};
  f.params.stop_token_ids = {1};
  f.params.min_tokens = 2;
  f.output = {5};
  EXPECT_EQ(f.sample({9.0f, 8.0f, 1.0f}).token_id, 2);
  f.output = {5, 6};
  EXPECT_EQ(f.sample({9.0f, 8.0f, 1.0f}).token_id, 0);
}

TEST(sampler, logprobs_are_the_model_distribution) {
  fixture f;
  f.params.temperature = 0.0f;
  f.params.logprobs = 2;
  const auto result = f.sample({std::log(0.5f), std::log(0.25f), std::log(0.25f)});
  EXPECT_NEAR(result.logprob, std::log(0.5), 1e-6);
  ASSERT_EQ(result.top_logprobs.size(), 2u);
  EXPECT_EQ(result.top_logprobs[0].token_id, 0);
  EXPECT_EQ(result.top_logprobs[1].token_id, 1);
  EXPECT_NEAR(result.top_logprobs[1].logprob, std::log(0.25), 1e-6);
}

TEST(sampler, seeded_draws_depend_only_on_seed_stream_and_position) {
  fixture f;
  f.params.temperature = 1.0f;
  std::vector<float> flat(50, 0.0f);
  std::map<int32_t, int> distinct;
  for (uint32_t stream = 0; stream < 20; ++stream) ++distinct[f.sample(flat, 7, stream).token_id];
  EXPECT_GT(distinct.size(), 5u) << "streams must differ";
  EXPECT_EQ(f.sample(flat, 7, 3).token_id, f.sample(flat, 7, 3).token_id);
  fixture later = f;
  later.output = {1, 2, 3};
  int same = 0;
  for (uint64_t seed = 0; seed < 50; ++seed) same += f.sample(flat, seed).token_id == later.sample(flat, seed).token_id;
  EXPECT_LT(same, 10) << "positions must differ";
}

}  // namespace
}  // namespace nf
