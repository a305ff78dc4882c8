// Paged prefill attention against ref::paged_attention: whole prompts, chunks after a cached prefix, single
// tokens, GQA groups 1 to 8 (group 1 at head_dim 64 and 128), block sizes 8 to 48, full and small SM budgets.
#include <tuple>

#include "kernels/cuda/prefill_attention.h"
#include "kernels/cuda_test_utils.h"
#include "kernels/paged_kv_fixture.h"

namespace nf {
namespace {

using test::bf16;
using test::device_buffer;

// num_q_heads, num_kv_heads, head_dim, block_size, num_sms. For the head_dim 128 kernels' K/V gather: block sizes 16
// (the engine's) and 32 take the whole-tile path, 48 (not a power of two) the general one, 8 the general one in the
// two-warpgroup kernels and the whole-tile one in the producer warpgroup of variants 4 and 5.
class prefill_attention_test : public ::testing::TestWithParam<std::tuple<int, int, int, int, int>> {};

TEST_P(prefill_attention_test, matches_reference) {
  NF_SKIP_WITHOUT_GPU();
  const auto [num_q_heads, num_kv_heads, head_dim, block_size, num_sms] = GetParam();
  std::mt19937 rng(num_q_heads * 1000 + num_kv_heads * 10 + head_dim + block_size + num_sms + 1);
  // (context_len, num_queries): whole prompts, cached prefixes, single tokens.
  // (690, 160): 6 tiles of 128 keys with the first query at 530, so with GQA group 1 the first warpgroup of a
  // 128-row tile stops one KV tile before the second (the pipelined variant's early-finish path).
  const std::vector<std::pair<int, int>> shapes = {{1, 1},   {130, 130}, {300, 45}, {129, 1},
                                                   {700, 200}, {64, 64}, {97, 33}, {690, 160}};
  std::vector<int> lens;
  for (const auto& [len, n] : shapes) lens.push_back(len);
  test::paged_kv_fixture kv({num_kv_heads, head_dim, block_size}, lens, rng);
  const int num_seqs = static_cast<int>(shapes.size());
  std::vector<int32_t> query_starts, num_queries;
  int num_tokens = 0, max_num_queries = 0;
  std::vector<ref::attention_sequence> seqs;
  for (int s = 0; s < num_seqs; ++s) {
    query_starts.push_back(num_tokens);
    num_queries.push_back(shapes[s].second);
    seqs.push_back({num_tokens, shapes[s].second, shapes[s].first, kv.table(s)});
    num_tokens += shapes[s].second;
    max_num_queries = std::max(max_num_queries, shapes[s].second);
  }
  const auto q = test::random_bf16_values(static_cast<size_t>(num_tokens) * num_q_heads * head_dim, rng, 2.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::vector<float> ref(q.size());
  ref::paged_attention(q.data(), kv.cache.data(), seqs, num_q_heads, kv.layout, scale, ref.data());

  device_buffer<bf16> d_q(test::to_bf16(q)), d_cache(test::to_bf16(kv.cache)), d_out(q.size());
  device_buffer<int32_t> d_tables(kv.block_tables), d_lens(std::vector<int32_t>(lens.begin(), lens.end()));
  device_buffer<int32_t> d_starts(query_starts), d_num_queries(num_queries);
  kernels::prefill_attention_args args;
  args.q = d_q.get();
  args.kv_cache = d_cache.get();
  args.block_tables = d_tables.get();
  args.query_starts = d_starts.get();
  args.num_queries = d_num_queries.get();
  args.context_lens = d_lens.get();
  args.out = d_out.get();
  args.num_seqs = num_seqs;
  args.num_q_heads = num_q_heads;
  args.num_kv_heads = num_kv_heads;
  args.head_dim = head_dim;
  args.block_size = block_size;
  args.max_blocks_per_seq = kv.max_blocks_per_seq;
  args.max_num_queries = max_num_queries;
  args.scale = scale;
  args.num_sms = num_sms;
  for (int variant = 0; variant < kernels::num_prefill_attention_variants; ++variant) {  // every query-tile shape and pipeline
    args.variant = variant;
    d_out.poison();
    NF_CUDA_OK(kernels::prefill_attention(args, nullptr));
    NF_CUDA_OK(cudaDeviceSynchronize());
    const auto out = test::to_float(d_out.download());
    EXPECT_EQ(test::count_non_finite(out), 0u) << "variant " << variant;
    EXPECT_LT(test::relative_error(out, ref), test::bf16_tolerance) << "variant " << variant;
    const size_t row = static_cast<size_t>(num_q_heads) * head_dim;
    for (int s = 0; s < num_seqs; ++s) {
      const std::vector<float> o(out.begin() + query_starts[s] * row,
                                 out.begin() + (query_starts[s] + num_queries[s]) * row);
      const std::vector<float> r(ref.begin() + query_starts[s] * row,
                                 ref.begin() + (query_starts[s] + num_queries[s]) * row);
      EXPECT_LT(test::relative_error(o, r), test::bf16_tolerance)
          << "context " << shapes[s].first << ", queries " << shapes[s].second << ", variant " << variant;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(shapes, prefill_attention_test,
                         ::testing::Values(std::make_tuple(32, 8, 128, 16, 0), std::make_tuple(12, 4, 64, 16, 0),
                                           std::make_tuple(8, 1, 128, 8, 3), std::make_tuple(6, 6, 64, 32, 0),
                                           std::make_tuple(28, 4, 128, 16, 1), std::make_tuple(4, 4, 128, 16, 0),
                                           std::make_tuple(16, 8, 128, 32, 0), std::make_tuple(8, 2, 128, 48, 0)));

}  // namespace
}  // namespace nf
