// Paged decode attention against ref::paged_attention (one query per sequence): GQA groups 1 to 12, head_dim
// 64 and 128, block sizes 16 and 32, contexts of 1 token to several chunks, full and small SM budgets.
#include <tuple>

#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda_test_utils.h"
#include "kernels/paged_kv_fixture.h"

namespace nf {
namespace {

using test::bf16;
using test::device_buffer;

// One decode problem: the fixture's sequences with random queries, the CPU reference, and the device buffers of
// everything but the cache and block tables (a test may place those as it likes).
struct decode_case {
  test::paged_kv_fixture kv;
  int num_seqs, num_q_heads;
  float scale;
  std::vector<float> q;    // [num_seqs, num_q_heads, head_dim]
  std::vector<float> ref;  // [num_seqs, num_q_heads, head_dim]
  size_t workspace_bytes;
  device_buffer<bf16> d_q, d_out;
  device_buffer<int32_t> d_lens;
  device_buffer<float> d_workspace;

  decode_case(int q_heads, const ref::paged_kv_layout& layout, const std::vector<int>& lens, std::mt19937& rng)
      : kv(layout, lens, rng),
        num_seqs(static_cast<int>(lens.size())),
        num_q_heads(q_heads),
        scale(1.0f / std::sqrt(static_cast<float>(layout.head_dim))),
        q(test::random_bf16_values(static_cast<size_t>(num_seqs) * q_heads * layout.head_dim, rng, 2.0f)),
        ref(q.size()),
        workspace_bytes(kernels::decode_attention_workspace_bytes(num_seqs, q_heads, layout.head_dim, kv.max_context_len())),
        d_q(test::to_bf16(q)),
        d_out(q.size()),
        d_lens(std::vector<int32_t>(lens.begin(), lens.end())),
        d_workspace(workspace_bytes / sizeof(float)) {
    std::vector<ref::attention_sequence> seqs;
    for (int s = 0; s < num_seqs; ++s) seqs.push_back({s, 1, lens[s], kv.table(s)});
    ref::paged_attention(q.data(), kv.cache.data(), seqs, num_q_heads, kv.layout, scale, ref.data());
  }

