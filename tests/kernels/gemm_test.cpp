// cuBLASLt GEMM wrapper against the BLAS reference: odd shapes, bias, SM budgets, plan reuse.
#include <tuple>

#include "kernels/cuda/gemm.h"
#include "kernels/ref/ops.h"
#include "kernels/cuda_test_utils.h"

namespace nf {
namespace {

using test::device_buffer;

class gemm_test : public ::testing::TestWithParam<std::tuple<int, int, int, bool, int>> {};

TEST_P(gemm_test, matches_reference) {
  NF_SKIP_WITHOUT_GPU();
  const auto [m, n, k, with_bias, num_sms] = GetParam();
  std::mt19937 rng(m * 131 + n * 7 + k);
  const auto x = test::random_bf16_values(static_cast<size_t>(m) * k, rng);
  const auto w = test::random_bf16_values(static_cast<size_t>(n) * k, rng, 0.1f);
  const auto bias = test::random_bf16_values(n, rng);
  std::vector<float> ref(static_cast<size_t>(m) * n);
  ref::linear(x.data(), w.data(), with_bias ? bias.data() : nullptr, m, n, k, ref.data());

  device_buffer<test::bf16> d_x(test::to_bf16(x)), d_w(test::to_bf16(w)), d_bias(test::to_bf16(bias));
  device_buffer<test::bf16> d_y(static_cast<size_t>(m) * n);
  kernels::gemm_runner runner;
  NF_CUDA_OK(runner.init());
  for (int repeat = 0; repeat < 2; ++repeat) {  // the second call reuses the cached plan
    d_y.poison();
    NF_CUDA_OK(runner.run(d_x.get(), d_w.get(), with_bias ? d_bias.get() : nullptr, d_y.get(), m, n, k, num_sms,
                          nullptr));
    NF_CUDA_OK(cudaDeviceSynchronize());
    const auto y = test::to_float(d_y.download());
    EXPECT_EQ(test::count_non_finite(y), 0u);
    EXPECT_LT(test::relative_error(y, ref), test::bf16_tolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(shapes, gemm_test,
                         ::testing::Values(std::make_tuple(1, 64, 64, false, 0), std::make_tuple(37, 200, 136, true, 0),
                                           std::make_tuple(256, 512, 1024, false, 16),
                                           std::make_tuple(129, 1000, 4096, true, 32),
                                           std::make_tuple(3, 4096, 520, false, 7)));

TEST(gemm, rejects_bad_sizes) {
  NF_SKIP_WITHOUT_GPU();
  kernels::gemm_runner runner;
  EXPECT_EQ(runner.run(nullptr, nullptr, nullptr, nullptr, 1, 1, 1, 0, nullptr), cudaErrorNotReady);
  NF_CUDA_OK(runner.init());
  EXPECT_EQ(runner.run(nullptr, nullptr, nullptr, nullptr, 1, 0, 8, 0, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(runner.run(nullptr, nullptr, nullptr, nullptr, 0, 8, 8, 0, nullptr), cudaSuccess);
}

}  // namespace
}  // namespace nf
