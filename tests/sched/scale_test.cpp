// Scale: 2000 requests of 1024 prompt + 512 output tokens through the scheduler alone (constant sampled
// tokens), printing the host time per step. It checks completion and token counts, never the timing.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "sched/scheduler.h"
#include "test_util.h"

namespace nf::test {
namespace {

TEST(scheduler_scale, two_thousand_requests) {
  scheduler_config c = small_config(2048, 1024, 800'000, 16);
  scheduler s(c);
  const int num_requests = 2000, num_prompt = 1024, num_output = 512;
  std::mt19937 rng(1);
  for (int i = 0; i < num_requests; ++i) {
    std::vector<int32_t> prompt(num_prompt);
    for (auto& t : prompt) t = static_cast<int32_t>(1 + rng() % 30000);
    s.add_request(static_cast<request_id>(i), std::move(prompt), max_tokens(num_output, true));
  }
  using clock = std::chrono::steady_clock;
  double total_ms = 0, worst_ms = 0;
  int64_t num_tokens = 0, num_generated = 0;
  int num_steps = 0;
  std::vector<int32_t> sampled;
  while (s.has_unfinished()) {
    auto t0 = clock::now();
    step_plan plan = s.schedule();
    sampled.assign(static_cast<size_t>(plan.num_logits()), 1);
    auto outs = s.update(plan, sampled);
    double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    total_ms += ms;
    worst_ms = std::max(worst_ms, ms);
    num_tokens += plan.num_scheduled_tokens;
    for (const auto& o : outs) num_generated += static_cast<int64_t>(o.new_token_ids.size());
    ASSERT_LE(plan.num_scheduled_tokens, 2048);
    ASSERT_LT(++num_steps, 100000);
  }
  EXPECT_EQ(num_generated, int64_t{num_requests} * num_output);
  EXPECT_EQ(s.stats().num_finished, num_requests);
  std::printf("scale: %d steps, %lld tokens, schedule+update %.3f ms/step mean, %.3f ms worst, %lld preemptions\n",
              num_steps, static_cast<long long>(num_tokens), total_ms / num_steps, worst_ms,
              static_cast<long long>(s.stats().num_preemptions));
}

}  // namespace
}  // namespace nf::test
