// Knobs of the scheduler, set once from the engine configuration.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_cache_manager.h"

namespace nf {

enum class scheduling_policy {
  fcfs,      // arrival order
  priority,  // lower request priority first, then arrival order
};

struct scheduler_config {
  int max_num_batched_tokens = 2048;  // dense token budget of one step (decode + prefill tokens)
  int max_num_seqs = 256;             // most requests running (holding KV) at once
  int max_model_len = 8192;           // context length: prompt + max_tokens must fit
  scheduling_policy policy = scheduling_policy::fcfs;
  std::vector<int32_t> eos_token_ids;  // the model's end-of-sequence ids

  // Admission by predicted peak KV use: a request's expected output length is
  // min(max_tokens - generated, mean output length of finished requests), where the mean starts at
  // output_len_prior weighted as output_len_prior_weight finished requests.
  int output_len_prior = 256;
  int output_len_prior_weight = 4;
  // Fraction of the KV blocks that the predicted peak may fill (1: all of them).
  double kv_admission_fraction = 1.0;

  kv_cache_config kv;  // block size, capacity in tokens, prefix caching switch and salt

  // Throws nf::error naming the first bad field.
  void validate() const;
};

}  // namespace nf
