// Philox-4x32-10, a counter-based random generator (Salmon et al., SC 2011): the same (key, counter) gives the
// same numbers on the host and on the device, whatever else runs, so seeded sampling does not depend on batching.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NF_HOST_DEVICE __host__ __device__
#else
#define NF_HOST_DEVICE
#endif

namespace nf {

struct philox_output {
  uint32_t words[4];
};

NF_HOST_DEVICE inline philox_output philox4x32(uint64_t key, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3) {
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t product0 = uint64_t{0xD2511F53u} * c0;
    const uint64_t product1 = uint64_t{0xCD9E8D57u} * c2;
    const uint32_t next0 = static_cast<uint32_t>(product1 >> 32) ^ c1 ^ k0;
    const uint32_t next2 = static_cast<uint32_t>(product0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(product1);
    c3 = static_cast<uint32_t>(product0);
    c0 = next0;
    c2 = next2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// A uniform double in [0, 1) for (seed, stream, position): stream tells requests sharing a seed apart
// (e.g. the choices of n > 1), position is the index of the generated token.
NF_HOST_DEVICE inline double philox_uniform(uint64_t seed, uint32_t stream, uint32_t position) {
  const philox_output out = philox4x32(seed, position, stream, 0x6e616e6fu, 0x666c6f77u);
  const uint64_t bits = (uint64_t{out.words[0]} << 21) ^ uint64_t{out.words[1]};
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * 0x1.0p-53;
}

}  // namespace nf
