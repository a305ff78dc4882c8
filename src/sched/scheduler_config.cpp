// Validation of the scheduler configuration.
#include "sched/scheduler_config.h"

#include "core/error.h"

namespace nf {

void scheduler_config::validate() const {
  if (max_num_batched_tokens < 1) fail("max_num_batched_tokens must be at least 1, got {}", max_num_batched_tokens);
  if (max_num_seqs < 1) fail("max_num_seqs must be at least 1, got {}", max_num_seqs);
  if (max_model_len < 2) fail("max_model_len must be at least 2, got {}", max_model_len);
  if (output_len_prior < 1) fail("output_len_prior must be at least 1, got {}", output_len_prior);
  if (output_len_prior_weight < 0) fail("output_len_prior_weight must be >= 0, got {}", output_len_prior_weight);
  if (!(kv_admission_fraction > 0.0 && kv_admission_fraction <= 1.0))
    fail("kv_admission_fraction must be in (0, 1], got {}", kv_admission_fraction);
  for (int32_t id : eos_token_ids)
    if (id < 0) fail("EOS token ids must be non-negative, got {}", id);
}

}  // namespace nf
