// The decode/prefill split of a model batch: its leading one-query sequences (one row each, in order) are
// the decode rows, every row after them is a prefill row. The planner orders decodes first.
#pragma once

#include "engine/model_batch.h"
#include "pipeline/resolved_pipeline.h"

namespace nf {

inline step_rows rows_of_batch(const model_batch& batch) {
  int num_decode = 0;
  const int num_sequences = static_cast<int>(batch.sequences.size());
  while (num_decode < num_sequences && batch.sequences[num_decode].num_queries == 1 &&
         batch.sequences[num_decode].query_start == num_decode)
    ++num_decode;
  return {num_decode, batch.num_tokens() - num_decode};
}

}  // namespace nf
