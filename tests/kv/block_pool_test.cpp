// Block pool: all-or-nothing allocation, reference counts, free-queue order, LRU eviction of cached blocks.
#include <gtest/gtest.h>

#include <vector>

#include "kv/block_pool.h"

namespace nf {
namespace {

using ids = std::vector<block_id>;

TEST(block_pool, allocates_in_order_and_all_or_nothing) {
  block_pool pool(10);
  EXPECT_EQ(pool.num_free_blocks(), 10);
  ids a;
  ASSERT_TRUE(pool.allocate(3, a));
  EXPECT_EQ(a, (ids{0, 1, 2}));
  for (block_id id : a) EXPECT_EQ(pool.ref_count(id), 1);
  ids b;
  EXPECT_FALSE(pool.allocate(8, b));  // only 7 left
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(pool.num_free_blocks(), 7);
  ASSERT_TRUE(pool.allocate(7, b));
  EXPECT_EQ(b, (ids{3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(pool.num_free_blocks(), 0);
  ids c;
  EXPECT_FALSE(pool.allocate(1, c));
  EXPECT_TRUE(pool.allocate(0, c));
  EXPECT_EQ(pool.check_consistency(), "");
}

TEST(block_pool, uncached_blocks_are_reused_first) {
  block_pool pool(6);
  ids a;
  ASSERT_TRUE(pool.allocate(3, a));  // 0 1 2; queue now 3 4 5
  pool.release(ids{2, 1, 0});         // hashless: each goes to the head -> 0 1 2 3 4 5
  ids b;
  ASSERT_TRUE(pool.allocate(4, b));
  EXPECT_EQ(b, (ids{0, 1, 2, 3}));
  EXPECT_EQ(pool.check_consistency(), "");
}

TEST(block_pool, ref_counts_follow_holders) {
  block_pool pool(4);
  ids a;
  ASSERT_TRUE(pool.allocate(2, a));
  ASSERT_TRUE(pool.cache(0, 111));
  EXPECT_FALSE(pool.cache(1, 111));  // same content already cached in block 0
  EXPECT_FALSE(pool.cache(0, 222));  // block 0 already has a hash
  pool.take(ids{0});
  EXPECT_EQ(pool.ref_count(0), 2);
  pool.release(ids{0});
  EXPECT_EQ(pool.ref_count(0), 1);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  pool.release(ids{1, 0});
  EXPECT_EQ(pool.num_free_blocks(), 4);
  EXPECT_EQ(pool.num_cached_free_blocks(), 1);
  ASSERT_TRUE(pool.lookup(111).has_value());
  EXPECT_EQ(*pool.lookup(111), 0);
  pool.take(ids{0});  // a hit on an unheld cached block takes it out of the free queue
  EXPECT_EQ(pool.num_free_blocks(), 3);
  EXPECT_EQ(pool.num_cached_free_blocks(), 0);
  EXPECT_EQ(pool.check_consistency(), "");
}

TEST(block_pool, cached_blocks_are_evicted_least_recently_released_first) {
  block_pool pool(6);
  ids a;
  ASSERT_TRUE(pool.allocate(4, a));  // 0 1 2 3; queue 4 5
  for (block_id id : a) ASSERT_TRUE(pool.cache(id, 1000 + static_cast<block_hash>(id)));
  pool.release(ids{3, 1});  // queue 4 5 3 1
  pool.release(ids{0, 2});  // queue 4 5 3 1 0 2
  EXPECT_EQ(pool.num_cached_free_blocks(), 4);
  ids b;
  ASSERT_TRUE(pool.allocate(2, b));
  EXPECT_EQ(b, (ids{4, 5}));
  EXPECT_EQ(pool.num_evictions(), 0);
  pool.take(ids{1});  // hit keeps block 1 out of eviction
  ASSERT_TRUE(pool.allocate(2, b));
  EXPECT_EQ(b, (ids{4, 5, 3, 0}));
  EXPECT_EQ(pool.num_evictions(), 2);
  EXPECT_FALSE(pool.lookup(1003).has_value());
  EXPECT_FALSE(pool.lookup(1000).has_value());
  EXPECT_TRUE(pool.lookup(1001).has_value());
  EXPECT_TRUE(pool.lookup(1002).has_value());
  EXPECT_FALSE(pool.hash_of(3).has_value());
  EXPECT_EQ(pool.check_consistency(), "");
}

TEST(block_pool_death, double_free_aborts) {
  block_pool pool(2);
  ids a;
  ASSERT_TRUE(pool.allocate(1, a));
  pool.release(a);
  EXPECT_DEATH(pool.release(a), "double free");
}

}  // namespace
}  // namespace nf
