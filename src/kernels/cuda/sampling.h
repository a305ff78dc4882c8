// Sampling on the device: per row of bf16 logits, the same steps and the same token as the host sampler
// (engine/sampler.cpp): penalties, min_tokens masking, temperature, top-k, top-p, min-p, then greedy or a
// Philox draw keyed by (seed, stream, position); plus the raw log-softmax logprob of the chosen token and
// the top-N logprobs.
//
// Numeric contract (what "the same token" means):
// - Penalties, masking and temperature use the host's float operations one by one, correctly rounded and
//   never contracted into FMAs, so the processed logits are bitwise those of the host.
// - Candidates are ordered exactly as the host orders them (larger processed logit first, equal logits by
//   lower token id; -0 equals +0), so the top-k set is exact.
// - Probabilities are exp(double(logit) - double(max)) in double as on the host (CUDA's exp is within 1 ulp
//   of the host's). Their sums are taken per radix bucket, in another order than the host's running sum,
//   so the top-p cut and the draw can differ from the host's only where the running mass lies within a few
//   double ulps of the target: a float tie, never seen in practice.
// - The uniform is the host's philox_uniform(seed, stream, position), bit for bit.
// - Logprobs: log_sum = float(log(sum of exp in double)) + max, logprob = logit - log_sum in float, as on
//   the host; only the order of the double sum differs.
// NaN logits are not supported (the order of NaN is undefined on the host too).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace nf::kernels {

constexpr int max_top_logprobs = 20;
// Rows are spread over at most this many blocks, one row at a time each; the workspace holds one
// processed row of logits per block.
constexpr int max_sampling_blocks = 256;

struct sampling_row_params {
  float temperature = 1.0f;         // <= 0: greedy (no temperature, no cuts, no draw)
  int32_t top_k = 0;                // <= 0 or >= vocab: off
  float top_p = 1.0f;               // >= 1: off
  float min_p = 0.0f;               // <= 0: off
  float repetition_penalty = 1.0f;  // 1: off; divides positive logits, multiplies the others
  float presence_penalty = 0.0f;    // subtracted once from every token with an output count > 0
  float frequency_penalty = 0.0f;   // subtracted per output occurrence
  int32_t num_logprobs = -1;        // -1: none; 0: the chosen token's; N <= max_top_logprobs: also the top N
  uint64_t seed = 0;
  uint32_t stream = 0;
  uint32_t position = 0;            // the index of the token sampled now (number of outputs so far)
  int32_t mask_stop_tokens = 0;     // 1: the row's masked ids get -inf (min_tokens not reached yet)
};

// Per-row token lists as CSR (row r owns entries [offsets[r], offsets[r + 1])). Ids must lie in [0, vocab);
// ids outside are skipped. Penalty ids must be distinct within a row.
struct sampling_token_lists {
  const int32_t* penalty_offsets = nullptr;  // [num_rows + 1]
  const int32_t* penalty_ids = nullptr;      // [num_penalty_entries] every distinct id of prompt and output
                                             // (only the output's when repetition_penalty is 1)
  const int32_t* penalty_counts = nullptr;   // [num_penalty_entries] occurrences in the output (0: prompt only)
  const int32_t* mask_offsets = nullptr;     // [num_rows + 1]
  const int32_t* mask_ids = nullptr;         // [num_mask_entries] EOS and stop ids; used when mask_stop_tokens
};

struct sampling_outputs {
  int32_t* token_ids = nullptr;     // [num_rows]
  float* logprobs = nullptr;        // [num_rows] of the chosen token (0 when num_logprobs < 0)
  int32_t* top_ids = nullptr;       // [num_rows, max_top_logprobs] best first; -1 past the row's N
  float* top_logprobs = nullptr;    // [num_rows, max_top_logprobs]; -inf past the row's N
};

// Floats between the workspace rows of two blocks: vocab rounded up to a multiple of 4 (16-byte loads).
__host__ __device__ inline size_t sampling_row_stride(int vocab) { return (static_cast<size_t>(vocab > 0 ? vocab : 0) + 3) / 4 * 4; }

// Floats of workspace that sample_rows needs.
inline size_t sampling_workspace_floats(int num_rows, int vocab) {
  const int blocks = num_rows < max_sampling_blocks ? num_rows : max_sampling_blocks;
  return static_cast<size_t>(blocks > 0 ? blocks : 0) * sampling_row_stride(vocab);
}

// Samples one token per row. `params` and the lists live in device memory; the logits are not modified.
cudaError_t sample_rows(const __nv_bfloat16* logits,        // [num_rows, vocab]
                        const sampling_row_params* params,  // [num_rows]
                        const sampling_token_lists& lists,
                        float* workspace,                   // [sampling_workspace_floats(num_rows, vocab)], 16-byte aligned
                        const sampling_outputs& outputs,
                        int num_rows, int vocab, cudaStream_t stream);

}  // namespace nf::kernels
