// Randomized property test: random configurations and random mixes of arrivals, aborts (between steps
// and mid-step) and external finishes, in synchronous and asynchronous loops. After every call: no
// block leaked or double-freed (ref counts equal holders, free + held == total), the budget holds, and
// every request that ran to its own end produced exactly the tokens it produces alone.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <set>

#include "engine_loop.h"
#include "fake_model.h"
#include "sched/scheduler.h"
#include "test_util.h"

namespace nf::test {
namespace {

using tokens = std::vector<int32_t>;

struct coverage {
  int64_t preemptions = 0, hit_tokens = 0, evictions = 0, dropped = 0, cut = 0, async_runs = 0;
};

void run_seed(uint32_t seed, coverage& cov) {
  std::mt19937 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };

  const int block_sizes[] = {1, 2, 4, 8, 16};
  int bs = block_sizes[pick(0, 4)];
  int num_blocks = pick(4, 48);
  scheduler_config c = small_config(pick(1, 48), pick(1, 10), static_cast<int64_t>(bs) * num_blocks, bs);
  c.kv.enable_prefix_caching = chance(0.7);
  c.policy = chance(0.3) ? scheduling_policy::priority : scheduling_policy::fcfs;
  c.output_len_prior = chance(0.5) ? 1 : pick(1, 64);  // a low prior admits optimistically: preemptions
  bool async = chance(0.5);
  int pool_tokens = bs * num_blocks;

  scheduler s(c);
  fake_model model{.vocab = 16};
  engine_loop loop(s, model, async);

  // Prompts share a few prefixes so the prefix cache gets hits.
  tokens bases[3];
  for (auto& b : bases)
    for (int k = 0; k < 48; ++k) b.push_back(pick(1, 15));

  std::map<request_id, tokens> expected;
  std::set<request_id> cut;  // aborted or finished from outside: their outputs are a prefix
  std::vector<request_id> added;
  const int num_requests = pick(1, 30);

  auto random_live = [&]() -> std::optional<request_id> {
    std::vector<request_id> live;
    for (request_id id : added)
      if (s.find(id)) live.push_back(id);
    if (live.empty()) return std::nullopt;
    return live[static_cast<size_t>(pick(0, static_cast<int>(live.size()) - 1))];
  };

  loop.before_schedule = [&] {
    while (static_cast<int>(added.size()) < num_requests && chance(0.5)) {
      request_id id = added.size();
      int max_prompt = std::min(40, pool_tokens - 1);
      tokens prompt;
      const tokens& base = bases[pick(0, 2)];
      int shared = pick(0, max_prompt);
      prompt.assign(base.begin(), base.begin() + std::min<int>(shared, static_cast<int>(base.size())));
      int extra = pick(prompt.empty() ? 1 : 0, std::max(0, max_prompt - static_cast<int>(prompt.size())));
      for (int k = 0; k < extra; ++k) prompt.push_back(pick(1, 15));
      if (prompt.empty()) prompt.push_back(pick(1, 15));
      sampling_params sp;
      sp.max_tokens = pick(1, std::max(1, std::min(40, pool_tokens + 1 - static_cast<int>(prompt.size()))));
      sp.min_tokens = pick(0, std::min(3, sp.max_tokens));
      sp.ignore_eos = chance(0.3);
      if (chance(0.2)) sp.stop_token_ids = {pick(1, 15)};
      expected[id] = reference_generate(model, prompt, sp, c.eos_token_ids);
      s.add_request(id, prompt, sp, pick(0, 3));
      added.push_back(id);
      EXPECT_EQ(s.check_invariants(), "");
    }
    if (chance(0.01))
      if (auto id = random_live()) {
        EXPECT_TRUE(s.abort(*id));
        cut.insert(*id);
      }
    if (chance(0.01))
      if (auto id = random_live()) {
        EXPECT_TRUE(s.finish(*id, finish_reason::stop));
        cut.insert(*id);
      }
    EXPECT_EQ(s.check_invariants(), "");
  };
  loop.mid_step = [&] {
    if (chance(0.01))
      if (auto id = random_live()) {
        EXPECT_TRUE(s.abort(*id));
        cut.insert(*id);
      }
  };

  for (int i = 0; i < 20000; ++i) {
    bool more = loop.step();
    if (!more && static_cast<int>(added.size()) == num_requests) break;
  }
  ASSERT_EQ(static_cast<int>(added.size()), num_requests);
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.kv().pool().num_held_blocks(), 0);
  EXPECT_EQ(s.check_invariants(), "");
  cov.preemptions += s.stats().num_preemptions;
  cov.hit_tokens += s.prefix_stats().num_hit_tokens;
  cov.evictions += s.prefix_stats().num_evictions;
  cov.dropped += s.stats().num_dropped_tokens;
  cov.cut += static_cast<int64_t>(cut.size());
  cov.async_runs += async;
  for (request_id id : added) {
    const tokens& got = loop.outputs[id];
    const tokens& want = expected[id];
    if (cut.count(id)) {
      ASSERT_LE(got.size(), want.size()) << "request " << id;
      EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin())) << "request " << id;
    } else {
      EXPECT_EQ(got, want) << "request " << id;
    }
  }
}

TEST(scheduler_property, random_mixes_keep_invariants_and_tokens) {
  coverage cov;
  for (uint32_t seed = 0; seed < 500; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    run_seed(seed, cov);
    if (testing::Test::HasFailure()) break;
  }
  // The mixes must actually exercise every path they are meant to check.
  EXPECT_GT(cov.preemptions, 0);
  EXPECT_GT(cov.hit_tokens, 0);
  EXPECT_GT(cov.evictions, 0);
  EXPECT_GT(cov.dropped, 0);
  EXPECT_GT(cov.cut, 0);
  EXPECT_GT(cov.async_runs, 0);
  std::printf("property: %lld preemptions, %lld hit tokens, %lld evictions, %lld dropped tokens, %lld cut requests\n",
              static_cast<long long>(cov.preemptions), static_cast<long long>(cov.hit_tokens),
              static_cast<long long>(cov.evictions), static_cast<long long>(cov.dropped),
              static_cast<long long>(cov.cut));
}

}  // namespace
}  // namespace nf::test
