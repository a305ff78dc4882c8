// Turns the scheduler's step plan into the backend's batch: flat token rows, positions, KV slots,
// per-sequence page tables and the rows whose logits are sampled.
#pragma once

#include <functional>

#include "engine/model_batch.h"
#include "sched/step_plan.h"

namespace nf {

struct planned_batch {
  model_batch batch;
  // Rows holding placeholder_token (decodes whose input token the previous step is still sampling),
  // with the request each belongs to; filled by fill_placeholders() once that step is done.
  std::vector<std::pair<int32_t, request_id>> placeholder_rows;
  // Per logit row, the plan entry it belongs to.
  std::vector<int32_t> logit_entries;
};

planned_batch build_batch(const step_plan& plan, int block_size);

// Replaces placeholder rows by each request's latest sampled token.
void fill_placeholders(planned_batch& planned, const std::function<int32_t(request_id)>& last_sampled_token);

}  // namespace nf
