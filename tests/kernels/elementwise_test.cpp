// Embedding, rmsnorm, fused add + rmsnorm and silu-and-mul against the CPU reference, with odd sizes and
// NaN-poisoned outputs.
#include <tuple>

#include "kernels/cuda/embedding.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/silu_and_mul.h"
#include "kernels/ref/ops.h"
#include "kernels/cuda_test_utils.h"

namespace nf {
namespace {

using test::bf16;
using test::device_buffer;

TEST(embedding, gathers_rows_exactly) {
  NF_SKIP_WITHOUT_GPU();
  for (const auto& [num_tokens, hidden, num_sms] : {std::tuple{1, 64, 0}, std::tuple{37, 520, 0}, std::tuple{300, 4096, 3}}) {
    std::mt19937 rng(num_tokens + hidden);
    const int vocab = 1000;
    const auto table = test::random_bf16_values(static_cast<size_t>(vocab) * hidden, rng);
    std::vector<int32_t> ids(num_tokens);
    std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
    for (auto& id : ids) id = pick(rng);
    if (num_tokens > 2) ids[1] = ids[0];  // a repeated token
    std::vector<float> ref(static_cast<size_t>(num_tokens) * hidden);
    ref::embedding(ids.data(), num_tokens, hidden, table.data(), ref.data());

    device_buffer<int32_t> d_ids(ids);
    device_buffer<bf16> d_table(test::to_bf16(table)), d_out(ref.size());
    d_out.poison();
    NF_CUDA_OK(kernels::embedding(d_ids.get(), d_table.get(), d_out.get(), num_tokens, hidden, num_sms, nullptr));
    NF_CUDA_OK(cudaDeviceSynchronize());
    const auto out = test::to_float(d_out.download());
    EXPECT_EQ(out, ref) << num_tokens << " x " << hidden;
  }
}

class rmsnorm_test : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(rmsnorm_test, matches_reference) {
  NF_SKIP_WITHOUT_GPU();
  const auto [num_tokens, hidden, num_sms] = GetParam();
  const float eps = 1e-5f;
  std::mt19937 rng(num_tokens * 3 + hidden);
  const size_t count = static_cast<size_t>(num_tokens) * hidden;
  const auto x = test::random_bf16_values(count, rng, 4.0f);
  const auto delta = test::random_bf16_values(count, rng, 2.0f);
  const auto weight = test::random_bf16_values(hidden, rng);

  {
    std::vector<float> ref(count);
    ref::rmsnorm(x.data(), weight.data(), num_tokens, hidden, eps, ref.data());
    device_buffer<bf16> d_x(test::to_bf16(x)), d_w(test::to_bf16(weight)), d_out(count);
    d_out.poison();
    NF_CUDA_OK(kernels::rmsnorm(d_x.get(), d_w.get(), d_out.get(), num_tokens, hidden, eps, num_sms, nullptr));
    NF_CUDA_OK(cudaDeviceSynchronize());
    EXPECT_LT(test::relative_error(test::to_float(d_out.download()), ref), test::bf16_tolerance);
  }
  {
    std::vector<float> residual = x, ref(count);
    ref::add_rmsnorm(residual.data(), delta.data(), weight.data(), num_tokens, hidden, eps, ref.data());
    device_buffer<bf16> d_res(test::to_bf16(x)), d_delta(test::to_bf16(delta)), d_w(test::to_bf16(weight)),
        d_out(count);
    d_out.poison();
    NF_CUDA_OK(kernels::add_rmsnorm(d_res.get(), d_delta.get(), d_w.get(), d_out.get(), num_tokens, hidden, eps,
                                    num_sms, nullptr));
    NF_CUDA_OK(cudaDeviceSynchronize());
    EXPECT_LT(test::relative_error(test::to_float(d_out.download()), ref), test::bf16_tolerance);
    EXPECT_LT(test::relative_error(test::to_float(d_res.download()), residual), test::bf16_tolerance);
  }
}

// 8200 exceeds the 8192 elements a block keeps in registers, so the re-reading path runs too.
INSTANTIATE_TEST_SUITE_P(sizes, rmsnorm_test,
                         ::testing::Values(std::make_tuple(1, 64, 0), std::make_tuple(33, 520, 0),
                                           std::make_tuple(130, 4096, 5), std::make_tuple(7, 8200, 0)));

TEST(silu_and_mul, matches_reference) {
  NF_SKIP_WITHOUT_GPU();
  for (const auto& [num_tokens, inter, num_sms] : {std::tuple{1, 8, 0}, std::tuple{19, 1000, 0}, std::tuple{64, 14336, 4}}) {
    std::mt19937 rng(num_tokens + inter);
    const auto gate_up = test::random_bf16_values(static_cast<size_t>(num_tokens) * 2 * inter, rng, 6.0f);
    std::vector<float> ref(static_cast<size_t>(num_tokens) * inter);
    ref::silu_and_mul(gate_up.data(), num_tokens, inter, ref.data());
    device_buffer<bf16> d_in(test::to_bf16(gate_up)), d_out(ref.size());
    d_out.poison();
    NF_CUDA_OK(kernels::silu_and_mul(d_in.get(), d_out.get(), num_tokens, inter, num_sms, nullptr));
    NF_CUDA_OK(cudaDeviceSynchronize());
    EXPECT_LT(test::relative_error(test::to_float(d_out.download()), ref), test::bf16_tolerance) << inter;
  }
}

TEST(elementwise, rejects_unaligned_rows) {
  NF_SKIP_WITHOUT_GPU();
  EXPECT_EQ(kernels::embedding(nullptr, nullptr, nullptr, 4, 12, 0, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kernels::rmsnorm(nullptr, nullptr, nullptr, 4, 100, 1e-5f, 0, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(kernels::silu_and_mul(nullptr, nullptr, 4, 6, 0, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace nf
