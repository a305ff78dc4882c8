// Small builders shared by the scheduler tests.
#pragma once

#include <cstdint>
#include <numeric>
#include <vector>

#include "sched/scheduler.h"

namespace nf::test {

inline scheduler_config small_config(int budget, int max_seqs, int64_t kv_tokens, int block_size = 16) {
  scheduler_config c;
  c.max_num_batched_tokens = budget;
  c.max_num_seqs = max_seqs;
  c.max_model_len = 4096;
  c.eos_token_ids = {0};
  c.kv.block_size = block_size;
  c.kv.num_tokens = kv_tokens;
  return c;
}

// Distinct non-zero tokens [first, first + count).
inline std::vector<int32_t> prompt_tokens(int first, int count) {
  std::vector<int32_t> t(static_cast<size_t>(count));
  std::iota(t.begin(), t.end(), first);
  return t;
}

inline sampling_params max_tokens(int n, bool ignore_eos = false) {
  sampling_params p;
  p.max_tokens = n;
  p.ignore_eos = ignore_eos;
  return p;
}

}  // namespace nf::test
