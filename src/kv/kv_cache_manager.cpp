// KV cache manager: prefix lookups, all-or-nothing allocation and block registration.
#include "kv/kv_cache_manager.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"

namespace nf {
namespace {

int checked_num_blocks(const kv_cache_config& config) {
  if (config.block_size <= 0) fail("KV block size must be positive, got {}", config.block_size);
  int64_t num_blocks = config.num_tokens / config.block_size;
  if (num_blocks < 1)
    fail("KV cache capacity of {} tokens is below one block of {} tokens", config.num_tokens, config.block_size);
  if (num_blocks > (int64_t{1} << 30)) fail("KV cache of {} blocks is too large", num_blocks);
  return static_cast<int>(num_blocks);
}

}  // namespace

kv_cache_manager::kv_cache_manager(const kv_cache_config& config)
    : block_size_(config.block_size),
      enable_prefix_caching_(config.enable_prefix_caching),
      root_hash_(root_block_hash(config.cache_salt)),
      pool_(checked_num_blocks(config)) {}

std::string kv_cache_manager::summary() const {
  return fmt::format("KV cache: {} blocks = {} tokens (block size {}, prefix caching {})", num_blocks(),
                     num_tokens_capacity(), block_size_, enable_prefix_caching_ ? "on" : "off");
}

void kv_cache_manager::extend_hashes(kv_sequence& seq, std::span<const int32_t> token_ids, size_t num_blocks) const {
  num_blocks = std::min(num_blocks, token_ids.size() / static_cast<size_t>(block_size_));
  auto bs = static_cast<size_t>(block_size_);
  while (seq.block_hashes.size() < num_blocks) {
    size_t k = seq.block_hashes.size();
    block_hash parent = k == 0 ? root_hash_ : seq.block_hashes[k - 1];
    seq.block_hashes.push_back(chain_block_hash(parent, token_ids.subspan(k * bs, bs)));
  }
}

prefix_hit kv_cache_manager::find_prefix(kv_sequence& seq, std::span<const int32_t> token_ids) {
  prefix_hit hit;
  if (!enable_prefix_caching_ || token_ids.empty()) return hit;
  // Blocks strictly before the one holding the last token.
  size_t max_blocks = (token_ids.size() - 1) / static_cast<size_t>(block_size_);
  extend_hashes(seq, token_ids, max_blocks);
  for (size_t k = 0; k < max_blocks; ++k) {
    auto id = pool_.lookup(seq.block_hashes[k]);
    if (!id) break;
    hit.blocks.push_back(*id);
    if (pool_.ref_count(*id) == 0) ++hit.num_unheld;
  }
  hit.num_tokens = static_cast<int>(hit.blocks.size()) * block_size_;
  return hit;
}

int kv_cache_manager::num_new_blocks(const kv_sequence& seq, int64_t num_tokens) const {
  return std::max(0, num_blocks_for(num_tokens) - static_cast<int>(seq.block_table.size()));
}

bool kv_cache_manager::allocate(kv_sequence& seq, const prefix_hit& hit, int64_t num_tokens) {
  NF_CHECK(seq.block_table.empty(), "allocate() is for a sequence without blocks");
  int num_hit = static_cast<int>(hit.blocks.size());
  int num_fresh = std::max(0, num_blocks_for(num_tokens) - num_hit);
  // Hit blocks that nobody holds sit in the free queue: taking them shrinks what is left for fresh ones.
  if (num_fresh > pool_.num_free_blocks() - hit.num_unheld) return false;
  pool_.take(hit.blocks);
  seq.block_table.assign(hit.blocks.begin(), hit.blocks.end());
  bool ok = pool_.allocate(num_fresh, seq.block_table);
  NF_CHECK(ok, "allocation of {} blocks failed after the free count said it fits", num_fresh);
  seq.num_cached_blocks = num_hit;
  return true;
}

bool kv_cache_manager::grow(kv_sequence& seq, int64_t num_tokens) {
  return pool_.allocate(num_new_blocks(seq, num_tokens), seq.block_table);
}

void kv_cache_manager::cache_computed(kv_sequence& seq, std::span<const int32_t> token_ids,
                                      int64_t num_computed_tokens) {
  if (!enable_prefix_caching_) return;
  NF_CHECK(num_computed_tokens <= static_cast<int64_t>(token_ids.size()),
           "{} computed tokens but only {} known", num_computed_tokens, token_ids.size());
  size_t num_full = std::min(static_cast<size_t>(num_computed_tokens / block_size_), seq.block_table.size());
  if (num_full <= static_cast<size_t>(seq.num_cached_blocks)) return;
  extend_hashes(seq, token_ids, num_full);
  for (size_t k = static_cast<size_t>(seq.num_cached_blocks); k < num_full; ++k)
    pool_.cache(seq.block_table[k], seq.block_hashes[k]);  // false: same content cached elsewhere; fine
  seq.num_cached_blocks = static_cast<int>(num_full);
}

void kv_cache_manager::free(kv_sequence& seq) {
  std::reverse(seq.block_table.begin(), seq.block_table.end());
  pool_.release(seq.block_table);
  seq.block_table.clear();
  seq.num_cached_blocks = 0;
}

void kv_cache_manager::record_query(int64_t num_query_tokens, int64_t num_hit_tokens) {
  ++stats_.num_queries;
  stats_.num_query_tokens += num_query_tokens;
  stats_.num_hit_tokens += num_hit_tokens;
}

prefix_cache_stats kv_cache_manager::stats() const {
  prefix_cache_stats s = stats_;
  s.num_evictions = pool_.num_evictions();
  return s;
}

}  // namespace nf
