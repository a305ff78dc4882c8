// Prefix caching through the KV cache manager: exact block ids of hits, the last-token rule, LRU
// eviction order, salts, statistics, and caching switched off.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "core/error.h"
#include "kv/kv_cache_manager.h"

namespace nf {
namespace {

using ids = std::vector<block_id>;
using tokens = std::vector<int32_t>;

tokens iota_tokens(int begin, int count) {
  tokens t(static_cast<size_t>(count));
  std::iota(t.begin(), t.end(), begin);
  return t;
}

tokens concat(tokens a, const tokens& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

kv_cache_manager make_manager(int num_blocks, bool caching = true, uint64_t salt = 0) {
  return kv_cache_manager(kv_cache_config{.block_size = 4, .num_tokens = 4 * num_blocks,
                                          .enable_prefix_caching = caching, .cache_salt = salt});
}

// Admits a sequence the way the scheduler does: look up, allocate, and (once computed) cache.
prefix_hit admit(kv_cache_manager& kv, kv_sequence& seq, const tokens& t) {
  prefix_hit hit = kv.find_prefix(seq, t);
  EXPECT_TRUE(kv.allocate(seq, hit, static_cast<int64_t>(t.size())));
  kv.record_query(static_cast<int64_t>(t.size()), hit.num_tokens);
  kv.cache_computed(seq, t, static_cast<int64_t>(t.size()));
  return hit;
}

TEST(prefix_cache, summary_and_capacity) {
  kv_cache_manager kv(kv_cache_config{.block_size = 16, .num_tokens = 1000});
  EXPECT_EQ(kv.num_blocks(), 62);  // rounded down to whole blocks
  EXPECT_EQ(kv.summary(), "KV cache: 62 blocks = 992 tokens (block size 16, prefix caching on)");
  EXPECT_THROW(kv_cache_manager(kv_cache_config{.block_size = 16, .num_tokens = 15}), error);
  EXPECT_THROW(kv_cache_manager(kv_cache_config{.block_size = 0, .num_tokens = 64}), error);
}

TEST(prefix_cache, hit_reuses_exact_blocks) {
  kv_cache_manager kv = make_manager(10);
  tokens a = iota_tokens(0, 14);  // 3 full blocks + 2 tokens
  kv_sequence sa;
  prefix_hit ha = admit(kv, sa, a);
  EXPECT_TRUE(ha.blocks.empty());
  EXPECT_EQ(sa.block_table, (ids{0, 1, 2, 3}));
  EXPECT_EQ(sa.num_cached_blocks, 3);

  tokens b = concat(iota_tokens(0, 8), iota_tokens(100, 6));  // shares two blocks with a
  kv_sequence sb;
  prefix_hit hb = admit(kv, sb, b);
  EXPECT_EQ(hb.blocks, (ids{0, 1}));
  EXPECT_EQ(hb.num_tokens, 8);
  EXPECT_EQ(hb.num_unheld, 0);
  EXPECT_EQ(sb.block_table, (ids{0, 1, 4, 5}));
  EXPECT_EQ(kv.pool().ref_count(0), 2);
  EXPECT_EQ(kv.pool().ref_count(1), 2);
  EXPECT_EQ(kv.pool().ref_count(2), 1);

  auto s = kv.stats();
  EXPECT_EQ(s.num_queries, 2);
  EXPECT_EQ(s.num_query_tokens, 28);
  EXPECT_EQ(s.num_hit_tokens, 8);
  EXPECT_DOUBLE_EQ(s.hit_rate(), 8.0 / 28.0);
  EXPECT_EQ(kv.pool().check_consistency(), "");
}

TEST(prefix_cache, block_with_the_last_token_is_never_reused) {
  kv_cache_manager kv = make_manager(10);
  kv_sequence sa;
  admit(kv, sa, iota_tokens(0, 12));  // exactly 3 full blocks, all cached
  EXPECT_EQ(sa.num_cached_blocks, 3);
  kv_sequence sb;
  prefix_hit hb = kv.find_prefix(sb, iota_tokens(0, 12));
  EXPECT_EQ(hb.blocks, (ids{0, 1}));  // block 2 holds the last token: it must be computed again
  EXPECT_EQ(hb.num_tokens, 8);
  kv_sequence sc;
  prefix_hit hc = kv.find_prefix(sc, iota_tokens(0, 13));
  EXPECT_EQ(hc.blocks, (ids{0, 1, 2}));
}

TEST(prefix_cache, freed_blocks_stay_cached_and_hit_again) {
  kv_cache_manager kv = make_manager(10);
  kv_sequence sa;
  admit(kv, sa, iota_tokens(0, 14));  // blocks 0 1 2 3; queue 4..9
  kv.free(sa);                        // 3 (partial, no hash) to the head; 2 1 0 to the tail
  EXPECT_TRUE(sa.block_table.empty());
  EXPECT_EQ(kv.num_free_blocks(), 10);
  EXPECT_EQ(kv.pool().num_cached_free_blocks(), 3);

  kv_sequence sb;
  prefix_hit hb = kv.find_prefix(sb, iota_tokens(0, 14));
  EXPECT_EQ(hb.blocks, (ids{0, 1, 2}));
  EXPECT_EQ(hb.num_unheld, 3);
  ASSERT_TRUE(kv.allocate(sb, hb, 14));
  EXPECT_EQ(sb.block_table, (ids{0, 1, 2, 3}));  // the fresh block is the hashless one at the head
  EXPECT_EQ(kv.num_free_blocks(), 6);
  EXPECT_EQ(kv.pool().check_consistency(), "");
}

TEST(prefix_cache, eviction_is_least_recently_used) {
  kv_cache_manager kv = make_manager(6);
  // Three sequences of 2 full blocks + 1 token each would need 9 blocks; admit and free one at a time.
  kv_sequence s1, s2;
  admit(kv, s1, iota_tokens(0, 9));     // blocks 0 1 2
  admit(kv, s2, iota_tokens(100, 9));   // blocks 3 4 5
  kv.free(s1);  // queue: 2 | 1 0      (2 has no hash -> head; then 1, 0 to the tail)
  kv.free(s2);  // queue: 5 2 | 1 0 4 3
  EXPECT_EQ(kv.pool().num_cached_free_blocks(), 4);

  // A new sequence of 3 blocks takes 5 and 2 (uncached), then evicts 1, the tail block of s1,
  // which was released before its head and before all of s2.
  kv_sequence s3;
  prefix_hit h3 = kv.find_prefix(s3, iota_tokens(200, 9));
  EXPECT_TRUE(h3.blocks.empty());
  ASSERT_TRUE(kv.allocate(s3, h3, 9));
  EXPECT_EQ(s3.block_table, (ids{5, 2, 1}));
  EXPECT_EQ(kv.stats().num_evictions, 1);

  // s1's first block (0) is still cached, its second (1) is gone: a hit of one block.
  kv_sequence s1b;
  prefix_hit h1 = kv.find_prefix(s1b, iota_tokens(0, 9));
  EXPECT_EQ(h1.blocks, (ids{0}));
  // s2 is intact.
  kv_sequence s2b;
  EXPECT_EQ(kv.find_prefix(s2b, iota_tokens(100, 9)).blocks, (ids{3, 4}));

  // Touching s2's blocks (a hit) protects them: the next eviction takes 0.
  ASSERT_TRUE(kv.allocate(s2b, kv.find_prefix(s2b, iota_tokens(100, 9)), 9));
  EXPECT_EQ(s2b.block_table, (ids{3, 4, 0}));
  EXPECT_EQ(kv.stats().num_evictions, 2);
  kv_sequence s1c;
  EXPECT_TRUE(kv.find_prefix(s1c, iota_tokens(0, 9)).blocks.empty());
  EXPECT_EQ(kv.pool().check_consistency(), "");
}

TEST(prefix_cache, allocation_counts_unheld_hits_against_free_space) {
  kv_cache_manager kv = make_manager(4);
  kv_sequence s1;
  admit(kv, s1, iota_tokens(0, 9));  // blocks 0 1 2
  kv.free(s1);                        // all 4 free, 0 and 1 cached
  kv_sequence s2;
  prefix_hit h = kv.find_prefix(s2, iota_tokens(0, 20));  // 5 blocks: 2 hits + 3 fresh > 4 - 2 free
  EXPECT_EQ(h.blocks, (ids{0, 1}));
  EXPECT_FALSE(kv.allocate(s2, h, 20));
  EXPECT_TRUE(s2.block_table.empty());
  EXPECT_EQ(kv.num_free_blocks(), 4);
  EXPECT_EQ(kv.pool().ref_count(0), 0);
  EXPECT_TRUE(kv.allocate(s2, h, 16));  // 2 hits + 2 fresh
  EXPECT_EQ(s2.block_table, (ids{0, 1, 2, 3}));
  EXPECT_EQ(kv.pool().check_consistency(), "");
}

TEST(prefix_cache, salt_separates_namespaces) {
  kv_cache_manager kv1 = make_manager(8, true, 1);
  kv_sequence a, b;
  kv1.find_prefix(a, iota_tokens(0, 9));
  kv_cache_manager kv2 = make_manager(8, true, 2);
  kv2.find_prefix(b, iota_tokens(0, 9));
  ASSERT_EQ(a.block_hashes.size(), 2u);
  ASSERT_EQ(b.block_hashes.size(), 2u);
  EXPECT_NE(a.block_hashes[0], b.block_hashes[0]);
  // Same tokens in the second block but a different first block: different chained hash.
  kv_sequence c;
  tokens t = iota_tokens(0, 9);
  t[0] = 77;
  kv1.find_prefix(c, t);
  EXPECT_NE(a.block_hashes[1], c.block_hashes[1]);
}

TEST(prefix_cache, can_be_switched_off) {
  kv_cache_manager kv = make_manager(10, false);
  kv_sequence sa, sb;
  admit(kv, sa, iota_tokens(0, 14));
  EXPECT_EQ(sa.num_cached_blocks, 0);
  prefix_hit hb = admit(kv, sb, iota_tokens(0, 14));
  EXPECT_TRUE(hb.blocks.empty());
  EXPECT_EQ(sb.block_table, (ids{4, 5, 6, 7}));
  EXPECT_EQ(kv.stats().num_hit_tokens, 0);
  EXPECT_EQ(kv.pool().num_cached_free_blocks(), 0);
}

}  // namespace
}  // namespace nf
