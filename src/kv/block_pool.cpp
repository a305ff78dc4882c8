// Block pool: allocation, reference counting and the free queue.
#include "kv/block_pool.h"

#include <fmt/format.h>

#include "core/error.h"

namespace nf {

block_pool::block_pool(int num_blocks)
    : ref_count_(num_blocks, 0),
      hash_(num_blocks, 0),
      has_hash_(num_blocks, 0),
      prev_(num_blocks, none),
      next_(num_blocks, none),
      in_queue_(num_blocks, 0) {
  NF_CHECK(num_blocks > 0, "a block pool needs at least one block, got {}", num_blocks);
  for (block_id id = 0; id < num_blocks; ++id) push_back(id);
  cached_.reserve(static_cast<size_t>(num_blocks));
}

std::optional<block_hash> block_pool::hash_of(block_id id) const {
  if (!has_hash_[id]) return std::nullopt;
  return hash_[id];
}

void block_pool::unlink(block_id id) {
  NF_CHECK(in_queue_[id], "block {} is not in the free queue", id);
  if (prev_[id] != none) next_[prev_[id]] = next_[id]; else head_ = next_[id];
  if (next_[id] != none) prev_[next_[id]] = prev_[id]; else tail_ = prev_[id];
  prev_[id] = next_[id] = none;
  in_queue_[id] = 0;
  --num_in_queue_;
  if (has_hash_[id]) --num_cached_free_;
}

void block_pool::push_front(block_id id) {
  prev_[id] = none;
  next_[id] = head_;
  if (head_ != none) prev_[head_] = id; else tail_ = id;
  head_ = id;
  in_queue_[id] = 1;
  ++num_in_queue_;
  if (has_hash_[id]) ++num_cached_free_;
}

void block_pool::push_back(block_id id) {
  next_[id] = none;
  prev_[id] = tail_;
  if (tail_ != none) next_[tail_] = id; else head_ = id;
  tail_ = id;
  in_queue_[id] = 1;
  ++num_in_queue_;
  if (has_hash_[id]) ++num_cached_free_;
}

bool block_pool::allocate(int count, std::vector<block_id>& out) {
  NF_CHECK(count >= 0, "negative block count {}", count);
  if (count > num_in_queue_) return false;
  for (int i = 0; i < count; ++i) {
    block_id id = head_;
    unlink(id);
    if (has_hash_[id]) {  // evict: its content is about to be overwritten
      cached_.erase(hash_[id]);
      has_hash_[id] = 0;
      ++num_evictions_;
    }
    ref_count_[id] = 1;
    out.push_back(id);
  }
  return true;
}

std::optional<block_id> block_pool::lookup(block_hash hash) const {
  auto it = cached_.find(hash);
  if (it == cached_.end()) return std::nullopt;
  return it->second;
}

void block_pool::take(std::span<const block_id> ids) {
  for (block_id id : ids) {
    NF_CHECK(id >= 0 && id < num_blocks(), "block id {} out of range", id);
    if (ref_count_[id] == 0) unlink(id);
    ++ref_count_[id];
  }
}

void block_pool::release(std::span<const block_id> ids) {
  for (block_id id : ids) {
    NF_CHECK(id >= 0 && id < num_blocks(), "block id {} out of range", id);
    NF_CHECK(ref_count_[id] > 0, "block {} released with no holder (double free)", id);
    if (--ref_count_[id] == 0) {
      if (has_hash_[id]) push_back(id); else push_front(id);
    }
  }
}

bool block_pool::cache(block_id id, block_hash hash) {
  NF_CHECK(ref_count_[id] > 0, "only a held block can be cached (block {})", id);
  if (has_hash_[id]) return false;
  auto [it, inserted] = cached_.try_emplace(hash, id);
  if (!inserted) return false;
  hash_[id] = hash;
  has_hash_[id] = 1;
  return true;
}

std::string block_pool::check_consistency() const {
  // Walk the queue both ways; every queued block must have no holder, and the counts must agree.
  int walked = 0, walked_cached = 0;
  block_id prev = none;
  for (block_id id = head_; id != none; prev = id, id = next_[id]) {
    if (++walked > num_blocks()) return "free queue has a cycle";
    if (!in_queue_[id]) return fmt::format("block {} linked but not marked queued", id);
    if (prev_[id] != prev) return fmt::format("block {} has a broken back link", id);
    if (ref_count_[id] != 0) return fmt::format("queued block {} has ref_count {}", id, ref_count_[id]);
    if (has_hash_[id]) ++walked_cached;
  }
  if (prev != tail_) return "free queue tail is wrong";
  if (walked != num_in_queue_) return fmt::format("free queue holds {} blocks, counted {}", walked, num_in_queue_);
  if (walked_cached != num_cached_free_)
    return fmt::format("free queue holds {} cached blocks, counted {}", walked_cached, num_cached_free_);
  size_t num_hashed = 0;
  for (block_id id = 0; id < num_blocks(); ++id) {
    if (ref_count_[id] < 0) return fmt::format("block {} has negative ref_count", id);
    if (ref_count_[id] == 0 && !in_queue_[id]) return fmt::format("unheld block {} is not in the free queue", id);
    if (has_hash_[id]) {
      ++num_hashed;
      auto it = cached_.find(hash_[id]);
      if (it == cached_.end() || it->second != id) return fmt::format("block {} hash not indexed", id);
    }
  }
  if (num_hashed != cached_.size()) return "cache index has entries for blocks without a hash";
  return {};
}

}  // namespace nf
