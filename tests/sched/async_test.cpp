// The asynchronous loop: scheduling step i+1 before step i's tokens are known gives placeholders,
// sees EOS one step late without ever returning the extra token, and produces exactly the tokens of the
// synchronous loop and of each request run alone.
#include <gtest/gtest.h>

#include <random>

#include "engine_loop.h"
#include "fake_model.h"
#include "sched/scheduler.h"
#include "test_util.h"

namespace nf::test {
namespace {

using tokens = std::vector<int32_t>;

TEST(async_scheduling, placeholder_and_late_eos) {
  scheduler s(small_config(64, 4, 16 * 16));
  s.add_request(1, prompt_tokens(1, 4), max_tokens(5));
  step_plan p0 = s.schedule();
  ASSERT_EQ(p0.requests.size(), 1u);
  EXPECT_TRUE(p0.requests[0].needs_logits);

  step_plan p1 = s.schedule();  // before update(p0): the input token is step 0's output
  ASSERT_EQ(p1.requests.size(), 1u);
  EXPECT_EQ(p1.requests[0].position, 4);
  EXPECT_EQ(p1.requests[0].token_ids, tokens{placeholder_token});
  EXPECT_EQ(s.find(1)->num_pending_tokens, 2);

  auto out = s.update(p0, std::vector<int32_t>{7});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].new_token_ids, tokens{7});

  step_plan p2 = s.schedule();
  ASSERT_EQ(p2.requests.size(), 1u);
  EXPECT_EQ(p2.requests[0].position, 5);
  EXPECT_EQ(p2.requests[0].token_ids, tokens{placeholder_token});

  out = s.update(p1, std::vector<int32_t>{0});  // EOS: finished, although step 2 is in flight
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].finished);
  EXPECT_EQ(out[0].reason, finish_reason::stop);
  EXPECT_EQ(s.kv().pool().num_held_blocks(), 0);

  out = s.update(p2, std::vector<int32_t>{3});  // the extra token is dropped
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(s.stats().num_dropped_tokens, 1);
  step_plan p3 = s.schedule();
  EXPECT_TRUE(p3.empty());
  EXPECT_EQ(p3.finished_ids, std::vector<request_id>{1});
}

TEST(async_scheduling, max_tokens_is_never_overshot) {
  scheduler s(small_config(64, 4, 16 * 16));
  s.add_request(1, prompt_tokens(1, 4), max_tokens(2, true));
  step_plan p0 = s.schedule();
  step_plan p1 = s.schedule();
  EXPECT_EQ(p1.requests.size(), 1u);
  step_plan p2 = s.schedule();  // both possible tokens are on the way: nothing more to schedule
  EXPECT_TRUE(p2.empty());
  EXPECT_FALSE(s.update(p0, std::vector<int32_t>{5})[0].finished);
  auto out = s.update(p1, std::vector<int32_t>{6});
  EXPECT_TRUE(out[0].finished);
  EXPECT_EQ(out[0].reason, finish_reason::length);
  EXPECT_EQ(s.stats().num_dropped_tokens, 0);
}

