// The synthetic steps the tuner times: decode rows first, one per sequence, at contexts spread around the mean,
// then prompt rows; every row's position and KV slot follow from its sequence's context and block table, the
// blocks are distinct and inside the cache (where the cache is small, decodes share blocks only among
// themselves), and shapes the cache or the model cannot hold are refused. Switching
// a backend's pipeline spec between steps keeps its outputs and refuses an invalid spec without changing it.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "engine/cpu_backend.h"
#include "engine/step_benchmark.h"
#include "model/weights.h"
#include "pipeline/pipeline_spec.h"
#include "test_paths.h"

namespace nf {
namespace {

TEST(synthetic_step_batch, lays_out_decodes_then_prompts_on_distinct_blocks) {
  synthetic_step_shape shape;
  shape.num_decode = 9;
  shape.num_prefill = 50;
  shape.mean_decode_context = 40.0;
  shape.prompt_len = 32;
  const int block_size = 16, num_kv_blocks = 400;
  const model_batch batch = synthetic_step_batch(shape, block_size, num_kv_blocks, 4096, 500, 7);
  ASSERT_EQ(batch.num_tokens(), 59);
  ASSERT_EQ(batch.sequences.size(), 9u + 2u);  // prompts of 32 and 18 tokens
  std::set<int32_t> blocks;
  double context_sum = 0.0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const batch_sequence& seq = batch.sequences[s];
    const bool decode = s < 9;
    EXPECT_EQ(seq.num_queries, decode ? 1 : (s == 9 ? 32 : 18)) << s;
    if (decode) {
      context_sum += seq.context_len;
      EXPECT_GE(seq.context_len, 20);
      EXPECT_LE(seq.context_len, 60);
    } else {
      EXPECT_EQ(seq.context_len, seq.num_queries) << "fresh prompts";
    }
    EXPECT_EQ(static_cast<int>(seq.block_table.size()), (seq.context_len + block_size - 1) / block_size);
    for (int32_t b : seq.block_table) {
      EXPECT_TRUE(b >= 0 && b < num_kv_blocks) << b;
      EXPECT_TRUE(blocks.insert(b).second) << "block " << b << " used twice";
    }
    for (int q = 0; q < seq.num_queries; ++q) {
      const int row = seq.query_start + q;
      const int position = seq.context_len - seq.num_queries + q;
      EXPECT_EQ(batch.positions[row], position);
      EXPECT_EQ(batch.slots[row], int64_t{seq.block_table[position / block_size]} * block_size + position % block_size);
      EXPECT_TRUE(batch.token_ids[row] >= 0 && batch.token_ids[row] < 500) << batch.token_ids[row];
    }
    EXPECT_EQ(batch.logit_rows[s], seq.query_start + seq.num_queries - 1);
  }
  EXPECT_NEAR(context_sum / 9, 40.0, 1.0);
  EXPECT_EQ(batch.sequences.front().query_start, 0);
  EXPECT_EQ(batch.sequences[9].query_start, 9);
}

TEST(synthetic_step_batch, decodes_share_blocks_only_among_themselves_when_the_cache_is_small) {
  synthetic_step_shape shape;
  shape.num_decode = 6;
  shape.num_prefill = 40;
  shape.mean_decode_context = 100.0;  // contexts 50 .. 150: 4 .. 10 blocks of 16, 41 in all
  shape.prompt_len = 32;              // prompts of 32 and 8 tokens: 3 blocks
  const int block_size = 16, num_kv_blocks = 20;
  ASSERT_EQ(synthetic_step_distinct_blocks(shape, block_size), 41 + 3);
  const model_batch batch = synthetic_step_batch(shape, block_size, num_kv_blocks, 4096, 500, 5);
  ASSERT_EQ(batch.sequences.size(), 6u + 2u);
  std::set<int32_t> prompt_blocks, decode_blocks;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const batch_sequence& seq = batch.sequences[s];
    std::set<int32_t> own;
    for (int32_t b : seq.block_table) {
      EXPECT_TRUE(b >= 0 && b < num_kv_blocks) << b;
      EXPECT_TRUE(own.insert(b).second) << "sequence " << s << " uses block " << b << " twice";
      if (s < 6)
        decode_blocks.insert(b);
      else
        EXPECT_TRUE(prompt_blocks.insert(b).second) << "prompt block " << b << " shared";
    }
  }
  for (int32_t b : prompt_blocks) EXPECT_EQ(decode_blocks.count(b), 0u) << "block " << b << " of a prompt and a decode";
  EXPECT_EQ(decode_blocks.size(), 17u) << "the decodes wrap around every block the prompts left";
}

TEST(synthetic_step_batch, refuses_shapes_it_cannot_hold) {
  synthetic_step_shape shape;
  shape.num_decode = 4;
  shape.mean_decode_context = 1000.0;
  EXPECT_NO_THROW(synthetic_step_batch(shape, 16, 100, 4096, 500, 1));  // the longest decode: 94 blocks, shared
  EXPECT_THROW(synthetic_step_batch(shape, 16, 90, 4096, 500, 1), error);  // 94 > 90
  shape.num_prefill = 200;
  EXPECT_THROW(synthetic_step_batch(shape, 16, 100, 4096, 500, 1), error);  // 94 + 13 prompt blocks > 100
  EXPECT_THROW(synthetic_step_batch(shape, 16, 10000, 1024, 500, 1), error);  // contexts up to 1500 > 1024
  shape.num_decode = 0;
  shape.num_prefill = 0;
  EXPECT_THROW(synthetic_step_batch(shape, 16, 10000, 4096, 500, 1), error);  // no rows
}

TEST(step_benchmark, times_a_backend_step_and_switches_specs_without_changing_outputs) {
  const auto dir = test::model_dir("llama3-gqa");
  const model_config config = load_model_config(dir);
  cpu_backend model(load_weights(dir, config), 64, 16);
  synthetic_step_shape shape;
  shape.num_decode = 3;
  shape.num_prefill = 20;
  shape.mean_decode_context = 30.0;
  shape.prompt_len = 16;
  const model_batch batch = synthetic_step_batch(shape, model.block_size(), model.num_kv_blocks(),
                                                 config.max_position_embeddings, config.vocab_size, 3);
  EXPECT_GT(median_step_ms(model, batch, 1, 3), 0.0);

  std::vector<int32_t> serial, switched;
  model.forward_argmax(batch, serial);
  const pipeline_spec nanobatch =
      load_pipeline_spec(test::source_dir() / "configs/pipelines/nanobatch.json", llama_op_graph());
  model.set_schedule(nanobatch);
  EXPECT_EQ(model.schedule().name, nanobatch.name);
  model.forward_argmax(batch, switched);
  EXPECT_EQ(switched, serial);

  pipeline_spec broken = nanobatch;
  broken.nano_ops.pop_back();  // a gap in the token coverage
  EXPECT_THROW(model.set_schedule(broken), error);
  EXPECT_EQ(model.schedule().name, nanobatch.name);
}

}  // namespace
}  // namespace nf
