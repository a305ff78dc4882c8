// Request arrival times for the serving benchmark: a gamma process with mean rate R and shape B (B = 1 is a
// Poisson process, B < 1 burstier, B > 1 more regular), drawn the way `vllm bench serve` draws them.
#pragma once

#include <cstdint>
#include <vector>

namespace nf {

// `count` gaps between arrivals, each Gamma(shape = burstiness, scale = 1 / (rate * burstiness)): mean 1 / rate,
// coefficient of variation 1 / sqrt(burstiness). An infinite rate gives zeros. nf::error on rate <= 0 or
// burstiness <= 0.
std::vector<double> gamma_intervals(int count, double rate, double burstiness, uint64_t seed);

// Arrival offsets in seconds: the running sums of gamma_intervals, rescaled so that the last request arrives at
// exactly count / rate (so throughput does not drift with the seed; vLLM rescales the same way). All zeros when
// the rate is infinite.
std::vector<double> gamma_arrival_times(int count, double rate, double burstiness, uint64_t seed);

}  // namespace nf
