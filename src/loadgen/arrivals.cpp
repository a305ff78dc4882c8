// Gamma-process arrivals for `bench serve`.
#include "loadgen/arrivals.h"

#include <cmath>
#include <random>

#include "core/error.h"

namespace nf {

std::vector<double> gamma_intervals(int count, double rate, double burstiness, uint64_t seed) {
  if (!(rate > 0.0)) fail("the request rate must be positive (or inf), got {}", rate);
  if (!(burstiness > 0.0) || std::isinf(burstiness)) fail("the burstiness must be positive and finite, got {}", burstiness);
  std::vector<double> gaps(static_cast<size_t>(std::max(count, 0)), 0.0);
  if (std::isinf(rate)) return gaps;
  std::mt19937_64 rng(seed ^ 0x6172726976616c73ull);
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate * burstiness));
  for (double& g : gaps) g = gap(rng);
  return gaps;
}

std::vector<double> gamma_arrival_times(int count, double rate, double burstiness, uint64_t seed) {
  std::vector<double> times = gamma_intervals(count, rate, burstiness, seed);
  for (size_t i = 1; i < times.size(); ++i) times[i] += times[i - 1];
  if (!times.empty() && times.back() > 0.0) {
    const double scale = (static_cast<double>(count) / rate) / times.back();
    for (double& t : times) t *= scale;
  }
  return times;
}

}  // namespace nf
