// Scheduler behaviour with exact expectations: rejection, chunked prefill, the dense budget, decode
// ordering, prefix hits, stop conditions, abort, priorities, and admission by predicted KV use.
#include <gtest/gtest.h>

#include "core/error.h"
#include "engine_loop.h"
#include "fake_model.h"
#include "sched/scheduler.h"
#include "test_util.h"

namespace nf::test {
namespace {

using ids = std::vector<block_id>;
using tokens = std::vector<int32_t>;

TEST(scheduler, rejects_bad_requests_without_changing_anything) {
  scheduler_config c = small_config(64, 4, 16 * 16);  // 16 blocks = 256 tokens
  c.max_model_len = 200;
  scheduler s(c);
  s.add_request(1, prompt_tokens(1, 10), max_tokens(5));
  EXPECT_THROW(s.add_request(1, prompt_tokens(1, 10), max_tokens(5)), error);    // duplicate id
  EXPECT_THROW(s.add_request(2, {}, max_tokens(5)), error);                        // empty prompt
  EXPECT_THROW(s.add_request(3, {1, -4, 2}, max_tokens(5)), error);                // negative token id
  EXPECT_THROW(s.add_request(4, prompt_tokens(1, 150), max_tokens(51)), error);    // past the context
  EXPECT_THROW(s.add_request(5, prompt_tokens(1, 10), max_tokens(0)), error);      // bad sampling params
  s.add_request(6, prompt_tokens(1, 150), max_tokens(50));                         // exactly the context
  scheduler_config c2 = small_config(64, 4, 16 * 4);  // 64 tokens of KV
  scheduler s2(c2);
  s2.add_request(7, prompt_tokens(1, 60), max_tokens(5));  // 64 KV tokens: the last sampled one needs none
  EXPECT_THROW(s2.add_request(8, prompt_tokens(1, 60), max_tokens(6)), error);  // past the whole pool
  EXPECT_EQ(s.num_waiting(), 2);
  EXPECT_EQ(s2.num_waiting(), 1);
  EXPECT_THROW(scheduler(small_config(0, 4, 256)), error);
  EXPECT_THROW(scheduler(small_config(64, 4, 8)), error);  // below one block
}

TEST(scheduler, chunked_prefill_spans_steps) {
  scheduler s(small_config(32, 4, 16 * 16));
  s.add_request(1, prompt_tokens(1, 100), max_tokens(3));
  const int positions[] = {0, 32, 64, 96};
  const int sizes[] = {32, 32, 32, 4};
  const size_t tables[] = {2, 4, 6, 7};
  for (int i = 0; i < 4; ++i) {
    step_plan p = s.schedule();
    ASSERT_EQ(p.requests.size(), 1u);
    const auto& e = p.requests[0];
    EXPECT_EQ(e.position, positions[i]);
    EXPECT_EQ(e.num_tokens(), sizes[i]);
    EXPECT_EQ(e.token_ids, prompt_tokens(1 + positions[i], sizes[i]));
    EXPECT_EQ(e.block_table.size(), tables[i]);
    EXPECT_EQ(e.needs_logits, i == 3);
    EXPECT_EQ(p.num_decode_requests, 0);
    std::vector<int32_t> sampled;
    if (e.needs_logits) sampled.push_back(77);
    auto out = s.update(p, sampled);
    EXPECT_EQ(out.size(), i == 3 ? 1u : 0u);
  }
  EXPECT_EQ(s.find(1)->output_token_ids().size(), 1u);
  step_plan p = s.schedule();
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].position, 100);
  EXPECT_EQ(p.requests[0].token_ids, tokens{77});
  EXPECT_EQ(p.requests[0].block_table, (ids{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(p.requests[0].needs_logits);
  EXPECT_EQ(p.num_decode_requests, 1);
}

TEST(scheduler, fills_the_dense_budget_exactly_decodes_first) {
  scheduler s(small_config(64, 8, 16 * 64));
  for (request_id id = 1; id <= 3; ++id) s.add_request(id, prompt_tokens(100 * static_cast<int>(id), 50), max_tokens(4));

  step_plan p0 = s.schedule();
  ASSERT_EQ(p0.requests.size(), 2u);
  EXPECT_EQ(p0.requests[0].id, 1u);
  EXPECT_EQ(p0.requests[0].num_tokens(), 50);
  EXPECT_EQ(p0.requests[1].id, 2u);
  EXPECT_EQ(p0.requests[1].num_tokens(), 14);
  EXPECT_EQ(p0.num_scheduled_tokens, 64);
  s.update(p0, std::vector<int32_t>{5});

  step_plan p1 = s.schedule();
  ASSERT_EQ(p1.requests.size(), 3u);
  EXPECT_EQ(p1.num_decode_requests, 1);
  EXPECT_EQ(p1.requests[0].id, 1u);  // the decode first
  EXPECT_EQ(p1.requests[0].num_tokens(), 1);
  EXPECT_EQ(p1.requests[1].id, 2u);
  EXPECT_EQ(p1.requests[1].position, 14);
  EXPECT_EQ(p1.requests[1].num_tokens(), 36);
  EXPECT_EQ(p1.requests[2].id, 3u);
  EXPECT_EQ(p1.requests[2].num_tokens(), 27);
  EXPECT_EQ(p1.num_scheduled_tokens, 64);
  s.update(p1, std::vector<int32_t>{6, 7});

  step_plan p2 = s.schedule();
  ASSERT_EQ(p2.requests.size(), 3u);
  EXPECT_EQ(p2.num_decode_requests, 2);
  EXPECT_EQ(p2.requests[2].id, 3u);
  EXPECT_EQ(p2.requests[2].num_tokens(), 23);
  EXPECT_EQ(p2.num_scheduled_tokens, 25);  // nothing more waits
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(scheduler, budget_is_full_whenever_prompt_tokens_wait) {
  scheduler s(small_config(128, 64, 16 * 2048));
  for (request_id id = 1; id <= 40; ++id)
    s.add_request(id, prompt_tokens(static_cast<int>(id) * 1000, 37 + static_cast<int>(id * 7 % 90)),
                  max_tokens(20, true));
  engine_loop loop(s, fake_model{}, false);
  int num_prompt_left = 0;
  for (request_id id = 1; id <= 40; ++id) num_prompt_left += 37 + static_cast<int>(id * 7 % 90);
  while (num_prompt_left > 0) {
    loop.step();
    int32_t used = loop.tokens_per_step.back();
    // Every step is full as long as the remaining prompt tokens exceed what decodes leave.
    if (num_prompt_left >= 128) {
      EXPECT_EQ(used, 128);
    }
    num_prompt_left = 0;
    for (request_id id = 1; id <= 40; ++id) {
      const request* r = s.find(id);
      if (r && r->num_computed_tokens < r->num_prompt_tokens) num_prompt_left += r->num_prompt_tokens - r->num_computed_tokens;
    }
  }
  loop.run();
  EXPECT_EQ(loop.reasons.size(), 40u);
}

TEST(scheduler, prefix_hits_reuse_exact_blocks) {
  scheduler s(small_config(256, 4, 16 * 16));
  tokens a = prompt_tokens(1, 40);
  s.add_request(1, a, max_tokens(1));
  step_plan p = s.schedule();
  EXPECT_EQ(p.requests[0].block_table, (ids{0, 1, 2}));
  s.update(p, std::vector<int32_t>{9});  // finishes by length; blocks 0 and 1 (full) stay cached
  EXPECT_EQ(s.kv().pool().num_cached_free_blocks(), 2);

  tokens b(a.begin(), a.begin() + 32);
  for (int i = 0; i < 8; ++i) b.push_back(500 + i);
  s.add_request(2, b, max_tokens(2));
  p = s.schedule();
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].position, 32);
  EXPECT_EQ(p.requests[0].token_ids, prompt_tokens(500, 8));
  // Hits 0 and 1; the fresh block is 2, the hashless block released to the head of the queue.
  EXPECT_EQ(p.requests[0].block_table, (ids{0, 1, 2}));
  EXPECT_EQ(s.find(2)->num_cached_prompt_tokens, 32);
  s.update(p, std::vector<int32_t>{9});

  // The same 32 tokens as a whole prompt: block 1 holds the last token, so only block 0 is reused.
  s.add_request(3, tokens(a.begin(), a.begin() + 32), max_tokens(1));
  p = s.schedule();
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(p.requests[1].id, 3u);
  EXPECT_EQ(p.requests[1].position, 16);
  EXPECT_EQ(p.requests[1].num_tokens(), 16);
  EXPECT_EQ(p.requests[1].block_table, (ids{0, 3}));
  EXPECT_TRUE(p.requests[1].needs_logits);

  auto st = s.prefix_stats();
  EXPECT_EQ(st.num_queries, 3);
  EXPECT_EQ(st.num_query_tokens, 40 + 40 + 32);
  EXPECT_EQ(st.num_hit_tokens, 32 + 16);
  EXPECT_EQ(s.check_invariants(), "");
}

TEST(scheduler, prefix_hits_give_the_same_tokens_as_computing) {
  // Requests sharing long prefixes, run with and without the prefix cache, must produce the same tokens
  // (the fake backend reads the sequence back from the KV pages the block tables name).
  std::map<request_id, tokens> results[2];
  for (int caching = 0; caching < 2; ++caching) {
    scheduler_config c = small_config(48, 4, 16 * 40);
    c.kv.enable_prefix_caching = caching == 1;
    scheduler s(c);
    engine_loop loop(s, fake_model{}, false);
    for (request_id id = 1; id <= 12; ++id) {
      tokens t = prompt_tokens(1, 20 + static_cast<int>(id % 4) * 16);
      t.push_back(1000 + static_cast<int>(id));
      s.add_request(id, t, max_tokens(12, true));
      loop.step();
    }
    loop.run();
    results[caching] = loop.outputs;
    if (caching) {
      EXPECT_GT(s.prefix_stats().num_hit_tokens, 0);
    } else {
      EXPECT_EQ(s.prefix_stats().num_hit_tokens, 0);
    }
  }
  EXPECT_EQ(results[0], results[1]);
  ASSERT_EQ(results[0].size(), 12u);
}

TEST(scheduler, lru_eviction_through_the_scheduler) {
  // 6 blocks of 4 tokens. Each request: 8-token prompt (2 full blocks) + 1 output token.
  scheduler s(small_config(64, 4, 4 * 6, 4));
  auto run_one = [&](request_id id, tokens prompt) {
    s.add_request(id, std::move(prompt), max_tokens(1));
    step_plan p = s.schedule();
    s.update(p, std::vector<int32_t>{3});
    return p.requests.at(0);
  };
  EXPECT_EQ(run_one(1, prompt_tokens(10, 8)).block_table, (ids{0, 1}));
  EXPECT_EQ(run_one(2, prompt_tokens(20, 8)).block_table, (ids{2, 3}));
  EXPECT_EQ(run_one(3, prompt_tokens(30, 8)).block_table, (ids{4, 5}));
  // All six are cached; queue order: 1 0 3 2 5 4 (each request's tail block first).
  EXPECT_EQ(s.kv().pool().num_cached_free_blocks(), 6);
  // Request 1's prefix again (9 tokens: its two blocks are reusable) refreshes blocks 0 and 1.
  auto e = run_one(4, [] { tokens t = prompt_tokens(10, 8); t.push_back(99); return t; }());
  EXPECT_EQ(e.position, 8);
  EXPECT_EQ(e.block_table, (ids{0, 1, 3}));  // fresh block evicts the LRU cached block: 3 (request 2's tail)
  EXPECT_EQ(s.prefix_stats().num_evictions, 1);
  // Request 4 released 3 (hashless, to the head) and its hits 1 and 0 (to the tail): 3 2 5 4 1 0.
  // A new 12-token prompt takes 3, then evicts the least recently used cached blocks 2 and 5.
  EXPECT_EQ(run_one(5, prompt_tokens(40, 12)).block_table, (ids{3, 2, 5}));
  EXPECT_EQ(s.prefix_stats().num_evictions, 3);
  // Request 1's blocks survived.
  EXPECT_EQ(run_one(6, prompt_tokens(10, 9)).position, 8);
}

TEST(scheduler, stop_conditions) {
  scheduler_config c = small_config(64, 8, 16 * 64);
  c.eos_token_ids = {0, 2};
  scheduler s(c);
  sampling_params eos = max_tokens(10);
  sampling_params ignore = max_tokens(10, true);
  ignore.stop_token_ids = {9};
  sampling_params min3 = max_tokens(10);
  min3.min_tokens = 3;
  s.add_request(1, prompt_tokens(1, 5), eos);
  s.add_request(2, prompt_tokens(1, 5), ignore);
  s.add_request(3, prompt_tokens(1, 5), min3);
  s.add_request(4, prompt_tokens(1, 5), max_tokens(2));

  auto step = [&](std::vector<int32_t> sampled) {
    step_plan p = s.schedule();
    EXPECT_EQ(p.num_logits(), static_cast<int32_t>(sampled.size()));
    return s.update(p, sampled);
  };
  auto out = step({2, 0, 0, 5});  // 1 stops on EOS 2; 2 ignores EOS; 3 is below min_tokens
  ASSERT_EQ(out.size(), 4u);
  EXPECT_TRUE(out[0].finished);
  EXPECT_EQ(out[0].reason, finish_reason::stop);
  EXPECT_EQ(out[0].new_token_ids, tokens{2});
  EXPECT_FALSE(out[1].finished);
  EXPECT_FALSE(out[2].finished);
  EXPECT_FALSE(out[3].finished);
  out = step({0, 2, 6});  // 2 still ignores EOS; 3 still below min_tokens (2 of 3); 4 reaches max_tokens
  EXPECT_FALSE(out[0].finished);
  EXPECT_FALSE(out[1].finished);
  EXPECT_TRUE(out[2].finished);
  EXPECT_EQ(out[2].reason, finish_reason::length);
  out = step({9, 0});  // 2 stops on its stop token despite ignore_eos; 3 stops on its third token
  EXPECT_TRUE(out[0].finished);
  EXPECT_EQ(out[0].reason, finish_reason::stop);
  EXPECT_TRUE(out[1].finished);
  EXPECT_EQ(out[1].reason, finish_reason::stop);
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.stats().num_finished, 4);
  step_plan p = s.schedule();
  EXPECT_EQ(p.finished_ids, (std::vector<request_id>{2, 3}));  // 1 and 4 went out with earlier plans
  EXPECT_EQ(s.kv().num_free_blocks(), s.kv().num_blocks());
}

TEST(scheduler, abort_frees_blocks_at_once) {
  scheduler s(small_config(64, 8, 16 * 64));
  s.add_request(1, prompt_tokens(1, 40), max_tokens(10));
  s.add_request(2, prompt_tokens(100, 40), max_tokens(10));
  s.add_request(3, prompt_tokens(200, 40), max_tokens(10));
  step_plan p = s.schedule();  // 1 whole, 2 partly; 3 waits
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(s.kv().pool().num_held_blocks(), 3 + 2);
  EXPECT_TRUE(s.abort(3));  // waiting
  EXPECT_TRUE(s.abort(2));  // mid-step: scheduled in p, which has not been updated yet
  EXPECT_EQ(s.kv().pool().num_held_blocks(), 3);
  EXPECT_EQ(s.check_invariants(), "");
  auto out = s.update(p, std::vector<int32_t>{7});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, 1u);
  EXPECT_TRUE(s.abort(1));  // running
  EXPECT_FALSE(s.abort(1));
  EXPECT_FALSE(s.abort(99));
  EXPECT_EQ(s.kv().pool().num_held_blocks(), 0);
  EXPECT_EQ(s.check_invariants(), "");
  step_plan q = s.schedule();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.finished_ids, (std::vector<request_id>{3, 2, 1}));
  EXPECT_EQ(s.stats().num_aborted, 3);
}

