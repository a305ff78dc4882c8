// Single-request generation: prefill (optionally chunked), then one decode step per token, on blocks
// 0, 1, 2, ... of the backend's cache.
#include "engine/generate.h"

#include <algorithm>

#include "core/error.h"

namespace nf {

void validate_prompt(const model_config& config, std::span<const int32_t> prompt) {
  if (prompt.empty()) fail("the prompt is empty");
  for (int32_t id : prompt)
    if (id < 0 || id >= config.vocab_size) fail("prompt token id {} is outside the vocabulary of {}", id, config.vocab_size);
  if (static_cast<int64_t>(prompt.size()) >= config.max_position_embeddings)
    fail("the prompt has {} tokens, but the model's context is {} tokens (room is needed for at least one more)",
         prompt.size(), config.max_position_embeddings);
}

generation_result generate_one(backend& model, std::span<const int32_t> prompt, const sampling_params& params,
                               uint64_t seed, const token_callback& on_token, int prefill_chunk) {
  const model_config& config = model.config();
  validate_prompt(config, prompt);
  params.validate();
  const int context = config.max_position_embeddings;
  const int max_len = std::min<int64_t>(context, static_cast<int64_t>(prompt.size()) + params.max_tokens);
  const int block_size = model.block_size();
  const int num_blocks_needed = (max_len + block_size - 1) / block_size;
  if (num_blocks_needed > model.num_kv_blocks())
    fail("the request needs {} KV blocks but the cache has {}", num_blocks_needed, model.num_kv_blocks());
  std::vector<int32_t> block_table(num_blocks_needed);  // [num_blocks_needed]
  for (int i = 0; i < num_blocks_needed; ++i) block_table[i] = i;

  std::vector<int32_t> tokens(prompt.begin(), prompt.end());  // prompt, then generated ids
  generation_result result;
  std::vector<float> logits;
  int num_computed = 0;
  const int chunk = prefill_chunk > 0 ? prefill_chunk : static_cast<int>(tokens.size());
  while (true) {
    const int pending = static_cast<int>(tokens.size()) - num_computed;
    const int step_tokens = std::min(pending, chunk);
    model_batch batch;
    for (int i = 0; i < step_tokens; ++i) {
      const int position = num_computed + i;
      batch.token_ids.push_back(tokens[position]);
      batch.positions.push_back(position);
      batch.slots.push_back(int64_t{block_table[position / block_size]} * block_size + position % block_size);
    }
    const int context_len = num_computed + step_tokens;
    batch.sequences.push_back({0, step_tokens, context_len,
                               std::vector<int32_t>(block_table.begin(), block_table.begin() + (context_len + block_size - 1) / block_size)});
    const bool needs_logits = context_len == static_cast<int>(tokens.size());
    if (needs_logits) batch.logit_rows.push_back(step_tokens - 1);
    model.forward(batch, logits);
    num_computed = context_len;
    if (!needs_logits) continue;

    const std::span<const int32_t> generated(tokens.data() + prompt.size(), tokens.size() - prompt.size());
    sampling_context sampling{&params, seed, 0, prompt, generated, config.eos_token_ids};
    sample_result sample = sample_token(logits, sampling);
    const int32_t token = sample.token_id;
    tokens.push_back(token);
    result.token_ids.push_back(token);
    result.samples.push_back(std::move(sample));
    const int num_generated = static_cast<int>(result.token_ids.size());
    const bool is_eos = std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), token) != config.eos_token_ids.end();
    const bool is_stop_id = std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), token) != params.stop_token_ids.end();
    if (num_generated >= params.min_tokens && ((is_eos && !params.ignore_eos) || is_stop_id)) {
      result.finish_reason = "stop";
      break;
    }
    if (on_token && on_token(token)) {
      result.finish_reason = "stop";
      break;
    }
    if (num_generated >= params.max_tokens || static_cast<int>(tokens.size()) >= max_len) {
      result.finish_reason = "length";
      break;
    }
  }
  return result;
}

}  // namespace nf
