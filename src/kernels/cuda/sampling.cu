// Device sampler: one block per row (rows strided over at most max_sampling_blocks blocks). The processed
// logits of the row live in the block's workspace row; top-k, top-p and the draw are radix descents over
// 64-bit candidate keys (sampling_radix.h), each pass a shared-memory histogram of the next 8 key bits, so
// the vocabulary is never sorted.
#include "kernels/cuda/sampling.h"

#include <cmath>

#include "core/philox.h"
#include "kernels/cuda/sampling_radix.h"

namespace nf::kernels {
namespace {

using namespace sampling_radix;

constexpr int threads = 512;
constexpr int num_warps = threads / 32;
// Histogram copies, one per group of warps, to spread the shared-memory atomics of crowded buckets.
constexpr int histogram_copies = 4;

struct block_shared {
  uint32_t counts[histogram_copies][radix_buckets];
  double sums[histogram_copies][radix_buckets];
  radix_descent descent;
  uint64_t key_scratch[num_warps];
  double sum_scratch[num_warps];
  float float_scratch[num_warps];
  uint64_t top_keys[max_top_logprobs];
  int num_top;
};

__device__ uint64_t block_max_key(uint64_t value, block_shared& s) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const uint64_t other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = other > value ? other : value;
  }
  __syncthreads();  // the scratch may still be read by an earlier reduction
  if (threadIdx.x % 32 == 0) s.key_scratch[threadIdx.x / 32] = value;
  __syncthreads();
  value = s.key_scratch[0];
  for (int w = 1; w < num_warps; ++w) value = s.key_scratch[w] > value ? s.key_scratch[w] : value;
  return value;
}

__device__ float block_max_float(float value, block_shared& s) {
  for (int offset = 16; offset > 0; offset >>= 1) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  __syncthreads();
  if (threadIdx.x % 32 == 0) s.float_scratch[threadIdx.x / 32] = value;
  __syncthreads();
  value = s.float_scratch[0];
  for (int w = 1; w < num_warps; ++w) value = fmaxf(value, s.float_scratch[w]);
  return value;
}

// Fixed reduction order: the same inputs give the same sum on every run.
__device__ double block_sum_double(double value, block_shared& s) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  __syncthreads();
  if (threadIdx.x % 32 == 0) s.sum_scratch[threadIdx.x / 32] = value;
  __syncthreads();
  value = 0.0;
  for (int w = 0; w < num_warps; ++w) value += s.sum_scratch[w];
  return value;
}

__device__ void clear_histogram(block_shared& s) {
  for (int i = threadIdx.x; i < histogram_copies * radix_buckets; i += threads) {
    (&s.counts[0][0])[i] = 0;
    (&s.sums[0][0])[i] = 0.0;
  }
}

