// KV accounting per sequence on top of the block pool: block tables, prefix-cache lookups, growth as
// tokens are scheduled, registration of newly computed full blocks, and release.
//
// The manager keeps no per-request map: each request owns a `kv_sequence` and passes it in, so the
// scheduler decides lifetimes and the manager stays a pure policy object that is easy to test.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kv/block_hash.h"
#include "kv/block_pool.h"

namespace nf {

struct kv_cache_config {
  int block_size = 16;             // tokens per block
  int64_t num_tokens = 0;          // capacity in tokens; rounded down to whole blocks
  bool enable_prefix_caching = true;
  uint64_t cache_salt = 0;         // names the model (and anything else that changes KV values)
};

// The KV state a request owns.
struct kv_sequence {
  std::vector<block_id> block_table;     // [ceil(num_tokens_with_kv / block_size)] physical blocks, in order
  std::vector<block_hash> block_hashes;  // [num full blocks of known tokens] chained hashes, computed lazily
  int num_cached_blocks = 0;             // leading blocks of block_table already in the prefix cache
};

// The leading cached blocks that a sequence can reuse.
struct prefix_hit {
  std::vector<block_id> blocks;  // [num_hit_blocks]
  int num_tokens = 0;            // = blocks.size() * block_size
  int num_unheld = 0;            // hit blocks that no request holds now (they leave the free queue)
};

struct prefix_cache_stats {
  int64_t num_queries = 0;       // sequences looked up at admission
  int64_t num_query_tokens = 0;  // their tokens
  int64_t num_hit_tokens = 0;    // tokens found cached
  int64_t num_evictions = 0;     // cached blocks whose content was dropped to make room
  double hit_rate() const {
    return num_query_tokens == 0 ? 0.0 : static_cast<double>(num_hit_tokens) / static_cast<double>(num_query_tokens);
  }
};

class kv_cache_manager {
 public:
  // Throws nf::error when the capacity is below one block or the block size is not positive.
  explicit kv_cache_manager(const kv_cache_config& config);

  int block_size() const { return block_size_; }
  int num_blocks() const { return pool_.num_blocks(); }
  int64_t num_tokens_capacity() const { return static_cast<int64_t>(num_blocks()) * block_size_; }
  bool prefix_caching() const { return enable_prefix_caching_; }
  int num_free_blocks() const { return pool_.num_free_blocks(); }
  const block_pool& pool() const { return pool_; }
  // "KV cache: N blocks = M tokens (block size B, prefix caching on)".
  std::string summary() const;

  int num_blocks_for(int64_t num_tokens) const {
    return static_cast<int>((num_tokens + block_size_ - 1) / block_size_);
  }

  // The longest run of cached full blocks at the start of `token_ids`, never covering the last token
  // (so at least one token is computed and its logits produced). Empty when prefix caching is off.
  // Extends seq.block_hashes; takes no references.
  prefix_hit find_prefix(kv_sequence& seq, std::span<const int32_t> token_ids);

  // First allocation of a sequence (its block table is empty): takes the hit blocks and allocates fresh
  // ones so the table covers `num_tokens` tokens. All or nothing: false leaves everything unchanged.
  bool allocate(kv_sequence& seq, const prefix_hit& hit, int64_t num_tokens);

  // Fresh blocks `seq` needs, beyond its current block table, to cover `num_tokens` tokens.
  int num_new_blocks(const kv_sequence& seq, int64_t num_tokens) const;

  // Grows the block table so it covers `num_tokens` tokens. All or nothing.
  bool grow(kv_sequence& seq, int64_t num_tokens);

  // Registers the full blocks among the first `num_computed_tokens` tokens (whose KV is written and
  // whose ids are `token_ids[0, num_computed_tokens)`) in the prefix cache. No-op when caching is off.
  void cache_computed(kv_sequence& seq, std::span<const int32_t> token_ids, int64_t num_computed_tokens);

  // Releases every block of the sequence (last block first, so a sequence's tail is evicted before its
  // shared head). Cached blocks stay findable until evicted. Keeps the hashes (the tokens are unchanged).
  void free(kv_sequence& seq);

  // Counts one admission lookup in the statistics.
  void record_query(int64_t num_query_tokens, int64_t num_hit_tokens);
  prefix_cache_stats stats() const;

 private:
  void extend_hashes(kv_sequence& seq, std::span<const int32_t> token_ids, size_t num_blocks) const;

  int block_size_;
  bool enable_prefix_caching_;
  block_hash root_hash_;
  block_pool pool_;
  prefix_cache_stats stats_;
};

}  // namespace nf