TEST(scheduler, external_finish_counts_as_finished) {
  scheduler s(small_config(64, 8, 16 * 64));
  s.add_request(1, prompt_tokens(1, 10), max_tokens(10));
  step_plan p = s.schedule();
  s.update(p, std::vector<int32_t>{5});
  EXPECT_TRUE(s.finish(1, finish_reason::stop));
  EXPECT_EQ(s.stats().num_finished, 1);
  EXPECT_EQ(s.stats().num_aborted, 0);
  EXPECT_EQ(s.kv().pool().num_held_blocks(), 0);
  EXPECT_THROW(s.finish(1, finish_reason::none), error);
}

TEST(scheduler, priority_then_arrival) {
  for (auto policy : {scheduling_policy::fcfs, scheduling_policy::priority}) {
    scheduler_config c = small_config(64, 1, 16 * 64);
    c.policy = policy;
    scheduler s(c);
    s.add_request(10, prompt_tokens(1, 5), max_tokens(1), 5);
    s.add_request(11, prompt_tokens(1, 5), max_tokens(1), 1);
    s.add_request(12, prompt_tokens(1, 5), max_tokens(1), 3);
    s.add_request(13, prompt_tokens(1, 5), max_tokens(1), 1);
    std::vector<request_id> order;
    while (s.has_unfinished()) {
      step_plan p = s.schedule();
      ASSERT_EQ(p.requests.size(), 1u);  // max_num_seqs = 1
      order.push_back(p.requests[0].id);
      s.update(p, std::vector<int32_t>{4});
    }
    if (policy == scheduling_policy::fcfs) {
      EXPECT_EQ(order, (std::vector<request_id>{10, 11, 12, 13}));
    } else {
      EXPECT_EQ(order, (std::vector<request_id>{11, 13, 12, 10}));
    }
  }
}