// Folds the copies into copy 0; then thread 0 scans. Ends synchronized.
template <bool weighted>
__device__ void merge_and_scan(block_shared& s) {
  __syncthreads();
  for (int b = threadIdx.x; b < radix_buckets; b += threads) {
    for (int c = 1; c < histogram_copies; ++c) {
      s.counts[0][b] += s.counts[c][b];
      if (weighted) s.sums[0][b] += s.sums[c][b];
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    if (weighted) scan_weighted(s.descent, s.counts[0], s.sums[0]);
    else scan_count(s.descent, s.counts[0]);
  }
  __syncthreads();
}

// The row is read four floats at a time (rows are padded to a multiple of four): a pass has a warp-wide
// match and shuffle per element, so without several loads in flight per thread the passes wait on memory.
__device__ __forceinline__ float4 load4(const float* row, int index4) { return reinterpret_cast<const float4*>(row)[index4]; }

__device__ __forceinline__ float element(const float4& v, int j) { return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; }

// Lower bound of the `count` largest keys of row[0..vocab).
__device__ uint64_t block_count_select(const float* row, int vocab, int id_bits, uint32_t count, block_shared& s) {
  __syncthreads();  // every thread has read the state of the previous select
  if (threadIdx.x == 0) s.descent = start_count_select(32 + id_bits, count);
  const int lane = threadIdx.x % 32;
  uint32_t* counts = s.counts[(threadIdx.x / 32) % histogram_copies];
  const int num_chunks = (vocab + 3) / 4;
  while (true) {
    clear_histogram(s);
    __syncthreads();
    const radix_descent d = s.descent;
    if (d.done) return d.result;
    for (int base = 0; base < num_chunks; base += threads) {
      const int chunk = base + threadIdx.x;
      const float4 values = chunk < num_chunks ? load4(row, chunk) : float4{};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int i = chunk * 4 + j;
        int bucket = -1;
        if (i < vocab) {
          const uint64_t key = candidate_key(element(values, j), i, id_bits);
          if (in_prefix(d, key)) bucket = bucket_of(d, key);
        }
        if (!__any_sync(0xffffffffu, bucket >= 0)) continue;  // warp-uniform: most warps after the first pass
        // Lanes of a warp that hit the same bucket add once.
        const unsigned peers = __match_any_sync(0xffffffffu, bucket);
        if (bucket >= 0 && lane == __ffs(peers) - 1) atomicAdd(&counts[bucket], static_cast<uint32_t>(__popc(peers)));
      }
    }
    merge_and_scan<false>(s);
  }
}

// The weighted select over the candidates of a processed row: keys >= lower_key whose probability
// exp(logit - max) is >= min_probability. Returns the first key, best first, whose running mass passes
// fraction * total mass (strictly for a draw, >= for top-p).
__device__ uint64_t block_weighted_select(const float* row, int vocab, int id_bits, uint64_t lower_key, float max_logit,
                                          double min_probability, double fraction, bool strict, block_shared& s) {
  __syncthreads();  // every thread has read the state of the previous select
  if (threadIdx.x == 0) s.descent = start_weighted_select(32 + id_bits, fraction, strict);
  const int lane = threadIdx.x % 32;
  const int copy = (threadIdx.x / 32) % histogram_copies;
  // Whether the value at i is a candidate inside the prefix; if so, its key and probability.
  auto candidate = [&](float value, int i, const radix_descent& d, uint64_t& key, double& probability) {
    key = candidate_key(value, i, id_bits);
    if (key < lower_key || !in_prefix(d, key)) return false;
    probability = exp(static_cast<double>(value) - static_cast<double>(max_logit));
    return probability >= min_probability;
  };
  const int num_chunks = (vocab + 3) / 4;
  radix_descent d;
  while (true) {
    clear_histogram(s);
    __syncthreads();
    d = s.descent;
    if (d.done) break;
    for (int base = 0; base < num_chunks; base += threads) {
      const int chunk = base + threadIdx.x;
      const float4 values = chunk < num_chunks ? load4(row, chunk) : float4{};
#pragma unroll 1  // unrolled, the shuffle loops spill registers
      for (int j = 0; j < 4; ++j) {
        const int i = chunk * 4 + j;
        int bucket = -1;
        uint64_t key = 0;
        double probability = 0.0;
        if (i < vocab && candidate(element(values, j), i, d, key, probability)) bucket = bucket_of(d, key);
        if (!__any_sync(0xffffffffu, bucket >= 0)) continue;  // warp-uniform: most warps after the first pass
        // Lanes that hit the same bucket add once: crowded buckets would serialize the shared atomics.
        const unsigned peers = __match_any_sync(0xffffffffu, bucket);
        double group_sum = 0.0;
        for (int source = 0; source < 32; ++source) {
          const double other = __shfl_sync(0xffffffffu, bucket >= 0 ? probability : 0.0, source);
          if ((peers >> source) & 1u) group_sum += other;
        }
        if (bucket >= 0 && lane == __ffs(peers) - 1) {
          atomicAdd(&s.counts[copy][bucket], static_cast<uint32_t>(__popc(peers)));
          atomicAdd(&s.sums[copy][bucket], group_sum);
        }
      }
    }
    merge_and_scan<true>(s);
  }
  if (!d.find) return d.result;
  // The chosen bucket held one candidate: find it.
  uint64_t best = 0;
  for (int i = threadIdx.x; i < vocab; i += threads) {
    uint64_t key = 0;
    double probability = 0.0;
    if (candidate(row[i], i, d, key, probability) && key > best) best = key;
  }
  return block_max_key(best, s);
}

