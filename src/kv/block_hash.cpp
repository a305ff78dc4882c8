// Chained block hashes built from the splitmix64 finalizer (a strong 64-bit bijective mixer).
#include "kv/block_hash.h"

namespace nf {
namespace {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

block_hash root_block_hash(uint64_t salt) { return mix64(salt ^ 0x6e616e6f666c6f77ull); }

block_hash chain_block_hash(block_hash parent, std::span<const int32_t> token_ids) {
  // Mixing after every token makes the hash depend on token order, not only on the token multiset;
  // the length is folded in last so blocks of different sizes never alias.
  uint64_t h = mix64(parent);
  for (int32_t token : token_ids) h = mix64(h ^ static_cast<uint32_t>(token));
  return mix64(h ^ (static_cast<uint64_t>(token_ids.size()) << 32));
}

}  // namespace nf
