// The pool of fixed-size KV pages: reference counts, an LRU free queue, and the prefix-cache index.
//
// Every physical block is in exactly one of three states:
//   held      ref_count > 0: in the block table of at least one request;
//   cached    ref_count == 0 with a content hash: in the free queue, still findable by its hash, and
//             reused as is on a prefix hit, or evicted (hash dropped) when a fresh block is needed;
//   free      ref_count == 0 without a hash: in the free queue.
// The free queue is an intrusive doubly linked list, so taking a cached block back on a hit is O(1).
// Fresh blocks are popped from its head. Released blocks without a hash go to the head (nothing is
// lost by reusing them first); released cached blocks go to the tail, so cached blocks are evicted
// least-recently-released first.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kv/block_hash.h"

namespace nf {

using block_id = int32_t;

class block_pool {
 public:
  explicit block_pool(int num_blocks);

  int num_blocks() const { return static_cast<int>(ref_count_.size()); }
  // Blocks that an allocation may take: free plus cached-but-unheld (evictable).
  int num_free_blocks() const { return num_in_queue_; }
  int num_held_blocks() const { return num_blocks() - num_in_queue_; }
  // Blocks in the free queue that still carry a hash.
  int num_cached_free_blocks() const { return num_cached_free_; }
  int64_t num_evictions() const { return num_evictions_; }

  int ref_count(block_id id) const { return ref_count_[id]; }
  std::optional<block_hash> hash_of(block_id id) const;

  // Takes `count` blocks from the head of the free queue (evicting their hashes), each with
  // ref_count 1, appended to `out`. Either all are taken or nothing changes and false is returned.
  bool allocate(int count, std::vector<block_id>& out);

  // The block holding content `hash`, held or not; nullopt on a miss.
  std::optional<block_id> lookup(block_hash hash) const;

  // Adds one holder to each block (a prefix hit). A block with no holder leaves the free queue.
  void take(std::span<const block_id> ids);

  // Drops one holder from each block, in the given order; blocks left with no holder enter the free
  // queue as described above. Releasing a block with no holder is a bug (NF_CHECK).
  void release(std::span<const block_id> ids);

  // Records that held block `id` now holds the full block of content `hash`. Returns false (and changes
  // nothing) when another block already caches that content, or `id` already has a hash.
  bool cache(block_id id, block_hash hash);

  // Full consistency check of the internal structures; empty when consistent, else the first problem.
  std::string check_consistency() const;

 private:
  static constexpr block_id none = -1;

  void unlink(block_id id);
  void push_front(block_id id);
  void push_back(block_id id);

  std::vector<int32_t> ref_count_;   // [num_blocks]
  std::vector<block_hash> hash_;     // [num_blocks]; meaningful where has_hash_
  std::vector<uint8_t> has_hash_;    // [num_blocks]
  std::vector<block_id> prev_;       // [num_blocks]; free-queue links, none at the ends
  std::vector<block_id> next_;       // [num_blocks]
  std::vector<uint8_t> in_queue_;    // [num_blocks]
  block_id head_ = none;
  block_id tail_ = none;
  int num_in_queue_ = 0;
  int num_cached_free_ = 0;
  int64_t num_evictions_ = 0;
  std::unordered_map<block_hash, block_id> cached_;  // content hash -> block
};

}  // namespace nf