__device__ void apply_penalties_and_masks(float* row, int vocab, int r, const sampling_row_params& p,
                                          const sampling_token_lists& lists) {
  const bool repetition = p.repetition_penalty != 1.0f;
  const bool additive = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (repetition || additive) {
    for (int e = lists.penalty_offsets[r] + threadIdx.x; e < lists.penalty_offsets[r + 1]; e += threads) {
      const int id = lists.penalty_ids[e];
      if (id < 0 || id >= vocab) continue;
      float x = row[id];
      if (repetition) x = x > 0.0f ? __fdiv_rn(x, p.repetition_penalty) : __fmul_rn(x, p.repetition_penalty);
      const int count = lists.penalty_counts[e];
      if (additive && count > 0)
        x = __fsub_rn(x, __fadd_rn(p.presence_penalty, __fmul_rn(p.frequency_penalty, static_cast<float>(count))));
      row[id] = x;
    }
  }
  __syncthreads();
  if (p.mask_stop_tokens) {
    for (int e = lists.mask_offsets[r] + threadIdx.x; e < lists.mask_offsets[r + 1]; e += threads) {
      const int id = lists.mask_ids[e];
      if (id >= 0 && id < vocab) row[id] = -INFINITY;
    }
  }
  __syncthreads();
}

__global__ void __launch_bounds__(threads) sample_rows_kernel(const __nv_bfloat16* __restrict__ logits,
                                                               const sampling_row_params* __restrict__ params,
                                                               sampling_token_lists lists, float* __restrict__ workspace,
                                                               sampling_outputs outputs, int num_rows, int vocab) {
  __shared__ block_shared s;
  const int id_bits = id_bits_for(vocab);
  float* row = workspace + static_cast<size_t>(blockIdx.x) * sampling_row_stride(vocab);  // [vocab] processed logits
  for (int r = blockIdx.x; r < num_rows; r += gridDim.x) {
    const sampling_row_params p = params[r];
    const __nv_bfloat16* raw = logits + static_cast<size_t>(r) * vocab;  // [vocab]
    for (int i = threadIdx.x; i < vocab; i += threads) row[i] = __bfloat162float(raw[i]);
    __syncthreads();
    apply_penalties_and_masks(row, vocab, r, p, lists);

    const bool greedy = !(p.temperature > 0.0f);
    uint64_t best = 0;
    for (int i = threadIdx.x; i < vocab; i += threads) {
      float value = row[i];
      if (!greedy) row[i] = value = __fdiv_rn(value, p.temperature);
      const uint64_t key = candidate_key(value, i, id_bits);
      best = key > best ? key : best;
    }
    best = block_max_key(best, s);  // its syncs also publish the tempered row
    int32_t chosen = key_token(best, id_bits);

    if (!greedy) {
      const float max_logit = row[chosen];
      uint64_t lower_key = 0;
      if (p.top_k > 0 && p.top_k < vocab) lower_key = block_count_select(row, vocab, id_bits, static_cast<uint32_t>(p.top_k), s);
      if (p.top_p < 1.0f) {
        const uint64_t cut = block_weighted_select(row, vocab, id_bits, lower_key, max_logit, 0.0, p.top_p, false, s);
        lower_key = cut > lower_key ? cut : lower_key;
      }
      const double min_probability = p.min_p > 0.0f ? static_cast<double>(p.min_p) : 0.0;
      const double uniform = philox_uniform(p.seed, p.stream, p.position);
      chosen = key_token(block_weighted_select(row, vocab, id_bits, lower_key, max_logit, min_probability, uniform, true, s),
                         id_bits);
    }

    float chosen_logprob = 0.0f;
    const int num_top = p.num_logprobs < vocab ? p.num_logprobs : vocab;
    if (p.num_logprobs >= 0) {
      float max_raw = -INFINITY;
      for (int i = threadIdx.x; i < vocab; i += threads) max_raw = fmaxf(max_raw, __bfloat162float(raw[i]));
      max_raw = block_max_float(max_raw, s);
      double sum = 0.0;
      for (int i = threadIdx.x; i < vocab; i += threads)
        sum += exp(static_cast<double>(__bfloat162float(raw[i])) - static_cast<double>(max_raw));
      sum = block_sum_double(sum, s);
      const float log_sum = __fadd_rn(static_cast<float>(log(sum)), max_raw);
      chosen_logprob = __fsub_rn(__bfloat162float(raw[chosen]), log_sum);
      if (num_top > 0) {
        // The row now holds the logprobs (the sampled token is known); their keys order them as the host does.
        __syncthreads();
        for (int i = threadIdx.x; i < vocab; i += threads) row[i] = __fsub_rn(__bfloat162float(raw[i]), log_sum);
        const uint64_t bound =
            num_top < vocab ? block_count_select(row, vocab, id_bits, static_cast<uint32_t>(num_top), s) : 0;
        if (threadIdx.x == 0) s.num_top = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < vocab; i += threads) {
          const uint64_t key = candidate_key(row[i], i, id_bits);
          if (key >= bound) {
            const int slot = atomicAdd(&s.num_top, 1);
            if (slot < max_top_logprobs) s.top_keys[slot] = key;
          }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
          const int found = s.num_top < max_top_logprobs ? s.num_top : max_top_logprobs;
          for (int a = 1; a < found; ++a)  // insertion sort, best first
            for (int b = a; b > 0 && s.top_keys[b] > s.top_keys[b - 1]; --b) {
              const uint64_t t = s.top_keys[b];
              s.top_keys[b] = s.top_keys[b - 1];
              s.top_keys[b - 1] = t;
            }
          for (int j = 0; j < found; ++j) {
            const int32_t id = key_token(s.top_keys[j], id_bits);
            outputs.top_ids[static_cast<size_t>(r) * max_top_logprobs + j] = id;
            outputs.top_logprobs[static_cast<size_t>(r) * max_top_logprobs + j] =
                __fsub_rn(__bfloat162float(raw[id]), log_sum);
          }
        }
      }
    }
    if (threadIdx.x == 0) {
      outputs.token_ids[r] = chosen;
      outputs.logprobs[r] = chosen_logprob;
    }
    const int first_unused = num_top > 0 ? num_top : 0;
    if (threadIdx.x >= first_unused && threadIdx.x < max_top_logprobs) {
      outputs.top_ids[static_cast<size_t>(r) * max_top_logprobs + threadIdx.x] = -1;
      outputs.top_logprobs[static_cast<size_t>(r) * max_top_logprobs + threadIdx.x] = -INFINITY;
    }
    __syncthreads();  // the next row reuses the workspace row and the shared state
  }
}

}  // namespace

cudaError_t sample_rows(const __nv_bfloat16* logits, const sampling_row_params* params, const sampling_token_lists& lists,
                        float* workspace, const sampling_outputs& outputs, int num_rows, int vocab, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (num_rows < 0 || vocab <= 0 || vocab >= (1 << 30) || !logits || !params || !workspace || !outputs.token_ids ||
      !outputs.logprobs || !outputs.top_ids || !outputs.top_logprobs || !lists.penalty_offsets || !lists.mask_offsets)
    return cudaErrorInvalidValue;
  const int blocks = num_rows < max_sampling_blocks ? num_rows : max_sampling_blocks;
  sample_rows_kernel<<<blocks, threads, 0, stream>>>(logits, params, lists, workspace, outputs, num_rows, vocab);
  return cudaGetLastError();
}

}  // namespace nf::kernels
