// Step plan -> model batch. One row per scheduled token, sequences in plan order (decodes first).
#include "engine/planner.h"

#include "core/error.h"

namespace nf {

planned_batch build_batch(const step_plan& plan, int block_size) {
  planned_batch planned;
  model_batch& batch = planned.batch;
  batch.token_ids.reserve(plan.num_scheduled_tokens);
  batch.positions.reserve(plan.num_scheduled_tokens);
  batch.slots.reserve(plan.num_scheduled_tokens);
  batch.sequences.reserve(plan.requests.size());
  for (size_t entry = 0; entry < plan.requests.size(); ++entry) {
    const scheduled_request& r = plan.requests[entry];
    const int query_start = batch.num_tokens();
    const int num_tokens = r.num_tokens();
    NF_CHECK(static_cast<int64_t>(r.block_table.size()) * block_size >= r.position + num_tokens,
             "request {} has too few blocks for its tokens", r.id);
    for (int i = 0; i < num_tokens; ++i) {
      const int position = r.position + i;
      if (r.token_ids[i] == placeholder_token) planned.placeholder_rows.emplace_back(batch.num_tokens(), r.id);
      batch.token_ids.push_back(r.token_ids[i]);
      batch.positions.push_back(position);
      batch.slots.push_back(int64_t{r.block_table[position / block_size]} * block_size + position % block_size);
    }
    batch.sequences.push_back({query_start, num_tokens, r.position + num_tokens, r.block_table});
    if (r.needs_logits) {
      batch.logit_rows.push_back(query_start + num_tokens - 1);
      planned.logit_entries.push_back(static_cast<int32_t>(entry));
    }
  }
  return planned;
}

void fill_placeholders(planned_batch& planned, const std::function<int32_t(request_id)>& last_sampled_token) {
  for (const auto& [row, id] : planned.placeholder_rows) planned.batch.token_ids[row] = last_sampled_token(id);
  planned.placeholder_rows.clear();
}

}  // namespace nf
