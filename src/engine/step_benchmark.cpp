// Synthetic steps for timing a backend (see step_benchmark.h).
#include "engine/step_benchmark.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"

namespace nf {

namespace {

void append_sequence(model_batch& batch, int num_queries, int context_len, int block_size, int vocab_size,
                     const std::vector<int32_t>& free_blocks, size_t& next_block, std::mt19937_64& rng) {
  batch_sequence sequence;
  sequence.query_start = batch.num_tokens();
  sequence.num_queries = num_queries;
  sequence.context_len = context_len;
  const int num_blocks = (context_len + block_size - 1) / block_size;
  for (int b = 0; b < num_blocks; ++b) sequence.block_table.push_back(free_blocks[next_block++]);
  std::uniform_int_distribution<int32_t> token(0, vocab_size - 1);
  for (int q = 0; q < num_queries; ++q) {
    const int position = context_len - num_queries + q;
    batch.token_ids.push_back(token(rng));
    batch.positions.push_back(position);
    batch.slots.push_back(int64_t(sequence.block_table[position / block_size]) * block_size + position % block_size);
  }
  batch.logit_rows.push_back(batch.num_tokens() - 1);
  batch.sequences.push_back(std::move(sequence));
}

}  // namespace

model_batch synthetic_step_batch(const synthetic_step_shape& shape, int block_size, int num_kv_blocks,
                                 int max_context, int vocab_size, uint64_t seed) {
  NF_CHECK(vocab_size > 0, "a synthetic step needs a vocabulary");
  if (shape.num_decode < 0 || shape.num_prefill < 0 || shape.num_decode + shape.num_prefill == 0)
    fail("a synthetic step needs decode or prefill rows (got {} and {})", shape.num_decode, shape.num_prefill);
  if (shape.prompt_len < 1) fail("a synthetic step needs prompts of at least one token");
  if (shape.num_decode > 0 && !(shape.mean_decode_context >= 1.0))
    fail("a synthetic step needs a mean decode context of at least 1 (got {})", shape.mean_decode_context);
  std::vector<int> decode_contexts;  // [num_decode]
  for (int i = 0; i < shape.num_decode; ++i) {
    const double spread = shape.num_decode == 1 ? 1.0 : 0.5 + double(i) / (shape.num_decode - 1);
    decode_contexts.push_back(std::max(1, static_cast<int>(std::lround(shape.mean_decode_context * spread))));
  }
  const int longest = std::max(decode_contexts.empty() ? 0 : *std::max_element(decode_contexts.begin(), decode_contexts.end()),
                               std::min(shape.prompt_len, shape.num_prefill));
  if (longest > max_context)
    fail("a synthetic step with contexts up to {} tokens exceeds the model's context of {}", longest, max_context);
  int64_t blocks_needed = 0;
  for (int context : decode_contexts) blocks_needed += (context + block_size - 1) / block_size;
  for (int rows = shape.num_prefill; rows > 0; rows -= shape.prompt_len)
    blocks_needed += (std::min(rows, shape.prompt_len) + block_size - 1) / block_size;
  if (blocks_needed > num_kv_blocks)
    fail("a synthetic step of {} decode rows (mean context {}) and {} prefill rows needs {} KV blocks; the cache has {}",
         shape.num_decode, shape.mean_decode_context, shape.num_prefill, blocks_needed, num_kv_blocks);

  std::mt19937_64 rng(seed);
  std::vector<int32_t> free_blocks(num_kv_blocks);  // [num_kv_blocks], shuffled: drawn in order
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  size_t next_block = 0;
  model_batch batch;
  for (int context : decode_contexts) append_sequence(batch, 1, context, block_size, vocab_size, free_blocks, next_block, rng);
  for (int rows = shape.num_prefill; rows > 0; rows -= shape.prompt_len) {
    const int chunk = std::min(rows, shape.prompt_len);
    append_sequence(batch, chunk, chunk, block_size, vocab_size, free_blocks, next_block, rng);
  }
  return batch;
}

double median_step_ms(backend& model, const model_batch& batch, int warmups, int repeats) {
  NF_CHECK(repeats > 0, "median_step_ms needs at least one timed step");
  std::vector<int32_t> token_ids;
  for (int i = 0; i < warmups; ++i) model.forward_argmax(batch, token_ids);
  std::vector<double> times_ms;  // [repeats]
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    model.forward_argmax(batch, token_ids);
    times_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(times_ms.begin(), times_ms.begin() + repeats / 2, times_ms.end());
  return times_ms[repeats / 2];
}

}  // namespace nf
