// Radix-descent selection over candidate keys, the per-step logic shared by the device sampler and its host
// emulation: the key order that matches the host sampler's (larger value first, ties to the lower token id),
// and the bucket scans that pick the next digit of a count select (top-k) or a weighted select (top-p, draw).
#pragma once

#include <cstdint>
#include <cstring>

#include "core/philox.h"

namespace nf::kernels::sampling_radix {

constexpr int radix_bits = 8;
constexpr int radix_buckets = 1 << radix_bits;

// Bits that hold a token id below the value bits of a key: enough for vocab - 1.
NF_HOST_DEVICE inline int id_bits_for(int vocab) {
  int bits = 1;
  while ((int64_t{1} << bits) < vocab) ++bits;
  return bits;
}

// Float bits mapped so that unsigned order is float order (-inf lowest); -0 is folded into +0 because the
// host compares them as equal. NaN is not ordered (callers keep logits finite or -inf).
NF_HOST_DEVICE inline uint32_t orderable_bits(float value) {
  if (value == 0.0f) value = 0.0f;
  uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = __float_as_uint(value);
#else
  std::memcpy(&bits, &value, sizeof(bits));
#endif
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// A key per candidate, unique within a row and never 0 (0 would need NaN bits): a larger key is a better
// candidate, i.e. a larger value or, among equal values, a lower token id. Keys have 32 + id_bits bits.
NF_HOST_DEVICE inline uint64_t candidate_key(float value, int32_t token_id, int id_bits) {
  const uint64_t id_mask = (uint64_t{1} << id_bits) - 1;
  return (uint64_t{orderable_bits(value)} << id_bits) | (id_mask - static_cast<uint64_t>(token_id));
}

NF_HOST_DEVICE inline int32_t key_token(uint64_t key, int id_bits) {
  const uint64_t id_mask = (uint64_t{1} << id_bits) - 1;
  return static_cast<int32_t>(id_mask - (key & id_mask));
}

// One selection in progress. Each pass histograms the next digit (radix_bits wide, below `shift`) of the
// keys that agree with `prefix` above `shift`, then a scan picks the bucket that holds the answer.
// No member initializers (it lives in shared memory): start one with start_count_select or
// start_weighted_select.
struct radix_descent {
  uint64_t prefix;  // the key bits chosen so far; bits below `shift` are zero
  int shift;        // how many low key bits are still open
  bool done;
  // Count select: on done, `result` is a bound such that exactly the wanted number of keys are >= it.
  // Weighted select: on done with `find` unset, `result` is the chosen key; with `find` set, the chosen key
  // is the only counted key inside the final prefix, and one more pass finds it.
  uint64_t result;
  bool find;
  uint32_t remaining;  // count select: keys still to take inside the current prefix
  // Weighted select: the first key (best first) whose running mass passes `target` is chosen.
  double fraction;    // target = fraction * total mass, fixed at the first scan
  double target;
  double mass_above;  // mass of the counted keys above the current prefix
  bool strict;        // passes when target < running mass (a draw); else when running mass >= target (top-p)
  bool pick_last;     // the mass never passed the target (rounding): take the lowest key, as the host does
  bool first;
};

NF_HOST_DEVICE inline radix_descent start_count_select(int num_key_bits, uint32_t count) {
  radix_descent d{};
  d.shift = num_key_bits;
  d.remaining = count;
  return d;
}

NF_HOST_DEVICE inline radix_descent start_weighted_select(int num_key_bits, double fraction, bool strict) {
  radix_descent d{};
  d.shift = num_key_bits;
  d.fraction = fraction;
  d.strict = strict;
  d.first = true;
  return d;
}

NF_HOST_DEVICE inline int digit_width(const radix_descent& d) { return d.shift < radix_bits ? d.shift : radix_bits; }

// Whether `key` lies inside the prefix chosen so far.
NF_HOST_DEVICE inline bool in_prefix(const radix_descent& d, uint64_t key) { return (key >> d.shift) == (d.prefix >> d.shift); }

NF_HOST_DEVICE inline int bucket_of(const radix_descent& d, uint64_t key) {
  const int low = d.shift - digit_width(d);
  return static_cast<int>((key >> low) & ((uint64_t{1} << digit_width(d)) - 1));
}

// Picks the bucket holding the `remaining`-th largest key. counts: [radix_buckets].
NF_HOST_DEVICE inline void scan_count(radix_descent& d, const uint32_t* counts) {
  const int width = digit_width(d);
  const int low = d.shift - width;
  for (int b = (1 << width) - 1; b >= 0; --b) {
    if (counts[b] >= d.remaining) {
      const uint64_t bound = d.prefix | (static_cast<uint64_t>(b) << low);
      if (counts[b] == d.remaining || low == 0) {
        d.done = true;
        d.result = bound;
      } else {
        d.prefix = bound;
        d.shift = low;
      }
      return;
    }
    d.remaining -= counts[b];
  }
  // Fewer keys than asked for: take all of the prefix.
  d.done = true;
  d.result = d.prefix;
}

// Picks the bucket where the running mass (best keys first) passes the target. counts, sums: [radix_buckets].
NF_HOST_DEVICE inline void scan_weighted(radix_descent& d, const uint32_t* counts, const double* sums) {
  const int width = digit_width(d);
  const int low = d.shift - width;
  const int num_buckets = 1 << width;
  if (d.first) {
    double total = 0.0;
    for (int b = num_buckets - 1; b >= 0; --b) total += sums[b];
    d.target = d.fraction * total;
    d.first = false;
  }
  int chosen = -1;
  if (!d.pick_last) {
    for (int b = num_buckets - 1; b >= 0; --b) {
      if (counts[b] == 0) continue;
      const double running = d.mass_above + sums[b];
      if (d.strict ? d.target < running : running >= d.target) {
        chosen = b;
        break;
      }
      d.mass_above = running;
    }
    if (chosen < 0) d.pick_last = true;
  }
  if (d.pick_last) {
    for (int b = 0; b < num_buckets; ++b)
      if (counts[b] != 0) {
        chosen = b;
        break;
      }
  }
  if (chosen < 0) {  // nothing counted in the prefix: cannot happen for a non-empty candidate set
    d.done = true;
    d.result = 0;
    return;
  }
  d.prefix |= static_cast<uint64_t>(chosen) << low;
  d.shift = low;
  if (counts[chosen] == 1 || low == 0) {
    d.done = true;
    d.result = d.prefix;
    d.find = low > 0;
  }
}

}  // namespace nf::kernels::sampling_radix