TEST(scheduler, admission_uses_predicted_peak_kv) {
  // 64 blocks = 1024 tokens. Prompt 100 + expected output min(400, prior 256) = 356 tokens = 23 blocks:
  // two requests are predicted to fit (46 blocks), a third (69) is not, though its prompt would fit now.
  scheduler_config c = small_config(2048, 16, 16 * 64);
  c.output_len_prior = 256;
  scheduler s(c);
  for (request_id id = 1; id <= 4; ++id) s.add_request(id, prompt_tokens(static_cast<int>(id) * 1000, 100), max_tokens(400, true));
  step_plan p = s.schedule();
  EXPECT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(s.num_running(), 2);
  EXPECT_EQ(s.num_waiting(), 2);
  // With max_tokens 50 the expectation is 150 tokens = 10 blocks each: all fit.
  scheduler s2(c);
  for (request_id id = 1; id <= 4; ++id) s2.add_request(id, prompt_tokens(static_cast<int>(id) * 1000, 100), max_tokens(50, true));
  EXPECT_EQ(s2.schedule().requests.size(), 4u);
}

TEST(scheduler, output_length_estimate_learns) {
  scheduler_config c = small_config(64, 8, 16 * 64);
  c.output_len_prior = 100;
  c.output_len_prior_weight = 1;
  scheduler s(c);
  EXPECT_DOUBLE_EQ(s.stats().mean_output_len, 100.0);
  s.add_request(1, prompt_tokens(1, 5), max_tokens(2, true));
  for (int i = 0; i < 2; ++i) {
    step_plan p = s.schedule();
    s.update(p, std::vector<int32_t>{4});
  }
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_DOUBLE_EQ(s.stats().mean_output_len, (100.0 + 2.0) / 2.0);
}

