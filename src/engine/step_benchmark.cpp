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

// Takes KV blocks for the synthetic step: the prompts' blocks first, each distinct, then the decode sequences' from
// the rest of the cache, wrapping around (sharing blocks across sequences, never within one) when the cache is too
// small to give every decode sequence its own.
class block_source {
 public:
  block_source(int num_kv_blocks, int64_t prefill_blocks, std::mt19937_64& rng)
      : blocks_(num_kv_blocks), next_prefill_(0), decode_begin_(static_cast<size_t>(prefill_blocks)),
        next_decode_(decode_begin_) {
    std::iota(blocks_.begin(), blocks_.end(), 0);
    std::shuffle(blocks_.begin(), blocks_.end(), rng);
  }
  int32_t prefill_block() { return blocks_[next_prefill_++]; }
  int32_t decode_block() {
    if (next_decode_ == blocks_.size()) next_decode_ = decode_begin_;
    return blocks_[next_decode_++];
  }

 private:
  std::vector<int32_t> blocks_;  // [num_kv_blocks], shuffled: prompts draw from the front, decodes from the rest
  size_t next_prefill_;
  size_t decode_begin_;
  size_t next_decode_;
};

void append_sequence(model_batch& batch, int num_queries, int context_len, int block_size, int vocab_size,
                     bool decode, block_source& blocks, std::mt19937_64& rng) {
  batch_sequence sequence;
  sequence.query_start = batch.num_tokens();
  sequence.num_queries = num_queries;
  sequence.context_len = context_len;
  const int num_blocks = (context_len + block_size - 1) / block_size;
  for (int b = 0; b < num_blocks; ++b)
    sequence.block_table.push_back(decode ? blocks.decode_block() : blocks.prefill_block());
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

std::vector<int> decode_contexts_of(const synthetic_step_shape& shape) {
  std::vector<int> contexts;  // [num_decode]
  for (int i = 0; i < shape.num_decode; ++i) {
    const double spread = shape.num_decode == 1 ? 1.0 : 0.5 + double(i) / (shape.num_decode - 1);
    contexts.push_back(std::max(1, static_cast<int>(std::lround(shape.mean_decode_context * spread))));
  }
  return contexts;
}

int64_t blocks_of(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

int64_t prefill_blocks_of(const synthetic_step_shape& shape, int block_size) {
  int64_t blocks = 0;
  for (int rows = shape.num_prefill; rows > 0; rows -= shape.prompt_len)
    blocks += blocks_of(std::min(rows, shape.prompt_len), block_size);
  return blocks;
}

}  // namespace

int64_t synthetic_step_distinct_blocks(const synthetic_step_shape& shape, int block_size) {
  int64_t blocks = prefill_blocks_of(shape, block_size);
  for (int context : decode_contexts_of(shape)) blocks += blocks_of(context, block_size);
  return blocks;
}

model_batch synthetic_step_batch(const synthetic_step_shape& shape, int block_size, int num_kv_blocks,
                                 int max_context, int vocab_size, uint64_t seed) {
  NF_CHECK(vocab_size > 0, "a synthetic step needs a vocabulary");
  if (shape.num_decode < 0 || shape.num_prefill < 0 || shape.num_decode + shape.num_prefill == 0)
    fail("a synthetic step needs decode or prefill rows (got {} and {})", shape.num_decode, shape.num_prefill);
  if (shape.prompt_len < 1) fail("a synthetic step needs prompts of at least one token");
  if (shape.num_decode > 0 && !(shape.mean_decode_context >= 1.0))
    fail("a synthetic step needs a mean decode context of at least 1 (got {})", shape.mean_decode_context);
  const std::vector<int> decode_contexts = decode_contexts_of(shape);  // [num_decode]
  const int longest_decode = decode_contexts.empty() ? 0 : *std::max_element(decode_contexts.begin(), decode_contexts.end());
  const int longest = std::max(longest_decode, std::min(shape.prompt_len, shape.num_prefill));
  if (longest > max_context)
    fail("a synthetic step with contexts up to {} tokens exceeds the model's context of {}", longest, max_context);
  const int64_t prefill_blocks = prefill_blocks_of(shape, block_size);
  const int64_t blocks_needed = prefill_blocks + blocks_of(longest_decode, block_size);
  if (blocks_needed > num_kv_blocks)
    fail("a synthetic step of {} prefill rows and a decode context of {} needs {} KV blocks even with decode "
         "sequences sharing blocks; the cache has {}",
         shape.num_prefill, longest_decode, blocks_needed, num_kv_blocks);

  std::mt19937_64 rng(seed);
  block_source blocks(num_kv_blocks, prefill_blocks, rng);
  model_batch batch;
  for (int context : decode_contexts)
    append_sequence(batch, 1, context, block_size, vocab_size, true, blocks, rng);
  for (int rows = shape.num_prefill; rows > 0; rows -= shape.prompt_len) {
    const int chunk = std::min(rows, shape.prompt_len);
    append_sequence(batch, chunk, chunk, block_size, vocab_size, false, blocks, rng);
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
