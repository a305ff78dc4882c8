// One synthetic step of a chosen shape, and its measured time on a backend: what the pipeline tuner times its
// candidate specs with. The batch holds `num_decode` decode sequences (one row each, contexts spread evenly
// over [mean / 2, 3 mean / 2]) followed by `num_prefill` rows of fresh prompts of `prompt_len` tokens (the last
// one shorter), every sequence on distinct KV blocks drawn at random from the whole cache, as the engine's
// scheduler lays a mixed step out. Where the cache is too small for that (a workload point chosen on a GPU with
// more memory), the decode sequences share blocks with each other, never with a prompt and never within one
// sequence: the bytes each step reads are the same, and the cache is far larger than the L2, so the time is too.
// Token ids are arbitrary: only the time is of interest.
#pragma once

#include <cstdint>

#include "engine/backend.h"
#include "engine/model_batch.h"

namespace nf {

struct synthetic_step_shape {
  int num_decode = 0;
  int num_prefill = 0;
  double mean_decode_context = 1024.0;
  int prompt_len = 1024;
};

// Token ids are drawn from [0, vocab_size). nf::error when the shape is empty, a context exceeds max_context,
// or the cache cannot hold the prompts and the longest decode sequence.
model_batch synthetic_step_batch(const synthetic_step_shape& shape, int block_size, int num_kv_blocks,
                                 int max_context, int vocab_size, uint64_t seed);

// KV blocks the step needs for every sequence to have its own; with fewer, its decode sequences share blocks.
int64_t synthetic_step_distinct_blocks(const synthetic_step_shape& shape, int block_size);

// The median wall time in ms of `repeats` greedy forward passes of `batch` (after `warmups` untimed ones); the
// backend's forward returns only once the step is done, so this is the whole step as the engine sees it.
double median_step_ms(backend& model, const model_batch& batch, int warmups, int repeats);

}  // namespace nf