TEST(scheduler, preemption_under_a_tiny_pool_recomputes_the_same_tokens) {
  for (bool async : {false, true}) {
    // 16 blocks of 4 tokens; six requests of 10 prompt tokens that each grow to 60 tokens. The prior is
    // tiny, so admission is optimistic and decodes run out of blocks.
    scheduler_config c = small_config(16, 8, 4 * 16, 4);
    c.output_len_prior = 1;
    c.output_len_prior_weight = 1000;
    scheduler s(c);
    fake_model model;
    std::map<request_id, tokens> expected;
    for (request_id id = 1; id <= 6; ++id) {
      sampling_params sp = max_tokens(50, true);
      tokens prompt = prompt_tokens(static_cast<int>(id) * 100, 10);
      expected[id] = reference_generate(model, prompt, sp, c.eos_token_ids);
      s.add_request(id, prompt, sp);
    }
    engine_loop loop(s, model, async);
    loop.run();
    EXPECT_GT(s.stats().num_preemptions, 0) << "async " << async;
    EXPECT_EQ(loop.outputs, expected) << "async " << async;
    EXPECT_EQ(s.kv().pool().num_held_blocks(), 0);
  }
}

}  // namespace
}  // namespace nf::test

namespace nf::test {
namespace {

TEST(scheduler, preempted_request_returns_ahead_of_later_arrivals) {
  // 4 blocks of 4 tokens; A and B decode until A needs a third block and B, the newest, is preempted.
  scheduler_config c = small_config(64, 4, 4 * 4, 4);
  c.output_len_prior = 1;
  c.output_len_prior_weight = 1000;
  scheduler s(c);
  s.add_request(1, prompt_tokens(1, 4), max_tokens(8, true));
  s.add_request(2, prompt_tokens(101, 4), max_tokens(8, true));
  step_plan p = s.schedule();
  ASSERT_EQ(p.requests.size(), 2u);
  s.add_request(3, prompt_tokens(201, 4), max_tokens(8, true));  // predicted not to fit beside A and B
  s.update(p, std::vector<int32_t>{10, 20});
  for (int32_t k = 1; k < 5; ++k) {
    p = s.schedule();
    ASSERT_EQ(p.requests.size(), 2u) << "step " << k;
    s.update(p, std::vector<int32_t>{10 + k, 20 + k});
  }
  p = s.schedule();
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.preempted_ids, std::vector<request_id>{2});
  EXPECT_EQ(s.find(2)->status, request_status::preempted);
  EXPECT_EQ(s.find(2)->num_preemptions, 1);
  EXPECT_EQ(s.num_waiting(), 2);
  s.update(p, std::vector<int32_t>{15});
  EXPECT_TRUE(s.abort(1));
  p = s.schedule();
  ASSERT_GE(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].id, 2u);  // B, not the later C
  EXPECT_EQ(p.requests[0].position, 4);  // its prompt block is still cached
  EXPECT_EQ(p.requests[0].token_ids, (std::vector<int32_t>{20, 21, 22, 23, 24}));
  EXPECT_EQ(s.check_invariants(), "");
}

}  // namespace
}  // namespace nf::test
