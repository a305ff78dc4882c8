// RoPE + paged KV append against ref::apply_rope and ref::kv_append, on a fused qkv buffer with a
// NaN-poisoned cache: written slots must match, every other slot must stay untouched.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "kernels/cuda/rope_kv.h"
#include "kernels/ref/ops.h"
#include "kernels/cuda_test_utils.h"

namespace nf {
namespace {

using test::bf16;
using test::device_buffer;

class rope_kv_test : public ::testing::TestWithParam<std::tuple<int, int, int, int, int>> {};

TEST_P(rope_kv_test, matches_reference) {
  NF_SKIP_WITHOUT_GPU();
  const auto [num_tokens, num_q_heads, num_kv_heads, head_dim, block_size] = GetParam();
  std::mt19937 rng(num_tokens * 17 + num_q_heads * 5 + head_dim);
  const int row = (num_q_heads + 2 * num_kv_heads) * head_dim;
  const auto qkv = test::random_bf16_values(static_cast<size_t>(num_tokens) * row, rng);
  std::vector<int32_t> positions(num_tokens);
  std::uniform_int_distribution<int32_t> pick_position(0, 20000);
  for (auto& p : positions) p = pick_position(rng);
  positions[0] = 0;
  std::vector<float> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) inv_freq[i] = static_cast<float>(std::pow(500000.0, -2.0 * i / head_dim));

  const int num_blocks = (num_tokens + block_size - 1) / block_size + 3;
  std::vector<int64_t> slots(static_cast<size_t>(num_blocks) * block_size);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(num_tokens);
  if (num_tokens > 3) slots[2] = -1;  // a padding token: no cache write

  // Reference: split, rotate, append.
  std::vector<float> q(static_cast<size_t>(num_tokens) * num_q_heads * head_dim);
  std::vector<float> k(static_cast<size_t>(num_tokens) * num_kv_heads * head_dim), v(k.size());
  for (int t = 0; t < num_tokens; ++t) {
    const float* src = qkv.data() + static_cast<size_t>(t) * row;
    std::copy(src, src + num_q_heads * head_dim, q.begin() + static_cast<size_t>(t) * num_q_heads * head_dim);
    std::copy(src + num_q_heads * head_dim, src + (num_q_heads + num_kv_heads) * head_dim,
              k.begin() + static_cast<size_t>(t) * num_kv_heads * head_dim);
    std::copy(src + (num_q_heads + num_kv_heads) * head_dim, src + row,
              v.begin() + static_cast<size_t>(t) * num_kv_heads * head_dim);
  }
  ref::apply_rope(q.data(), positions.data(), num_tokens, num_q_heads, head_dim, inv_freq.data());
  ref::apply_rope(k.data(), positions.data(), num_tokens, num_kv_heads, head_dim, inv_freq.data());
  const ref::paged_kv_layout layout{num_kv_heads, head_dim, block_size};
  std::vector<float> ref_cache(static_cast<size_t>(num_blocks) * layout.block_stride(), NAN);
  std::vector<int64_t> ref_slots;
  std::vector<float> k_kept, v_kept;
  for (int t = 0; t < num_tokens; ++t) {
    if (slots[t] < 0) continue;
    ref_slots.push_back(slots[t]);
    const size_t off = static_cast<size_t>(t) * num_kv_heads * head_dim;
    k_kept.insert(k_kept.end(), k.begin() + off, k.begin() + off + num_kv_heads * head_dim);
    v_kept.insert(v_kept.end(), v.begin() + off, v.begin() + off + num_kv_heads * head_dim);
  }
  ref::kv_append(k_kept.data(), v_kept.data(), ref_slots.data(), static_cast<int>(ref_slots.size()), layout,
                 ref_cache.data());

  const auto qkv_bf16 = test::to_bf16(qkv);
  device_buffer<bf16> d_qkv(qkv_bf16), d_cache(ref_cache.size()), d_q(q.size());
  device_buffer<int32_t> d_positions(positions);
  device_buffer<int64_t> d_slots(slots);
  device_buffer<float> d_inv_freq(inv_freq);
  d_cache.poison();
  d_q.poison();
  const bf16* base = d_qkv.get();
  NF_CUDA_OK(kernels::rope_kv_append(base, base + num_q_heads * head_dim,
                                     base + (num_q_heads + num_kv_heads) * head_dim, row, d_q.get(), d_positions.get(),
                                     d_slots.get(), d_inv_freq.get(), num_tokens, num_q_heads, num_kv_heads, head_dim,
                                     block_size, d_cache.get(), 0, nullptr));
  NF_CUDA_OK(cudaDeviceSynchronize());

  const auto q_out = test::to_float(d_q.download());
  EXPECT_LT(test::relative_error(q_out, q), test::bf16_tolerance);
  const auto qkv_after = d_qkv.download();  // the fused input is only read
  EXPECT_EQ(test::to_float(qkv_after), test::to_float(qkv_bf16));

  const auto cache = test::to_float(d_cache.download());
  std::vector<float> written, expected;
  size_t untouched_changed = 0;
  for (size_t i = 0; i < cache.size(); ++i) {
    if (std::isnan(ref_cache[i])) {
      untouched_changed += std::isnan(cache[i]) ? 0 : 1;
    } else {
      written.push_back(cache[i]);
      expected.push_back(ref_cache[i]);
    }
  }
  EXPECT_EQ(untouched_changed, 0u);
  ASSERT_FALSE(expected.empty());
  EXPECT_LT(test::relative_error(written, expected), test::bf16_tolerance);
}

INSTANTIATE_TEST_SUITE_P(shapes, rope_kv_test,
                         ::testing::Values(std::make_tuple(1, 32, 8, 128, 16), std::make_tuple(37, 12, 4, 64, 16),
                                           std::make_tuple(100, 6, 6, 64, 32), std::make_tuple(5, 14, 2, 128, 8)));

}  // namespace
}  // namespace nf