  kernels::decode_attention_args args(const bf16* cache, const int32_t* tables, int num_sms) {
    kernels::decode_attention_args a;
    a.q = d_q.get();
    a.kv_cache = cache;
    a.block_tables = tables;
    a.context_lens = d_lens.get();
    a.out = d_out.get();
    a.workspace = d_workspace.get();
    a.workspace_bytes = workspace_bytes;
    a.num_seqs = num_seqs;
    a.num_q_heads = num_q_heads;
    a.num_kv_heads = kv.layout.num_kv_heads;
    a.head_dim = kv.layout.head_dim;
    a.block_size = kv.layout.block_size;
    a.max_blocks_per_seq = kv.max_blocks_per_seq;
    a.max_context_len = kv.max_context_len();
    a.scale = scale;
    a.num_sms = num_sms;
    return a;
  }
};

// num_q_heads, num_kv_heads, head_dim, block_size, num_sms
class decode_attention_test : public ::testing::TestWithParam<std::tuple<int, int, int, int, int>> {};

TEST_P(decode_attention_test, matches_reference) {
  NF_SKIP_WITHOUT_GPU();
  const auto [num_q_heads, num_kv_heads, head_dim, block_size, num_sms] = GetParam();
  std::mt19937 rng(num_q_heads * 1000 + num_kv_heads * 10 + head_dim + block_size + num_sms);
  const std::vector<int> lens = {1, 15, 16, 17, 33, 250, 1000, 2500, 4099};
  decode_case c(num_q_heads, {num_kv_heads, head_dim, block_size}, lens, rng);
  device_buffer<bf16> d_cache(test::to_bf16(c.kv.cache));
  device_buffer<int32_t> d_tables(c.kv.block_tables);
  kernels::decode_attention_args args = c.args(d_cache.get(), d_tables.get(), num_sms);
  const std::vector<float>& ref = c.ref;
  const int num_seqs = c.num_seqs;
  // Every pipeline that head_dim 128 offers: the budget's choice 0, cp.async shapes 1-3 and 8, bulk tensor copies 4-7,
  // the shallow bulk-copy pipelines 9-12 and the deep ones with few warps 13-14.
  for (int variant = 0; variant < (head_dim == 128 ? kernels::num_decode_attention_variants : 1); ++variant) {
    args.variant = variant;
    c.d_out.poison();
    c.d_workspace.poison();
    NF_CUDA_OK(kernels::decode_attention(args, nullptr));
    NF_CUDA_OK(cudaDeviceSynchronize());
    const auto out = test::to_float(c.d_out.download());
    EXPECT_EQ(test::count_non_finite(out), 0u) << "variant " << variant;
    EXPECT_LT(test::relative_error(out, ref), test::bf16_tolerance) << "variant " << variant;
    // Each sequence on its own, so a short one cannot hide behind the long ones.
    const size_t row = static_cast<size_t>(num_q_heads) * head_dim;
    for (int s = 0; s < num_seqs; ++s) {
      const std::vector<float> o(out.begin() + s * row, out.begin() + (s + 1) * row);
      const std::vector<float> r(ref.begin() + s * row, ref.begin() + (s + 1) * row);
      EXPECT_LT(test::relative_error(o, r), test::bf16_tolerance) << "context " << lens[s] << ", variant " << variant;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(shapes, decode_attention_test,
                         ::testing::Values(std::make_tuple(32, 8, 128, 16, 0), std::make_tuple(32, 8, 128, 16, 3),
                                           std::make_tuple(8, 8, 64, 16, 0), std::make_tuple(32, 4, 128, 32, 0),
                                           std::make_tuple(24, 2, 128, 16, 5), std::make_tuple(7, 1, 64, 16, 0),
                                           std::make_tuple(12, 4, 64, 32, 1)));

// The engine gives each layer its share of the KV cache, which on a large GPU with a small model is many GiB. The
// fixture's blocks are moved far apart over a cache of 24 GiB (block ids up to ~390k, byte offsets past 2^34), so
// every variant must address blocks past 4, 8 and 16 GiB as it does near the start.
TEST(decode_attention, reads_blocks_anywhere_in_a_large_cache) {
  NF_SKIP_WITHOUT_GPU();
  constexpr size_t cache_bytes = size_t{24} << 30;
  size_t free_bytes = 0, total_bytes = 0;
  NF_CUDA_OK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (free_bytes < cache_bytes + (size_t{2} << 30)) GTEST_SKIP() << "needs 26 GiB of free device memory";
  std::mt19937 rng(41);
  decode_case c(32, {8, 128, 16}, {17, 700, 2048, 4099}, rng);
  const test::paged_kv_fixture& kv = c.kv;

  // Fixture block b goes to big block far[b]: spread over the whole cache, the last ones at its very end.
  const size_t block_elems = kv.layout.block_stride();
  const int64_t num_big_blocks = static_cast<int64_t>(cache_bytes / (block_elems * sizeof(bf16)));
  const int num_blocks = static_cast<int>(kv.cache.size() / block_elems);
  std::vector<int32_t> far(num_blocks);
  for (int b = 0; b < num_blocks; ++b)
    far[b] = static_cast<int32_t>(num_big_blocks - 1 - (static_cast<int64_t>(b) * 7919) % num_big_blocks);
  std::vector<int32_t> tables = kv.block_tables;
  for (int32_t& entry : tables) entry = far[entry];
  device_buffer<bf16> d_cache(cache_bytes / sizeof(bf16));
  const std::vector<bf16> blocks = test::to_bf16(kv.cache);
  for (int b = 0; b < num_blocks; ++b)
    NF_CUDA_OK(cudaMemcpy(d_cache.get() + static_cast<size_t>(far[b]) * block_elems, blocks.data() + b * block_elems,
                          block_elems * sizeof(bf16), cudaMemcpyHostToDevice));
  device_buffer<int32_t> d_tables(tables);
  kernels::decode_attention_args args = c.args(d_cache.get(), d_tables.get(), 0);
  for (int variant = 0; variant < kernels::num_decode_attention_variants; ++variant) {
    args.variant = variant;
    c.d_out.poison();
    NF_CUDA_OK(kernels::decode_attention(args, nullptr));
    NF_CUDA_OK(cudaDeviceSynchronize());
    const auto out = test::to_float(c.d_out.download());
    EXPECT_EQ(test::count_non_finite(out), 0u) << "variant " << variant;
    EXPECT_LT(test::relative_error(out, c.ref), test::bf16_tolerance) << "variant " << variant;
  }
}

TEST(decode_attention, rejects_unsupported_shapes) {
  NF_SKIP_WITHOUT_GPU();
  kernels::decode_attention_args args;
  args.num_seqs = 1;
  args.num_q_heads = 6;
  args.num_kv_heads = 4;  // not a divisor
  args.head_dim = 128;
  args.block_size = 16;
  args.max_blocks_per_seq = 1;
  EXPECT_EQ(kernels::decode_attention(args, nullptr), cudaErrorInvalidValue);
  args.num_kv_heads = 2;
  args.head_dim = 96;
  EXPECT_EQ(kernels::decode_attention(args, nullptr), cudaErrorInvalidValue);
  args.head_dim = 128;
  args.block_size = 8;
  EXPECT_EQ(kernels::decode_attention(args, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace nf
