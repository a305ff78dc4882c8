// Chained content hashes of full KV blocks, the keys of the prefix cache.
//
// The hash of block k covers the hash of block k-1 (or, for k = 0, a namespace salt naming the model and
// anything else that changes the KV values) and the block's own token ids, so equal hashes mean equal
// prefixes. Hashes are 64-bit: with a few million cached blocks the chance of any collision is below
// 1e-6, which we accept (vLLM made the same trade with its default hash).
#pragma once

#include <cstdint>
#include <span>

namespace nf {

using block_hash = uint64_t;

// The parent hash of a sequence's first block: a function of the salt alone.
block_hash root_block_hash(uint64_t salt);

// Hash of one full block given its parent's hash and its token ids ([block_size]).
block_hash chain_block_hash(block_hash parent, std::span<const int32_t> token_ids);

}  // namespace nf