TEST(async_scheduling, tokens_of_steps_before_a_preemption_are_dropped) {
  // 4 blocks of 4 tokens. Two requests decode until the pool is full; then a step scheduled before the
  // previous one is updated preempts B. B is readmitted before that previous step's update arrives:
  // B's token from it is stale and must not be appended.
  scheduler_config c = small_config(64, 4, 4 * 4, 4);
  c.output_len_prior = 1;
  c.output_len_prior_weight = 1000;
  scheduler s(c);
  s.add_request(1, prompt_tokens(1, 4), max_tokens(8, true));
  s.add_request(2, prompt_tokens(101, 4), max_tokens(8, true));
  for (int32_t k = 0; k < 4; ++k) {
    step_plan p = s.schedule();
    ASSERT_EQ(p.requests.size(), 2u);
    s.update(p, std::vector<int32_t>{10 + k, 20 + k});
  }
  EXPECT_EQ(s.kv().num_free_blocks(), 0);
  step_plan p4 = s.schedule();  // both at position 7, the last slot of their second block
  ASSERT_EQ(p4.requests.size(), 2u);
  step_plan p5 = s.schedule();  // A needs a third block: B, the newest, is preempted
  ASSERT_EQ(p5.requests.size(), 1u);
  EXPECT_EQ(p5.requests[0].id, 1u);
  EXPECT_EQ(p5.preempted_ids, std::vector<request_id>{2});
  EXPECT_EQ(s.find(2)->status, request_status::preempted);
  EXPECT_TRUE(s.abort(1));
  step_plan p6 = s.schedule();  // B recomputes the four tokens it has; its prompt block is a cache hit
  ASSERT_EQ(p6.requests.size(), 1u);
  EXPECT_EQ(p6.requests[0].position, 4);
  EXPECT_EQ(p6.requests[0].token_ids, (tokens{20, 21, 22, 23}));
  EXPECT_TRUE(s.update(p4, std::vector<int32_t>{14, 24}).empty());
  EXPECT_TRUE(s.update(p5, std::vector<int32_t>{15}).empty());
  auto out = s.update(p6, std::vector<int32_t>{30});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].new_token_ids, tokens{30});
  EXPECT_EQ(std::vector<int32_t>(s.find(2)->output_token_ids().begin(), s.find(2)->output_token_ids().end()),
            (tokens{20, 21, 22, 23, 30}));
  EXPECT_EQ(s.stats().num_dropped_tokens, 3);
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(async_scheduling, same_tokens_as_synchronous_and_alone) {
  fake_model model{.vocab = 16};  // EOS (0) about once in 16 tokens
  std::mt19937 rng(7);
  struct spec { tokens prompt; sampling_params params; };
  std::vector<spec> specs;
  for (int i = 0; i < 40; ++i) {
    spec sp;
    std::uniform_int_distribution<int> len(1, 70), tok(1, 15);
    for (int k = len(rng); k > 0; --k) sp.prompt.push_back(tok(rng));
    sp.params.max_tokens = 1 + static_cast<int>(rng() % 40);
    sp.params.min_tokens = static_cast<int>(rng() % 3) % (sp.params.max_tokens + 1);
    if (rng() % 4 == 0) sp.params.stop_token_ids = {static_cast<int32_t>(1 + rng() % 15)};
    if (rng() % 5 == 0) sp.params.ignore_eos = true;
    specs.push_back(sp);
  }
  std::map<request_id, tokens> expected;
  for (size_t i = 0; i < specs.size(); ++i)
    expected[i] = reference_generate(model, specs[i].prompt, specs[i].params, {0});

  std::map<request_id, tokens> got[2];
  std::map<request_id, finish_reason> reasons[2];
  for (int async = 0; async < 2; ++async) {
    scheduler s(small_config(40, 12, 16 * 64));
    engine_loop loop(s, model, async == 1);
    // Requests arrive over time: four before each of the first ten steps.
    size_t next = 0;
    loop.before_schedule = [&] {
      for (int k = 0; k < 4 && next < specs.size(); ++k, ++next) s.add_request(next, specs[next].prompt, specs[next].params);
    };
    loop.run();
    got[async] = loop.outputs;
    reasons[async] = loop.reasons;
    EXPECT_EQ(s.kv().pool().num_held_blocks(), 0);
    if (async) {
      EXPECT_GT(s.stats().num_dropped_tokens, 0) << "no request stopped while its next step was in flight";
    } else {
      EXPECT_EQ(s.stats().num_dropped_tokens, 0);
    }
  }
  EXPECT_EQ(got[0], expected);
  EXPECT_EQ(got[1], expected);
  EXPECT_EQ(reasons[0], reasons[1]);
  int num_stopped = 0;
  for (auto& [id, r] : reasons[0]) num_stopped += r == finish_reason::stop;
  EXPECT_GT(num_stopped, 0);
}

}  // namespace
}  // namespace nf::test
