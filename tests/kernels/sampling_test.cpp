// The device sampler against the host sampler (sample_token) on the same bf16 logits: every parameter
// combination alone and together, odd vocabulary sizes, fixed seeds; tokens must agree except float-boundary
// cases (counted and bounded), logprobs within 1e-4. One batch holds every combination at once, more rows
// than the kernel has blocks, so rows of different kinds share blocks one after another.
#include <algorithm>
#include <cstdio>

#include "engine/cuda/device_sampler.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda_test_utils.h"
#include "kernels/sampling_cases.h"

namespace nf {
namespace {

using test::bf16;
using test::device_buffer;

struct comparison {
  int num_rows = 0;
  int num_boundary = 0;
};

void compare_batch(const std::vector<test::sampling_case>& cases, int vocab, comparison& totals) {
  std::vector<float> logits;  // [num_rows, vocab]
  std::vector<sampling_context> contexts;
  for (const auto& c : cases) {
    logits.insert(logits.end(), c.logits.begin(), c.logits.end());
    contexts.push_back(c.context());
  }
  device_buffer<bf16> d_logits(test::to_bf16(logits));
  cuda::device_sampler sampler;
  std::vector<sample_result> results;
  sampler.sample(d_logits.get(), vocab, contexts, nullptr, results);
  ASSERT_EQ(results.size(), cases.size());
  for (size_t r = 0; r < cases.size(); ++r) {
    const auto& c = cases[r];
    const sample_result host = sample_token(c.logits, c.context());
    const sample_result& device = results[r];
    ++totals.num_rows;
    if (device.token_id != host.token_id) {
      ++totals.num_boundary;
      EXPECT_TRUE(test::equally_likely(c, host.token_id, device.token_id))
          << c.name << " row " << r << ": host " << host.token_id << ", device " << device.token_id;
    }
    if (c.params.logprobs < 0) {
      EXPECT_TRUE(device.top_logprobs.empty());
      continue;
    }
    if (device.token_id == host.token_id) {
      EXPECT_NEAR(device.logprob, host.logprob, 1e-4) << c.name;
    }
    ASSERT_EQ(device.top_logprobs.size(), host.top_logprobs.size()) << c.name;
    for (size_t j = 0; j < host.top_logprobs.size(); ++j) {
      EXPECT_EQ(device.top_logprobs[j].token_id, host.top_logprobs[j].token_id) << c.name << " top " << j;
      EXPECT_NEAR(device.top_logprobs[j].logprob, host.top_logprobs[j].logprob, 1e-4) << c.name << " top " << j;
    }
  }
}

class device_sampler_test : public ::testing::TestWithParam<int> {};

TEST_P(device_sampler_test, matches_host_sampler_per_combination) {
  NF_SKIP_WITHOUT_GPU();
  const int vocab = GetParam();
  const int num_rows = vocab > 100000 ? 9 : 30;
  comparison totals;
  for (const auto& combo : test::sampling_combinations(vocab))
    compare_batch(test::make_sampling_cases(combo, vocab, num_rows, static_cast<uint32_t>(vocab * 7 + combo.name.size())),
                  vocab, totals);
  std::printf("vocab %d: %d rows, %d float-boundary token differences\n", vocab, totals.num_rows, totals.num_boundary);
  EXPECT_LE(totals.num_boundary * 200, totals.num_rows) << totals.num_boundary << " boundary cases";
}

TEST_P(device_sampler_test, matches_host_sampler_in_one_mixed_batch) {
  NF_SKIP_WITHOUT_GPU();
  const int vocab = GetParam();
  const int per_combo = vocab > 100000 ? 4 : 13;
  std::vector<test::sampling_case> cases;
  for (const auto& combo : test::sampling_combinations(vocab)) {
    auto more = test::make_sampling_cases(combo, vocab, per_combo, static_cast<uint32_t>(vocab + 11 * combo.name.size()));
    cases.insert(cases.end(), more.begin(), more.end());
  }
  std::mt19937 rng(vocab);
  std::shuffle(cases.begin(), cases.end(), rng);
  comparison totals;
  compare_batch(cases, vocab, totals);
  std::printf("vocab %d: %d rows, %d float-boundary token differences\n", vocab, totals.num_rows, totals.num_boundary);
  EXPECT_LE(totals.num_boundary * 200, totals.num_rows) << totals.num_boundary << " boundary cases";
}

INSTANTIATE_TEST_SUITE_P(vocab_sizes, device_sampler_test, ::testing::Values(1000, 32003, 128256));

TEST(device_sampler, same_seed_same_token_different_stream_spreads) {
  NF_SKIP_WITHOUT_GPU();
  const int vocab = 32003;
  sampling_params params;
  auto cases = test::make_sampling_cases({"plain", params}, vocab, 1, 5);
  std::vector<float> logits;
  std::vector<sampling_context> contexts;
  std::vector<test::sampling_case> rows;
  for (uint32_t stream = 0; stream < 64; ++stream) {
    test::sampling_case c = cases[0];
    c.stream = stream / 2;  // pairs share (seed, stream, position)
    rows.push_back(c);
  }
  for (const auto& c : rows) {
    logits.insert(logits.end(), c.logits.begin(), c.logits.end());
    contexts.push_back(c.context());
  }
  device_buffer<bf16> d_logits(test::to_bf16(logits));
  cuda::device_sampler sampler;
  std::vector<sample_result> results;
  sampler.sample(d_logits.get(), vocab, contexts, nullptr, results);
  int num_distinct_pairs = 0;
  for (size_t r = 0; r + 1 < results.size(); r += 2) {
    EXPECT_EQ(results[r].token_id, results[r + 1].token_id);
    if (r >= 2 && results[r].token_id != results[r - 2].token_id) ++num_distinct_pairs;
  }
  EXPECT_GT(num_distinct_pairs, 10);  // flat-ish logits: different streams draw different tokens
}

TEST(device_sampler, rejects_token_ids_outside_the_vocabulary) {
  NF_SKIP_WITHOUT_GPU();
  const int vocab = 1000;
  sampling_params params;
  params.repetition_penalty = 1.2f;
  auto cases = test::make_sampling_cases({"repetition", params}, vocab, 1, 9);
  cases[0].prompt.push_back(vocab);
  device_buffer<bf16> d_logits(test::to_bf16(cases[0].logits));
  cuda::device_sampler sampler;
  std::vector<sample_result> results;
  const std::vector<sampling_context> contexts{cases[0].context()};
  EXPECT_THROW(sampler.sample(d_logits.get(), vocab, contexts, nullptr, results), error);
}

TEST(sample_rows, rejects_missing_buffers) {
  NF_SKIP_WITHOUT_GPU();
  EXPECT_EQ(kernels::sample_rows(nullptr, nullptr, {}, nullptr, {}, 3, 1000, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kernels::sample_rows(nullptr, nullptr, {}, nullptr, {}, 0, 1000, nullptr), cudaSuccess);
}

// Not a benchmark gate: prints the time of one decode-sized batch per configuration, for the record.
TEST(device_sampler, reports_time_of_a_decode_batch) {
  NF_SKIP_WITHOUT_GPU();
  const int vocab = 128256, num_rows = 256;
  std::mt19937 rng(3);
  const auto logits = test::random_bf16_values(static_cast<size_t>(num_rows) * vocab, rng, 8.0f);
  device_buffer<bf16> d_logits(test::to_bf16(logits));
  std::vector<int32_t> prompt(1000), outputs(200);
  for (auto& id : prompt) id = static_cast<int32_t>(rng() % vocab);
  for (auto& id : outputs) id = static_cast<int32_t>(rng() % vocab);
  const std::vector<int32_t> eos{2};
  for (const auto& combo : test::sampling_combinations(vocab)) {
    std::vector<sampling_context> contexts(num_rows, sampling_context{&combo.params, 1, 0, prompt, outputs, eos});
    cuda::device_sampler sampler;
    std::vector<sample_result> results;
    sampler.sample(d_logits.get(), vocab, contexts, nullptr, results);  // warm-up, allocations
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    cudaEventRecord(start);
    const int repeats = 5;
    for (int i = 0; i < repeats; ++i) sampler.sample(d_logits.get(), vocab, contexts, nullptr, results);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::printf("device sampler, %d rows x %d vocab, %-28s %8.3f ms per batch (host packing included)\n", num_rows,
                vocab, combo.name.c_str(), ms / repeats);
    for (const auto& result : results) ASSERT_TRUE(result.token_id >= 0 && result.token_id < vocab);
  }
}

}  // namespace
}  // namespace nf
