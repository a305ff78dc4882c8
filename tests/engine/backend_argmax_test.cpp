// backend::forward_argmax (the greedy path the engine takes when no request needs the logits) returns exactly
// the argmax of forward()'s logits, lowest id on ties, on the CPU backend's default implementation.
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/cpu_backend.h"
#include "model/weights.h"
#include "test_paths.h"

namespace nf {
namespace {

TEST(backend, forward_argmax_is_the_argmax_of_forward_logits) {
  const auto dir = test::model_dir("llama3-gqa");
  const model_config config = load_model_config(dir);
  cpu_backend model(load_weights(dir, config), 8, 16);
  model_batch batch;
  // Two sequences: 5 prompt tokens on block 0, 3 on block 1; logits of both last rows and of row 1.
  const std::vector<std::vector<int32_t>> prompts = {{3, 17, 200, 5, 9}, {600, 1, 42}};
  for (int s = 0; s < 2; ++s) {
    const int start = batch.num_tokens();
    for (size_t i = 0; i < prompts[s].size(); ++i) {
      batch.token_ids.push_back(prompts[s][i]);
      batch.positions.push_back(static_cast<int32_t>(i));
      batch.slots.push_back(int64_t{s} * 16 + static_cast<int64_t>(i));
    }
    batch.sequences.push_back({start, static_cast<int>(prompts[s].size()), static_cast<int>(prompts[s].size()), {s}});
    batch.logit_rows.push_back(batch.num_tokens() - 1);
  }
  batch.logit_rows.push_back(1);
  std::vector<float> logits;
  model.forward(batch, logits);
  std::vector<int32_t> tokens;
  model.forward_argmax(batch, tokens);
  ASSERT_EQ(tokens.size(), batch.logit_rows.size());
  for (size_t r = 0; r < tokens.size(); ++r) {
    const auto row = logits.begin() + static_cast<std::ptrdiff_t>(r * config.vocab_size);
    EXPECT_EQ(tokens[r], std::max_element(row, row + config.vocab_size) - row) << "row " << r;
  }
}

}  // namespace
}  // namespace nf
