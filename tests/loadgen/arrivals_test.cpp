// The arrival process: gamma gaps have mean 1/R and coefficient of variation 1/sqrt(B) (1 for Poisson,
// sqrt(2) for B = 0.5), and the rescaled arrival times end at N/R.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "loadgen/arrivals.h"

namespace nf {
namespace {

struct moments {
  double mean, cv;
};

moments of(const std::vector<double>& x) {
  const double mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
  double squares = 0.0;
  for (double v : x) squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(squares / static_cast<double>(x.size() - 1)) / mean};
}

TEST(arrivals, poisson_rate_and_cv) {
  const auto gaps = gamma_intervals(200000, 20.0, 1.0, 7);
  const moments m = of(gaps);
  EXPECT_NEAR(m.mean, 1.0 / 20.0, 0.01 / 20.0);  // 1% (the standard error is 0.22%)
  EXPECT_NEAR(m.cv, 1.0, 0.02);
}

TEST(arrivals, bursty_rate_and_cv) {
  const auto gaps = gamma_intervals(200000, 5.0, 0.5, 11);
  const moments m = of(gaps);
  EXPECT_NEAR(m.mean, 1.0 / 5.0, 0.015 / 5.0);
  EXPECT_NEAR(m.cv, std::sqrt(2.0), 0.04);
  // More regular than Poisson for B > 1.
  EXPECT_NEAR(of(gamma_intervals(200000, 5.0, 4.0, 3)).cv, 0.5, 0.01);
}

TEST(arrivals, times_are_rescaled_cumulative_sums) {
  const auto gaps = gamma_intervals(1000, 10.0, 1.0, 5);
  const auto times = gamma_arrival_times(1000, 10.0, 1.0, 5);
  ASSERT_EQ(times.size(), 1000u);
  EXPECT_NEAR(times.back(), 100.0, 1e-9);  // N / R
  const double scale = times.back() / std::accumulate(gaps.begin(), gaps.end(), 0.0);
  double sum = 0.0;
  for (size_t i = 0; i < times.size(); ++i) {
    sum += gaps[i];
    EXPECT_NEAR(times[i], sum * scale, 1e-9);
    if (i > 0) {
      EXPECT_GE(times[i], times[i - 1]);
    }
  }
  EXPECT_EQ(gamma_arrival_times(1000, 10.0, 1.0, 5), times);  // reproducible
  EXPECT_NE(gamma_arrival_times(1000, 10.0, 1.0, 6), times);
}

TEST(arrivals, infinite_rate_and_bad_input) {
  for (double t : gamma_arrival_times(5, std::numeric_limits<double>::infinity(), 1.0, 0)) EXPECT_EQ(t, 0.0);
  EXPECT_THROW(gamma_intervals(5, 0.0, 1.0, 0), error);
  EXPECT_THROW(gamma_intervals(5, -1.0, 1.0, 0), error);
  EXPECT_THROW(gamma_intervals(5, 1.0, 0.0, 0), error);
  EXPECT_TRUE(gamma_arrival_times(0, 1.0, 1.0, 0).empty());
}

}  // namespace
}  // namespace nf
